// A file store over object storage. Bind a storage service as "files" and deploy
// under four endpoints:
//   PUT /files/{name}  (the raw body is the file; Content-Type is kept)
//   GET /files/{name}  GET /files  DELETE /files/{name}
use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Result<Response, HandlerError> {
    let files = Storage::new("files");
    let name = req.path_param("name").cloned();
    match (req.method.as_str(), name) {
        ("PUT", Some(name)) => {
            let data = req.body_bytes();
            let content_type = req
                .content_type()
                .map(|value| value.to_string())
                .unwrap_or_else(|| "application/octet-stream".to_string());
            files.put_object(&name, &data, &content_type)?;
            Ok(Response::created(json!({"name": name, "size": data.len()})))
        }
        ("GET", Some(name)) => match files.get_object(&name)? {
            Some(object) => Ok(Response::binary(200, object.data, &object.content_type)),
            None => Err(HandlerError::NotFoundMessage(format!("no file '{name}'"))),
        },
        ("DELETE", Some(name)) => match files.delete_object(&name)? {
            true => Ok(Response::no_content()),
            false => Err(HandlerError::NotFoundMessage(format!("no file '{name}'"))),
        },
        ("GET", None) => {
            let prefix = req.query_param("prefix").cloned().unwrap_or_default();
            let listing: Vec<JsonValue> = files
                .list_objects(&prefix)?
                .into_iter()
                .map(|o| json!({"name": o.key, "size": o.size}))
                .collect();
            Ok(Response::ok(json!({"files": listing})))
        }
        (method, _) => Err(HandlerError::MethodNotAllowed(format!("{method} is not served here"))),
    }
}

handler_loop_result!(handle);
