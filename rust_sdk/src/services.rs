//! Service handles: [`DbPool`], [`RedisPool`], [`Storage`] (its objects;
//! its documents are in `documents.rs`).
//!
//! Each method is one `call` frame to the gateway (docs/ipc.md, "Service
//! calls") and blocks until its `result`. The SQL methods are generic only
//! in their parameter list, which they turn into JSON values at once and
//! hand to one non-generic function, so little is compiled per handler.

use crate::channel;
use crate::error::HandlerError;
use crate::params::Params;
use crate::protocol::BASE64;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// A database bound to the endpoint (SQLite or PostgreSQL), reached through
/// the gateway.
///
/// `pool_id` is the name the service is bound under (`pool_id` of
/// `POST /api/endpoints/{id}/services`). SQL uses `?` placeholders on every
/// backend and parameters are always bound, never spliced into the SQL.
///
/// Every method blocks until the gateway answers and works only while a
/// request is being served (from the thread serving it); otherwise it
/// returns [`HandlerError::IpcError`]. Failures: [`HandlerError::DatabaseError`]
/// (the database refused the statement), [`HandlerError::ServiceUnavailable`]
/// (no service bound under this name, the database unreachable, the call
/// timed out; 503), [`HandlerError::IpcError`] (a malformed call or a
/// gateway problem).
///
/// ```
/// use rust_edge_gateway_sdk::prelude::*;
///
/// fn handle(req: Request) -> Result<Response, HandlerError> {
///     let id: i64 = req.require_path_param("id")?;
///     let db = DbPool::new("main");
///     let found = db.query("SELECT id, body FROM notes WHERE id = ?", &[json!(id)])?;
///     match found.first() {
///         Some(row) => Ok(Response::ok(row)),
///         None => Err(HandlerError::NotFoundMessage(format!("no note {id}"))),
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DbPool {
    /// The binding name of the database service.
    pub pool_id: String,
}

/// The rows of [`DbPool::query`].
///
/// Each row is a JSON object `{column: value}`. Values: integers and floats
/// as numbers, `NUMERIC`/`DECIMAL` as strings (no precision lost),
/// timestamps and dates as ISO 8601 strings, `bytea`/BLOB as base64 strings,
/// booleans as booleans, JSON columns as JSON, NULL as null.
///
/// ```
/// use rust_edge_gateway_sdk::prelude::*;
///
/// #[derive(Deserialize)]
/// struct Note { id: i64, body: String }
///
/// let result = DbResult {
///     columns: vec!["id".into(), "body".into()],
///     rows: vec![json!({"id": 3, "body": "hi"}), json!({"id": 4, "body": "ho"})],
/// };
/// assert_eq!((result.len(), result.is_empty()), (2, false));
/// assert_eq!(result.first().unwrap()["body"], "hi");
/// let notes: Vec<Note> = result.rows_as()?;
/// assert_eq!((notes[1].id, notes[1].body.as_str()), (4, "ho"));
/// # Ok::<(), HandlerError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DbResult {
    /// The column names, in the order of the `SELECT`.
    pub columns: Vec<String>,
    /// The rows, each a JSON object keyed by column name.
    pub rows: Vec<Value>,
}

/// What [`DbPool::execute_details`] reports about a statement.
///
/// ```
/// use rust_edge_gateway_sdk::ExecResult;
///
/// let r = ExecResult { rows_affected: 1, last_insert_id: Some(7) };
/// assert_eq!(r.last_insert_id, Some(7));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ExecResult {
    /// Rows inserted, updated or deleted.
    pub rows_affected: u64,
    /// The rowid of the inserted row when the backend reports one (SQLite,
    /// for an `INSERT` that inserted). PostgreSQL reports none: use
    /// `INSERT ... RETURNING id` with [`DbPool::query`] there.
    pub last_insert_id: Option<i64>,
}

impl DbPool {
    /// The handle for the database bound as `pool_id`. Making a handle is
    /// free: nothing is checked or sent until a method is called.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::DbPool;
    /// assert_eq!(DbPool::new("main").pool_id, "main");
    /// ```
    pub fn new(pool_id: impl Into<String>) -> Self {
        DbPool {
            pool_id: pool_id.into(),
        }
    }

    /// Runs a statement that returns rows (`SELECT`, `... RETURNING`):
    /// `sql` with `?` placeholders, `params` bound to them in order.
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// fn search(db: &DbPool, word: &str) -> Result<Vec<JsonValue>, HandlerError> {
    ///     let result = db.query(
    ///         "SELECT id, body FROM notes WHERE body LIKE ? ORDER BY id LIMIT ?",
    ///         &[json!(format!("%{word}%")), json!(50)],
    ///     )?;
    ///     Ok(result.rows)
    /// }
    /// ```
    pub fn query<P: Params>(&self, sql: &str, params: P) -> Result<DbResult, HandlerError> {
        self.query_values(sql, params.into_values())
    }

    fn query_values(&self, sql: &str, params: Vec<Value>) -> Result<DbResult, HandlerError> {
        let mut data = self.call("query", sql, params)?;
        let columns = data.get("columns").and_then(Value::as_array).and_then(|c| {
            c.iter()
                .map(|name| name.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>()
        });
        if let Some(columns) = columns {
            if let Some(Value::Array(rows)) = data.get_mut("rows") {
                if rows.iter().all(Value::is_object) {
                    let rows = std::mem::take(rows);
                    return Ok(DbResult { columns, rows });
                }
            }
        }
        Err(unexpected(
            "db",
            &self.pool_id,
            "query",
            "{\"columns\": [strings], \"rows\": [objects]}",
            &data,
        ))
    }

    /// Runs a statement that changes rows (`INSERT`, `UPDATE`, `DELETE`,
    /// DDL) and returns how many rows it affected.
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// fn rename(db: &DbPool, id: i64, body: &str) -> Result<Response, HandlerError> {
    ///     match db.execute("UPDATE notes SET body = ? WHERE id = ?", &[json!(body), json!(id)])? {
    ///         0 => Err(HandlerError::NotFound),
    ///         _ => Ok(Response::no_content()),
    ///     }
    /// }
    /// ```
    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<u64, HandlerError> {
        Ok(self
            .execute_values(sql, params.into_values())?
            .rows_affected)
    }

    /// Like [`execute`](Self::execute), returning the whole answer: rows
    /// affected and the id of an inserted row when the backend reports one.
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// fn add(db: &DbPool, body: &str) -> Result<Response, HandlerError> {
    ///     let done = db.execute_details("INSERT INTO notes (body) VALUES (?)", &[json!(body)])?;
    ///     Ok(Response::created(json!({ "id": done.last_insert_id, "inserted": done.rows_affected })))
    /// }
    /// ```
    pub fn execute_details<P: Params>(
        &self,
        sql: &str,
        params: P,
    ) -> Result<ExecResult, HandlerError> {
        self.execute_values(sql, params.into_values())
    }

    fn execute_values(&self, sql: &str, params: Vec<Value>) -> Result<ExecResult, HandlerError> {
        let data = self.call("execute", sql, params)?;
        let rows_affected = data.get("rows_affected").and_then(Value::as_u64);
        let last_insert_id = match data.get("last_insert_id") {
            None | Some(Value::Null) => Some(None),
            Some(id) => id.as_i64().map(Some),
        };
        match (rows_affected, last_insert_id) {
            (Some(rows_affected), Some(last_insert_id)) => Ok(ExecResult {
                rows_affected,
                last_insert_id,
            }),
            _ => Err(unexpected(
                "db",
                &self.pool_id,
                "execute",
                "{\"rows_affected\": n, \"last_insert_id\": n or null}",
                &data,
            )),
        }
    }

    /// Runs an `INSERT` and returns the new row's id when the backend
    /// reports one (see [`ExecResult::last_insert_id`]).
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// fn add(db: &DbPool, body: &str) -> Result<Option<i64>, HandlerError> {
    ///     db.insert("INSERT INTO notes (body) VALUES (?)", &[json!(body)])
    /// }
    /// ```
    pub fn insert<P: Params>(&self, sql: &str, params: P) -> Result<Option<i64>, HandlerError> {
        Ok(self
            .execute_values(sql, params.into_values())?
            .last_insert_id)
    }

    fn call(&self, action: &str, sql: &str, params: Vec<Value>) -> Result<Value, HandlerError> {
        channel::call(
            "db",
            &self.pool_id,
            action,
            &json!({ "sql": sql, "params": params }),
        )
    }
}

impl DbResult {
    /// The number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The first row, if any.
    pub fn first(&self) -> Option<&Value> {
        self.rows.first()
    }

    /// The rows as `T`s (any `Deserialize` type, usually a struct with
    /// fields named like the columns).
    ///
    /// A row that does not fit `T` is a
    /// [`HandlerError::SerializationError`] (500) naming the row (from 0)
    /// and the column: `Serialization error: row 2, column 'body': invalid
    /// type: null, expected a string`. Mind the value conversions: a
    /// `NUMERIC` column arrives as a string, a nullable column needs an
    /// `Option` field.
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// #[derive(Debug, Deserialize)]
    /// struct Note { id: i64, body: String }
    ///
    /// let result = DbResult {
    ///     columns: vec!["id".into(), "body".into()],
    ///     rows: vec![json!({"id": 1, "body": "a"}), json!({"id": 2, "body": null})],
    /// };
    /// let err = result.rows_as::<Note>().unwrap_err();
    /// assert_eq!(err.to_string(), "Serialization error: row 1, column 'body': invalid type: null, expected a string");
    /// ```
    pub fn rows_as<T: DeserializeOwned>(&self) -> Result<Vec<T>, HandlerError> {
        self.rows
            .iter()
            .enumerate()
            .map(|(index, row)| row_as(index, row))
            .collect()
    }

    /// The first row as a `T`, `None` when there are no rows; errors as
    /// [`rows_as`](Self::rows_as).
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// #[derive(Deserialize)]
    /// struct Count { n: u64 }
    ///
    /// let result = DbResult { columns: vec!["n".into()], rows: vec![json!({"n": 12})] };
    /// assert_eq!(result.first_as::<Count>()?.map(|c| c.n), Some(12));
    /// assert!(DbResult::default().first_as::<Count>()?.is_none());
    /// # Ok::<(), HandlerError>(())
    /// ```
    pub fn first_as<T: DeserializeOwned>(&self) -> Result<Option<T>, HandlerError> {
        self.rows.first().map(|row| row_as(0, row)).transpose()
    }
}

fn row_as<T: DeserializeOwned>(index: usize, row: &Value) -> Result<T, HandlerError> {
    serde_path_to_error::deserialize(row).map_err(|e| row_error(index, e.path(), e.inner()))
}

/// "row 2, column 'body': <serde's message>" as a `SerializationError`.
#[cold]
fn row_error(
    index: usize,
    path: &serde_path_to_error::Path,
    e: &serde_json::Error,
) -> HandlerError {
    let message = match path.iter().next() {
        Some(_) => format!("row {index}, column '{path}': {e}"),
        None => format!("row {index}: {e}"),
    };
    HandlerError::SerializationError(serde::de::Error::custom(message))
}

/// A Redis server bound to the endpoint, reached through the gateway.
///
/// `pool_id` is the binding name. Keys and values are strings. Failures:
/// [`HandlerError::RedisError`] (Redis answered with an error, e.g.
/// `WRONGTYPE`), [`HandlerError::ServiceUnavailable`] (not bound, Redis
/// unreachable, timed out; 503), [`HandlerError::IpcError`] (a malformed
/// call, e.g. `setex` with 0 seconds, or a gateway problem). Every method
/// blocks and works only while a request is being served, as for
/// [`DbPool`].
///
/// ```
/// use rust_edge_gateway_sdk::prelude::*;
///
/// fn handle(req: Request) -> Result<Response, HandlerError> {
///     let cache = RedisPool::new("cache");
///     let key = format!("page:{}", req.path);
///     if let Some(hit) = cache.get(&key)? {
///         return Ok(Response::html(200, hit));
///     }
///     let page = format!("<h1>{}</h1>", req.path);
///     cache.setex(&key, &page, 60)?;
///     Ok(Response::html(200, page))
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedisPool {
    /// The binding name of the Redis service.
    pub pool_id: String,
}

impl RedisPool {
    /// The handle for the Redis service bound as `pool_id` (nothing is
    /// checked until a method is called).
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::RedisPool;
    /// assert_eq!(RedisPool::new("cache").pool_id, "cache");
    /// ```
    pub fn new(pool_id: impl Into<String>) -> Self {
        RedisPool {
            pool_id: pool_id.into(),
        }
    }

    /// `GET key`: the value, `None` when the key does not exist. (A value
    /// that is not UTF-8 arrives with U+FFFD replacement characters.)
    pub fn get(&self, key: &str) -> Result<Option<String>, HandlerError> {
        match self.call("get", json!({ "key": key }))? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(self.unexpected("get", "a string or null", &other)),
        }
    }

    /// `SET key value`.
    pub fn set(&self, key: &str, value: &str) -> Result<(), HandlerError> {
        self.call("set", json!({ "key": key, "value": value }))
            .map(drop)
    }

    /// `SETEX`: sets `key` to `value`, expiring after `seconds` (at least
    /// 1; 0 is refused by the gateway as a malformed call). The value comes
    /// before the seconds, as in the original gateway's SDK;
    /// [`set_with_ttl`](Self::set_with_ttl) takes them in Redis's order.
    pub fn setex(&self, key: &str, value: &str, seconds: u64) -> Result<(), HandlerError> {
        self.set_with_ttl(key, seconds, value)
    }

    /// `SETEX key seconds value`: set with an expiry (`seconds` must be at
    /// least 1; 0 is refused by the gateway as a malformed call).
    pub fn set_with_ttl(&self, key: &str, seconds: u64, value: &str) -> Result<(), HandlerError> {
        self.call(
            "setex",
            json!({ "key": key, "seconds": seconds, "value": value }),
        )
        .map(drop)
    }

    /// `DEL key`: the number of keys deleted (0 or 1).
    pub fn del(&self, key: &str) -> Result<u64, HandlerError> {
        self.del_many(&[key])
    }

    /// `DEL key...`: the number of keys deleted. An empty `keys` is refused
    /// by the gateway as a malformed call.
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// fn forget(cache: &RedisPool, user: u64) -> Result<u64, HandlerError> {
    ///     cache.del_many(&[&format!("user:{user}"), &format!("session:{user}")])
    /// }
    /// ```
    pub fn del_many(&self, keys: &[&str]) -> Result<u64, HandlerError> {
        match self.call("del", json!({ "keys": keys }))? {
            Value::Number(n) if n.is_u64() => Ok(n.as_u64().unwrap_or_default()),
            other => Err(self.unexpected("del", "a count", &other)),
        }
    }

    /// `INCR key`: the value after the increment (a missing key counts as
    /// 0; a value that is not an integer is a [`HandlerError::RedisError`]).
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// fn hit(req: Request) -> Result<Response, HandlerError> {
    ///     let redis = RedisPool::new("cache");
    ///     let n = redis.incr(&format!("hits:{}", req.path))?;
    ///     if n == 1 {
    ///         redis.expire(&format!("hits:{}", req.path), 3600)?;
    ///     }
    ///     Ok(Response::ok(json!({ "hits": n })))
    /// }
    /// ```
    pub fn incr(&self, key: &str) -> Result<i64, HandlerError> {
        match self.call("incr", json!({ "key": key }))? {
            Value::Number(n) if n.is_i64() => Ok(n.as_i64().unwrap_or_default()),
            other => Err(self.unexpected("incr", "an integer", &other)),
        }
    }

    /// `EXPIRE key seconds`: `true` when the key exists (and now expires).
    pub fn expire(&self, key: &str, seconds: u64) -> Result<bool, HandlerError> {
        let data = self.call("expire", json!({ "key": key, "seconds": seconds }))?;
        self.boolean("expire", data)
    }

    /// `EXISTS key`.
    pub fn exists(&self, key: &str) -> Result<bool, HandlerError> {
        let data = self.call("exists", json!({ "key": key }))?;
        self.boolean("exists", data)
    }

    /// Any other command, as its words (`["HSET", "user:1", "name", "Ann"]`).
    /// The reply as JSON: simple and bulk strings as strings, integers as
    /// numbers, arrays as lists, nil as null. The gateway refuses commands
    /// that would block or change the connection other calls share
    /// (`BLPOP`, `SUBSCRIBE`, `MULTI`, `SELECT`, ...) with an
    /// [`HandlerError::IpcError`].
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// fn profile(redis: &RedisPool, id: u64) -> Result<JsonValue, HandlerError> {
    ///     let key = format!("user:{id}");
    ///     redis.command(&["HSET", &key, "name", "Ann"])?;
    ///     redis.command(&["HGETALL", &key]) // ["name", "Ann"]
    /// }
    /// ```
    pub fn command(&self, args: &[&str]) -> Result<Value, HandlerError> {
        self.call("command", json!({ "args": args }))
    }

    fn call(&self, action: &str, args: Value) -> Result<Value, HandlerError> {
        channel::call("redis", &self.pool_id, action, &args)
    }

    fn boolean(&self, action: &str, data: Value) -> Result<bool, HandlerError> {
        match data {
            Value::Bool(b) => Ok(b),
            other => Err(self.unexpected(action, "a boolean", &other)),
        }
    }

    fn unexpected(&self, action: &str, expected: &str, got: &Value) -> HandlerError {
        unexpected("redis", &self.pool_id, action, expected, got)
    }
}

/// Storage bound to the endpoint, reached through the gateway, in two
/// layers.
///
/// **Documents** (the original gateway's `Storage`): JSON records by id
/// with [`get`](Storage::get), [`list`](Storage::list),
/// [`create`](Storage::create), [`update`](Storage::update) and
/// [`delete`](Storage::delete), kept in a table of a bound SQL service
/// ([`Storage::database`]) or as one JSON object per id on a storage service
/// ([`Storage::object_storage`], [`Storage::file_storage`]). See the
/// `documents` methods below.
///
/// **Objects**: bytes with a content type under a key, on a storage service:
/// [`put_object`](Storage::put_object), [`get_object`](Storage::get_object),
/// [`delete_object`](Storage::delete_object),
/// [`list_objects`](Storage::list_objects). Keys are `/`-separated paths
/// (`avatars/7.png`). Failures: [`HandlerError::StorageError`] (the store
/// failed, or refused the key: empty, starting with `/`, with `..` or
/// control characters), [`HandlerError::ServiceUnavailable`] (not bound,
/// unreachable, timed out; 503), [`HandlerError::IpcError`] (a malformed
/// call or a gateway problem). A `put_object` sends the bytes
/// inside one frame as base64, so an object must stay under about 12 MiB
/// (a frame is at most 16 MiB); a larger one fails with `IpcError` before
/// anything is sent. Every method blocks and works only while a request is
/// being served, as for [`DbPool`].
///
/// `pool_id` is the binding name.
///
/// ```
/// use rust_edge_gateway_sdk::prelude::*;
///
/// fn handle(req: Request) -> Result<Response, HandlerError> {
///     let files = Storage::new("files");
///     let name: String = req.require_path_param("name")?;
///     let key = format!("uploads/{name}");
///     if req.is_method("PUT") {
///         let content_type = req.content_type().map_or("application/octet-stream", String::as_str);
///         files.put_object(&key, &req.body_bytes(), content_type)?;
///         return Ok(Response::no_content());
///     }
///     match files.get_object(&key)? {
///         Some(object) => Ok(Response::binary(200, object.data, object.content_type)),
///         None => Err(HandlerError::NotFound),
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Storage {
    /// Where the documents live: a table of an SQL service, or objects on a
    /// storage service.
    pub storage_type: StorageType,
    /// The binding name of the service.
    pub pool_id: String,
    /// The key prefix of the documents' objects (object and file storage).
    pub base_path: Option<String>,
    /// The table of the documents (database storage).
    pub table_name: Option<String>,
}

/// Where a [`Storage`]'s documents live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageType {
    /// A table of a bound SQL service (SQLite or PostgreSQL).
    Database,
    /// One JSON object per document on a bound storage service.
    ObjectStorage,
    /// The same as [`ObjectStorage`](StorageType::ObjectStorage): one JSON
    /// object per document on a bound storage service (whose backend may be
    /// a directory or S3).
    FileStorage,
}

/// An object read with [`Storage::get_object`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredObject {
    /// The object's bytes.
    pub data: Vec<u8>,
    /// The content type it was stored with.
    pub content_type: String,
}

/// One entry of [`Storage::list_objects`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ObjectInfo {
    /// The object's key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

impl Storage {
    /// The handle for the storage service bound as `pool_id`, for objects
    /// (and for documents at the top level of the store, as
    /// [`object_storage`](Self::object_storage) with an empty base path).
    /// Nothing is checked until a method is called.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Storage;
    /// assert_eq!(Storage::new("files").pool_id, "files");
    /// ```
    pub fn new(pool_id: impl Into<String>) -> Self {
        Storage {
            storage_type: StorageType::ObjectStorage,
            pool_id: pool_id.into(),
            base_path: None,
            table_name: None,
        }
    }

    /// Stores `data` under `key` with `content_type` (the gateway uses
    /// `application/octet-stream` when it is empty), replacing what was
    /// there.
    pub fn put_object(
        &self,
        key: &str,
        data: &[u8],
        content_type: &str,
    ) -> Result<(), HandlerError> {
        let encoded = base64::encode_config(data, BASE64);
        self.call(
            "put",
            json!({ "key": key, "data_base64": encoded, "content_type": content_type }),
        )
        .map(drop)
    }

    /// The object under `key`, `None` when there is none.
    pub fn get_object(&self, key: &str) -> Result<Option<StoredObject>, HandlerError> {
        let data = self.call("get", json!({ "key": key }))?;
        if data.is_null() {
            return Ok(None);
        }
        let bytes = data
            .get("data_base64")
            .and_then(Value::as_str)
            .and_then(|text| base64::decode_config(text, BASE64).ok());
        let content_type = data.get("content_type").and_then(Value::as_str);
        match (bytes, content_type) {
            (Some(data), Some(content_type)) => Ok(Some(StoredObject {
                data,
                content_type: content_type.to_owned(),
            })),
            _ => Err(self.unexpected(
                "get",
                "{\"data_base64\": base64, \"content_type\": string} or null",
                &data,
            )),
        }
    }

    /// Deletes the object under `key`: `true` when it existed.
    pub fn delete_object(&self, key: &str) -> Result<bool, HandlerError> {
        match self.call("delete", json!({ "key": key }))? {
            Value::Bool(b) => Ok(b),
            other => Err(self.unexpected("delete", "a boolean", &other)),
        }
    }

    /// The objects whose keys start with `prefix` (`""` for all), sorted by
    /// key.
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// fn usage(files: &Storage, user: u64) -> Result<u64, HandlerError> {
    ///     let objects = files.list_objects(&format!("users/{user}/"))?;
    ///     Ok(objects.iter().map(|o| o.size).sum())
    /// }
    /// ```
    pub fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>, HandlerError> {
        let data = self.call("list", json!({ "prefix": prefix }))?;
        let entries = data.as_array().and_then(|entries| {
            entries
                .iter()
                .map(|entry| {
                    Some(ObjectInfo {
                        key: entry.get("key")?.as_str()?.to_owned(),
                        size: entry.get("size")?.as_u64()?,
                    })
                })
                .collect::<Option<Vec<ObjectInfo>>>()
        });
        entries.ok_or_else(|| self.unexpected("list", "[{\"key\", \"size\"}]", &data))
    }

    fn call(&self, action: &str, args: Value) -> Result<Value, HandlerError> {
        channel::call("storage", &self.pool_id, action, &args)
    }

    fn unexpected(&self, action: &str, expected: &str, got: &Value) -> HandlerError {
        unexpected("storage", &self.pool_id, action, expected, got)
    }
}

/// An `IpcError` for result data of the wrong shape (a gateway bug).
#[cold]
fn unexpected(
    service: &str,
    pool: &str,
    action: &str,
    expected: &str,
    got: &Value,
) -> HandlerError {
    let mut got = got.to_string();
    if got.len() > 200 {
        let cut = (0..=200)
            .rev()
            .find(|&i| got.is_char_boundary(i))
            .unwrap_or(0);
        got.truncate(cut);
        got.push_str("...");
    }
    HandlerError::IpcError(format!(
        "{service} {action} on '{pool}': unexpected result data {got} (expected {expected})"
    ))
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod tests;
