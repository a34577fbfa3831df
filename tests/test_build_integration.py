"""
Integration tests of the build plane: real cargo, real SDK, real reactor.

They share one cargo target directory, ``<repo>/.cache/test-target`` (shared with test_integration)
(gitignored), so the suite pays the cold compile of serde and the SDK once per
machine and each test then compiles its handler in about a second.
"""

import os
from pathlib import Path

from twisted.trial.unittest import TestCase

from edgegw_tx.build import Builder, CargoNotFound, CompileFailed
from edgegw_tx.build.cargo import find_cargo

from .test_build_builder import HELLO

REPO = Path(__file__).resolve().parents[1]
SDK = REPO / "rust_sdk"
SHARED_TARGET = REPO / ".cache" / "test-target"


def _skip_reason():
    try:
        find_cargo()
    except CargoNotFound as e:
        return f"needs cargo: {e}"
    if not (SDK / "src" / "lib.rs").exists():
        return f"needs the Rust SDK at {SDK} (src/lib.rs does not exist yet)"
    return None


class RealCargoTests(TestCase):
    """Handlers compiled by the real toolchain."""

    skip = _skip_reason()
    # The first run on a machine compiles serde, serde_json and the SDK.
    timeout = 900

    def make_builder(self):
        data = os.path.abspath(self.mktemp())
        return Builder(data, SDK, target_dir=SHARED_TARGET)

    def test_hello_compiles(self):
        """The SDK's hello handler compiles to an executable stored by digest."""
        builder = self.make_builder()

        def check(result):
            self.assertFalse(result.cached)
            self.assertTrue(os.path.isfile(result.binary))
            self.assertTrue(os.access(result.binary, os.X_OK))
            self.assertEqual(builder.artifact(result.digest), result.binary)
            self.assertEqual(result.warnings, [])

        return builder.build("hello", HELLO).addCallback(check)

    def test_compile_error_has_user_line(self):
        """A type error on line 4 of the user's code is reported as a CompileFailed diagnostic on line 4."""
        code = HELLO.replace(
            "fn handle(req: Request) -> Response {\n",
            "fn handle(req: Request) -> Response {\n    let n: u32 = \"text\";\n",
        )
        d = self.make_builder().build("broken", code)

        def check(failure):
            failure.trap(CompileFailed)
            errors = [x for x in failure.value.diagnostics if x["level"] == "error"]
            self.assertEqual((errors[0]["line"], errors[0]["column"]), (4, 18))
            self.assertIn("mismatched types", errors[0]["message"])
            self.assertNotIn("\x1b", errors[0]["rendered"])

        d.addCallbacks(lambda r: self.fail(f"compiled: {r}"), check)
        return d

    def test_unchanged_code_is_cached(self):
        """Compiling the same code again is answered from the artifact store without cargo."""
        builder = self.make_builder()
        code = HELLO.replace("Hello, World!", "Hello again")
        d = builder.build("again", code)

        def second(first):
            return builder.build("again", code).addCallback(lambda again: (first, again))

        def check(results):
            first, again = results
            self.assertFalse(first.cached)
            self.assertTrue(again.cached)
            self.assertEqual(again.binary, first.binary)
            self.assertLess(again.seconds, 0.5)

        return d.addCallback(second).addCallback(check)
