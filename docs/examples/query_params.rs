// GET /search?q=...&limit=...&page=... — a required parameter, and optional ones
// with defaults that still answer 400 when present but malformed.
use rust_edge_gateway_sdk::prelude::*;

fn optional(req: &Request, name: &str, default: u32) -> Result<u32, HandlerError> {
    match req.query_param(name) {
        None => Ok(default),
        Some(_) => req.require_query_param::<u32>(name),
    }
}

fn handle(req: Request) -> Result<Response, HandlerError> {
    let q: String = req.require_query_param("q")?;
    let limit = optional(&req, "limit", 10)?;
    let page = optional(&req, "page", 1)?;
    if limit == 0 || limit > 100 {
        return Err(HandlerError::BadRequest(format!(
            "limit must be between 1 and 100, got {limit}"
        )));
    }
    Ok(Response::ok(json!({"q": q, "limit": limit, "page": page})))
}

handler_loop_result!(handle);
