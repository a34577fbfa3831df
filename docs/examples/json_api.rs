// POST /users — a JSON API: a typed body, validation errors, 201 with the new record.
use rust_edge_gateway_sdk::prelude::*;

#[derive(Deserialize)]
struct CreateUser {
    name: String,
    email: String,
    age: Option<u32>,
}

#[derive(Serialize)]
struct User {
    id: String,
    name: String,
    email: String,
    age: Option<u32>,
}

fn handle(req: Request) -> Result<Response, HandlerError> {
    // A missing or malformed body, or a wrong field type, is a 400 saying why.
    let input: CreateUser = req.json()?;
    if input.name.trim().is_empty() {
        return Err(HandlerError::ValidationError("name must not be empty".into()));
    }
    if !input.email.contains('@') {
        return Err(HandlerError::ValidationError(format!(
            "email '{}' is not an email address",
            input.email
        )));
    }
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        name: input.name,
        email: input.email,
        age: input.age,
    };
    Ok(Response::created(user))
}

handler_loop_result!(handle);
