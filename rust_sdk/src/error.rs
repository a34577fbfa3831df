//! [`HandlerError`]: failures that map to an HTTP status.

use crate::response::Response;
use std::fmt;

/// An error a handler can return; each variant maps to an HTTP status.
///
/// With [`handler_loop_result!`](crate::handler_loop_result) an `Err` becomes
/// its response automatically: the status of [`status_code`](Self::status_code)
/// and the JSON body `{"error": "<Display text>"}`.
///
/// ```
/// use rust_edge_gateway_sdk::prelude::*;
///
/// let err = HandlerError::NotFoundMessage("no user 7".into());
/// assert_eq!(err.status_code(), 404);
/// let resp: Response = err.into();
/// assert_eq!(resp.status, 404);
/// assert_eq!(resp.body.as_deref(), Some(r#"{"error":"Not found: no user 7"}"#));
/// ```
#[derive(Debug)]
pub enum HandlerError {
    /// 400: malformed input (bad JSON, missing parameter, ...).
    BadRequest(String),
    /// 400: input that is well-formed but fails validation.
    ValidationError(String),
    /// 401: missing or invalid credentials.
    Unauthorized(String),
    /// 403: authenticated but not allowed.
    Forbidden(String),
    /// 404 without a message.
    NotFound,
    /// 404 with a message.
    NotFoundMessage(String),
    /// 405.
    MethodNotAllowed(String),
    /// 409: e.g. a duplicate.
    Conflict(String),
    /// 413.
    PayloadTooLarge(String),
    /// 500.
    Internal(String),
    /// 500 (same as `Internal`).
    InternalError(String),
    /// 500: a database service call failed.
    DatabaseError(String),
    /// 500: a Redis service call failed.
    RedisError(String),
    /// 500: a storage service call failed.
    StorageError(String),
    /// 500: talking to the gateway failed.
    IpcError(String),
    /// 500: JSON (de)serialization failed; `?` on a `serde_json::Error` gives this.
    SerializationError(serde_json::Error),
    /// 503: a backend service is unavailable or not bound.
    ServiceUnavailable(String),
}

impl HandlerError {
    /// The HTTP status this error answers with.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::HandlerError;
    /// assert_eq!(HandlerError::ValidationError("too short".into()).status_code(), 400);
    /// assert_eq!(HandlerError::DatabaseError("timeout".into()).status_code(), 500);
    /// ```
    pub fn status_code(&self) -> u16 {
        use HandlerError::*;
        match self {
            BadRequest(_) | ValidationError(_) => 400,
            Unauthorized(_) => 401,
            Forbidden(_) => 403,
            NotFound | NotFoundMessage(_) => 404,
            MethodNotAllowed(_) => 405,
            Conflict(_) => 409,
            PayloadTooLarge(_) => 413,
            Internal(_)
            | InternalError(_)
            | DatabaseError(_)
            | RedisError(_)
            | StorageError(_)
            | IpcError(_)
            | SerializationError(_) => 500,
            ServiceUnavailable(_) => 503,
        }
    }

    /// The response for this error: [`status_code`](Self::status_code) and the
    /// JSON body `{"error": "<Display text>"}`.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::HandlerError;
    /// let resp = HandlerError::Forbidden("admins only".into()).to_response();
    /// assert_eq!(resp.status, 403);
    /// assert_eq!(resp.body.as_deref(), Some(r#"{"error":"Forbidden: admins only"}"#));
    /// ```
    pub fn to_response(&self) -> Response {
        Response::error_json(self.status_code(), &self.to_string())
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use HandlerError::*;
        let (what, detail): (&str, &dyn fmt::Display) = match self {
            NotFound => return f.write_str("Not found"),
            BadRequest(m) => ("Bad request", m),
            ValidationError(m) => ("Validation error", m),
            Unauthorized(m) => ("Unauthorized", m),
            Forbidden(m) => ("Forbidden", m),
            NotFoundMessage(m) => ("Not found", m),
            MethodNotAllowed(m) => ("Method not allowed", m),
            Conflict(m) => ("Conflict", m),
            PayloadTooLarge(m) => ("Payload too large", m),
            Internal(m) | InternalError(m) => ("Internal error", m),
            DatabaseError(m) => ("Database error", m),
            RedisError(m) => ("Redis error", m),
            StorageError(m) => ("Storage error", m),
            IpcError(m) => ("IPC error", m),
            SerializationError(e) => ("Serialization error", e),
            ServiceUnavailable(m) => ("Service unavailable", m),
        };
        write!(f, "{what}: {detail}")
    }
}

impl std::error::Error for HandlerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandlerError::SerializationError(e) => Some(e),
            _ => None,
        }
    }
}

impl From<serde_json::Error> for HandlerError {
    fn from(e: serde_json::Error) -> Self {
        HandlerError::SerializationError(e)
    }
}

impl From<HandlerError> for Response {
    fn from(e: HandlerError) -> Self {
        e.to_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn every_variant_has_its_status() {
        use HandlerError::*;
        let m = || "m".to_string();
        let cases = vec![
            (BadRequest(m()), 400, "Bad request: m"),
            (ValidationError(m()), 400, "Validation error: m"),
            (Unauthorized(m()), 401, "Unauthorized: m"),
            (Forbidden(m()), 403, "Forbidden: m"),
            (NotFound, 404, "Not found"),
            (NotFoundMessage(m()), 404, "Not found: m"),
            (MethodNotAllowed(m()), 405, "Method not allowed: m"),
            (Conflict(m()), 409, "Conflict: m"),
            (PayloadTooLarge(m()), 413, "Payload too large: m"),
            (Internal(m()), 500, "Internal error: m"),
            (InternalError(m()), 500, "Internal error: m"),
            (DatabaseError(m()), 500, "Database error: m"),
            (RedisError(m()), 500, "Redis error: m"),
            (StorageError(m()), 500, "Storage error: m"),
            (IpcError(m()), 500, "IPC error: m"),
            (ServiceUnavailable(m()), 503, "Service unavailable: m"),
        ];
        for (err, status, text) in cases {
            assert_eq!(err.status_code(), status, "{err:?}");
            assert_eq!(err.to_string(), text);
            let resp = err.to_response();
            assert_eq!(resp.status, status);
            assert_eq!(resp.header("content-type").unwrap(), "application/json");
            let body: Value = serde_json::from_str(resp.body.as_deref().unwrap()).unwrap();
            assert_eq!(body, json!({ "error": text }));
            let via_from: Response = err.into();
            assert_eq!(via_from, resp);
        }
    }

    #[test]
    fn serde_errors_convert_to_serialization_error() {
        fn parse() -> Result<Value, HandlerError> {
            Ok(serde_json::from_str("{")?)
        }
        let err = parse().unwrap_err();
        assert!(matches!(err, HandlerError::SerializationError(_)));
        assert_eq!(err.status_code(), 500);
        assert!(err.to_string().starts_with("Serialization error: EOF"));
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn is_a_std_error() {
        let boxed: Box<dyn std::error::Error> = Box::new(HandlerError::NotFound);
        assert_eq!(boxed.to_string(), "Not found");
    }
}
