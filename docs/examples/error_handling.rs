// GET /items/{id} — errors as values: each HandlerError becomes its HTTP status.
use rust_edge_gateway_sdk::prelude::*;

fn find(id: u32) -> Result<JsonValue, HandlerError> {
    match id {
        0 => Err(HandlerError::BadRequest("id 0 is reserved".into())),
        1..=99 => Ok(json!({"id": id, "name": format!("item {id}")})),
        100..=199 => Err(HandlerError::Forbidden(format!("item {id} is private"))),
        _ => Err(HandlerError::NotFoundMessage(format!("no item {id}"))),
    }
}

fn handle(req: Request) -> Result<Response, HandlerError> {
    let id: u32 = req.require_path_param("id")?;
    let item = find(id)?;
    Ok(Response::ok(item).with_cache(60))
}

handler_loop_result!(handle);
