// The notes CRUD API over PostgreSQL: notes_sqlite.rs with PostgreSQL's table
// definition (BIGSERIAL, TIMESTAMPTZ). Same `?` placeholders: the gateway
// translates them. The table name comes from the endpoint's environment
// (settings.env NOTES_TABLE, default "notes"). Deploy as one endpoint with the
// same five routes and bind a PostgreSQL service to it as "notes".
use rust_edge_gateway_sdk::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

static SCHEMA_READY: AtomicBool = AtomicBool::new(false);

/// The table, from the endpoint's environment: an identifier, never user input.
fn table() -> Result<String, HandlerError> {
    let name = std::env::var("NOTES_TABLE").unwrap_or_else(|_| "notes".into());
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(HandlerError::Internal(format!("NOTES_TABLE '{name}' is not an identifier")));
    }
    Ok(name)
}

#[derive(Deserialize)]
struct NoteInput {
    title: String,
    #[serde(default)]
    body: String,
}

fn ensure_schema(db: &DbPool, notes: &str) -> Result<(), HandlerError> {
    if !SCHEMA_READY.load(Ordering::Relaxed) {
        db.execute(
            &format!(
                "CREATE TABLE IF NOT EXISTS {notes} (
                    id BIGSERIAL PRIMARY KEY,
                    title TEXT NOT NULL,
                    body TEXT NOT NULL DEFAULT '',
                    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
                )"
            ),
            &[],
        )?;
        SCHEMA_READY.store(true, Ordering::Relaxed);
    }
    Ok(())
}

fn valid(input: NoteInput) -> Result<NoteInput, HandlerError> {
    if input.title.trim().is_empty() {
        return Err(HandlerError::ValidationError("title must not be empty".into()));
    }
    Ok(input)
}

fn handle(req: Request) -> Result<Response, HandlerError> {
    let db = DbPool::new("notes");
    let notes = table()?;
    ensure_schema(&db, &notes)?;
    let columns = "id, title, body, created_at";
    match (req.method.as_str(), req.path_param("id").is_some()) {
        ("GET", false) => {
            let limit = req.query_param_as::<u32>("limit").unwrap_or(50).min(500);
            let result = db.query(
                &format!("SELECT {columns} FROM {notes} ORDER BY id LIMIT ?"),
                &[json!(limit)],
            )?;
            Ok(Response::ok(json!({"notes": result.rows})))
        }
        ("POST", false) => {
            let note = valid(req.json::<NoteInput>()?)?;
            let result = db.query(
                &format!("INSERT INTO {notes} (title, body) VALUES (?, ?) RETURNING {columns}"),
                &[json!(note.title), json!(note.body)],
            )?;
            Ok(Response::created(result.rows[0].clone()))
        }
        ("GET", true) => {
            let id: i64 = req.require_path_param("id")?;
            let result = db.query(&format!("SELECT {columns} FROM {notes} WHERE id = ?"), &[json!(id)])?;
            match result.first() {
                Some(note) => Ok(Response::ok(note.clone())),
                None => Err(HandlerError::NotFoundMessage(format!("no note {id}"))),
            }
        }
        ("PUT", true) => {
            let id: i64 = req.require_path_param("id")?;
            let note = valid(req.json::<NoteInput>()?)?;
            let result = db.query(
                &format!("UPDATE {notes} SET title = ?, body = ? WHERE id = ? RETURNING {columns}"),
                &[json!(note.title), json!(note.body), json!(id)],
            )?;
            match result.first() {
                Some(note) => Ok(Response::ok(note.clone())),
                None => Err(HandlerError::NotFoundMessage(format!("no note {id}"))),
            }
        }
        ("DELETE", true) => {
            let id: i64 = req.require_path_param("id")?;
            match db.execute(&format!("DELETE FROM {notes} WHERE id = ?"), &[json!(id)])? {
                0 => Err(HandlerError::NotFoundMessage(format!("no note {id}"))),
                _ => Ok(Response::no_content()),
            }
        }
        (method, _) => Err(HandlerError::MethodNotAllowed(format!("{method} is not served here"))),
    }
}

handler_loop_result!(handle);
