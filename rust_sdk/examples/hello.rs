//! The smallest handler. Build with `cargo build --example hello`; the gateway
//! runs such a binary as a worker (it speaks frames on stdin/stdout).
use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    Response::ok(json!({"message": "Hello, World!", "path": req.path, "method": req.method}))
}

handler_loop!(handle);
