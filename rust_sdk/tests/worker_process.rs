//! Runs the SDK's worker loop in a real child process over real pipes.
//!
//! This test has its own `main` (`harness = false` in Cargo.toml): started
//! with `EDGEGW_SDK_TEST_WORKER` set, the binary *is* a worker; otherwise it
//! spawns itself as one and talks frames to it, like the gateway would.

use rust_edge_gateway_sdk::frame::{read_frame, write_frame, Object, MAX_FRAME_LEN};
use rust_edge_gateway_sdk::prelude::*;
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const ROLE: &str = "EDGEGW_SDK_TEST_WORKER";

fn handle(req: Request) -> Response {
    match req.path.as_str() {
        "/print" => {
            println!("printed-by-handler {}", req.request_id);
            print!("partial-line-without-newline");
            Response::text(200, "printed")
        }
        "/panic" => panic!("boom on purpose"),
        "/stdin" => {
            // fd 0 is /dev/null: reading it cannot steal frames.
            let mut s = String::new();
            let n = std::io::stdin()
                .read_to_string(&mut s)
                .unwrap_or(usize::MAX);
            Response::ok(json!({ "read": n }))
        }
        "/fds" => {
            let link = |p: String| {
                std::fs::read_link(p)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default()
            };
            let std_fds: Vec<String> = (0..3)
                .map(|fd| link(format!("/proc/self/fd/{fd}")))
                .collect();
            // What a child process inherits.
            let out = Command::new("sh")
                .arg("-c")
                .arg("for f in /proc/$$/fd/*; do readlink \"$f\"; done")
                .output()
                .expect("sh runs");
            let inherited = String::from_utf8_lossy(&out.stdout).to_string();
            Response::ok(json!({ "std": std_fds, "child": inherited }))
        }
        "/echo-bytes" => Response::binary(200, req.body_bytes(), "application/octet-stream")
            .with_cookie("a=1; Path=/")
            .with_cookie("b=2"),
        "/upload" => match req.multipart() {
            Ok(form) => match form.file("f") {
                Some(f) => Response::binary(201, &f.data, f.content_type.clone())
                    .with_header("x-filename", f.filename.clone()),
                None => Response::bad_request("no file"),
            },
            Err(e) => e.into(),
        },
        _ => Response::ok(json!({
            "method": req.method, "path": req.path, "request_id": req.request_id,
            "client_ip": req.client_ip, "q": req.query_param("q"),
        })),
    }
}

#[cfg(feature = "async")]
async fn handle_async(req: Request) -> Result<Response, HandlerError> {
    use rust_edge_gateway_sdk::tokio;
    match req.path.as_str() {
        "/sleep" => {
            let ms: u64 = req.require_query_param("ms")?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(Response::ok(json!({ "slept": ms })))
        }
        "/panic" => {
            tokio::task::yield_now().await;
            panic!("async boom on purpose");
        }
        _ => Err(HandlerError::NotFound),
    }
}

/// Standard padded base64, for building `body_base64` fields.
fn b64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `services` role: every path makes service calls.
fn handle_services(req: Request) -> Result<Response, HandlerError> {
    match req.path.as_str() {
        "/note" => {
            let id: i64 = req.require_query_param("id")?;
            let notes =
                DbPool::new("main").query("SELECT * FROM notes WHERE id = ?", &[json!(id)])?;
            Ok(Response::ok(json!({ "note": notes.first() })))
        }
        "/hits" => {
            let redis = RedisPool::new("cache");
            let n = redis.incr("hits")?;
            Ok(Response::ok(json!({ "hits": n })))
        }
        "/file" => match Storage::new("files").get_object("a.bin")? {
            Some(o) => Ok(Response::binary(200, o.data, o.content_type)),
            None => Err(HandlerError::NotFound),
        },
        _ => Ok(Response::text(200, "no call")),
    }
}

fn handle_result(req: Request) -> Result<Response, HandlerError> {
    let n: i64 = req.require_query_param("n")?;
    Ok(Response::ok(json!({ "n": n })))
}

struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    stderr: Option<thread::JoinHandle<String>>,
    done: Arc<AtomicBool>,
}

impl Worker {
    fn spawn(role: &str) -> Worker {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .env(ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn worker");
        let mut err = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            err.read_to_string(&mut s).unwrap();
            s
        });
        // Watchdog: a hung worker fails the test instead of hanging it.
        let done = Arc::new(AtomicBool::new(false));
        let (pid, flag) = (child.id() as libc::pid_t, done.clone());
        thread::spawn(move || {
            let start = Instant::now();
            while !flag.load(Ordering::SeqCst) {
                if start.elapsed() > Duration::from_secs(30) {
                    // SAFETY: signalling our own child.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        Worker {
            stdin: child.stdin.take(),
            stdout: child.stdout.take().unwrap(),
            child,
            stderr: Some(stderr),
            done,
        }
    }

    fn send(&mut self, frame: &JsonValue) {
        write_frame(self.stdin.as_mut().unwrap(), frame).unwrap();
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    fn recv(&mut self) -> Object {
        read_frame(&mut self.stdout, MAX_FRAME_LEN)
            .unwrap()
            .expect("a frame, not EOF")
    }

    fn request(&mut self, id: u64, path: &str) -> (u64, Object, JsonValue) {
        self.send(&json!({
            "type": "request", "id": id, "method": "GET", "path": path,
            "query": {"q": "v"}, "headers": {}, "params": {}, "body": null,
            "client_ip": "127.0.0.1", "request_id": format!("req-{id}")
        }));
        let f = self.recv();
        let status = f["status"].as_u64().unwrap();
        let body =
            serde_json::from_str(f["body"].as_str().unwrap_or("null")).unwrap_or(JsonValue::Null);
        assert_eq!(f["type"], "response");
        assert_eq!(f["id"], id);
        (status, f, body)
    }

    /// Closes stdin, waits for exit; returns (status, stderr, leftover stdout).
    fn finish(mut self) -> (ExitStatus, String, Vec<u8>) {
        drop(self.stdin.take());
        let mut rest = Vec::new();
        self.stdout.read_to_end(&mut rest).unwrap();
        let status = self.child.wait().unwrap();
        self.done.store(true, Ordering::SeqCst);
        let stderr = self.stderr.take().unwrap().join().unwrap();
        (status, stderr, rest)
    }
}

fn pipe_target(fd: &impl AsRawFd) -> String {
    let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
    std::fs::read_link(p).unwrap().display().to_string()
}

fn serves_until_stdin_closes() {
    let mut w = Worker::spawn("plain");
    let ready = w.recv();
    assert_eq!(
        JsonValue::Object(ready),
        json!({"type": "ready", "protocol": 1, "sdk": "0.1.0"})
    );

    let (status, f, body) = w.request(1, "/hello");
    assert_eq!(status, 200);
    assert_eq!(f["headers"]["content-type"], "application/json");
    assert_eq!(
        body,
        json!({"method": "GET", "path": "/hello", "request_id": "req-1",
               "client_ip": "127.0.0.1", "q": "v"})
    );

    // println! goes to the log, the frame stream stays intact.
    let (status, f, _) = w.request(2, "/print");
    assert_eq!(status, 200);
    assert_eq!(f["body"], "printed");

    // A panic answers 500 and the worker lives on.
    let (status, _, body) = w.request(3, "/panic");
    assert_eq!(status, 500);
    assert_eq!(
        body,
        json!({"error": "handler panicked", "request_id": "req-3"})
    );
    let (status, _, _) = w.request(4, "/hello");
    assert_eq!(status, 200);

    let (status, _, body) = w.request(5, "/stdin");
    assert_eq!(status, 200);
    assert_eq!(body, json!({"read": 0}));

    // fd 0 is /dev/null, fd 1 is the log; the frame pipes are not inherited.
    let (_, _, body) = w.request(6, "/fds");
    let std_fds = body["std"].as_array().unwrap();
    assert_eq!(std_fds[0], "/dev/null");
    assert_eq!(std_fds[1], std_fds[2], "fd 1 must point where fd 2 does");
    let inherited = body["child"].as_str().unwrap();
    let frames_in = pipe_target(w.stdin.as_ref().unwrap());
    let frames_out = pipe_target(&w.stdout);
    assert!(!inherited.contains(&frames_in), "{inherited}");
    assert!(!inherited.contains(&frames_out), "{inherited}");

    // Unknown frame types are ignored.
    w.send(&json!({"type": "from-the-future", "id": 99}));
    let (status, _, _) = w.request(7, "/hello");
    assert_eq!(status, 200);

    let (status, stderr, rest) = w.finish();
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    assert!(rest.is_empty(), "nothing after the last response");
    assert!(stderr.contains("printed-by-handler req-2"), "{stderr}");
    assert!(stderr.contains("partial-line-without-newline"), "{stderr}");
    assert!(stderr.contains("boom on purpose"), "{stderr}");
    assert!(stderr.contains("req-3"), "{stderr}");
    assert!(stderr.contains("from-the-future"), "{stderr}");
}

fn exits_0_on_immediate_eof() {
    let mut w = Worker::spawn("plain");
    assert_eq!(w.recv()["type"], "ready");
    let (status, stderr, rest) = w.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(rest.is_empty());
}

fn broken_frames_exit_2() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        ([&3u32.to_be_bytes()[..], b"abc"].concat(), "not valid JSON"),
        (
            [&2u32.to_be_bytes()[..], b"[]"].concat(),
            "not a JSON object",
        ),
        (u32::MAX.to_be_bytes().to_vec(), "exceeds"),
        (vec![0, 0], "stream ended inside a frame"),
        (
            [&11u32.to_be_bytes()[..], b"{\"id\":1}"].concat(),
            "stream ended inside a frame",
        ),
        (
            serde_json::to_vec(&json!({"type": "request"}))
                .map(|p| [&(p.len() as u32).to_be_bytes()[..], &p].concat())
                .unwrap(),
            "malformed frame",
        ),
    ];
    for (bytes, message) in cases {
        let mut w = Worker::spawn("plain");
        assert_eq!(w.recv()["type"], "ready");
        w.send_raw(&bytes);
        let (status, stderr, rest) = w.finish();
        assert_eq!(status.code(), Some(2), "{bytes:?}: {stderr}");
        assert!(stderr.contains(message), "{message:?} not in {stderr:?}");
        assert!(rest.is_empty());
    }
}

fn result_handlers_answer_errors() {
    let mut w = Worker::spawn("result");
    assert_eq!(w.recv()["type"], "ready");
    let (status, _, body) = w.request(1, "/");
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": "Bad request: missing query parameter 'n'"})
    );
    w.send(&json!({"type": "request", "id": 2, "query": {"n": "41"}}));
    let f = w.recv();
    assert_eq!(
        (f["id"].clone(), f["status"].clone()),
        (json!(2), json!(200))
    );
    assert_eq!(f["body"], "{\"n\":41}");
    let (status, stderr, _) = w.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
}

fn binary_bodies_round_trip() {
    let mut w = Worker::spawn("plain");
    assert_eq!(w.recv()["type"], "ready");
    let bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    w.send(&json!({
        "type": "request", "id": 1, "method": "POST", "path": "/echo-bytes",
        "body": null, "body_base64": b64(&bytes), "request_id": "r1"
    }));
    let f = w.recv();
    assert_eq!(
        (f["id"].clone(), f["status"].clone()),
        (json!(1), json!(200))
    );
    assert!(!f.contains_key("body"), "{f:?}");
    assert_eq!(f["body_base64"], b64(&bytes));
    assert_eq!(f["headers"]["set-cookie"], json!(["a=1; Path=/", "b=2"]));
    assert_eq!(f["headers"]["content-type"], "application/octet-stream");

    // A multipart upload with a binary file, as the gateway sends it.
    let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.bin\"\r\n\
Content-Type: image/x-test\r\n\r\n"
        .to_vec();
    body.extend_from_slice(&bytes);
    body.extend_from_slice(b"\r\n--XyZ--\r\n");
    w.send(&json!({
        "type": "request", "id": 2, "method": "POST", "path": "/upload",
        "headers": {"content-type": "multipart/form-data; boundary=XyZ"},
        "body": null, "body_base64": b64(&body), "request_id": "r2"
    }));
    let f = w.recv();
    assert_eq!(f["status"], 201);
    assert_eq!(f["body_base64"], b64(&bytes));
    assert_eq!(f["headers"]["content-type"], "image/x-test");
    assert_eq!(f["headers"]["x-filename"], "x.bin");

    let (status, stderr, _) = w.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
}

/// Plays the gateway's side of service calls.
fn service_calls_over_real_pipes() {
    let mut w = Worker::spawn("services");
    assert_eq!(w.recv()["type"], "ready");
    let send = |w: &mut Worker, id: u64, path: &str, query: JsonValue| {
        w.send(&json!({
            "type": "request", "id": id, "method": "GET", "path": path,
            "query": query, "request_id": format!("s{id}")
        }));
    };

    // One call, answered.
    send(&mut w, 1, "/note", json!({"id": "3"}));
    let call = w.recv();
    assert_eq!(
        JsonValue::Object(call),
        json!({"type": "call", "id": 1, "request": "s1", "service": "db", "pool": "main",
               "action": "query",
               "args": {"sql": "SELECT * FROM notes WHERE id = ?", "params": [3]}})
    );
    w.send(&json!({"type": "result", "id": 1, "ok": true,
                   "data": {"columns": ["id", "body"], "rows": [{"id": 3, "body": "hi"}]}}));
    let f = w.recv();
    assert_eq!(
        (f["type"].as_str(), f["id"].as_u64()),
        (Some("response"), Some(1))
    );
    assert_eq!(f["body"], r#"{"note":{"body":"hi","id":3}}"#);

    // Pipelined: requests 3 and 4 arrive before the result of request 2's
    // call; they are answered after it, in order.
    send(&mut w, 2, "/hits", json!({}));
    send(&mut w, 3, "/plain", json!({}));
    send(&mut w, 4, "/file", json!({}));
    let call = w.recv();
    assert_eq!(
        (call["id"].as_u64(), call["request"].as_str()),
        (Some(2), Some("s2"))
    );
    assert_eq!(
        (call["service"].as_str(), call["action"].as_str()),
        (Some("redis"), Some("incr"))
    );
    w.send(&json!({"type": "result", "id": 2, "ok": true, "data": 41}));
    let f = w.recv();
    assert_eq!(
        (f["id"].as_u64(), f["body"].as_str()),
        (Some(2), Some(r#"{"hits":41}"#))
    );
    let f = w.recv();
    assert_eq!(
        (f["id"].as_u64(), f["body"].as_str()),
        (Some(3), Some("no call"))
    );
    let call = w.recv();
    assert_eq!(
        (
            call["id"].as_u64(),
            call["request"].as_str(),
            call["args"].clone()
        ),
        (Some(3), Some("s4"), json!({"key": "a.bin"}))
    );
    w.send(&json!({"type": "result", "id": 3, "ok": true,
                   "data": {"data_base64": b64(&[0, 1, 255]), "content_type": "x/y", "size": 3}}));
    let f = w.recv();
    assert_eq!(
        (f["id"].as_u64(), f["status"].as_u64()),
        (Some(4), Some(200))
    );
    assert_eq!(f["body_base64"], b64(&[0, 1, 255]));

    // An unbound name: 503 through HandlerError.
    send(&mut w, 5, "/hits", json!({}));
    assert_eq!(w.recv()["id"], 4);
    w.send(&json!({"type": "result", "id": 4, "ok": false,
                   "error": {"kind": "ServiceUnavailable", "message": "no service bound as 'cache'"}}));
    let f = w.recv();
    assert_eq!(
        (f["id"].as_u64(), f["status"].as_u64()),
        (Some(5), Some(503))
    );
    assert_eq!(
        f["body"],
        r#"{"error":"Service unavailable: no service bound as 'cache'"}"#
    );

    // The gateway closes stdin while a call waits: the call fails, the
    // request is still answered, the worker exits 0.
    send(&mut w, 6, "/hits", json!({}));
    assert_eq!(w.recv()["id"], 5);
    drop(w.stdin.take());
    let f = w.recv();
    assert_eq!(
        (f["id"].as_u64(), f["status"].as_u64()),
        (Some(6), Some(500))
    );
    assert_eq!(
        f["body"],
        r#"{"error":"IPC error: redis incr on 'cache': the gateway's frames ended while waiting for result 5"}"#
    );
    let (status, stderr, rest) = w.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(rest.is_empty());
    assert!(
        stderr.contains(
            "early call refused: service calls are only possible while serving a request"
        ),
        "{stderr}"
    );
}

#[cfg(feature = "async")]
fn async_worker_serves_and_survives_panics() {
    let mut w = Worker::spawn("async");
    assert_eq!(w.recv()["type"], "ready");
    let send = |w: &mut Worker, id: u64, path: &str, ms: &str| {
        w.send(&json!({
            "type": "request", "id": id, "method": "GET", "path": path,
            "query": {"ms": ms}, "request_id": format!("a{id}")
        }));
    };
    let start = Instant::now();
    send(&mut w, 1, "/sleep", "30");
    send(&mut w, 2, "/panic", "");
    send(&mut w, 3, "/sleep", "x");
    send(&mut w, 4, "/sleep", "1");
    let mut answers: Vec<(JsonValue, JsonValue, JsonValue)> = (0..4)
        .map(|_| {
            let f = w.recv();
            let body: JsonValue = serde_json::from_str(f["body"].as_str().unwrap()).unwrap();
            (f["id"].clone(), f["status"].clone(), body)
        })
        .collect();
    // Each request is a task of its own: answers come as they finish.
    answers.sort_by_key(|(id, _, _)| id.as_u64());
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(
        answers,
        [
            (json!(1), json!(200), json!({"slept": 30})),
            (
                json!(2),
                json!(500),
                json!({"error": "handler panicked", "request_id": "a2"})
            ),
            (
                json!(3),
                json!(400),
                json!({"error": "Bad request: query parameter 'ms' must be a u64, got 'x'"})
            ),
            (json!(4), json!(200), json!({"slept": 1})),
        ]
    );
    let (status, stderr, rest) = w.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(rest.is_empty());
    assert!(stderr.contains("async boom on purpose"), "{stderr}");
    assert!(stderr.contains("'a2'"), "{stderr}");
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("plain") => return rust_edge_gateway_sdk::run(handle),
        Ok("result") => return rust_edge_gateway_sdk::run_result(handle_result),
        Ok("services") => {
            // A call before the loop runs is refused, and the worker starts anyway.
            match DbPool::new("main").execute("SELECT 1", &[]) {
                Err(HandlerError::IpcError(m)) => eprintln!("early call refused: {m}"),
                other => panic!("{other:?}"),
            }
            return rust_edge_gateway_sdk::run_result(handle_services);
        }
        #[cfg(feature = "async")]
        Ok("async") => return rust_edge_gateway_sdk::run_async_result(handle_async),
        _ => {}
    }
    #[cfg_attr(not(feature = "async"), allow(unused_mut))]
    let mut tests: Vec<(&str, fn())> = vec![
        ("serves_until_stdin_closes", serves_until_stdin_closes),
        ("exits_0_on_immediate_eof", exits_0_on_immediate_eof),
        ("broken_frames_exit_2", broken_frames_exit_2),
        (
            "result_handlers_answer_errors",
            result_handlers_answer_errors,
        ),
        ("binary_bodies_round_trip", binary_bodies_round_trip),
        (
            "service_calls_over_real_pipes",
            service_calls_over_real_pipes,
        ),
    ];
    #[cfg(feature = "async")]
    tests.push((
        "async_worker_serves_and_survives_panics",
        async_worker_serves_and_survives_panics,
    ));
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in &tests {
            println!("{name}: test");
        }
        return;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut failed = 0;
    let mut ran = 0;
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        match std::panic::catch_unwind(test) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!("\nworker_process: {} passed; {failed} failed", ran - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}
