"""
Compiles on their own (edgegw_tx/admin/builds.py): a build becomes the
endpoint's artifact and a version through the ledger; a compile error is
recorded on the endpoint; a build of code replaced meanwhile is not recorded.
Real records over a real SQLite store; a scripted builder that is also the
ledger's store of binaries.
"""

from typing import Any, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial import unittest

from edgegw_tx.admin.builds import Builds, summary
from edgegw_tx.admin.errors import BuildUnavailable, Unprocessable
from edgegw_tx.admin.ledger import ArtifactLedger
from edgegw_tx.admin.records import EndpointRecords
from edgegw_tx.build import BuildError, CompileFailed
from tests.support.fakes import make_store

CODE = "fn main() {}"


class Result:
    """A build result."""

    def __init__(self, digest: str, cached: bool) -> None:
        self.digest = digest
        self.cached = cached
        self.seconds = 1.25


class ScriptedBuilder:
    """Builds to the digest ``"d-" + code``; ``error`` fails the next build; ``hold`` defers it."""

    def __init__(self) -> None:
        self.stored: set[str] = set()
        self.error: Optional[Exception] = None
        self.hold: Optional[Deferred[None]] = None
        self.vanish = False

    def build(self, endpoint_id: str, code: str, extra_dependencies: Optional[dict[str, Any]] = None) -> "Deferred[Any]":
        """Store the binary (unless ``vanish``) and answer its result."""
        error, self.error = self.error, None
        if error is not None:
            return fail(error)
        digest = "d-" + code
        if not self.vanish:
            self.stored.add(digest)
        if self.hold is not None:
            return self.hold.addCallback(lambda _: Result(digest, False))
        return succeed(Result(digest, False))

    def artifact(self, digest: str) -> Optional[str]:
        """The binary's path when stored."""
        return "/artifacts/" + digest if digest in self.stored else None

    def fetch(self, digest: str) -> "Deferred[Optional[str]]":
        """One gateway: no shared store to fetch a binary from."""
        return succeed(None)

    def remove_artifact(self, digest: str) -> "Deferred[Any]":
        """Delete it."""
        self.stored.discard(digest)
        return succeed(True)


class BuildsTests(unittest.TestCase):
    """``Builds.compile`` over records and the ledger."""

    def setUp(self) -> None:
        self.store = make_store(self)
        self.records = EndpointRecords(self.store)
        self.builder = ScriptedBuilder()
        self.ledger = ArtifactLedger(self.store, self.builder, keep_versions=10)
        self.running: set[str] = set()
        self.builds = Builds(self.records, self.ledger, self.builder, lambda e: e in self.running)
        self.endpoint = self.successResultOf(
            self.records.create({"name": "hello", "path": "/hello", "method": "GET", "code": CODE})
        )

    def test_a_build_becomes_the_artifact_and_a_version(self) -> None:
        """A successful compile sets ``artifact`` and status ``compiled`` and records a version row."""
        record, result = self.successResultOf(self.builds.compile(self.endpoint["id"]))
        self.assertEqual((record["artifact"], record["status"]), ("d-" + CODE, "compiled"))
        versions = self.successResultOf(self.ledger.versions(self.endpoint["id"]))
        self.assertEqual([(v["digest"], v["compile_seconds"]) for v in versions], [("d-" + CODE, 1.25)])

    def test_a_running_endpoint_stays_running_across_a_compile(self) -> None:
        """Compiling a running endpoint keeps its status ``running``."""
        self.running.add(self.endpoint["id"])
        record, _ = self.successResultOf(self.builds.compile(self.endpoint["id"]))
        self.assertEqual(record["status"], "running")

    def test_a_compile_error_is_422_and_recorded_on_the_endpoint(self) -> None:
        """cargo's first error line becomes ``last_error``; status error, no artifact."""
        diagnostics = [{"level": "error", "message": "error[E0425]: cannot find value `x`", "line": 3}]
        self.builder.error = CompileFailed(diagnostics)
        failure = self.failureResultOf(self.builds.compile(self.endpoint["id"]), Unprocessable)
        self.assertEqual(failure.value.message, "compilation failed: error[E0425]: cannot find value `x` (line 3)")
        stored = self.successResultOf(self.records.get(self.endpoint["id"]))
        self.assertEqual((stored["status"], stored["artifact"]), ("error", None))
        self.assertEqual(stored["last_error"], summary(diagnostics))

    def test_a_build_plane_failure_is_503(self) -> None:
        """No cargo (a BuildError that is not a compile error) is BuildUnavailable, the record untouched."""
        self.builder.error = BuildError("cargo not found")
        self.failureResultOf(self.builds.compile(self.endpoint["id"]), BuildUnavailable)
        self.assertEqual(self.successResultOf(self.records.get(self.endpoint["id"]))["status"], "created")

    def test_a_build_of_replaced_code_is_not_recorded(self) -> None:
        """Code changed while cargo ran: the build is answered but is not the endpoint's artifact or version."""
        self.builder.hold = Deferred()
        compiling = self.builds.compile(self.endpoint["id"])
        self.successResultOf(self.records.write(self.endpoint["id"], {"code": CODE + " // new"}))
        self.builder.hold.callback(None)
        record, result = self.successResultOf(compiling)
        self.assertEqual((record["artifact"], result.digest), (None, "d-" + CODE))
        self.assertEqual(self.successResultOf(self.ledger.versions(self.endpoint["id"])), [])

    def test_a_binary_that_vanishes_twice_is_503(self) -> None:
        """A binary pruned before it could be recorded is built once more, then the compile gives up."""
        self.builder.vanish = True
        failure = self.failureResultOf(self.builds.compile(self.endpoint["id"]), BuildUnavailable)
        self.assertIn("vanished twice", failure.value.message)


class CompileMetricsTests(unittest.TestCase):
    """``Builds.compiles``: every build counted once by outcome and timed (edgegw_compiles_total)."""

    def setUp(self) -> None:
        BuildsTests.setUp(self)  # type: ignore[arg-type]  # the same fixtures, not its tests
        self.now = [100.0]
        self.builds = Builds(
            self.records, self.ledger, self.builder, lambda e: e in self.running, clock=lambda: self.now[0]
        )

    def test_outcomes_counted_and_timed(self) -> None:
        """A compile held 3 s, a compile error and a build-plane failure add one each under their outcome."""
        self.builder.hold = Deferred()
        compiling = self.builds.compile(self.endpoint["id"])
        self.now[0] += 3.0
        self.builder.hold.callback(None)
        self.successResultOf(compiling)
        self.builder.hold = None
        self.builder.error = CompileFailed([{"level": "error", "message": "error: x", "line": 1}])
        self.failureResultOf(self.builds.compile(self.endpoint["id"]), Unprocessable)
        self.builder.error = BuildError("cargo not found")
        self.failureResultOf(self.builds.compile(self.endpoint["id"]), BuildUnavailable)
        self.assertEqual(
            self.builds.compiles.counts, {("compiled",): 1, ("failed",): 1, ("error",): 1}
        )
        [(buckets, seconds)] = self.builds.compiles.histograms.values()
        self.assertEqual((sum(buckets), seconds), (3, 3.0))
