//! Length-prefixed JSON framing, as in the gateway's `spec/IPC.md`.
//!
//! Every frame is a 4-byte unsigned big-endian length `N` followed by `N`
//! bytes of UTF-8 JSON holding one object.
//!
//! ```
//! use rust_edge_gateway_sdk::frame::{read_frame, write_frame, MAX_FRAME_LEN};
//! use serde_json::json;
//!
//! let mut wire = Vec::new();
//! write_frame(&mut wire, &json!({"type": "ready", "protocol": 1})).unwrap();
//! // 4-byte big-endian length, then the JSON payload
//! assert_eq!(wire[..4], ((wire.len() - 4) as u32).to_be_bytes());
//!
//! let mut input = &wire[..];
//! let frame = read_frame(&mut input, MAX_FRAME_LEN).unwrap().unwrap();
//! assert_eq!(frame["type"], "ready");
//! // A clean end of stream at a frame boundary is `Ok(None)`.
//! assert!(read_frame(&mut input, MAX_FRAME_LEN).unwrap().is_none());
//! ```

use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};

/// The default cap on an incoming frame's payload: 16 MiB, the gateway's
/// default. The SDK also refuses to send a response frame larger than this.
///
/// ```
/// assert_eq!(rust_edge_gateway_sdk::frame::MAX_FRAME_LEN, 16 << 20);
/// ```
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// A decoded frame: one JSON object.
///
/// ```
/// use rust_edge_gateway_sdk::frame::Object;
/// let mut frame = Object::new();
/// frame.insert("type".into(), "ready".into());
/// assert_eq!(frame["type"], "ready");
/// ```
pub type Object = Map<String, Value>;

/// Why a frame could not be read or written.
///
/// ```
/// use rust_edge_gateway_sdk::frame::{read_frame, FrameError};
///
/// let mut cut: &[u8] = &[0, 0, 0, 10, b'{'];
/// match read_frame(&mut cut, 1024) {
///     Err(e @ FrameError::Truncated { expected: 10, received: 1 }) => {
///         assert_eq!(e.to_string(), "stream ended inside a frame (1 of 10 bytes)");
///     }
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum FrameError {
    /// The underlying reader or writer failed.
    Io(io::Error),
    /// The stream ended inside a frame (`received` of `expected` bytes of
    /// the length prefix or of the payload).
    Truncated {
        /// bytes the current part needed
        expected: usize,
        /// bytes that arrived before the end of the stream
        received: usize,
    },
    /// The length prefix announced more than the cap (or, when writing,
    /// the payload is larger than a frame may be).
    TooLarge {
        /// announced or encoded payload length
        len: usize,
        /// the cap in force
        max: usize,
    },
    /// The payload is not valid UTF-8 JSON (or a value could not be encoded).
    Json(serde_json::Error),
    /// The payload is valid JSON but not an object.
    NotAnObject,
    /// The frame is an object but not a valid frame (no `type`, bad fields).
    Malformed(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "frame I/O error: {e}"),
            FrameError::Truncated { expected, received } => write!(
                f,
                "stream ended inside a frame ({received} of {expected} bytes)"
            ),
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the {max}-byte limit")
            }
            FrameError::Json(e) => write!(f, "frame is not valid JSON: {e}"),
            FrameError::NotAnObject => f.write_str("frame is not a JSON object"),
            FrameError::Malformed(m) => write!(f, "malformed frame: {m}"),
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FrameError::Io(e) => Some(e),
            FrameError::Json(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads one frame.
///
/// Returns `Ok(None)` when the stream ends cleanly before a new frame, and an
/// error when it ends inside one, when the announced length exceeds `max_len`
/// (checked before anything is buffered), or when the payload is not a UTF-8
/// JSON object.
///
/// ```
/// use rust_edge_gateway_sdk::frame::{read_frame, FrameError, MAX_FRAME_LEN};
///
/// let mut wire: &[u8] = b"\0\0\0\x02{}";
/// assert!(read_frame(&mut wire, MAX_FRAME_LEN).unwrap().unwrap().is_empty());
/// assert!(read_frame(&mut wire, MAX_FRAME_LEN).unwrap().is_none()); // clean end
///
/// let mut array: &[u8] = b"\0\0\0\x02[]";
/// assert!(matches!(read_frame(&mut array, MAX_FRAME_LEN), Err(FrameError::NotAnObject)));
/// ```
pub fn read_frame<R: Read + ?Sized>(
    reader: &mut R,
    max_len: usize,
) -> Result<Option<Object>, FrameError> {
    let mut prefix = [0u8; 4];
    let got = read_full(reader, &mut prefix)?;
    if got == 0 {
        return Ok(None);
    }
    if got < prefix.len() {
        return Err(FrameError::Truncated {
            expected: prefix.len(),
            received: got,
        });
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max_len {
        return Err(FrameError::TooLarge { len, max: max_len });
    }
    let mut payload = vec![0u8; len];
    let got = read_full(reader, &mut payload)?;
    if got < len {
        return Err(FrameError::Truncated {
            expected: len,
            received: got,
        });
    }
    match serde_json::from_slice(&payload) {
        Ok(Value::Object(object)) => Ok(Some(object)),
        Ok(_) => Err(FrameError::NotAnObject),
        Err(e) => Err(FrameError::Json(e)),
    }
}

/// Encodes `frame` as JSON behind its 4-byte big-endian length.
///
/// Fails with [`FrameError::TooLarge`] when the payload exceeds `max_len`.
///
/// ```
/// use rust_edge_gateway_sdk::frame::{encode_frame, FrameError};
/// use serde_json::json;
///
/// let bytes = encode_frame(&json!({"a": 1}), 1024).unwrap();
/// assert_eq!(bytes, b"\0\0\0\x07{\"a\":1}");
/// assert!(matches!(encode_frame(&json!({"a": 1}), 3), Err(FrameError::TooLarge { len: 7, max: 3 })));
/// ```
pub fn encode_frame<T: Serialize + ?Sized>(
    frame: &T,
    max_len: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut buf, frame).map_err(FrameError::Json)?;
    seal_frame(buf, max_len)
}

/// Fills in the length prefix of `buf` (4 placeholder bytes, then the
/// payload), or fails with [`FrameError::TooLarge`] past `max_len`.
pub(crate) fn seal_frame(mut buf: Vec<u8>, max_len: usize) -> Result<Vec<u8>, FrameError> {
    let len = buf.len() - 4;
    let max = max_len.min(u32::MAX as usize);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

/// Writes one frame (in a single `write_all`) and flushes the writer.
///
/// ```
/// use rust_edge_gateway_sdk::frame::write_frame;
/// use serde_json::json;
///
/// let mut out = Vec::new();
/// write_frame(&mut out, &json!({"type": "ping"})).unwrap();
/// assert_eq!(&out[..4], &[0, 0, 0, 15]);
/// ```
pub fn write_frame<W: Write + ?Sized, T: Serialize + ?Sized>(
    writer: &mut W,
    frame: &T,
) -> Result<(), FrameError> {
    let buf = encode_frame(frame, u32::MAX as usize)?;
    write_encoded(writer, &buf)
}

/// Writes bytes produced by [`encode_frame`] and flushes.
pub(crate) fn write_encoded<W: Write + ?Sized>(
    writer: &mut W,
    buf: &[u8],
) -> Result<(), FrameError> {
    writer.write_all(buf)?;
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A reader that hands out one byte per `read` call.
    struct OneByte<'a>(&'a [u8]);

    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    fn raw(len: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = len.to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn round_trip_several_frames() {
        let mut wire = Vec::new();
        write_frame(&mut wire, &json!({"type": "a", "n": 1})).unwrap();
        write_frame(&mut wire, &json!({"type": "b", "s": "héllo ✓"})).unwrap();
        let mut input = &wire[..];
        let a = read_frame(&mut input, MAX_FRAME_LEN).unwrap().unwrap();
        let b = read_frame(&mut input, MAX_FRAME_LEN).unwrap().unwrap();
        assert_eq!(Value::Object(a), json!({"type": "a", "n": 1}));
        assert_eq!(Value::Object(b), json!({"type": "b", "s": "héllo ✓"}));
        assert!(read_frame(&mut input, MAX_FRAME_LEN).unwrap().is_none());
    }

    #[test]
    fn prefix_is_big_endian_payload_length() {
        let buf = encode_frame(&json!({"k": "v"}), MAX_FRAME_LEN).unwrap();
        let payload = br#"{"k":"v"}"#;
        assert_eq!(buf, raw(payload.len() as u32, payload));
    }

    #[test]
    fn reads_byte_by_byte() {
        let mut wire = Vec::new();
        for i in 0..3 {
            write_frame(&mut wire, &json!({"type": "x", "i": i})).unwrap();
        }
        let mut reader = OneByte(&wire);
        for i in 0..3 {
            let f = read_frame(&mut reader, MAX_FRAME_LEN).unwrap().unwrap();
            assert_eq!(f["i"], i);
        }
        assert!(read_frame(&mut reader, MAX_FRAME_LEN).unwrap().is_none());
    }

    #[test]
    fn empty_stream_is_clean_eof() {
        let mut input: &[u8] = &[];
        assert!(read_frame(&mut input, MAX_FRAME_LEN).unwrap().is_none());
    }

    #[test]
    fn eof_inside_prefix_is_an_error() {
        let mut input: &[u8] = &[0, 0];
        match read_frame(&mut input, MAX_FRAME_LEN) {
            Err(FrameError::Truncated {
                expected: 4,
                received: 2,
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn eof_inside_payload_is_an_error() {
        let wire = raw(10, b"{\"a\":");
        match read_frame(&mut &wire[..], MAX_FRAME_LEN) {
            Err(FrameError::Truncated {
                expected: 10,
                received: 5,
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn oversized_length_is_refused_before_reading() {
        // Only the prefix is present: the cap must be checked first.
        let wire = raw(1000, b"");
        match read_frame(&mut &wire[..], 999) {
            Err(FrameError::TooLarge {
                len: 1000,
                max: 999,
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
        let wire = raw(u32::MAX, b"");
        assert!(matches!(
            read_frame(&mut &wire[..], MAX_FRAME_LEN),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn frame_at_the_cap_is_accepted() {
        let wire = raw(2, b"{}");
        assert!(read_frame(&mut &wire[..], 2).unwrap().is_some());
    }

    #[test]
    fn non_object_json_is_refused() {
        for payload in [&b"[1,2]"[..], b"\"s\"", b"42", b"null"] {
            let wire = raw(payload.len() as u32, payload);
            assert!(matches!(
                read_frame(&mut &wire[..], MAX_FRAME_LEN),
                Err(FrameError::NotAnObject)
            ));
        }
    }

    #[test]
    fn invalid_json_and_utf8_are_refused() {
        for payload in [&b"{nope"[..], b"", b"{\"a\":\"\xff\"}"] {
            let wire = raw(payload.len() as u32, payload);
            assert!(matches!(
                read_frame(&mut &wire[..], MAX_FRAME_LEN),
                Err(FrameError::Json(_))
            ));
        }
    }

    #[test]
    fn encode_respects_the_cap() {
        let err = encode_frame(&json!({"s": "x".repeat(100)}), 50).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { max: 50, .. }));
    }

    #[test]
    fn write_flushes() {
        struct Flushed(Vec<u8>, bool);
        impl Write for Flushed {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.extend_from_slice(b);
                self.1 = false;
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                self.1 = true;
                Ok(())
            }
        }
        let mut w = Flushed(Vec::new(), false);
        write_frame(&mut w, &json!({})).unwrap();
        assert!(w.1);
        assert_eq!(w.0, raw(2, b"{}"));
    }
}
