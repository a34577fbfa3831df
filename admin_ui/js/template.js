// The code a new endpoint starts from: it compiles and answers as it is.
export const HELLO_WORLD = `use rust_edge_gateway_sdk::prelude::*;

/// Called for every request routed to this endpoint.
fn handle(req: Request) -> Response {
    // Lines written to stderr show in the endpoint's logs.
    eprintln!("{} {}", req.method, req.path);
    Response::ok(json!({
        "message": "Hello, World!",
        "method": req.method,
        "path": req.path,
    }))
}

handler_loop!(handle);
`;
