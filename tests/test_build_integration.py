"""
Integration tests of the build plane: real cargo, real SDK, real reactor.

They share one cargo target directory, ``<repo>/.cache/test-target`` (shared with test_integration)
(gitignored), so the suite pays the cold compile of serde and the SDK once per
machine and each test then compiles its handler in about a second.
"""

import json
import os
from pathlib import Path

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from edgegw_tx.build import Builder, CargoNotFound, CompileFailed
from edgegw_tx.build.cargo import find_cargo
from edgegw_tx.workers.pool import WorkerPool

from tests.support.builds import HELLO

REPO = Path(__file__).resolve().parents[1]
SDK = REPO / "rust_sdk"
SHARED_TARGET = REPO / ".cache" / "test-target"

# Names chrono, uuid, regex, base64 and tokio in the forms handlers use; the
# features the gateway adds (serde for chrono and uuid, v4, tokio's rt, time,
# sync and macros) are what make it compile.
KNOWN_CRATES_HANDLER = r"""use rust_edge_gateway_sdk::prelude::*;
use chrono::{TimeZone, Utc};
use uuid::Uuid;

fn handle(req: Request) -> Response {
    let when = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let id = Uuid::new_v4();
    let re = regex::Regex::new(r#"^/deps/(\w+)$"#).unwrap();
    let word = re.captures(&req.path).map(|c| c[1].to_string()).unwrap_or_default();
    let encoded = base64::encode(word.as_bytes());
    let decoded = String::from_utf8(base64::decode(&encoded).unwrap()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let slept = runtime.block_on(async {
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            tx.send(true).unwrap();
        });
        tokio::select! { done = rx => done.unwrap() }
    });
    Response::ok(json!({
        "when": when,
        "uuid_version": id.get_version_num(),
        "nil": Uuid::nil(),
        "word": word,
        "encoded": encoded,
        "decoded": decoded,
        "slept": slept,
    }))
}

handler_loop!(handle);
"""

# An async loop (the SDK's `async` feature) with the handler's own tokio:: paths
# (tokio as a direct dependency); both must resolve to one tokio.
ASYNC_HANDLER = r"""use rust_edge_gateway_sdk::prelude::*;
use std::time::Duration;

async fn handle(req: Request) -> Result<Response, HandlerError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2)).await;
        tx.send(req.path.len()).unwrap();
    });
    let len = rx.await.map_err(|e| HandlerError::Internal(e.to_string()))?;
    Ok(Response::ok(json!({"path_len": len})))
}

handler_loop_async_result!(handle);
"""


def _request(path):
    return {
        "type": "request",
        "method": "GET",
        "path": path,
        "query": {},
        "headers": {},
        "params": {},
        "body": None,
        "client_ip": "127.0.0.1",
        "request_id": "deps-1",
    }


def _skip_reason():
    try:
        find_cargo()
    except CargoNotFound as e:
        return f"needs cargo: {e}"
    if not (SDK / "src" / "lib.rs").exists():
        return f"needs the Rust SDK at {SDK} (src/lib.rs does not exist yet)"
    return None


class RealCargoTests(TestCase):
    """Handlers compiled by the real toolchain."""

    skip = _skip_reason()
    # The first run on a machine compiles serde, serde_json and the SDK.
    timeout = 900

    def make_builder(self):
        data = os.path.abspath(self.mktemp())
        return Builder(data, SDK, target_dir=SHARED_TARGET)

    def test_hello_compiles(self):
        """The SDK's hello handler compiles to an executable stored by digest."""
        builder = self.make_builder()

        def check(result):
            self.assertFalse(result.cached)
            self.assertTrue(os.path.isfile(result.binary))
            self.assertTrue(os.access(result.binary, os.X_OK))
            self.assertEqual(builder.artifact(result.digest), result.binary)
            self.assertEqual(result.warnings, [])

        return builder.build("hello", HELLO).addCallback(check)

    def test_compile_error_has_user_line(self):
        """A type error on line 4 of the user's code is reported as a CompileFailed diagnostic on line 4."""
        code = HELLO.replace(
            "fn handle(req: Request) -> Response {\n",
            "fn handle(req: Request) -> Response {\n    let n: u32 = \"text\";\n",
        )
        d = self.make_builder().build("broken", code)

        def check(failure):
            failure.trap(CompileFailed)
            errors = [x for x in failure.value.diagnostics if x["level"] == "error"]
            self.assertEqual((errors[0]["line"], errors[0]["column"]), (4, 18))
            self.assertIn("mismatched types", errors[0]["message"])
            self.assertNotIn("\x1b", errors[0]["rendered"])

        d.addCallbacks(lambda r: self.fail(f"compiled: {r}"), check)
        return d

    def test_unchanged_code_is_cached(self):
        """Compiling the same code again is answered from the artifact store without cargo."""
        builder = self.make_builder()
        code = HELLO.replace("Hello, World!", "Hello again")
        d = builder.build("again", code)

        def second(first):
            return builder.build("again", code).addCallback(lambda again: (first, again))

        def check(results):
            first, again = results
            self.assertFalse(first.cached)
            self.assertTrue(again.cached)
            self.assertEqual(again.binary, first.binary)
            self.assertLess(again.seconds, 0.5)

        return d.addCallback(second).addCallback(check)

    @inlineCallbacks
    def test_known_crates_compile_and_run(self):
        """A handler naming chrono, uuid, regex, base64 and tokio builds from the crate source and serves a request."""
        builder = self.make_builder()
        result = yield builder.build("deps", KNOWN_CRATES_HANDLER)
        self.assertEqual(
            result.dependencies,
            ["rust-edge-gateway-sdk", "serde", "serde_json", "chrono", "uuid", "regex", "base64", "tokio"],
        )
        self.assertEqual(result.warnings, [])
        self.assertTrue(os.access(result.binary, os.X_OK))

        pool = WorkerPool("deps", [result.binary], timeout=30.0)
        self.addCleanup(pool.stop)
        yield pool.start()
        response = yield pool.request(_request("/deps/hello"))
        self.assertEqual(response["status"], 200, response)
        body = json.loads(response["body"])
        self.assertEqual(
            body,
            {
                "when": "2023-11-14T22:13:20Z",  # chrono with serde
                "uuid_version": 4,  # uuid with v4
                "nil": "00000000-0000-0000-0000-000000000000",  # uuid with serde
                "word": "hello",
                "encoded": "aGVsbG8=",
                "decoded": "hello",
                "slept": True,
            },
        )

    def test_unresolvable_dependency_shows_cargos_message(self):
        """An explicit crate the crate source lacks fails with CompileFailed carrying cargo's resolution error."""
        builder = self.make_builder()
        if builder.crate_source != "debian":
            self.skipTest("needs Debian's packaged crates: with crates.io the answer depends on the network")
        d = builder.build("nosuch", KNOWN_CRATES_HANDLER, {"edgegw-no-such-crate": "1"})

        def check(failure):
            failure.trap(CompileFailed)
            [diagnostic] = failure.value.diagnostics
            self.assertEqual((diagnostic["level"], diagnostic["line"]), ("error", None))
            self.assertIn("no matching package named `edgegw-no-such-crate` found", diagnostic["message"])
            self.assertIn("no matching package", str(failure.value))

        d.addCallbacks(lambda r: self.fail(f"compiled: {r}"), check)
        return d

    @inlineCallbacks
    def test_async_loop_gets_sdk_feature_and_tokio(self):
        """A handler_loop_async_result! handler gets the SDK's async feature and tokio, builds and serves."""
        if 'async = ["dep:tokio"]' not in (SDK / "Cargo.toml").read_text():
            self.skipTest("the SDK has no `async` feature yet")
        builder = self.make_builder()
        result = yield builder.build("asyncdeps", ASYNC_HANDLER)
        self.assertEqual(
            result.dependencies,
            ["rust-edge-gateway-sdk", "rust-edge-gateway-sdk/async", "serde", "serde_json", "tokio"],
        )
        pool = WorkerPool("asyncdeps", [result.binary], timeout=30.0)
        self.addCleanup(pool.stop)
        yield pool.start()
        response = yield pool.request(_request("/four"))
        self.assertEqual((response["status"], json.loads(response["body"])), (200, {"path_len": 5}), response)
