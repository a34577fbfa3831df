"""
One endpoint serving several routes on a real gateway: a real compiled
handler dispatching on ``req.method`` and its path parameter, real workers,
two data-plane processes, real HTTP.
"""

from twisted.internet.defer import inlineCallbacks

from tests.support.harness import GatewayTestCase

# Answers what it was asked to do: one handler dispatching on the method and the path's {id}.
DISPATCH = r"""
use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Result<Response, HandlerError> {
    match (req.method.as_str(), req.path_param("id")) {
        ("GET", None) => Ok(Response::ok(json!({"did": "list"}))),
        ("POST", None) => Ok(Response::created(json!({"did": "create"}))),
        ("GET", Some(id)) => Ok(Response::ok(json!({"did": "read", "id": id}))),
        ("DELETE", Some(id)) => Ok(Response::ok(json!({"did": "delete", "id": id}))),
        (method, _) => Err(HandlerError::MethodNotAllowed(format!("{method} is not served here"))),
    }
}

handler_loop_result!(handle);
"""

ROUTES = [("GET", "/notes"), ("POST", "/notes"), ("GET", "/notes/{id}"), ("DELETE", "/notes/{id}")]


class MultiRouteIntegrationTests(GatewayTestCase):
    """A four-route endpoint is one endpoint with one worker pool, in every data-plane process."""

    runtime_options = {"processes": 2}

    @inlineCallbacks
    def test_four_routes_one_worker_pool(self):
        """GET/POST /notes and GET/DELETE /notes/{id} reach one endpoint's one set of workers; PUT is a 405."""
        endpoint_id = yield self.deploy_routes("notes", DISPATCH, ROUTES, {}, min_instances=1, max_instances=1)
        served = 0
        for method, path, did in (
            ("GET", "/notes", "list"),
            ("POST", "/notes", "create"),
            ("GET", "/notes/7", "read"),
            ("DELETE", "/notes/7", "delete"),
        ):
            for _ in range(4):  # both data-plane processes, whichever accepts
                response, body = yield self.json_request(method, path)
                self.assertEqual((response.code, body["did"]), (201 if method == "POST" else 200, did), body)
                if "id" in body:
                    self.assertEqual(body["id"], "7")
                served += 1
        response, _ = yield self.gateway.request("PUT", "/notes/7")
        self.assertEqual(response.code, 405)
        self.assertEqual(response.headers.getRawHeaders("allow"), ["DELETE, GET, HEAD"])

        status, listing = yield self.gateway.call("GET", "/endpoints")
        [record] = listing["data"]["items"]
        self.assertEqual(record["id"], endpoint_id)
        self.assertEqual(record["routes"], [{"method": m, "path": p} for m, p in ROUTES])
        # One pool: one worker in each data-plane process, on one version, and
        # they are every worker the gateway runs and served every request.
        workers = record["workers"]
        self.assertEqual(sorted(w["process"] for w in workers), [1, 2])
        self.assertEqual(len({w["version"] for w in workers}), 1)
        self.assertEqual(sum(w["served"] for w in workers), served)
        status, stats = yield self.gateway.call("GET", "/stats")
        self.assertEqual(stats["data"]["workers"], len(workers))
