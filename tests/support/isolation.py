"""
A real gateway with the isolation probe handler deployed on it (the worker
isolation and network policy tests share it), and a cleanup that kills a
worker's whole process group whatever the test asserted.
"""

import os
import signal

from twisted.internet.defer import inlineCallbacks, returnValue

from tests.support.handlers import PROBE, PROBE_DEPENDENCIES
from tests.support.hardening import with_launcher_pid
from tests.support.harness import GatewayTestCase


def kill_group_later(test_case, pgid):
    """Cleanup: nothing of group ``pgid`` survives the test, whatever it asserted."""

    def kill():
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    test_case.addCleanup(kill)


class IsolationTestCase(GatewayTestCase):
    """A real gateway, and the probe handler deployed on it."""

    @inlineCallbacks
    def deploy_probe(self, name, **settings):
        settings.setdefault("dependencies", PROBE_DEPENDENCIES)
        settings.setdefault("min_instances", 1)
        settings.setdefault("max_instances", 1)
        started = yield self.gateway.deploy(name, "/%s/{what}" % name, PROBE, **settings)
        [pid] = started["pids"]
        kill_group_later(self, pid)
        returnValue((started, pid))

    @inlineCallbacks
    def get_json(self, path):
        """GET on the data plane: (status, body), a handler's ``pid`` (its pid namespace) as the gateway's pid."""
        response, body = yield self.json_request("GET", path)
        returnValue((response.code, with_launcher_pid(body)))

    @inlineCallbacks
    def stop_endpoint(self, endpoint_id):
        code, document = yield self.gateway.call("POST", "/endpoints/%s/stop" % endpoint_id)
        self.assertEqual(code, 200, document)
        returnValue(document["data"])
