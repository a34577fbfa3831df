"""
A panic's location in the endpoint's log names the handler's file in the
user's terms (``<name>.rs:4:37``), not the gateway's ``src/main.rs``.
"""

import json

from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from edgegw_tx.build.locations import locating_log, source_name, user_locations
from tests.support.harness import GatewayTestCase

# The panic is on line 5, column 9: `panic!` after eight spaces.
PANICS_ON_LINE_5 = """use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    if req.path.ends_with("/boom") {
        panic!("boom on {}", req.path);
    }
    Response::ok(json!({"fine": true}))
}

handler_loop!(handle);
"""


class UserLocationsTests(unittest.TestCase):
    """The rewriting of one stderr line."""

    def test_panic_location_names_the_endpoints_file(self):
        """Rust's panic line `panicked at src/main.rs:4:37:` says `hello.rs:4:37` instead."""
        self.assertEqual(
            user_locations("thread 'main' panicked at src/main.rs:4:37:", "hello.rs"),
            "thread 'main' panicked at hello.rs:4:37:",
        )

    def test_other_files_are_left_alone(self):
        """A location in another crate's src/main.rs, or src/main.rs without line and column, is kept."""
        for line in (
            "thread 'main' panicked at /usr/share/cargo/registry/x-1.0/src/main.rs:1:2:",
            "thread 'main' panicked at rust_sdk/src/runtime.rs:10:5:",
            "reading src/main.rs failed",
        ):
            self.assertEqual(user_locations(line, "hello.rs"), line)

    def test_source_name_adds_rs_once(self):
        """An endpoint `hello` is `hello.rs`; one already named `hello.rs` keeps its name."""
        self.assertEqual((source_name("hello"), source_name("hello.rs")), ("hello.rs", "hello.rs"))

    def test_log_rewrites_stderr_and_keeps_the_trace_id(self):
        """The log wrapper renames on stderr lines only and hands the trace id on to a three-argument log."""
        seen = []
        log = locating_log(lambda stream, line, trace_id=None: seen.append((stream, line, trace_id)), "api")
        log("stderr", "thread 'main' panicked at src/main.rs:2:3:", "t1")
        log("stdout", "src/main.rs:2:3", None)
        self.assertEqual(
            seen,
            [("stderr", "thread 'main' panicked at api.rs:2:3:", "t1"), ("stdout", "src/main.rs:2:3", None)],
        )

    def test_log_without_trace_id_gets_two_arguments(self):
        """A two-argument log (as worker pools accept) is called with two arguments."""
        seen = []
        log = locating_log(lambda stream, line: seen.append((stream, line)), "api")
        log("stderr", "at src/main.rs:1:1", "t1")
        self.assertEqual(seen, [("stderr", "at api.rs:1:1")])


class PanicLocationIntegrationTests(GatewayTestCase):
    """A real handler compiled by cargo panics; its log names the endpoint's file."""

    @inlineCallbacks
    def test_real_panic_is_logged_at_the_users_file_and_line(self):
        """A handler panicking on line 5 column 9 logs `panicked at boomer.rs:5:9:`, and no `src/main.rs`."""
        started = yield self.gateway.deploy("boomer", "/boomer/{what}", PANICS_ON_LINE_5)
        response, content = yield self.gateway.get("/boomer/boom")
        self.assertEqual(response.code, 500, content)
        self.assertEqual(json.loads(content)["error"], "handler panicked")
        code, logs = yield self.gateway.call("GET", "/endpoints/%s/logs" % started["id"])
        text = "\n".join(entry["line"] for entry in logs["data"]["lines"])
        self.assertIn("panicked at boomer.rs:5:9:", text)
        self.assertNotIn("src/main.rs", text)
