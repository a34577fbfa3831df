// GET /users/{id}/posts/{slug} — path parameters, typed.
use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Result<Response, HandlerError> {
    // `id` must be a number: /users/abc/posts/x answers 400 naming the parameter.
    let id: u64 = req.require_path_param("id")?;
    let slug = req.path_param("slug").cloned().unwrap_or_default();
    Ok(Response::ok(json!({"user_id": id, "slug": slug})))
}

handler_loop_result!(handle);
