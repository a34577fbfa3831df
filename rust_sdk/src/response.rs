//! [`Response`]: what a handler answers.

use serde::Serialize;
use std::collections::HashMap;

/// An HTTP response built by a handler.
///
/// The constructors set a lower-case `content-type` header; the
/// [`with_header`](Self::with_header) builder stores names in lower case and
/// replaces an existing header of the same name in any case.
///
/// | constructor | status | body |
/// | --- | --- | --- |
/// | [`new(status)`](Self::new) | any | none |
/// | [`ok(v)`](Self::ok), [`created(v)`](Self::created), [`accepted(v)`](Self::accepted), [`json(status, v)`](Self::json) | 200, 201, 202, any | JSON of any `Serialize` |
/// | [`text(status, s)`](Self::text), [`html(status, s)`](Self::html) | any | `text/plain` / `text/html` |
/// | [`no_content()`](Self::no_content), [`redirect(status, location)`](Self::redirect) | 204, 3xx | none |
/// | [`bad_request(m)`](Self::bad_request), [`unauthorized(m)`](Self::unauthorized), [`forbidden(m)`](Self::forbidden), [`not_found()`](Self::not_found), [`not_found_msg(m)`](Self::not_found_msg), [`conflict(m)`](Self::conflict), [`internal_error(m)`](Self::internal_error), [`service_unavailable(m)`](Self::service_unavailable) | 400, 401, 403, 404, 404, 409, 500, 503 | `{"error": m}` |
///
/// ```
/// use rust_edge_gateway_sdk::prelude::*;
///
/// let resp = Response::created(json!({"id": 7})).with_header("Location", "/items/7");
/// assert_eq!(resp.status, 201);
/// assert_eq!(resp.body.as_deref(), Some(r#"{"id":7}"#));
/// assert_eq!(resp.headers["content-type"], "application/json");
/// assert_eq!(resp.headers["location"], "/items/7");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Response headers (names in lower case when set through the builders).
    pub headers: HashMap<String, String>,
    /// Response body; `None` sends no body.
    pub body: Option<String>,
}

const JSON: &str = "application/json";

impl Response {
    /// A response with `status`, no headers and no body.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Response;
    /// let resp = Response::new(202);
    /// assert_eq!((resp.status, resp.body), (202, None));
    /// ```
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: HashMap::new(),
            body: None,
        }
    }

    /// A JSON response with any status. If `body` cannot be serialized (a
    /// map with non-string keys, a failing `Serialize` impl) the result is a
    /// 500 with an `{"error": ...}` body instead.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::prelude::*;
    /// #[derive(Serialize)]
    /// struct Item { id: u32, name: String }
    ///
    /// let resp = Response::json(200, Item { id: 1, name: "pen".into() });
    /// assert_eq!(resp.body.as_deref(), Some(r#"{"id":1,"name":"pen"}"#));
    /// ```
    pub fn json<T: Serialize>(status: u16, body: T) -> Self {
        Self::from_json_result(status, serde_json::to_string(&body))
    }

    fn from_json_result(status: u16, body: serde_json::Result<String>) -> Self {
        match body {
            Ok(body) => Response::new(status)
                .with_content_type(JSON)
                .with_body(body),
            Err(e) => Self::error_json(500, &format!("cannot serialize response body: {e}")),
        }
    }

    /// `{"error": message}` as JSON with `status`.
    pub(crate) fn error_json(status: u16, message: &str) -> Self {
        let body = serde_json::json!({ "error": message }).to_string();
        Response::new(status)
            .with_content_type(JSON)
            .with_body(body)
    }

    /// 200 with a JSON body.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::prelude::*;
    /// let resp = Response::ok(json!({"message": "hi"}));
    /// assert_eq!(resp.status, 200);
    /// assert_eq!(resp.body.as_deref(), Some(r#"{"message":"hi"}"#));
    /// ```
    pub fn ok<T: Serialize>(body: T) -> Self {
        Self::json(200, body)
    }

    /// 201 with a JSON body.
    pub fn created<T: Serialize>(body: T) -> Self {
        Self::json(201, body)
    }

    /// 202 with a JSON body.
    pub fn accepted<T: Serialize>(body: T) -> Self {
        Self::json(202, body)
    }

    /// A `text/plain; charset=utf-8` response.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Response;
    /// let resp = Response::text(200, "pong");
    /// assert_eq!(resp.body.as_deref(), Some("pong"));
    /// assert_eq!(resp.headers["content-type"], "text/plain; charset=utf-8");
    /// ```
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response::new(status)
            .with_content_type("text/plain; charset=utf-8")
            .with_body(body)
    }

    /// A `text/html; charset=utf-8` response.
    pub fn html(status: u16, body: impl Into<String>) -> Self {
        Response::new(status)
            .with_content_type("text/html; charset=utf-8")
            .with_body(body)
    }

    /// 204, no body.
    pub fn no_content() -> Self {
        Response::new(204)
    }

    /// A redirect (`status` is usually 301, 302, 303, 307 or 308) to `location`.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Response;
    /// let resp = Response::redirect(302, "/login");
    /// assert_eq!(resp.header("Location").map(String::as_str), Some("/login"));
    /// ```
    pub fn redirect(status: u16, location: impl Into<String>) -> Self {
        Response::new(status).with_header("location", location)
    }

    /// 400 with `{"error": message}`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::error_json(400, &message.into())
    }

    /// 401 with `{"error": message}`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::error_json(401, &message.into())
    }

    /// 403 with `{"error": message}`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::error_json(403, &message.into())
    }

    /// 404 with `{"error": "Not found"}`.
    pub fn not_found() -> Self {
        Self::error_json(404, "Not found")
    }

    /// 404 with `{"error": message}`.
    pub fn not_found_msg(message: impl Into<String>) -> Self {
        Self::error_json(404, &message.into())
    }

    /// 409 with `{"error": message}`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::error_json(409, &message.into())
    }

    /// 500 with `{"error": message}`.
    pub fn internal_error(message: impl Into<String>) -> Self {
        Self::error_json(500, &message.into())
    }

    /// 503 with `{"error": message}`.
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::error_json(503, &message.into())
    }

    /// Sets a header. The name is stored in lower case and replaces a header
    /// of the same name in any case.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Response;
    /// let resp = Response::text(200, "<p>hi</p>").with_header("Content-Type", "text/html");
    /// assert_eq!(resp.headers.len(), 1);
    /// assert_eq!(resp.headers["content-type"], "text/html");
    /// ```
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let mut name = name.into();
        name.make_ascii_lowercase();
        self.headers.retain(|k, _| !k.eq_ignore_ascii_case(&name));
        self.headers.insert(name, value.into());
        self
    }

    fn with_content_type(self, value: &str) -> Self {
        self.with_header("content-type", value)
    }

    /// Sets the body (leaves headers alone).
    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Adds CORS headers allowing `origin` (`"*"` for any).
    pub fn with_cors(self, origin: impl Into<String>) -> Self {
        self.with_header("access-control-allow-origin", origin)
            .with_header(
                "access-control-allow-methods",
                "GET, POST, PUT, PATCH, DELETE, OPTIONS",
            )
            .with_header(
                "access-control-allow-headers",
                "Content-Type, Authorization",
            )
    }

    /// Sets `cache-control`: `max-age=N`, or `no-store` when `max_age_seconds` is 0.
    pub fn with_cache(self, max_age_seconds: u32) -> Self {
        let value = match max_age_seconds {
            0 => "no-store".to_string(),
            n => format!("max-age={n}"),
        };
        self.with_header("cache-control", value)
    }

    /// A header's value, looked up case-insensitively.
    pub fn header(&self, name: &str) -> Option<&String> {
        lookup_header(&self.headers, name)
    }
}

impl Default for Response {
    /// `200` with no headers and no body.
    fn default() -> Self {
        Response::new(200)
    }
}

/// Case-insensitive lookup; fast when the map already holds lower-case names.
pub(crate) fn lookup_header<'a>(
    headers: &'a HashMap<String, String>,
    name: &str,
) -> Option<&'a String> {
    if let Some(v) = headers.get(name) {
        return Some(v);
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        if let Some(v) = headers.get(&name.to_ascii_lowercase()) {
            return Some(v);
        }
    }
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::collections::BTreeMap;

    fn body_json(resp: &Response) -> Value {
        serde_json::from_str(resp.body.as_deref().expect("a body")).unwrap()
    }

    #[test]
    fn new_has_nothing() {
        let r = Response::new(418);
        assert_eq!(r.status, 418);
        assert!(r.headers.is_empty());
        assert_eq!(r.body, None);
        assert_eq!(Response::default().status, 200);
    }

    #[test]
    fn json_constructors() {
        for (resp, status) in [
            (Response::ok(json!({"a": 1})), 200),
            (Response::created(json!({"a": 1})), 201),
            (Response::accepted(json!({"a": 1})), 202),
            (Response::json(299, json!({"a": 1})), 299),
        ] {
            assert_eq!(resp.status, status);
            assert_eq!(resp.headers.len(), 1);
            assert_eq!(resp.headers["content-type"], "application/json");
            assert_eq!(body_json(&resp), json!({"a": 1}));
        }
        // any Serialize, by value or by reference
        let v = vec![1, 2, 3];
        assert_eq!(Response::ok(&v).body.as_deref(), Some("[1,2,3]"));
        assert_eq!(Response::ok("s").body.as_deref(), Some("\"s\""));
        let mut m = BTreeMap::new();
        m.insert("k", 1);
        assert_eq!(Response::ok(m).body.as_deref(), Some(r#"{"k":1}"#));
    }

    #[test]
    fn unserializable_json_becomes_500() {
        let mut bad = HashMap::new();
        bad.insert(vec![1u8], 1); // non-string map keys cannot be JSON
        let resp = Response::ok(bad);
        assert_eq!(resp.status, 500);
        let msg = body_json(&resp)["error"].as_str().unwrap().to_string();
        assert!(msg.starts_with("cannot serialize response body"), "{msg}");
    }

    #[test]
    fn text_and_html() {
        let t = Response::text(200, "hi");
        assert_eq!(t.headers["content-type"], "text/plain; charset=utf-8");
        assert_eq!(t.body.as_deref(), Some("hi"));
        let h = Response::html(201, String::from("<b>x</b>"));
        assert_eq!(h.status, 201);
        assert_eq!(h.headers["content-type"], "text/html; charset=utf-8");
        assert_eq!(h.body.as_deref(), Some("<b>x</b>"));
    }

    #[test]
    fn no_content_and_redirect() {
        let r = Response::no_content();
        assert_eq!(
            (r.status, r.body.is_none(), r.headers.len()),
            (204, true, 0)
        );
        let r = Response::redirect(301, "/new");
        assert_eq!(r.status, 301);
        assert_eq!(r.headers["location"], "/new");
        assert_eq!(r.body, None);
    }

    #[test]
    fn error_constructors() {
        let cases = [
            (Response::bad_request("m"), 400, "m"),
            (Response::unauthorized("m"), 401, "m"),
            (Response::forbidden("m"), 403, "m"),
            (Response::not_found(), 404, "Not found"),
            (Response::not_found_msg(String::from("gone")), 404, "gone"),
            (Response::conflict("m"), 409, "m"),
            (Response::internal_error("m"), 500, "m"),
            (Response::service_unavailable("m"), 503, "m"),
        ];
        for (resp, status, msg) in cases {
            assert_eq!(resp.status, status);
            assert_eq!(resp.headers["content-type"], "application/json");
            assert_eq!(body_json(&resp), json!({ "error": msg }));
        }
        // quotes and control characters are escaped
        let r = Response::bad_request("say \"hi\"\n");
        assert_eq!(body_json(&r), json!({"error": "say \"hi\"\n"}));
    }

    #[test]
    fn with_header_lowercases_and_replaces() {
        let r = Response::ok(json!(1))
            .with_header("X-Trace", "a")
            .with_header("x-trace", "b")
            .with_header("Content-Type", "application/vnd.x+json");
        assert_eq!(r.headers.len(), 2);
        assert_eq!(r.headers["x-trace"], "b");
        assert_eq!(r.headers["content-type"], "application/vnd.x+json");
        assert_eq!(r.header("X-TRACE").unwrap(), "b");
        // a mixed-case name inserted directly is still found
        let mut r = Response::new(200);
        r.headers.insert("X-Raw".into(), "1".into());
        assert_eq!(r.header("x-raw").unwrap(), "1");
        assert_eq!(r.header("nope"), None);
    }

    #[test]
    fn with_body_cors_cache() {
        let r = Response::new(200).with_body("b");
        assert_eq!(r.body.as_deref(), Some("b"));
        assert!(r.headers.is_empty());
        let r = Response::new(200).with_cors("*");
        assert_eq!(r.headers["access-control-allow-origin"], "*");
        assert!(r.headers.contains_key("access-control-allow-methods"));
        assert!(r.headers.contains_key("access-control-allow-headers"));
        assert_eq!(
            Response::new(200).with_cache(60).headers["cache-control"],
            "max-age=60"
        );
        assert_eq!(
            Response::new(200).with_cache(0).headers["cache-control"],
            "no-store"
        );
    }
}
