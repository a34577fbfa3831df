//! The worker loop of async handlers: every request is a task of its own on
//! the worker's one Tokio current-thread runtime, so one worker has many
//! requests in flight (docs/sdk/async.md, "How it runs").
//!
//! A reader thread reads the gateway's frames: `request` frames go to the
//! runtime, which spawns a task per request; `result` frames go straight to
//! the call waiting for them (a Tokio oneshot for an awaited call, a std
//! channel for a blocking one), so a blocking call made from async code
//! still gets its answer. Everything written (responses, `call` frames) is
//! written from the runtime's thread.

use crate::channel::{encode_call, error_for, ipc, CallName};
use crate::error::HandlerError;
use crate::frame::{self, FrameError};
use crate::protocol::{self, CallError, Incoming};
use crate::request::Request;
use crate::response::Response;
use crate::runtime::{panic_message, panic_response, send_response};
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot, Notify};

/// How many requests an async worker says it takes at once (`concurrency`
/// in its `ready` frame). The gateway sends at most the smaller of this and
/// the endpoint's `settings.concurrency`.
pub const ASYNC_CONCURRENCY: u32 = 1024;

type Outcome = Result<Value, CallError>;

/// Who waits for the `result` of a call.
enum Waiter {
    /// An awaited call (`*_async`).
    Task(oneshot::Sender<Outcome>),
    /// A blocking call made from async code (the runtime's thread waits).
    Thread(std_mpsc::Sender<Outcome>),
}

/// The calls in flight, shared with the reader thread.
#[derive(Default)]
struct Calls {
    waiters: HashMap<u64, Waiter>,
    /// Set once the gateway's frames ended (or broke): why no result can
    /// arrive any more.
    ended: Option<&'static str>,
}

/// What the runtime's thread shares between the loop and its tasks.
struct Shared {
    output: Rc<RefCell<dyn Write>>,
    /// Frames written by tasks, sent together once the tasks that are
    /// ready have run: one write for many answers and calls.
    pending: RefCell<Vec<u8>>,
    flush_scheduled: Cell<bool>,
    max_frame: usize,
    calls: Arc<Mutex<Calls>>,
    next_call: Cell<u64>,
    /// A failed write: the output may hold half a frame, so the loop stops.
    output_error: RefCell<Option<FrameError>>,
    /// Requests being served.
    in_flight: Cell<usize>,
    /// Woken when `in_flight` drops to 0 or a write fails.
    idle: Notify,
}

thread_local! {
    /// The loop's shared state while an async loop runs on this thread.
    static SHARED: RefCell<Option<Rc<Shared>>> = const { RefCell::new(None) };
}

tokio::task_local! {
    /// The `request_id` of the request a task serves, for its `call` frames.
    static REQUEST_ID: Rc<str>;
}

fn shared() -> Option<Rc<Shared>> {
    SHARED.with(|s| s.borrow().clone())
}

/// Whether an async loop runs on this thread (so a blocking service call
/// goes through [`call_blocking`]).
pub(crate) fn active() -> bool {
    SHARED.with(|s| s.borrow().is_some())
}

impl Shared {
    /// Registers a waiter and queues the `call` frame (sent at once for a
    /// `blocking` call); the id of the call.
    fn start_call(
        self: &Rc<Self>,
        waiter: Waiter,
        what: &CallName<'_>,
        args: &Value,
        blocking: bool,
    ) -> Result<u64, HandlerError> {
        if self.output_error.borrow().is_some() {
            return Err(ipc(format!("{what}: the frame output failed earlier")));
        }
        let id = self.next_call.get();
        let request = REQUEST_ID
            .try_with(Rc::clone)
            .unwrap_or_else(|_| Rc::from(""));
        let call = protocol::Call {
            kind: "call",
            id,
            request: &request,
            service: what.service,
            pool: what.pool,
            action: what.action,
            args,
        };
        let encoded = encode_call(&call, self.max_frame, what)?;
        {
            let mut calls = lock(&self.calls);
            if let Some(why) = calls.ended {
                return Err(ipc(format!("{what}: {why}, no result can arrive")));
            }
            calls.waiters.insert(id, waiter);
        }
        self.next_call.set(id + 1);
        self.pending.borrow_mut().extend_from_slice(&encoded);
        if blocking {
            // The thread waits for the answer: nothing else would send it.
            self.flush();
        } else {
            self.schedule_flush();
        }
        if self.output_error.borrow().is_some() {
            lock(&self.calls).waiters.remove(&id);
            return Err(ipc(format!("{what}: cannot send the call")));
        }
        Ok(id)
    }

    /// Sends what tasks wrote once every task that is ready now has run.
    fn schedule_flush(self: &Rc<Self>) {
        if self.flush_scheduled.replace(true) {
            return;
        }
        let shared = Rc::clone(self);
        tokio::task::spawn_local(async move {
            tokio::task::yield_now().await;
            shared.flush();
        });
    }

    /// Writes out the frames waiting in `pending`.
    fn flush(&self) {
        self.flush_scheduled.set(false);
        let mut pending = self.pending.borrow_mut();
        if pending.is_empty() {
            return;
        }
        let written = frame::write_encoded(&mut *self.output.borrow_mut(), &pending);
        pending.clear();
        drop(pending);
        if let Err(e) = written {
            self.fail_output(e);
        }
    }

    fn fail_output(&self, e: FrameError) {
        self.output_error.borrow_mut().get_or_insert(e);
        self.idle.notify_one();
    }

    /// Queues the answer to request `id` (see `schedule_flush`).
    fn respond(self: &Rc<Self>, id: u64, response: &Response) {
        let _ = io::stdout().flush(); // what the handler `print!`ed, to the log
        let written = send_response(
            &mut *self.pending.borrow_mut(),
            id,
            response,
            self.max_frame,
        );
        match written {
            Ok(()) => self.schedule_flush(),
            Err(e) => self.fail_output(e),
        }
    }
}

fn lock(calls: &Mutex<Calls>) -> std::sync::MutexGuard<'_, Calls> {
    // A panic never happens while the lock is held; recover anyway.
    calls
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An awaited service call: sends `call`, and the task waits (other tasks
/// run) until its `result`.
pub(crate) async fn call_async(
    service: &str,
    pool: &str,
    action: &str,
    args: &Value,
) -> Result<Value, HandlerError> {
    let what = CallName {
        service,
        pool,
        action,
    };
    if let Some(shared) = shared() {
        let (tx, rx) = oneshot::channel();
        let id = shared.start_call(Waiter::Task(tx), &what, args, false)?;
        drop(shared);
        return match rx.await {
            Ok(outcome) => outcome.map_err(error_for),
            Err(_) => Err(ipc(format!(
                "{what}: the gateway's frames ended while waiting for result {id}"
            ))),
        };
    }
    // Not in the concurrent loop: a synchronous loop serves this request
    // (or none does); the blocking call knows what to do.
    crate::channel::call(service, pool, action, args)
}

/// A blocking service call made while the async loop runs (a sync
/// `DbPool` method called from an async handler): the whole worker waits
/// for the answer.
pub(crate) fn call_blocking(
    service: &str,
    pool: &str,
    action: &str,
    args: &Value,
) -> Result<Value, HandlerError> {
    let what = CallName {
        service,
        pool,
        action,
    };
    let Some(shared) = shared() else {
        return Err(ipc(crate::channel::OUTSIDE_A_REQUEST.into()));
    };
    if REQUEST_ID.try_with(|_| ()).is_err() {
        return Err(ipc(crate::channel::OUTSIDE_A_REQUEST.into()));
    }
    let (tx, rx) = std_mpsc::channel();
    let id = shared.start_call(Waiter::Thread(tx), &what, args, true)?;
    match rx.recv() {
        Ok(outcome) => outcome.map_err(error_for),
        Err(_) => Err(ipc(format!(
            "{what}: the gateway's frames ended while waiting for result {id}"
        ))),
    }
}

/// Reads frames until the input ends: requests to the loop, results to
/// their waiters. At the end every waiting call fails and the loop's
/// request channel closes.
fn read_frames(
    mut input: Box<dyn Read + Send>,
    max_frame: usize,
    requests: mpsc::UnboundedSender<(u64, Request)>,
    calls: Arc<Mutex<Calls>>,
) -> Result<(), FrameError> {
    let outcome = loop {
        let incoming = match frame::read_frame(&mut input, max_frame) {
            Ok(Some(object)) => protocol::decode(object),
            Ok(None) => break Ok(()),
            Err(e) => Err(e),
        };
        match incoming {
            Ok(Incoming::Request { id, request }) => {
                if requests.send((id, request)).is_err() {
                    break Ok(()); // the loop stopped (its output failed)
                }
            }
            Ok(Incoming::Result { id, outcome }) => match lock(&calls).waiters.remove(&id) {
                Some(Waiter::Task(tx)) => drop(tx.send(outcome)),
                Some(Waiter::Thread(tx)) => drop(tx.send(outcome)),
                None => eprintln!(
                    "rust-edge-gateway-sdk: ignoring the result of call {id}: no call is waiting"
                ),
            },
            Ok(Incoming::Other(kind)) => {
                eprintln!("rust-edge-gateway-sdk: ignoring a frame of type '{kind}'");
            }
            Err(e) => break Err(e),
        }
    };
    let mut calls = lock(&calls);
    calls.ended = Some(match outcome {
        Ok(()) => "the gateway's frames ended",
        Err(_) => "the gateway's frames broke",
    });
    // Dropping the senders fails every waiting call.
    calls.waiters.clear();
    outcome
}

/// A future that turns a panic while polling `F` into `Err(message)`.
struct CatchPanic<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(&*payload).to_owned())),
        }
    }
}

/// The boxed future of one request's handler.
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = Response>>>;

/// Sends `ready` (announcing [`ASYNC_CONCURRENCY`]), then serves every
/// request as a task of its own until the input ends and every task has
/// answered. A broken input frame or a failed write is an `Err` (the
/// answers of the tasks still running are not written).
pub(crate) fn serve_concurrent(
    input: Box<dyn Read + Send>,
    output: Rc<RefCell<dyn Write>>,
    handler: &dyn Fn(Request) -> HandlerFuture,
    max_frame: usize,
) -> Result<(), FrameError> {
    frame::write_frame(
        &mut *output.borrow_mut(),
        &protocol::ready_concurrent(ASYNC_CONCURRENCY),
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            FrameError::Io(io::Error::new(
                e.kind(),
                format!("cannot start the Tokio runtime: {e}"),
            ))
        })?;
    let calls = Arc::new(Mutex::new(Calls::default()));
    let (requests_tx, mut requests) = mpsc::unbounded_channel();
    let reader_calls = Arc::clone(&calls);
    let reader = std::thread::Builder::new()
        .name("edgegw-frames".into())
        .spawn(move || read_frames(input, max_frame, requests_tx, reader_calls))
        .map_err(FrameError::Io)?;
    let shared = Rc::new(Shared {
        output,
        pending: RefCell::new(Vec::new()),
        flush_scheduled: Cell::new(false),
        max_frame,
        calls,
        next_call: Cell::new(1),
        output_error: RefCell::new(None),
        in_flight: Cell::new(0),
        idle: Notify::new(),
    });
    let previous = SHARED.with(|s| s.replace(Some(Rc::clone(&shared))));
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        loop {
            let next = tokio::select! {
                next = requests.recv() => next,
                _ = shared.idle.notified(), if shared.output_error.borrow().is_some() => None,
            };
            let Some((id, request)) = next else { break };
            if shared.output_error.borrow().is_some() {
                break;
            }
            let request_id: Rc<str> = Rc::from(request.request_id.as_str());
            let Ok(future) = catch_unwind(AssertUnwindSafe(|| handler(request))) else {
                // Making the future panicked (a closure's body before `async`).
                shared.respond(id, &panic_response(&request_id));
                continue;
            };
            shared.in_flight.set(shared.in_flight.get() + 1);
            let task_shared = Rc::clone(&shared);
            tokio::task::spawn_local(REQUEST_ID.scope(Rc::clone(&request_id), async move {
                let response = match CatchPanic(Box::pin(future)).await {
                    Ok(response) => response,
                    Err(message) => {
                        eprintln!(
                            "rust-edge-gateway-sdk: handler panicked serving request '{request_id}': {message}; answered 500"
                        );
                        panic_response(&request_id)
                    }
                };
                task_shared.respond(id, &response);
                task_shared.in_flight.set(task_shared.in_flight.get() - 1);
                if task_shared.in_flight.get() == 0 {
                    task_shared.idle.notify_one();
                }
            }));
        }
        while shared.in_flight.get() > 0 && shared.output_error.borrow().is_none() {
            shared.idle.notified().await;
        }
        shared.flush();
    });
    SHARED.with(|s| s.replace(previous));
    drop(requests);
    if let Some(e) = shared.output_error.borrow_mut().take() {
        return Err(e);
    }
    match reader.join() {
        Ok(result) => result,
        Err(_) => Err(FrameError::Io(io::Error::other(
            "the frame reader thread panicked",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use crate::frame::{read_frame, write_frame, Object, MAX_FRAME_LEN};
    use crate::prelude::*;
    use std::cell::RefCell;
    use std::io::{self, Read, Write};
    use std::rc::Rc;
    use std::sync::mpsc::{channel, Receiver, Sender};

    /// Bytes through a std channel: the two ends of a pipe between threads.
    struct Pipe(Receiver<Vec<u8>>, Vec<u8>);

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            while self.1.is_empty() {
                match self.0.recv() {
                    Ok(bytes) => self.1 = bytes,
                    Err(_) => return Ok(0),
                }
            }
            let n = buf.len().min(self.1.len());
            buf[..n].copy_from_slice(&self.1[..n]);
            self.1.drain(..n);
            Ok(n)
        }
    }

    struct Sink(Sender<Vec<u8>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.0.send(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    async fn lookup(req: Request) -> Response {
        let redis = RedisPool::new("cache");
        let got = if req.path == "/blocking" {
            redis.get(&req.path)
        } else {
            redis.get_async(&req.path).await
        };
        match got {
            Ok(value) => Response::ok(json!({ "value": value })),
            Err(e) => e.to_response(),
        }
    }

    fn send(to: &Sender<Vec<u8>>, frame: JsonValue) {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &frame).unwrap();
        to.send(bytes).unwrap();
    }

    fn request(id: u64, path: &str) -> JsonValue {
        json!({"type": "request", "id": id, "method": "GET", "path": path, "request_id": format!("r{id}")})
    }

    #[test]
    fn awaited_calls_are_answered_in_any_order() {
        // Two requests each await a call; the gateway answers the second
        // call first, and the second request answers first. A blocking call
        // from async code still gets its result.
        let (to_worker, worker_in) = channel();
        let (worker_out, from_worker) = channel();
        let worker = std::thread::spawn(move || {
            let output = Rc::new(RefCell::new(Sink(worker_out)));
            crate::serve_async(Pipe(worker_in, Vec::new()), output, lookup)
        });
        let mut frames = Pipe(from_worker, Vec::new());
        let mut next = || -> Object { read_frame(&mut frames, MAX_FRAME_LEN).unwrap().unwrap() };
        assert_eq!(next()["concurrency"], crate::ASYNC_CONCURRENCY);
        send(&to_worker, request(1, "/a"));
        send(&to_worker, request(2, "/b"));
        let (call_a, call_b) = (next(), next());
        assert_eq!(
            (&call_a["request"], &call_a["args"]["key"]),
            (&json!("r1"), &json!("/a"))
        );
        assert_eq!(
            (&call_b["request"], &call_b["args"]["key"]),
            (&json!("r2"), &json!("/b"))
        );
        send(
            &to_worker,
            json!({"type": "result", "id": call_b["id"], "ok": true, "data": "B"}),
        );
        let first = next();
        assert_eq!(
            (&first["id"], &first["body"]),
            (&json!(2), &json!(r#"{"value":"B"}"#))
        );
        send(
            &to_worker,
            json!({"type": "result", "id": call_a["id"], "ok": false,
                                 "error": {"kind": "RedisError", "message": "down"}}),
        );
        let second = next();
        assert_eq!((&second["id"], &second["status"]), (&json!(1), &json!(500)));
        send(&to_worker, request(3, "/blocking"));
        let call_c = next();
        assert_eq!(call_c["request"], "r3");
        send(
            &to_worker,
            json!({"type": "result", "id": call_c["id"], "ok": true, "data": null}),
        );
        let third = next();
        assert_eq!(
            (&third["id"], &third["body"]),
            (&json!(3), &json!(r#"{"value":null}"#))
        );
        drop(to_worker);
        worker.join().unwrap().unwrap();
    }

    #[test]
    fn calls_after_the_input_ended_fail() {
        // A call waiting when the gateway's frames end gets an IpcError
        // (answered 500), and the loop returns once it answered.
        let (to_worker, worker_in) = channel();
        let (worker_out, from_worker) = channel();
        let worker = std::thread::spawn(move || {
            let output = Rc::new(RefCell::new(Sink(worker_out)));
            crate::serve_async(Pipe(worker_in, Vec::new()), output, lookup)
        });
        let mut frames = Pipe(from_worker, Vec::new());
        let mut next = || -> Object { read_frame(&mut frames, MAX_FRAME_LEN).unwrap().unwrap() };
        next();
        send(&to_worker, request(1, "/a"));
        assert_eq!(next()["type"], "call");
        drop(to_worker);
        let answer = next();
        assert_eq!((&answer["id"], &answer["status"]), (&json!(1), &json!(500)));
        worker.join().unwrap().unwrap();
    }

    async fn twins(_req: Request) -> Response {
        let db = DbPool::new("main");
        let files = Storage::new("files");
        let rows = db.query_async("SELECT ? AS v", &["x"]).await;
        let stored = files.get_object_async("a.txt").await;
        match (rows, stored) {
            (Ok(rows), Ok(Some(object))) => Response::ok(json!({
                "v": rows.first().map(|r| r["v"].clone()),
                "object": String::from_utf8_lossy(&object.data),
            })),
            (rows, stored) => Response::text(500, format!("{rows:?} {stored:?}")),
        }
    }

    #[test]
    fn the_twins_send_the_blocking_calls_frames_and_read_their_answers() {
        // query_async and get_object_async send what query and get_object
        // send, and read the answers the same way.
        let (to_worker, worker_in) = channel();
        let (worker_out, from_worker) = channel();
        let worker = std::thread::spawn(move || {
            let output = Rc::new(RefCell::new(Sink(worker_out)));
            crate::serve_async(Pipe(worker_in, Vec::new()), output, twins)
        });
        let mut frames = Pipe(from_worker, Vec::new());
        let mut next = || -> Object { read_frame(&mut frames, MAX_FRAME_LEN).unwrap().unwrap() };
        next();
        send(&to_worker, request(1, "/"));
        let query = next();
        assert_eq!(
            (&query["service"], &query["action"], &query["args"]),
            (
                &json!("db"),
                &json!("query"),
                &json!({"sql": "SELECT ? AS v", "params": ["x"]})
            )
        );
        send(
            &to_worker,
            json!({"type": "result", "id": query["id"], "ok": true,
                                 "data": {"columns": ["v"], "rows": [{"v": "x"}]}}),
        );
        let get = next();
        assert_eq!(
            (&get["service"], &get["action"], &get["args"]),
            (&json!("storage"), &json!("get"), &json!({"key": "a.txt"}))
        );
        send(
            &to_worker,
            json!({"type": "result", "id": get["id"], "ok": true,
                                 "data": {"data_base64": "aGk=", "content_type": "text/plain", "size": 2}}),
        );
        let answer = next();
        assert_eq!(answer["body"], r#"{"object":"hi","v":"x"}"#);
        drop(to_worker);
        worker.join().unwrap().unwrap();
    }
}
