"""
The metric table of ``docs/observability.md``, rendered from the collectors
themselves so the document cannot drift from what ``/metrics`` serves.

The table sits between ``<!-- metrics -->`` and ``<!-- /metrics -->``. Each
row is one metric family a scrape yields: its name as PromQL spells it (a
counter with ``_total``), its type, its label names and its meaning, which is
the family's own ``HELP`` text. ``tools/gen-metrics-docs`` rewrites the
table; ``tests/test_observability_docs.py`` fails when the document differs
from what this module renders.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

from prometheus_client.metrics_core import Metric

BEGIN = "<!-- metrics -->\n"
END = "<!-- /metrics -->\n"
HEADER = "| metric | type | labels | meaning |\n| --- | --- | --- | --- |\n"

# Labels a histogram's samples carry that are not the family's own.
_SAMPLE_LABELS = frozenset({"le", "quantile"})


class _Collects(Protocol):
    """Anything with ``collect()``: a collector or a whole registry."""

    def collect(self) -> Iterable[Metric]: ...


def metric_name(family: Metric) -> str:
    """The family's name as a query writes it: counters end in ``_total``, info metrics in ``_info``."""
    if family.type == "counter":
        return family.name + "_total"
    if family.type == "info":
        return family.name + "_info"
    return family.name


def label_names(family: Metric) -> list[str]:
    """The family's label names: declared ones, else those its samples carry (``le`` left out)."""
    declared: tuple[str, ...] = getattr(family, "_labelnames", ())
    names = list(declared)
    for sample in family.samples:
        for label in sample.labels:
            if label not in names and label not in _SAMPLE_LABELS:
                names.append(label)
    return names


def _cell(text: str) -> str:
    """Text fit for one table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def render_table(source: _Collects) -> str:
    """The markdown table (header included) of every family ``source`` yields, in its order."""
    rows = []
    seen: set[str] = set()
    for family in source.collect():
        name = metric_name(family)
        if name in seen:
            continue
        seen.add(name)
        labels = ", ".join(f"`{label}`" for label in label_names(family)) or "–"
        rows.append(f"| `{name}` | {family.type} | {labels} | {_cell(family.documentation)} |\n")
    return HEADER + "".join(rows)


def render(document: str, source: _Collects) -> str:
    """``document`` with the table between its metric markers rendered anew from ``source``.

    :raises ValueError: when the document has no (or an unclosed) marker pair.
    """
    match = re.search(re.escape(BEGIN) + r"(.*?)" + re.escape(END), document, re.S)
    if match is None:
        raise ValueError(f"no {BEGIN.strip()} ... {END.strip()} pair in the document")
    return document[: match.start(1)] + render_table(source) + document[match.end(1) :]


def gateway_metrics() -> _Collects:
    """A gateway's whole registry (edgegw's families and the process's), on empty counters."""
    from edgegw_tx.observability.exposition import Metrics, local_planes
    from edgegw_tx.observability.metrics import RequestMetrics, compile_timings, plane_snapshot

    requests = RequestMetrics()
    metrics = Metrics(
        local_planes(lambda: plane_snapshot(requests, None, None)),
        dict,
        compiles=compile_timings(),
    )
    return metrics.registry
