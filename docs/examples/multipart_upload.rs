// POST /upload — a multipart/form-data upload with a text field and a file.
use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Result<Response, HandlerError> {
    let form = req.multipart()?;
    let title = form.require_field("title")?;
    let file = form.require_file("file")?;
    // A checksum shows the bytes arrived intact, binary or not.
    let checksum: u64 = file.data.iter().map(|b| *b as u64).sum();
    Ok(Response::created(json!({
        "title": title,
        "filename": file.filename,
        "content_type": file.content_type,
        "size": file.data.len(),
        "checksum": checksum,
    })))
}

handler_loop_result!(handle);
