//! The worker's frame channel as the loop and the service handles share it.
//!
//! The loop owns a [`Channel`] (the frame input and output plus the state of
//! service calls) and reads requests from it. While a handler runs, the loop
//! *installs* the channel in a thread-local, so a service handle, a plain
//! struct with no lifetime, can reach it: [`call`] sends a `call` frame and
//! reads frames until the matching `result`. `request` frames the gateway
//! pipelined meanwhile are queued and handed to the loop, in order, before
//! it reads more input.
//!
//! Everything here is non-generic (`dyn Read` / `dyn Write`), so it is
//! compiled once in the SDK and not again in every handler.

use crate::error::HandlerError;
use crate::frame::{self, FrameError};
use crate::protocol::{self, CallError, Incoming};
use crate::request::Request;
use serde_json::Value;
use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::ptr::NonNull;

/// The message of a call made while no request is being served.
pub(crate) const OUTSIDE_A_REQUEST: &str =
    "service calls are only possible while serving a request";

/// Why the frame input stopped.
enum End {
    /// It ended cleanly.
    Eof,
    /// A frame was broken (the loop returns this error).
    Broken(FrameError),
}

/// The frame channel and the state of service calls.
pub(crate) struct Channel<'a> {
    input: &'a mut dyn Read,
    output: &'a mut dyn Write,
    max_frame: usize,
    /// `request` frames read while waiting for a `result`, first in front.
    pending: VecDeque<(u64, Request)>,
    /// Set once the input ended or broke while a call was waiting; nothing
    /// more is read after it.
    end: Option<End>,
    /// A failed write of a `call` frame: the output stream may hold half a
    /// frame, so the loop stops with this error instead of answering.
    output_error: Option<FrameError>,
    /// The id of the next `call` frame (1, 2, ... for the worker's life).
    next_call: u64,
    /// The `request_id` of the request being served.
    request_id: String,
}

impl<'a> Channel<'a> {
    pub(crate) fn new(
        input: &'a mut dyn Read,
        output: &'a mut dyn Write,
        max_frame: usize,
    ) -> Self {
        Channel {
            input,
            output,
            max_frame,
            pending: VecDeque::new(),
            end: None,
            output_error: None,
            next_call: 1,
            request_id: String::new(),
        }
    }

    pub(crate) fn output(&mut self) -> &mut dyn Write {
        self.output
    }

    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// The next frame for the loop: a queued request first; `Ok(None)` at
    /// a clean end of input. An input that broke while a call was waiting
    /// gives its error once the queue is empty.
    pub(crate) fn next(&mut self) -> Result<Option<Incoming>, FrameError> {
        if let Some((id, request)) = self.pending.pop_front() {
            return Ok(Some(Incoming::Request { id, request }));
        }
        match self.end.take() {
            Some(End::Eof) => {
                self.end = Some(End::Eof);
                Ok(None)
            }
            Some(End::Broken(e)) => {
                // Calls from here on (there should be none) still fail.
                self.end = Some(End::Eof);
                Err(e)
            }
            None => match frame::read_frame(self.input, self.max_frame)? {
                None => Ok(None),
                Some(object) => protocol::decode(object).map(Some),
            },
        }
    }

    /// Runs `serve(request)` with this channel installed, so service
    /// handles called from it reach the channel (and name the request).
    pub(crate) fn serving<R>(&mut self, request: Request, serve: impl FnOnce(Request) -> R) -> R {
        // Reuses the buffer: no allocation per request.
        self.request_id.clear();
        self.request_id.push_str(&request.request_id);
        let ptr = NonNull::from(&mut *self).cast::<Channel<'static>>();
        let _installed = Restore(CURRENT.with(|c| c.replace(Some(ptr))));
        serve(request)
        // `_installed` puts back what was there before, also on a panic.
    }

    /// A failed write of a `call` frame, if one happened since the last
    /// time this was asked.
    pub(crate) fn take_output_error(&mut self) -> Option<FrameError> {
        self.output_error.take()
    }

    /// Sends one `call` frame and waits for its `result`.
    fn call(
        &mut self,
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
        if self.output_error.is_some() {
            return Err(ipc(format!("{what}: the frame output failed earlier")));
        }
        if self.end.is_some() {
            return Err(ipc(format!(
                "{what}: the gateway's frames ended, no result can arrive"
            )));
        }
        let id = self.next_call;
        let call = protocol::Call {
            kind: "call",
            id,
            request: &self.request_id,
            service,
            pool,
            action,
            args,
        };
        let encoded = encode_call(&call, self.max_frame, &what)?;
        self.next_call += 1;
        if let Err(e) = frame::write_encoded(self.output, &encoded) {
            let message = format!("{what}: cannot send the call: {e}");
            self.output_error = Some(e);
            return Err(ipc(message));
        }
        loop {
            let incoming = match frame::read_frame(self.input, self.max_frame) {
                Ok(Some(object)) => protocol::decode(object),
                Ok(None) => {
                    self.end = Some(End::Eof);
                    return Err(ipc(format!(
                        "{what}: the gateway's frames ended while waiting for result {id}"
                    )));
                }
                Err(e) => Err(e),
            };
            match incoming {
                Ok(Incoming::Result { id: got, outcome }) if got == id => {
                    return outcome.map_err(error_for);
                }
                Ok(Incoming::Result { id: got, .. }) => {
                    return Err(ipc(format!(
                        "{what}: got the result of call {got} while waiting for call {id}"
                    )));
                }
                Ok(Incoming::Request { id, request }) => self.pending.push_back((id, request)),
                Ok(Incoming::Other(kind)) => {
                    eprintln!("rust-edge-gateway-sdk: ignoring a frame of type '{kind}'");
                }
                Err(e) => {
                    let message =
                        format!("{what}: broken frame while waiting for result {id}: {e}");
                    self.end = Some(End::Broken(e));
                    return Err(ipc(message));
                }
            }
        }
    }
}

thread_local! {
    /// The channel of the request this thread serves, while it serves one.
    ///
    /// The pointer comes from the `&mut Channel` given to
    /// [`Channel::serving`] and is only set during that call (the borrow
    /// keeps the channel alive and unused by anything else meanwhile). Its
    /// lifetime parameter is erased to store it here; nothing keeps a
    /// reference out of it past a [`call`].
    static CURRENT: Cell<Option<NonNull<Channel<'static>>>> = const { Cell::new(None) };
}

/// Puts a previous value of [`CURRENT`] back when dropped.
struct Restore(Option<NonNull<Channel<'static>>>);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// Makes a service call on the channel of the request being served:
/// sends `call` and blocks until its `result`. The `data` of a successful
/// result is returned as it is; a failed one becomes the `HandlerError`
/// its `error.kind` names (see [`error_for`]).
pub(crate) fn call(
    service: &str,
    pool: &str,
    action: &str,
    args: &Value,
) -> Result<Value, HandlerError> {
    #[cfg(feature = "async")]
    if let Some(answer) = crate::services_async::intercept(service, pool, action, args) {
        return answer;
    }
    // Taken out while in use, so there is never a second `&mut` to it.
    let Some(mut ptr) = CURRENT.with(Cell::take) else {
        #[cfg(feature = "async")]
        if crate::concurrent::active() {
            // An async handler's blocking call: the concurrent loop carries it.
            return crate::concurrent::call_blocking(service, pool, action, args);
        }
        return Err(HandlerError::IpcError(OUTSIDE_A_REQUEST.into()));
    };
    let _restore = Restore(Some(ptr));
    // SAFETY: `ptr` was installed by `Channel::serving`, which is still
    // running further up this thread's stack (it removes the pointer before
    // it returns, also on a panic), so the channel is alive and its `&mut`
    // borrow is not used by anything else; taking the pointer out of
    // `CURRENT` above makes this the only reference made from it.
    let channel = unsafe { ptr.as_mut() };
    channel.call(service, pool, action, args)
}

/// `db call 'main' query`, for messages.
pub(crate) struct CallName<'a> {
    pub(crate) service: &'a str,
    pub(crate) pool: &'a str,
    pub(crate) action: &'a str,
}

impl std::fmt::Display for CallName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} on '{}'", self.service, self.action, self.pool)
    }
}

pub(crate) fn ipc(message: String) -> HandlerError {
    HandlerError::IpcError(message)
}

/// `call` encoded as a frame, or the error its caller sees, named by `what`
/// (for the blocking calls here and the awaited ones of `concurrent`).
pub(crate) fn encode_call(
    call: &protocol::Call<'_>,
    max_frame: usize,
    what: &CallName<'_>,
) -> Result<Vec<u8>, HandlerError> {
    match frame::encode_frame(call, max_frame) {
        Ok(encoded) => Ok(encoded),
        Err(FrameError::TooLarge { len, max }) => Err(ipc(format!(
            "{what}: the call is too large to send ({len} bytes, the limit is {max})"
        ))),
        Err(e) => Err(ipc(format!("{what}: cannot encode the call: {e}"))),
    }
}

/// The `HandlerError` for a failed result: the variant `error.kind` names,
/// carrying `error.message` as it is; `BadRequest`, `Internal` and kinds
/// this SDK does not know become `IpcError` (docs/ipc.md, "Service calls").
#[cold]
pub(crate) fn error_for(e: CallError) -> HandlerError {
    match e.kind.as_str() {
        "DatabaseError" => HandlerError::DatabaseError(e.message),
        "RedisError" => HandlerError::RedisError(e.message),
        "StorageError" => HandlerError::StorageError(e.message),
        "ServiceUnavailable" => HandlerError::ServiceUnavailable(e.message),
        _ => HandlerError::IpcError(e.message),
    }
}
