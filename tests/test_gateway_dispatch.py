"""Tests for L{edgegw_tx.gateway.dispatch}."""

import json
from base64 import b64encode
from uuid import UUID

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from edgegw_tx.errors import (
    GatewayError,
    Overloaded,
    PoolStopped,
    ProtocolViolation,
    RequestTimedOut,
    WorkerCrashed,
)
from edgegw_tx.gateway.dispatch import (
    Dispatcher,
    GatewayRequest,
    GatewayResponse,
    InvalidResponse,
)
from edgegw_tx.gateway.routes import RouteTable
from edgegw_tx.paths import parse_pattern


class FakeTarget:
    """A pool stand-in: records frames and returns Deferreds fired by the test."""

    def __init__(self, name="hello-endpoint"):
        self.name = name
        self.frames = []
        self.deferreds = []

    def request(self, frame):
        self.frames.append(frame)
        d = Deferred()
        self.deferreds.append(d)
        return d


def make_request(
    method="GET",
    path="/users/42",
    query=b"",
    headers=(),
    body=b"",
    host="api.test",
    client_ip="192.0.2.7",
):
    return GatewayRequest(method, host, path, query, list(headers), body, client_ip)


def ids():
    """Deterministic request ids: rid-1, rid-2, ..."""
    counter = iter(range(1, 1000))
    return lambda: f"rid-{next(counter)}"


class DispatchTestsMixin:
    def setUp(self):
        self.target = FakeTarget()
        self.routes = RouteTable()
        self.routes.add(
            "users", "*", "GET", parse_pattern("/users/{id}"), self.target
        )
        self.routes.add("create", "*", "POST", parse_pattern("/users"), self.target)
        self.dispatcher = Dispatcher(self.routes, request_ids=ids())

    def frame_for(self, request):
        """Dispatch C{request}; return the frame sent and the pending Deferred."""
        d = self.dispatcher.dispatch(request)
        self.assertNoResult(d)
        return self.target.frames[-1], d

    def answer(self, response_frame, request=None):
        """Dispatch a request, fire it with C{response_frame}, return the result."""
        _, d = self.frame_for(request or make_request())
        self.target.deferreds[-1].callback(response_frame)
        return self.successResultOf(d)

    def header(self, response, name):
        return [v for n, v in response.headers if n == name]

    def json_body(self, response):
        self.assertEqual(self.header(response, "content-type"), ["application/json"])
        return json.loads(response.body)


class RequestFrameTests(DispatchTestsMixin, SynchronousTestCase):
    """The C{request} frame follows spec/IPC.md."""

    def test_basic_frame(self):
        """A GET without body: every field present, C{body} null, no base64."""
        frame, _ = self.frame_for(make_request(query=b"a=1"))
        self.assertEqual(
            frame,
            {
                "type": "request",
                "method": "GET",
                "path": "/users/42",
                "query": {"a": "1"},
                "headers": {},
                "params": {"id": "42"},
                "body": None,
                "client_ip": "192.0.2.7",
                "request_id": "rid-1",
            },
        )

    def test_no_id_assigned(self):
        """The dispatcher leaves C{id} to the pool."""
        frame, _ = self.frame_for(make_request())
        self.assertNotIn("id", frame)

    def test_query_decoding(self):
        """Query values are form-decoded; repeated keys join with C{,}; blanks kept."""
        frame, _ = self.frame_for(
            make_request(query=b"tag=a&tag=b%2Cc&q=hello+w%C3%B6rld&flag&e=")
        )
        self.assertEqual(
            frame["query"],
            {"tag": "a,b,c", "q": "hello wörld", "flag": "", "e": ""},
        )

    def test_query_as_text(self):
        """A query given as text is decoded the same way."""
        frame, _ = self.frame_for(make_request(query="x=%41&x=B"))
        self.assertEqual(frame["query"], {"x": "A,B"})

    def test_headers(self):
        """Header names are lower-cased; repeats join with C{, } (cookies with C{; })."""
        frame, _ = self.frame_for(
            make_request(
                headers=[
                    (b"Accept", b"text/html"),
                    (b"ACCEPT", b"application/json"),
                    ("X-Custom", "v\u00e9"),
                    (b"Cookie", b"a=1"),
                    (b"Cookie", b"b=2"),
                    (b"X-Utf8", "caf\u00e9".encode()),
                ]
            )
        )
        self.assertEqual(
            frame["headers"],
            {
                "accept": "text/html, application/json",
                "x-custom": "v\u00e9",
                "cookie": "a=1; b=2",
                "x-utf8": "caf\u00e9",
            },
        )

    def test_params_decoded(self):
        """Path parameters arrive percent-decoded; C{path} keeps C{%2F} as data."""
        frame, _ = self.frame_for(make_request(path="/users/a%2Fb"))
        self.assertEqual(frame["params"], {"id": "a/b"})
        self.assertEqual(frame["path"], "/users/a%2Fb")

    def test_utf8_body(self):
        """A UTF-8 body is sent as text in C{body}."""
        frame, _ = self.frame_for(
            make_request(method="POST", path="/users", body="{\"n\": \"é\"}".encode())
        )
        self.assertEqual(frame["body"], '{"n": "é"}')
        self.assertNotIn("body_base64", frame)

    def test_binary_body(self):
        """A non-UTF-8 body goes in C{body_base64} with C{body} null."""
        raw = b"\xff\x00\xfe"
        frame, _ = self.frame_for(make_request(method="POST", path="/users", body=raw))
        self.assertIsNone(frame["body"])
        self.assertEqual(frame["body_base64"], b64encode(raw).decode())

    def test_frame_is_json(self):
        """The frame serialises to JSON as it is."""
        frame, _ = self.frame_for(
            make_request(method="POST", path="/users", body=b"\x80", query=b"a=b")
        )
        self.assertEqual(json.loads(json.dumps(frame)), frame)


class RequestIdTests(DispatchTestsMixin, SynchronousTestCase):
    """X-Request-Id is honoured when well-formed, generated otherwise, always returned."""

    def test_honoured(self):
        """A well-formed client id is used in the frame and the response."""
        request = make_request(headers=[(b"X-Request-Id", b"abc.DEF_1:2-3")])
        frame, d = self.frame_for(request)
        self.assertEqual(frame["request_id"], "abc.DEF_1:2-3")
        self.target.deferreds[-1].callback({"status": 200})
        self.assertEqual(
            self.header(self.successResultOf(d), "x-request-id"), ["abc.DEF_1:2-3"]
        )

    def test_max_length(self):
        """128 characters is accepted, 129 is not."""
        frame, _ = self.frame_for(make_request(headers=[("x-request-id", "a" * 128)]))
        self.assertEqual(frame["request_id"], "a" * 128)
        frame, _ = self.frame_for(make_request(headers=[("x-request-id", "a" * 129)]))
        self.assertEqual(frame["request_id"], "rid-1")

    def test_malformed_replaced(self):
        """Ids with other characters, empty, or repeated are replaced."""
        bad = [[("x-request-id", v)] for v in ["a b", "", "a/b", "é", "<x>"]]
        bad.append([("x-request-id", "a"), ("x-request-id", "b")])
        for number, headers in enumerate(bad, start=1):
            frame, _ = self.frame_for(make_request(headers=headers))
            self.assertEqual(frame["request_id"], f"rid-{number}")

    def test_generated_default(self):
        """Without a factory each id is a fresh uuid4 as 32 hex digits."""
        dispatcher = Dispatcher(self.routes)
        dispatcher.dispatch(make_request())
        request_id = self.target.frames[-1]["request_id"]
        self.assertEqual(len(request_id), 32)
        self.assertEqual(UUID(hex=request_id).version, 4)
        dispatcher.dispatch(make_request())
        self.assertNotEqual(self.target.frames[-1]["request_id"], request_id)

    def test_on_404(self):
        """The 404 response carries the id."""
        response = self.successResultOf(
            self.dispatcher.dispatch(
                make_request(path="/x", headers=[("X-Request-Id", "mine")])
            )
        )
        self.assertEqual(self.header(response, "x-request-id"), ["mine"])
        self.assertEqual(self.json_body(response)["request_id"], "mine")

    def test_handler_cannot_override(self):
        """A handler's own x-request-id header is replaced by the gateway's."""
        response = self.answer({"status": 200, "headers": {"X-Request-Id": "evil"}})
        self.assertEqual(self.header(response, "x-request-id"), ["rid-1"])


class NoRouteTests(DispatchTestsMixin, SynchronousTestCase):
    """404 and 405 are answered by the dispatcher without touching a target."""

    def test_404(self):
        """An unknown path gives 404 JSON naming method and path."""
        response = self.successResultOf(
            self.dispatcher.dispatch(make_request(path="/x"))
        )
        self.assertEqual(response.status, 404)
        self.assertEqual(
            self.json_body(response),
            {"error": "no route for GET /x", "request_id": "rid-1"},
        )
        self.assertEqual(self.target.frames, [])

    def test_503_while_restoring(self):
        """While the gateway restores its endpoints at start, no route is 503
        with Retry-After (the endpoint may not be back yet), not 404."""
        self.routes.restoring = True
        response = self.successResultOf(self.dispatcher.dispatch(make_request(path="/x")))
        self.assertEqual(response.status, 503)
        self.assertEqual(self.header(response, "retry-after"), ["1"])
        self.assertEqual(
            self.json_body(response),
            {"error": "the gateway is starting; retry in a moment", "request_id": "rid-1"},
        )
        self.routes.restoring = False
        response = self.successResultOf(self.dispatcher.dispatch(make_request(path="/x")))
        self.assertEqual(response.status, 404)

    def test_405(self):
        """A known path with another method gives 405, an Allow header and JSON."""
        response = self.successResultOf(
            self.dispatcher.dispatch(make_request(method="DELETE", path="/users/1"))
        )
        self.assertEqual(response.status, 405)
        self.assertEqual(self.header(response, "allow"), ["GET, HEAD"])
        self.assertEqual(
            self.json_body(response),
            {
                "error": "method DELETE not allowed for /users/1",
                "allowed": ["GET", "HEAD"],
                "request_id": "rid-1",
            },
        )
        self.assertEqual(self.header(response, "x-request-id"), ["rid-1"])


class ResponseTranslationTests(DispatchTestsMixin, SynchronousTestCase):
    """C{response} frames become L{GatewayResponse}s."""

    def test_text_body(self):
        """Status, headers and a text body (UTF-8 encoded) come through."""
        response = self.answer(
            {
                "id": 1,
                "status": 201,
                "headers": {"Content-Type": "text/plain; charset=utf-8"},
                "body": "héllo",
            }
        )
        self.assertEqual(
            response,
            GatewayResponse(
                201,
                [
                    ("content-type", "text/plain; charset=utf-8"),
                    ("x-request-id", "rid-1"),
                ],
                "héllo".encode(),
            ),
        )

    def test_base64_body(self):
        """C{body_base64} is decoded to bytes."""
        response = self.answer(
            {"status": 200, "body": None, "body_base64": b64encode(b"\x00\xff").decode()}
        )
        self.assertEqual(response.body, b"\x00\xff")

    def test_null_body(self):
        """A null or missing body is empty."""
        self.assertEqual(self.answer({"status": 204, "body": None}).body, b"")
        self.assertEqual(self.answer({"status": 204}).body, b"")

    def test_set_cookie_list(self):
        """A list value (set-cookie) gives one header per item, in order."""
        response = self.answer(
            {"status": 200, "headers": {"set-cookie": ["a=1; Path=/", "b=2"]}}
        )
        self.assertEqual(self.header(response, "set-cookie"), ["a=1; Path=/", "b=2"])

    def test_hop_by_hop_dropped(self):
        """Hop-by-hop headers and content-length from a handler are dropped."""
        response = self.answer(
            {
                "status": 200,
                "headers": {
                    "Connection": "close",
                    "transfer-encoding": "chunked",
                    "keep-alive": "timeout=5",
                    "upgrade": "websocket",
                    "content-length": "999",
                    "x-kept": "yes",
                },
                "body": "ok",
            }
        )
        self.assertEqual(
            response.headers, [("x-kept", "yes"), ("x-request-id", "rid-1")]
        )

    def assertBadGateway(self, frame, fragment):
        response = self.answer(frame)
        self.assertEqual(response.status, 502)
        body = self.json_body(response)
        self.assertIn("invalid response from handler", body["error"])
        self.assertIn(fragment, body["error"])
        self.assertEqual(body["endpoint"], "hello-endpoint")
        self.assertEqual(body["request_id"], "rid-1")
        self.assertEqual(self.header(response, "x-request-id"), ["rid-1"])

    def test_invalid_status(self):
        """A status that is not an int from 200 to 599 is a 502."""
        for status in [None, "200", 200.0, True, 99, 600, -1]:
            self.setUp()
            self.assertBadGateway({"status": status}, "status")

    def test_interim_status(self):
        """An interim or upgrade status (1xx) from a handler is a 502: it would
        not end the exchange, so the next answer on the connection would be
        read as this one's."""
        for status in [100, 101, 103, 199]:
            self.setUp()
            self.assertBadGateway(
                {"status": status, "body": "x"}, f"status {status} is an interim (1xx) status"
            )

    def test_no_body_statuses(self):
        """A 204 or 304 has no body, whatever the handler gave (RFC 9110)."""
        for status in [204, 304]:
            self.setUp()
            response = self.answer({"status": status, "body": "not sent"})
            self.assertEqual((response.status, response.body), (status, b""))

    def test_date_and_framing_headers_dropped(self):
        """The gateway alone dates and frames the answer: a handler's Date,
        Content-Length, Transfer-Encoding and Connection are dropped, in any
        case of their names."""
        response = self.answer(
            {
                "status": 200,
                "headers": {
                    "Date": "Mon, 01 Jan 2001 00:00:00 GMT",
                    "Content-Length": "1",
                    "Transfer-Encoding": "chunked",
                    "connection": "keep-alive",
                },
                "body": "ok",
            }
        )
        self.assertEqual(response.headers, [("x-request-id", "rid-1")])

    def test_control_characters_in_values(self):
        """VT, DEL and every other control character but HTAB in a header
        value (a string or an item of a list) are a 502 naming the header and
        the character; HTAB is kept."""
        for char in "\x0b\x7f\x01\x1f\x00":
            for value in (f"a{char}b", ["ok", f"a{char}b"]):
                self.setUp()
                self.assertBadGateway(
                    {"status": 200, "headers": {"x-c": value}}, f"'x-c' contains the control character U+{ord(char):04X}"
                )
        self.setUp()
        response = self.answer({"status": 200, "headers": {"x-t": "a\tb"}})
        self.assertEqual(self.header(response, "x-t"), ["a\tb"])

    def test_bad_base64(self):
        """Invalid base64 is a 502."""
        self.assertBadGateway({"status": 200, "body_base64": "!!!"}, "base64")

    def test_bad_body_type(self):
        """A body that is not a string or null is a 502."""
        self.assertBadGateway({"status": 200, "body": {"a": 1}}, "body")

    def test_bad_headers(self):
        """Non-object headers, non-string values, bad names or CR/LF are 502s."""
        cases = [
            ({"status": 200, "headers": ["a"]}, "headers"),
            ({"status": 200, "headers": {"x-n": 5}}, "x-n"),
            ({"status": 200, "headers": {"x-l": ["a", 1]}}, "x-l"),
            ({"status": 200, "headers": {"bad name": "v"}}, "bad name"),
            ({"status": 200, "headers": {"x-i": "a\r\nSet-Cookie: x"}}, "U+000D"),
        ]
        for frame, fragment in cases:
            self.setUp()
            self.assertBadGateway(frame, fragment)

    def test_not_an_object(self):
        """A response that is not a dict is a 502."""
        self.assertBadGateway(["status", 200], "object")


class PathNormalFormTests(DispatchTestsMixin, SynchronousTestCase):
    """Routing and the handler see one path: its normal form."""

    def setUp(self):
        super().setUp()
        self.secret = FakeTarget("secret")
        self.routes.add("secret", "*", "GET", parse_pattern("/secret"), self.secret)

    def status_of(self, path):
        """The status the dispatcher answers at once for C{path}."""
        response = self.successResultOf(self.dispatcher.dispatch(make_request(path=path)))
        return response.status, self.json_body(response)["error"]

    def test_unreserved_escape_routes_and_reaches_handler_decoded(self):
        """C{/%73ecret} reaches the C{/secret} route, and its handler sees
        C{/secret}: not a path that a proxy's rule on C{/secret} would have
        compared differently."""
        self.dispatcher.dispatch(make_request(path="/%73ecre%74"))
        [frame] = self.secret.frames
        self.assertEqual(frame["path"], "/secret")

    def test_escape_decoded_once(self):
        """C{%2573} is an escaped C{%}: kept, so C{/%2573ecret} is not C{/secret}."""
        self.assertEqual(self.status_of("/%2573ecret")[0], 404)
        self.assertEqual(self.secret.frames, [])

    def test_reserved_escape_kept_as_data(self):
        """C{%2f} stays one segment, upper-cased in C{path}, a C{/} in the parameter."""
        frame, _ = self.frame_for(make_request(path="/users/a%2fb%3F"))
        self.assertEqual(frame["path"], "/users/a%2Fb%3F")
        self.assertEqual(frame["params"], {"id": "a/b?"})

    def test_nul_refused(self):
        """C{%00} anywhere in the path is a 400 naming it; nothing is dispatched."""
        status, error = self.status_of("/users/a%00")
        self.assertEqual(status, 400)
        self.assertIn("%00", error)
        self.assertEqual(self.target.frames, [])

    def test_malformed_escape_refused(self):
        """A C{%} not followed by two hex digits is a 400 naming the escape."""
        for path, shown in [("/users/%zz", "'%zz'"), ("/users/a%4", "'%4'"), ("/users/%", "'%'")]:
            status, error = self.status_of(path)
            self.assertEqual(status, 400)
            self.assertIn(f"malformed percent-escape {shown}", error)
        self.assertEqual(self.target.frames, [])

    def test_dot_segments_refused(self):
        """C{.} and C{..} segments, also escaped, are a 400: never resolved to
        another route, never routed as literals."""
        for path in ["/users/../secret", "/users/./1", "/users/%2e%2E", "/users/1/..", "/%2E/secret"]:
            status, error = self.status_of(path)
            self.assertEqual(status, 400, path)
            self.assertIn("dot-segment", error)
        self.assertEqual(self.secret.frames, [])
        self.assertEqual(self.target.frames, [])

    def test_dots_inside_segments_are_data(self):
        """Dots that are not a whole segment are ordinary characters."""
        frame, _ = self.frame_for(make_request(path="/users/a..b.json"))
        self.assertEqual(frame["params"], {"id": "a..b.json"})

    def test_match_cache_shared_by_spellings(self):
        """Two spellings of one path route alike and hand the handler the same
        path, whichever came first (the match cache holds the normal form)."""
        for path in ["/users/%41b", "/users/Ab", "/users/%41b"]:
            frame, _ = self.frame_for(make_request(path=path))
            self.assertEqual((frame["path"], frame["params"]), ("/users/Ab", {"id": "Ab"}))


class FailureTests(DispatchTestsMixin, SynchronousTestCase):
    """Target failures become JSON errors with the right status."""

    def fail_with(self, error):
        _, d = self.frame_for(make_request())
        self.target.deferreds[-1].errback(error)
        return self.successResultOf(d)

    def test_gateway_errors(self):
        """Each GatewayError subclass maps to its status with message and endpoint."""
        cases = [
            (WorkerCrashed, 502),
            (ProtocolViolation, 502),
            (RequestTimedOut, 504),
            (PoolStopped, 503),
            (GatewayError, 500),
        ]
        for number, (error_class, status) in enumerate(cases, start=1):
            response = self.fail_with(error_class("it broke"))
            self.assertEqual(response.status, status, error_class)
            self.assertEqual(
                self.json_body(response),
                {
                    "error": "it broke",
                    "endpoint": "hello-endpoint",
                    "request_id": f"rid-{number}",
                },
            )
            self.assertEqual(self.header(response, "retry-after"), [])

    def test_overloaded(self):
        """Overloaded gives 503 with Retry-After in whole seconds."""
        response = self.fail_with(Overloaded("queue full", retry_after=3))
        self.assertEqual(response.status, 503)
        self.assertEqual(self.header(response, "retry-after"), ["3"])
        self.assertEqual(self.json_body(response)["error"], "queue full")

    def test_unexpected_exception(self):
        """Any other exception is a 500 with the request id, logged, no traceback."""
        response = self.fail_with(ZeroDivisionError("secret detail"))
        self.assertEqual(response.status, 500)
        body = self.json_body(response)
        self.assertEqual(body["request_id"], "rid-1")
        self.assertNotIn("secret", response.body.decode())
        self.assertNotIn("Traceback", response.body.decode())
        self.assertNotIn("ZeroDivisionError", response.body.decode())
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_synchronous_raise(self):
        """A target that raises instead of returning a Deferred is handled too."""

        class Raising:
            def request(self, frame):
                raise Overloaded("full", retry_after=2)

        self.routes.add("r", "*", "GET", parse_pattern("/raise"), Raising())
        response = self.successResultOf(
            self.dispatcher.dispatch(make_request(path="/raise"))
        )
        self.assertEqual(response.status, 503)
        self.assertEqual(self.header(response, "retry-after"), ["2"])
        self.assertNotIn("endpoint", self.json_body(response))

    def test_already_fired(self):
        """A target returning an already-fired Deferred is answered at once."""

        class Instant:
            name = "instant"

            def request(self, frame):
                return succeed({"status": 200, "body": frame["params"]["v"]})

        class Broken:
            name = "broken"

            def request(self, frame):
                return fail(WorkerCrashed("gone"))

        self.routes.add("i", "*", "GET", parse_pattern("/i/{v}"), Instant())
        self.routes.add("b", "*", "GET", parse_pattern("/b"), Broken())
        ok = self.successResultOf(self.dispatcher.dispatch(make_request(path="/i/x")))
        self.assertEqual((ok.status, ok.body), (200, b"x"))
        bad = self.successResultOf(self.dispatcher.dispatch(make_request(path="/b")))
        self.assertEqual(bad.status, 502)
        self.assertEqual(self.json_body(bad)["endpoint"], "broken")

    def test_invalid_response_is_gateway_error(self):
        """L{InvalidResponse} is a 502 GatewayError other planes can recognise."""
        self.assertTrue(issubclass(InvalidResponse, GatewayError))
        self.assertEqual(InvalidResponse.status, 502)


class ServeTests(DispatchTestsMixin, SynchronousTestCase):
    """L{Dispatcher.serve}: the callback form the HTTP layer uses."""

    def test_serve_calls_back_with_the_response(self):
        """serve() hands the response to its callback once the target answers."""
        responses = []
        self.dispatcher.serve(make_request(), responses.append)
        self.assertEqual(responses, [])
        self.target.deferreds[-1].callback({"status": 201, "body": "made"})
        [response] = responses
        self.assertEqual((response.status, response.body), (201, b"made"))
        self.assertEqual(self.header(response, "x-request-id"), ["rid-1"])

    def test_unrouted_answers_at_once(self):
        """No route: the callback has its 404 before serve() returns."""
        responses = []
        self.dispatcher.serve(make_request(path="/nowhere"), responses.append)
        self.assertEqual([r.status for r in responses], [404])

    def test_submit_is_preferred(self):
        """
        A target with submit(frame, answer) is called that way, with no
        Deferred; a Failure it answers becomes the error response.
        """

        class Submitting:
            name = "pool"

            def __init__(self):
                self.answers = []

            def request(self, frame):
                raise AssertionError("request() called although submit() exists")

            def submit(self, frame, answer):
                self.answers.append((frame, answer))

        target = Submitting()
        self.routes.add("s", "*", "GET", parse_pattern("/s/{v}"), target)
        responses = []
        self.dispatcher.serve(make_request(path="/s/1"), responses.append)
        self.dispatcher.serve(make_request(path="/s/2"), responses.append)
        (first, answer_first), (second, answer_second) = target.answers
        self.assertEqual((first["params"], second["params"]), ({"v": "1"}, {"v": "2"}))
        answer_second(Failure(WorkerCrashed("gone")))
        answer_first({"status": 200, "body": "one"})
        self.assertEqual([(r.status, r.body[:3]) for r in responses], [(502, b'{"e'), (200, b"one")])
        self.assertEqual(self.json_body(responses[0])["endpoint"], "pool")

    def test_dispatch_is_serve_with_a_deferred(self):
        """dispatch() fires its Deferred with what serve() answers."""

        class Submitting:
            def submit(self, frame, answer):
                answer({"status": 204})

        self.routes.add("s", "*", "GET", parse_pattern("/now"), Submitting())
        response = self.successResultOf(self.dispatcher.dispatch(make_request(path="/now")))
        self.assertEqual(response.status, 204)
