"""Command-line options of `twistd edgegw`."""

from twisted.python.usage import UsageError
from twisted.trial import unittest

from edgegw_tx.tap import Options


class OptionsTests(unittest.TestCase):
    def test_defaults(self):
        """With no options the gateway uses ./var, port 9080 and loopback port 9081."""
        options = Options()
        options.parseOptions([])
        self.assertEqual(options["data-dir"], "./var")
        self.assertEqual(options["listen"], "tcp:9080")
        self.assertEqual(options["admin-listen"], "tcp:9081:interface=127.0.0.1")
        self.assertEqual(options["max-frame"], 16 * 1024 * 1024)

    def test_bad_listen_string(self):
        """A listen option that is not an endpoint string is a usage error naming it."""
        error = self.assertRaises(UsageError, Options().parseOptions, ["--listen", "nonsense:1"])
        self.assertIn("--listen 'nonsense:1' is not a server endpoint string", str(error))
        error = self.assertRaises(UsageError, Options().parseOptions, ["--admin-listen", "tcp:abc"])
        self.assertIn("--admin-listen", str(error))

    def test_bad_crate_source(self):
        """Only auto, debian and crates-io are crate sources."""
        error = self.assertRaises(UsageError, Options().parseOptions, ["--crates", "npm"])
        self.assertIn("--crates must be one of", str(error))

    def test_missing_sdk(self):
        """An --sdk directory without a Cargo.toml is refused."""
        error = self.assertRaises(UsageError, Options().parseOptions, ["--sdk", self.mktemp()])
        self.assertIn("no Cargo.toml", str(error))

    def test_cargo_must_be_executable(self):
        """An --cargo path that cannot be executed is refused."""
        error = self.assertRaises(
            UsageError, Options().parseOptions, ["--cargo", "/nonexistent/cargo"]
        )
        self.assertIn("not an executable file", str(error))

    def test_max_frame_must_be_a_sane_number(self):
        """--max-frame must be a number of at least 1024 bytes."""
        self.assertRaises(UsageError, Options().parseOptions, ["--max-frame", "lots"])
        self.assertRaises(UsageError, Options().parseOptions, ["--max-frame", "10"])
