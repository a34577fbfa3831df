"""
docs/observability.md cannot drift from the code: its metric table is what
``observability/metricsdocs.py`` renders from the collectors, its access-log
field table lists the access log's own fields, and its scrape config, alert
rule and three PromQL queries pass Prometheus's own ``promtool`` (when the
``prometheus`` package is installed: ``tools/setup-prometheus``).
"""

import json
import os
import re

from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from edgegw_tx.observability import accesslog, metricsdocs
from tests.support.prometheus import promtool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "observability.md")


def document():
    with open(DOC, encoding="utf-8") as f:
        return f.read()


def fenced(language):
    """The bodies of the document's fenced blocks in ``language``, in order."""
    return re.findall(r"^```" + language + r"\n(.*?)^```\n", document(), re.M | re.S)


class _Families:
    """A stand-in collector: families given by the test."""

    def __init__(self, families):
        self.families = families

    def collect(self):
        return iter(self.families)


class MetricTableTests(unittest.SynchronousTestCase):
    """The metric table is rendered from metric families, never written by hand."""

    def test_rows_from_families(self):
        """
        Each family is one row: a counter's name gets ``_total``, its label
        names come from the family, its meaning is its HELP text on one line
        with pipes escaped; a family without labels shows a dash.
        """
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        table = metricsdocs.render_table(
            _Families(
                [
                    CounterMetricFamily("edgegw_x", "Things\n counted | here.", labels=["endpoint", "code"]),
                    HistogramMetricFamily("edgegw_y_seconds", "How long.", labels=["endpoint"]),
                    GaugeMetricFamily("edgegw_z", "Open now."),
                ]
            )
        )
        self.assertEqual(
            table,
            metricsdocs.HEADER
            + "| `edgegw_x_total` | counter | `endpoint`, `code` | Things counted \\| here. |\n"
            + "| `edgegw_y_seconds` | histogram | `endpoint` | How long. |\n"
            + "| `edgegw_z` | gauge | – | Open now. |\n",
        )

    def test_render_replaces_only_between_markers(self):
        """``render`` rewrites what is between the markers and keeps the rest; no markers is a ValueError."""
        from prometheus_client.core import GaugeMetricFamily

        source = _Families([GaugeMetricFamily("edgegw_z", "Open now.")])
        before = "intro\n" + metricsdocs.BEGIN + "stale\n" + metricsdocs.END + "outro\n"
        self.assertEqual(
            metricsdocs.render(before, source),
            "intro\n" + metricsdocs.BEGIN + metricsdocs.render_table(source) + metricsdocs.END + "outro\n",
        )
        self.assertRaises(ValueError, metricsdocs.render, "no markers\n", source)


class ObservabilityDocTests(unittest.TestCase):
    """docs/observability.md agrees with the code and with promtool."""

    def test_metric_table_is_current(self):
        """The metric table is what the gateway's registry renders (run tools/gen-metrics-docs when this fails)."""
        self.assertEqual(metricsdocs.render(document(), metricsdocs.gateway_metrics()), document())

    def test_metric_table_has_the_issues_metrics(self):
        """Every metric issue 17 asks for is in the table, with the labels it asks for."""
        table = re.search(r"<!-- metrics -->\n(.*?)<!-- /metrics -->", document(), re.S).group(1)
        rows = {
            name: re.findall(r"`([a-z_]+)`", labels)
            for name, labels in re.findall(r"^\| `([a-z_]+)` \| \w+ \| ([^|]*) \|", table, re.M)
        }
        wanted = {
            "edgegw_http_requests_total": ["endpoint", "method", "code"],
            "edgegw_http_request_duration_seconds": ["endpoint"],
            "edgegw_http_request_size_bytes": ["endpoint"],
            "edgegw_http_response_size_bytes": ["endpoint"],
            "edgegw_inflight_requests": ["endpoint"],
            "edgegw_queue_depth": ["endpoint"],
            "edgegw_workers": ["endpoint", "state"],
            "edgegw_worker_restarts_total": ["endpoint", "reason"],
            "edgegw_service_calls_total": ["service", "kind", "outcome"],
            "edgegw_service_call_duration_seconds": ["service", "kind"],
            "edgegw_compiles_total": ["outcome"],
            "edgegw_compile_duration_seconds": [],
            "edgegw_http_connections": [],
            "edgegw_build_info": ["version"],
            "process_cpu_seconds_total": [],
            "process_resident_memory_bytes": [],
        }
        self.assertEqual({name: rows.get(name) for name in wanted}, wanted)

    def test_queries_use_metrics_that_exist(self):
        """Every metric the example queries and the alert name is in the metric table (a histogram by its series)."""
        table = re.search(r"<!-- metrics -->\n(.*?)<!-- /metrics -->", document(), re.S).group(1)
        metrics = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))
        texts = fenced("promql") + [block for block in fenced("yaml") if block.startswith("groups:")]
        named = set()
        for text in texts:
            named.update(re.findall(r"\b(edgegw_[a-z_]+)", text))
        self.assertTrue(named)
        series = lambda name: re.sub(r"_(bucket|sum|count)$", "", name)  # noqa: E731
        self.assertEqual({name for name in named if name not in metrics and series(name) not in metrics}, set())

    def test_access_log_fields(self):
        """The access-log field table lists exactly ``accesslog.FIELDS``, in their order."""
        table = re.search(
            r"<!-- access-log-fields -->\n(.*?)<!-- /access-log-fields -->", document(), re.S
        ).group(1)
        self.assertEqual(tuple(re.findall(r"^\| `([a-z_]+)` \|", table, re.M)), accesslog.FIELDS)

    def test_example_line_has_every_field(self):
        """The example access-log line is JSON with exactly ``accesslog.FIELDS`` as keys, in order."""
        (example,) = fenced("json")
        self.assertEqual(tuple(json.loads(example)), accesslog.FIELDS)

    def _promtool(self):
        binary = promtool()
        if binary is None:
            raise unittest.SkipTest("no promtool: tools/setup-prometheus installs Debian's `prometheus`")
        return binary

    @inlineCallbacks
    def check(self, kind, text, *flags):
        """``promtool check <kind> [flags] FILE`` on ``text``; fails the test with promtool's words."""
        binary = self._promtool()
        path = self.mktemp() + ".yml"
        with open(path, "w") as f:
            f.write(text)
        out, err, code = yield getProcessOutputAndValue(binary, ["check", kind, *flags, path], env={})
        self.assertEqual(code, 0, (out + err).decode(errors="replace"))

    @inlineCallbacks
    def test_alert_rule(self):
        """The example alert is a valid rules file (``promtool check rules``)."""
        rules = [block for block in fenced("yaml") if block.startswith("groups:")]
        self.assertEqual(len(rules), 1)
        yield self.check("rules", rules[0])

    @inlineCallbacks
    def test_three_queries(self):
        """The three example PromQL queries parse (as recording rules, ``promtool check rules``)."""
        queries = fenced("promql")
        self.assertEqual(len(queries), 3)
        rules = {
            "groups": [
                {
                    "name": "doc",
                    "rules": [{"record": f"edgegw:doc_query_{i}", "expr": q} for i, q in enumerate(queries)],
                }
            ]
        }
        yield self.check("rules", json.dumps(rules))

    @inlineCallbacks
    def test_scrape_configs(self):
        """Both example scrape configs are valid Prometheus configs (``promtool check config --syntax-only``)."""
        configs = [block for block in fenced("yaml") if block.startswith("scrape_configs:")]
        self.assertEqual(len(configs), 2)
        for config in configs:
            yield self.check("config", config, "--syntax-only")
