//! The worker loop: take the frame channel, send `ready`, serve requests.
//!
//! The loop body works on `&mut dyn Read` / `&mut dyn Write` and a
//! `&dyn Fn`, so it is compiled once in this crate (not again in every
//! handler crate) and can be tested against in-memory buffers.

use crate::channel::Channel;
use crate::error::HandlerError;
use crate::frame::{self, FrameError, MAX_FRAME_LEN};
use crate::protocol::{self, Incoming};
use crate::request::Request;
use crate::response::Response;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::io::{FromRawFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs a worker: serves requests with `handler` until the gateway closes
/// stdin, then returns (so `main` exits 0).
///
/// Before anything else it moves the frame channel off the standard
/// descriptors: frames are written to a private duplicate of stdout and
/// read from a private duplicate of stdin; fd 1 then points at stderr (the
/// endpoint's log) and fd 0 at `/dev/null`. So `println!` in handler code
/// lands in the log and can never corrupt a frame, and reading stdin can
/// never steal one. Both private descriptors are close-on-exec.
///
/// A panic in `handler` answers 500 with
/// `{"error": "handler panicked", "request_id": "..."}` and the worker
/// goes on serving; the panic message is in the log. A broken frame from
/// the gateway (or a failure to write one) prints a message on stderr and
/// exits with status 2.
///
/// Usually called through [`handler_loop!`](crate::handler_loop).
///
/// ```no_run
/// use rust_edge_gateway_sdk::prelude::*;
///
/// fn main() {
///     eprintln!("worker starting"); // one-time setup goes here
///     rust_edge_gateway_sdk::run(|req: Request| Response::text(200, req.path));
/// }
/// ```
pub fn run<F: Fn(Request) -> Response>(handler: F) {
    run_dyn(&handler)
}

/// Like [`run`] for a handler returning `Result`; an `Err` answers with
/// [`HandlerError::to_response`]. Usually called through
/// [`handler_loop_result!`](crate::handler_loop_result).
///
/// ```no_run
/// use rust_edge_gateway_sdk::prelude::*;
///
/// fn handle(req: Request) -> Result<Response, HandlerError> {
///     let n: i64 = req.require_query_param("n")?;
///     Ok(Response::ok(json!({ "double": n * 2 })))
/// }
///
/// fn main() {
///     rust_edge_gateway_sdk::run_result(handle);
/// }
/// ```
pub fn run_result<F: Fn(Request) -> Result<Response, HandlerError>>(handler: F) {
    run_dyn(&|req| handler(req).unwrap_or_else(Response::from))
}

/// Runs an `async` handler: like [`run`], with one Tokio current-thread
/// runtime built at start and kept for the worker's life, on which every
/// request is a task of its own: while one awaits (a timer, an awaited
/// service call such as [`DbPool::query_async`](crate::DbPool::query_async)),
/// the others run, and answers go back as they finish. The worker announces
/// that it takes many requests at once (`concurrency` in its `ready`); the
/// endpoint's `settings.concurrency` caps how many the gateway sends it.
/// Needs the `async` feature. Usually called through
/// [`handler_loop_async!`](crate::handler_loop_async).
///
/// A panic in one request's task answers that request 500 (as in [`run`]);
/// the others go on. If the runtime cannot be built the worker prints why
/// and exits 2.
///
/// ```no_run
/// use rust_edge_gateway_sdk::prelude::*;
///
/// async fn handle(req: Request) -> Response {
///     rust_edge_gateway_sdk::tokio::task::yield_now().await;
///     Response::ok(json!({ "path": req.path }))
/// }
///
/// fn main() {
///     rust_edge_gateway_sdk::run_async(handle);
/// }
/// ```
#[cfg(feature = "async")]
pub fn run_async<F, Fut>(handler: F)
where
    F: Fn(Request) -> Fut,
    Fut: std::future::Future<Output = Response> + 'static,
{
    run_concurrent(&|req| Box::pin(handler(req)))
}

/// Like [`run_async`] for an `async` handler returning `Result`; an `Err`
/// answers with [`HandlerError::to_response`]. Usually called through
/// [`handler_loop_async_result!`](crate::handler_loop_async_result).
///
/// ```no_run
/// use rust_edge_gateway_sdk::prelude::*;
///
/// async fn handle(req: Request) -> Result<Response, HandlerError> {
///     let id: u64 = req.require_path_param("id")?;
///     Ok(Response::ok(json!({ "id": id })))
/// }
///
/// fn main() {
///     rust_edge_gateway_sdk::run_async_result(handle);
/// }
/// ```
#[cfg(feature = "async")]
pub fn run_async_result<F, Fut>(handler: F)
where
    F: Fn(Request) -> Fut,
    Fut: std::future::Future<Output = Result<Response, HandlerError>> + 'static,
{
    run_concurrent(&|req| {
        let served = handler(req);
        Box::pin(async move { served.await.unwrap_or_else(Response::from) })
    })
}

/// Like [`serve`] for an `async` handler, served concurrently as
/// [`run_async`] does: `input` is read on a thread of its own (so it must be
/// `Send`), frames are written to `output`. Returns once the input ended
/// and every request was answered. For tests, tools and benchmarks.
///
/// ```
/// use rust_edge_gateway_sdk::frame::{read_frame, write_frame, MAX_FRAME_LEN};
/// use rust_edge_gateway_sdk::prelude::*;
/// use std::{cell::RefCell, rc::Rc};
///
/// let mut input = Vec::new();
/// write_frame(&mut input, &json!({"type": "request", "id": 1, "method": "GET", "path": "/x"})).unwrap();
/// let output = Rc::new(RefCell::new(Vec::new()));
/// rust_edge_gateway_sdk::serve_async(std::io::Cursor::new(input), output.clone(), |req: Request| async move {
///     Response::text(200, req.path)
/// })
/// .unwrap();
///
/// let output = output.borrow();
/// let mut frames = &output[..];
/// let ready = read_frame(&mut frames, MAX_FRAME_LEN).unwrap().unwrap();
/// assert_eq!((ready["type"].as_str(), ready["concurrency"].as_u64()), (Some("ready"), Some(1024)));
/// let answer = read_frame(&mut frames, MAX_FRAME_LEN).unwrap().unwrap();
/// assert_eq!((answer["id"].as_u64(), answer["body"].as_str()), (Some(1), Some("/x")));
/// ```
#[cfg(feature = "async")]
pub fn serve_async<R, W, F, Fut>(
    input: R,
    output: std::rc::Rc<std::cell::RefCell<W>>,
    handler: F,
) -> Result<(), FrameError>
where
    R: Read + Send + 'static,
    W: Write + 'static,
    F: Fn(Request) -> Fut,
    Fut: std::future::Future<Output = Response> + 'static,
{
    crate::concurrent::serve_concurrent(
        Box::new(input),
        output,
        &|req| Box::pin(handler(req)),
        MAX_FRAME_LEN,
    )
}

#[cfg(feature = "async")]
fn run_concurrent(handler: &dyn Fn(Request) -> crate::concurrent::HandlerFuture) {
    let (input, output) = match take_frame_channel() {
        Ok(channel) => channel,
        Err(e) => fail(&format!("cannot set up the frame channel: {e}")),
    };
    let input = Box::new(BufReader::new(input));
    let output = std::rc::Rc::new(std::cell::RefCell::new(output));
    if let Err(e) = crate::concurrent::serve_concurrent(input, output, handler, MAX_FRAME_LEN) {
        fail(&e.to_string());
    }
}

/// Runs the worker protocol over `input` and `output` instead of the
/// process's stdin and stdout: sends `ready`, answers every `request` frame
/// with `handler` (panics answered with 500 as in [`run`]), and returns
/// `Ok(())` at a clean end of input. A broken frame or a failed write is an
/// `Err`. [`run`] is this on the worker's frame channel; `serve` is for
/// tests, tools and benchmarks.
///
/// ```
/// use rust_edge_gateway_sdk::frame::{read_frame, write_frame, MAX_FRAME_LEN};
/// use rust_edge_gateway_sdk::prelude::*;
///
/// let mut input = Vec::new();
/// write_frame(&mut input, &json!({"type": "request", "id": 1, "method": "GET", "path": "/x"})).unwrap();
/// let mut output = Vec::new();
/// rust_edge_gateway_sdk::serve(&mut &input[..], &mut output, |req: Request| {
///     Response::text(200, req.path)
/// })
/// .unwrap();
///
/// let mut frames = &output[..];
/// assert_eq!(read_frame(&mut frames, MAX_FRAME_LEN).unwrap().unwrap()["type"], "ready");
/// let answer = read_frame(&mut frames, MAX_FRAME_LEN).unwrap().unwrap();
/// assert_eq!((answer["id"].as_u64(), answer["body"].as_str()), (Some(1), Some("/x")));
/// ```
pub fn serve<F: Fn(Request) -> Response>(
    input: &mut dyn Read,
    output: &mut dyn Write,
    handler: F,
) -> Result<(), FrameError> {
    serve_dyn(input, output, &handler, MAX_FRAME_LEN)
}

fn run_dyn(handler: &dyn Fn(Request) -> Response) {
    let (input, mut output) = match take_frame_channel() {
        Ok(channel) => channel,
        Err(e) => fail(&format!("cannot set up the frame channel: {e}")),
    };
    let mut input = BufReader::new(input);
    if let Err(e) = serve_dyn(&mut input, &mut output, handler, MAX_FRAME_LEN) {
        fail(&e.to_string());
    }
}

fn fail(message: &str) -> ! {
    eprintln!("rust-edge-gateway-sdk: {message}; exiting");
    std::process::exit(2)
}

/// What one turn of the loop did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Answered request `id`.
    Served(u64),
    /// Ignored a frame of this type.
    Ignored(String),
    /// Input ended cleanly.
    Eof,
}

/// Sends `ready`, then serves until clean end of input.
pub(crate) fn serve_dyn(
    input: &mut dyn Read,
    output: &mut dyn Write,
    handler: &dyn Fn(Request) -> Response,
    max_frame: usize,
) -> Result<(), FrameError> {
    frame::write_frame(output, &protocol::ready())?;
    let mut channel = Channel::new(input, output, max_frame);
    while serve_one(&mut channel, handler)? != Step::Eof {}
    Ok(())
}

/// Takes the next request (one queued during a service call first, else
/// the next frame) and answers it.
pub(crate) fn serve_one(
    channel: &mut Channel<'_>,
    handler: &dyn Fn(Request) -> Response,
) -> Result<Step, FrameError> {
    let Some(incoming) = channel.next()? else {
        return Ok(Step::Eof);
    };
    match incoming {
        Incoming::Request { id, request } => {
            let response = channel.serving(request, |request| call_handler(handler, request));
            if let Some(e) = channel.take_output_error() {
                return Err(e);
            }
            let max_frame = channel.max_frame();
            send_response(channel.output(), id, &response, max_frame)?;
            Ok(Step::Served(id))
        }
        Incoming::Result { id, .. } => {
            eprintln!(
                "rust-edge-gateway-sdk: ignoring the result of call {id}: no call is waiting"
            );
            Ok(Step::Ignored("result".into()))
        }
        Incoming::Other(kind) => {
            eprintln!("rust-edge-gateway-sdk: ignoring a frame of type '{kind}'");
            Ok(Step::Ignored(kind))
        }
    }
}

/// Calls the handler, turning a panic into a 500.
fn call_handler(handler: &dyn Fn(Request) -> Response, request: Request) -> Response {
    let request_id = request.request_id.clone();
    let outcome = catch_unwind(AssertUnwindSafe(|| handler(request)));
    // Push out anything the handler `print!`ed without a newline (it goes
    // to the log, see `run`).
    let _ = io::stdout().flush();
    match outcome {
        Ok(response) => response,
        Err(payload) => {
            // The panic hook has printed the message and location too
            // (unless the handler replaced the hook).
            let message = panic_message(&*payload);
            eprintln!(
                "rust-edge-gateway-sdk: handler panicked serving request '{request_id}': {message}; answered 500"
            );
            panic_response(&request_id)
        }
    }
}

/// The message a panic was raised with.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// The answer to a request whose handler panicked.
pub(crate) fn panic_response(request_id: &str) -> Response {
    Response::json(
        500,
        serde_json::json!({ "error": "handler panicked", "request_id": request_id }),
    )
}

pub(crate) fn send_response(
    output: &mut dyn Write,
    id: u64,
    response: &Response,
    max_frame: usize,
) -> Result<(), FrameError> {
    if let Some(problem) = protocol::response_problem(response) {
        eprintln!("rust-edge-gateway-sdk: {problem}; answered 500");
        let fallback = Response::internal_error(problem);
        let encoded = frame::encode_frame(&protocol::response(id, &fallback), max_frame)?;
        return frame::write_encoded(output, &encoded);
    }
    let encoded = match protocol::encode_response(id, response, max_frame) {
        Ok(encoded) => encoded,
        Err(FrameError::TooLarge { len, max }) => {
            let message = format!("response too large: {len} bytes, the limit is {max}");
            eprintln!("rust-edge-gateway-sdk: {message}; answered 500");
            let fallback = Response::internal_error(message);
            frame::encode_frame(&protocol::response(id, &fallback), max_frame)?
        }
        Err(e) => return Err(e),
    };
    frame::write_encoded(output, &encoded)
}

/// Moves the frame channel to private close-on-exec descriptors and points
/// fd 1 at stderr and fd 0 at `/dev/null`. Returns (frames in, frames out).
fn take_frame_channel() -> io::Result<(File, File)> {
    let input = dup_cloexec(0)?;
    // SAFETY: `input` is a descriptor we just created and own.
    let input = unsafe { File::from_raw_fd(input) };
    let output = dup_cloexec(1)?;
    // SAFETY: as above.
    let output = unsafe { File::from_raw_fd(output) };
    // SAFETY: plain descriptor calls on the standard descriptors.
    if unsafe { libc::dup2(2, 1) } < 0 {
        // No usable stderr: stray prints go nowhere rather than into frames.
        redirect_to_dev_null(1, libc::O_WRONLY)?;
    }
    // Best effort: if /dev/null is missing, fd 0 stays a duplicate of the
    // frame input and only a handler that reads stdin could disturb it.
    let _ = redirect_to_dev_null(0, libc::O_RDONLY);
    Ok((input, output))
}

/// `fcntl(F_DUPFD_CLOEXEC)` to a descriptor >= 3.
fn dup_cloexec(fd: RawFd) -> io::Result<RawFd> {
    // SAFETY: fcntl on a descriptor number has no memory-safety effects.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(new)
    }
}

fn redirect_to_dev_null(target: RawFd, flags: libc::c_int) -> io::Result<()> {
    const DEV_NULL: &[u8] = b"/dev/null\0";
    // SAFETY: DEV_NULL is NUL-terminated; the descriptor we open is closed below.
    unsafe {
        let null = libc::open(DEV_NULL.as_ptr().cast(), flags | libc::O_CLOEXEC);
        if null < 0 {
            return Err(io::Error::last_os_error());
        }
        let result = libc::dup2(null, target);
        let error = io::Error::last_os_error();
        libc::close(null);
        if result < 0 {
            return Err(error);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode_frame, read_frame, Object};
    use serde_json::{json, Value};

    fn wire(frames: &[Value]) -> Vec<u8> {
        frames
            .iter()
            .flat_map(|f| encode_frame(f, MAX_FRAME_LEN).unwrap())
            .collect()
    }

    fn frames_of(mut out: &[u8]) -> Vec<Object> {
        let mut frames = Vec::new();
        while let Some(f) = read_frame(&mut out, MAX_FRAME_LEN).unwrap() {
            frames.push(f);
        }
        frames
    }

    /// `serve_one` on a fresh channel (no queued requests carry over).
    fn one(
        input: &mut dyn Read,
        output: &mut dyn Write,
        handler: &dyn Fn(Request) -> Response,
        max_frame: usize,
    ) -> Result<Step, FrameError> {
        serve_one(&mut Channel::new(input, output, max_frame), handler)
    }

    fn body_of(frame: &Object) -> Value {
        serde_json::from_str(frame["body"].as_str().unwrap()).unwrap()
    }

    fn echo(req: Request) -> Response {
        match req.path.as_str() {
            "/panic" => panic!("boom on purpose"),
            "/missing" => Response::not_found(),
            _ => Response::ok(json!({
                "method": req.method, "path": req.path, "id": req.request_id,
                "x": req.header("X-Thing"),
            })),
        }
    }

    fn request(id: u64, path: &str) -> Value {
        json!({
            "type": "request", "id": id, "method": "GET", "path": path,
            "query": {}, "headers": {"x-thing": "t"}, "params": {}, "body": null,
            "client_ip": "127.0.0.1", "request_id": format!("r{id}")
        })
    }

    #[test]
    fn serve_one_answers_a_request() {
        let input = wire(&[request(5, "/hello")]);
        let mut out = Vec::new();
        let step = one(&mut &input[..], &mut out, &echo, MAX_FRAME_LEN).unwrap();
        assert_eq!(step, Step::Served(5));
        let frames = frames_of(&out);
        assert_eq!(frames.len(), 1);
        let f = &frames[0];
        assert_eq!(f["type"], "response");
        assert_eq!(f["id"], 5);
        assert_eq!(f["status"], 200);
        assert_eq!(f["headers"], json!({"content-type": "application/json"}));
        assert_eq!(
            body_of(f),
            json!({"method": "GET", "path": "/hello", "id": "r5", "x": "t"})
        );
    }

    #[test]
    fn a_panic_answers_500_and_serving_goes_on() {
        let input = wire(&[request(1, "/panic"), request(2, "/ok")]);
        let mut out = Vec::new();
        let mut reader = &input[..];
        assert_eq!(
            one(&mut reader, &mut out, &echo, MAX_FRAME_LEN).unwrap(),
            Step::Served(1)
        );
        assert_eq!(
            one(&mut reader, &mut out, &echo, MAX_FRAME_LEN).unwrap(),
            Step::Served(2)
        );
        let frames = frames_of(&out);
        assert_eq!(frames[0]["status"], 500);
        assert_eq!(frames[0]["id"], 1);
        assert_eq!(
            body_of(&frames[0]),
            json!({"error": "handler panicked", "request_id": "r1"})
        );
        assert_eq!(frames[1]["status"], 200);
        assert_eq!(frames[1]["id"], 2);
    }

    #[test]
    fn serve_sends_ready_then_answers_until_eof() {
        let input = wire(&[
            request(1, "/a"),
            json!({"type": "something-new", "id": 3}),
            request(2, "/missing"),
        ]);
        let mut out = Vec::new();
        serve_dyn(&mut &input[..], &mut out, &echo, MAX_FRAME_LEN).unwrap();
        let frames = frames_of(&out);
        assert_eq!(frames.len(), 3);
        assert_eq!(
            Value::Object(frames[0].clone()),
            json!({"type": "ready", "protocol": 1, "sdk": "0.1.0"})
        );
        assert_eq!(
            (frames[1]["id"].clone(), frames[1]["status"].clone()),
            (json!(1), json!(200))
        );
        assert_eq!(
            (frames[2]["id"].clone(), frames[2]["status"].clone()),
            (json!(2), json!(404))
        );
    }

    #[test]
    fn eof_is_a_clean_stop() {
        let mut out = Vec::new();
        let step = one(&mut &b""[..], &mut out, &echo, MAX_FRAME_LEN).unwrap();
        assert_eq!(step, Step::Eof);
        assert!(out.is_empty());
    }

    #[test]
    fn broken_input_is_an_error() {
        let mut truncated = wire(&[request(1, "/a")]);
        truncated.truncate(truncated.len() - 3);
        let not_object = wire(&[json!([1])]);
        let no_type = wire(&[json!({"id": 1})]);
        let mut huge = (MAX_FRAME_LEN as u32 + 1).to_be_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        for input in [truncated, not_object, no_type, huge] {
            let mut out = Vec::new();
            assert!(one(&mut &input[..], &mut out, &echo, MAX_FRAME_LEN).is_err());
            assert!(out.is_empty());
        }
    }

    #[test]
    fn result_handlers_map_errors() {
        let handler = |req: Request| -> Result<Response, HandlerError> {
            let n: u32 = req.require_query_param("n")?;
            Ok(Response::ok(json!({ "n": n })))
        };
        let wrapped = |req| handler(req).unwrap_or_else(Response::from);
        let input = wire(&[request(1, "/")]);
        let mut out = Vec::new();
        one(&mut &input[..], &mut out, &wrapped, MAX_FRAME_LEN).unwrap();
        let f = &frames_of(&out)[0];
        assert_eq!(f["status"], 400);
        assert_eq!(
            body_of(f),
            json!({"error": "Bad request: missing query parameter 'n'"})
        );
    }

    #[test]
    fn an_oversized_response_becomes_500() {
        let big = |_req: Request| Response::text(200, "x".repeat(4096));
        let input = wire(&[request(7, "/")]);
        let mut out = Vec::new();
        one(&mut &input[..], &mut out, &big, 1024).unwrap();
        let f = &frames_of(&out)[0];
        assert_eq!(
            (f["id"].clone(), f["status"].clone()),
            (json!(7), json!(500))
        );
        let msg = body_of(f)["error"].as_str().unwrap().to_string();
        assert!(msg.starts_with("response too large"), "{msg}");
    }

    #[test]
    fn write_failures_are_errors() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let input = wire(&[request(1, "/")]);
        let err = one(&mut &input[..], &mut Broken, &echo, MAX_FRAME_LEN).unwrap_err();
        assert!(matches!(err, FrameError::Io(_)));
    }

    #[test]
    fn binary_responses_travel_as_base64() {
        let bytes: Vec<u8> = (0..=255u8).chain([0, 0xff]).collect();
        let b = bytes.clone();
        let handler = move |req: Request| match req.path.as_str() {
            "/broken" => {
                let mut r = Response::binary(200, &b, "application/octet-stream");
                r.body = Some("not base64 at all".into());
                r
            }
            _ => Response::binary(200, &b, "application/octet-stream").with_cookie("c=1"),
        };
        let input = wire(&[request(1, "/bin"), request(2, "/broken")]);
        let mut out = Vec::new();
        serve_dyn(&mut &input[..], &mut out, &handler, MAX_FRAME_LEN).unwrap();
        let frames = frames_of(&out);
        let f = &frames[1];
        assert_eq!(f["status"], 200);
        assert!(!f.contains_key("body"));
        assert_eq!(
            base64::decode(f["body_base64"].as_str().unwrap()).unwrap(),
            bytes
        );
        assert_eq!(f["headers"]["set-cookie"], json!(["c=1"]));
        let f = &frames[2];
        assert_eq!(
            (f["id"].clone(), f["status"].clone()),
            (json!(2), json!(500))
        );
        assert_eq!(
            body_of(f),
            json!({"error": "the body of a binary response is not valid base64"})
        );
    }

    #[test]
    fn public_serve_runs_the_protocol() {
        let input = wire(&[request(1, "/a"), request(2, "/panic")]);
        let mut out = Vec::new();
        crate::serve(&mut &input[..], &mut out, echo).unwrap();
        let frames = frames_of(&out);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0]["type"], "ready");
        assert_eq!(frames[2]["status"], 500);
        let truncated = &input[..input.len() - 1];
        assert!(crate::serve(&mut &truncated[..], &mut Vec::new(), echo).is_err());
    }

    #[cfg(feature = "async")]
    mod async_loop {
        use super::*;
        use std::time::Duration;

        thread_local! {
            static GATE: std::rc::Rc<tokio::sync::Notify> = std::rc::Rc::new(tokio::sync::Notify::new());
        }

        async fn handler(req: Request) -> Result<Response, HandlerError> {
            match req.path.as_str() {
                "/sleep" => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(Response::text(200, "slept"))
                }
                "/panic" => {
                    tokio::task::yield_now().await;
                    panic!("async boom");
                }
                "/spawn" => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let task = tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        tx.send(21u32).unwrap();
                        2u32
                    });
                    let a = rx.await.unwrap();
                    let b = task.await.unwrap();
                    Ok(Response::ok(json!({ "n": a * b })))
                }
                "/err" => Err(HandlerError::Conflict("taken".into())),
                "/wait" => {
                    // Answers once a later request released it: only possible
                    // when requests are served at the same time.
                    let gate = GATE.with(std::rc::Rc::clone);
                    match tokio::time::timeout(Duration::from_secs(5), gate.notified()).await {
                        Ok(()) => Ok(Response::text(200, "released")),
                        Err(_) => Ok(Response::text(504, "never released")),
                    }
                }
                "/release" => {
                    GATE.with(|g| g.notify_one());
                    Ok(Response::text(200, "releasing"))
                }
                _ => Ok(Response::ok(json!({ "path": req.path }))),
            }
        }

        #[test]
        fn serves_concurrently_and_survives_panics() {
            // Every request is a task: the two 20 ms sleeps answer last, the
            // panics answer 500 for their own requests only.
            let input = wire(&[
                request(1, "/sleep"),
                request(2, "/panic"),
                request(3, "/spawn"),
                request(4, "/err"),
                request(5, "/panic"),
                request(6, "/sleep"),
            ]);
            let out = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            crate::serve_async(
                std::io::Cursor::new(input),
                out.clone(),
                |req: Request| async move { handler(req).await.unwrap_or_else(Response::from) },
            )
            .unwrap();
            let frames = frames_of(&out.borrow());
            assert_eq!(frames[0]["type"], "ready");
            assert_eq!(frames[0]["concurrency"], crate::ASYNC_CONCURRENCY);
            let by_id = |id: u64| frames[1..].iter().find(|f| f["id"] == id).unwrap().clone();
            let statuses: Vec<u64> = (1..=6)
                .map(|id| by_id(id)["status"].as_u64().unwrap())
                .collect();
            assert_eq!(statuses, [200, 500, 200, 409, 500, 200]);
            assert_eq!(by_id(1)["body"], "slept");
            assert_eq!(
                body_of(&by_id(2)),
                json!({"error": "handler panicked", "request_id": "r2"})
            );
            assert_eq!(body_of(&by_id(3)), json!({"n": 42}));
            assert_eq!(body_of(&by_id(4)), json!({"error": "Conflict: taken"}));
        }

        #[test]
        fn a_waiting_request_does_not_hold_up_the_next() {
            // Request 1 waits until request 2 releases it: served one at a
            // time, 1 would wait out its 5 s and answer 504.
            let input = wire(&[request(1, "/wait"), request(2, "/release")]);
            let out = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            crate::serve_async(
                std::io::Cursor::new(input),
                out.clone(),
                |req: Request| async move { handler(req).await.unwrap_or_else(Response::from) },
            )
            .unwrap();
            let frames = frames_of(&out.borrow());
            let answers: Vec<(u64, &str)> = frames[1..]
                .iter()
                .map(|f| (f["id"].as_u64().unwrap(), f["body"].as_str().unwrap()))
                .collect();
            assert_eq!(answers, [(2, "releasing"), (1, "released")]);
        }

        #[test]
        fn a_broken_input_is_an_error_after_the_answers() {
            // Requests read before the broken frame are still answered.
            let mut input = wire(&[request(1, "/sleep")]);
            input.extend_from_slice(&[0, 0, 0, 9, b'{']);
            let out = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let result = crate::serve_async(
                std::io::Cursor::new(input),
                out.clone(),
                |req: Request| async move { handler(req).await.unwrap_or_else(Response::from) },
            );
            assert!(result.is_err());
            let frames = frames_of(&out.borrow());
            assert_eq!(frames.len(), 2);
            assert_eq!(frames[1]["body"], "slept");
        }

        #[test]
        fn closures_returning_futures_work() {
            // What handler_loop_async! accepts: anything Fn(Request) -> impl Future.
            fn assert_async<F, Fut>(_: F)
            where
                F: Fn(Request) -> Fut,
                Fut: std::future::Future<Output = Response>,
            {
            }
            assert_async(|req: Request| async move { Response::text(200, req.path) });
        }
    }
}
