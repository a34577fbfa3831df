//! [`Request`]: one HTTP request as the gateway hands it to the handler.

use crate::error::HandlerError;
use crate::multipart::{self, MultipartData};
use crate::response::lookup_header;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::str::FromStr;

/// An incoming HTTP request.
///
/// The gateway fills every field; header names arrive in lower case, and
/// repeated headers arrive joined with `", "`. A body that is not valid
/// UTF-8 arrives with `body == None`; [`body_bytes`](Self::body_bytes) and
/// [`multipart`](Self::multipart) see it.
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
    /// A body that is not UTF-8 (it arrived as `body_base64`), decoded.
    pub(crate) body_binary: Option<Vec<u8>>,
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
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Request;
    /// let req = Request::new("DELETE", "/items/3");
    /// assert_eq!((req.method.as_str(), req.path.as_str()), ("DELETE", "/items/3"));
    /// assert!(req.query.is_empty() && req.headers.is_empty() && req.body.is_none());
    /// ```
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
            body_binary: None,
        }
    }

    /// Adds a query parameter.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Request;
    /// let req = Request::new("GET", "/search").with_query("q", "rust");
    /// assert_eq!(req.query["q"], "rust");
    /// ```
    pub fn with_query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.insert(name.into(), value.into());
        self
    }

    /// Adds a header (name stored in lower case, as the gateway sends it).
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Request;
    /// let req = Request::new("GET", "/").with_header("X-Api-Key", "k1");
    /// assert_eq!(req.headers["x-api-key"], "k1");
    /// ```
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let mut name = name.into();
        name.make_ascii_lowercase();
        self.headers.insert(name, value.into());
        self
    }

    /// Adds a path parameter.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Request;
    /// let req = Request::new("GET", "/users/7").with_param("id", "7");
    /// assert_eq!(req.path_param("id").map(String::as_str), Some("7"));
    /// ```
    pub fn with_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(name.into(), value.into());
        self
    }

    /// Sets the text body.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Request;
    /// let req = Request::new("POST", "/").with_body("hello");
    /// assert_eq!(req.body.as_deref(), Some("hello"));
    /// ```
    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self.body_binary = None;
        self
    }

    /// Sets the body from bytes, as the gateway would deliver them: UTF-8
    /// bytes become the text [`body`](Self::body), anything else leaves
    /// `body` as `None` and is seen by [`body_bytes`](Self::body_bytes) and
    /// [`multipart`](Self::multipart).
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Request;
    /// let text = Request::new("POST", "/").with_body_bytes(b"hi".to_vec());
    /// assert_eq!(text.body.as_deref(), Some("hi"));
    ///
    /// let binary = Request::new("POST", "/").with_body_bytes(vec![0xff, 0x00]);
    /// assert_eq!(binary.body, None);
    /// assert_eq!(binary.body_bytes(), [0xff, 0x00]);
    /// ```
    pub fn with_body_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        match String::from_utf8(bytes.into()) {
            Ok(text) => {
                self.body = Some(text);
                self.body_binary = None;
            }
            Err(e) => {
                self.body = None;
                self.body_binary = Some(e.into_bytes());
            }
        }
        self
    }

    /// The body as bytes: the decoded `body_base64` when the body was not
    /// UTF-8, else the text body's bytes, else empty.
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// fn checksum(req: Request) -> Response {
    ///     let sum: u32 = req.body_bytes().iter().map(|&b| b as u32).sum();
    ///     Response::ok(json!({ "sum": sum }))
    /// }
    ///
    /// let req = Request::new("PUT", "/blob").with_body_bytes(vec![1, 2, 0xff]);
    /// assert_eq!(checksum(req).body.as_deref(), Some(r#"{"sum":258}"#));
    /// assert!(Request::new("GET", "/").body_bytes().is_empty());
    /// ```
    pub fn body_bytes(&self) -> Vec<u8> {
        self.raw_body().to_vec()
    }

    /// The body without copying it.
    fn raw_body(&self) -> &[u8] {
        match (&self.body_binary, &self.body) {
            (Some(bytes), _) => bytes,
            (None, Some(text)) => text.as_bytes(),
            (None, None) => &[],
        }
    }

    /// Parses a `multipart/form-data` body (RFC 7578) into text fields and
    /// files, with the boundary from the `Content-Type` header.
    ///
    /// [`HandlerError::BadRequest`] with a message saying what is wrong when
    /// the request is not `multipart/form-data`, has no boundary, the body
    /// is cut off before the closing boundary, a part has no
    /// `Content-Disposition` or no `name`, or a text field is not UTF-8.
    /// See [`MultipartData`] for what is accepted (CRLF or bare-LF line
    /// endings, quoted parameters, `filename*`).
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// let body = "--BOUNDARY\r\n\
    ///     Content-Disposition: form-data; name=\"caption\"\r\n\r\n\
    ///     Holiday\r\n\
    ///     --BOUNDARY\r\n\
    ///     Content-Disposition: form-data; name=\"photo\"; filename=\"beach.jpg\"\r\n\
    ///     Content-Type: image/jpeg\r\n\r\n\
    ///     JPEGDATA\r\n\
    ///     --BOUNDARY--\r\n";
    /// let req = Request::new("POST", "/photos")
    ///     .with_header("Content-Type", "multipart/form-data; boundary=BOUNDARY")
    ///     .with_body(body);
    /// assert!(req.is_multipart());
    /// let form = req.multipart().unwrap();
    /// assert_eq!(form.field("caption").unwrap(), "Holiday");
    /// let photo = form.file("photo").unwrap();
    /// assert_eq!((photo.filename.as_str(), photo.content_type.as_str()), ("beach.jpg", "image/jpeg"));
    /// assert_eq!(photo.data, b"JPEGDATA");
    ///
    /// let err = Request::new("POST", "/photos").with_body("{}").multipart().unwrap_err();
    /// assert_eq!(err.status_code(), 400);
    /// ```
    pub fn multipart(&self) -> Result<MultipartData, HandlerError> {
        let boundary = multipart::boundary(self.content_type().map(String::as_str))?;
        multipart::parse(self.raw_body(), &boundary)
    }

    /// Parses the body as JSON into `T`.
    ///
    /// Fails with [`HandlerError::BadRequest`] when the body is missing or
    /// empty ("expected a JSON body, but the request has none"), not UTF-8,
    /// or not valid JSON for `T` ("invalid JSON body: " and serde's message,
    /// which names the problem with its line and column). When a value has
    /// the wrong type or a nested object lacks a field, the message also
    /// names where: `invalid JSON body at 'items[1].qty': ...`.
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
    ///
    /// let err = Request::new("POST", "/users").with_body("{}").json::<NewUser>().unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "Bad request: invalid JSON body: missing field `name` at line 1 column 2"
    /// );
    /// let err = Request::new("POST", "/users").with_body(r#"{"name": 7}"#).json::<NewUser>().unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "Bad request: invalid JSON body at 'name': invalid type: integer `7`, expected a string at line 1 column 10"
    /// );
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        if self.body_binary.is_some() {
            return Err(HandlerError::BadRequest(
                "expected a JSON body, but the body is not UTF-8 text".into(),
            ));
        }
        match self.body.as_deref() {
            None | Some("") => Err(HandlerError::BadRequest(
                "expected a JSON body, but the request has none".into(),
            )),
            Some(body) => {
                let mut de = serde_json::Deserializer::from_str(body);
                let value = serde_path_to_error::deserialize(&mut de)
                    .map_err(|e| json_error(e.inner(), Some(e.path())))?;
                // Only whitespace may follow the value, as in serde_json::from_str.
                de.end().map_err(|e| json_error(&e, None))?;
                Ok(value)
            }
        }
    }

    /// A query parameter (a repeated key arrives with its values joined by
    /// `,`).
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Request;
    /// let req = Request::new("GET", "/").with_query("q", "rust");
    /// assert_eq!(req.query_param("q").map(String::as_str), Some("rust"));
    /// assert_eq!(req.query_param("page"), None);
    /// ```
    pub fn query_param(&self, name: &str) -> Option<&String> {
        self.query.get(name)
    }

    /// A query parameter parsed as `T` (any `FromStr`); `None` when missing
    /// or unparsable.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Request;
    /// let req = Request::new("GET", "/").with_query("page", "2").with_query("x", "y");
    /// assert_eq!(req.query_param_as::<u32>("page"), Some(2));
    /// assert_eq!(req.query_param_as::<u32>("x"), None);
    /// let limit = req.query_param_as("limit").unwrap_or(20u32);
    /// assert_eq!(limit, 20);
    /// ```
    pub fn query_param_as<T: FromStr>(&self, name: &str) -> Option<T> {
        self.query.get(name).and_then(|v| v.parse().ok())
    }

    /// A query parameter parsed as `T`; [`HandlerError::BadRequest`] naming
    /// the parameter when it is missing, and naming the expected type and the
    /// value received when it does not parse.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::prelude::*;
    /// let req = Request::new("GET", "/items").with_query("limit", "abc");
    /// let err = req.require_query_param::<u32>("limit").unwrap_err();
    /// assert_eq!(err.to_string(), "Bad request: query parameter 'limit' must be a u32, got 'abc'");
    /// let err = req.require_query_param::<u32>("page").unwrap_err();
    /// assert_eq!(err.to_string(), "Bad request: missing query parameter 'page'");
    /// ```
    pub fn require_query_param<T: FromStr>(&self, name: &str) -> Result<T, HandlerError> {
        require(self.query.get(name), "query parameter", name)
    }

    /// A path parameter (`/users/{id}` → `path_param("id")`).
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Request;
    /// let req = Request::new("GET", "/users/ada").with_param("name", "ada");
    /// assert_eq!(req.path_param("name").map(String::as_str), Some("ada"));
    /// ```
    pub fn path_param(&self, name: &str) -> Option<&String> {
        self.params.get(name)
    }

    /// A path parameter parsed as `T`; `None` when missing or unparsable.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Request;
    /// let req = Request::new("GET", "/users/7").with_param("id", "7");
    /// assert_eq!(req.path_param_as::<i64>("id"), Some(7));
    /// assert_eq!(req.path_param_as::<bool>("id"), None);
    /// ```
    pub fn path_param_as<T: FromStr>(&self, name: &str) -> Option<T> {
        self.params.get(name).and_then(|v| v.parse().ok())
    }

    /// A path parameter parsed as `T`; [`HandlerError::BadRequest`] when
    /// missing or unparsable, worded like
    /// [`require_query_param`](Self::require_query_param).
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Request;
    /// let req = Request::new("GET", "/users/x").with_param("id", "x");
    /// let err = req.require_path_param::<u64>("id").unwrap_err();
    /// assert_eq!(err.to_string(), "Bad request: path parameter 'id' must be a u64, got 'x'");
    /// ```
    pub fn require_path_param<T: FromStr>(&self, name: &str) -> Result<T, HandlerError> {
        require(self.params.get(name), "path parameter", name)
    }

    /// A header, looked up case-insensitively.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Request;
    /// let req = Request::new("GET", "/").with_header("user-agent", "curl/8");
    /// assert_eq!(req.header("User-Agent").map(String::as_str), Some("curl/8"));
    /// ```
    pub fn header(&self, name: &str) -> Option<&String> {
        lookup_header(&self.headers, name)
    }

    /// A header, looked up case-insensitively; [`HandlerError::BadRequest`]
    /// when missing.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Request;
    /// let req = Request::new("GET", "/");
    /// let err = req.require_header("Authorization").unwrap_err();
    /// assert_eq!(err.to_string(), "Bad request: missing header 'Authorization'");
    /// ```
    pub fn require_header(&self, name: &str) -> Result<&String, HandlerError> {
        self.header(name)
            .ok_or_else(|| HandlerError::BadRequest(format!("missing header '{name}'")))
    }

    /// The W3C `traceparent` the gateway sent with this request
    /// (`00-<trace id>-<span id>-<flags>`): the caller's trace with the
    /// gateway's span, or a trace the gateway started. The gateway also
    /// returns it on the response and writes it in its access log. `None`
    /// when the header is missing or not a valid `traceparent`.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Request;
    /// let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    /// let req = Request::new("GET", "/").with_header("traceparent", tp);
    /// assert_eq!(req.traceparent(), Some(tp));
    /// assert_eq!(Request::new("GET", "/").traceparent(), None);
    /// ```
    pub fn traceparent(&self) -> Option<&str> {
        let value = self.header("traceparent")?.as_str();
        parse_traceparent(value).map(|_| value)
    }

    /// The trace id of this request: 32 lower-case hex digits from its
    /// [`traceparent`](Self::traceparent), the id that ties the gateway's
    /// access log, the endpoint's log lines and the caller's tracing
    /// together. Put it in your own log lines (`eprintln!`) to find them by
    /// trace. `None` when there is no valid `traceparent` (a request built
    /// in a test without one).
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Request;
    /// let req = Request::new("GET", "/")
    ///     .with_header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    /// assert_eq!(req.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    /// let bad = Request::new("GET", "/").with_header("traceparent", "garbage");
    /// assert_eq!(bad.trace_id(), None);
    /// ```
    pub fn trace_id(&self) -> Option<&str> {
        parse_traceparent(self.header("traceparent")?.as_str())
    }

    /// Whether the method is `method` (case-insensitive).
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Request;
    /// assert!(Request::new("POST", "/").is_method("post"));
    /// ```
    pub fn is_method(&self, method: &str) -> bool {
        self.method.eq_ignore_ascii_case(method)
    }

    /// The `content-type` header.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Request;
    /// let req = Request::new("POST", "/").with_header("Content-Type", "text/csv");
    /// assert_eq!(req.content_type().map(String::as_str), Some("text/csv"));
    /// ```
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

    /// Whether the content type is `multipart/form-data` (see
    /// [`multipart`](Self::multipart)).
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Request;
    /// let req = Request::new("POST", "/")
    ///     .with_header("content-type", "multipart/form-data; boundary=x");
    /// assert!(req.is_multipart());
    /// assert!(!Request::new("POST", "/").is_multipart());
    /// ```
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

/// "invalid JSON body: ..." with serde's message; for a value of the wrong
/// type or a nested object missing a field, also where (the path
/// serde_path_to_error tracked): "invalid JSON body at 'items[2].qty': ...".
/// Syntax errors and problems with the top-level value name no path.
#[cold]
/// The trace id of a valid W3C `traceparent` (version `00` layout, lower-case
/// hex, version not `ff`, ids not all zero; a higher version may carry more
/// fields after a dash).
fn parse_traceparent(value: &str) -> Option<&str> {
    let bytes = value.as_bytes();
    if bytes.len() < 55 || (bytes.len() > 55 && bytes[55] != b'-') {
        return None;
    }
    let hex = |range: std::ops::Range<usize>| {
        bytes[range]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    };
    let dashes = bytes[2] == b'-' && bytes[35] == b'-' && bytes[52] == b'-';
    if !dashes || !hex(0..2) || !hex(3..35) || !hex(36..52) || !hex(53..55) {
        return None;
    }
    let (version, trace, parent) = (&value[0..2], &value[3..35], &value[36..52]);
    if version == "ff" || (version == "00" && bytes.len() != 55) {
        return None;
    }
    if trace.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0') {
        return None;
    }
    Some(trace)
}

fn json_error(e: &serde_json::Error, path: Option<&serde_path_to_error::Path>) -> HandlerError {
    let at = match path {
        Some(path) if e.classify() == serde_json::error::Category::Data => {
            path.iter().next().map(|_| cut_path(path.to_string()))
        }
        _ => None,
    };
    HandlerError::BadRequest(match at {
        Some(path) => format!("invalid JSON body at '{path}': {e}"),
        None => format!("invalid JSON body: {e}"),
    })
}

/// A path of at most 200 bytes and "...": the keys come from the client.
fn cut_path(mut path: String) -> String {
    const MAX: usize = 200;
    if path.len() > MAX {
        let cut = (0..=MAX)
            .rev()
            .find(|&i| path.is_char_boundary(i))
            .unwrap_or(0);
        path.truncate(cut);
        path.push_str("...");
    }
    path
}

fn require<T: FromStr>(value: Option<&String>, what: &str, name: &str) -> Result<T, HandlerError> {
    let value =
        value.ok_or_else(|| HandlerError::BadRequest(format!("missing {what} '{name}'")))?;
    value
        .parse()
        .map_err(|_| not_a(what, name, std::any::type_name::<T>(), value))
}

/// "query parameter 'limit' must be a u32, got 'abc'"
#[cold]
fn not_a(what: &str, name: &str, type_name: &str, value: &str) -> HandlerError {
    let type_name = short_type_name(type_name);
    let article = article(&type_name);
    const MAX_ECHO: usize = 64;
    let echoed = match value.char_indices().nth(MAX_ECHO) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_string(),
    };
    HandlerError::BadRequest(format!(
        "{what} '{name}' must be {article} {type_name}, got '{echoed}'"
    ))
}

/// `alloc::string::String` → `String`, `core::option::Option<u32>` → `Option<u32>`.
fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut segment_start = 0;
    let mut chars = full.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            out.truncate(segment_start);
        } else {
            out.push(c);
            if !(c.is_alphanumeric() || c == '_') {
                segment_start = out.len();
            }
        }
    }
    out
}

/// "a" or "an" before a type name ("an i64", "an f32", "a u32", "a String").
fn article(type_name: &str) -> &'static str {
    let mut chars = type_name.chars();
    let first = chars.next().unwrap_or('x').to_ascii_lowercase();
    let digit_next = chars.next().is_some_and(|c| c.is_ascii_digit());
    if matches!(first, 'a' | 'e' | 'i' | 'o') || (digit_next && "fhlmnrsx".contains(first)) {
        "an"
    } else {
        "a"
    }
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
            "Bad request: query parameter 'q' must be a u32, got 'rust'"
        );
    }

    #[test]
    fn require_messages_name_the_type() {
        use std::net::IpAddr;
        let req = Request::new("GET", "/")
            .with_query("v", "abc")
            .with_param("p", "x".repeat(100));
        let msg = |e: HandlerError| match e {
            HandlerError::BadRequest(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            msg(req.require_query_param::<i64>("v").unwrap_err()),
            "query parameter 'v' must be an i64, got 'abc'"
        );
        assert_eq!(
            msg(req.require_query_param::<f64>("v").unwrap_err()),
            "query parameter 'v' must be an f64, got 'abc'"
        );
        assert_eq!(
            msg(req.require_query_param::<bool>("v").unwrap_err()),
            "query parameter 'v' must be a bool, got 'abc'"
        );
        assert_eq!(
            msg(req.require_query_param::<IpAddr>("v").unwrap_err()),
            "query parameter 'v' must be an IpAddr, got 'abc'"
        );
        assert_eq!(
            msg(req.require_query_param::<char>("v").unwrap_err()),
            "query parameter 'v' must be a char, got 'abc'"
        );
        // long values are cut
        let m = msg(req.require_path_param::<u8>("p").unwrap_err());
        assert_eq!(
            m,
            format!(
                "path parameter 'p' must be a u8, got '{}...'",
                "x".repeat(64)
            )
        );
        for (full, short) in [
            ("alloc::string::String", "String"),
            ("core::option::Option<u32>", "Option<u32>"),
            (
                "std::collections::hash::map::HashMap<alloc::string::String, i32>",
                "HashMap<String, i32>",
            ),
            ("u32", "u32"),
            ("uuid::Uuid", "Uuid"),
        ] {
            assert_eq!(short_type_name(full), short);
        }
        for (t, a) in [
            ("u32", "a"),
            ("i32", "an"),
            ("f32", "an"),
            ("String", "a"),
            ("Option<u8>", "an"),
            ("NaiveDate", "a"),
            ("Uuid", "a"),
            ("", "a"),
        ] {
            assert_eq!(article(t), a, "{t}");
        }
    }

    #[test]
    fn body_bytes_for_every_kind_of_body() {
        let none = Request::new("POST", "/");
        let text = Request::new("POST", "/").with_body("héllo");
        let binary = Request::new("POST", "/").with_body_bytes(vec![0, 0xff, 0xfe]);
        let utf8_bytes = Request::new("POST", "/").with_body_bytes("ok".as_bytes());
        for (req, bytes, body) in [
            (&none, &b""[..], None),
            (&text, "héllo".as_bytes(), Some("héllo")),
            (&binary, &[0, 0xff, 0xfe][..], None),
            (&utf8_bytes, b"ok", Some("ok")),
        ] {
            assert_eq!(req.body_bytes(), bytes);
            assert_eq!(req.body.as_deref(), body);
        }
        // with_body replaces a binary body
        let req = binary.clone().with_body("t");
        assert_eq!(req.body_bytes(), b"t");
        // json() on a binary body says why it fails
        let err = binary.json::<serde_json::Value>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "Bad request: expected a JSON body, but the body is not UTF-8 text"
        );
    }

    #[test]
    fn json_error_messages() {
        for (body, want) in [
            (None, "expected a JSON body, but the request has none"),
            (Some(""), "expected a JSON body, but the request has none"),
            (
                Some("{"),
                "invalid JSON body: EOF while parsing an object at line 1 column 1",
            ),
            (
                Some(r#"{"name":"pen"}"#),
                "invalid JSON body: missing field `qty` at line 1 column 14",
            ),
            (
                Some(r#"{"name":"pen","qty":"2"}"#),
                "invalid JSON body at 'qty': invalid type: string \"2\", expected u32 at line 1 column 23",
            ),
            (
                Some("[\"pen\", -2]"),
                "invalid JSON body at '[1]': invalid value: integer `-2`, expected u32 at line 1 column 10",
            ),
            (
                Some(r#"{"name":"pen","qty":2} x"#),
                "invalid JSON body: trailing characters at line 1 column 24",
            ),
        ] {
            let mut req = Request::new("POST", "/");
            req.body = body.map(String::from);
            match req.json::<Item>() {
                Err(HandlerError::BadRequest(m)) => assert_eq!(m, want),
                other => panic!("{other:?}"),
            }
        }
    }

    #[allow(dead_code)]
    #[derive(Deserialize, Debug)]
    struct Line {
        sku: String,
        qty: u32,
    }

    #[allow(dead_code)]
    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Order {
        name: String,
        age: Option<u32>,
        lines: Vec<Line>,
        #[serde(default)]
        tags: Vec<String>,
    }

    /// The path a JSON error names for `Order` ("" for none), and serde's message.
    fn order_error(body: &str) -> (String, String) {
        let m = match Request::new("POST", "/").with_body(body).json::<Order>() {
            Err(HandlerError::BadRequest(m)) => m,
            other => panic!("{body}: {other:?}"),
        };
        if let Some(rest) = m.strip_prefix("invalid JSON body at '") {
            let (path, message) = rest.split_once("': ").unwrap();
            (path.to_string(), message.to_string())
        } else {
            let message = m.strip_prefix("invalid JSON body: ").unwrap();
            (String::new(), message.to_string())
        }
    }

    #[test]
    fn json_errors_name_nested_fields_and_indices() {
        let base = r#""name": "Ada", "lines": []"#;
        for (body, want) in [
            (format!(r#"{{{base}, "age": "old"}}"#), "age"),
            (format!(r#"{{{base}, "age": -1}}"#), "age"),
            (format!(r#"{{{base}, "age": 1.5}}"#), "age"),
            (format!(r#"{{{base}, "age": 99999999999}}"#), "age"),
            (format!(r#"{{{base}, "age": {{"x": [1]}}}}"#), "age"),
            (format!(r#"{{{base}, "age": [1]}}"#), "age"),
            (format!(r#"{{{base}, "age": true}}"#), "age"),
            (format!(r#"{{{base}, "tags": ["a", 5]}}"#), "tags[1]"),
            (format!(r#"{{{base}, "tags": "abc"}}"#), "tags"),
            // an unknown field names itself
            (format!(r#"{{{base}, "extra": 1}}"#), "extra"),
            // a nested object missing a field names the object
            (
                r#"{"name": "A", "lines": [{"sku": "a", "qty": 1}, {"sku": "b"}]}"#.into(),
                "lines[1]",
            ),
            (
                r#"{"name": "A", "lines": [{"sku": "a,]}:\"", "qty": 1}, {"sku": "b", "qty": "x"}]}"#
                    .into(),
                "lines[1].qty",
            ),
            (
                "{\n  \"name\": \"Ada\",\n  \"lines\": [],\n  \"age\": \"x\"\n}".into(),
                "age",
            ),
            (r#"{"name": 5, "lines": []}"#.into(), "name"),
            (r#"{"n\u0061me": 5, "lines": []}"#.into(), "name"),
            (r#"[1]"#.into(), "[0]"),
            // problems with the top-level value, and syntax errors, name no path
            (r#"{"name": "Ada"}"#.into(), ""),
            (r#"5"#.into(), ""),
            (
                r#"{"name": "A", "lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2"#.into(),
                "",
            ),
            (r#"{"name": "A", "lines": [{"sku": "a", "qty": 1]}"#.into(), ""),
            (r#"{"name": "A", "lines": []} []"#.into(), ""),
        ] {
            let (path, message) = order_error(&body);
            assert_eq!(path, want, "{body}: {message}");
            assert!(message.contains(" at line "), "{body}: {message}");
        }
        assert_eq!(
            order_error(&format!(r#"{{{base}, "age": "old"}}"#)),
            (
                "age".into(),
                "invalid type: string \"old\", expected u32 at line 1 column 41".into()
            )
        );
        assert_eq!(
            order_error(r#"{"name": "A", "lines": [{"sku": "b"}]}"#),
            (
                "lines[0]".into(),
                "missing field `qty` at line 1 column 36".into()
            )
        );
    }

    #[test]
    fn json_paths_end_where_serde_buffers() {
        #[allow(dead_code)]
        #[derive(Deserialize, Debug)]
        #[serde(tag = "kind")]
        enum Tagged {
            Pen { qty: u32 },
        }
        #[allow(dead_code)]
        #[derive(Deserialize, Debug)]
        struct Outer {
            #[serde(flatten)]
            line: Line,
            tagged: Option<Tagged>,
        }
        let msg = |body: &str| match Request::new("POST", "/").with_body(body).json::<Outer>() {
            Err(HandlerError::BadRequest(m)) => m,
            other => panic!("{body}: {other:?}"),
        };
        assert!(
            msg(r#"{"sku": "a", "qty": "x"}"#).starts_with("invalid JSON body: invalid type"),
            "flattened fields are read at the top level"
        );
        assert!(
            msg(r#"{"sku": "a", "qty": 1, "tagged": {"kind": "Pen", "qty": "x"}}"#)
                .starts_with("invalid JSON body at 'tagged': invalid type"),
            "a tagged enum is named, not its field"
        );
    }

    #[test]
    fn long_json_paths_are_cut() {
        let key = "k".repeat(300);
        let body = format!(r#"{{"name": "A", "lines": [], "{key}": 1}}"#);
        let (path, message) = order_error(&body);
        assert_eq!(path, format!("{}...", "k".repeat(200)));
        assert!(message.starts_with("unknown field `kkk"), "{message}");
        // cut on a character boundary
        let key = "é".repeat(150);
        let body = format!(r#"{{"name": "A", "lines": [], "{key}": 1}}"#);
        assert_eq!(order_error(&body).0, format!("{}...", "é".repeat(100)));
    }

    fn form(ct: &str, body: &[u8]) -> Request {
        Request::new("POST", "/")
            .with_header("Content-Type", ct)
            .with_body_bytes(body.to_vec())
    }

    #[test]
    fn multipart_through_the_request() {
        // A binary file makes the whole body non-UTF-8: it arrives as
        // body_base64 and multipart() still sees every byte.
        let mut body = b"--AaB03x\r\nContent-Disposition: form-data; name=\"who\"\r\n\r\nLarry\r\n\
--AaB03x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"f.bin\"\r\n\
Content-Type: application/octet-stream\r\n\r\n"
            .to_vec();
        let data: Vec<u8> = (0..=255u8).rev().collect();
        body.extend_from_slice(&data);
        body.extend_from_slice(b"\r\n--AaB03x--\r\n");
        for ct in [
            "multipart/form-data; boundary=AaB03x",
            "multipart/form-data; boundary=\"AaB03x\"",
            "Multipart/Form-Data;boundary=AaB03x;charset=utf-8",
        ] {
            let req = form(ct, &body);
            assert!(req.body.is_none(), "binary body");
            assert!(req.is_multipart());
            let parsed = req.multipart().unwrap();
            assert_eq!(parsed.require_field("who").unwrap(), "Larry");
            let f = parsed.require_file("files").unwrap();
            assert_eq!(f.filename, "f.bin");
            assert_eq!(f.data, data);
        }
        let msg = |req: Request| match req.multipart() {
            Err(HandlerError::BadRequest(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            msg(Request::new("POST", "/")),
            "expected a multipart/form-data body, but the request has no content type"
        );
        assert_eq!(
            msg(form("application/json", b"{}")),
            "expected a multipart/form-data body, got content type 'application/json'"
        );
        assert_eq!(
            msg(form("multipart/form-data", &body)),
            "the multipart/form-data content type has no boundary parameter"
        );
        assert_eq!(
            msg(form(
                "multipart/form-data; boundary=AaB03x",
                &body[..body.len() - 12]
            )),
            "the multipart body ends without the closing boundary '--AaB03x--'"
        );
        assert_eq!(
            msg(form("multipart/form-data; boundary=zzz", &body)),
            "the multipart body does not contain the boundary '--zzz'"
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
    fn trace_context() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let parent = "00f067aa0ba902b7";
        let valid = format!("00-{trace}-{parent}-01");
        let req = Request::new("GET", "/").with_header("Traceparent", &valid);
        assert_eq!(req.trace_id(), Some(trace));
        assert_eq!(req.traceparent(), Some(valid.as_str()));
        let future = format!("cc-{trace}-{parent}-01-more");
        assert_eq!(
            Request::new("GET", "/")
                .with_header("traceparent", &future)
                .trace_id(),
            Some(trace)
        );
        let zeros32 = "0".repeat(32);
        let zeros16 = "0".repeat(16);
        let upper = trace.to_uppercase();
        for bad in [
            format!("ff-{trace}-{parent}-01"),
            format!("00-{zeros32}-{parent}-01"),
            format!("00-{trace}-{zeros16}-01"),
            format!("00-{}-{parent}-01", &trace[1..]),
            format!("00-{trace}-{parent}-01-extra"),
            format!("00-{upper}-{parent}-01"),
            format!("00-{trace}-{parent}-1"),
            format!("00_{trace}_{parent}_01"),
            format!("cc-{trace}-{parent}-01x"),
            format!("00-{trace}-{parent}-0\u{e9}"),
            "garbage".to_string(),
            String::new(),
        ] {
            let req = Request::new("GET", "/").with_header("traceparent", &bad);
            assert_eq!(req.trace_id(), None, "{bad}");
            assert_eq!(req.traceparent(), None, "{bad}");
        }
        assert_eq!(Request::new("GET", "/").trace_id(), None);
    }

    #[test]
    fn default_is_get_root() {
        let req = Request::default();
        assert_eq!((req.method.as_str(), req.path.as_str()), ("GET", "/"));
        assert!(req.body.is_none() && req.request_id.is_empty());
    }
}
