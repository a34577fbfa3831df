"""
``GET /metrics`` (admin/metrics_page.py) on the management API of a runtime of
fakes: protected like the API (any key scope, bearer), the Prometheus text
format with its content type, and ``--metrics-listen`` serving it without a key.
"""

import json

from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq

from edgegw_tx.admin.metrics_page import metrics_root
from edgegw_tx.observability.exposition import CONTENT_TYPE
from tests.support.admin import AdminAPITestCase


def samples(text):
    """``{(name, sorted labels): value}`` of a text-format page."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class MetricsPageTests(AdminAPITestCase):
    def get(self, client, headers=None):
        """(status, headers, body text) of ``GET /metrics`` through ``client``."""
        d = client.request("GET", "http://admin/metrics", headers=headers or {})
        client.flush()
        response = self.successResultOf(d)
        return response.code, response.headers, self.successResultOf(response.content()).decode("utf-8")

    def test_without_a_key_401(self):
        """No key: 401 in the API's envelope with the Bearer challenge, like any API route."""
        code, headers, body = self.get(self.client)
        self.assertEqual(code, 401)
        self.assertEqual(headers.getRawHeaders("www-authenticate"), ['Bearer realm="edgegw"'])
        self.assertEqual(json.loads(body)["ok"], False)

    def test_a_wrong_key_401(self):
        """A key that is not one: 401."""
        code, _, _ = self.get(self.client, {"Authorization": "Bearer not-a-key"})
        self.assertEqual(code, 401)

    def test_starting_503(self):
        """While the gateway starts, ``/metrics`` answers 503 like the API."""
        self.api.starting = True
        code, _, _ = self.get(self.client, {"Authorization": "Bearer " + self.read_key})
        self.assertEqual(code, 503)

    def test_a_read_key_gets_the_text_format(self):
        """A ``read`` key as bearer token: 200, the text format's content type, the requests the data plane counted."""
        self.runtime.request_metrics.series("hello").record(b"GET", 200, 0, 12, 0.002)
        code, headers, body = self.get(self.client, {"Authorization": "Bearer " + self.read_key})
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders("content-type"), [CONTENT_TYPE])
        found = samples(body)
        self.assertEqual(
            found[("edgegw_http_requests_total", (("code", "200"), ("endpoint", "hello"), ("method", "GET")))], 1
        )
        self.assertIn(("edgegw_http_connections", ()), found)

    def test_metrics_listen_needs_no_key(self):
        """``--metrics-listen`` adds a listener whose ``/metrics`` answers without a key (404 elsewhere)."""
        self.build(metrics_listen="tcp:0:interface=127.0.0.1")
        self.assertEqual(len(self.runtime.listeners), 3)
        site = self.runtime.listeners[-1].factory
        client = StubTreq(site.resource)
        code, headers, body = self.get(client)
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders("content-type"), [CONTENT_TYPE])
        self.assertIn(("edgegw_build_info", (("version", self.runtime.metrics.version),)), samples(body))
        d = client.request("GET", "http://admin/api/endpoints")
        client.flush()
        self.assertEqual(self.successResultOf(d).code, 404)

    def test_metrics_root_serves_the_same_registry(self):
        """``metrics_root`` renders the runtime's ``Metrics`` (the page the admin listener protects)."""
        self.runtime.request_metrics.series("").record(b"GET", 404, 0, 0, 0.0001)
        code, _, body = self.get(StubTreq(metrics_root(self.runtime.metrics)))
        self.assertEqual(code, 200)
        key = ("edgegw_http_requests_total", (("code", "404"), ("endpoint", ""), ("method", "GET")))
        self.assertEqual(samples(body)[key], 1)
