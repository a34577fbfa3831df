"""
Tests for the build plane's cargo layer: finding cargo, the child's
environment, and reading cargo's JSON messages into diagnostics.

The samples below are real cargo 1.95 output (``cargo build --release
--message-format=json`` with ``CARGO_TERM_COLOR=never``, Debian crates),
captured once by compiling broken handlers by hand; only the directory
prefixes were shortened.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from edgegw_tx.build.cargo import (
    DEBIAN_CARGO_CONFIG,
    CargoNotFound,
    CompileFailed,
    ProcessOutput,
    child_env,
    failure_diagnostics,
    find_cargo,
    parse_messages,
    resolve_crate_source,
    stderr_diagnostic,
    write_crate_source_config,
)
from tests.support.builds import BROKEN, RESOLVE_STDERR, WARN

# A handler returning u32 where handler_loop! (line 7) wants a Response: the
# primary span is inside the SDK's macro, its call site is the user's line 7.
MACRO = b"""\
{"reason":"compiler-message","package_id":"path+file:///var/lib/edgegw/build/endpoints/macro#h-macro@0.1.0","manifest_path":"/var/lib/edgegw/build/endpoints/macro/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"h-macro","src_path":"/var/lib/edgegw/build/endpoints/macro/src/main.rs","edition":"2021","doc":true,"doctest":false,"test":true},"message":{"rendered":"error[E0308]: mismatched types\\n --> src/main.rs:7:1\\n  |\\n7 | handler_loop!(handle);\\n  | ^^^^^^^^^^^^^^^^^^^^^\\n  | |\\n  | expected fn pointer, found fn item\\n  | arguments to this function are incorrect\\n  |\\n  = note: expected fn pointer `fn(rust_edge_gateway_sdk::Request) -> Response`\\n                found fn item `fn(rust_edge_gateway_sdk::Request) -> u32 {handle}`\\nnote: function defined here\\n --> /opt/edgegw/rust_sdk/src/lib.rs:9:8\\n  |\\n9 | pub fn run(f: fn(Request) -> Response) {\\n  |        ^^^\\n  = note: this error originates in the macro `handler_loop` (in Nightly builds, run with -Z macro-backtrace for more info)\\n\\n","$message_type":"diagnostic","children":[{"children":[],"code":null,"level":"note","message":"expected fn pointer `fn(rust_edge_gateway_sdk::Request) -> Response`\\n      found fn item `fn(rust_edge_gateway_sdk::Request) -> u32 {handle}`","rendered":null,"spans":[]},{"children":[],"code":null,"level":"note","message":"function defined here","rendered":null,"spans":[{"byte_end":493,"byte_start":490,"column_end":11,"column_start":8,"expansion":null,"file_name":"/opt/edgegw/rust_sdk/src/lib.rs","is_primary":true,"label":null,"line_end":9,"line_start":9,"suggested_replacement":null,"suggestion_applicability":null,"text":[{"highlight_end":11,"highlight_start":8,"text":"pub fn run(f: fn(Request) -> Response) {"}]}]}],"level":"error","message":"mismatched types","spans":[{"byte_end":1183,"byte_start":1181,"column_end":71,"column_start":69,"expansion":{"def_site_span":{"byte_end":1138,"byte_start":1113,"column_end":26,"column_start":1,"expansion":null,"file_name":"/opt/edgegw/rust_sdk/src/lib.rs","is_primary":false,"label":null,"line_end":21,"line_start":21,"suggested_replacement":null,"suggestion_applicability":null,"text":[{"highlight_end":26,"highlight_start":1,"text":"macro_rules! handler_loop { ($f:ident) => { fn main() { $crate::run($f) } }; }"}]},"macro_decl_name":"handler_loop!","span":{"byte_end":103,"byte_start":82,"column_end":22,"column_start":1,"expansion":null,"file_name":"src/main.rs","is_primary":false,"label":null,"line_end":7,"line_start":7,"suggested_replacement":null,"suggestion_applicability":null,"text":[{"highlight_end":22,"highlight_start":1,"text":"handler_loop!(handle);"}]}},"file_name":"/opt/edgegw/rust_sdk/src/lib.rs","is_primary":true,"label":"expected fn pointer, found fn item","line_end":21,"line_start":21,"suggested_replacement":null,"suggestion_applicability":null,"text":[{"highlight_end":71,"highlight_start":69,"text":"macro_rules! handler_loop { ($f:ident) => { fn main() { $crate::run($f) } }; }"}]},{"byte_end":1180,"byte_start":1169,"column_end":68,"column_start":57,"expansion":{"def_site_span":{"byte_end":1138,"byte_start":1113,"column_end":26,"column_start":1,"expansion":null,"file_name":"/opt/edgegw/rust_sdk/src/lib.rs","is_primary":false,"label":null,"line_end":21,"line_start":21,"suggested_replacement":null,"suggestion_applicability":null,"text":[{"highlight_end":26,"highlight_start":1,"text":"macro_rules! handler_loop { ($f:ident) => { fn main() { $crate::run($f) } }; }"}]},"macro_decl_name":"handler_loop!","span":{"byte_end":103,"byte_start":82,"column_end":22,"column_start":1,"expansion":null,"file_name":"src/main.rs","is_primary":false,"label":null,"line_end":7,"line_start":7,"suggested_replacement":null,"suggestion_applicability":null,"text":[{"highlight_end":22,"highlight_start":1,"text":"handler_loop!(handle);"}]}},"file_name":"/opt/edgegw/rust_sdk/src/lib.rs","is_primary":false,"label":"arguments to this function are incorrect","line_end":21,"line_start":21,"suggested_replacement":null,"suggestion_applicability":null,"text":[{"highlight_end":68,"highlight_start":57,"text":"macro_rules! handler_loop { ($f:ident) => { fn main() { $crate::run($f) } }; }"}]}],"code":{"code":"E0308","explanation":"Expected type did not match the received type.\\n\\nErroneous code examples:\\n\\n```compile_fail,E0308\\nfn plus_one(x: i32) -> i32 {\\n    x + 1\\n}\\n\\nplus_one(\\"Not a number\\");\\n//       ^^^^^^^^^^^^^^ expected `i32`, found `&str`\\n\\nif \\"Not a bool\\" {\\n// ^^^^^^^^^^^^ expected `bool`, found `&str`\\n}\\n\\nlet x: f32 = \\"Not a float\\";\\n//     ---   ^^^^^^^^^^^^^ expected `f32`, found `&str`\\n//     |\\n//     expected due to this\\n```\\n\\nThis error occurs when an expression was used in a place where the compiler\\nexpected an expression of a different type. It can occur in several cases, the\\nmost common being when calling a function and passing an argument which has a\\ndifferent type than the matching type in the function declaration.\\n"}}}
{"reason":"compiler-message","package_id":"path+file:///var/lib/edgegw/build/endpoints/macro#h-macro@0.1.0","manifest_path":"/var/lib/edgegw/build/endpoints/macro/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"h-macro","src_path":"/var/lib/edgegw/build/endpoints/macro/src/main.rs","edition":"2021","doc":true,"doctest":false,"test":true},"message":{"rendered":"warning: unused variable: `req`\\n --> src/main.rs:3:11\\n  |\\n3 | fn handle(req: Request) -> u32 {\\n  |           ^^^ help: if this is intentional, prefix it with an underscore: `_req`\\n  |\\n  = note: `#[warn(unused_variables)]` (part of `#[warn(unused)]`) on by default\\n\\n","$message_type":"diagnostic","children":[{"children":[],"code":null,"level":"note","message":"`#[warn(unused_variables)]` (part of `#[warn(unused)]`) on by default","rendered":null,"spans":[]},{"children":[],"code":null,"level":"help","message":"if this is intentional, prefix it with an underscore","rendered":null,"spans":[{"byte_end":53,"byte_start":50,"column_end":14,"column_start":11,"expansion":null,"file_name":"src/main.rs","is_primary":true,"label":null,"line_end":3,"line_start":3,"suggested_replacement":"_req","suggestion_applicability":"MachineApplicable","text":[{"highlight_end":14,"highlight_start":11,"text":"fn handle(req: Request) -> u32 {"}]}]}],"level":"warning","message":"unused variable: `req`","spans":[{"byte_end":53,"byte_start":50,"column_end":14,"column_start":11,"expansion":null,"file_name":"src/main.rs","is_primary":true,"label":null,"line_end":3,"line_start":3,"suggested_replacement":null,"suggestion_applicability":null,"text":[{"highlight_end":14,"highlight_start":11,"text":"fn handle(req: Request) -> u32 {"}]}],"code":{"code":"unused_variables","explanation":null}}}
{"reason":"compiler-message","package_id":"path+file:///var/lib/edgegw/build/endpoints/macro#h-macro@0.1.0","manifest_path":"/var/lib/edgegw/build/endpoints/macro/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"h-macro","src_path":"/var/lib/edgegw/build/endpoints/macro/src/main.rs","edition":"2021","doc":true,"doctest":false,"test":true},"message":{"rendered":"For more information about this error, try `rustc --explain E0308`.\\n","$message_type":"diagnostic","children":[],"level":"failure-note","message":"For more information about this error, try `rustc --explain E0308`.","spans":[],"code":null}}
{"reason":"build-finished","success":false}
"""

MAIN_RS = "/var/lib/edgegw/build/endpoints/x/src/main.rs"


def levels_and_places(diagnostics):
    return [(d["level"], d["line"], d["column"]) for d in diagnostics]


class ParseMessagesTests(SynchronousTestCase):
    """cargo's JSON lines become diagnostics in the user's own line numbers."""

    def test_errors_carry_user_line_and_column(self):
        """Each rustc error keeps its level, message and the primary span's line/column in main.rs."""
        report = parse_messages(BROKEN.splitlines(), MAIN_RS, "h-broken")
        self.assertEqual(levels_and_places(report.diagnostics), [("error", 5, 18), ("error", 6, 37)])
        self.assertEqual(report.diagnostics[0]["message"], "mismatched types")
        self.assertIn("--> src/main.rs:5:18", report.diagnostics[0]["rendered"])
        self.assertIsNone(report.executable)

    def test_rendered_text_is_plain(self):
        """With CARGO_TERM_COLOR=never the rendered text has no ANSI escapes."""
        report = parse_messages(BROKEN.splitlines(), MAIN_RS, "h-broken")
        for d in report.diagnostics:
            self.assertNotIn("\x1b", d["rendered"])

    def test_failure_notes_are_dropped(self):
        """"For more information ... rustc --explain" notes are not diagnostics."""
        report = parse_messages(BROKEN.splitlines() + MACRO.splitlines(), MAIN_RS)
        self.assertFalse([d for d in report.diagnostics if "--explain" in d["message"]])

    def test_error_inside_macro_points_at_macro_call(self):
        """An error whose primary span is inside the SDK's macro is placed on the user's handler_loop! line."""
        report = parse_messages(MACRO.splitlines(), MAIN_RS, "h-macro")
        self.assertEqual(levels_and_places(report.diagnostics), [("error", 7, 1), ("warning", 3, 11)])

    def test_warnings_of_other_crates_are_dropped(self):
        """Only the handler crate's warnings are kept; the SDK's are not the user's business."""
        report = parse_messages(WARN.splitlines(), MAIN_RS, "h-warn")
        self.assertEqual(levels_and_places(report.diagnostics), [("warning", 4, 9)])
        self.assertEqual(report.diagnostics[0]["message"], "unused variable: `unused`")

    def test_executable_is_the_handler_binary(self):
        """The binary is the handler crate's compiler-artifact executable, not a dependency's."""
        report = parse_messages(WARN.splitlines(), MAIN_RS, "h-warn")
        self.assertEqual(report.executable, "/var/lib/edgegw/build/target/release/h-warn")

    def test_noise_lines_are_skipped(self):
        """Lines that are not JSON objects, or not valid JSON, are ignored."""
        report = parse_messages([b"", b"Compiling x", b"{not json", b"[1]"], MAIN_RS)
        self.assertEqual(report.diagnostics, [])
        self.assertIsNone(report.executable)

    def test_span_outside_main_has_no_place(self):
        """A diagnostic with no span in main.rs (nor a macro call there) has null line and column."""
        line = (
            b'{"reason":"compiler-message","target":{"name":"h-x"},"message":{"level":"error",'
            b'"message":"boom","rendered":"error: boom","spans":[{"file_name":"/sdk/src/lib.rs",'
            b'"is_primary":true,"line_start":3,"column_start":1,"expansion":null}]}}'
        )
        report = parse_messages([line], MAIN_RS, "h-x")
        self.assertEqual(levels_and_places(report.diagnostics), [("error", None, None)])


class FailureDiagnosticsTests(SynchronousTestCase):
    """A failed build always explains itself."""

    def test_resolution_failure_reports_stderr(self):
        """A failure without any rustc error becomes one diagnostic from cargo's stderr."""
        out = ProcessOutput(b"", b"     Locking 11 packages\n" + RESOLVE_STDERR, 101)
        [d] = failure_diagnostics(parse_messages([], MAIN_RS), out)
        self.assertEqual(d["level"], "error")
        self.assertIsNone(d["line"])
        self.assertTrue(d["message"].startswith("error: no matching package named `chrono` found"))
        self.assertNotIn("Locking", d["message"])

    def test_rustc_errors_are_used_as_they_are(self):
        """When rustc reported errors, cargo's stderr summary is not added."""
        report = parse_messages(BROKEN.splitlines(), MAIN_RS, "h-broken")
        out = ProcessOutput(BROKEN, b"error: could not compile `h-broken`", 101)
        self.assertEqual(failure_diagnostics(report, out), report.diagnostics)

    def test_silent_failure_says_exit_code(self):
        """A failure with no output at all still gives a message naming the exit code."""
        self.assertIn("code 7", stderr_diagnostic(b"", 7)["message"])

    def test_killed_build_says_so(self):
        """A build stopped by a signal (the timeout) says it was stopped."""
        self.assertIn("signal 9", stderr_diagnostic(b"", None, 9)["message"])

    def test_compile_failed_summary(self):
        """CompileFailed is a 422 whose message is the first error with its line."""
        report = parse_messages(BROKEN.splitlines(), MAIN_RS, "h-broken")
        e = CompileFailed(report.diagnostics)
        self.assertEqual(e.status, 422)
        self.assertEqual(str(e), "line 5: mismatched types")
        self.assertEqual(e.diagnostics, report.diagnostics)


def make_executable(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(path, 0o755)
    return path


class FindCargoTests(SynchronousTestCase):
    """cargo is found where a developer or a daemon would have it, or the error says how to fix it."""

    def test_explicit_path_wins(self):
        """An explicit cargo path is used even when another cargo is on PATH."""
        base = os.path.abspath(self.mktemp())
        explicit = make_executable(os.path.join(base, "mine", "cargo"))
        make_executable(os.path.join(base, "onpath", "cargo"))
        self.assertEqual(find_cargo(explicit, path=os.path.join(base, "onpath")), explicit)

    def test_explicit_path_must_be_executable(self):
        """A wrong explicit path is an error naming it, not a silent fallback."""
        e = self.assertRaises(CargoNotFound, find_cargo, "/nonexistent/cargo", path="")
        self.assertIn("/nonexistent/cargo", str(e))

    def test_path_then_home(self):
        """cargo on PATH is preferred; ~/.cargo/bin/cargo is the fallback for a daemon without it on PATH."""
        base = os.path.abspath(self.mktemp())
        on_path = make_executable(os.path.join(base, "bin", "cargo"))
        in_home = make_executable(os.path.join(base, "home", ".cargo", "bin", "cargo"))
        home = os.path.join(base, "home")
        self.assertEqual(find_cargo(path=os.path.join(base, "bin"), home=home), on_path)
        self.assertEqual(find_cargo(path=os.path.join(base, "empty"), home=home), in_home)

    def test_missing_cargo_says_how_to_fix(self):
        """With no cargo anywhere the error tells the operator to install it or pass --cargo."""
        e = self.assertRaises(CargoNotFound, find_cargo, path="", home=self.mktemp())
        self.assertIn("rustup", str(e))
        self.assertIn("--cargo", str(e))


class EnvironmentTests(SynchronousTestCase):
    """cargo runs in an explicit environment, not the gateway's."""

    def test_child_env(self):
        """PATH starts with cargo's directory; the target dir and no-colour are set; only toolchain variables pass through."""
        env = child_env(
            "/opt/rust/bin/cargo",
            "/data/build/target",
            {"PATH": "/usr/bin:/bin", "HOME": "/root", "RUSTUP_TOOLCHAIN": "stable", "SECRET": "x", "CARGO_HOME": ""},
        )
        self.assertEqual(
            env,
            {
                "PATH": "/opt/rust/bin:/usr/bin:/bin",
                "CARGO_TARGET_DIR": "/data/build/target",
                "CARGO_TERM_COLOR": "never",
                "HOME": "/root",
                "RUSTUP_TOOLCHAIN": "stable",
            },
        )

    def test_child_env_without_path(self):
        """A gateway started with no PATH still gives cargo the system directories (for the linker)."""
        env = child_env("/c/cargo", "/t", {})
        self.assertEqual(env["PATH"], "/c:/usr/local/bin:/usr/bin:/bin")


class CrateSourceTests(SynchronousTestCase):
    """Crates come from Debian's registry when it is there, else from crates.io."""

    def test_auto(self):
        """auto picks debian when the registry has serde_json, crates-io otherwise."""
        registry = self.mktemp()
        os.makedirs(registry)
        self.assertEqual(resolve_crate_source("auto", registry), "crates-io")
        os.makedirs(os.path.join(registry, "serde_json-1.0.87"))
        self.assertEqual(resolve_crate_source("auto", registry), "debian")

    def test_explicit_and_invalid(self):
        """An explicit source is kept; anything else is a ValueError."""
        self.assertEqual(resolve_crate_source("debian", "/nonexistent"), "debian")
        self.assertEqual(resolve_crate_source("crates-io"), "crates-io")
        self.assertRaises(ValueError, resolve_crate_source, "npm")

    def test_config_written_and_removed(self):
        """debian writes .cargo/config.toml (tools/cargo-debian.toml's settings); crates-io removes it."""
        from pathlib import Path

        root = Path(self.mktemp())
        config = root / ".cargo" / "config.toml"
        write_crate_source_config(root, "debian")
        self.assertEqual(config.read_text(), DEBIAN_CARGO_CONFIG)
        self.assertIn('directory = "/usr/share/cargo/registry"', DEBIAN_CARGO_CONFIG)
        self.assertIn("offline = true", DEBIAN_CARGO_CONFIG)
        write_crate_source_config(root, "crates-io")
        self.assertFalse(config.exists())
        write_crate_source_config(root, "crates-io")
