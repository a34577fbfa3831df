//! A handler returning `Result`: `?` turns a `HandlerError` into its response.
use rust_edge_gateway_sdk::prelude::*;

#[derive(Debug, Serialize, Deserialize)]
struct Item {
    name: String,
    qty: u32,
}

fn handle(req: Request) -> Result<Response, HandlerError> {
    if req.is_method("GET") {
        let id: u64 = req.require_path_param("id")?;
        let verbose = req.query_param_as::<bool>("verbose").unwrap_or(false);
        return Ok(Response::ok(json!({"id": id, "verbose": verbose})));
    }
    if !req.is_json() {
        return Err(HandlerError::BadRequest("send application/json".into()));
    }
    let item: Item = req.json()?;
    if item.qty == 0 {
        return Err(HandlerError::ValidationError("qty must be positive".into()));
    }
    eprintln!("created {item:?} for {:?}", req.client_ip);
    Ok(Response::created(item).with_header("Location", "/items/1"))
}

handler_loop_result!(handle);
