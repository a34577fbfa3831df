//! [`Storage`]'s documents: JSON records by id, the original gateway's
//! `Storage` API, kept in a table of an SQL service or as JSON objects on a
//! storage service. Every operation is made of the ordinary service calls
//! of [`DbPool`] and [`Storage`]'s object methods.

use crate::error::HandlerError;
use crate::services::{DbPool, Storage, StorageType};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest table name [`Storage::database`] takes: PostgreSQL's 63
/// bytes for an identifier, less the `_status` of the table's index.
const MAX_TABLE_NAME: usize = 56;

impl Storage {
    /// Documents in the table `table_name` of the SQL service (SQLite or
    /// PostgreSQL) bound as `pool_id`.
    ///
    /// The table is created on first use (when a statement on it fails, the
    /// SDK creates it if it does not exist and tries once more) with this
    /// layout, the same on both databases:
    ///
    /// ```sql
    /// CREATE TABLE IF NOT EXISTS <table_name> (
    ///     id TEXT PRIMARY KEY,          -- the document's id
    ///     data TEXT NOT NULL,           -- the document, as JSON text
    ///     status TEXT,                  -- the document's "status" when it is a string
    ///     created_at TEXT NOT NULL,     -- UTC, ISO 8601: 2026-01-31T12:00:00.000Z
    ///     updated_at TEXT NOT NULL
    /// );
    /// CREATE INDEX IF NOT EXISTS <table_name>_status ON <table_name> (status);
    /// ```
    ///
    /// `table_name` is spliced into the SQL, so it must be an identifier:
    /// ASCII letters, digits and `_`, not starting with a digit, at most 56
    /// characters; any other name fails every call with a
    /// [`HandlerError::StorageError`].
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// fn handle(req: Request) -> Result<Response, HandlerError> {
    ///     let pets = Storage::database("main", "pets");
    ///     let id: String = req.require_path_param("id")?;
    ///     match pets.get(&id)? {
    ///         Some(pet) => Ok(Response::ok(pet)),
    ///         None => Err(HandlerError::NotFoundMessage(format!("no pet {id}"))),
    ///     }
    /// }
    /// ```
    pub fn database(pool_id: &str, table_name: &str) -> Self {
        Storage {
            storage_type: StorageType::Database,
            pool_id: pool_id.to_owned(),
            base_path: None,
            table_name: Some(table_name.to_owned()),
        }
    }

    /// Documents as one JSON object per id, `<base_path>/<id>.json` (content
    /// type `application/json`), on the storage service bound as `pool_id`.
    /// An empty `base_path` keeps them at the top of the store.
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// fn archive(order: &JsonValue) -> Result<(), HandlerError> {
    ///     let id = order["id"].as_str().unwrap_or_default();
    ///     Storage::object_storage("files", "orders/2026").create(id, order)
    /// }
    /// ```
    pub fn object_storage(pool_id: &str, base_path: &str) -> Self {
        Storage {
            storage_type: StorageType::ObjectStorage,
            pool_id: pool_id.to_owned(),
            base_path: Some(base_path.to_owned()),
            table_name: None,
        }
    }

    /// The same as [`object_storage`](Self::object_storage): the gateway's
    /// storage service keeps objects as files (or on S3), and the original
    /// gateway's FTP/SFTP file storage maps to it.
    pub fn file_storage(pool_id: &str, base_path: &str) -> Self {
        Storage {
            storage_type: StorageType::FileStorage,
            ..Storage::object_storage(pool_id, base_path)
        }
    }

    /// The document `id`, `None` when there is none.
    pub fn get(&self, id: &str) -> Result<Option<Value>, HandlerError> {
        match self.storage_type {
            StorageType::Database => {
                let sql = format!("SELECT data FROM {} WHERE id = ?", self.table()?);
                let rows = self.with_table(|db| db.query(&sql, [id]))?;
                rows.first()
                    .map(|row| self.parse_text(id, &row["data"]))
                    .transpose()
            }
            StorageType::ObjectStorage | StorageType::FileStorage => {
                match self.get_object(&self.object_key(id)?)? {
                    Some(object) => self.parse_bytes(id, &object.data).map(Some),
                    None => Ok(None),
                }
            }
        }
    }

    /// The documents, or with `Some(status)` only those whose `status`
    /// field is that string. A database lists them in the order they were
    /// created, object and file storage by id.
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// fn handle(req: Request) -> Result<Response, HandlerError> {
    ///     let status = req.query_param("status").map(String::as_str);
    ///     Ok(Response::ok(Storage::database("main", "pets").list(status)?))
    /// }
    /// ```
    pub fn list(&self, filter: Option<&str>) -> Result<Vec<Value>, HandlerError> {
        match self.storage_type {
            StorageType::Database => {
                let table = self.table()?;
                let rows = match filter {
                    Some(status) => {
                        let sql = format!(
                            "SELECT id, data FROM {table} WHERE status = ? ORDER BY created_at, id"
                        );
                        self.with_table(|db| db.query(&sql, [status]))?
                    }
                    None => {
                        let sql = format!("SELECT id, data FROM {table} ORDER BY created_at, id");
                        self.with_table(|db| db.query(&sql, &[]))?
                    }
                };
                rows.rows
                    .iter()
                    .map(|row| {
                        self.parse_text(row["id"].as_str().unwrap_or_default(), &row["data"])
                    })
                    .collect()
            }
            StorageType::ObjectStorage | StorageType::FileStorage => {
                let prefix = self.prefix();
                let mut documents = Vec::new();
                for object in self.list_objects(&prefix)? {
                    let Some(id) = object.key[prefix.len()..].strip_suffix(".json") else {
                        continue;
                    };
                    if id.is_empty() || id.contains('/') {
                        continue;
                    }
                    // Deleted since the listing: not listed.
                    let Some(stored) = self.get_object(&object.key)? else {
                        continue;
                    };
                    let document = self.parse_bytes(id, &stored.data)?;
                    if filter.is_none_or(|status| status_of(&document) == Some(status)) {
                        documents.push(document);
                    }
                }
                Ok(documents)
            }
        }
    }

    /// Stores `data` as the new document `id`. An id that exists already is
    /// a [`HandlerError::Conflict`] (409) and changes nothing.
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// fn handle(req: Request) -> Result<Response, HandlerError> {
    ///     let pet: JsonValue = req.json()?;
    ///     let id = pet["id"].as_str().ok_or(HandlerError::ValidationError("id is missing".into()))?;
    ///     Storage::database("main", "pets").create(id, &pet)?;
    ///     Ok(Response::created(pet))
    /// }
    /// ```
    pub fn create(&self, id: &str, data: &Value) -> Result<(), HandlerError> {
        match self.storage_type {
            StorageType::Database => {
                let sql = format!(
                    "INSERT INTO {} (id, data, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?) \
                     ON CONFLICT (id) DO NOTHING",
                    self.table()?
                );
                let now = utc_now();
                let params = [
                    json!(id),
                    json!(data.to_string()),
                    json!(status_of(data)),
                    json!(now),
                    json!(now),
                ];
                match self.with_table(|db| db.execute(&sql, &params))? {
                    0 => Err(self.exists(id)),
                    _ => Ok(()),
                }
            }
            StorageType::ObjectStorage | StorageType::FileStorage => {
                let key = self.object_key(id)?;
                if self.object_exists(&key)? {
                    return Err(self.exists(id));
                }
                self.put_document(&key, data)
            }
        }
    }

    /// Replaces the document `id` with `data`. An id with no document is a
    /// [`HandlerError::NotFoundMessage`] (404).
    pub fn update(&self, id: &str, data: &Value) -> Result<(), HandlerError> {
        match self.storage_type {
            StorageType::Database => {
                let sql = format!(
                    "UPDATE {} SET data = ?, status = ?, updated_at = ? WHERE id = ?",
                    self.table()?
                );
                let params = [
                    json!(data.to_string()),
                    json!(status_of(data)),
                    json!(utc_now()),
                    json!(id),
                ];
                match self.with_table(|db| db.execute(&sql, &params))? {
                    0 => Err(self.missing(id)),
                    _ => Ok(()),
                }
            }
            StorageType::ObjectStorage | StorageType::FileStorage => {
                let key = self.object_key(id)?;
                if !self.object_exists(&key)? {
                    return Err(self.missing(id));
                }
                self.put_document(&key, data)
            }
        }
    }

    /// Deletes the document `id`: `true` when it existed.
    pub fn delete(&self, id: &str) -> Result<bool, HandlerError> {
        match self.storage_type {
            StorageType::Database => {
                let sql = format!("DELETE FROM {} WHERE id = ?", self.table()?);
                Ok(self.with_table(|db| db.execute(&sql, [id]))? > 0)
            }
            StorageType::ObjectStorage | StorageType::FileStorage => {
                self.delete_object(&self.object_key(id)?)
            }
        }
    }

    /// The table name, checked: it is spliced into SQL.
    fn table(&self) -> Result<&str, HandlerError> {
        let name = self.table_name.as_deref().unwrap_or_default();
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && name.len() <= MAX_TABLE_NAME;
        if valid {
            Ok(name)
        } else {
            Err(HandlerError::StorageError(format!(
                "table name '{name}' is not usable: letters, digits and '_', \
                 not starting with a digit, at most {MAX_TABLE_NAME} characters"
            )))
        }
    }

    /// Runs `op`; when the database refuses it (the table may not exist
    /// yet), creates the table if it does not exist and runs `op` once more.
    fn with_table<T>(
        &self,
        op: impl Fn(&DbPool) -> Result<T, HandlerError>,
    ) -> Result<T, HandlerError> {
        let db = DbPool::new(self.pool_id.as_str());
        match op(&db) {
            Err(HandlerError::DatabaseError(_)) => {
                let table = self.table()?;
                db.execute(
                    &format!(
                        "CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, data TEXT NOT NULL, \
                         status TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)"
                    ),
                    &[],
                )?;
                db.execute(
                    &format!("CREATE INDEX IF NOT EXISTS {table}_status ON {table} (status)"),
                    &[],
                )?;
                op(&db)
            }
            other => other,
        }
    }

    /// `<base_path>/` (or nothing for an empty base path).
    fn prefix(&self) -> String {
        match self.base_path.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => String::new(),
            Some(base) => format!("{base}/"),
        }
    }

    /// The object key of document `id`; an id that would name another
    /// place is a 400.
    fn object_key(&self, id: &str) -> Result<String, HandlerError> {
        if id.is_empty()
            || id.contains('/')
            || id == "."
            || id == ".."
            || id.chars().any(char::is_control)
        {
            return Err(HandlerError::BadRequest(format!(
                "document id '{}' is not usable: it must be non-empty, without '/' or control characters",
                id.escape_default()
            )));
        }
        Ok(format!("{}{id}.json", self.prefix()))
    }

    fn object_exists(&self, key: &str) -> Result<bool, HandlerError> {
        Ok(self.list_objects(key)?.iter().any(|o| o.key == key))
    }

    fn put_document(&self, key: &str, data: &Value) -> Result<(), HandlerError> {
        self.put_object(key, data.to_string().as_bytes(), "application/json")
    }

    fn parse_text(&self, id: &str, text: &Value) -> Result<Value, HandlerError> {
        self.parse_bytes(id, text.as_str().unwrap_or_default().as_bytes())
    }

    fn parse_bytes(&self, id: &str, bytes: &[u8]) -> Result<Value, HandlerError> {
        serde_json::from_slice(bytes).map_err(|e| {
            HandlerError::StorageError(format!(
                "document '{id}' in '{}' is not JSON: {e}",
                self.pool_id
            ))
        })
    }

    fn exists(&self, id: &str) -> HandlerError {
        HandlerError::Conflict(format!("document '{id}' exists already"))
    }

    fn missing(&self, id: &str) -> HandlerError {
        HandlerError::NotFoundMessage(format!("no document '{id}'"))
    }
}

/// The document's `status` when it is a string.
fn status_of(document: &Value) -> Option<&str> {
    document.get("status").and_then(Value::as_str)
}

/// Now, UTC, as `2026-01-31T12:00:00.000Z` (sorts as text in time order).
fn utc_now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    iso_utc(since.as_secs(), since.subsec_millis())
}

/// Seconds since 1970 as an ISO 8601 UTC time (proleptic Gregorian).
fn iso_utc(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days since 1970-01-01 to a civil date, counting in 400-year eras
    // that start on 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_utc_formats_known_instants() {
        assert_eq!(iso_utc(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_utc(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(iso_utc(1_798_761_599, 999), "2026-12-31T23:59:59.999Z");
    }

    #[test]
    fn table_names_are_identifiers() {
        for good in ["pets", "_x", "Pets_2"] {
            assert!(Storage::database("main", good).table().is_ok(), "{good}");
        }
        for bad in ["", "2pets", "pets; DROP TABLE x", "p-e", &"a".repeat(57)] {
            let err = Storage::database("main", bad).table().unwrap_err();
            assert!(err.to_string().contains("is not usable"), "{bad}: {err}");
        }
    }

    #[test]
    fn object_keys_live_under_the_base_path() {
        let docs = Storage::object_storage("files", "pets/");
        assert_eq!(docs.object_key("7").unwrap(), "pets/7.json");
        assert_eq!(
            Storage::file_storage("files", "").object_key("7").unwrap(),
            "7.json"
        );
        assert_eq!(Storage::new("files").object_key("a").unwrap(), "a.json");
        for bad in ["", "a/b", "..", "a\n"] {
            assert_eq!(
                docs.object_key(bad).unwrap_err().status_code(),
                400,
                "{bad:?}"
            );
        }
    }
}
