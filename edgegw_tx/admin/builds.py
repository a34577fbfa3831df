"""
Compiles of endpoints: the endpoint's current code and ``settings.dependencies``
built by the build plane, the result made the endpoint's ``artifact`` and one
of its versions through the artifact ledger (admin/ledger.py).

No lock of its own: recording a build runs under the ledger's lock (a cached
binary could otherwise be pruned, as another endpoint's old version, between
the build and its version row). A compile does not take the endpoint's
lifecycle lock: cargo may run for minutes, and a change of the code meanwhile
is noticed (the build is then not the endpoint's and is not recorded).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Generator, Iterable, Optional, Protocol

from twisted.internet.defer import Deferred, inlineCallbacks

from edgegw_tx.admin.errors import BuildUnavailable, Unprocessable
from edgegw_tx.admin.ledger import ArtifactLedger
from edgegw_tx.admin.records import EndpointRecords, build_inputs, now
from edgegw_tx.build import BuildError, CompileFailed
from edgegw_tx.observability.metrics import compile_timings
from edgegw_tx.store.interface import Record


class BuildResult(Protocol):
    """What a build answers (build/builder.py ``BuildResult``)."""

    digest: str
    cached: bool
    seconds: float


class Builder(Protocol):
    """The build plane's face for compiles."""

    def build(
        self, endpoint_id: str, code: str, extra_dependencies: Optional[dict[str, Any]] = None
    ) -> "Deferred[Any]":
        """Compile; fires with a ``BuildResult`` or fails with ``CompileFailed``/``BuildError``."""


def summary(diagnostics: Iterable[dict[str, Any]]) -> str:
    """
    The first error's message, for the record's ``last_error``.  A message from
    cargo's stderr (an unresolvable dependency) is several lines: its first
    ``error:`` line is the summary, and the diagnostic keeps the whole text.
    """
    for diagnostic in diagnostics:
        if diagnostic.get("level") == "error":
            line = diagnostic.get("line")
            where = f" (line {line})" if line else ""
            lines = (diagnostic.get("message") or "error").splitlines() or ["error"]
            first: str = next((x for x in lines if x.startswith("error")), lines[0])
            return first + where
    return "cargo failed"


class Builds:
    """Compiles of endpoints, recorded as versions; see the module docstring."""

    def __init__(
        self,
        records: EndpointRecords,
        ledger: ArtifactLedger,
        builder: Builder,
        serving: Callable[[str], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        ``serving(endpoint_id)``: whether the endpoint runs (its status stays
        ``running`` then); ``clock()`` times the builds for ``compiles``.
        """
        self._records = records
        self._ledger = ledger
        self._builder = builder
        self._serving = serving
        self._clock = clock
        #: Builds by outcome (``compiled``, ``cached``, ``failed``: a compile
        #: error, ``error``: the build plane failed), timed: edgegw_compiles_total.
        self.compiles = compile_timings()

    @inlineCallbacks
    def compile(self, endpoint_id: str) -> Generator["Deferred[Any]", Any, tuple[Record, Any]]:
        """
        Build the endpoint's current code with its ``settings.dependencies``;
        fires with (record, build result). A successful build is recorded as a
        version of the endpoint (its oldest versions beyond ``keep_versions``
        pruned).
        """
        record = yield self._records.get(endpoint_id)
        inputs = build_inputs(record)
        # Twice at most: a binary found cached may be pruned (as another
        # endpoint's old version) before it is recorded as this one's.
        for _ in range(2):
            result = yield self._build(endpoint_id, inputs)
            code, extra = inputs
            version = {
                "endpoint_id": endpoint_id,
                "digest": result.digest,
                "code": code,
                "dependencies": extra,
                "compile_seconds": round(result.seconds, 3),
                "created_at": now(),
            }
            done = yield self._ledger.record(
                version, result.cached, lambda: self._adopt(endpoint_id, inputs, result)
            )
            if done is not None:
                compiled: tuple[Record, Any] = done
                return compiled
        raise BuildUnavailable(f"cannot compile: the binary {result.digest} vanished twice after its build")

    @inlineCallbacks
    def _adopt(
        self, endpoint_id: str, inputs: tuple[str, dict[str, Any]], result: BuildResult
    ) -> Generator["Deferred[Any]", Any, tuple[tuple[Record, Any], bool]]:
        """
        Under the ledger lock: make the build the endpoint's artifact, unless
        its code or dependencies changed while cargo ran (then the binary is
        not the endpoint's and no version is recorded).
        """
        latest = yield self._records.get(endpoint_id)
        if build_inputs(latest) != inputs:
            return (latest, result), False
        record = yield self._records.write(
            endpoint_id,
            {
                "artifact": result.digest,
                "status": "running" if self._serving(endpoint_id) else "compiled",
                "last_error": None,
            },
        )
        return (record, result), True

    @inlineCallbacks
    def _build(
        self, endpoint_id: str, inputs: tuple[str, dict[str, Any]]
    ) -> Generator["Deferred[Any]", Any, BuildResult]:
        """Run cargo; a compile error is recorded on the endpoint (if its code is still the same) and a 422."""
        code, extra = inputs
        started = self._clock()
        try:
            result = yield self._builder.build(endpoint_id, code, extra_dependencies=extra)
        except CompileFailed as failure:
            self.compiles.observe(("failed",), self._clock() - started)
            latest = yield self._records.get(endpoint_id)
            if build_inputs(latest) == inputs:
                yield self._records.write(
                    endpoint_id,
                    {
                        "status": "running" if self._serving(endpoint_id) else "error",
                        "artifact": None,
                        "last_error": summary(failure.diagnostics),
                    },
                )
            raise Unprocessable(
                "compilation failed: " + summary(failure.diagnostics), diagnostics=failure.diagnostics
            )
        except BuildError as e:
            self.compiles.observe(("error",), self._clock() - started)
            raise BuildUnavailable(f"cannot compile: {e}")
        built: BuildResult = result
        self.compiles.observe(("cached" if built.cached else "compiled",), self._clock() - started)
        return built
