//! `multipart/form-data` bodies (RFC 7578): [`MultipartData`] and
//! [`MultipartFile`], produced by [`Request::multipart`](crate::Request::multipart).
//!
//! What the parser accepts:
//!
//! * the boundary from the request's `Content-Type` parameter `boundary`,
//!   quoted or not (1 to 200 characters);
//! * CRLF line endings, and bare LF when the body's first boundary line ends
//!   with a bare LF (the body is then read with LF line endings throughout);
//! * a preamble before the first boundary and an epilogue after the closing
//!   one, both ignored; a boundary line may end with spaces or tabs;
//! * per part, a `Content-Disposition: form-data; name="..."` header, with
//!   `filename="..."` making the part a file. Quoted strings may use `\"`
//!   and `\\`; any other backslash is kept as it is (browsers send Windows
//!   paths unescaped). `filename*=UTF-8''...` (RFC 5987) is understood and
//!   wins over `filename`;
//! * a per-part `Content-Type`; without one a field is `text/plain` and a
//!   file `application/octet-stream`.
//!
//! The parser works on the body in one pass and copies each part's content
//! once.
//!
//! ```
//! use rust_edge_gateway_sdk::prelude::*;
//!
//! // curl -F name=ada -F cv=@cv.txt sends a body like this one (with CRLF).
//! let req = Request::new("POST", "/apply")
//!     .with_header("content-type", "multipart/form-data; boundary=------x")
//!     .with_body("--------x\r\n\
//!         Content-Disposition: form-data; name=\"name\"\r\n\r\n\
//!         ada\r\n\
//!         --------x\r\n\
//!         Content-Disposition: form-data; name=\"cv\"; filename=\"cv.txt\"\r\n\
//!         Content-Type: text/plain\r\n\r\n\
//!         Analytical Engine\r\n\
//!         --------x--\r\n");
//! let form = req.multipart().unwrap();
//! assert_eq!(form.field("name").unwrap(), "ada");
//! assert_eq!(form.file("cv").unwrap().data, b"Analytical Engine");
//! ```

use crate::error::HandlerError;
use std::collections::HashMap;

/// The longest boundary accepted (RFC 2046 allows 70 characters).
const MAX_BOUNDARY: usize = 200;

/// One uploaded file of a `multipart/form-data` body.
///
/// ```
/// use rust_edge_gateway_sdk::prelude::*;
///
/// let body = "--XyZ\r\n\
///     Content-Disposition: form-data; name=\"avatar\"; filename=\"me.png\"\r\n\
///     Content-Type: image/png\r\n\r\n\
///     \u{1}PNG\r\n\
///     --XyZ--\r\n";
/// let req = Request::new("POST", "/upload")
///     .with_header("content-type", "multipart/form-data; boundary=XyZ")
///     .with_body(body);
/// let form = req.multipart().unwrap();
/// let file = form.require_file("avatar").unwrap();
/// assert_eq!(file.name, "avatar");
/// assert_eq!(file.filename, "me.png");
/// assert_eq!(file.content_type, "image/png");
/// assert_eq!(file.data, b"\x01PNG");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartFile {
    /// The form field name (`name="..."`).
    pub name: String,
    /// The file name the client gave (`filename="..."`); may be empty when a
    /// form's file input was left blank. Treat it as untrusted input: it can
    /// contain `/`, `\` or `..`.
    pub filename: String,
    /// The part's `Content-Type`; `application/octet-stream` when absent.
    pub content_type: String,
    /// The file's bytes, exactly as sent.
    pub data: Vec<u8>,
}

/// A parsed `multipart/form-data` body: text fields and files.
///
/// A part is a file when its `Content-Disposition` has a `filename`
/// parameter, otherwise it is a text field. When a field name repeats,
/// [`fields`](Self::fields) holds the first value and
/// [`field_values`](Self::field_values) gives all of them; files keep their
/// order in [`files`](Self::files).
///
/// ```
/// use rust_edge_gateway_sdk::prelude::*;
///
/// fn handle(req: Request) -> Result<Response, HandlerError> {
///     let form: MultipartData = req.multipart()?;
///     let title = form.require_field("title")?;
///     let doc = form.require_file("doc")?;
///     Ok(Response::created(json!({
///         "title": title,
///         "file": doc.filename,
///         "bytes": doc.data.len(),
///     })))
/// }
///
/// let body = "--b\r\n\
///     Content-Disposition: form-data; name=\"title\"\r\n\r\n\
///     Report\r\n\
///     --b\r\n\
///     Content-Disposition: form-data; name=\"doc\"; filename=\"r.txt\"\r\n\r\n\
///     hello\r\n\
///     --b--\r\n";
/// let req = Request::new("POST", "/docs")
///     .with_header("Content-Type", "multipart/form-data; boundary=b")
///     .with_body(body);
/// let resp = handle(req).unwrap();
/// assert_eq!(resp.body.as_deref(), Some(r#"{"bytes":5,"file":"r.txt","title":"Report"}"#));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MultipartData {
    /// Text fields by name (the first value of a repeated name).
    pub fields: HashMap<String, String>,
    /// Files in the order they were sent.
    pub files: Vec<MultipartFile>,
    /// Second and later values of repeated field names, in order.
    repeated: Vec<(String, String)>,
}

impl MultipartData {
    /// A text field's value (the first, if the name repeats).
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::prelude::*;
    /// # let req = Request::new("POST", "/")
    /// #     .with_header("content-type", "multipart/form-data; boundary=b")
    /// #     .with_body("--b\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nrust\r\n--b--\r\n");
    /// let form = req.multipart().unwrap();
    /// assert_eq!(form.field("q").map(String::as_str), Some("rust"));
    /// assert_eq!(form.field("nope"), None);
    /// ```
    pub fn field(&self, name: &str) -> Option<&String> {
        self.fields.get(name)
    }

    /// A text field's value; [`HandlerError::BadRequest`] naming the field
    /// when it is missing.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::prelude::*;
    /// # let req = Request::new("POST", "/")
    /// #     .with_header("content-type", "multipart/form-data; boundary=b")
    /// #     .with_body("--b\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nrust\r\n--b--\r\n");
    /// let form = req.multipart().unwrap();
    /// assert_eq!(form.require_field("q").unwrap(), "rust");
    /// let err = form.require_field("title").unwrap_err();
    /// assert_eq!(err.to_string(), "Bad request: missing form field 'title'");
    /// ```
    pub fn require_field(&self, name: &str) -> Result<&String, HandlerError> {
        self.field(name)
            .ok_or_else(|| HandlerError::BadRequest(format!("missing form field '{name}'")))
    }

    /// Every value of a text field, in the order sent (empty when missing).
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::prelude::*;
    /// let body = "--b\r\nContent-Disposition: form-data; name=\"tag\"\r\n\r\na\r\n\
    ///             --b\r\nContent-Disposition: form-data; name=\"tag\"\r\n\r\nb\r\n--b--";
    /// let req = Request::new("POST", "/")
    ///     .with_header("content-type", "multipart/form-data; boundary=b")
    ///     .with_body(body);
    /// let form = req.multipart().unwrap();
    /// assert_eq!(form.field_values("tag"), ["a", "b"]);
    /// assert_eq!(form.field("tag").unwrap(), "a");
    /// ```
    pub fn field_values(&self, name: &str) -> Vec<&str> {
        let mut values: Vec<&str> = self
            .fields
            .get(name)
            .map(String::as_str)
            .into_iter()
            .collect();
        if !values.is_empty() {
            values.extend(
                self.repeated
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str()),
            );
        }
        values
    }

    /// The first file sent under field name `name`.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::prelude::*;
    /// # let req = Request::new("POST", "/")
    /// #     .with_header("content-type", "multipart/form-data; boundary=b")
    /// #     .with_body("--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nhi\r\n--b--\r\n");
    /// let form = req.multipart().unwrap();
    /// assert_eq!(form.file("f").unwrap().data, b"hi");
    /// assert!(form.file("other").is_none());
    /// ```
    pub fn file(&self, name: &str) -> Option<&MultipartFile> {
        self.files.iter().find(|f| f.name == name)
    }

    /// The first file sent under `name`; [`HandlerError::BadRequest`] naming
    /// the field when there is none.
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::prelude::*;
    /// # let req = Request::new("POST", "/")
    /// #     .with_header("content-type", "multipart/form-data; boundary=b")
    /// #     .with_body("--b--\r\n");
    /// let form = req.multipart().unwrap();
    /// let err = form.require_file("upload").unwrap_err();
    /// assert_eq!(err.to_string(), "Bad request: missing file 'upload' in the form");
    /// ```
    pub fn require_file(&self, name: &str) -> Result<&MultipartFile, HandlerError> {
        self.file(name)
            .ok_or_else(|| HandlerError::BadRequest(format!("missing file '{name}' in the form")))
    }

    /// Every file sent under `name`, in order (`<input type=file multiple>`).
    ///
    /// ```
    /// # use rust_edge_gateway_sdk::prelude::*;
    /// let body = "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"1\"\r\n\r\nA\r\n\
    ///             --b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"2\"\r\n\r\nB\r\n--b--";
    /// let req = Request::new("POST", "/")
    ///     .with_header("content-type", "multipart/form-data; boundary=b")
    ///     .with_body(body);
    /// let form = req.multipart().unwrap();
    /// let names: Vec<&str> = form.files_named("f").map(|f| f.filename.as_str()).collect();
    /// assert_eq!(names, ["1", "2"]);
    /// ```
    pub fn files_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a MultipartFile> + 'a {
        self.files.iter().filter(move |f| f.name == name)
    }

    fn add_field(&mut self, name: String, value: String) {
        use std::collections::hash_map::Entry;
        match self.fields.entry(name) {
            Entry::Occupied(first) => self.repeated.push((first.key().clone(), value)),
            Entry::Vacant(slot) => {
                slot.insert(value);
            }
        }
    }
}

fn bad(message: impl Into<String>) -> HandlerError {
    HandlerError::BadRequest(message.into())
}

/// The `boundary` parameter of a `multipart/form-data` content type.
pub(crate) fn boundary(content_type: Option<&str>) -> Result<String, HandlerError> {
    let Some(content_type) = content_type else {
        return Err(bad(
            "expected a multipart/form-data body, but the request has no content type",
        ));
    };
    let mut parts = split_params(content_type);
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("multipart/form-data") {
        return Err(bad(format!(
            "expected a multipart/form-data body, got content type '{media}'"
        )));
    }
    for param in parts {
        if let Some((name, value)) = parse_param(param) {
            if name.eq_ignore_ascii_case("boundary") {
                if value.is_empty() || value.len() > MAX_BOUNDARY {
                    return Err(bad(format!(
                        "the multipart boundary must be 1 to {MAX_BOUNDARY} characters long"
                    )));
                }
                return Ok(value);
            }
        }
    }
    Err(bad(
        "the multipart/form-data content type has no boundary parameter",
    ))
}

/// Splits a header value at `;` outside quoted strings.
fn split_params(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let s = rest?;
        let mut in_quotes = false;
        let mut escaped = false;
        for (i, c) in s.char_indices() {
            if escaped {
                escaped = false;
            } else if in_quotes && c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = !in_quotes;
            } else if c == ';' && !in_quotes {
                rest = Some(&s[i + 1..]);
                return Some(&s[..i]);
            }
        }
        rest = None;
        Some(s)
    })
}

/// `name=value` or `name="quoted value"` → (name, unquoted value).
fn parse_param(param: &str) -> Option<(&str, String)> {
    let (name, value) = param.split_once('=')?;
    let name = name.trim();
    let value = value.trim();
    if name.is_empty() {
        return None;
    }
    Some((name, unquote(value)))
}

/// Removes the quotes of a quoted string; `\"` and `\\` are escapes, any
/// other backslash is kept literally. An unquoted value is returned as is.
fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"') else {
        return value.to_string();
    };
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&next @ ('"' | '\\')) = chars.peek() {
                out.push(next);
                chars.next();
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// RFC 5987 `charset'language'percent-encoded` (UTF-8 or ISO-8859-1).
fn ext_value(value: &str) -> Option<String> {
    let mut it = value.splitn(3, '\'');
    let charset = it.next()?;
    let _language = it.next()?;
    let encoded = it.next()?;
    let mut bytes = Vec::with_capacity(encoded.len());
    let raw = encoded.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = std::str::from_utf8(raw.get(i + 1..i + 3)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            bytes.push(raw[i]);
            i += 1;
        }
    }
    if charset.eq_ignore_ascii_case("utf-8") {
        String::from_utf8(bytes).ok()
    } else if charset.eq_ignore_ascii_case("iso-8859-1") {
        Some(bytes.iter().map(|&b| b as char).collect())
    } else {
        None
    }
}

/// Finds `needle` in `hay[from..]`; linear for the short needles used here.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let last_start = hay.len().checked_sub(needle.len())?;
    let mut i = from;
    while i <= last_start {
        i += hay[i..=last_start].iter().position(|&b| b == first)?;
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Skips spaces and tabs after a boundary, then expects a line end.
/// Returns the position after the line end.
fn after_line_end(body: &[u8], mut pos: usize, crlf: bool) -> Option<usize> {
    while matches!(body.get(pos), Some(b' ' | b'\t')) {
        pos += 1;
    }
    if crlf {
        (body.get(pos..pos + 2) == Some(&b"\r\n"[..])).then_some(pos + 2)
    } else {
        (body.get(pos) == Some(&b'\n')).then_some(pos + 1)
    }
}

/// Parses `body` with `boundary` (see the module docs for what is accepted).
pub(crate) fn parse(body: &[u8], boundary: &str) -> Result<MultipartData, HandlerError> {
    let dash_boundary = format!("--{boundary}");
    let dash = dash_boundary.as_bytes();

    // The first boundary line: at the very start, or after a line end.
    let mut search = 0;
    let (mut pos, crlf) = loop {
        let at = find(body, dash, search).ok_or_else(|| {
            bad(format!(
                "the multipart body does not contain the boundary '{dash_boundary}'"
            ))
        })?;
        let at_line_start = at == 0 || body[at - 1] == b'\n';
        let end = at + dash.len();
        if at_line_start {
            if body.get(end..end + 2) == Some(&b"--"[..]) {
                // A close delimiter straight away: an empty form.
                return Ok(MultipartData::default());
            }
            if let Some(next) = after_line_end(body, end, true) {
                break (next, true);
            }
            if let Some(next) = after_line_end(body, end, false) {
                break (next, false);
            }
        }
        search = at + 1;
    };

    let delimiter: Vec<u8> = if crlf {
        [b"\r\n", dash].concat()
    } else {
        [b"\n", dash].concat()
    };
    let mut form = MultipartData::default();
    let mut index = 0;
    loop {
        index += 1;
        // Headers, up to the empty line.
        let (headers, content_start) = part_headers(body, pos, crlf, index)?;
        // Content, up to the next delimiter that is followed by "--" or a line end.
        let mut search = content_start;
        let (content_end, next, closed) = loop {
            let at = find(body, &delimiter, search).ok_or_else(|| {
                bad(format!(
                    "the multipart body ends without the closing boundary '{dash_boundary}--'"
                ))
            })?;
            let end = at + delimiter.len();
            if body.get(end..end + 2) == Some(&b"--"[..]) {
                break (at, end + 2, true);
            }
            if let Some(next) = after_line_end(body, end, crlf) {
                break (at, next, false);
            }
            search = at + 1;
        };
        add_part(&mut form, headers, &body[content_start..content_end], index)?;
        if closed {
            return Ok(form); // the epilogue is ignored
        }
        pos = next;
    }
}

/// What a part's headers say.
struct PartHeaders {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
}

/// Parses the headers of part `index` starting at `pos`; returns them and
/// the position of the part's content.
fn part_headers(
    body: &[u8],
    mut pos: usize,
    crlf: bool,
    index: usize,
) -> Result<(PartHeaders, usize), HandlerError> {
    let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    let mut disposition: Option<String> = None;
    let mut content_type: Option<String> = None;
    let mut last: Option<&mut String> = None;
    loop {
        let Some(line_end) = find(body, eol, pos) else {
            return Err(bad(format!(
                "the multipart body ends inside the headers of part {index}"
            )));
        };
        let line = &body[pos..line_end];
        pos = line_end + eol.len();
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            // An obsolete folded continuation line.
            if let Some(value) = last.as_deref_mut() {
                value.push(' ');
                value.push_str(String::from_utf8_lossy(line).trim());
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(bad(format!(
                "part {index} of the multipart body has a malformed header line"
            )));
        };
        let name = &line[..colon];
        let value = String::from_utf8_lossy(&line[colon + 1..])
            .trim()
            .to_string();
        last = if name.eq_ignore_ascii_case(b"content-disposition") {
            Some(disposition.insert(value))
        } else if name.eq_ignore_ascii_case(b"content-type") {
            Some(content_type.insert(value))
        } else {
            None
        };
    }
    let Some(disposition) = disposition else {
        return Err(bad(format!(
            "part {index} of the multipart body has no Content-Disposition header"
        )));
    };
    let mut params = split_params(&disposition);
    let kind = params.next().unwrap_or("").trim();
    if !kind.eq_ignore_ascii_case("form-data") {
        return Err(bad(format!(
            "part {index} of the multipart body is '{kind}', expected Content-Disposition: form-data"
        )));
    }
    let (mut name, mut filename, mut filename_ext) = (None, None, None);
    for param in params {
        if let Some((key, value)) = parse_param(param) {
            if key.eq_ignore_ascii_case("name") {
                name = Some(value);
            } else if key.eq_ignore_ascii_case("filename") {
                filename = Some(value);
            } else if key.eq_ignore_ascii_case("filename*") {
                filename_ext = ext_value(&value);
            }
        }
    }
    let Some(name) = name else {
        return Err(bad(format!(
            "part {index} of the multipart body has no name in its Content-Disposition"
        )));
    };
    let headers = PartHeaders {
        name,
        filename: filename_ext.or(filename),
        content_type: content_type.filter(|t| !t.is_empty()),
    };
    Ok((headers, pos))
}

fn add_part(
    form: &mut MultipartData,
    headers: PartHeaders,
    content: &[u8],
    index: usize,
) -> Result<(), HandlerError> {
    let PartHeaders {
        name,
        filename,
        content_type,
    } = headers;
    match filename {
        Some(filename) => form.files.push(MultipartFile {
            name,
            filename,
            content_type: content_type.unwrap_or_else(|| "application/octet-stream".into()),
            data: content.to_vec(),
        }),
        None => {
            let value = String::from_utf8(content.to_vec()).map_err(|_| {
                bad(format!(
                    "form field '{name}' (part {index} of the multipart body) is not valid UTF-8"
                ))
            })?;
            form.add_field(name, value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(body: &[u8], boundary: &str) -> MultipartData {
        parse(body, boundary).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(body)))
    }

    fn parse_err(body: &[u8], boundary: &str) -> String {
        match parse(body, boundary) {
            Err(HandlerError::BadRequest(m)) => m,
            other => panic!("expected BadRequest, got {other:?}"),
        }
    }

    #[test]
    fn boundary_from_content_type() {
        for (ct, want) in [
            ("multipart/form-data; boundary=abc", "abc"),
            ("multipart/form-data;boundary=abc", "abc"),
            ("Multipart/Form-Data; BOUNDARY=abc", "abc"),
            (
                "multipart/form-data; charset=utf-8; boundary=\"a b;c\"",
                "a b;c",
            ),
            ("multipart/form-data; boundary=\"q\\\"x\"", "q\"x"),
            (
                "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
                "----WebKitFormBoundary7MA4YWxkTrZu0gW",
            ),
            ("multipart/form-data; boundary= padded ", "padded"),
        ] {
            assert_eq!(boundary(Some(ct)).unwrap(), want, "{ct}");
        }
        for (ct, message) in [
            (None, "the request has no content type"),
            (
                Some("application/json"),
                "got content type 'application/json'",
            ),
            (
                Some("multipart/mixed; boundary=x"),
                "got content type 'multipart/mixed'",
            ),
            (Some("multipart/form-data"), "has no boundary parameter"),
            (
                Some("multipart/form-data; charset=x"),
                "has no boundary parameter",
            ),
            (Some("multipart/form-data; boundary="), "must be 1 to 200"),
            (
                Some("multipart/form-data; boundary=\"\""),
                "must be 1 to 200",
            ),
        ] {
            match boundary(ct) {
                Err(HandlerError::BadRequest(m)) => assert!(m.contains(message), "{m}"),
                other => panic!("{ct:?}: {other:?}"),
            }
        }
        let long = format!("multipart/form-data; boundary={}", "x".repeat(201));
        assert!(boundary(Some(&long)).is_err());
    }

    #[test]
    fn fields_and_files() {
        let mut body = b"preamble to ignore\r\n--XX\r\n\
Content-Disposition: form-data; name=\"title\"\r\n\r\n\
Hello, w\xc3\xb6rld\r\n\
--XX\r\n\
content-disposition: form-data; name=\"empty\"\r\n\r\n\
\r\n\
--XX\r\n\
Content-Disposition: form-data; name=\"doc\"; filename=\"a b.bin\"\r\n\
Content-Type: application/x-thing\r\n\r\n"
            .to_vec();
        // Binary content containing CR, LF, NUL, dashes and a near-boundary.
        let binary: Vec<u8> = (0..=255u8)
            .chain(*b"\r\n--X\r\n--XXY\r\n--XX-\r\n-\r")
            .chain(0..=255u8)
            .collect();
        body.extend_from_slice(&binary);
        body.extend_from_slice(
            b"\r\n--XX\r\n\
Content-Disposition: form-data; filename=\"plain.txt\"; name=note\r\n\r\n\
text file\r\n\
--XX--\r\nepilogue --XX\r\n",
        );
        let form = parse_ok(&body, "XX");
        assert_eq!(form.fields.len(), 2);
        assert_eq!(form.field("title").unwrap(), "Hello, wörld");
        assert_eq!(form.field("empty").unwrap(), "");
        assert_eq!(form.files.len(), 2);
        let doc = form.file("doc").unwrap();
        assert_eq!(
            (
                doc.name.as_str(),
                doc.filename.as_str(),
                doc.content_type.as_str()
            ),
            ("doc", "a b.bin", "application/x-thing")
        );
        assert_eq!(doc.data, binary, "binary content is byte-exact");
        let note = form.require_file("note").unwrap();
        assert_eq!(note.content_type, "application/octet-stream");
        assert_eq!(note.data, b"text file");
        assert!(form.field("doc").is_none());
        assert!(form.file("title").is_none());
    }

    #[test]
    fn bare_lf_bodies() {
        let body = b"--b\nContent-Disposition: form-data; name=\"a\"\n\nline1\r\nline2\n--b\n\
Content-Disposition: form-data; name=\"f\"; filename=\"x\"\nContent-Type: text/csv\n\n1,2\n--b--";
        let form = parse_ok(body, "b");
        // In an LF body a CR is content.
        assert_eq!(form.field("a").unwrap(), "line1\r\nline2");
        let f = form.file("f").unwrap();
        assert_eq!(
            (f.content_type.as_str(), &f.data[..]),
            ("text/csv", &b"1,2"[..])
        );
    }

    #[test]
    fn quoting_and_extended_filenames() {
        let body = "--b\r\n\
Content-Disposition: form-data; name=\"a;b\\\"c\"; filename=\"C:\\dir\\f \\\"q\\\".txt\"\r\n\r\n\
x\r\n--b\r\n\
Content-Disposition: form-data; name=\"u\"; filename=\"fallback.txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt\r\n\r\n\
y\r\n--b\r\n\
Content-Disposition: form-data; name=\"l\"; filename*=iso-8859-1'en'%A3.txt\r\n\r\n\
z\r\n--b\r\n\
Content-Disposition: form-data; name=\"bad\"; filename=\"kept\"; filename*=utf-8''%ZZ\r\n\r\n\
w\r\n--b--";
        let form = parse_ok(body.as_bytes(), "b");
        let names: Vec<(&str, &str)> = form
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.filename.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("a;b\"c", "C:\\dir\\f \"q\".txt"),
                ("u", "€ rates.txt"),
                ("l", "£.txt"),
                ("bad", "kept"),
            ]
        );
    }

    #[test]
    fn repeated_fields_and_files() {
        let body = "--b\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\n1\r\n\
--b\r\nContent-Disposition: form-data; name=\"u\"\r\n\r\nx\r\n\
--b\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\n2\r\n\
--b\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\n3\r\n\
--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"1\"\r\n\r\nA\r\n\
--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"\"\r\n\r\n\r\n--b--";
        let form = parse_ok(body.as_bytes(), "b");
        assert_eq!(form.field("t").unwrap(), "1");
        assert_eq!(form.field_values("t"), ["1", "2", "3"]);
        assert_eq!(form.field_values("u"), ["x"]);
        assert!(form.field_values("none").is_empty());
        let files: Vec<(&str, &[u8])> = form
            .files_named("f")
            .map(|f| (f.filename.as_str(), &f.data[..]))
            .collect();
        assert_eq!(files, [("1", &b"A"[..]), ("", &b""[..])]);
    }

    #[test]
    fn delimiters_and_whitespace() {
        for (body, want) in [
            // first boundary at the very start, transport padding after boundaries
            (
                &b"--b  \r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--b--"[..],
                "v",
            ),
            // a line in the content that only starts like the delimiter
            (
                b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--bb\r\n--b\t\r\n\
Content-Disposition: form-data; name=\"z\"\r\n\r\n\r\n--b--",
                "v\r\n--bb",
            ),
            // "--b" inside the preamble but not at a line start
            (
                b"x--b\r\n--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--b--",
                "v",
            ),
            // folded header line, header names in any case, no trailing CRLF
            (
                b"--b\r\nCONTENT-DISPOSITION: form-data;\r\n name=\"a\"\r\n\r\nv\r\n--b--",
                "v",
            ),
        ] {
            let form = parse_ok(body, "b");
            assert_eq!(form.field("a").map(String::as_str), Some(want));
        }
        assert_eq!(parse_ok(b"--b--\r\n", "b"), MultipartData::default());
        assert_eq!(parse_ok(b"--b--", "b"), MultipartData::default());
    }

    #[test]
    fn errors() {
        let cd = "Content-Disposition: form-data; name=\"a\"";
        for (body, message) in [
            (String::new(), "does not contain the boundary '--b'"),
            ("no boundary here".into(), "does not contain the boundary"),
            (
                format!("--b\r\n{cd}\r\n\r\nvalue"),
                "ends without the closing boundary '--b--'",
            ),
            (
                format!("--b\r\n{cd}\r\n\r\nvalue\r\n--b\r\n"),
                "ends inside the headers of part 2",
            ),
            (
                format!("--b\r\n{cd}\r\n"),
                "ends inside the headers of part 1",
            ),
            (format!("--b\r\n{cd}"), "ends inside the headers of part 1"),
            (
                "--b\r\nContent-Type: text/plain\r\n\r\nv\r\n--b--".into(),
                "part 1 of the multipart body has no Content-Disposition",
            ),
            (
                "--b\r\nContent-Disposition: form-data\r\n\r\nv\r\n--b--".into(),
                "part 1 of the multipart body has no name",
            ),
            (
                "--b\r\nContent-Disposition: form-data; filename=\"x\"\r\n\r\nv\r\n--b--".into(),
                "has no name",
            ),
            (
                "--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nv\r\n--b--".into(),
                "is 'attachment', expected",
            ),
            (
                "--b\r\nnot a header\r\n\r\nv\r\n--b--".into(),
                "malformed header line",
            ),
        ] {
            let m = parse_err(body.as_bytes(), "b");
            assert!(m.contains(message), "{body:?}: {m}");
        }
        let m = parse_err(
            b"--b\r\nContent-Disposition: form-data; name=\"bin\"\r\n\r\n\xff\xfe\r\n--b--",
            "b",
        );
        assert_eq!(
            m,
            "form field 'bin' (part 1 of the multipart body) is not valid UTF-8"
        );
    }

    #[test]
    fn find_is_correct() {
        assert_eq!(find(b"abcabd", b"abd", 0), Some(3));
        assert_eq!(find(b"abcabd", b"abd", 4), None);
        assert_eq!(find(b"ab", b"abc", 0), None);
        assert_eq!(find(b"aaab", b"ab", 0), Some(2));
        assert_eq!(find(b"xx", b"", 0), None);
    }

    #[test]
    fn large_bodies_parse_in_linear_time() {
        // Many CRs and near-delimiters: must not go quadratic.
        let mut body =
            b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"big\"\r\n\r\n".to_vec();
        let content: Vec<u8> = b"\r\n--\r\r\n-"
            .iter()
            .copied()
            .cycle()
            .take(4 << 20)
            .collect();
        body.extend_from_slice(&content);
        body.extend_from_slice(b"\r\n--b--\r\n");
        let start = std::time::Instant::now();
        let form = parse_ok(&body, "b");
        assert_eq!(form.files[0].data.len(), content.len());
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }
}
