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

    def test_metrics_listen(self):
        """``--metrics-listen`` is off by default, takes an endpoint string, and refuses one that is not."""
        options = Options()
        options.parseOptions([])
        self.assertIsNone(options["metrics-listen"])
        options = Options()
        options.parseOptions(["--metrics-listen", "tcp:9090:interface=127.0.0.1"])
        self.assertEqual(options["metrics-listen"], "tcp:9090:interface=127.0.0.1")
        error = self.assertRaises(UsageError, Options().parseOptions, ["--metrics-listen", "tcp:abc"])
        self.assertIn("--metrics-listen 'tcp:abc' is not a server endpoint string", str(error))

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

    def test_processes_default_to_one(self):
        """Without --processes the gateway runs one process, which serves the data plane itself."""
        options = Options()
        options.parseOptions([])
        self.assertEqual(options["processes"], 1)
        options = Options()
        options.parseOptions(["--processes", "4"])
        self.assertEqual(options["processes"], 4)

    def test_processes_must_be_a_positive_whole_number(self):
        """--processes 0, -1 or abc is a usage error that says what is expected."""
        for value, expected in (
            ("0", "--processes must be at least 1 (got 0)"),
            ("-1", "--processes must be at least 1 (got -1)"),
            ("abc", "--processes must be a whole number of processes (1 or more), not 'abc'"),
            ("1.5", "--processes must be a whole number"),
        ):
            error = self.assertRaises(UsageError, Options().parseOptions, ["--processes", value])
            self.assertIn(expected, str(error))

    def test_several_processes_need_a_tcp_listen_string(self):
        """--processes above 1 with a unix --listen is a usage error naming both; with 1 it is fine."""
        error = self.assertRaises(
            UsageError, Options().parseOptions, ["--processes", "2", "--listen", "unix:/tmp/edgegw.sock"]
        )
        self.assertIn("--listen 'unix:/tmp/edgegw.sock' cannot be shared", str(error))
        self.assertIn("tcp: or tcp6:", str(error))
        Options().parseOptions(["--processes", "1", "--listen", "unix:/tmp/edgegw.sock"])
        Options().parseOptions(["--processes", "2", "--listen", "tcp6:9080"])

    def test_make_service_passes_the_processes(self):
        """makeService gives the runtime the number of processes."""
        from edgegw_tx import tap

        made = []
        self.patch(tap, "GatewayRuntime", lambda **kwargs: made.append(kwargs))
        options = Options()
        options.parseOptions(["--processes", "3", "--data-dir", self.mktemp()])
        tap.makeService(options)
        self.addCleanup(made[0]["data_dir_lock"].release)
        self.assertEqual(made[0]["processes"], 3)

    def test_limits_reach_the_runtime(self):
        """--max-body, --max-headers, --max-header-bytes, --header-timeout,
        --body-timeout, --idle-timeout, --admin-max-body, --admin-header-timeout and
        --admin-body-timeout are given to the runtime."""
        from edgegw_tx import tap

        made = []
        self.patch(tap, "GatewayRuntime", lambda **kwargs: made.append(kwargs))
        options = Options()
        options.parseOptions(
            ["--max-body", "1000", "--max-headers", "20", "--max-header-bytes", "4096",
             "--header-timeout", "2.5", "--body-timeout", "45", "--idle-timeout", "30",
             "--admin-max-body", "5000", "--admin-header-timeout", "3.5", "--admin-body-timeout", "90",
             "--data-dir", self.mktemp()]
        )
        tap.makeService(options)
        self.addCleanup(made[0]["data_dir_lock"].release)
        self.assertEqual(
            made[0]["http_limits"],
            {"max_body": 1000, "max_headers": 20, "max_head": 4096, "header_timeout": 2.5,
             "body_timeout": 45.0, "idle_timeout": 30.0},
        )
        self.assertEqual(made[0]["admin_max_body"], 5000)
        self.assertEqual(made[0]["admin_header_timeout"], 3.5)
        self.assertEqual(made[0]["admin_body_timeout"], 90.0)

    def test_limit_defaults_are_documented_ones(self):
        """Without options the limits are those of docs/limits.md."""
        options = Options()
        options.parseOptions([])
        self.assertEqual(
            options["http-limits"],
            {"max_body": 16 * 1024 * 1024, "max_headers": 100, "max_head": 65536, "header_timeout": 10.0,
             "body_timeout": 60.0, "idle_timeout": 60.0},
        )
        self.assertEqual(options["admin-max-body"], 8 * 1024 * 1024)
        self.assertEqual(options["admin-header-timeout"], 10.0)
        self.assertEqual(options["admin-body-timeout"], 300.0)

    def test_bad_limits_are_usage_errors(self):
        """Zero, negative, NaN and words are refused naming the option."""
        for argv, message in (
            (["--max-body", "0"], "--max-body must be more than 0"),
            (["--max-headers", "many"], "--max-headers must be a whole number, not 'many'"),
            (["--header-timeout", "-1"], "--header-timeout must be more than 0"),
            (["--body-timeout", "0"], "--body-timeout must be more than 0"),
            (["--idle-timeout", "nan"], "--idle-timeout must be more than 0"),
            (["--admin-max-body", "1.5"], "--admin-max-body must be a whole number"),
            (["--admin-header-timeout", "0"], "--admin-header-timeout must be more than 0"),
            (["--admin-body-timeout", "inf"], "--admin-body-timeout must be more than 0"),
        ):
            error = self.assertRaises(UsageError, Options().parseOptions, argv)
            self.assertIn(message, str(error))


class StoreOptionTests(unittest.TestCase):
    """``--store`` and ``--node-name``: the cluster's options (docs/cluster.md)."""

    def made(self, args):
        """The runtime keywords makeService would use for ``args`` (the lock released at cleanup)."""
        from edgegw_tx import tap

        made = []
        self.patch(tap, "GatewayRuntime", lambda **kwargs: made.append(kwargs))
        options = Options()
        options.parseOptions(args)
        tap.makeService(options)
        self.addCleanup(made[0]["data_dir_lock"].release)
        return made[0]

    def test_default_store_is_the_data_dirs_sqlite_file(self):
        """Without --store the store is edgegw.sqlite3 in the data dir, and the node has no name given."""
        import os

        data_dir = self.mktemp()
        made = self.made(["--data-dir", data_dir])
        self.assertEqual(made["store_spec"].kind, "sqlite")
        self.assertEqual(made["store_spec"].path, os.path.abspath(os.path.join(data_dir, "edgegw.sqlite3")))
        self.assertIsNone(made["node_name"])

    def test_postgresql_store_and_node_name(self):
        """A postgresql:// URI and --node-name reach the runtime (the server is checked first)."""
        from edgegw_tx import tap

        checked = []
        self.patch(tap, "check_store", lambda spec, snapshot: checked.append((spec, snapshot)))
        data_dir = self.mktemp()
        made = self.made(["--data-dir", data_dir, "--store", "postgresql://gw:secret@db:5432/edgegw",
                          "--node-name", " n1 "])
        self.assertEqual(made["store_spec"].kind, "postgresql")
        self.assertEqual(made["store_spec"].uri, "postgresql://gw:secret@db:5432/edgegw")
        self.assertEqual(made["node_name"], "n1")
        self.assertEqual(checked[0][1][-len("last-known.sqlite3"):], "last-known.sqlite3")

    def test_bad_store_is_a_usage_error(self):
        """A --store that is neither sqlite:PATH nor a PostgreSQL URI is a usage error naming it."""
        for value in ("mysql://x@h/db", "nonsense", "postgresql://h"):
            error = self.assertRaises(UsageError, Options().parseOptions, ["--store", value])
            self.assertIn("--store", str(error))

    def test_bad_node_name(self):
        """An empty or unprintable --node-name is a usage error."""
        for value in ("", "   ", "a\nb", "x" * 201):
            error = self.assertRaises(UsageError, Options().parseOptions, ["--node-name", value])
            self.assertIn("--node-name", str(error))

    def test_unreachable_store_stops_twistd_with_one_line(self):
        """
        An unreachable PostgreSQL server and no last-known configuration: makeService
        exits with one line naming the store (no password), and frees the data dir.
        """
        from edgegw_tx import tap
        from edgegw_tx.datadir_lock import DataDirLock

        options = Options()
        data_dir = self.mktemp()
        # Port 1 on loopback: nothing listens, the connection is refused at once.
        options.parseOptions(["--data-dir", data_dir, "--store", "postgresql://gw:secret@127.0.0.1:1/edgegw"])
        error = self.assertRaises(SystemExit, tap.makeService, options)
        message = str(error)
        self.assertIn("postgresql://gw@127.0.0.1:1/edgegw", message)
        self.assertNotIn("secret", message)
        self.assertNotIn("\n", message)
        lock = DataDirLock(data_dir)
        lock.acquire()
        lock.release()

    def test_unreachable_store_with_snapshot_starts(self):
        """With a last-known configuration in the data dir, an unreachable store is a notice, not an exit."""
        import os

        from edgegw_tx import tap

        data_dir = self.mktemp()
        os.makedirs(data_dir)
        with open(os.path.join(data_dir, "last-known.sqlite3"), "wb"):
            pass
        made = []
        self.patch(tap, "GatewayRuntime", lambda **kwargs: made.append(kwargs))
        options = Options()
        options.parseOptions(["--data-dir", data_dir, "--store", "postgresql://gw@127.0.0.1:1/edgegw"])
        import io
        import sys

        said = io.StringIO()
        self.patch(sys, "stderr", said)
        tap.makeService(options)
        self.addCleanup(made[0]["data_dir_lock"].release)
        self.assertEqual(made[0]["store_spec"].where, "postgresql://gw@127.0.0.1:1/edgegw")
        self.assertIn("starting from the last-known configuration", said.getvalue())

    def test_access_log_and_health_path(self):
        """``--access-log`` is off by default and made absolute; ``--health-path`` is /healthz, or none."""
        options = Options()
        options.parseOptions([])
        self.assertIsNone(options["access-log"])
        self.assertIsNone(options["access-log-max-bytes"])
        self.assertEqual(options["health-path"], "/healthz")
        folder = self.mktemp()
        import os

        os.mkdir(folder)
        options = Options()
        options.parseOptions(
            ["--access-log", os.path.join(folder, "a.log"), "--access-log-max-bytes", "1000", "--health-path", "none"]
        )
        self.assertEqual(options["access-log"], os.path.abspath(os.path.join(folder, "a.log")))
        self.assertEqual(options["access-log-max-bytes"], 1000)
        self.assertIsNone(options["health-path"])
        options = Options()
        options.parseOptions(["--access-log", "-"])
        self.assertEqual(options["access-log"], "-")

    def test_bad_access_log_and_health_path(self):
        """Each bad value is a usage error naming its option."""
        cases = [
            (["--access-log", "/nonexistent/dir/a.log"], "the directory /nonexistent/dir does not exist"),
            (["--access-log-max-bytes", "100"], "--access-log-max-bytes needs --access-log"),
            (["--access-log", "-", "--access-log-max-bytes", "100"], "needs a file"),
            (["--access-log", "-", "--access-log-max-bytes", "-1"], "--access-log-max-bytes"),
            (["--health-path", "healthz"], "--health-path must be an absolute path"),
        ]
        for argv, message in cases:
            error = self.assertRaises(UsageError, Options().parseOptions, argv)
            self.assertIn(message, str(error))

    def test_shutdown_delay(self):
        """``--shutdown-delay`` is 0 by default, seconds as a float, and reaches the runtime."""
        options = Options()
        options.parseOptions([])
        self.assertEqual(options["shutdown-delay"], 0.0)
        options = Options()
        options.parseOptions(["--shutdown-delay", "12.5"])
        self.assertEqual(options["shutdown-delay"], 12.5)
        from edgegw_tx import tap

        made = []
        self.patch(tap, "GatewayRuntime", lambda **kwargs: made.append(kwargs))
        self.patch(tap, "check_store", lambda spec, snapshot: None)
        options = Options()
        options.parseOptions(["--data-dir", self.mktemp(), "--shutdown-delay", "7"])
        tap.makeService(options)
        self.addCleanup(made[0]["data_dir_lock"].release)
        self.assertEqual(made[0]["shutdown_delay"], 7.0)

    def test_bad_shutdown_delay(self):
        """A negative, infinite or non-numeric --shutdown-delay is a usage error naming the option."""
        for bad in ("-1", "soon", "inf", "nan", ""):
            error = self.assertRaises(UsageError, Options().parseOptions, ["--shutdown-delay", bad])
            self.assertIn("--shutdown-delay must be a number of seconds, 0 or more", str(error))
