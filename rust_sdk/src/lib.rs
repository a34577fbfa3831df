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

#![warn(missing_docs)]

mod error;
pub mod frame;
mod macros;
mod protocol;
mod request;
mod response;
mod runtime;

pub use error::HandlerError;
pub use protocol::{PROTOCOL_VERSION, SDK_VERSION};
pub use request::Request;
pub use response::Response;
pub use runtime::{run, run_result};

/// `serde`, re-exported for handlers that want to name it through the SDK.
#[doc(no_inline)]
pub use serde;
/// `serde_json`, re-exported for handlers that want to name it through the SDK.
#[doc(no_inline)]
pub use serde_json;

/// Everything a handler usually needs: `use rust_edge_gateway_sdk::prelude::*;`
///
/// [`Request`], [`Response`], [`HandlerError`], the [`json!`](serde_json::json)
/// macro, [`JsonValue`](crate::prelude::JsonValue), serde's `Serialize` and
/// `Deserialize` (traits and derives), `HashMap`, and the loop macros.
pub mod prelude {
    pub use crate::{handler_loop, handler_loop_result};
    pub use crate::{HandlerError, Request, Response};
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
