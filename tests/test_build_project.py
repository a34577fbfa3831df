"""
Tests for the generated cargo project: ids, crate names, Cargo.toml, files.
"""

import os
import tomllib
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from edgegw_tx.build.project import (
    KNOWN_CRATES,
    SDK_CRATE,
    Dependency,
    InvalidDependency,
    check_dependencies,
    dependencies,
    dependency_names,
    detect,
    manifest,
    package_name,
    strip_comments_and_literals,
    toml_string,
    validate_endpoint_id,
    write_if_changed,
    write_project,
)


class EndpointIdTests(SynchronousTestCase):
    """The endpoint id names a directory and a crate, so it is checked strictly."""

    def test_valid_ids(self):
        """Letters, digits, underscore and hyphen pass unchanged."""
        for ok in ("hello", "A-b_9", "3f2c1e0a-7b1d-4c1e-9f00-0123456789ab", "x" * 100):
            self.assertEqual(validate_endpoint_id(ok), ok)

    def test_invalid_ids(self):
        """Path separators, dots, spaces, non-ASCII, empty and over-long ids raise ValueError."""
        for bad in ("", "../x", "a/b", ".", "..", "a b", "a.b", "é", "a\n", "x" * 101, None, 5):
            self.assertRaises(ValueError, validate_endpoint_id, bad)

    def test_package_name(self):
        """The crate name is the id behind a letter prefix, hyphens kept so a-b and a_b differ."""
        self.assertEqual(package_name("123"), "h-123")
        self.assertNotEqual(package_name("a-b"), package_name("a_b"))
        self.assertRaises(ValueError, package_name, "../etc")


class ManifestTests(SynchronousTestCase):
    """Cargo.toml: the package, the SDK by absolute path, serde, serde_json, the shared profile."""

    def test_default_dependencies(self):
        """Every handler gets the SDK (absolute path), serde with derive and serde_json."""
        deps = dependencies("fn main() {}", "rust_sdk")
        doc = tomllib.loads(manifest("h-hello", deps))
        self.assertEqual(doc["package"]["name"], "h-hello")
        self.assertEqual(doc["package"]["edition"], "2021")
        self.assertEqual(
            doc["dependencies"],
            {
                SDK_CRATE: {"path": os.path.abspath("rust_sdk")},
                "serde": {"version": "1", "features": ["derive"]},
                "serde_json": "1",
            },
        )
        self.assertEqual(doc["workspace"], {})

    def test_release_profile(self):
        """The release profile optimises fully and unwinds on panic (the SDK catches panics)."""
        doc = tomllib.loads(manifest("h-x", dependencies("", "/sdk")))
        profile = doc["profile"]["release"]
        self.assertEqual(profile["opt-level"], 3)
        self.assertEqual(profile["panic"], "unwind")
        self.assertIs(profile["incremental"], False)

    def test_sdk_path_is_escaped(self):
        """An SDK path with quotes or backslashes still yields valid TOML with the same path."""
        path = '/opt/we"ird\\sdk'
        doc = tomllib.loads(manifest("h-x", dependencies("", path)))
        self.assertEqual(doc["dependencies"][SDK_CRATE]["path"], path)

    def test_extra_dependencies(self):
        """Explicit crates come after the automatic ones, sorted by name; one of the same name replaces it in place."""
        deps = dependencies("", "/sdk", {"uuid": "1", "chrono": "0.4", "serde": "1.0.152"})
        self.assertEqual([d.name for d in deps], [SDK_CRATE, "serde", "serde_json", "chrono", "uuid"])
        doc = tomllib.loads(manifest("h-x", deps))
        self.assertEqual(doc["dependencies"]["chrono"], "0.4")
        self.assertEqual(doc["dependencies"]["serde"], "1.0.152")

    def test_extra_dependencies_validated(self):
        """Crate names and versions that could break out of Cargo.toml raise ValueError."""
        for extra in ({"a b": "1"}, {'x"]\n[evil': "1"}, {"ok": '1"\npath="/etc'}, {"ok": ""}, {"ok": 1}):
            self.assertRaises(ValueError, dependencies, "", "/sdk", extra)

    def test_toml_string(self):
        """Control characters are escaped so a string stays on one line."""
        self.assertEqual(tomllib.loads("x = " + toml_string('a\n"\\\x01'))["x"], 'a\n"\\\x01')


def _names(code):
    return [d.name for d in detect(code)]


# (code, crates detected): each known crate in each form a handler may name it.
DETECTED = [
    ("let now = chrono::Utc::now();", ["chrono"]),
    ("use chrono;", ["chrono"]),
    ("use chrono::{DateTime, Utc};", ["chrono"]),
    ("use ::chrono::Utc;", ["chrono"]),
    ("extern crate chrono;", ["chrono"]),
    ("extern crate chrono as time;", ["chrono"]),
    ("pub use chrono as c;", ["chrono"]),
    ("let t: Option<chrono::DateTime<chrono::Utc>> = None;", ["chrono"]),
    ("let x = <chrono::Utc as Default>::default();", ["chrono"]),
    ("let t = chrono :: Utc::now();", ["chrono"]),
    ("let t = chrono/* odd but legal */::Utc::now();", ["chrono"]),
    ("use uuid::Uuid;", ["uuid"]),
    ("let id = uuid::Uuid::new_v4();", ["uuid"]),
    ("use {uuid::Uuid, regex::Regex};", ["uuid", "regex"]),
    ("let re = regex::Regex::new(r\"^a+$\").unwrap();", ["regex"]),
    ("let b = base64::encode(data);", ["base64"]),
    ("#[tokio::main]\nasync fn main() {}", ["tokio"]),
    ("let rt = tokio::runtime::Builder::new_current_thread();", ["tokio"]),
    # all at once, in table order whatever the order in the code
    ("base64::encode(x); regex::Regex::new(y); uuid::Uuid::nil(); chrono::Utc::now();",
     ["chrono", "uuid", "regex", "base64"]),
]

# (code, why it names no crate)
NOT_DETECTED = [
    ("// let now = chrono::Utc::now();", "line comment"),
    ("/// uses uuid::Uuid\nfn f() {}", "doc comment"),
    ("/* regex::Regex */", "block comment"),
    ("/* outer /* nested */ base64::encode */", "nested block comment"),
    ('let s = "chrono::Utc";', "string literal"),
    ('let s = "escaped \\" uuid::Uuid";', "string with an escaped quote"),
    ('let s = r"regex::Regex";', "raw string"),
    ('let s = r#"a "quoted" tokio::spawn"#;', "raw string with #"),
    ('let s = r##"one "# still inside uuid::Uuid"##;', "raw string with ## and a \"# inside"),
    ('let s = b"base64::encode";', "byte string"),
    ('let s = br#"base64::encode"#;', "raw byte string"),
    ('#[doc = "chrono::Utc"]\nfn f() {}', "attribute string"),
    ("let x = my_chrono::now();", "crate name inside an identifier"),
    ("let x = chrono_tz::UTC;", "a crate whose name starts with a known one"),
    ("let x = crate::uuid::make();", "a local module path"),
    ("let x = self::regex::compile();", "a local module path"),
    ("let uuid = 5; let chrono = uuid + 1;", "variables of the same name"),
    ("macro_rules! handler_loop_async { () => {} }", "a macro definition, not a call"),
    ("my_handler_loop_async!(h);", "a macro whose name ends like the SDK's"),
]

# Strings and chars that a naive stripper gets wrong, each followed by real code.
STRIPPER_TRAPS = [
    ("let q = '\"'; let id = uuid::Uuid::nil();", ["uuid"]),
    ("let q = '\\''; let id = uuid::Uuid::nil();", ["uuid"]),
    ("let q = '\\\\'; let id = uuid::Uuid::nil();", ["uuid"]),
    ("let q = '\\u{22}'; let id = uuid::Uuid::nil();", ["uuid"]),
    ("let q = b'\"'; let id = uuid::Uuid::nil();", ["uuid"]),
    ("fn f<'a>(s: &'a str) -> &'a str { s } fn g() { uuid::Uuid::nil(); }", ["uuid"]),
    ("fn f(s: &'static str) {} // \"\nfn g() { regex::Regex::new(\"\"); }", ["regex"]),
    ("'outer: loop { break 'outer; } chrono::Utc::now();", ["chrono"]),
    ('let s = r#"a"#; let t = base64::encode(s); let u = "x";', ["base64"]),
    ('let s = "a // not a comment"; chrono::Utc::now();', ["chrono"]),
    ('let s = "a /* not a comment"; chrono::Utc::now(); let t = "*/";', ["chrono"]),
    ('/* "not a string */ chrono::Utc::now(); // "', ["chrono"]),
    ("let r#type = 1; let id = uuid::Uuid::nil();", ["uuid"]),
    ('let s = "line one\nline two chrono::"; regex::Regex::new("");', ["regex"]),
]


class DetectionTests(SynchronousTestCase):
    """detect(code): the crates a handler names, without being fooled by comments or literals."""

    def test_known_crates(self):
        """Each known crate is found by path, use, use-group, extern crate, leading :: and attribute forms."""
        for code, expected in DETECTED:
            self.assertEqual(_names(code), expected, code)

    def test_false_positives(self):
        """Mentions in comments, strings, raw strings, identifiers and local paths add nothing."""
        for code, why in NOT_DETECTED:
            self.assertEqual(_names(code), [], why)

    def test_stripper_traps(self):
        """Char literals like '\"', escapes, lifetimes, labels and raw strings do not hide the code after them."""
        for code, expected in STRIPPER_TRAPS:
            self.assertEqual(_names(code), expected, code)

    def test_unterminated_runs_to_end(self):
        """An unterminated comment, string or raw string swallows the rest and does not crash."""
        for code in ("/* chrono::Utc", '"uuid::Uuid', 'r#"regex::Regex"', "'\\"):
            self.assertEqual(_names(code), [], code)

    def test_stripped_text_keeps_code(self):
        """Stripping keeps the code's tokens and replaces literals with \"\" and comments with a space."""
        self.assertEqual(
            strip_comments_and_literals('let s = "x"; // c\nlet c = \'"\'; /* b */ f(r#"y"#)'),
            'let s = "";  \nlet c = "";   f("")',
        )

    def test_features_and_versions(self):
        """Each known crate comes with the version and features handlers expect."""
        code = "chrono::Utc; uuid::Uuid; regex::Regex; base64::encode; tokio::spawn;"
        self.assertEqual(
            detect(code),
            [
                Dependency("chrono", "0.4", ("serde",)),
                Dependency("uuid", "1", ("v4", "serde")),
                Dependency("regex", "1"),
                Dependency("base64", "0.13"),
                Dependency("tokio", "1", ("rt", "macros", "time", "sync")),
            ],
        )
        self.assertEqual(detect(code), list(KNOWN_CRATES))

    def test_async_macros(self):
        """handler_loop_async! and handler_loop_async_result! turn on the SDK's async feature and add tokio."""
        for code in (
            "handler_loop_async!(handle);",
            "handler_loop_async_result!(handle);",
            "rust_edge_gateway_sdk::handler_loop_async !(handle);",
        ):
            self.assertEqual(
                detect(code),
                [
                    Dependency(SDK_CRATE, features=("async",)),
                    Dependency("tokio", "1", ("rt", "macros", "time", "sync")),
                ],
                code,
            )

    def test_sync_macros_need_nothing(self):
        """The plain loops and a commented-out async loop keep the SDK's defaults."""
        self.assertEqual(detect("handler_loop!(h);\nhandler_loop_result!(g);\n// handler_loop_async!(h);"), [])

    def test_tokio_once(self):
        """An async loop and tokio:: paths together give one tokio, in table order after the others."""
        self.assertEqual(
            _names("use tokio::time::sleep; uuid::Uuid::nil(); handler_loop_async!(h);"),
            [SDK_CRATE, "uuid", "tokio"],
        )


class AutomaticManifestTests(SynchronousTestCase):
    """The Cargo.toml of handlers that name crates."""

    def test_manifest_text(self):
        """A handler naming every known crate and an async loop gets exactly these lines."""
        code = "chrono::Utc; uuid::Uuid; regex::Regex; base64::encode; handler_loop_async!(h);"
        text = manifest("h-x", dependencies(code, "/sdk"))
        block = text.split("[dependencies]\n", 1)[1].split("\n\n", 1)[0]
        self.assertEqual(
            block.splitlines(),
            [
                'rust-edge-gateway-sdk = { path = "/sdk", features = ["async"] }',
                'serde = { version = "1", features = ["derive"] }',
                'serde_json = "1"',
                'chrono = { version = "0.4", features = ["serde"] }',
                'uuid = { version = "1", features = ["v4", "serde"] }',
                'regex = "1"',
                'base64 = "0.13"',
                'tokio = { version = "1", features = ["rt", "macros", "time", "sync"] }',
            ],
        )
        doc = tomllib.loads(text)
        self.assertEqual(doc["dependencies"][SDK_CRATE], {"path": "/sdk", "features": ["async"]})

    def test_reported_names(self):
        """A build reports crate names in manifest order and the SDK's features as sdk/feature."""
        self.assertEqual(
            dependency_names(dependencies("use uuid::Uuid;", "/sdk")),
            [SDK_CRATE, "serde", "serde_json", "uuid"],
        )
        self.assertEqual(
            dependency_names(dependencies("handler_loop_async!(h);", "/sdk")),
            [SDK_CRATE, SDK_CRATE + "/async", "serde", "serde_json", "tokio"],
        )

    def test_explicit_replaces_automatic(self):
        """An explicit chrono replaces the detected one in place, with exactly its own version and features."""
        deps = dependencies(
            "chrono::Utc; uuid::Uuid;",
            "/sdk",
            {"chrono": {"version": "=0.4.23", "default-features": False, "features": ["clock"]}, "anyhow": "1"},
        )
        self.assertEqual([d.name for d in deps], [SDK_CRATE, "serde", "serde_json", "chrono", "uuid", "anyhow"])
        doc = tomllib.loads(manifest("h-x", deps))["dependencies"]
        self.assertEqual(doc["chrono"], {"version": "=0.4.23", "default-features": False, "features": ["clock"]})
        self.assertEqual(doc["uuid"], {"version": "1", "features": ["v4", "serde"]})
        self.assertEqual(doc["anyhow"], "1")

    def test_explicit_tokio_keeps_sdk_feature(self):
        """Replacing tokio does not drop the SDK's async feature that the async loop needs."""
        deps = dependencies("handler_loop_async!(h);", "/sdk", {"tokio": {"version": "1", "features": ["full"]}})
        doc = tomllib.loads(manifest("h-x", deps))["dependencies"]
        self.assertEqual(doc[SDK_CRATE]["features"], ["async"])
        self.assertEqual(doc["tokio"], {"version": "1", "features": ["full"]})

    def test_sdk_cannot_be_replaced(self):
        """An explicit rust-edge-gateway-sdk (or its underscore spelling) is refused."""
        for name in (SDK_CRATE, "rust_edge_gateway_sdk", "Rust-Edge-Gateway-SDK"):
            with self.assertRaises(InvalidDependency) as caught:
                dependencies("", "/sdk", {name: "1"})
            self.assertEqual(caught.exception.key, name)


class CheckDependenciesTests(SynchronousTestCase):
    """check_dependencies: the one rule for settings.dependencies, used by the API and the builder."""

    def test_accepted(self):
        """Version strings and {version, features, default-features} objects pass, features sorted and unique."""
        given = {
            "a": "1.2",
            "b": "=0.4.23",
            "c": "^1",
            "d": ">=1.0, <2",
            "e": "1.0.0-beta.2",
            "f": "*",
            "g_h-i": "~0.3",
            "j": {"version": "1", "features": ["z", "a", "z", "x/y", "c++", "v1.2"], "default-features": False},
            "k": {"version": "2"},
        }
        checked = check_dependencies(given)
        self.assertEqual(
            checked["j"],
            {"version": "1", "features": ["a", "c++", "v1.2", "x/y", "z"], "default-features": False},
        )
        self.assertEqual(checked["k"], {"version": "2"})
        strings = {k: v for k, v in given.items() if isinstance(v, str)}
        self.assertEqual({k: v for k, v in checked.items() if isinstance(v, str)}, strings)

    def test_refused(self):
        """Each malformed entry raises InvalidDependency whose key names the offending part."""
        cases = [
            ([], ""),
            ("chrono", ""),
            ({"x%d" % i: "1" for i in range(33)}, ""),
            ({"1abc": "1"}, "1abc"),
            ({"-x": "1"}, "-x"),
            ({"a.b": "1"}, "a.b"),
            ({"x" * 65: "1"}, "x" * 61 + "..."),
            ({"": "1"}, ""),
            ({"ok": ""}, "ok"),
            ({"ok": "   "}, "ok"),
            ({"ok": "1\n"}, "ok"),
            ({"ok": '1"'}, "ok"),
            ({"ok": "1; rm"}, "ok"),
            ({"ok": "1" * 65}, "ok"),
            ({"ok": 1}, "ok"),
            ({"ok": None}, "ok"),
            ({"ok": ["1"]}, "ok"),
            ({"ok": {}}, "ok.version"),
            ({"ok": {"version": 1}}, "ok.version"),
            ({"ok": {"version": "1", "path": "/etc"}}, "ok.path"),
            ({"ok": {"version": "1", "git": "https://example.com/x.git"}}, "ok.git"),
            ({"ok": {"version": "1", "registry": "evil"}}, "ok.registry"),
            ({"ok": {"version": "1", "registry-index": "file:///"}}, "ok.registry-index"),
            ({"ok": {"version": "1", "package": "other"}}, "ok.package"),
            ({"ok": {"version": "1", "default_features": False}}, "ok.default_features"),
            ({"ok": {"version": "1", "features": "serde"}}, "ok.features"),
            ({"ok": {"version": "1", "features": ["a b"]}}, "ok.features"),
            ({"ok": {"version": "1", "features": ['x"]']}}, "ok.features"),
            ({"ok": {"version": "1", "features": [""]}}, "ok.features"),
            ({"ok": {"version": "1", "features": [1]}}, "ok.features"),
            ({"ok": {"version": "1", "default-features": "no"}}, "ok.default-features"),
            ({SDK_CRATE: "1"}, SDK_CRATE),
        ]
        for value, key in cases:
            with self.assertRaises(InvalidDependency, msg=repr(value)[:80]) as caught:
                check_dependencies(value)
            self.assertEqual(caught.exception.key, key, repr(value)[:80])
            self.assertIsInstance(caught.exception, ValueError)


class WriteTests(SynchronousTestCase):
    """Project files are written verbatim, and left alone when unchanged."""

    def test_code_is_verbatim(self):
        """main.rs holds exactly the user's code, so rustc's lines are the user's lines."""
        code = "// line 1\r\n\tfn main() {}\n\n"
        root = Path(self.mktemp())
        main_rs = write_project(root, "[package]\n", code)
        self.assertEqual(main_rs, root / "src" / "main.rs")
        self.assertEqual(main_rs.read_bytes(), code.encode())
        self.assertEqual((root / "Cargo.toml").read_text(), "[package]\n")

    def test_unchanged_file_keeps_mtime(self):
        """Writing the same text again does not touch the file (cargo fingerprints by mtime)."""
        path = Path(self.mktemp()) / "f"
        write_if_changed(path, "a")
        os.utime(path, (1, 1))
        write_if_changed(path, "a")
        self.assertEqual(path.stat().st_mtime, 1)
        write_if_changed(path, "b")
        self.assertEqual(path.read_text(), "b")
        self.assertEqual(os.listdir(path.parent), ["f"])

    def test_crlf_code_is_not_rewritten(self):
        """Code with CRLF line ends compares byte for byte, so an unchanged file stays untouched."""
        path = Path(self.mktemp()) / "main.rs"
        write_if_changed(path, "a\r\nb")
        os.utime(path, (1, 1))
        write_if_changed(path, "a\r\nb")
        self.assertEqual(path.stat().st_mtime, 1)
        self.assertEqual(path.read_bytes(), b"a\r\nb")
