//! The frames of spec/IPC.md that this SDK speaks: `ready`, `request`, `response`.
//!
//! Later additions (`call` / `result` for service calls) belong here too.

use crate::frame::{FrameError, Object};
use crate::request::Request;
use crate::response::Response;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::HashMap;

/// The protocol version announced in `ready`.
pub const PROTOCOL_VERSION: u32 = 1;

/// This SDK's version, announced in `ready`.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `{"type": "ready", "protocol": 1, "sdk": "0.1.0"}`
#[derive(Serialize)]
pub(crate) struct Ready {
    #[serde(rename = "type")]
    kind: &'static str,
    protocol: u32,
    sdk: &'static str,
}

pub(crate) fn ready() -> Ready {
    Ready {
        kind: "ready",
        protocol: PROTOCOL_VERSION,
        sdk: SDK_VERSION,
    }
}

/// `{"type": "response", "id", "status", "headers", "body"}`
#[derive(Serialize)]
pub(crate) struct ResponseFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: u64,
    status: u16,
    headers: &'a HashMap<String, String>,
    body: Option<&'a str>,
}

pub(crate) fn response(id: u64, resp: &Response) -> ResponseFrame<'_> {
    ResponseFrame {
        kind: "response",
        id,
        status: resp.status,
        headers: &resp.headers,
        body: resp.body.as_deref(),
    }
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

/// A decoded incoming frame.
// Short-lived and moved once: boxing the request would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Incoming {
    Request {
        id: u64,
        request: Request,
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
            let request = Request {
                method: f.method,
                path: f.path,
                query: f.query,
                headers: f.headers,
                body: f.body,
                params: f.params,
                client_ip: f.client_ip,
                request_id: f.request_id,
                body_base64: f.body_base64,
            };
            Ok(Incoming::Request { id: f.id, request })
        }
        _ => Ok(Incoming::Other(kind)),
    }
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
        assert_eq!(req.body_base64, None);
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
    fn binary_body_is_kept_private() {
        let (_, req) = decode_request(json!({
            "type": "request", "id": 3, "body": null, "body_base64": "/w=="
        }));
        assert_eq!(req.body, None);
        assert_eq!(req.body_base64.as_deref(), Some("/w=="));
    }

    #[test]
    fn unknown_types_are_other() {
        match decode(obj(json!({"type": "result", "id": 1}))).unwrap() {
            Incoming::Other(t) => assert_eq!(t, "result"),
            other => panic!("{other:?}"),
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
