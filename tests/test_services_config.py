"""
Tests for L{edgegw_tx.services.config}: validation with defaults, the field
named in each error, secret masking and merging.
"""

from twisted.trial import unittest

from edgegw_tx.services.config import (
    MASK,
    SERVICE_TYPES,
    ConfigError,
    mask,
    merge_secrets,
    validate_config,
)

PG = {"host": "db.local", "database": "app", "username": "app"}
REDIS = {"host": "127.0.0.1"}
S3 = {"backend": "s3", "bucket": "files"}
FS_STORAGE_NULLS = {name: None for name in ("endpoint", "bucket", "region", "access_key", "secret_key", "addressing_style")}


class DefaultsTests(unittest.TestCase):
    def test_types(self):
        """The four service types, in the documented order."""
        self.assertEqual(SERVICE_TYPES, ("sqlite", "postgres", "redis", "storage"))

    def test_sqlite_defaults(self):
        """sqlite: path named after the service, create_if_missing true."""
        self.assertEqual(
            validate_config("sqlite", {}, name="notes"),
            {"path": "notes.sqlite3", "create_if_missing": True},
        )

    def test_postgres_defaults(self):
        """postgres: port 5432, no password, ssl_mode prefer, pool_size 10."""
        self.assertEqual(
            validate_config("postgres", PG, name="main"),
            {
                "host": "db.local",
                "port": 5432,
                "database": "app",
                "username": "app",
                "password": None,
                "ssl_mode": "prefer",
                "pool_size": 10,
            },
        )

    def test_redis_defaults(self):
        """redis: port 6379, database 0, no TLS, pool_size 10, no credentials."""
        self.assertEqual(
            validate_config("redis", REDIS, name="cache"),
            {
                "host": "127.0.0.1",
                "port": 6379,
                "password": None,
                "username": None,
                "database": 0,
                "use_tls": False,
                "pool_size": 10,
            },
        )

    def test_storage_defaults(self):
        """storage: the filesystem backend, a folder named after the service; the S3 fields null."""
        self.assertEqual(
            validate_config("storage", None, name="files"),
            dict(FS_STORAGE_NULLS, backend="filesystem", path="files"),
        )

    def test_s3_defaults(self):
        """storage on S3: region us-east-1, path-style addressing, no endpoint (AWS), no path."""
        self.assertEqual(
            validate_config("storage", {"backend": "s3", "bucket": "my.bucket-1"}, name="files"),
            {"backend": "s3", "path": None, "endpoint": None, "bucket": "my.bucket-1",
             "region": "us-east-1", "access_key": None, "secret_key": None, "addressing_style": "path"},
        )

    def test_idempotent(self):
        """A normalised config validates to itself."""
        for service_type, config in (
            ("sqlite", {"path": "a/b.db", "create_if_missing": False}),
            ("postgres", dict(PG, password="pw", port=6000)),
            ("redis", dict(REDIS, password="x", database=3, use_tls=True)),
            ("storage", {"path": "blobs"}),
            ("storage", dict(S3, access_key="k", secret_key="s", addressing_style="virtual")),
        ):
            once = validate_config(service_type, config, name="x")
            self.assertEqual(validate_config(service_type, once, name="x"), once)

    def test_input_not_modified(self):
        """validate_config returns a new dict and leaves its argument alone."""
        config = dict(PG)
        validate_config("postgres", config, name="x")
        self.assertEqual(config, PG)


class ErrorTests(unittest.TestCase):
    def error(self, service_type, config, name="svc"):
        return self.assertRaises(ConfigError, validate_config, service_type, config, name=name)

    def test_unknown_type(self):
        """An unknown service_type names the field service_type."""
        e = self.error("mysql", {})
        self.assertEqual(e.field, "service_type")
        self.assertIn("mysql", e.message)

    def test_config_not_object(self):
        """A config that is not an object names the field config."""
        self.assertEqual(self.error("redis", [1]).field, "config")

    def test_required(self):
        """Missing required fields are named: host, database, username."""
        self.assertEqual(self.error("postgres", {}).field, "config.host")
        self.assertEqual(self.error("postgres", {"host": "h"}).field, "config.database")
        self.assertEqual(
            self.error("postgres", {"host": "h", "database": "d"}).field,
            "config.username",
        )
        self.assertEqual(self.error("redis", {}).field, "config.host")

    def test_port(self):
        """A port must be an integer from 1 to 65535; booleans and strings are refused."""
        for bad in ("5432", 0, 70000, True, 1.5):
            e = self.error("postgres", dict(PG, port=bad))
            self.assertEqual(e.field, "config.port", bad)
        self.assertEqual(str(self.error("redis", dict(REDIS, port="1"))),
                         "config.port: must be an integer, not a string")

    def test_pool_size(self):
        """pool_size is between 1 and 100."""
        self.assertEqual(self.error("redis", dict(REDIS, pool_size=0)).field, "config.pool_size")
        self.assertEqual(self.error("postgres", dict(PG, pool_size=101)).field, "config.pool_size")

    def test_ssl_mode(self):
        """ssl_mode is one of libpq's modes."""
        e = self.error("postgres", dict(PG, ssl_mode="always"))
        self.assertEqual(e.field, "config.ssl_mode")
        self.assertIn("verify-full", e.message)

    def test_booleans(self):
        """use_tls and create_if_missing are JSON booleans."""
        self.assertEqual(self.error("redis", dict(REDIS, use_tls="yes")).field, "config.use_tls")
        self.assertEqual(self.error("sqlite", {"create_if_missing": 1}).field,
                         "config.create_if_missing")

    def test_host(self):
        """A host with spaces or slashes is refused."""
        self.assertEqual(self.error("redis", {"host": "a b"}).field, "config.host")
        self.assertEqual(self.error("redis", {"host": "http://x"}).field, "config.host")
        validate_config("redis", {"host": "::1"}, name="x")

    def test_unknown_field(self):
        """Unknown fields are refused, named, with the known ones listed."""
        e = self.error("redis", dict(REDIS, hots="x"))
        self.assertEqual(e.field, "config.hots")
        self.assertIn("host", e.message)

    def test_s3_fields(self):
        """Each bad S3 field is refused, named: missing bucket, bad bucket, endpoint, region, style, half a key pair, unknown."""
        cases = {
            "bucket": ({"backend": "s3"}, "is required"),
            "endpoint": (dict(S3, endpoint="ftp://files.example"), "not an http:// or https:// URL"),
            "region": (dict(S3, region="US East"), "not a region name"),
            "addressing_style": (dict(S3, addressing_style="dns"), "'dns' is not one of path, virtual"),
            "secret_key": (dict(S3, access_key="k"), "set together"),
            "access_key": (dict(S3, secret_key="s"), "set together"),
            "acl": (dict(S3, acl="public"), "unknown field for a storage service"),
            "backend": (dict(S3, backend="gcs"), "'gcs' is not one of filesystem, s3"),
        }
        for field, (config, words) in cases.items():
            e = self.error("storage", config)
            self.assertEqual(e.field, "config." + field, config)
            self.assertIn(words, e.message, config)
        for endpoint in ("http://user:pw@host", "http://host/?q=1", "http://", "http://a b"):
            self.assertEqual(self.error("storage", dict(S3, endpoint=endpoint)).field, "config.endpoint", endpoint)
        for bucket in ("ab", "Upper", "-start", "end-", "a" * 64, "under_score"):
            self.assertEqual(self.error("storage", dict(S3, bucket=bucket)).field, "config.bucket", bucket)
        validate_config("storage", dict(S3, endpoint="https://s3.example.com:9000/base"), name="x")

    def test_fields_of_the_other_backend(self):
        """A field of one backend is refused under the other, saying which backend it needs; empty ones pass."""
        e = self.error("storage", {"bucket": "b"})
        self.assertEqual(e.field, "config.bucket")
        self.assertIn("config.backend to 's3'", e.message)
        e = self.error("storage", dict(S3, path="blobs"))
        self.assertEqual(e.field, "config.path")
        self.assertIn("config.backend to 'filesystem'", e.message)
        # What a form sends for the fields it shows empty.
        self.assertEqual(
            validate_config("storage", {"bucket": "", "addressing_style": "path", "secret_key": None}, name="f"),
            validate_config("storage", {}, name="f"),
        )

    def test_paths(self):
        """Absolute paths, '..', '.', empty segments, backslashes and control characters are refused."""
        for bad in ("/etc/x.db", "../x.db", "a/../../x", "a//b", "./x", "a\\b", "a\x00b",
                    "", "~/x", "a/"):
            for service_type in ("sqlite", "storage"):
                e = self.error(service_type, {"path": bad})
                self.assertEqual(e.field, "config.path", (service_type, bad))
        self.assertEqual(
            validate_config("storage", {"path": "team/blobs"}, name="x")["path"],
            "team/blobs",
        )

    def test_name_gives_bad_path(self):
        """A name that makes no valid default path asks for config.path."""
        e = self.error("sqlite", {}, name="../evil")
        self.assertEqual(e.field, "config.path")
        self.assertIn("set config.path", e.message)
        self.assertEqual(
            validate_config("sqlite", {"path": "ok.db"}, name="../evil")["path"], "ok.db"
        )


class SecretTests(unittest.TestCase):
    def test_mask(self):
        """Secrets that are set are masked; others are untouched; the input is not modified."""
        config = validate_config("postgres", dict(PG, password="s3cret"), name="x")
        masked = mask("postgres", config)
        self.assertEqual(masked["password"], MASK)
        self.assertEqual(masked["username"], "app")
        self.assertEqual(config["password"], "s3cret")
        self.assertEqual(mask("redis", {"host": "h", "password": None})["password"], None)
        self.assertEqual(
            mask("storage", {"access_key": "a", "secret_key": "b", "path": "p"}),
            {"access_key": MASK, "secret_key": MASK, "path": "p"},
        )
        self.assertEqual(mask("sqlite", {"path": "p"}), {"path": "p"})
        s3 = validate_config("storage", dict(S3, access_key="AKIA1", secret_key="hush"), name="x")
        self.assertEqual((mask("storage", s3)["access_key"], mask("storage", s3)["secret_key"]), (MASK, MASK))

    def test_merge_keeps_stored_secret(self):
        """A PUT sending the mask back keeps the stored secret."""
        old = validate_config("redis", dict(REDIS, password="old"), name="x")
        new = dict(mask("redis", old), port=6380)
        merged = merge_secrets("redis", new, old)
        self.assertEqual(merged["password"], "old")
        self.assertEqual(merged["port"], 6380)
        self.assertEqual(new["password"], MASK)

    def test_merge_replaces_or_clears(self):
        """A new value replaces the secret; null clears it."""
        old = {"host": "h", "password": "old"}
        self.assertEqual(merge_secrets("redis", {"host": "h", "password": "new"}, old)["password"], "new")
        self.assertIsNone(merge_secrets("redis", {"host": "h", "password": None}, old)["password"])

    def test_merge_mask_without_stored(self):
        """The mask with nothing stored drops the field rather than storing the mask."""
        merged = merge_secrets("postgres", dict(PG, password=MASK), None)
        self.assertNotIn("password", merged)
        self.assertIsNone(validate_config("postgres", merged, name="x")["password"])
