// GET /wait?ms=... — an async handler: one Tokio runtime for the worker's life.
use rust_edge_gateway_sdk::prelude::*;

async fn handle(req: Request) -> Result<Response, HandlerError> {
    let ms = req.query_param_as::<u64>("ms").unwrap_or(10).min(1000);
    let started = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    Ok(Response::ok(json!({
        "slept_ms": ms,
        "elapsed_ms": started.elapsed().as_millis() as u64,
    })))
}

handler_loop_async_result!(handle);
