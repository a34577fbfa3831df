"""
Tests for the generated cargo project: ids, crate names, Cargo.toml, files.
"""

import os
import tomllib
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from edgegw_tx.build.project import (
    SDK_CRATE,
    dependencies,
    manifest,
    package_name,
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
        """Extra crates are added sorted by name with their version; the base set cannot be overridden."""
        deps = dependencies("", "/sdk", {"uuid": "1", "chrono": "0.4", "serde": "0.9"})
        self.assertEqual([d.name for d in deps], [SDK_CRATE, "serde", "serde_json", "chrono", "uuid"])
        doc = tomllib.loads(manifest("h-x", deps))
        self.assertEqual(doc["dependencies"]["chrono"], "0.4")
        self.assertEqual(doc["dependencies"]["serde"]["version"], "1")

    def test_extra_dependencies_validated(self):
        """Crate names and versions that could break out of Cargo.toml raise ValueError."""
        for extra in ({"a b": "1"}, {'x"]\n[evil': "1"}, {"ok": '1"\npath="/etc'}, {"ok": ""}, {"ok": 1}):
            self.assertRaises(ValueError, dependencies, "", "/sdk", extra)

    def test_toml_string(self):
        """Control characters are escaped so a string stays on one line."""
        self.assertEqual(tomllib.loads("x = " + toml_string('a\n"\\\x01'))["x"], 'a\n"\\\x01')


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
