// The pet store: list, create, get and delete pets over SQLite. Bind an SQLite
// service as "pets" and deploy under four endpoints:
//   GET /pets?limit=   POST /pets   GET /pets/{petId}   DELETE /pets/{petId}
use rust_edge_gateway_sdk::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

static SCHEMA_READY: AtomicBool = AtomicBool::new(false);

#[derive(Deserialize)]
struct NewPet {
    name: String,
    tag: Option<String>,
}

fn handle(req: Request) -> Result<Response, HandlerError> {
    let db = DbPool::new("pets");
    if !SCHEMA_READY.load(Ordering::Relaxed) {
        db.execute(
            "CREATE TABLE IF NOT EXISTS pets (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, tag TEXT)",
            &[],
        )?;
        SCHEMA_READY.store(true, Ordering::Relaxed);
    }
    match (req.method.as_str(), req.path_param("petId").is_some()) {
        ("GET", false) => {
            let limit = match req.query_param("limit") {
                None => 20,
                Some(_) => req.require_query_param::<u32>("limit")?.min(100),
            };
            let pets = db.query("SELECT id, name, tag FROM pets ORDER BY id LIMIT ?", &[json!(limit)])?;
            Ok(Response::ok(pets.rows))
        }
        ("POST", false) => {
            let pet: NewPet = req.json()?;
            if pet.name.trim().is_empty() {
                return Err(HandlerError::ValidationError("name must not be empty".into()));
            }
            let created = db.query(
                "INSERT INTO pets (name, tag) VALUES (?, ?) RETURNING id, name, tag",
                &[json!(pet.name), json!(pet.tag)],
            )?;
            Ok(Response::created(created.rows[0].clone()))
        }
        ("GET", true) => {
            let id: i64 = req.require_path_param("petId")?;
            let found = db.query("SELECT id, name, tag FROM pets WHERE id = ?", &[json!(id)])?;
            found
                .first()
                .map(|pet| Response::ok(pet.clone()))
                .ok_or_else(|| HandlerError::NotFoundMessage(format!("no pet {id}")))
        }
        ("DELETE", true) => {
            let id: i64 = req.require_path_param("petId")?;
            match db.execute("DELETE FROM pets WHERE id = ?", &[json!(id)])? {
                0 => Err(HandlerError::NotFoundMessage(format!("no pet {id}"))),
                _ => Ok(Response::no_content()),
            }
        }
        (method, _) => Err(HandlerError::MethodNotAllowed(format!("{method} is not served here"))),
    }
}

handler_loop_result!(handle);
