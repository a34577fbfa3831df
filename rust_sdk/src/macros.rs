//! The loop macros. Each generates `fn main()` running the worker loop.
//!
//! The names `handler_loop_async!` and `handler_loop_async_result!` (behind
//! the `async` cargo feature) are reserved for the async variants.

/// Generates `fn main()` serving requests with a `fn(Request) -> Response`.
///
/// See [`run`](crate::run) for what the loop does (stdout moved to the
/// log, panics answered with 500, exit 0 when the gateway closes stdin).
///
/// ```no_run
/// use rust_edge_gateway_sdk::prelude::*;
///
/// fn handle(req: Request) -> Response {
///     println!("this line goes to the endpoint log");
///     Response::text(200, format!("you asked for {}", req.path))
/// }
///
/// handler_loop!(handle);
/// ```
#[macro_export]
macro_rules! handler_loop {
    ($handler:expr $(,)?) => {
        fn main() {
            $crate::run($handler)
        }
    };
}

/// Generates `fn main()` serving requests with a
/// `fn(Request) -> Result<Response, HandlerError>`; an `Err` answers with
/// [`HandlerError::to_response`](crate::HandlerError::to_response).
///
/// ```no_run
/// use rust_edge_gateway_sdk::prelude::*;
///
/// fn handle(req: Request) -> Result<Response, HandlerError> {
///     let name = req.require_header("x-user")?;
///     Ok(Response::ok(json!({ "hello": name })))
/// }
///
/// handler_loop_result!(handle);
/// ```
#[macro_export]
macro_rules! handler_loop_result {
    ($handler:expr $(,)?) => {
        fn main() {
            $crate::run_result($handler)
        }
    };
}
