"""
Tests for the build sandbox (edgegw_tx/build/sandbox.py, docs/isolation.md "Builds").

Unit tests pin the command line builds run in, on a fake process reactor.
Integration tests compile hostile handlers with real cargo in real bubblewrap
(as root, like the gateway in production) and try to read the host, eat
memory and reach the network.  They share the suite's target directory.
"""

import json
import os
import re
import shutil
import stat
from pathlib import Path

from twisted.internet.defer import inlineCallbacks
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from edgegw_tx import tap
from edgegw_tx.build import Builder, BuildError, CargoNotFound, CompileFailed
from edgegw_tx.build import sandbox as sandbox_module
from edgegw_tx.build.cargo import find_cargo, parse_messages, run, stderr_diagnostic, without_foreign_source
from edgegw_tx.build.sandbox import (
    BUILD_LIMITS,
    DEFAULT_BUILD_USER,
    BuildSandbox,
    BuildUser,
    SandboxError,
    find_tools,
    resolve_build_user,
)

from tests.support.builds import HELLO, TOOLCHAIN, ProcessReactor, artifact_line, executable

REPO = Path(__file__).resolve().parents[1]
SDK = REPO / "rust_sdk"
SHARED_TARGET = REPO / ".cache" / "test-target"
TOOLS = {"bwrap": "/usr/bin/bwrap", "prlimit": "/usr/bin/prlimit", "setpriv": "/usr/bin/setpriv"}
USER = BuildUser(61000, 61000)

# Real rustc 1.95 output for `#[path = "/tmp/sbx/shadow"] mod x;` with a
# readable file whose first line is a shadow entry (compiled without the
# sandbox, to capture what the filter must remove); `code` shortened.
SHADOW_LINE = "root:$y$j9T$SECRETHASH:19000:0:99999:7:::"
INCLUDED = [
    {
        "reason": "compiler-message",
        "target": {"kind": ["bin"], "name": "h-raw"},
        "message": {
            "rendered": "error: expected one of `!` or `::`, found `:`\n --> /tmp/sbx/shadow:1:5\n  |\n"
            "1 | root:$y$j9T$SECRETHASH:19000:0:99999:7:::\n  |     ^ expected one of `!` or `::`\n\n",
            "$message_type": "diagnostic",
            "children": [],
            "level": "error",
            "message": "expected one of `!` or `::`, found `:`",
            "spans": [
                {
                    "column_end": 6, "column_start": 5, "expansion": None, "file_name": "/tmp/sbx/shadow",
                    "is_primary": True, "label": "expected one of `!` or `::`", "line_end": 1, "line_start": 1,
                    "text": [{"highlight_end": 6, "highlight_start": 5, "text": SHADOW_LINE}],
                }
            ],
            "code": None,
        },
    },
    {
        "reason": "compiler-message",
        "target": {"kind": ["bin"], "name": "h-raw"},
        "message": {
            "rendered": "error[E0425]: cannot find value `root` in this scope\n --> /tmp/sbx/shadow:1:1\n  |\n"
            "1 | root:$y$j9T$SECRETHASH:19000:0:99999:7:::\n  | ^^^^ not found in this scope\n\n",
            "$message_type": "diagnostic",
            "children": [],
            "level": "error",
            "message": "cannot find value `root` in this scope",
            "spans": [
                {
                    "column_end": 5, "column_start": 1, "expansion": None, "file_name": "/tmp/sbx/shadow",
                    "is_primary": True, "label": "not found in this scope", "line_end": 1, "line_start": 1,
                    "text": [{"highlight_end": 5, "highlight_start": 1, "text": SHADOW_LINE}],
                }
            ],
            "code": {"code": "E0425", "explanation": "An unresolved name was used."},
        },
    },
]


def options_after(argv, option):
    """Every value that follows ``option`` in ``argv``."""
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == option]


def command_of(argv):
    """What runs inside: everything after the last ``--`` (setpriv's)."""
    last = len(argv) - 1 - argv[::-1].index("--")
    return argv[last + 1 :]


class ArgvTests(SynchronousTestCase):
    """The command line a build runs in."""

    def argv(self, user=USER, **kw):
        kw.setdefault("cwd", "/data/build/endpoints/e1")
        kw.setdefault("env", {"PATH": "/sysroot/bin:/usr/bin:/bin", "CARGO_HOME": "/data/build/cargo-home"})
        kw.setdefault("read_only", ["/sysroot", "/sdk", "/data/build/endpoints/e1"])
        kw.setdefault("writable", ["/data/build/endpoints/e1/Cargo.lock", "/data/build/target", "/data/build/cargo-home"])
        return BuildSandbox(TOOLS, user, exists=lambda p: p == "/etc/alternatives").argv(["/sysroot/bin/cargo", "build"], **kw)

    def test_layers(self):
        """bwrap runs prlimit, which runs setpriv, which runs cargo: each with its options, in that order."""
        argv = self.argv()
        self.assertEqual(argv[0], "/usr/bin/bwrap")
        prlimit = argv.index("/usr/bin/prlimit")
        setpriv = argv.index("/usr/bin/setpriv")
        self.assertEqual(argv[prlimit - 1], "--")
        self.assertLess(prlimit, setpriv)
        self.assertEqual(command_of(argv), ["/sysroot/bin/cargo", "build"])

    def test_only_the_builds_inputs_are_visible(self):
        """Bound are the system dirs, /etc/alternatives, and exactly the given paths; never /, the data dir or /etc."""
        argv = self.argv()
        ro = options_after(argv, "--ro-bind")
        rw = options_after(argv, "--bind")
        self.assertEqual(rw, ["/data/build/endpoints/e1/Cargo.lock", "/data/build/target", "/data/build/cargo-home"])
        self.assertEqual(
            [p for p in ro if not p.startswith("/usr")], ["/etc/alternatives", "/sysroot", "/sdk", "/data/build/endpoints/e1"]
        )
        for hidden in ("/", "/data", "/data/build", "/etc", "/root", "/home", "/var", "/run"):
            self.assertNotIn(hidden, ro + rw)

    def test_fresh_proc_private_tmp_no_network(self):
        """A new pid namespace with its own /proc, a private /tmp, a network namespace of its own, no session."""
        argv = self.argv()
        for option in ("--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--new-session", "--clearenv"):
            self.assertIn(option, argv)
        self.assertEqual(options_after(argv, "--proc"), ["/proc"])
        self.assertEqual(options_after(argv, "--tmpfs"), ["/tmp"])
        self.assertNotIn("--share-net", argv)
        self.assertNotIn("--unshare-user", argv)  # as root bwrap needs none, and setpriv must switch users

    def test_network_only_when_asked(self):
        """network=True (cargo fetch) keeps the host's network and shows the resolver files."""
        argv = BuildSandbox(TOOLS, USER, exists=lambda p: True).argv(["cargo", "fetch"], cwd="/p", env={}, network=True)
        self.assertNotIn("--unshare-net", argv)
        self.assertIn("/etc/resolv.conf", options_after(argv, "--ro-bind"))

    def test_parents_are_passable(self):
        """Each parent of a bound path is made 0755 once (bwrap would make it 0700, closed to the build user)."""
        argv = self.argv()
        made = [argv[i + 3] for i, a in enumerate(argv) if a == "--perms" and argv[i + 2] == "--dir"]
        self.assertEqual(made, ["/etc", "/data", "/data/build", "/data/build/endpoints"])
        self.assertEqual({argv[i + 1] for i, a in enumerate(argv) if a == "--perms" and argv[i + 2] == "--dir"}, {"0755"})

    def test_limits(self):
        """prlimit sets every BUILD_LIMITS entry, soft = hard."""
        argv = self.argv()
        between = argv[argv.index("/usr/bin/prlimit") + 1 : argv.index("/usr/bin/setpriv") - 1]
        self.assertEqual(between, [f"{o}={v}:{v}" for o, (v, _) in BUILD_LIMITS.items()])
        self.assertEqual(set(BUILD_LIMITS), {"--as", "--cpu", "--fsize", "--nproc"})

    def test_build_user(self):
        """As root, setpriv drops to the build user with no groups, no capabilities and no_new_privs."""
        argv = self.argv()
        setpriv = argv[argv.index("/usr/bin/setpriv") + 1 : len(argv) - len(command_of(argv)) - 1]
        self.assertEqual(
            setpriv,
            ["--no-new-privs", "--reuid=61000", "--regid=61000", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"],
        )

    def test_not_root(self):
        """Without root bwrap makes a user namespace and the uid stays the gateway's."""
        argv = self.argv(user=None)
        self.assertIn("--unshare-user", argv)
        self.assertFalse([a for a in argv if a.startswith("--reuid")])

    def test_environment_is_exactly_env(self):
        """The environment inside is cleared, then exactly the given variables."""
        argv = self.argv(env={"A": "1", "B": "two"})
        self.assertIn("--clearenv", argv)
        pairs = [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == "--setenv"]
        self.assertEqual(pairs, [("A", "1"), ("B", "two")])


class UserAndToolTests(SynchronousTestCase):
    """--build-user and the tools the gateway needs to start."""

    def test_default_outside_worker_range(self):
        """The default build uid is not root, not nobody and outside the default worker uids 61184-65519."""
        uid = resolve_build_user(DEFAULT_BUILD_USER).uid
        self.assertFalse(61184 <= uid <= 65519)
        self.assertNotIn(uid, (0, 65534))

    def test_specs(self):
        """A uid, uid:gid or user name resolves; root and unknown names are refused naming the spec."""
        self.assertEqual(resolve_build_user("61000:61001"), BuildUser(61000, 61001))
        self.assertEqual(resolve_build_user("nobody").uid, 65534)
        for bad in ("0", "root", "61000:0", "no-such-user-here"):
            e = self.assertRaises(SandboxError, resolve_build_user, bad)
            self.assertIn(repr(bad), str(e))

    def test_missing_tool_is_named(self):
        """Without bwrap on the tool path the error names bwrap and bubblewrap."""
        empty = self.mktemp()
        os.mkdir(empty)
        e = self.assertRaises(SandboxError, find_tools, empty)
        self.assertIn("bwrap", str(e))
        self.assertIn("bubblewrap", str(e))

    def test_gateway_refuses_to_start_without_bwrap(self):
        """twistd edgegw stops at its options with a message naming bwrap when it cannot sandbox builds."""
        bin_dir = self.mktemp()
        os.mkdir(bin_dir)
        for tool in ("setsid", "prlimit", "setpriv"):
            os.symlink(shutil.which(tool), os.path.join(bin_dir, tool))
        self.patch(sandbox_module, "TOOL_PATH", bin_dir)
        e = self.assertRaises(usage.UsageError, tap.Options().parseOptions, ["--data-dir", self.mktemp()])
        self.assertIn("bwrap", str(e))

    def test_not_root_without_user_namespaces(self):
        """Not root on a kernel without unprivileged user namespaces, the gateway refuses to start: builds could not be sandboxed."""
        if shutil.which("bwrap") is None:
            raise self.skipTest("needs bwrap")
        self.patch(os, "geteuid", lambda: 1000)
        self.patch(tap, "user_namespaces_allowed", lambda: False)
        e = self.assertRaises(usage.UsageError, tap.Options().parseOptions, ["--data-dir", self.mktemp()])
        self.assertIn("user namespace", str(e))

    def test_build_user_must_not_be_a_workers(self):
        """--build-user inside --worker-uids, or root, is refused at start."""
        if os.geteuid() != 0 or shutil.which("bwrap") is None:
            raise self.skipTest("as root with bwrap (the gateway resolves users only as root)")
        for spec in ("62000", "0"):
            e = self.assertRaises(usage.UsageError, tap.Options().parseOptions, ["--build-user", spec])
            self.assertIn("build user" if spec == "0" else "--worker-uids", str(e))


class PrepareTests(SynchronousTestCase):
    """The directories the build user writes."""

    def setUp(self):
        if os.geteuid() != 0:
            raise self.skipTest("re-owning files needs root")
        self.base = Path(os.path.abspath(self.mktemp()))
        self.base.mkdir()

    def test_writable_dirs_become_the_build_users(self):
        """A target dir left by root builds is handed over whole; a link in it is re-owned itself, not followed."""
        target = self.base / "target"
        (target / "release" / "deps").mkdir(parents=True)
        (target / "release" / "deps" / "libx.rlib").write_bytes(b"x")
        outside = self.base / "outside"
        outside.write_text("root's")
        (target / "release" / "planted").symlink_to(outside)
        BuildSandbox(TOOLS, USER).prepare([str(target), str(self.base / "home")])
        for path in (target, target / "release", target / "release" / "deps" / "libx.rlib", self.base / "home"):
            self.assertEqual((path.lstat().st_uid, path.lstat().st_gid), (61000, 61000), path)
        self.assertEqual((target / "release" / "planted").lstat().st_uid, 61000)
        self.assertEqual(outside.stat().st_uid, 0)
        self.assertEqual(stat.S_IMODE((self.base / "home").stat().st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(target.stat().st_mode), 0o700)

    def test_a_file_deleted_during_the_walk_is_skipped(self):
        """
        A file another build deletes between the directory listing and its
        re-owning (a target dir shared by two gateways) is skipped, and the
        rest is still handed over.
        """
        target = self.base / "target"
        (target / "release").mkdir(parents=True)
        gone = target / "release" / "gone.d"
        gone.write_bytes(b"x")
        (target / "release" / "kept").write_bytes(b"x")
        real_walk = os.walk

        def walk_then_delete(top, *args, **kwargs):
            for root, dirs, names in real_walk(top, *args, **kwargs):
                if gone.exists() and gone.name in names:
                    gone.unlink()
                yield root, dirs, names

        self.patch(os, "walk", walk_then_delete)
        BuildSandbox(TOOLS, USER).prepare([str(target)])
        self.assertEqual((target / "release" / "kept").lstat().st_uid, 61000)

    def test_lock_file(self):
        """Cargo.lock is created for the build user; a link planted in its place is not followed."""
        lock = self.base / "Cargo.lock"
        BuildSandbox(TOOLS, USER).prepare([], [str(lock)])
        self.assertEqual(lock.stat().st_uid, 61000)
        lock.unlink()
        lock.symlink_to(self.base / "elsewhere")
        self.assertRaises(OSError, BuildSandbox(TOOLS, USER).prepare, [], [str(lock)])
        self.assertFalse((self.base / "elsewhere").exists())


class SandboxedBuilderTests(SynchronousTestCase):
    """Builder with a sandbox, on a fake process reactor."""

    def setUp(self):
        self.base = Path(os.path.realpath(self.mktemp()))
        self.sysroot = self.base / "sysroot"
        self.cargo = executable(str(self.base / "proxy" / "cargo"))
        executable(str(self.base / "proxy" / "rustc"))
        executable(str(self.sysroot / "bin" / "cargo"))
        self.sdk = self.base / "sdk"
        (self.sdk / "src").mkdir(parents=True)
        (self.sdk / "Cargo.toml").write_text('[package]\nname = "rust-edge-gateway-sdk"\nversion = "0.1.0"\n')
        self.data = self.base / "data"
        self.reactor = ProcessReactor()
        user = USER if os.geteuid() == 0 else None
        self.sandbox = BuildSandbox(TOOLS, user)

    def builder(self, **kw):
        kw.setdefault("crate_source", "debian")
        return Builder(self.data, self.sdk, cargo=self.cargo, reactor=self.reactor, sandbox=self.sandbox, **kw)

    def start(self, builder, endpoint="e1", code=HELLO):
        d = builder.build(endpoint, code)
        rustc = self.reactor.children[-1]
        self.assertEqual(rustc.args[1:], ["-vV"])
        rustc.out(TOOLCHAIN)
        rustc.exit(0)
        sysroot = self.reactor.children[-1]
        self.assertEqual(sysroot.args[1:], ["--print", "sysroot"])
        sysroot.out(str(self.sysroot).encode() + b"\n")
        sysroot.exit(0)
        return d

    def test_cargo_runs_in_the_sandbox(self):
        """cargo of the sysroot (not rustup's proxy) runs in bwrap, seeing its project, the SDK, the registry, target and home."""
        builder = self.builder()
        self.start(builder)
        cargo = self.reactor.children[-1]
        self.assertEqual(cargo.args[0], "/usr/bin/bwrap")
        self.assertEqual(command_of(cargo.args), [str(self.sysroot / "bin" / "cargo"), "build", "--release", "--message-format=json"])
        project = str(self.data / "build" / "endpoints" / "e1")
        ro, rw = options_after(cargo.args, "--ro-bind"), options_after(cargo.args, "--bind")
        self.assertEqual(
            [p for p in ro if not p.startswith(("/usr", "/etc"))],
            [str(self.sysroot), str(self.sdk), str(self.data / "build" / ".cargo"), project],
        )
        self.assertIn("/usr/share/cargo/registry", ro)
        self.assertEqual(rw, [project + "/Cargo.lock", str(self.data / "build" / "target"), str(self.data / "build" / "cargo-home")])
        self.assertIn("--unshare-net", cargo.args)
        self.assertEqual(cargo.env["RUSTC"], str(self.sysroot / "bin" / "rustc"))
        self.assertEqual(cargo.env["CARGO_HOME"], str(self.data / "build" / "cargo-home"))
        self.assertEqual(stat.S_IMODE((self.data / "build").stat().st_mode), 0o700)

    def test_crates_io_fetches_then_builds_offline(self):
        """With crates.io, `cargo fetch` runs with the network (it runs no code), then the build runs offline without it."""
        builder = self.builder(crate_source="crates-io")
        d = self.start(builder)
        fetch = self.reactor.children[-1]
        self.assertEqual(command_of(fetch.args)[1:], ["fetch"])
        self.assertNotIn("--unshare-net", fetch.args)
        fetch.exit(0)
        build = self.reactor.children[-1]
        self.assertEqual(command_of(build.args)[1:], ["build", "--release", "--message-format=json", "--offline"])
        self.assertIn("--unshare-net", build.args)
        build.exit(101)
        self.failureResultOf(d, CompileFailed)

    def test_binary_is_taken_and_removed_from_shared_target(self):
        """The binary is stored, then deleted from the shared target dir (with its deps/ copy) so no other build can include it."""
        builder = self.builder()
        d = self.start(builder)
        release = self.data / "build" / "target" / "release"
        binary = executable(str(release / "h-e1"), b"binary")
        executable(str(release / "deps" / "h_e1-0123abcd"), b"binary")
        executable(str(release / "deps" / "h_e10-0123abcd"), b"other endpoint")
        self.reactor.children[-1].out(artifact_line("h-e1", binary))
        self.reactor.children[-1].exit(0)
        result = self.successResultOf(d)
        self.assertEqual(Path(result.binary).read_bytes(), b"binary")
        self.assertEqual(sorted(os.listdir(release)), ["deps"])
        self.assertEqual(os.listdir(release / "deps"), ["h_e10-0123abcd"])

    def test_planted_link_is_not_followed(self):
        """A symlink in the target dir where the binary should be fails the build; the link's target is not stored."""
        builder = self.builder()
        d = self.start(builder)
        release = self.data / "build" / "target" / "release"
        release.mkdir(parents=True)
        secret = self.base / "secret"
        secret.write_text("admin key")
        (release / "h-e1").symlink_to(secret)
        self.reactor.children[-1].out(artifact_line("h-e1", str(release / "h-e1")))
        self.reactor.children[-1].exit(0)
        self.assertIn("h-e1", str(self.failureResultOf(d, BuildError).value))
        self.assertFalse((self.data / "artifacts").exists() and any((self.data / "artifacts").rglob("handler")))

    def test_executable_elsewhere_is_refused(self):
        """An executable path outside <target>/release/<package> is refused, not copied."""
        builder = self.builder()
        d = self.start(builder)
        elsewhere = executable(str(self.base / "elsewhere" / "h-e1"))
        self.reactor.children[-1].out(artifact_line("h-e1", elsewhere))
        self.reactor.children[-1].exit(0)
        self.assertIn(elsewhere, str(self.failureResultOf(d, BuildError).value))

    def test_user_code_cannot_add_build_code(self):
        """The project is the generated Cargo.toml and the code as src/main.rs: no build.rs, no [lib] or proc-macro, no build key."""
        import tomllib

        code = HELLO + '// build = "build.rs"\n// [lib]\n// proc-macro = true\n'
        self.start(self.builder(), code=code)
        project = self.data / "build" / "endpoints" / "e1"
        files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
        self.assertEqual(files, ["Cargo.lock", "Cargo.toml", "src/main.rs"])
        manifest = tomllib.loads((project / "Cargo.toml").read_text())
        self.assertNotIn("build", manifest["package"])
        self.assertEqual(set(manifest), {"package", "dependencies", "profile", "workspace"})

    def test_lock_file_is_the_build_users(self):
        """The project's Cargo.lock exists before cargo runs and belongs to the build user; main.rs stays root's."""
        if os.geteuid() != 0:
            raise self.skipTest("ownership needs root")
        self.start(self.builder())
        project = self.data / "build" / "endpoints" / "e1"
        self.assertEqual((project / "Cargo.lock").stat().st_uid, 61000)
        self.assertEqual((project / "src" / "main.rs").stat().st_uid, 0)
        self.assertEqual((self.data / "build" / "target").stat().st_uid, 61000)


class ForeignSourceTests(SynchronousTestCase):
    """Diagnostics never quote a file other than the user's main.rs."""

    def test_included_file_is_not_quoted(self):
        """Errors in a file pulled in by #[path] or include! name it and its line but show none of its text."""
        report = parse_messages([json.dumps(m) for m in INCLUDED], "/data/build/endpoints/e1/src/main.rs", "h-raw")
        self.assertEqual(len(report.diagnostics), 2)
        for d in report.diagnostics:
            text = json.dumps(d)
            self.assertNotIn("SECRETHASH", text)
            self.assertNotIn("root", text)
            self.assertIn("/tmp/sbx/shadow:1:", d["rendered"])
        self.assertEqual(report.diagnostics[1]["message"], "cannot find value `…` in this scope")

    def test_own_source_is_still_quoted(self):
        """The user's own lines stay in rendered, also beside a foreign (SDK) snippet that is removed."""
        rendered = (
            "error[E0308]: mismatched types\n --> src/main.rs:7:1\n  |\n7 | handler_loop!(handle);\n  | ^^^^^\n"
            "note: function defined here\n --> /opt/sdk/src/lib.rs:9:8\n  |\n9 | pub fn run(f: fn(Request) -> Response) {\n"
            "  |        ^^^\n  = note: this error originates in the macro `handler_loop`\n"
        )
        out = without_foreign_source(rendered, "/p/src/main.rs")
        self.assertIn("7 | handler_loop!(handle);", out)
        self.assertNotIn("pub fn run", out)
        self.assertIn("--> /opt/sdk/src/lib.rs:9:8", out)
        self.assertIn("= note: this error originates", out)

    def test_suggestion_lines_of_foreign_file(self):
        """Suggestion lines (`12 + text`, `12 - text`, `...`) of a foreign file are removed too."""
        rendered = "help: try\n  --> /etc/secret.rs:12:1\n   |\n12 - old secret\n12 + new secret\n...\n"
        self.assertNotIn("secret\n", without_foreign_source(rendered, "src/main.rs").replace("/etc/secret.rs", ""))

    def test_stderr_fallback(self):
        """cargo's stderr, shown when rustc said nothing in JSON, loses foreign source lines too."""
        stderr = b"error: expected item\n --> /etc/shadow:1:1\n  |\n1 | root:$y$SECRET\n  | ^^^^\n"
        d = stderr_diagnostic(stderr, 101, main_rs="/p/src/main.rs")
        self.assertNotIn("SECRET", d["message"] + d["rendered"])
        self.assertIn("/etc/shadow:1:1", d["message"])


class DocsTests(SynchronousTestCase):
    """docs/isolation.md says what the code does."""

    def test_limits_table(self):
        """Each BUILD_LIMITS value appears in the Builds section as prlimit sets it."""
        text = (REPO / "docs" / "isolation.md").read_text()
        builds = text[text.index("## Builds") :]
        for option, (value, _) in BUILD_LIMITS.items():
            self.assertIn(f"`{option}={value}`", builds)
        self.assertIn(f"`--build-user` (default `{DEFAULT_BUILD_USER}`)", builds)


# -- integration: real cargo, real bubblewrap ---------------------------------


def _skip_reason():
    if os.geteuid() != 0:
        return "the build sandbox switches users: run as root"
    try:
        find_tools()
        find_cargo()
    except (SandboxError, CargoNotFound) as e:
        return str(e)
    return None


# One compile: rustc reports every include_str!/include_bytes! failure at once.
READS = """use rust_edge_gateway_sdk::prelude::*;
const KEY: &str = include_str!("{data}/admin.key");
const STORE: &[u8] = include_bytes!("{data}/edgegw.sqlite3");
const INIT: &[u8] = include_bytes!("/proc/1/environ");
const GATEWAY: &[u8] = include_bytes!("/proc/{pid}/environ");
const SHADOW: &str = include_str!("/etc/shadow");
const OTHER: &[u8] = include_bytes!("{data}/build/endpoints/other/src/main.rs");

fn handle(req: Request) -> Response {{
    Response::ok(json!({{"k": KEY, "s": STORE.len(), "i": INIT.len(), "g": GATEWAY.len(), "sh": SHADOW, "o": OTHER.len(), "p": req.path}}))
}}

handler_loop!(handle);
"""


class HostReadIntegrationTests(TestCase):
    """Hostile handlers compiled for real in the sandbox."""

    skip = _skip_reason()
    timeout = 900

    def setUp(self):
        self.data = Path(os.path.abspath(self.mktemp()))
        self.builder = Builder(self.data, SDK, target_dir=SHARED_TARGET)
        self.data.mkdir(parents=True)
        self.key = "edgegw-admin-SECRET-0123456789"
        (self.data / "admin.key").write_text(self.key)
        (self.data / "edgegw.sqlite3").write_bytes(b"SQLite format 3\x00 service-password-SECRET")
        other = self.data / "build" / "endpoints" / "other" / "src"
        other.mkdir(parents=True)
        (other / "main.rs").write_text('const TOKEN: &str = "other-endpoint-SECRET";')

    def assertNoSecret(self, diagnostics):
        text = json.dumps(diagnostics)
        self.assertNotIn("SECRET", text)
        with open("/etc/shadow") as f:
            first = f.readline().strip()
        self.assertNotIn(first, text)
        hash_ = first.split(":")[1] if ":" in first else ""
        if len(hash_) > 3:  # "*" or "!" (no password) could be anywhere
            self.assertNotIn(hash_, text)

    @inlineCallbacks
    def test_reads_outside_the_sandbox_fail_naming_the_path(self):
        """include_str!/include_bytes! of the admin key, the store, /proc/1 and the gateway's environ, /etc/shadow and another endpoint's source each fail, naming the path and quoting nothing."""
        code = READS.format(data=os.path.realpath(self.data), pid=os.getpid())
        e = yield self.assertFailure(self.builder.build("reads", code), CompileFailed)
        errors = [d for d in e.diagnostics if d["level"] == "error"]
        wanted = ["admin.key", "edgegw.sqlite3", "/proc/1/environ", f"/proc/{os.getpid()}/environ", "/etc/shadow", "other/src/main.rs"]
        self.assertEqual(len(errors), len(wanted), errors)
        for name, d in zip(wanted, errors):
            self.assertRegex(d["message"], r"^couldn't read `[^`]*" + re.escape(name) + "`")
        self.assertEqual([d["line"] for d in errors], [2, 3, 4, 5, 6, 7])
        self.assertNoSecret(e.diagnostics)

    @inlineCallbacks
    def test_path_module_of_shadow(self):
        """`#[path = "/etc/shadow"] mod x;` fails naming the file; the diagnostic carries none of it."""
        code = '#[path = "/etc/shadow"]\nmod x;\n' + HELLO
        e = yield self.assertFailure(self.builder.build("pathmod", code), CompileFailed)
        self.assertIn("/etc/shadow", e.diagnostics[0]["message"])
        self.assertEqual(e.diagnostics[0]["line"], 2)
        self.assertNoSecret(e.diagnostics)

    @inlineCallbacks
    def test_dev_zero_stops_at_the_memory_limit(self):
        """include_bytes!("/dev/zero") fails at the address-space limit with an error naming the file; the gateway goes on."""
        code = HELLO.replace("fn handle", 'const Z: &[u8] = include_bytes!("/dev/zero");\nfn handle').replace(
            '"method": req.method', '"method": req.method, "z": Z.len()'
        )
        e = yield self.assertFailure(self.builder.build("zero", code), CompileFailed)
        self.assertIn("/dev/zero", str(e))
        self.assertIn("out of memory", e.diagnostics[0]["message"])
        result = yield self.builder.build("after-zero", HELLO)
        self.assertTrue(os.path.isfile(result.binary))

    @inlineCallbacks
    def test_build_leaves_no_binary_in_shared_target(self):
        """A built handler's binary is in the artifacts and no longer in the shared target dir; build/ is root's 0700."""
        code = HELLO + "// leaves no binary\n"
        result = yield self.builder.build("leaves", code)
        self.assertTrue(os.path.isfile(result.binary))
        self.assertFalse((SHARED_TARGET / "release" / "h-leaves").exists())
        self.assertFalse(list((SHARED_TARGET / "release" / "deps").glob("h_leaves-*")))
        self.assertEqual(stat.S_IMODE((self.data / "build").stat().st_mode), 0o700)
        self.assertEqual((SHARED_TARGET / "release").stat().st_uid, resolve_build_user(DEFAULT_BUILD_USER).uid)

    @inlineCallbacks
    def test_inside_the_sandbox(self):
        """The builder's own command line, running a shell instead of cargo: build uid, no groups, no network, only its own processes, no data dir."""
        yield self.builder.toolchain()
        project = self.data / "build" / "endpoints" / "probe"
        (project / "src").mkdir(parents=True)
        self.builder.sandbox.prepare([], [str(project / "Cargo.lock")])
        argv, env = self.builder.sandboxed_argv(project, ("build",))
        script = (
            "id -u; id -G; "
            "(echo > /dev/tcp/127.0.0.1/5432) 2>/dev/null && echo postgres-reached || echo postgres-unreachable; "
            "ls /proc | grep -c '^[0-9]'; "
            f"ls {os.path.realpath(self.data)}; ls {os.path.realpath(self.data)}/build; ls /etc"
        )
        argv = argv[: len(argv) - len(command_of(argv))] + ["/bin/bash", "-c", script]
        out = yield run(self._reactor(), argv, env, str(project), 60)
        lines = out.stdout.decode().split()
        uid = str(resolve_build_user(DEFAULT_BUILD_USER).uid)
        self.assertEqual(lines[:3], [uid, uid, "postgres-unreachable"], out.stderr)
        self.assertLessEqual(int(lines[3]), 4)  # bwrap's init, bash, ls, grep
        self.assertEqual(lines[4:], ["build", "cargo-home", "endpoints", "alternatives"])

    def _reactor(self):
        from twisted.internet import reactor

        return reactor
