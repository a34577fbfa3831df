"""
Every handler in docs/examples/, deployed through a real gateway with real cargo
and real workers, answering real HTTP: a broken example fails the suite.
"""

import os
import re

from twisted.internet.defer import inlineCallbacks

from tests.support.harness import ROOT, GatewayTestCase

EXAMPLES = os.path.join(ROOT, "docs", "examples")


def example(name):
    with open(os.path.join(EXAMPLES, name + ".rs")) as f:
        return f.read()


class ExampleIntegrationTests(GatewayTestCase):


    def test_every_example_is_tested(self):
        """Each .rs file in docs/examples has a test here."""
        names = sorted(f[:-3] for f in os.listdir(EXAMPLES) if f.endswith(".rs"))
        tested = sorted(n[len("test_"):] for n in dir(self) if n.startswith("test_") and n[5:] in names)
        self.assertEqual(names, tested)

    @inlineCallbacks
    def test_hello(self):
        """hello.rs answers its greeting with the path and method."""
        yield self.gateway.deploy("hello", "/hello", example("hello"))
        response, body = yield self.json_request("GET", "/hello")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, {"message": "Hello, World!", "path": "/hello", "method": "GET"})

    @inlineCallbacks
    def test_json_api(self):
        """json_api.rs creates users from a typed body and rejects bad input with 400s."""
        started = yield self.gateway.deploy("users", "/users", example("json_api"), method="POST")
        code, compiled = yield self.gateway.call("POST", "/endpoints/%s/compile" % started["id"])
        self.assertIn("uuid", compiled["data"]["build"]["dependencies"])

        response, body = yield self.json_request(
            "POST", "/users", json={"name": "Ada", "email": "ada@example.com", "age": 36}
        )
        self.assertEqual(response.code, 201)
        self.assertEqual((body["name"], body["age"]), ("Ada", 36))
        self.assertEqual(len(body["id"]), 36)

        for payload, status, words in (
            (None, 400, "body"),
            (b"{not json", 400, "JSON"),
            ({"name": "Ada", "email": "a@b", "age": "old"}, 400, "age"),
            ({"name": " ", "email": "a@b"}, 400, "name must not be empty"),
            ({"name": "Ada", "email": "nope"}, 400, "'nope' is not an email"),
        ):
            kwargs = {}
            if isinstance(payload, bytes):
                kwargs["data"] = payload
            elif payload is not None:
                kwargs["json"] = payload
            response, body = yield self.json_request("POST", "/users", **kwargs)
            self.assertEqual(response.code, status, (payload, body))
            self.assertIn(words, body["error"], payload)

    @inlineCallbacks
    def test_path_params(self):
        """path_params.rs reads typed path parameters; a non-number id is a 400 naming it."""
        yield self.gateway.deploy("posts", "/users/{id}/posts/{slug}", example("path_params"))
        response, body = yield self.json_request("GET", "/users/42/posts/hello-world")
        self.assertEqual((response.code, body), (200, {"user_id": 42, "slug": "hello-world"}))
        response, body = yield self.json_request("GET", "/users/abc/posts/x")
        self.assertEqual(response.code, 400)
        self.assertIn("'id'", body["error"])

    @inlineCallbacks
    def test_query_params(self):
        """query_params.rs: q is required, limit and page default, malformed values are 400."""
        yield self.gateway.deploy("search", "/search", example("query_params"))
        response, body = yield self.json_request("GET", "/search?q=rust")
        self.assertEqual((response.code, body), (200, {"q": "rust", "limit": 10, "page": 1}))
        response, body = yield self.json_request("GET", "/search?q=a+b&limit=5&page=2")
        self.assertEqual(body, {"q": "a b", "limit": 5, "page": 2})
        for query, words in (("", "'q'"), ("?q=x&limit=abc", "'limit'"), ("?q=x&limit=500", "limit")):
            response, body = yield self.json_request("GET", "/search" + query)
            self.assertEqual(response.code, 400, query)
            self.assertIn(words, body["error"], query)

    @inlineCallbacks
    def test_error_handling(self):
        """error_handling.rs maps each HandlerError to its status with a JSON error body."""
        yield self.gateway.deploy("items", "/items/{id}", example("error_handling"))
        response, body = yield self.json_request("GET", "/items/5")
        self.assertEqual((response.code, body["name"]), (200, "item 5"))
        self.assertIn("max-age=60", response.headers.getRawHeaders("cache-control")[0])
        for path, status, words in (
            ("/items/0", 400, "reserved"),
            ("/items/150", 403, "private"),
            ("/items/500", 404, "no item 500"),
            ("/items/x", 400, "'id'"),
        ):
            response, body = yield self.json_request("GET", path)
            self.assertEqual(response.code, status, path)
            self.assertIn(words, body["error"])

    @inlineCallbacks
    def test_async_handler(self):
        """async_handler.rs awaits a Tokio timer and answers; the build got the async feature."""
        started = yield self.gateway.deploy("wait", "/wait", example("async_handler"))
        code, compiled = yield self.gateway.call("POST", "/endpoints/%s/compile" % started["id"])
        self.assertIn("tokio", compiled["data"]["build"]["dependencies"])
        response, body = yield self.json_request("GET", "/wait?ms=50")
        self.assertEqual(response.code, 200)
        self.assertEqual(body["slept_ms"], 50)
        self.assertGreaterEqual(body["elapsed_ms"], 50)

    @inlineCallbacks
    def test_binary_response(self):
        """binary_response.rs serves PNG bytes exactly, with their content type."""
        yield self.gateway.deploy("pixel", "/pixel.png", example("binary_response"))
        response, content = yield self.gateway.request("GET", "/pixel.png")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["image/png"])
        source = example("binary_response")
        array = source[source.index("PIXEL"):source.index("];")]
        expected = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", array))
        self.assertEqual(content, expected)
        self.assertEqual(content[:8], b"\x89PNG\r\n\x1a\n")

    @inlineCallbacks
    def test_multipart_upload(self):
        """multipart_upload.rs receives a field and a binary file intact; bad forms are 400."""
        yield self.gateway.deploy("upload", "/upload", example("multipart_upload"), method="POST")
        data = bytes(range(256)) * 4
        boundary = "----edgegw-test-boundary"
        body = (
            (
                f"--{boundary}\r\n"
                'Content-Disposition: form-data; name="title"\r\n\r\n'
                "Holiday\r\n"
                f"--{boundary}\r\n"
                'Content-Disposition: form-data; name="file"; filename="noise.bin"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        response, result = yield self.json_request("POST", "/upload", data=body, headers=headers)
        self.assertEqual(response.code, 201, result)
        self.assertEqual(
            result,
            {
                "title": "Holiday",
                "filename": "noise.bin",
                "content_type": "application/octet-stream",
                "size": len(data),
                "checksum": sum(data),
            },
        )
        without_file = body.split(f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"".encode())[0]
        without_file += f"--{boundary}--\r\n".encode()
        response, result = yield self.json_request(
            "POST", "/upload", data=without_file, headers=headers
        )
        self.assertEqual(response.code, 400)
        self.assertIn("'file'", result["error"])
        response, result = yield self.json_request(
            "POST", "/upload", data=b"title=x", headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        self.assertEqual(response.code, 400)
        self.assertIn("multipart", result["error"])

    @inlineCallbacks
    def test_cors(self):
        """cors.rs answers the preflight with 204 and CORS headers, and the GET with them too."""
        code = example("cors")
        yield self.gateway.deploy("items-preflight", "/api/items", code, method="OPTIONS")
        yield self.gateway.deploy("items", "/api/items", code)
        origin = {"Origin": "https://app.example.com"}
        response, content = yield self.gateway.request(
            "OPTIONS", "/api/items", headers=dict(origin, **{"Access-Control-Request-Method": "GET"})
        )
        self.assertEqual(response.code, 204)
        self.assertEqual(
            response.headers.getRawHeaders("access-control-allow-origin"), ["https://app.example.com"]
        )
        self.assertTrue(response.headers.getRawHeaders("access-control-allow-methods"))
        self.assertEqual(response.headers.getRawHeaders("access-control-max-age"), ["600"])
        response, body = yield self.json_request("GET", "/api/items", headers=origin)
        self.assertEqual((response.code, body), (200, {"items": ["a", "b"]}))
        self.assertEqual(
            response.headers.getRawHeaders("access-control-allow-origin"), ["https://app.example.com"]
        )
