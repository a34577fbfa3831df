//! The frames of spec/IPC.md that this SDK speaks: `ready`, `request`,
//! `response`, and `call` / `result` for service calls.

use crate::frame::{self, FrameError, Object};
use crate::request::Request;
use crate::response::Response;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::HashMap;

/// The protocol version announced in `ready`.
///
/// ```
/// assert_eq!(rust_edge_gateway_sdk::PROTOCOL_VERSION, 1);
/// ```
pub const PROTOCOL_VERSION: u32 = 1;

/// This SDK's version, announced in `ready`.
///
/// ```
/// assert_eq!(rust_edge_gateway_sdk::SDK_VERSION, env!("CARGO_PKG_VERSION"));
/// ```
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `{"type": "ready", "protocol": 1, "sdk": "0.1.0"}`, plus
/// `"concurrency": n` from a worker that serves up to `n` requests at once
/// (async handlers); without it the gateway takes the worker as serving
/// one at a time.
#[derive(Serialize)]
pub(crate) struct Ready {
    #[serde(rename = "type")]
    kind: &'static str,
    protocol: u32,
    sdk: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency: Option<u32>,
}

pub(crate) fn ready() -> Ready {
    Ready {
        kind: "ready",
        protocol: PROTOCOL_VERSION,
        sdk: SDK_VERSION,
        concurrency: None,
    }
}

/// The `ready` of a worker serving up to `concurrency` requests at once.
#[cfg(feature = "async")]
pub(crate) fn ready_concurrent(concurrency: u32) -> Ready {
    Ready {
        concurrency: Some(concurrency),
        ..ready()
    }
}

/// `{"type": "response", "id", "status", "headers", "body"}`, or with
/// `"body_base64"` instead of `"body"` for a binary response. In `headers`,
/// `set-cookie` is a list when the response has cookies from `with_cookie`.
pub(crate) struct ResponseFrame<'a> {
    id: u64,
    resp: &'a Response,
    /// Whether the body field is written (`encode_response` appends a
    /// binary one itself).
    with_body: bool,
}

pub(crate) fn response(id: u64, resp: &Response) -> ResponseFrame<'_> {
    ResponseFrame {
        id,
        resp,
        with_body: true,
    }
}

/// The `response` frame of `resp`, length prefix included, as
/// `frame::encode_frame` would write it. A binary body is appended as it
/// is: base64 needs no JSON escaping, and serde_json's check of every byte
/// of a 22 KiB base64 string was a quarter of a worker's instructions when
/// echoing 16 KiB (callgrind). The caller has checked `response_problem`
/// (a binary body that is not base64 is answered 500 instead).
pub(crate) fn encode_response(
    id: u64,
    resp: &Response,
    max_len: usize,
) -> Result<Vec<u8>, FrameError> {
    let body = match (&resp.body, resp.base64_body) {
        (Some(body), true) => body,
        _ => return frame::encode_frame(&response(id, resp), max_len),
    };
    debug_assert!(response_problem(resp).is_none());
    let head = ResponseFrame {
        id,
        resp,
        with_body: false,
    };
    let mut buf = frame::encode_frame(&head, u32::MAX as usize)?;
    buf.pop(); // the object's closing brace
    buf.reserve(body.len() + 18);
    buf.extend_from_slice(b",\"body_base64\":\"");
    buf.extend_from_slice(body.as_bytes());
    buf.extend_from_slice(b"\"}");
    frame::seal_frame(buf, max_len)
}

impl Serialize for ResponseFrame<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let resp = self.resp;
        let mut map = s.serialize_map(Some(if self.with_body { 5 } else { 4 }))?;
        map.serialize_entry("type", "response")?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("status", &resp.status)?;
        if resp.cookies.is_empty() {
            map.serialize_entry("headers", &resp.headers)?;
        } else {
            map.serialize_entry("headers", &HeadersWithCookies(resp))?;
        }
        if self.with_body {
            match (&resp.body, resp.base64_body) {
                (Some(b), true) => map.serialize_entry("body_base64", b)?,
                (body, _) => map.serialize_entry("body", body)?,
            }
        }
        map.end()
    }
}

/// The headers map plus `"set-cookie": [header value if any, cookies...]`.
struct HeadersWithCookies<'a>(&'a Response);

impl Serialize for HeadersWithCookies<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let resp = self.0;
        let mut from_headers = None;
        let mut map = s.serialize_map(None)?;
        for (name, value) in &resp.headers {
            if name.eq_ignore_ascii_case("set-cookie") {
                from_headers = Some(value);
            } else {
                map.serialize_entry(name, value)?;
            }
        }
        map.serialize_entry("set-cookie", &CookieList(from_headers, &resp.cookies))?;
        map.end()
    }
}

struct CookieList<'a>(Option<&'a String>, &'a [String]);

impl Serialize for CookieList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.is_some() as usize + self.1.len()))?;
        for value in self.0.into_iter().chain(self.1) {
            seq.serialize_element(value)?;
        }
        seq.end()
    }
}

/// Why a response cannot be sent as it is, if it cannot: a binary response
/// whose `body` was replaced by something that is not padded base64 (the
/// gateway would answer 502).
pub(crate) fn response_problem(resp: &Response) -> Option<&'static str> {
    match &resp.body {
        Some(b) if resp.base64_body && !is_padded_base64(b) => {
            Some("the body of a binary response is not valid base64")
        }
        _ => None,
    }
}

/// Standard base64 (`+/`, `=` padding) as the gateway's Python decodes
/// it: the unused low bits of the last character are ignored.
pub(crate) const BASE64: base64::Config = base64::STANDARD.decode_allow_trailing_bits(true);

/// Whether `text` is base64 as the gateway's strict decoder
/// (`b64decode(validate=True)`) takes it: padded to a multiple of 4 and
/// nothing but the alphabet and that padding. A scan, not a decode: it runs
/// for every binary response, and decoding 16 KiB only to check it was a
/// fifth of a worker's time echoing 16 KiB bodies.
fn is_padded_base64(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() & 3 != 0 {
        return false;
    }
    let data = bytes
        .strip_suffix(b"==")
        .or_else(|| bytes.strip_suffix(b"="))
        .unwrap_or(bytes);
    // Branch-free per byte, so the compiler can compare 32 or 64 at a time.
    data.chunks(64)
        .all(|chunk| chunk.iter().fold(true, |ok, &c| ok & is_base64_char(c)))
}

fn is_base64_char(c: u8) -> bool {
    (c.wrapping_sub(b'A') < 26)
        | (c.wrapping_sub(b'a') < 26)
        | (c.wrapping_sub(b'0') < 10)
        | (c == b'+')
        | (c == b'/')
}

/// `null` or absent → `T::default()`.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A `request` frame. Only `id` is required; other fields default when
/// absent or null. Unknown fields are ignored.
#[derive(Deserialize)]
struct RequestFrame {
    id: u64,
    #[serde(default, deserialize_with = "nullable")]
    method: String,
    #[serde(default, deserialize_with = "nullable")]
    path: String,
    #[serde(default, deserialize_with = "nullable")]
    query: HashMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    headers: HashMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    params: HashMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
    #[serde(default)]
    client_ip: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    request_id: String,
}

/// `{"type": "call", "id", "request", "service", "pool", "action", "args"}`
#[derive(Serialize)]
pub(crate) struct Call<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: u64,
    /// The `request_id` of the request being served.
    pub request: &'a str,
    pub service: &'a str,
    pub pool: &'a str,
    pub action: &'a str,
    pub args: &'a Value,
}

/// The `error` of a failed `result`: `{"kind", "message"}`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CallError {
    pub kind: String,
    pub message: String,
}

/// A decoded incoming frame.
// Short-lived and moved once: boxing the request would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Incoming {
    Request {
        id: u64,
        request: Request,
    },
    /// The answer to call `id`: its `data`, or its `error`.
    Result {
        id: u64,
        outcome: Result<Value, CallError>,
    },
    /// A frame of a type this SDK does not handle (yet); ignored.
    Other(String),
}

/// Decodes an incoming frame object. A frame without a string `type`, or a
/// `request` whose fields have the wrong types, is [`FrameError::Malformed`].
pub(crate) fn decode(frame: Object) -> Result<Incoming, FrameError> {
    let kind = match frame.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        _ => return Err(FrameError::Malformed("no string \"type\" field".into())),
    };
    match kind.as_str() {
        "request" => {
            let f: RequestFrame = serde_json::from_value(Value::Object(frame))
                .map_err(|e| FrameError::Malformed(format!("bad request frame: {e}")))?;
            let body_binary = match f.body_base64 {
                None => None,
                Some(text) => Some(base64::decode_config(text, BASE64).map_err(|_| {
                    FrameError::Malformed("bad request frame: body_base64 is not base64".into())
                })?),
            };
            let request = Request {
                method: f.method,
                path: f.path,
                query: f.query,
                headers: f.headers,
                body: f.body,
                params: f.params,
                client_ip: f.client_ip,
                request_id: f.request_id,
                body_binary,
            };
            Ok(Incoming::Request { id: f.id, request })
        }
        "result" => decode_result(frame),
        _ => Ok(Incoming::Other(kind)),
    }
}

/// A `result` frame: `id` (unsigned integer) and `ok` (bool) are required;
/// `data` defaults to null. For `ok: false`, `error.kind` and
/// `error.message` default to "" and "(no message)" when absent or not
/// strings, so the call still fails with what the gateway did send.
fn decode_result(mut frame: Object) -> Result<Incoming, FrameError> {
    let id = frame.get("id").and_then(Value::as_u64).ok_or_else(|| {
        FrameError::Malformed("bad result frame: no unsigned integer \"id\"".into())
    })?;
    let outcome = match frame.get("ok") {
        Some(Value::Bool(true)) => Ok(frame.remove("data").unwrap_or(Value::Null)),
        Some(Value::Bool(false)) => {
            let error = frame.get("error");
            let text = |name: &str| {
                error
                    .and_then(|e| e.get(name))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            Err(CallError {
                kind: text("kind").unwrap_or_default(),
                message: text("message").unwrap_or_else(|| "(no message)".into()),
            })
        }
        _ => {
            return Err(FrameError::Malformed(
                "bad result frame: no boolean \"ok\"".into(),
            ))
        }
    };
    Ok(Incoming::Result { id, outcome })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Object {
        match v {
            Value::Object(o) => o,
            _ => unreachable!(),
        }
    }

    fn decode_request(v: Value) -> (u64, Request) {
        match decode(obj(v)).unwrap() {
            Incoming::Request { id, request } => (id, request),
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn ready_shape() {
        let v = serde_json::to_value(ready()).unwrap();
        assert_eq!(v, json!({"type": "ready", "protocol": 1, "sdk": "0.1.0"}));
    }

    #[test]
    fn response_shape() {
        let resp = Response::ok(json!({"a": 1})).with_header("x-k", "v");
        let v = serde_json::to_value(response(9, &resp)).unwrap();
        assert_eq!(
            v,
            json!({
                "type": "response", "id": 9, "status": 200,
                "headers": {"content-type": "application/json", "x-k": "v"},
                "body": "{\"a\":1}"
            })
        );
        let v = serde_json::to_value(response(1, &Response::no_content())).unwrap();
        assert_eq!(
            v,
            json!({"type": "response", "id": 1, "status": 204, "headers": {}, "body": null})
        );
    }

    #[test]
    fn full_request_frame() {
        let (id, req) = decode_request(json!({
            "type": "request", "id": 42, "method": "POST", "path": "/users/7",
            "query": {"q": "x"}, "headers": {"content-type": "application/json"},
            "params": {"id": "7"}, "body": "{}", "client_ip": "10.0.0.1",
            "request_id": "req-1", "some_future_field": [1, 2]
        }));
        assert_eq!(id, 42);
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/users/7");
        assert_eq!(req.query["q"], "x");
        assert!(req.is_json());
        assert_eq!(req.params["id"], "7");
        assert_eq!(req.body.as_deref(), Some("{}"));
        assert_eq!(req.client_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(req.request_id, "req-1");
        assert_eq!(req.body_binary, None);
        assert_eq!(req.body_bytes(), b"{}");
    }

    #[test]
    fn missing_optional_fields_default() {
        let (id, req) = decode_request(json!({"type": "request", "id": 1}));
        assert_eq!(id, 1);
        assert_eq!(req, Request::new("", ""));
        assert!(req.client_ip.is_none() && req.body.is_none());
    }

    #[test]
    fn null_fields_default() {
        let (_, req) = decode_request(json!({
            "type": "request", "id": 2, "method": "GET", "path": "/",
            "query": null, "headers": null, "params": null, "body": null,
            "client_ip": null, "request_id": null
        }));
        assert_eq!(req, Request::new("GET", "/"));
    }

    #[test]
    fn binary_body_is_decoded() {
        let (_, req) = decode_request(json!({
            "type": "request", "id": 3, "body": null, "body_base64": "/wAB"
        }));
        assert_eq!(req.body, None);
        assert_eq!(req.body_bytes(), [0xff, 0x00, 0x01]);
        let (_, req) = decode_request(json!({
            "type": "request", "id": 3, "body": null, "body_base64": null
        }));
        assert!(req.body_bytes().is_empty());
        // padding may be left out
        for (text, bytes) in [("Zm9vYg==", &b"foob"[..]), ("Zm9vYg", b"foob"), ("", b"")] {
            let (_, req) = decode_request(json!({
                "type": "request", "id": 3, "body_base64": text
            }));
            assert_eq!(req.body_bytes(), bytes, "{text:?}");
        }
        for text in [
            "!!",
            "Z",
            "Zg===",
            "Z===",
            "Zm9v\n",
            "Zm 9v",
            "Zm9-",
            "Zm9_",
            "=Zm9",
            "Zm=v",
            "Zg==Zm9v",
            "hello world",
        ] {
            let bad = decode(obj(
                json!({"type": "request", "id": 1, "body_base64": text}),
            ));
            match bad {
                Err(FrameError::Malformed(m)) => assert_eq!(
                    m, "bad request frame: body_base64 is not base64",
                    "{text:?}"
                ),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn encode_response_writes_what_serde_would() {
        // The appended binary body gives the same JSON as serializing it.
        let binary = Response::binary(201, [0u8, 1, 2, 250, 251, 252, 253], "x/y")
            .with_header("X-A", "b\"c")
            .with_cookie("k=v");
        let text = Response::text(200, "caf\u{e9} \"quoted\"\n");
        for resp in [
            binary,
            text,
            Response::no_content(),
            Response::binary(200, b"", "x/y"),
        ] {
            let ours = encode_response(7, &resp, 1 << 20).unwrap();
            let serde = frame::encode_frame(&response(7, &resp), 1 << 20).unwrap();
            assert_eq!(ours[..4], (ours.len() as u32 - 4).to_be_bytes());
            let ours: Value = serde_json::from_slice(&ours[4..]).unwrap();
            let serde: Value = serde_json::from_slice(&serde[4..]).unwrap();
            assert_eq!(ours, serde);
        }
    }

    #[test]
    fn encode_response_keeps_the_frame_cap() {
        let resp = Response::binary(200, vec![7u8; 3000], "x/y");
        match encode_response(1, &resp, 1000) {
            Err(FrameError::TooLarge { len, max }) => assert!(len > 4000 && max == 1000),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn binary_response_frame() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        let resp = Response::binary(200, &bytes, "application/octet-stream");
        let v = serde_json::to_value(response(4, &resp)).unwrap();
        let o = v.as_object().unwrap();
        assert!(!o.contains_key("body"), "{v}");
        let b64 = o["body_base64"].as_str().unwrap();
        assert_eq!(base64::decode(b64).unwrap(), bytes);
        assert_eq!(
            v["headers"],
            json!({"content-type": "application/octet-stream"})
        );
        assert_eq!(response_problem(&resp), None);
        // A binary response whose body was emptied sends `body: null`.
        let mut empty = resp.clone();
        empty.body = None;
        let v = serde_json::to_value(response(4, &empty)).unwrap();
        assert_eq!(v["body"], Value::Null);
        assert!(v.get("body_base64").is_none());
        // with_body makes it text again
        let v = serde_json::to_value(response(4, &resp.clone().with_body("t"))).unwrap();
        assert_eq!(
            (v["body"].as_str(), v.get("body_base64")),
            (Some("t"), None)
        );
        // a body that is not base64 any more is caught before sending
        let mut broken = resp;
        for body in [
            "not base64!",
            "Zg",
            "Zg=",
            "Zg===",
            "Z===",
            "Zm9v\n",
            "Zm9-",
            "=Zm9",
            "Zm=v",
            "Zg==Zm9v",
            "====",
            "Zm9v====",
        ] {
            broken.body = Some(body.into());
            assert_eq!(
                response_problem(&broken),
                Some("the body of a binary response is not valid base64"),
                "{body:?}"
            );
        }
        // padded base64, with unused bits set or not, goes out as it is
        for body in ["", "Zg==", "Zh==", "Zm9vYmFy", "+/9=", "09AZaz+/"] {
            broken.body = Some(body.into());
            assert_eq!(response_problem(&broken), None, "{body:?}");
        }
    }

    #[test]
    fn cookies_become_a_list() {
        let resp = Response::no_content()
            .with_header("X-A", "1")
            .with_cookie("a=1; Path=/")
            .with_cookie("b=2");
        let v = serde_json::to_value(response(1, &resp)).unwrap();
        assert_eq!(
            v["headers"],
            json!({"x-a": "1", "set-cookie": ["a=1; Path=/", "b=2"]})
        );
        // a set-cookie header comes first in the list
        let resp = resp.with_header("Set-Cookie", "first=0");
        let v = serde_json::to_value(response(1, &resp)).unwrap();
        assert_eq!(
            v["headers"]["set-cookie"],
            json!(["first=0", "a=1; Path=/", "b=2"])
        );
        // without with_cookie a set-cookie header stays a string
        let v = serde_json::to_value(response(
            1,
            &Response::new(200).with_header("set-cookie", "x=1"),
        ))
        .unwrap();
        assert_eq!(v["headers"], json!({"set-cookie": "x=1"}));
    }

    #[test]
    fn unknown_types_are_other() {
        match decode(obj(json!({"type": "cancel", "id": 1}))).unwrap() {
            Incoming::Other(t) => assert_eq!(t, "cancel"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn call_shape() {
        let args = json!({"sql": "SELECT ?", "params": [1]});
        let call = Call {
            kind: "call",
            id: 3,
            request: "req-1",
            service: "db",
            pool: "main",
            action: "query",
            args: &args,
        };
        assert_eq!(
            serde_json::to_value(call).unwrap(),
            json!({"type": "call", "id": 3, "request": "req-1", "service": "db",
                   "pool": "main", "action": "query", "args": args})
        );
    }

    #[test]
    fn result_frames() {
        let result = |v: Value| match decode(obj(v)).unwrap() {
            Incoming::Result { id, outcome } => (id, outcome),
            other => panic!("not a result: {other:?}"),
        };
        assert_eq!(
            result(json!({"type": "result", "id": 4, "ok": true, "data": [1]})),
            (4, Ok(json!([1])))
        );
        assert_eq!(
            result(json!({"type": "result", "id": 4, "ok": true})),
            (4, Ok(Value::Null))
        );
        let err = |kind: &str, message: &str| {
            Err(CallError {
                kind: kind.into(),
                message: message.into(),
            })
        };
        assert_eq!(
            result(json!({"type": "result", "id": 5, "ok": false,
                          "error": {"kind": "RedisError", "message": "WRONGTYPE"}})),
            (5, err("RedisError", "WRONGTYPE"))
        );
        assert_eq!(
            result(json!({"type": "result", "id": 6, "ok": false})),
            (6, err("", "(no message)"))
        );
        assert_eq!(
            result(
                json!({"type": "result", "id": 6, "ok": false, "error": {"kind": 1, "message": null}})
            ),
            (6, err("", "(no message)"))
        );
        for v in [
            json!({"type": "result", "ok": true}),
            json!({"type": "result", "id": -1, "ok": true}),
            json!({"type": "result", "id": "1", "ok": true}),
            json!({"type": "result", "id": 1}),
            json!({"type": "result", "id": 1, "ok": "yes"}),
        ] {
            assert!(
                matches!(decode(obj(v.clone())), Err(FrameError::Malformed(_))),
                "{v}"
            );
        }
    }

    #[test]
    fn malformed_frames() {
        for v in [
            json!({}),
            json!({"type": 5}),
            json!({"type": "request"}),
            json!({"type": "request", "id": -1}),
            json!({"type": "request", "id": "1"}),
            json!({"type": "request", "id": 1, "headers": {"a": 1}}),
            json!({"type": "request", "id": 1, "query": []}),
            json!({"type": "request", "id": 1, "body": 5}),
        ] {
            assert!(
                matches!(decode(obj(v.clone())), Err(FrameError::Malformed(_))),
                "{v}"
            );
        }
    }
}
