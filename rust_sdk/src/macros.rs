//! The loop macros. Each generates `fn main()` running the worker loop.
//!
//! `handler_loop_async!` and `handler_loop_async_result!` need the `async`
//! cargo feature; without it they expand to a `compile_error!` that says so.

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

/// Generates `fn main()` serving requests with an
/// `async fn(Request) -> Response` (cargo feature `async`).
///
/// One Tokio current-thread runtime is built when the worker starts and
/// serves every request (`block_on(handler(request))`), so `.await` on
/// timers, channels and other Tokio futures works. A panic answers 500 with
/// the request id and the worker lives on, as with
/// [`handler_loop!`](crate::handler_loop). See
/// [`run_async`](crate::run_async).
///
#[cfg_attr(feature = "async", doc = "```no_run")]
#[cfg_attr(not(feature = "async"), doc = "```ignore")]
/// use rust_edge_gateway_sdk::prelude::*;
/// use rust_edge_gateway_sdk::tokio::time::{sleep, Duration};
///
/// async fn handle(req: Request) -> Response {
///     sleep(Duration::from_millis(5)).await;
///     Response::ok(json!({ "path": req.path, "waited_ms": 5 }))
/// }
///
/// handler_loop_async!(handle);
/// ```
///
/// Without the feature the macro is a compile error that names it:
/// the handler's Cargo.toml needs
/// `rust-edge-gateway-sdk = { ..., features = ["async"] }` (the gateway adds
/// it when the code uses an async loop macro).
#[cfg(feature = "async")]
#[macro_export]
macro_rules! handler_loop_async {
    ($handler:expr $(,)?) => {
        fn main() {
            $crate::run_async($handler)
        }
    };
}

/// Generates `fn main()` serving requests with an
/// `async fn(Request) -> Result<Response, HandlerError>` (cargo feature
/// `async`); an `Err` answers with
/// [`HandlerError::to_response`](crate::HandlerError::to_response). Otherwise
/// as [`handler_loop_async!`](crate::handler_loop_async).
///
#[cfg_attr(feature = "async", doc = "```no_run")]
#[cfg_attr(not(feature = "async"), doc = "```ignore")]
/// use rust_edge_gateway_sdk::prelude::*;
///
/// async fn handle(req: Request) -> Result<Response, HandlerError> {
///     let id: u64 = req.require_path_param("id")?;
///     rust_edge_gateway_sdk::tokio::task::yield_now().await;
///     Ok(Response::ok(json!({ "id": id })))
/// }
///
/// handler_loop_async_result!(handle);
/// ```
#[cfg(feature = "async")]
#[macro_export]
macro_rules! handler_loop_async_result {
    ($handler:expr $(,)?) => {
        fn main() {
            $crate::run_async_result($handler)
        }
    };
}

/// Needs the SDK's `async` cargo feature, which this build does not have:
/// using it is a compile error saying so. With the feature it generates
/// `fn main()` serving an `async fn(Request) -> Response`.
///
/// ```compile_fail
/// use rust_edge_gateway_sdk::prelude::*;
///
/// async fn handle(_req: Request) -> Response {
///     Response::no_content()
/// }
///
/// handler_loop_async!(handle);
/// ```
#[cfg(not(feature = "async"))]
#[macro_export]
macro_rules! handler_loop_async {
    ($($anything:tt)*) => {
        compile_error!(
            "handler_loop_async! needs the SDK's `async` feature: \
             rust-edge-gateway-sdk = { ..., features = [\"async\"] } in Cargo.toml"
        );
        // Keeps the compiler from adding "`main` function not found".
        fn main() {}
    };
}

/// Needs the SDK's `async` cargo feature, which this build does not have:
/// using it is a compile error saying so. With the feature it generates
/// `fn main()` serving an `async fn(Request) -> Result<Response, HandlerError>`.
///
/// ```compile_fail
/// use rust_edge_gateway_sdk::prelude::*;
///
/// async fn handle(_req: Request) -> Result<Response, HandlerError> {
///     Ok(Response::no_content())
/// }
///
/// handler_loop_async_result!(handle);
/// ```
#[cfg(not(feature = "async"))]
#[macro_export]
macro_rules! handler_loop_async_result {
    ($($anything:tt)*) => {
        compile_error!(
            "handler_loop_async_result! needs the SDK's `async` feature: \
             rust-edge-gateway-sdk = { ..., features = [\"async\"] } in Cargo.toml"
        );
        // Keeps the compiler from adding "`main` function not found".
        fn main() {}
    };
}
