// OPTIONS /api/items and GET /api/items — CORS: the preflight and the real request.
// Deploy the same code under both methods.
use rust_edge_gateway_sdk::prelude::*;

const ORIGIN: &str = "https://app.example.com";

fn handle(req: Request) -> Response {
    if req.is_method("OPTIONS") {
        // The browser's preflight: say what the real request may use.
        return Response::no_content()
            .with_cors(ORIGIN)
            .with_header("Access-Control-Max-Age", "600");
    }
    Response::ok(json!({"items": ["a", "b"]})).with_cors(ORIGIN)
}

handler_loop!(handle);
