"""
End to end with a real Prometheus (issue 17): Debian's ``prometheus``
scrapes a real gateway's ``/metrics`` and a PromQL query through its HTTP API
counts exactly the requests the test sent.

The gateway is a real one (real cargo, real hello worker) on loopback ports;
Prometheus is started by the test on a free loopback port with a config it
writes (scrape interval 1 s), its data in the test's temp dir, and is stopped
and reaped at cleanup. The tests skip, saying why, when there is no cargo or
no ``prometheus`` (``tools/setup-prometheus`` installs it as root).
"""

from urllib.parse import urlsplit

from twisted.internet.defer import inlineCallbacks

from tests.support.handlers import HELLO
from tests.support.harness import GatewayTestCase
from tests.support.prometheus import PrometheusServer, prometheus_or_skip, scrape_job

REQUESTS = 7


def hello_requests(job):
    """The PromQL for the hello requests counted in ``job``'s scrapes."""
    return f'sum(edgegw_http_requests_total{{job="{job}", endpoint="hello"}})'


class PrometheusScrapeIntegrationTests(GatewayTestCase):
    """A real Prometheus scraping a real gateway: its admin listener with a bearer key, and ``--metrics-listen``."""

    runtime_options = {"metrics_listen": "tcp:0:interface=127.0.0.1"}

    def setUp(self):
        # Before the gateway starts: no gateway is built for a test that skips.
        self.prometheus_binary = prometheus_or_skip()
        return super().setUp()

    def admin_target(self):
        """``127.0.0.1:<port>`` of the gateway's admin listener."""
        return urlsplit(self.gateway.api).netloc

    def metrics_listen_target(self):
        """``127.0.0.1:<port>`` of ``--metrics-listen`` (the third port the runtime listens on)."""
        return "127.0.0.1:%d" % self.gateway.ports[2].getHost().port

    @inlineCallbacks
    def test_query_counts_requests_sent(self):
        """
        Prometheus scraping ``/metrics`` on the admin listener with a *read*
        key as its bearer token answers
        ``sum(edgegw_http_requests_total{endpoint="hello"})`` with exactly the
        number of hello requests the test sent, and so does the
        ``--metrics-listen`` listener scraped without a key; the admin
        listener scraped with a wrong key is down with a 401 (``/metrics`` is
        protected like the API).
        """
        yield self.gateway.deploy("hello", "/hello", HELLO)
        status, created = yield self.gateway.call("POST", "/keys", {"name": "prometheus", "scope": "read"})
        self.assertEqual(status, 201, created)
        server = PrometheusServer(
            self,
            self.mktemp(),
            [
                scrape_job("edgegw", self.admin_target(), key=created["data"]["key"]),
                scrape_job("edgegw-wrong-key", self.admin_target(), key="not-a-key"),
                scrape_job("edgegw-keyless", self.metrics_listen_target()),
            ],
            binary=self.prometheus_binary,
        )
        yield server.start()

        for _ in range(REQUESTS):
            response, body = yield self.gateway.request("GET", "/hello")
            self.assertEqual(response.code, 200, body)

        value = yield server.wait_for_value(hello_requests("edgegw"), REQUESTS)
        self.assertEqual(value, REQUESTS)
        value = yield server.wait_for_value(hello_requests("edgegw-keyless"), REQUESTS)
        self.assertEqual(value, REQUESTS)
        yield server.wait_for_value('up{job="edgegw"}', 1)
        yield server.wait_for_value('up{job="edgegw-wrong-key"}', 0)
        targets = yield server.targets()
        refused = [t for t in targets if t["job"] == "edgegw-wrong-key"]
        self.assertIn("401", refused[0]["lastError"], targets)
