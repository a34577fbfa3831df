//! [`Request`]: one HTTP request as the gateway hands it to the handler.

use crate::error::HandlerError;
use crate::response::lookup_header;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::str::FromStr;

/// An incoming HTTP request.
///
/// The gateway fills every field; header names arrive in lower case, and
/// repeated headers arrive joined with `", "`. A body that is not valid
/// UTF-8 arrives with `body == None` (it is kept inside the SDK).
///
/// ```
/// use rust_edge_gateway_sdk::prelude::*;
///
/// let req = Request::new("GET", "/items/42")
///     .with_param("id", "42")
///     .with_query("verbose", "true")
///     .with_header("X-Api-Key", "k");
/// assert_eq!(req.require_path_param::<u64>("id").unwrap(), 42);
/// assert_eq!(req.query_param_as::<bool>("verbose"), Some(true));
/// assert_eq!(req.header("x-api-key").map(String::as_str), Some("k"));
/// assert!(req.is_method("get"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// HTTP method, upper case as received (`"GET"`, `"POST"`, ...).
    pub method: String,
    /// Request path without the query string (e.g. `"/users/42"`).
    pub path: String,
    /// Query parameters.
    pub query: HashMap<String, String>,
    /// Headers, names in lower case.
    pub headers: HashMap<String, String>,
    /// The body when it is UTF-8 text; `None` when empty-and-absent or binary.
    pub body: Option<String>,
    /// Path parameters captured by the endpoint's pattern (`/users/{id}` → `id`).
    pub params: HashMap<String, String>,
    /// The client's IP address, when known.
    pub client_ip: Option<String>,
    /// The gateway's id for this request (also in the gateway's logs).
    pub request_id: String,
    /// A body that is not UTF-8, base64-encoded as it arrived.
    pub(crate) body_base64: Option<String>,
}

impl Default for Request {
    /// `GET /`, everything else empty.
    fn default() -> Self {
        Request::new("GET", "/")
    }
}

impl Request {
    /// A request with `method` and `path` and nothing else; with the
    /// `with_*` builders, handy for testing handlers.
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Self {
        Request {
            method: method.into(),
            path: path.into(),
            query: HashMap::new(),
            headers: HashMap::new(),
            body: None,
            params: HashMap::new(),
            client_ip: None,
            request_id: String::new(),
            body_base64: None,
        }
    }

    /// Adds a query parameter.
    pub fn with_query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.insert(name.into(), value.into());
        self
    }

    /// Adds a header (name stored in lower case, as the gateway sends it).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let mut name = name.into();
        name.make_ascii_lowercase();
        self.headers.insert(name, value.into());
        self
    }

    /// Adds a path parameter.
    pub fn with_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(name.into(), value.into());
        self
    }

    /// Sets the text body.
    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self.body_base64 = None;
        self
    }

    /// Parses the body as JSON into `T`.
    ///
    /// Fails with [`HandlerError::BadRequest`] when the body is missing,
    /// empty, or not valid JSON for `T`.
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// #[derive(Debug, Deserialize)]
    /// struct NewUser { name: String }
    ///
    /// let req = Request::new("POST", "/users").with_body(r#"{"name": "ada"}"#);
    /// let user: NewUser = req.json().unwrap();
    /// assert_eq!(user.name, "ada");
    ///
    /// let err = Request::new("POST", "/users").json::<NewUser>().unwrap_err();
    /// assert_eq!(err.status_code(), 400);
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        match self.body.as_deref() {
            None | Some("") => Err(HandlerError::BadRequest(
                "expected a JSON body, but the request has none".into(),
            )),
            Some(body) => serde_json::from_str(body)
                .map_err(|e| HandlerError::BadRequest(format!("invalid JSON body: {e}"))),
        }
    }

    /// A query parameter.
    pub fn query_param(&self, name: &str) -> Option<&String> {
        self.query.get(name)
    }

    /// A query parameter parsed as `T`; `None` when missing or unparsable.
    pub fn query_param_as<T: FromStr>(&self, name: &str) -> Option<T> {
        self.query.get(name).and_then(|v| v.parse().ok())
    }

    /// A query parameter parsed as `T`; [`HandlerError::BadRequest`] when
    /// missing or unparsable.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::prelude::*;
    /// let req = Request::new("GET", "/items").with_query("page", "two");
    /// let err = req.require_query_param::<u32>("page").unwrap_err();
    /// assert_eq!(err.to_string(), "Bad request: invalid value for query parameter 'page'");
    /// ```
    pub fn require_query_param<T: FromStr>(&self, name: &str) -> Result<T, HandlerError> {
        require(self.query.get(name), "query parameter", name)
    }

    /// A path parameter (`/users/{id}` → `path_param("id")`).
    pub fn path_param(&self, name: &str) -> Option<&String> {
        self.params.get(name)
    }

    /// A path parameter parsed as `T`; `None` when missing or unparsable.
    pub fn path_param_as<T: FromStr>(&self, name: &str) -> Option<T> {
        self.params.get(name).and_then(|v| v.parse().ok())
    }

    /// A path parameter parsed as `T`; [`HandlerError::BadRequest`] when
    /// missing or unparsable.
    pub fn require_path_param<T: FromStr>(&self, name: &str) -> Result<T, HandlerError> {
        require(self.params.get(name), "path parameter", name)
    }

    /// A header, looked up case-insensitively.
    pub fn header(&self, name: &str) -> Option<&String> {
        lookup_header(&self.headers, name)
    }

    /// A header, looked up case-insensitively; [`HandlerError::BadRequest`]
    /// when missing.
    pub fn require_header(&self, name: &str) -> Result<&String, HandlerError> {
        self.header(name)
            .ok_or_else(|| HandlerError::BadRequest(format!("missing header '{name}'")))
    }

    /// Whether the method is `method` (case-insensitive).
    pub fn is_method(&self, method: &str) -> bool {
        self.method.eq_ignore_ascii_case(method)
    }

    /// The `content-type` header.
    pub fn content_type(&self) -> Option<&String> {
        self.header("content-type")
    }

    /// Whether the content type is JSON (`application/json` or any `+json`
    /// type, parameters ignored).
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Request;
    /// let req = Request::new("POST", "/").with_header("content-type", "application/json; charset=utf-8");
    /// assert!(req.is_json());
    /// ```
    pub fn is_json(&self) -> bool {
        self.media_type().is_some_and(|t| {
            t.eq_ignore_ascii_case("application/json") || t.to_ascii_lowercase().ends_with("+json")
        })
    }

    /// Whether the content type is `multipart/form-data`.
    pub fn is_multipart(&self) -> bool {
        self.media_type()
            .is_some_and(|t| t.eq_ignore_ascii_case("multipart/form-data"))
    }

    /// The content type without parameters, trimmed.
    fn media_type(&self) -> Option<&str> {
        self.content_type()
            .map(|ct| ct.split(';').next().unwrap_or("").trim())
    }
}

fn require<T: FromStr>(value: Option<&String>, what: &str, name: &str) -> Result<T, HandlerError> {
    let value =
        value.ok_or_else(|| HandlerError::BadRequest(format!("missing {what} '{name}'")))?;
    value
        .parse()
        .map_err(|_| HandlerError::BadRequest(format!("invalid value for {what} '{name}'")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Item {
        name: String,
        qty: u32,
    }

    #[test]
    fn json_body() {
        let req = Request::new("POST", "/").with_body(r#"{"name":"pen","qty":2}"#);
        assert_eq!(
            req.json::<Item>().unwrap(),
            Item {
                name: "pen".into(),
                qty: 2
            }
        );
        let v: serde_json::Value = req.json().unwrap();
        assert_eq!(v["qty"], 2);
    }

    #[test]
    fn json_errors_are_bad_request() {
        for req in [
            Request::new("POST", "/"),
            Request::new("POST", "/").with_body(""),
            Request::new("POST", "/").with_body("{"),
            Request::new("POST", "/").with_body(r#"{"name":"pen"}"#),
        ] {
            let err = req.json::<Item>().unwrap_err();
            assert!(matches!(err, HandlerError::BadRequest(_)), "{err:?}");
        }
    }

    #[test]
    fn query_params() {
        let req = Request::new("GET", "/")
            .with_query("page", "3")
            .with_query("q", "rust");
        assert_eq!(req.query_param("q").map(String::as_str), Some("rust"));
        assert_eq!(req.query_param("nope"), None);
        assert_eq!(req.query_param_as::<u32>("page"), Some(3));
        assert_eq!(req.query_param_as::<u32>("q"), None);
        assert_eq!(req.query_param_as::<u32>("nope"), None);
        assert_eq!(req.require_query_param::<u32>("page").unwrap(), 3);
        assert_eq!(req.require_query_param::<String>("q").unwrap(), "rust");
        let missing = req.require_query_param::<u32>("nope").unwrap_err();
        assert_eq!(missing.status_code(), 400);
        assert_eq!(
            missing.to_string(),
            "Bad request: missing query parameter 'nope'"
        );
        let invalid = req.require_query_param::<u32>("q").unwrap_err();
        assert_eq!(
            invalid.to_string(),
            "Bad request: invalid value for query parameter 'q'"
        );
    }

    #[test]
    fn path_params() {
        let req = Request::new("GET", "/users/7").with_param("id", "7");
        assert_eq!(req.path_param("id").map(String::as_str), Some("7"));
        assert_eq!(req.path_param_as::<i64>("id"), Some(7));
        assert_eq!(req.path_param_as::<i64>("x"), None);
        assert_eq!(req.require_path_param::<i64>("id").unwrap(), 7);
        let err = req.require_path_param::<i64>("x").unwrap_err();
        assert_eq!(err.to_string(), "Bad request: missing path parameter 'x'");
        let req = req.with_param("id", "seven");
        assert!(req.require_path_param::<i64>("id").is_err());
    }

    #[test]
    fn headers_are_case_insensitive() {
        let mut req = Request::new("GET", "/").with_header("Authorization", "Bearer t");
        assert_eq!(req.headers["authorization"], "Bearer t");
        assert_eq!(req.header("AUTHORIZATION").unwrap(), "Bearer t");
        assert_eq!(req.header("authorization").unwrap(), "Bearer t");
        assert_eq!(req.require_header("Authorization").unwrap(), "Bearer t");
        let err = req.require_header("X-Key").unwrap_err();
        assert_eq!(err.status_code(), 400);
        assert_eq!(err.to_string(), "Bad request: missing header 'X-Key'");
        // a mixed-case key put in directly is still found
        req.headers.insert("X-Mixed".into(), "1".into());
        assert_eq!(req.header("x-mixed").unwrap(), "1");
    }

    #[test]
    fn inspection() {
        let req = Request::new("POST", "/");
        assert!(req.is_method("POST") && req.is_method("post") && !req.is_method("GET"));
        assert_eq!(req.content_type(), None);
        assert!(!req.is_json() && !req.is_multipart());
        for (ct, json, multipart) in [
            ("application/json", true, false),
            ("Application/JSON; charset=utf-8", true, false),
            ("application/problem+json", true, false),
            ("text/json-ish", false, false),
            ("text/plain", false, false),
            ("multipart/form-data; boundary=x", false, true),
        ] {
            let req = Request::new("POST", "/").with_header("Content-Type", ct);
            assert_eq!(req.content_type().map(String::as_str), Some(ct));
            assert_eq!(req.is_json(), json, "{ct}");
            assert_eq!(req.is_multipart(), multipart, "{ct}");
        }
    }

    #[test]
    fn default_is_get_root() {
        let req = Request::default();
        assert_eq!((req.method.as_str(), req.path.as_str()), ("GET", "/"));
        assert!(req.body.is_none() && req.request_id.is_empty());
    }
}
