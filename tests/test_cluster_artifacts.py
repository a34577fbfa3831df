"""
Tests for compile-once in a cluster: ``edgegw_tx.cluster.artifacts`` and the
``Builder``'s ``shared`` hook, with two builders (two nodes' data dirs) over
one fake artifact store, a fake cargo and a Clock.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from edgegw_tx.build import Builder, CompileFailed
from edgegw_tx.build.artifacts import ArtifactStore
from edgegw_tx.cluster.artifacts import ArtifactCorrupt, SharedArtifacts
from edgegw_tx.store.errors import StoreUnavailable
from edgegw_tx.store.interface import IArtifactStore
from tests.support.builds import HELLO, TOOLCHAIN, ProcessReactor, artifact_line, executable
from tests.support.interfaces import verify_fake

DIGEST = "ab" * 32


class FakeArtifactStore:
    """Binaries and build claims in memory; claims age by ``clock``; ``down`` makes every call fail."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.artifacts: dict[str, dict[str, Any]] = {}
        self.claims: dict[str, tuple[str, float]] = {}
        self.down = False
        #: Who holds the claim of a digest nobody claimed yet (a node that died while compiling it).
        self.held_before: tuple[str, float] | None = None

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("postgresql://u@h/db", "connection refused")

    def put_artifact(self, digest: str, data: bytes, metadata: dict[str, Any], node: str) -> "Deferred[None]":
        self._check()
        self.artifacts.setdefault(digest, {
            "digest": digest, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "data": data,
            "metadata": metadata, "node": node, "created_at": "2026-12-07T00:00:00Z",
        })
        return succeed(None)

    def get_artifact(self, digest: str) -> "Deferred[dict[str, Any] | None]":
        try:
            self._check()
        except StoreUnavailable:
            return fail()
        return succeed(self.artifacts.get(digest))

    def has_artifact(self, digest: str) -> "Deferred[bool]":
        return succeed(digest in self.artifacts)

    def claim_build(self, digest: str, node: str, stale_after: float) -> "Deferred[str | None]":
        now = self.clock.seconds()
        holder = self.claims.get(digest, self.held_before)
        if holder is None or holder[0] == node or now - holder[1] > stale_after:
            self.claims[digest] = (node, now)
            return succeed(None)
        return succeed(holder[0])

    def delete_artifacts(self, digests: Any) -> "Deferred[None]":
        if self.down:
            return fail(StoreUnavailable("postgresql://u@h/db", "connection refused"))
        for digest in digests:
            self.artifacts.pop(digest, None)
        return succeed(None)

    def release_build(self, digest: str, node: str) -> "Deferred[None]":
        if self.claims.get(digest, ("",))[0] == node:
            del self.claims[digest]
        return succeed(None)


class SharedBuildTests(SynchronousTestCase):
    """Two nodes' builders over one store: a digest is compiled once in the cluster."""

    def setUp(self) -> None:
        self.base = Path(os.path.abspath(self.mktemp()))
        bin_dir = self.base / "toolchain" / "bin"
        self.cargo = executable(str(bin_dir / "cargo"))
        executable(str(bin_dir / "rustc"))
        self.sdk = self.base / "sdk"
        (self.sdk / "src").mkdir(parents=True)
        (self.sdk / "Cargo.toml").write_text('[package]\nname = "rust-edge-gateway-sdk"\nversion = "0.1.0"\n')
        (self.sdk / "src" / "lib.rs").write_text("pub mod prelude {}\n")
        self.reactor = ProcessReactor()
        self.store = FakeArtifactStore(self.reactor)
        verify_fake(IArtifactStore, self.store)
        self.a = self.builder("a")
        self.b = self.builder("b")

    def builder(self, node: str) -> Builder:
        shared = SharedArtifacts(self.store, node, self.reactor)
        return Builder(self.base / node, self.sdk, cargo=self.cargo, crate_source="debian", reactor=self.reactor,
                       sandbox=False, shared=shared)

    def cargo_runs(self) -> list[Any]:
        return [child for child in self.reactor.children if child.args[0] == self.cargo]

    def start(self, builder: Builder, code: str = HELLO) -> "Deferred[Any]":
        """Ask ``builder`` to build, answering its one ``rustc -vV``."""
        before = len(self.reactor.children)
        d = builder.build("hello", code)
        for child in self.reactor.children[before:]:
            if child.args[1:] == ["-vV"]:
                child.out(TOOLCHAIN)
                child.exit(0)
        return d

    def finish_cargo(self, builder: Builder, child: Any, content: bytes = b"\x7fELF handler") -> None:
        binary = executable(str(builder.data_dir / "build" / "target" / "release" / "h-hello"), content)
        child.out(artifact_line("h-hello", binary))
        child.exit(0)

    def test_compiled_once_fetched_elsewhere(self) -> None:
        """
        A digest compiled on one node is stored with its metadata; the other
        node asked for it fetches it (cached, no cargo run) into its own cache.
        """
        d = self.start(self.a)
        (child,) = self.cargo_runs()
        self.finish_cargo(self.a, child)
        built = self.successResultOf(d)
        self.assertFalse(built.cached)
        self.assertEqual(self.store.artifacts[built.digest]["node"], "a")
        self.assertEqual(self.store.claims, {})
        fetched = self.successResultOf(self.start(self.b))
        self.assertEqual(len(self.cargo_runs()), 1)
        self.assertTrue(fetched.cached)
        self.assertEqual(fetched.digest, built.digest)
        self.assertTrue(fetched.binary.startswith(str(self.base / "b")))
        self.assertEqual(Path(fetched.binary).read_bytes(), b"\x7fELF handler")
        self.assertEqual(fetched.dependencies, built.dependencies)

    def test_removing_a_binary_deletes_the_stored_copy(self) -> None:
        """
        ``remove_artifact`` (the ledger found no endpoint of the cluster using
        the digest) deletes the local binary and the store's copy; an
        unreachable store leaves the stored copy and still removes the local one.
        """
        d = self.start(self.a)
        (child,) = self.cargo_runs()
        self.finish_cargo(self.a, child)
        built = self.successResultOf(d)
        self.assertTrue(self.successResultOf(self.a.remove_artifact(built.digest)))
        self.assertIsNone(self.a.artifact(built.digest))
        self.assertNotIn(built.digest, self.store.artifacts)

        d = self.start(self.b)
        runs = self.cargo_runs()
        self.assertEqual(len(runs), 2)  # gone from the store: compiled again
        self.finish_cargo(self.b, runs[1])
        fetched = self.successResultOf(d)
        self.store.down = True
        self.assertTrue(self.successResultOf(self.b.remove_artifact(fetched.digest)))
        self.assertIsNone(self.b.artifact(fetched.digest))
        self.assertIn(fetched.digest, self.store.artifacts)
        self.flushLoggedErrors()

    def test_two_nodes_at_once_one_cargo_run(self) -> None:
        """Asked at once, one node compiles under the claim; the other waits and fetches its binary."""
        first = self.start(self.a)
        second = self.start(self.b)
        self.assertEqual(len(self.cargo_runs()), 1)
        self.reactor.advance(0.25)
        self.assertNoResult(second)
        self.finish_cargo(self.a, self.cargo_runs()[0])
        self.successResultOf(first)
        self.reactor.advance(0.25)
        result = self.successResultOf(second)
        self.assertTrue(result.cached)
        self.assertEqual(len(self.cargo_runs()), 1)

    def test_claim_refreshed_while_compiling(self) -> None:
        """A long compile refreshes its claim, so waiting nodes do not take it over as stale."""
        self.start(self.a)
        second = self.start(self.b)
        for _ in range(200):  # 50 s of cargo, beyond stale_after
            self.reactor.advance(0.25)
        self.assertEqual(len(self.cargo_runs()), 1)
        self.assertNoResult(second)

    def test_failed_build_elsewhere_is_compiled_here(self) -> None:
        """When the holder's build fails (claim released, no binary), a waiting node compiles it itself."""
        first = self.start(self.a)
        second = self.start(self.b)
        child = self.cargo_runs()[0]
        child.exit(101)
        self.failureResultOf(first, CompileFailed)
        self.assertEqual(self.store.claims, {})
        for _ in range(8):
            self.reactor.advance(0.25)
        runs = self.cargo_runs()
        self.assertEqual(len(runs), 2)
        runs[1].exit(101)
        self.failureResultOf(second, CompileFailed)

    def test_dead_holder_taken_over(self) -> None:
        """A claim whose node stopped refreshing it (died while compiling) goes stale and is taken over."""
        self.store.held_before = ("dead", 0.0)
        d = self.start(self.b)
        self.reactor.advance(0.25)
        self.assertEqual(self.cargo_runs(), [])
        for _ in range(130):  # past stale_after (30 s)
            self.reactor.advance(0.25)
        (child,) = self.cargo_runs()
        self.finish_cargo(self.b, child)
        self.assertFalse(self.successResultOf(d).cached)

    def test_unreachable_store_compiles_here(self) -> None:
        """A store that cannot be reached does not stop a build: the node compiles on its own."""
        self.store.down = True
        d = self.start(self.a)
        (child,) = self.cargo_runs()
        self.finish_cargo(self.a, child)
        self.assertFalse(self.successResultOf(d).cached)
        self.assertEqual(self.store.artifacts, {})
        self.flushLoggedErrors()

    def test_fetch(self) -> None:
        """
        ``Builder.fetch`` gives the local binary, fetching it from the store
        when this node does not have it; None when the store has none.
        """
        self.assertIsNone(self.successResultOf(self.b.fetch(DIGEST)))
        self.store.artifacts[DIGEST] = {
            "digest": DIGEST, "sha256": hashlib.sha256(b"bin").hexdigest(), "size": 3, "data": b"bin",
            "metadata": {"warnings": []}, "node": "a", "created_at": "",
        }
        path = self.successResultOf(self.b.fetch(DIGEST))
        self.assertEqual(Path(path).read_bytes(), b"bin")
        self.assertEqual(self.b.artifact(DIGEST), path)
        self.assertEqual(self.successResultOf(self.b.fetch(DIGEST)), path)

    def test_fetch_not_shared(self) -> None:
        """Without a shared store ``fetch`` is the local cache only."""
        builder = Builder(self.base / "solo", self.sdk, cargo=self.cargo, reactor=self.reactor, sandbox=False,
                          crate_source="debian")
        self.assertIsNone(self.successResultOf(builder.fetch(DIGEST)))

    def test_corrupt_artifact_refused(self) -> None:
        """A stored binary whose bytes do not match its sha256 is not put in the local cache."""
        self.store.artifacts[DIGEST] = {
            "digest": DIGEST, "sha256": hashlib.sha256(b"bin").hexdigest(), "size": 3, "data": b"bad",
            "metadata": {}, "node": "a", "created_at": "",
        }
        shared = SharedArtifacts(self.store, "b", self.reactor)
        local = ArtifactStore(self.base / "c")
        self.failureResultOf(shared.fetch(DIGEST, local), ArtifactCorrupt)
        self.assertIsNone(local.path(DIGEST))
