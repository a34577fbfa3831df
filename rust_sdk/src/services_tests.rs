//! Tests of the service handles and the call path, against in-memory frames
//! (the worker loop of `runtime::serve_dyn` plays the worker, prepared
//! input frames play the gateway).

use super::*;
use crate::channel::OUTSIDE_A_REQUEST;
use crate::frame::{encode_frame, read_frame, FrameError, MAX_FRAME_LEN};
use crate::params;
use crate::request::Request;
use crate::response::Response;
use crate::runtime::serve_dyn;
use serde_json::json;
use std::cell::RefCell;
use std::io::{self, Write};

fn wire(frames: &[Value]) -> Vec<u8> {
    frames
        .iter()
        .flat_map(|f| encode_frame(f, MAX_FRAME_LEN).unwrap())
        .collect()
}

fn frames_of(mut out: &[u8]) -> Vec<Value> {
    let mut frames = Vec::new();
    while let Some(f) = read_frame(&mut out, MAX_FRAME_LEN).unwrap() {
        frames.push(Value::Object(f));
    }
    frames
}

fn request(id: u64, path: &str) -> Value {
    json!({"type": "request", "id": id, "method": "GET", "path": path, "request_id": format!("r{id}")})
}

fn ok(id: u64, data: Value) -> Value {
    json!({"type": "result", "id": id, "ok": true, "data": data})
}

fn failed(id: u64, kind: &str, message: &str) -> Value {
    json!({"type": "result", "id": id, "ok": false, "error": {"kind": kind, "message": message}})
}

fn call(id: u64, request: &str, service: &str, pool: &str, action: &str, args: Value) -> Value {
    json!({"type": "call", "id": id, "request": request, "service": service,
           "pool": pool, "action": action, "args": args})
}

/// Runs the loop over `input`; returns the frames written after `ready`
/// and how the loop ended.
fn run(
    input: &[Value],
    handler: &dyn Fn(Request) -> Response,
) -> (Vec<Value>, Result<(), FrameError>) {
    run_bytes(&wire(input), handler, MAX_FRAME_LEN)
}

fn run_bytes(
    input: &[u8],
    handler: &dyn Fn(Request) -> Response,
    max_frame: usize,
) -> (Vec<Value>, Result<(), FrameError>) {
    let mut out = Vec::new();
    let end = serve_dyn(&mut &input[..], &mut out, handler, max_frame);
    let mut frames = frames_of(&out);
    assert_eq!(frames.remove(0)["type"], "ready");
    (frames, end)
}

/// A response carrying an outcome: 200 with the value, or the error's
/// response (its status and `{"error": Display}`).
fn answer(outcome: Result<Value, HandlerError>) -> Response {
    match outcome {
        Ok(v) => Response::ok(json!({ "value": v })),
        Err(e) => e.into(),
    }
}

fn body(frame: &Value) -> Value {
    serde_json::from_str(frame["body"].as_str().unwrap()).unwrap()
}

fn status_and_body(frame: &Value) -> (u64, Value) {
    (frame["status"].as_u64().unwrap(), body(frame))
}

type Invoke = fn() -> Result<Value, HandlerError>;

fn db() -> DbPool {
    DbPool::new("main")
}

fn redis() -> RedisPool {
    RedisPool::new("cache")
}

fn files() -> Storage {
    Storage::new("files")
}

/// (what the handler does, service, pool, action, args sent, data the
/// gateway answers, the decoded value as JSON). The SQL cases pin the
/// parameter forms handlers write (`&[...]`, `&names[..]`), borrows included.
#[allow(clippy::needless_borrows_for_generic_args, clippy::useless_vec)]
fn action_cases() -> Vec<(
    Invoke,
    &'static str,
    &'static str,
    &'static str,
    Value,
    Value,
    Value,
)> {
    let rows = json!({"columns": ["id", "body"], "rows": [{"id": 3, "body": "hi"}, {"id": 4, "body": null}]});
    vec![
        (
            || {
                let r = db().query("SELECT id, body FROM notes WHERE id > ?", &[json!(2)])?;
                Ok(
                    json!({"columns": r.columns, "rows": r.rows, "len": r.len(), "first": r.first()}),
                )
            },
            "db",
            "main",
            "query",
            json!({"sql": "SELECT id, body FROM notes WHERE id > ?", "params": [2]}),
            rows,
            json!({"columns": ["id", "body"], "rows": [{"id": 3, "body": "hi"}, {"id": 4, "body": null}],
                   "len": 2, "first": {"id": 3, "body": "hi"}}),
        ),
        (
            || {
                let r = db().query("SELECT 1 WHERE 0", &[])?;
                Ok(json!([r.is_empty(), r.columns, r.first()]))
            },
            "db",
            "main",
            "query",
            json!({"sql": "SELECT 1 WHERE 0", "params": []}),
            json!({"columns": ["1"], "rows": []}),
            json!([true, ["1"], null]),
        ),
        (
            || {
                Ok(json!(db().execute(
                    "UPDATE t SET a = ? WHERE b = ?",
                    &[json!("x"), json!(null)]
                )?))
            },
            "db",
            "main",
            "execute",
            json!({"sql": "UPDATE t SET a = ? WHERE b = ?", "params": ["x", null]}),
            json!({"rows_affected": 5, "last_insert_id": null}),
            json!(5),
        ),
        (
            || {
                let r = db().execute_details("INSERT INTO t (a) VALUES (?)", &[json!(1.5)])?;
                Ok(json!([r.rows_affected, r.last_insert_id]))
            },
            "db",
            "main",
            "execute",
            json!({"sql": "INSERT INTO t (a) VALUES (?)", "params": [1.5]}),
            json!({"rows_affected": 1, "last_insert_id": 42}),
            json!([1, 42]),
        ),
        (
            || {
                Ok(json!(db().execute(
                    "INSERT INTO pets (name, status) VALUES (?, ?)",
                    &["Rex", "sold"]
                )?))
            },
            "db",
            "main",
            "execute",
            json!({"sql": "INSERT INTO pets (name, status) VALUES (?, ?)", "params": ["Rex", "sold"]}),
            json!({"rows_affected": 1, "last_insert_id": 1}),
            json!(1),
        ),
        (
            || {
                let names = vec![String::from("Rex"), String::from("Tom")];
                let r = db().query("SELECT * FROM pets WHERE name IN (?, ?)", &names[..])?;
                Ok(json!(r.len()))
            },
            "db",
            "main",
            "query",
            json!({"sql": "SELECT * FROM pets WHERE name IN (?, ?)", "params": ["Rex", "Tom"]}),
            json!({"columns": [], "rows": []}),
            json!(0),
        ),
        (
            || {
                let r = db().execute_details(
                    "UPDATE t SET a = ?, b = ?, c = ?, d = ? WHERE e = ?",
                    params![7, 2.5, true, None, "x"],
                )?;
                Ok(json!(r.rows_affected))
            },
            "db",
            "main",
            "execute",
            json!({"sql": "UPDATE t SET a = ?, b = ?, c = ?, d = ? WHERE e = ?", "params": [7, 2.5, true, null, "x"]}),
            json!({"rows_affected": 2, "last_insert_id": null}),
            json!(2),
        ),
        (
            || Ok(json!(db().insert("INSERT INTO t DEFAULT VALUES", &[])?)),
            "db",
            "main",
            "execute",
            json!({"sql": "INSERT INTO t DEFAULT VALUES", "params": []}),
            json!({"rows_affected": 1, "last_insert_id": -7}),
            json!(-7),
        ),
        (
            || Ok(json!(db().insert("INSERT INTO t DEFAULT VALUES", &[])?)),
            "db",
            "main",
            "execute",
            json!({"sql": "INSERT INTO t DEFAULT VALUES", "params": []}),
            json!({"rows_affected": 1}),
            json!(null),
        ),
        (
            || Ok(json!(redis().get("k")?)),
            "redis",
            "cache",
            "get",
            json!({"key": "k"}),
            json!("v"),
            json!("v"),
        ),
        (
            || Ok(json!(redis().get("missing")?)),
            "redis",
            "cache",
            "get",
            json!({"key": "missing"}),
            json!(null),
            json!(null),
        ),
        (
            || Ok(json!(redis().set("k", "v ü")?)),
            "redis",
            "cache",
            "set",
            json!({"key": "k", "value": "v ü"}),
            json!(true),
            json!(null),
        ),
        (
            || Ok(json!(redis().setex("k", "v", 60)?)),
            "redis",
            "cache",
            "setex",
            json!({"key": "k", "seconds": 60, "value": "v"}),
            json!(true),
            json!(null),
        ),
        (
            || Ok(json!(redis().set_with_ttl("k", 60, "v")?)),
            "redis",
            "cache",
            "setex",
            json!({"key": "k", "seconds": 60, "value": "v"}),
            json!(true),
            json!(null),
        ),
        (
            || Ok(json!(redis().del("k")?)),
            "redis",
            "cache",
            "del",
            json!({"keys": ["k"]}),
            json!(1),
            json!(1),
        ),
        (
            || Ok(json!(redis().del_many(&["a", "b"])?)),
            "redis",
            "cache",
            "del",
            json!({"keys": ["a", "b"]}),
            json!(0),
            json!(0),
        ),
        (
            || Ok(json!(redis().incr("n")?)),
            "redis",
            "cache",
            "incr",
            json!({"key": "n"}),
            json!(-3),
            json!(-3),
        ),
        (
            || Ok(json!(redis().expire("k", 30)?)),
            "redis",
            "cache",
            "expire",
            json!({"key": "k", "seconds": 30}),
            json!(false),
            json!(false),
        ),
        (
            || Ok(json!(redis().exists("k")?)),
            "redis",
            "cache",
            "exists",
            json!({"key": "k"}),
            json!(true),
            json!(true),
        ),
        (
            || redis().command(&["HGETALL", "h"]),
            "redis",
            "cache",
            "command",
            json!({"args": ["HGETALL", "h"]}),
            json!(["a", "1", null, 5]),
            json!(["a", "1", null, 5]),
        ),
        (
            || {
                Ok(json!(files().put_object(
                    "a/b.bin",
                    &[0, 0xff, 1, 2],
                    "application/x-test"
                )?))
            },
            "storage",
            "files",
            "put",
            json!({"key": "a/b.bin", "data_base64": "AP8BAg==", "content_type": "application/x-test"}),
            json!({"key": "a/b.bin", "size": 4}),
            json!(null),
        ),
        (
            || Ok(json!(files().put_object("empty", b"", "")?)),
            "storage",
            "files",
            "put",
            json!({"key": "empty", "data_base64": "", "content_type": ""}),
            json!({"key": "empty", "size": 0}),
            json!(null),
        ),
        (
            || {
                let o = files().get_object("a/b.bin")?.unwrap();
                Ok(json!([o.data, o.content_type]))
            },
            "storage",
            "files",
            "get",
            json!({"key": "a/b.bin"}),
            json!({"data_base64": "AP8BAg==", "content_type": "application/x-test", "size": 4}),
            json!([[0, 255, 1, 2], "application/x-test"]),
        ),
        (
            || Ok(json!(files().get_object("nope")?.is_none())),
            "storage",
            "files",
            "get",
            json!({"key": "nope"}),
            json!(null),
            json!(true),
        ),
        (
            || Ok(json!(files().delete_object("a/b.bin")?)),
            "storage",
            "files",
            "delete",
            json!({"key": "a/b.bin"}),
            json!(true),
            json!(true),
        ),
        (
            || {
                let l = files().list_objects("a/")?;
                Ok(l.iter().map(|o| json!([o.key, o.size])).collect())
            },
            "storage",
            "files",
            "list",
            json!({"prefix": "a/"}),
            json!([{"key": "a/1", "size": 0}, {"key": "a/2", "size": 9}]),
            json!([["a/1", 0], ["a/2", 9]]),
        ),
        (
            || Ok(json!(files().list_objects("")?.len())),
            "storage",
            "files",
            "list",
            json!({"prefix": ""}),
            json!([]),
            json!(0),
        ),
    ]
}

#[test]
fn each_action_sends_its_call_and_decodes_its_result() {
    for (invoke, service, pool, action, args, data, expect) in action_cases() {
        let (frames, end) = run(&[request(8, "/"), ok(1, data.clone())], &|_req| {
            answer(invoke())
        });
        end.unwrap();
        assert_eq!(frames.len(), 2, "{service} {action}: {frames:?}");
        assert_eq!(
            frames[0],
            call(1, "r8", service, pool, action, args.clone()),
            "{service} {action}"
        );
        assert_eq!(
            (frames[1]["id"].clone(), status_and_body(&frames[1])),
            (json!(8), (200, json!({ "value": expect }))),
            "{service} {action} decoding {data}"
        );
    }
}

#[test]
fn result_data_of_the_wrong_shape_is_an_ipc_error() {
    let cases: Vec<(Invoke, Value, &str)> = vec![
        (
            || db().query("S", &[]).map(|_| Value::Null),
            json!({"columns": ["a"], "rows": [[1]]}),
            "db query on 'main': unexpected result data {\"columns\":[\"a\"],\"rows\":[[1]]} (expected {\"columns\": [strings], \"rows\": [objects]})",
        ),
        (|| db().query("S", &[]).map(|_| Value::Null), json!([]), "db query on 'main'"),
        (|| db().query("S", &[]).map(|_| Value::Null), json!({"rows": []}), "db query on 'main'"),
        (|| db().execute("S", &[]).map(|_| Value::Null), json!({"rows_affected": -1}), "db execute on 'main'"),
        (
            || db().execute("S", &[]).map(|_| Value::Null),
            json!({"rows_affected": 1, "last_insert_id": "7"}),
            "db execute on 'main'",
        ),
        (|| redis().get("k").map(|_| Value::Null), json!(5), "redis get on 'cache'"),
        (|| redis().del("k").map(|_| Value::Null), json!(-1), "redis del on 'cache'"),
        (|| redis().incr("k").map(|_| Value::Null), json!("5"), "redis incr on 'cache'"),
        (|| redis().exists("k").map(|_| Value::Null), json!(1), "redis exists on 'cache'"),
        (|| redis().expire("k", 1).map(|_| Value::Null), json!(null), "redis expire on 'cache'"),
        (
            || files().get_object("k").map(|_| Value::Null),
            json!({"data_base64": "not base64!", "content_type": "a/b"}),
            "storage get on 'files'",
        ),
        (|| files().get_object("k").map(|_| Value::Null), json!({"data_base64": ""}), "storage get on 'files'"),
        (|| files().delete_object("k").map(|_| Value::Null), json!("yes"), "storage delete on 'files'"),
        (|| files().list_objects("").map(|_| Value::Null), json!([{"key": "a"}]), "storage list on 'files'"),
        (|| files().list_objects("").map(|_| Value::Null), json!({}), "storage list on 'files'"),
    ];
    for (invoke, data, message) in cases {
        let (frames, end) = run(&[request(1, "/"), ok(1, data.clone())], &|_| {
            answer(invoke())
        });
        end.unwrap();
        let (status, body) = status_and_body(&frames[1]);
        let text = body["error"].as_str().unwrap();
        assert_eq!(status, 500, "{data}");
        assert!(
            text.starts_with(&format!("IPC error: {message}")),
            "{data}: {text}"
        );
        assert!(text.contains("unexpected result data"), "{text}");
    }
    // Long data is cut in the message.
    let (frames, _) = run(&[request(1, "/"), ok(1, json!("x".repeat(1000)))], &|_| {
        answer(redis().incr("k").map(|_| Value::Null))
    });
    assert!(body(&frames[1])["error"].as_str().unwrap().len() < 400);
}

#[test]
fn error_kinds_map_to_variants() {
    let cases = [
        ("DatabaseError", 500, "Database error: m 1"),
        ("RedisError", 500, "Redis error: m 1"),
        ("StorageError", 500, "Storage error: m 1"),
        ("ServiceUnavailable", 503, "Service unavailable: m 1"),
        ("BadRequest", 500, "IPC error: m 1"),
        ("Internal", 500, "IPC error: m 1"),
        ("SomethingNew", 500, "IPC error: m 1"),
        ("", 500, "IPC error: m 1"),
    ];
    for (kind, status, text) in cases {
        let seen = RefCell::new(None);
        let handler = |_req: Request| {
            *seen.borrow_mut() = Some(redis().get("k"));
            Response::no_content()
        };
        run(&[request(1, "/"), failed(1, kind, "m 1")], &handler)
            .1
            .unwrap();
        let err = seen.into_inner().unwrap().unwrap_err();
        use HandlerError::*;
        let variant_ok = match kind {
            "DatabaseError" => matches!(&err, DatabaseError(m) if m == "m 1"),
            "RedisError" => matches!(&err, RedisError(m) if m == "m 1"),
            "StorageError" => matches!(&err, StorageError(m) if m == "m 1"),
            "ServiceUnavailable" => matches!(&err, ServiceUnavailable(m) if m == "m 1"),
            _ => matches!(&err, IpcError(m) if m == "m 1"),
        };
        assert!(variant_ok, "{kind}: {err:?}");
        assert_eq!(
            (err.status_code(), err.to_string().as_str()),
            (status, text),
            "{kind}"
        );
    }
    // Without error.kind / error.message.
    let (frames, _) = run(
        &[
            request(1, "/"),
            json!({"type": "result", "id": 1, "ok": false}),
        ],
        &|_| answer(files().delete_object("k").map(Value::Bool)),
    );
    assert_eq!(
        status_and_body(&frames[1]),
        (500, json!({"error": "IPC error: (no message)"}))
    );
}

#[test]
fn an_unbound_pool_passes_through_verbatim() {
    let (frames, end) = run(
        &[
            request(1, "/"),
            failed(1, "ServiceUnavailable", "no service bound as 'x'"),
        ],
        &|_| match DbPool::new("x").query("SELECT 1", &[]) {
            Err(HandlerError::ServiceUnavailable(m)) => {
                assert_eq!(m, "no service bound as 'x'");
                HandlerError::ServiceUnavailable(m).into()
            }
            other => panic!("{other:?}"),
        },
    );
    end.unwrap();
    assert_eq!(frames[0]["pool"], "x");
    assert_eq!(
        status_and_body(&frames[1]),
        (
            503,
            json!({"error": "Service unavailable: no service bound as 'x'"})
        )
    );
}

/// `/call` makes one redis call; anything else answers without one.
fn calls_on_call(req: Request) -> Response {
    match req.path.as_str() {
        "/call" => answer(redis().get(&req.request_id).map(|v| json!(v))),
        "/two" => answer((|| Ok(json!([redis().incr("a")?, redis().incr("b")?])))()),
        "/panic" => {
            redis().get("p").unwrap();
            panic!("after a call")
        }
        _ => Response::text(200, req.path),
    }
}

#[test]
fn requests_read_while_waiting_are_queued_and_served_in_order() {
    let (frames, end) = run(
        &[
            request(1, "/call"),
            request(2, "/plain"),
            request(3, "/call"),
            json!({"type": "from-the-future"}),
            ok(1, json!("one")),
            request(4, "/two"),
            ok(2, json!("three")),
            ok(3, json!(10)),
            ok(4, json!(20)),
            request(5, "/plain"),
        ],
        &calls_on_call,
    );
    end.unwrap();
    let summary: Vec<Value> = frames
        .iter()
        .map(|f| match f["type"].as_str().unwrap() {
            "call" => json!(["call", f["id"], f["request"], f["args"]]),
            _ => json!(["response", f["id"], f["body"]]),
        })
        .collect();
    assert_eq!(
        summary,
        [
            json!(["call", 1, "r1", {"key": "r1"}]),
            json!(["response", 1, "{\"value\":\"one\"}"]),
            json!(["response", 2, "/plain"]),
            json!(["call", 2, "r3", {"key": "r3"}]),
            json!(["response", 3, "{\"value\":\"three\"}"]),
            json!(["call", 3, "r4", {"key": "a"}]),
            json!(["call", 4, "r4", {"key": "b"}]),
            json!(["response", 4, "{\"value\":[10,20]}"]),
            json!(["response", 5, "/plain"]),
        ]
    );
}

#[test]
fn call_ids_count_up_across_requests_and_panics() {
    let (frames, end) = run(
        &[
            request(1, "/panic"),
            ok(1, json!("x")),
            request(2, "/call"),
            ok(2, json!(null)),
        ],
        &calls_on_call,
    );
    end.unwrap();
    let ids: Vec<(Value, Value)> = frames
        .iter()
        .map(|f| (f["type"].clone(), f["id"].clone()))
        .collect();
    assert_eq!(
        ids,
        [
            (json!("call"), json!(1)),
            (json!("response"), json!(1)),
            (json!("call"), json!(2)),
            (json!("response"), json!(2)),
        ]
    );
    assert_eq!(frames[1]["status"], 500);
    assert_eq!(status_and_body(&frames[3]), (200, json!({"value": null})));
}

#[test]
fn a_result_with_another_id_fails_the_call_only() {
    let (frames, end) = run(
        &[
            request(1, "/call"),
            ok(9, json!("late")),
            request(2, "/call"),
            ok(2, json!("v")),
        ],
        &calls_on_call,
    );
    end.unwrap();
    assert_eq!(
        status_and_body(&frames[1]),
        (
            500,
            json!({"error": "IPC error: redis get on 'cache': got the result of call 9 while waiting for call 1"})
        )
    );
    assert_eq!(status_and_body(&frames[3]), (200, json!({"value": "v"})));
}

#[test]
fn a_result_while_no_call_waits_is_ignored() {
    let (frames, end) = run(&[ok(1, json!(1)), request(1, "/plain")], &calls_on_call);
    end.unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["body"], "/plain");
}

#[test]
fn eof_while_waiting_fails_the_call_and_ends_cleanly() {
    // Request 2 was read (queued) before the end: it is still served, and
    // its call fails without being sent.
    let (frames, end) = run(&[request(1, "/two"), request(2, "/call")], &calls_on_call);
    end.unwrap();
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert_eq!(
        frames[0],
        call(1, "r1", "redis", "cache", "incr", json!({"key": "a"}))
    );
    assert_eq!(
        status_and_body(&frames[1]),
        (
            500,
            json!({"error": "IPC error: redis incr on 'cache': the gateway's frames ended while waiting for result 1"})
        )
    );
    assert_eq!(
        status_and_body(&frames[2]),
        (
            500,
            json!({"error": "IPC error: redis get on 'cache': the gateway's frames ended, no result can arrive"})
        )
    );
}

#[test]
fn a_broken_frame_while_waiting_fails_the_call_then_the_loop() {
    let mut input = wire(&[request(1, "/call"), request(2, "/plain")]);
    input.extend_from_slice(&[0, 0, 0, 2, b'[', b']']);
    input.extend_from_slice(&wire(&[request(3, "/plain")]));
    let (frames, end) = run_bytes(&input, &calls_on_call, MAX_FRAME_LEN);
    assert!(matches!(end, Err(FrameError::NotAnObject)), "{end:?}");
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert_eq!(
        status_and_body(&frames[1]),
        (
            500,
            json!({"error": "IPC error: redis get on 'cache': broken frame while waiting for result 1: frame is not a JSON object"})
        )
    );
    assert_eq!(frames[2]["body"], "/plain");

    // A malformed result frame is broken too.
    let (frames, end) = run(
        &[request(1, "/call"), json!({"type": "result", "id": 1})],
        &calls_on_call,
    );
    assert!(matches!(end, Err(FrameError::Malformed(_))), "{end:?}");
    assert_eq!(frames[1]["status"], 500);
}

#[test]
fn a_call_too_large_to_send_fails_alone() {
    let handler = |req: Request| match req.path.as_str() {
        "/big" => answer(
            files()
                .put_object("k", &vec![7; 2000], "a/b")
                .map(|_| Value::Null),
        ),
        _ => calls_on_call(req),
    };
    let (frames, end) = run_bytes(
        &wire(&[request(1, "/big"), request(2, "/call"), ok(1, json!("v"))]),
        &handler,
        1024,
    );
    end.unwrap();
    let text = body(&frames[0])["error"].as_str().unwrap().to_string();
    assert!(
        text.starts_with("IPC error: storage put on 'files': the call is too large to send ("),
        "{text}"
    );
    assert!(text.ends_with("bytes, the limit is 1024)"), "{text}");
    // Nothing was sent for it: the next call is call 1.
    assert_eq!(frames[1]["type"], "call");
    assert_eq!(frames[1]["id"], 1);
    assert_eq!(status_and_body(&frames[2]), (200, json!({"value": "v"})));
}

#[test]
fn a_failed_call_write_stops_the_loop() {
    /// Accepts `left` bytes, then fails.
    struct FailsAfter {
        left: usize,
        written: Vec<u8>,
    }
    impl Write for FailsAfter {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            let n = b.len().min(self.left);
            self.left -= n;
            self.written.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let ready_len = encode_frame(&crate::protocol::ready(), MAX_FRAME_LEN)
        .unwrap()
        .len();
    let seen = RefCell::new(None);
    let input = wire(&[request(1, "/"), ok(1, json!("v"))]);
    let mut out = FailsAfter {
        left: ready_len + 5,
        written: Vec::new(),
    };
    let handler = |_req: Request| {
        *seen.borrow_mut() = Some(redis().get("k"));
        Response::no_content()
    };
    let end = serve_dyn(&mut &input[..], &mut out, &handler, MAX_FRAME_LEN);
    assert!(matches!(end, Err(FrameError::Io(_))), "{end:?}");
    let err = seen.into_inner().unwrap().unwrap_err();
    assert!(
        matches!(&err, HandlerError::IpcError(m) if m.starts_with("redis get on 'cache': cannot send the call: frame I/O error")),
        "{err:?}"
    );
    // No response after the half-written call.
    assert_eq!(out.written.len(), ready_len + 5);
}

#[test]
fn a_call_outside_a_request_is_an_ipc_error() {
    let outside = |r: Result<Value, HandlerError>| match r {
        Err(HandlerError::IpcError(m)) => assert_eq!(m, OUTSIDE_A_REQUEST),
        other => panic!("{other:?}"),
    };
    outside(db().query("SELECT 1", &[]).map(|_| Value::Null));
    outside(redis().set("k", "v").map(|_| Value::Null));
    outside(files().list_objects("").map(|_| Value::Null));
    assert_eq!(
        OUTSIDE_A_REQUEST,
        "service calls are only possible while serving a request"
    );
    // Nor after the loop: the channel is uninstalled when a request ends.
    run(&[request(1, "/call"), ok(1, json!(null))], &calls_on_call)
        .1
        .unwrap();
    outside(redis().get("k").map(|_| Value::Null));
    // Nor from another thread while serving.
    let (frames, _) = run(&[request(1, "/")], &|_| {
        answer(
            std::thread::spawn(|| redis().get("k").map(|_| Value::Null))
                .join()
                .unwrap(),
        )
    });
    assert_eq!(
        body(&frames[0]),
        json!({"error": "IPC error: service calls are only possible while serving a request"})
    );
}

#[test]
fn rows_as_deserializes_or_names_the_row_and_column() {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Note {
        id: i64,
        body: Option<String>,
    }
    let result = DbResult {
        columns: vec!["id".into(), "body".into()],
        rows: vec![
            json!({"id": 1, "body": "a"}),
            json!({"id": 2, "body": null}),
        ],
    };
    assert_eq!(
        result.rows_as::<Note>().unwrap(),
        [
            Note {
                id: 1,
                body: Some("a".into())
            },
            Note { id: 2, body: None }
        ]
    );
    assert_eq!(
        result.first_as::<Note>().unwrap(),
        Some(Note {
            id: 1,
            body: Some("a".into())
        })
    );
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Strict {
        id: String,
    }
    let err = result.rows_as::<Strict>().unwrap_err();
    assert!(matches!(err, HandlerError::SerializationError(_)));
    assert_eq!(err.status_code(), 500);
    assert_eq!(
        err.to_string(),
        "Serialization error: row 0, column 'id': invalid type: integer `1`, expected a string"
    );
    let err = result.rows_as::<(i64, String)>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "Serialization error: row 0: invalid type: map, expected a tuple of size 2"
    );
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Missing {
        title: String,
    }
    assert_eq!(
        result.rows_as::<Missing>().unwrap_err().to_string(),
        "Serialization error: row 0: missing field `title`"
    );
    assert!(DbResult::default().rows_as::<Note>().unwrap().is_empty());
    assert_eq!(DbResult::default().first_as::<Note>().unwrap(), None);
}

#[cfg(feature = "async")]
#[test]
fn async_handlers_make_the_same_calls() {
    async fn handle(req: Request) -> Result<Response, HandlerError> {
        tokio::task::yield_now().await;
        let n = redis().incr(&req.request_id)?;
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        let rows = db().query("SELECT ?", &[json!(n)])?;
        Ok(Response::ok(json!({ "n": n, "rows": rows.rows })))
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let adapter = |req: Request| rt.block_on(handle(req)).unwrap_or_else(Response::from);
    let (frames, end) = run(
        &[
            request(1, "/"),
            request(2, "/"),
            ok(1, json!(5)),
            ok(2, json!({"columns": ["?"], "rows": [{"?": 5}]})),
            ok(3, json!(6)),
            failed(4, "DatabaseError", "no such table"),
        ],
        &adapter,
    );
    end.unwrap();
    let kinds: Vec<(Value, Value)> = frames
        .iter()
        .map(|f| (f["type"].clone(), f["id"].clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (json!("call"), json!(1)),
            (json!("call"), json!(2)),
            (json!("response"), json!(1)),
            (json!("call"), json!(3)),
            (json!("call"), json!(4)),
            (json!("response"), json!(2)),
        ]
    );
    assert_eq!(frames[0]["request"], "r1");
    assert_eq!(frames[3]["request"], "r2");
    assert_eq!(frames[1]["args"], json!({"sql": "SELECT ?", "params": [5]}));
    assert_eq!(
        status_and_body(&frames[2]),
        (200, json!({"n": 5, "rows": [{"?": 5}]}))
    );
    assert_eq!(
        status_and_body(&frames[5]),
        (500, json!({"error": "Database error: no such table"}))
    );
}

#[test]
fn public_serve_carries_calls() {
    let input = wire(&[request(1, "/call"), ok(1, json!("v"))]);
    let mut out = Vec::new();
    crate::serve(&mut &input[..], &mut out, calls_on_call).unwrap();
    let frames = frames_of(&out);
    assert_eq!(frames[1]["type"], "call");
    assert_eq!(status_and_body(&frames[2]), (200, json!({"value": "v"})));
}

/// The `call` frames' (action, args) a handler made, answering them with
/// `answers` in order (`{"fail": kind}` fails the call); and the handler's
/// response body with its `status` added.
fn calls_answered(
    answers: Vec<Value>,
    handler: &dyn Fn(Request) -> Response,
) -> (Vec<(Value, Value)>, Value) {
    let mut input = vec![request(1, "/")];
    for (i, answer) in answers.into_iter().enumerate() {
        let id = i as u64 + 1;
        input.push(match answer.get("fail") {
            Some(kind) => failed(id, kind.as_str().unwrap(), "m"),
            None => ok(id, answer),
        });
    }
    let (frames, end) = run(&input, handler);
    end.unwrap();
    let (calls, response) = frames.split_at(frames.len() - 1);
    let calls = calls
        .iter()
        .map(|f| (f["action"].clone(), f["args"].clone()))
        .collect();
    let (status, mut out) = status_and_body(&response[0]);
    out["status"] = json!(status);
    (calls, out)
}

#[test]
fn a_database_document_store_creates_its_table_when_a_statement_fails() {
    let (calls, out) = calls_answered(
        vec![
            json!({"fail": "DatabaseError"}),
            json!({"rows_affected": 0, "last_insert_id": null}),
            json!({"rows_affected": 0, "last_insert_id": null}),
            json!({"rows_affected": 1, "last_insert_id": 1}),
        ],
        &|_| {
            answer(
                Storage::database("main", "pets")
                    .create("7", &json!({"name": "Rex", "status": "sold"}))
                    .map(|_| json!("made")),
            )
        },
    );
    assert_eq!(out["value"], "made", "{out}");
    let sql: Vec<&str> = calls
        .iter()
        .map(|(_, args)| args["sql"].as_str().unwrap())
        .collect();
    assert!(
        sql[0].starts_with("INSERT INTO pets (id, data, status, created_at, updated_at)"),
        "{sql:?}"
    );
    assert!(
        sql[1].starts_with(
            "CREATE TABLE IF NOT EXISTS pets (id TEXT PRIMARY KEY, data TEXT NOT NULL"
        ),
        "{sql:?}"
    );
    assert_eq!(
        sql[2],
        "CREATE INDEX IF NOT EXISTS pets_status ON pets (status)"
    );
    assert_eq!(sql[3], sql[0]);
    let params = calls[3].1["params"].as_array().unwrap();
    assert_eq!((&params[0], &params[2]), (&json!("7"), &json!("sold")));
    assert_eq!(
        serde_json::from_str::<Value>(params[1].as_str().unwrap()).unwrap(),
        json!({"name": "Rex", "status": "sold"})
    );
    assert_eq!(params[3], params[4]);
}

#[test]
fn a_database_document_store_answers_conflict_not_found_and_documents() {
    let pets = || Storage::database("main", "pets");
    let none = json!({"rows_affected": 0, "last_insert_id": null});
    let (_, out) = calls_answered(vec![none.clone()], &|_| {
        answer(pets().create("7", &json!({})).map(|_| Value::Null))
    });
    assert_eq!(out["status"], 409, "{out}");
    let (_, out) = calls_answered(vec![none], &|_| {
        answer(pets().update("7", &json!({})).map(|_| Value::Null))
    });
    assert_eq!(out["status"], 404, "{out}");
    let rows =
        json!({"columns": ["id", "data"], "rows": [{"id": "1", "data": "{\"status\":\"sold\"}"}]});
    let (calls, out) = calls_answered(vec![rows], &|_| {
        answer(pets().list(Some("sold")).map(|l| json!(l)))
    });
    assert_eq!(out["value"], json!([{"status": "sold"}]));
    assert_eq!(calls[0].1["params"], json!(["sold"]));
    assert!(calls[0].1["sql"]
        .as_str()
        .unwrap()
        .contains("WHERE status = ?"));
}

#[test]
fn an_object_document_store_keeps_one_json_object_per_id() {
    let pets = || Storage::object_storage("files", "pets");
    let stored = |doc: Value| json!({"data_base64": base64::encode(doc.to_string()), "content_type": "application/json"});
    let listing = json!([
        {"key": "pets/1.json", "size": 1}, {"key": "pets/2.json", "size": 1},
        {"key": "pets/deep/3.json", "size": 1}, {"key": "pets/notes.txt", "size": 1}
    ]);
    let (calls, out) = calls_answered(
        vec![
            listing,
            stored(json!({"id": 1, "status": "sold"})),
            stored(json!({"id": 2, "status": "available"})),
        ],
        &|_| answer(pets().list(Some("available")).map(|l| json!(l))),
    );
    assert_eq!(out["value"], json!([{"id": 2, "status": "available"}]));
    assert_eq!(calls[0], (json!("list"), json!({"prefix": "pets/"})));
    assert_eq!(calls[2], (json!("get"), json!({"key": "pets/2.json"})));

    let (calls, out) = calls_answered(vec![json!([]), json!(true)], &|_| {
        answer(pets().create("9", &json!({"a": 1})).map(|_| Value::Null))
    });
    assert_eq!(out, json!({"value": null, "status": 200}));
    assert_eq!(calls[1].1["key"], "pets/9.json");
    assert_eq!(calls[1].1["content_type"], "application/json");
    let (_, out) = calls_answered(vec![json!([{"key": "pets/9.json", "size": 7}])], &|_| {
        answer(pets().create("9", &json!({})).map(|_| Value::Null))
    });
    assert_eq!(out["status"], 409, "{out}");
    let (_, out) = calls_answered(vec![json!([{"key": "pets/9.jsonx", "size": 7}])], &|_| {
        answer(pets().update("9", &json!({})).map(|_| Value::Null))
    });
    assert_eq!(out["status"], 404, "{out}");
    let (calls, out) = calls_answered(vec![json!(true)], &|_| {
        answer(pets().delete("9").map(Value::Bool))
    });
    assert_eq!(
        (calls[0].clone(), out),
        (
            (json!("delete"), json!({"key": "pets/9.json"})),
            json!({"value": true, "status": 200})
        )
    );
    let (calls, out) = calls_answered(vec![], &|_| answer(pets().get("a/b").map(|_| Value::Null)));
    assert_eq!((calls.len(), out["status"].clone()), (0, json!(400)));
}
