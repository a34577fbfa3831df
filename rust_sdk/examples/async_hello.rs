//! An async handler (needs the `async` feature):
//! `cargo build --example async_hello --features async`.
use rust_edge_gateway_sdk::prelude::*;
use rust_edge_gateway_sdk::tokio::time::{sleep, Duration};

async fn handle(req: Request) -> Result<Response, HandlerError> {
    let ms: u64 = req.query_param_as("ms").unwrap_or(0);
    if ms > 1000 {
        return Err(HandlerError::BadRequest("ms must be at most 1000".into()));
    }
    sleep(Duration::from_millis(ms)).await;
    Ok(Response::ok(
        json!({"message": "Hello, async!", "slept_ms": ms}),
    ))
}

handler_loop_async_result!(handle);
