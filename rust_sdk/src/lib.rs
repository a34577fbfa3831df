//! SDK for edgegw handlers.
//!
//! A handler is a small Rust program: it takes a [`Request`], returns a
//! [`Response`], and ends with one of the loop macros, which generate `main`
//! and speak the gateway's worker protocol (length-prefixed JSON frames over
//! stdin/stdout).
//!
//! ```no_run
//! use rust_edge_gateway_sdk::prelude::*;
//!
//! fn handle(req: Request) -> Response {
//!     Response::ok(json!({"message": "Hello, World!", "path": req.path, "method": req.method}))
//! }
//!
//! handler_loop!(handle);
//! ```
//!
//! A handler that uses `?` returns `Result<Response, HandlerError>`:
//!
//! ```no_run
//! use rust_edge_gateway_sdk::prelude::*;
//!
//! #[derive(Deserialize)]
//! struct NewItem { name: String }
//!
//! fn handle(req: Request) -> Result<Response, HandlerError> {
//!     let id: u64 = req.require_path_param("id")?;
//!     let item: NewItem = req.json()?;
//!     if item.name.is_empty() {
//!         return Err(HandlerError::ValidationError("name is empty".into()));
//!     }
//!     Ok(Response::created(json!({"id": id, "name": item.name})))
//! }
//!
//! handler_loop_result!(handle);
//! ```
//!
//! **Standard output is the log.** The worker loop moves the frame channel
//! off fd 1 before calling any handler, so `println!` and `eprintln!` both go
//! to the endpoint's log and never corrupt the protocol.
//!
//! Also here: binary bodies both ways ([`Request::body_bytes`],
//! [`Response::binary`]), `multipart/form-data` uploads
//! ([`Request::multipart`]), several `Set-Cookie` headers
//! ([`Response::with_cookie`]), and, with the cargo feature `async`, async
//! handlers ([`handler_loop_async!`], [`handler_loop_async_result!`]) on one
//! Tokio current-thread runtime per worker.
//!
//! Databases, Redis and object storage are reached through the gateway with
//! the service handles [`DbPool`], [`RedisPool`] and [`Storage`], named by
//! the binding name the endpoint gave the service:
//!
//! ```no_run
//! use rust_edge_gateway_sdk::prelude::*;
//!
//! fn handle(req: Request) -> Result<Response, HandlerError> {
//!     let id: i64 = req.require_path_param("id")?;
//!     let notes = DbPool::new("main").query("SELECT * FROM notes WHERE id = ?", &[json!(id)])?;
//!     Ok(Response::ok(json!({ "note": notes.first() })))
//! }
//!
//! handler_loop_result!(handle);
//! ```
//!
//! The guide with more examples is `docs/sdk/` in the gateway's repository.

#![warn(missing_docs)]

mod channel;
#[cfg(feature = "async")]
mod concurrent;
mod documents;
mod env;
mod error;
pub mod frame;
mod macros;
pub mod multipart;
pub mod params;
mod protocol;
mod request;
mod response;
mod runtime;
mod services;
#[cfg(feature = "async")]
mod services_async;

#[cfg(feature = "async")]
pub use concurrent::ASYNC_CONCURRENCY;
pub use env::EnvVars;
pub use error::HandlerError;
pub use multipart::{MultipartData, MultipartFile};
pub use params::{Params, ToParam};
pub use protocol::{PROTOCOL_VERSION, SDK_VERSION};
pub use request::Request;
pub use response::Response;
pub use runtime::{run, run_result, serve};
#[cfg(feature = "async")]
pub use runtime::{run_async, run_async_result, serve_async};
pub use services::{
    DbPool, DbResult, ExecResult, ObjectInfo, RedisPool, Storage, StorageType, StoredObject,
};
#[cfg(feature = "async")]
pub use services_async::Awaited;

/// `tokio` (feature `async`), re-exported so a handler can name it as
/// `rust_edge_gateway_sdk::tokio` without depending on it. The SDK enables
/// Tokio's `rt`, `macros`, `time` and `sync` features.
#[cfg(feature = "async")]
#[doc(no_inline)]
pub use tokio;

/// `serde`, re-exported for handlers that want to name it through the SDK.
#[doc(no_inline)]
pub use serde;
/// `serde_json`, re-exported for handlers that want to name it through the SDK.
#[doc(no_inline)]
pub use serde_json;

/// Everything a handler usually needs: `use rust_edge_gateway_sdk::prelude::*;`
///
/// [`Request`], [`Response`], [`HandlerError`], [`MultipartData`],
/// [`MultipartFile`], the service handles [`DbPool`], [`RedisPool`] and
/// [`Storage`] with their result types ([`DbResult`], [`ExecResult`],
/// [`StoredObject`], [`ObjectInfo`], [`StorageType`]), [`EnvVars`], SQL
/// parameter lists ([`Params`], [`ToParam`], [`params!`]), the
/// [`json!`](serde_json::json) macro,
/// [`JsonValue`](crate::prelude::JsonValue), serde's `Serialize` and
/// `Deserialize` (traits and derives), `HashMap`, and the four loop macros
/// (the async ones need the `async` feature).
///
/// ```
/// use rust_edge_gateway_sdk::prelude::*;
///
/// let mut counts: HashMap<String, JsonValue> = HashMap::new();
/// counts.insert("n".into(), json!(1));
/// let resp: Response = Response::ok(&counts);
/// assert_eq!(resp.body.as_deref(), Some(r#"{"n":1}"#));
/// ```
pub mod prelude {
    pub use crate::{handler_loop, handler_loop_result};
    pub use crate::{handler_loop_async, handler_loop_async_result};
    pub use crate::{params, Params, ToParam};
    pub use crate::{DbPool, DbResult, ExecResult, ObjectInfo, RedisPool, Storage, StoredObject};
    pub use crate::{EnvVars, StorageType};
    pub use crate::{HandlerError, MultipartData, MultipartFile, Request, Response};
    pub use serde::{Deserialize, Serialize};
    pub use serde_json::json;
    /// Any JSON value (`serde_json::Value`).
    pub use serde_json::Value as JsonValue;
    pub use std::collections::HashMap;
}

/// Runs the Rust examples of `docs/sdk/README.md` as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/sdk/README.md")]
pub struct ReadmeDoctests;

/// Runs the Rust examples of `docs/sdk/request.md` as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/sdk/request.md")]
pub struct RequestDoctests;

/// Runs the Rust examples of `docs/sdk/response.md` as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/sdk/response.md")]
pub struct ResponseDoctests;

/// Runs the Rust examples of `docs/sdk/errors.md` as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/sdk/errors.md")]
pub struct ErrorsDoctests;

/// Runs the Rust examples of `docs/sdk/multipart.md` as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/sdk/multipart.md")]
pub struct MultipartDoctests;

/// Runs the Rust examples of `docs/sdk/services.md` as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/sdk/services.md")]
pub struct ServicesDoctests;

/// Runs the Rust examples of `docs/sdk/coming-from-rust-edge-gateway.md` as
/// doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/sdk/coming-from-rust-edge-gateway.md")]
pub struct ComingFromRustEdgeGatewayDoctests;

/// Runs the Rust examples of `docs/sdk/async.md` as doctests (they need the
/// `async` feature: `cargo test --features async`).
#[cfg(all(doctest, feature = "async"))]
#[doc = include_str!("../../docs/sdk/async.md")]
pub struct AsyncDoctests;
