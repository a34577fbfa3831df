"""
``edgegw backup`` and ``edgegw restore`` (edgegw_tx/cli/backup.py) on data
directories made here: what a backup holds and leaves out, that the store's
copy is one consistent state while it is written, and that a restore puts
everything back into an empty data directory or refuses, changing nothing.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import stat
import tarfile
import threading
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from edgegw_tx.cli import backup
from edgegw_tx.cli.commands import run
from edgegw_tx.datadir_lock import DataDirLock
from edgegw_tx.store.sqlite import FILE_NAME, SCHEMA_VERSION
from edgegw_tx.store.sqlite_schema import migrate

DIGEST_WHOLE = "a" * 64
DIGEST_PARTIAL = "b" * 64


def _store(path: str, endpoints: int = 2) -> sqlite3.Connection:
    """A store with the real schema (write-ahead log, as the gateway keeps it) and ``endpoints`` rows; left open."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    # No checkpoint: the rows stay in the -wal file, where a plain copy of the file would miss them.
    connection.execute("PRAGMA wal_autocheckpoint=0")
    cursor = connection.cursor()
    migrate(cursor, path, "2026-12-07T00:00:00Z")
    cursor.execute("COMMIT")
    for n in range(endpoints):
        _insert_endpoint(connection, n)
    return connection


def _insert_endpoint(connection: sqlite3.Connection, n: int) -> None:
    """One endpoint row (fields the schema requires)."""
    connection.execute(
        "INSERT INTO endpoints (id, name, path, path_shape, method, domain, status, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, 'GET', '*', 'stopped', 'now', 'now')",
        (f"e{n}", f"hello{n}", f"/h{n}", f"/h{n}"),
    )


def _write(path: str, data: bytes, mode: int = 0o600) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def _data_dir(test: unittest.TestCase) -> tuple[str, list[sqlite3.Connection]]:
    """
    A data directory as a running gateway leaves it: the store and a
    service's database open, whole and half-written artifacts, a storage
    service with an object being written, and the folders it makes again.
    """
    data_dir = os.path.abspath(test.mktemp())
    os.makedirs(data_dir)
    store = _store(os.path.join(data_dir, FILE_NAME))
    os.makedirs(os.path.join(data_dir, "services"))
    notes = sqlite3.connect(os.path.join(data_dir, "services", "notes.db"), isolation_level=None)
    notes.execute("PRAGMA journal_mode=WAL")
    notes.execute("PRAGMA wal_autocheckpoint=0")
    notes.execute("CREATE TABLE notes (text TEXT)")
    notes.execute("INSERT INTO notes VALUES ('remember the milk')")
    test.addCleanup(store.close)
    test.addCleanup(notes.close)
    _write(os.path.join(data_dir, "admin.key"), b"egw_admin_secret\n")
    _write(os.path.join(data_dir, "stats-history.json"), b"[]")
    _write(os.path.join(data_dir, "artifacts", DIGEST_WHOLE, "handler"), b"\x7fELF binary", 0o755)
    _write(os.path.join(data_dir, "artifacts", DIGEST_WHOLE, "build.json"), b"{}", 0o644)
    _write(os.path.join(data_dir, "artifacts", DIGEST_WHOLE, ".handler.x1y2"), b"half")
    _write(os.path.join(data_dir, "artifacts", DIGEST_PARTIAL, "build.json"), b"{}")
    _write(os.path.join(data_dir, "services", "files", "objects", "a", "b.txt"), b"object")
    _write(os.path.join(data_dir, "services", "files", "meta", "a", "b.txt"), b"{}")
    _write(os.path.join(data_dir, "services", "files", "tmp", "upload-1"), b"half an object")
    _write(os.path.join(data_dir, "build", "target", "release", "big"), b"cache")
    _write(os.path.join(data_dir, "sandbox", "e0", "scratch"), b"scratch")
    _write(os.path.join(data_dir, "last-known.sqlite3"), b"snapshot")
    _write(os.path.join(data_dir, "edgegw.lock"), b"123\n")
    return data_dir, [store, notes]


def _names(path: str) -> list[str]:
    with tarfile.open(path) as tar:
        return [m.name for m in tar if m.isfile()]


def _rows(path: str, sql: str) -> list[Any]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


class BackupTests(unittest.TestCase):
    """What ``make_backup`` writes."""

    def test_holds_what_the_gateway_cannot_rebuild(self) -> None:
        """
        The backup holds the manifest first, the store (with the rows still in
        its write-ahead log), the admin key, the dashboard's history, whole
        artifacts and the services' files; not half-written artifacts or
        objects, nor build/, sandbox/, the lock or a node's snapshot.
        """
        data_dir, _ = _data_dir(self)
        target = os.path.join(os.path.abspath(self.mktemp()) + ".tar")
        summary = backup.make_backup(data_dir, target)
        names = _names(target)
        self.assertEqual(names[0], backup.MANIFEST)
        self.assertEqual(
            sorted(names[1:]),
            sorted(
                [
                    FILE_NAME,
                    "admin.key",
                    "stats-history.json",
                    f"artifacts/{DIGEST_WHOLE}/build.json",
                    f"artifacts/{DIGEST_WHOLE}/handler",
                    "services/files/meta/a/b.txt",
                    "services/files/objects/a/b.txt",
                    "services/notes.db",
                ]
            ),
        )
        self.assertEqual((summary.endpoints, summary.artifacts, summary.schema), (2, 1, SCHEMA_VERSION))
        with tarfile.open(target) as tar:
            manifest = json.load(tar.extractfile(backup.MANIFEST))  # type: ignore[arg-type]
            scratch = self.mktemp()
            tar.extractall(scratch, filter="data")
        self.assertEqual((manifest["format"], manifest["schema"], manifest["endpoints"]), (1, SCHEMA_VERSION, 2))
        self.assertEqual(len(_rows(os.path.join(scratch, FILE_NAME), "SELECT id FROM endpoints")), 2)
        self.assertEqual(
            _rows(os.path.join(scratch, "services", "notes.db"), "SELECT text FROM notes"), [("remember the milk",)]
        )

    def test_file_is_private_and_replaced_whole(self) -> None:
        """The backup file is mode 0600 (it holds the admin key); an existing one is replaced, no temporary file stays."""
        data_dir, _ = _data_dir(self)
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        target = os.path.join(folder, "b.tar.gz")
        _write(target, b"old backup", 0o644)
        backup.make_backup(data_dir, target)
        self.assertEqual(stat.S_IMODE(os.stat(target).st_mode), 0o600)
        self.assertEqual(os.listdir(folder), ["b.tar.gz"])
        with tarfile.open(target, "r:gz") as tar:
            self.assertEqual(tar.getnames()[0], backup.MANIFEST)

    def test_store_copy_is_consistent_while_written(self) -> None:
        """
        While another connection inserts endpoints two per transaction, each
        backup's store is one state: an even number of rows, and a sound file.
        """
        data_dir, (store, _) = _data_dir(self)
        done = threading.Event()
        written = [2]

        def write() -> None:
            while not done.is_set():
                n = written[0]
                store.execute("BEGIN")
                _insert_endpoint(store, n)
                _insert_endpoint(store, n + 1)
                store.execute("COMMIT")
                written[0] = n + 2

        writer = threading.Thread(target=write)
        writer.start()
        try:
            counts = []
            for attempt in range(5):
                target = os.path.abspath(self.mktemp()) + ".tar"
                counts.append(backup.make_backup(data_dir, target).endpoints)
                scratch = self.mktemp()
                with tarfile.open(target) as tar:
                    tar.extract(FILE_NAME, scratch, filter="data")
                copy = os.path.join(scratch, FILE_NAME)
                self.assertEqual(_rows(copy, "PRAGMA integrity_check"), [("ok",)])
                self.assertEqual(_rows(copy, "SELECT COUNT(*) FROM endpoints"), [(counts[-1],)])
        finally:
            done.set()
            writer.join()
        self.assertEqual([c % 2 for c in counts], [0] * 5)
        self.assertGreater(counts[-1], 2, "the writer wrote during the backups")

    def test_without_a_store_it_points_to_pg_dump(self) -> None:
        """A data dir without the SQLite store (a cluster node's, or a wrong path) is refused, naming pg_dump."""
        data_dir = os.path.abspath(self.mktemp())
        os.makedirs(data_dir)
        with self.assertRaises(backup.BackupFailed) as caught:
            backup.make_backup(data_dir, data_dir + ".tar")
        self.assertIn("holds no store", caught.exception.message)
        self.assertIn("pg_dump", caught.exception.message)
        self.assertFalse(os.path.exists(data_dir + ".tar"))

    def test_stopped_leaves_nothing(self) -> None:
        """Ctrl-C (the stop event) ends the backup between files and removes the half-written file."""
        data_dir, _ = _data_dir(self)
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        stop = threading.Event()
        stop.set()
        self.assertRaises(backup._Stopped, backup.make_backup, data_dir, os.path.join(folder, "b.tar"), stop)
        self.assertEqual(os.listdir(folder), [])


class RestoreTests(unittest.TestCase):
    """What ``restore_backup`` puts back, and what it refuses."""

    def _backup(self) -> tuple[str, str]:
        data_dir, _ = _data_dir(self)
        target = os.path.abspath(self.mktemp()) + ".tar.gz"
        backup.make_backup(data_dir, target)
        return data_dir, target

    def test_round_trip_into_an_empty_dir(self) -> None:
        """
        Restored files equal the backed-up ones (the store with its rows),
        private to the user (0600 files, 0700 folders); the lock is released
        and no staging folder stays.
        """
        data_dir, target = self._backup()
        restored = os.path.abspath(self.mktemp())
        os.makedirs(restored)
        summary = backup.restore_backup(target, restored)
        self.assertEqual((summary.endpoints, summary.artifacts, summary.schema), (2, 1, SCHEMA_VERSION))
        for name in ("admin.key", f"artifacts/{DIGEST_WHOLE}/handler", "services/files/objects/a/b.txt"):
            with open(os.path.join(data_dir, name), "rb") as a, open(os.path.join(restored, name), "rb") as b:
                self.assertEqual(a.read(), b.read(), name)
        self.assertEqual(len(_rows(os.path.join(restored, FILE_NAME), "SELECT id FROM endpoints")), 2)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(restored, "admin.key")).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(restored, "artifacts")).st_mode), 0o700)
        self.assertEqual(
            sorted(os.listdir(restored)),
            sorted([FILE_NAME, "admin.key", "stats-history.json", "artifacts", "services", "edgegw.lock"]),
        )
        lock = DataDirLock(restored)
        lock.acquire()  # released by the restore
        lock.release()

    def test_policies_and_consumers_are_restored(self) -> None:
        """A restored store keeps every level's policy, the consumers and their key hashes."""
        data_dir, (store, _) = _data_dir(self)
        policy = '{"cors": {"allow_origins": ["https://app.example.com"]}}'
        store.execute("UPDATE endpoints SET policy = ? WHERE id = 'e0'", (policy,))
        store.execute(
            "INSERT INTO domains (id, host, created_at, updated_at, policy) VALUES ('d1', 'a.example', 't', 't', ?)",
            (policy,),
        )
        store.execute(
            "INSERT INTO consumers (id, name, enabled, created_at, updated_at) VALUES ('u1', 'mobile', 0, 't', 't')"
        )
        store.execute("INSERT INTO consumer_keys (id, consumer_id, key_hash, created_at) VALUES ('k1', 'u1', 'h1', 't')")
        target = os.path.abspath(self.mktemp()) + ".tar"
        backup.make_backup(data_dir, target)
        restored = os.path.abspath(self.mktemp())
        backup.restore_backup(target, restored)
        path = os.path.join(restored, FILE_NAME)
        self.assertEqual(_rows(path, "SELECT policy FROM endpoints WHERE id = 'e0'"), [(policy,)])
        self.assertEqual(_rows(path, "SELECT policy FROM domains"), [(policy,)])
        self.assertEqual(_rows(path, "SELECT name, enabled FROM consumers"), [("mobile", 0)])
        self.assertEqual(_rows(path, "SELECT consumer_id, key_hash FROM consumer_keys"), [("u1", "h1")])

    def test_into_a_new_dir(self) -> None:
        """A data dir that does not exist yet is created (mode 0700)."""
        _, target = self._backup()
        restored = os.path.join(os.path.abspath(self.mktemp()), "var")
        os.makedirs(os.path.dirname(restored))
        backup.restore_backup(target, restored)
        self.assertEqual(stat.S_IMODE(os.stat(restored).st_mode), 0o700)
        self.assertTrue(os.path.isfile(os.path.join(restored, FILE_NAME)))

    def test_refuses_a_dir_that_is_not_empty(self) -> None:
        """A data dir with anything in it is refused, naming it; it is left as it was."""
        _, target = self._backup()
        restored = os.path.abspath(self.mktemp())
        _write(os.path.join(restored, "edgegw.sqlite3"), b"someone's store")
        with self.assertRaises(backup.BackupFailed) as caught:
            backup.restore_backup(target, restored)
        self.assertIn(f"{restored} is not empty (edgegw.sqlite3)", caught.exception.message)
        self.assertEqual(os.listdir(restored), ["edgegw.sqlite3"])

    def _tar(self, members: dict[str, bytes]) -> str:
        path = os.path.abspath(self.mktemp()) + ".tar"
        with tarfile.open(path, "w") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path

    def _refused(self, source: str) -> str:
        restored = os.path.join(os.path.abspath(self.mktemp()), "var")
        os.makedirs(os.path.dirname(restored))
        with self.assertRaises(backup.BackupFailed) as caught:
            backup.restore_backup(source, restored)
        self.assertFalse(os.path.exists(restored), "nothing is left behind")
        return caught.exception.message

    def test_refuses_a_newer_schema(self) -> None:
        """A backup of a store with a migration this edgegw does not know is refused: upgrade first."""
        manifest = json.dumps({"format": 1, "schema": SCHEMA_VERSION + 1}).encode()
        message = self._refused(self._tar({backup.MANIFEST: manifest, FILE_NAME: b""}))
        self.assertIn(f"schema {SCHEMA_VERSION + 1}, this one knows up to {SCHEMA_VERSION}", message)
        self.assertIn("upgrade edgegw", message)

    def test_refuses_what_is_not_a_backup(self) -> None:
        """A file that is no tar, a tar without the manifest first, and a missing file are refused, each saying so."""
        junk = os.path.abspath(self.mktemp())
        _write(junk, b"not a tar at all")
        self.assertIn("is not an edgegw backup", self._refused(junk))
        self.assertIn(f"no {backup.MANIFEST} at its start", self._refused(self._tar({"x": b"1"})))
        self.assertIn("there is no file", self._refused(junk + ".missing"))

    def test_refuses_members_outside_the_data_dir(self) -> None:
        """A member that is not one of a backup's (``../``, anything else) is refused and nothing is restored."""
        manifest = json.dumps({"format": 1, "schema": 1}).encode()
        for name in ("../escape", "artifacts/../../escape", "bin/sh"):
            message = self._refused(self._tar({backup.MANIFEST: manifest, FILE_NAME: b"", name: b"x"}))
            self.assertIn("is not an edgegw backup", message)
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(self.mktemp()), "escape")))


class CommandTests(unittest.TestCase):
    """``edgegw backup`` and ``edgegw restore`` through the command line."""

    def _command(self, argv: list[str]) -> Any:
        out, err = io.StringIO(), io.StringIO()
        d = run(argv, environ={}, stdout=out, stderr=err)
        return d.addCallback(lambda code: (code, out.getvalue(), err.getvalue()))

    @inlineCallbacks
    def test_backup_then_restore(self) -> Any:
        """``backup`` says what it wrote (exit 0); ``restore`` puts it back and says how to start; no key is needed."""
        data_dir, _ = _data_dir(self)
        target = os.path.abspath(self.mktemp()) + ".tar"
        code, out, err = yield self._command(["backup", target, "--data-dir", data_dir])
        self.assertEqual((code, err), (0, ""))
        self.assertRegex(out, r"^backed up 2 endpoints, 1 compiled handlers and 8 files \(store schema \d+\) to .*: ")
        restored = os.path.abspath(self.mktemp())
        code, out, err = yield self._command(["restore", target, "--data-dir", restored])
        self.assertEqual((code, err), (0, ""))
        self.assertIn(f"restored 2 endpoints, 1 compiled handlers and 8 files (store schema {SCHEMA_VERSION})", out)
        self.assertIn(f"start the gateway with --data-dir {restored}", out)

    @inlineCallbacks
    def test_refusals_are_one_line(self) -> Any:
        """A refused restore and a backup of a dir with no store: ``error: ...``, exit 2, no traceback."""
        data_dir, _ = _data_dir(self)
        code, out, err = yield self._command(["restore", "nowhere.tar", "--data-dir", data_dir])
        self.assertEqual((code, out), (2, ""))
        self.assertEqual(err, f"error: {data_dir} is not empty (admin.key, artifacts, build, ...): restore into"
                         " a new or empty data directory\n")
        empty = os.path.abspath(self.mktemp())
        code, out, err = yield self._command(["backup", "x.tar", "--data-dir", empty])
        self.assertEqual(code, 2)
        self.assertTrue(err.startswith(f"error: {empty} holds no store"), err)

    @inlineCallbacks
    def test_help_has_an_example(self) -> Any:
        """``backup --help`` and ``restore --help`` each end with an example."""
        for command in ("backup", "restore"):
            code, out, _ = yield self._command([command, "--help"])
            self.assertEqual(code, 0)
            self.assertIn("example:", out)
            self.assertIn(f"edgegw {command} ", out.split("example:")[1])
