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
/// | [`binary(status, bytes, content_type)`](Self::binary) | any | any bytes (sent as `body_base64`) |
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
///
/// Builders: [`with_header`](Self::with_header), [`with_body`](Self::with_body),
/// [`with_cors`](Self::with_cors), [`with_cache`](Self::with_cache), and
/// [`with_cookie`](Self::with_cookie) for any number of `Set-Cookie` headers.
///
/// Besides the three public fields a `Response` carries two private things:
/// whether [`body`](Self::body) is base64 text standing for binary bytes
/// (see [`binary`](Self::binary)), and the cookies of
/// [`with_cookie`](Self::with_cookie). So a `Response` is made with its
/// constructors, not with a struct literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Response headers (names in lower case when set through the builders).
    pub headers: HashMap<String, String>,
    /// Response body; `None` sends no body. For a response made by
    /// [`binary`](Self::binary) this is the **base64** text of the bytes
    /// (see [`is_binary`](Self::is_binary) and [`body_bytes`](Self::body_bytes)).
    pub body: Option<String>,
    /// `body` is base64 for binary bytes: sent as `body_base64`.
    pub(crate) base64_body: bool,
    /// `Set-Cookie` values from `with_cookie`, in order.
    pub(crate) cookies: Vec<String>,
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
            base64_body: false,
            cookies: Vec::new(),
        }
    }

    /// `status` with one header already set (names given in lower case).
    fn with_type(status: u16, content_type: impl Into<String>, body: String) -> Self {
        let mut headers = HashMap::with_capacity(1);
        headers.insert("content-type".to_string(), content_type.into());
        Response {
            headers,
            body: Some(body),
            ..Response::new(status)
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
            Ok(body) => Self::with_type(status, JSON, body),
            Err(e) => Self::error_json(500, &format!("cannot serialize response body: {e}")),
        }
    }

    /// `{"error": message}` as JSON with `status`.
    pub(crate) fn error_json(status: u16, message: &str) -> Self {
        let body = serde_json::json!({ "error": message }).to_string();
        Self::with_type(status, JSON, body)
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
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::prelude::*;
    /// let resp = Response::created(json!({"id": 1})).with_header("location", "/items/1");
    /// assert_eq!(resp.status, 201);
    /// ```
    pub fn created<T: Serialize>(body: T) -> Self {
        Self::json(201, body)
    }

    /// 202 with a JSON body.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::prelude::*;
    /// let resp = Response::accepted(json!({"job": "j-17", "state": "queued"}));
    /// assert_eq!(resp.status, 202);
    /// ```
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
        Self::with_type(status, "text/plain; charset=utf-8", body.into())
    }

    /// A `text/html; charset=utf-8` response.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Response;
    /// let resp = Response::html(200, "<h1>Hello</h1>");
    /// assert_eq!(resp.headers["content-type"], "text/html; charset=utf-8");
    /// ```
    pub fn html(status: u16, body: impl Into<String>) -> Self {
        Self::with_type(status, "text/html; charset=utf-8", body.into())
    }

    /// A response with any bytes as its body and `content_type`.
    ///
    /// The bytes travel to the gateway base64-encoded (as `body_base64` in
    /// the response frame) and reach the client byte for byte. The public
    /// [`body`](Self::body) field of such a response holds that base64 text;
    /// [`body_bytes`](Self::body_bytes) gives the bytes back. Replacing the
    /// body with [`with_body`](Self::with_body) makes it a text response
    /// again.
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// let png: Vec<u8> = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    /// let resp = Response::binary(200, &png, "image/png")
    ///     .with_header("Content-Disposition", "inline; filename=\"dot.png\"");
    /// assert!(resp.is_binary());
    /// assert_eq!(resp.headers["content-type"], "image/png");
    /// assert_eq!(resp.body.as_deref(), Some("iVBORw0KGgo="));
    /// assert_eq!(resp.body_bytes(), png);
    /// ```
    pub fn binary(status: u16, bytes: impl AsRef<[u8]>, content_type: impl Into<String>) -> Self {
        Response {
            base64_body: true,
            ..Self::with_type(status, content_type, base64::encode(bytes.as_ref()))
        }
    }

    /// Whether [`body`](Self::body) is the base64 text of a binary body
    /// (made by [`binary`](Self::binary)).
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Response;
    /// assert!(Response::binary(200, [0u8, 1], "application/octet-stream").is_binary());
    /// assert!(!Response::text(200, "AAE=").is_binary());
    /// ```
    pub fn is_binary(&self) -> bool {
        self.base64_body
    }

    /// The body as the bytes the client receives: the decoded bytes of a
    /// [`binary`](Self::binary) response, else the text body's bytes, else
    /// empty. Handy in tests.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Response;
    /// assert_eq!(Response::binary(200, b"\x00\xff", "x/y").body_bytes(), [0x00, 0xff]);
    /// assert_eq!(Response::text(200, "hi").body_bytes(), b"hi");
    /// assert!(Response::no_content().body_bytes().is_empty());
    /// ```
    pub fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            None => Vec::new(),
            Some(b) if self.base64_body => {
                base64::decode_config(b, crate::protocol::BASE64).unwrap_or_default()
            }
            Some(b) => b.as_bytes().to_vec(),
        }
    }

    /// The `Set-Cookie` values added with [`with_cookie`](Self::with_cookie).
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Response;
    /// let resp = Response::no_content().with_cookie("a=1").with_cookie("b=2");
    /// assert_eq!(resp.cookies(), ["a=1", "b=2"]);
    /// ```
    pub fn cookies(&self) -> &[String] {
        &self.cookies
    }

    /// 204, no body.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Response;
    /// let resp = Response::no_content();
    /// assert_eq!((resp.status, resp.body), (204, None));
    /// ```
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
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Response;
    /// let resp = Response::bad_request("name is required");
    /// assert_eq!(resp.status, 400);
    /// assert_eq!(resp.body.as_deref(), Some(r#"{"error":"name is required"}"#));
    /// ```
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::error_json(400, &message.into())
    }

    /// 401 with `{"error": message}`.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Response;
    /// let resp = Response::unauthorized("missing token");
    /// assert_eq!(resp.status, 401);
    /// assert_eq!(resp.body.as_deref(), Some(r#"{"error":"missing token"}"#));
    /// ```
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::error_json(401, &message.into())
    }

    /// 403 with `{"error": message}`.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Response;
    /// let resp = Response::forbidden("admins only");
    /// assert_eq!(resp.status, 403);
    /// assert_eq!(resp.body.as_deref(), Some(r#"{"error":"admins only"}"#));
    /// ```
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::error_json(403, &message.into())
    }

    /// 404 with `{"error": "Not found"}`.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Response;
    /// assert_eq!(Response::not_found().body.as_deref(), Some(r#"{"error":"Not found"}"#));
    /// ```
    pub fn not_found() -> Self {
        Self::error_json(404, "Not found")
    }

    /// 404 with `{"error": message}`.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Response;
    /// let resp = Response::not_found_msg("no item 7");
    /// assert_eq!((resp.status, resp.body.as_deref()), (404, Some(r#"{"error":"no item 7"}"#)));
    /// ```
    pub fn not_found_msg(message: impl Into<String>) -> Self {
        Self::error_json(404, &message.into())
    }

    /// 409 with `{"error": message}`.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Response;
    /// let resp = Response::conflict("name taken");
    /// assert_eq!(resp.status, 409);
    /// assert_eq!(resp.body.as_deref(), Some(r#"{"error":"name taken"}"#));
    /// ```
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::error_json(409, &message.into())
    }

    /// 500 with `{"error": message}`.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Response;
    /// let resp = Response::internal_error("database down");
    /// assert_eq!(resp.status, 500);
    /// assert_eq!(resp.body.as_deref(), Some(r#"{"error":"database down"}"#));
    /// ```
    pub fn internal_error(message: impl Into<String>) -> Self {
        Self::error_json(500, &message.into())
    }

    /// 503 with `{"error": message}`.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Response;
    /// let resp = Response::service_unavailable("try again later");
    /// assert_eq!(resp.status, 503);
    /// assert_eq!(resp.body.as_deref(), Some(r#"{"error":"try again later"}"#));
    /// ```
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

    /// Sets a text body (leaves headers alone). On a [`binary`](Self::binary)
    /// response this replaces the bytes and makes it a text response.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::Response;
    /// let resp = Response::new(200)
    ///     .with_header("content-type", "text/csv")
    ///     .with_body("a,b\n1,2\n");
    /// assert_eq!(resp.body.as_deref(), Some("a,b\n1,2\n"));
    /// ```
    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self.base64_body = false;
        self
    }

    /// Adds CORS headers allowing `origin` (`"*"` for any):
    /// `access-control-allow-origin: origin`,
    /// `access-control-allow-methods: GET, POST, PUT, PATCH, DELETE, OPTIONS`,
    /// `access-control-allow-headers: Content-Type, Authorization`, and, for
    /// a specific origin, `vary: Origin` (added to an existing `vary`) so
    /// caches keep answers for different origins apart.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::prelude::*;
    /// let resp = Response::ok(json!([])).with_cors("https://app.example");
    /// assert_eq!(resp.headers["access-control-allow-origin"], "https://app.example");
    /// assert_eq!(resp.headers["vary"], "Origin");
    ///
    /// let any = Response::no_content().with_cors("*");
    /// assert_eq!(any.headers["access-control-allow-methods"], "GET, POST, PUT, PATCH, DELETE, OPTIONS");
    /// assert!(!any.headers.contains_key("vary"));
    /// ```
    pub fn with_cors(self, origin: impl Into<String>) -> Self {
        let origin = origin.into();
        let specific = origin != "*";
        let resp = self
            .with_header("access-control-allow-origin", origin)
            .with_header(
                "access-control-allow-methods",
                "GET, POST, PUT, PATCH, DELETE, OPTIONS",
            )
            .with_header(
                "access-control-allow-headers",
                "Content-Type, Authorization",
            );
        if !specific {
            return resp;
        }
        let vary = match resp.header("vary") {
            None => "Origin".to_string(),
            Some(v)
                if v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("origin")) =>
            {
                v.clone()
            }
            Some(v) => format!("{v}, Origin"),
        };
        resp.with_header("vary", vary)
    }

    /// Sets `cache-control: public, max-age=N`; `max_age_seconds == 0`
    /// sets `cache-control: no-store` (do not cache at all).
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::prelude::*;
    /// let resp = Response::ok(json!({"v": 1})).with_cache(3600);
    /// assert_eq!(resp.headers["cache-control"], "public, max-age=3600");
    /// assert_eq!(Response::ok(json!(1)).with_cache(0).headers["cache-control"], "no-store");
    /// ```
    pub fn with_cache(self, max_age_seconds: u32) -> Self {
        let value = match max_age_seconds {
            0 => "no-store".to_string(),
            n => format!("public, max-age={n}"),
        };
        self.with_header("cache-control", value)
    }

    /// Adds a `Set-Cookie` header; call it once per cookie. `value` is the
    /// whole header value (`name=value` and attributes). The cookies are sent
    /// after a `set-cookie` set with [`with_header`](Self::with_header), as
    /// one header line each; they are kept apart from
    /// [`headers`](Self::headers) (see [`cookies`](Self::cookies)).
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::prelude::*;
    /// let resp = Response::ok(json!({"logged_in": true}))
    ///     .with_cookie("session=abc123; Path=/; HttpOnly; Secure; SameSite=Lax")
    ///     .with_cookie("theme=dark; Path=/; Max-Age=31536000");
    /// assert_eq!(resp.cookies().len(), 2);
    /// assert!(!resp.headers.contains_key("set-cookie"));
    /// ```
    pub fn with_cookie(mut self, value: impl Into<String>) -> Self {
        self.cookies.push(value.into());
        self
    }

    /// A header's value, looked up case-insensitively.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::prelude::*;
    /// let resp = Response::ok(json!(1));
    /// assert_eq!(resp.header("Content-Type").map(String::as_str), Some("application/json"));
    /// ```
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
        let methods = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
        let allowed = "Content-Type, Authorization";
        for (resp, origin, vary) in [
            (Response::new(200).with_cors("*"), "*", None),
            (
                Response::new(200).with_cors("https://a.example"),
                "https://a.example",
                Some("Origin"),
            ),
            (
                Response::new(200)
                    .with_header("Vary", "Accept-Encoding")
                    .with_cors(String::from("https://a.example")),
                "https://a.example",
                Some("Accept-Encoding, Origin"),
            ),
            (
                Response::new(200)
                    .with_cors("https://a.example")
                    .with_cors("https://b.example"),
                "https://b.example",
                Some("Origin"),
            ),
            (
                Response::new(200)
                    .with_header("vary", "origin")
                    .with_cors("https://a"),
                "https://a",
                Some("origin"),
            ),
        ] {
            assert_eq!(resp.headers["access-control-allow-origin"], origin);
            assert_eq!(resp.headers["access-control-allow-methods"], methods);
            assert_eq!(resp.headers["access-control-allow-headers"], allowed);
            assert_eq!(resp.headers.get("vary").map(String::as_str), vary);
        }
        for (age, value) in [
            (60, "public, max-age=60"),
            (1, "public, max-age=1"),
            (0, "no-store"),
        ] {
            let r = Response::new(200).with_cache(age);
            assert_eq!(r.headers["cache-control"], value);
            assert_eq!(r.headers.len(), 1);
        }
        // with_cache replaces an earlier Cache-Control in any case
        let r = Response::new(200)
            .with_header("Cache-Control", "private")
            .with_cache(5);
        assert_eq!(r.headers.len(), 1);
    }

    #[test]
    fn binary_bodies() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        for (resp, ct) in [
            (
                Response::binary(200, &bytes, "application/octet-stream"),
                "application/octet-stream",
            ),
            (
                Response::binary(206, bytes.clone(), String::from("image/png")),
                "image/png",
            ),
            (Response::binary(200, &bytes[..], "x/y"), "x/y"),
        ] {
            assert!(resp.is_binary());
            assert_eq!(resp.headers["content-type"], ct);
            assert_eq!(resp.body_bytes(), bytes);
            assert_eq!(
                base64::decode(resp.body.as_deref().unwrap()).unwrap(),
                bytes
            );
        }
        let empty = Response::binary(200, b"", "x/y");
        assert_eq!(empty.body.as_deref(), Some(""));
        assert!(empty.body_bytes().is_empty());
        let text = Response::binary(200, [1u8, 2], "x/y").with_body("plain");
        assert!(!text.is_binary());
        assert_eq!(text.body_bytes(), b"plain");
        // headers and other builders keep it binary
        let r = Response::binary(200, [7u8], "x/y")
            .with_header("x-a", "1")
            .with_cache(9);
        assert!(r.is_binary());
        assert_eq!(r.body_bytes(), [7]);
        assert!(!Response::ok(1).is_binary());
    }

    #[test]
    fn binary_bodies_are_standard_padded_base64() {
        // RFC 4648 §10
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let resp = Response::binary(200, plain, "x/y");
            assert_eq!(resp.body.as_deref(), Some(encoded));
            assert_eq!(resp.body_bytes(), plain.as_bytes());
        }
        assert_eq!(
            Response::binary(200, [0xfb, 0xff, 0xfe], "x/y")
                .body
                .as_deref(),
            Some("+//+")
        );
        // every byte at every offset, every remainder length
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for len in 0..all.len() {
            assert_eq!(
                Response::binary(200, &all[..len], "x/y").body_bytes(),
                &all[..len]
            );
        }
        // a body that is not base64 any more gives no bytes
        let mut r = Response::binary(200, b"abc", "x/y");
        r.body = Some("not base64!".into());
        assert!(r.body_bytes().is_empty());
    }

    #[test]
    fn cookies_accumulate() {
        let r = Response::ok(json!({}))
            .with_cookie("a=1")
            .with_cookie(String::from("b=2; HttpOnly"));
        assert_eq!(r.cookies(), ["a=1", "b=2; HttpOnly"]);
        assert_eq!(r.headers.len(), 1, "cookies are not in the headers map");
        assert!(Response::new(200).cookies().is_empty());
        // equality sees cookies and the binary marker
        assert_ne!(Response::new(200).with_cookie("a=1"), Response::new(200));
        assert_ne!(
            Response::binary(200, b"", "t"),
            Response::new(200)
                .with_header("content-type", "t")
                .with_body("")
        );
    }
}
