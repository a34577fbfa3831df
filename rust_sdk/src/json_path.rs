//! Where in a JSON text a serde_json data error is: `age`, `lines[1]`,
//! `lines[1].qty`. serde_json's messages for wrong types say what was
//! expected and the line and column, but not which field; this finds the
//! field from the position so a 400 can name it. Only used on the error
//! path, and compiled once in the SDK (it is not generic).

/// The path of the value serde_json stopped at, given the error's 1-based
/// `line` and `column` (bytes consumed on that line). `None` when the
/// position is at the top level or outside `text`.
pub(crate) fn path_at(text: &str, line: usize, column: usize) -> Option<String> {
    let bytes = text.as_bytes();
    let mut line_start = 0;
    for _ in 1..line {
        line_start += bytes[line_start..].iter().position(|&b| b == b'\n')? + 1;
    }
    // The last byte serde_json consumed (the end of the offending value, or
    // the `}` of an object missing a field); before the first, the start.
    let offset = (line_start + column).saturating_sub(1);
    if offset >= bytes.len() {
        return None;
    }
    let path = scan(bytes, offset)?;
    if path.is_empty() {
        None
    } else {
        Some(path)
    }
}

enum Level {
    /// An object: its current key, and whether a key comes next.
    Object { key: Option<String>, want_key: bool },
    /// An array: the index of the current element.
    Array { index: usize },
}

fn render(levels: &[Level]) -> String {
    let mut path = String::new();
    for level in levels {
        match level {
            Level::Object {
                key: Some(k),
                want_key: false,
            } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
            Level::Object { .. } => {}
            Level::Array { index } => {
                path.push('[');
                path.push_str(&index.to_string());
                path.push(']');
            }
        }
    }
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

/// Walks the JSON tokens up to the first one ending at or after `offset`
/// and renders the path there.
fn scan(bytes: &[u8], offset: usize) -> Option<String> {
    let mut levels: Vec<Level> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let end = match b {
            b'"' => string_end(bytes, i)?,
            b'{' | b'}' | b'[' | b']' | b',' | b':' => i,
            _ => {
                let mut j = i;
                while j + 1 < bytes.len() && !b",]}: \t\r\n".contains(&bytes[j + 1]) {
                    j += 1;
                }
                j
            }
        };
        let here = end >= offset;
        match b {
            b'{' | b'[' if here => return Some(render(&levels)),
            b'{' => levels.push(Level::Object {
                key: None,
                want_key: true,
            }),
            b'[' => levels.push(Level::Array { index: 0 }),
            // An error at a closing bracket (a missing field) is about the
            // container itself.
            b'}' | b']' if here => {
                levels.pop();
                return Some(render(&levels));
            }
            b'}' | b']' => {
                levels.pop();
            }
            b',' => match levels.last_mut() {
                Some(Level::Object { want_key, .. }) => *want_key = true,
                Some(Level::Array { index }) => *index += 1,
                None => {}
            },
            b':' => {
                if let Some(Level::Object { want_key, .. }) = levels.last_mut() {
                    *want_key = false;
                }
            }
            b'"' => {
                if let Some(Level::Object { key, want_key }) = levels.last_mut() {
                    if *want_key {
                        let raw = std::str::from_utf8(&bytes[i..=end]).ok()?;
                        let k = serde_json::from_str::<String>(raw)
                            .unwrap_or_else(|_| raw.trim_matches('"').to_string());
                        *key = Some(k);
                        // An error at a key (an unknown field) names it.
                        *want_key = false;
                    }
                }
            }
            _ => {}
        }
        if here {
            return Some(render(&levels));
        }
        i = end + 1;
    }
    None
}

/// The index of the closing quote of the string starting at `start`.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut j = start + 1;
    while j < bytes.len() {
        match bytes[j] {
            b'\\' => j += 2,
            b'"' => return Some(j),
            _ => j += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

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

    fn path_of(text: &str) -> Option<String> {
        let e = serde_json::from_str::<Order>(text).unwrap_err();
        path_at(text, e.line(), e.column())
    }

    #[test]
    fn finds_the_field_of_data_errors() {
        let base = r#""name": "Ada", "lines": []"#;
        for (text, want) in [
            (format!(r#"{{{base}, "age": "old"}}"#), Some("age")),
            (format!(r#"{{{base}, "age": -1}}"#), Some("age")),
            (format!(r#"{{{base}, "age": 1.5}}"#), Some("age")),
            (format!(r#"{{{base}, "age": 99999999999}}"#), Some("age")),
            (format!(r#"{{{base}, "age": {{"x": [1]}}}}"#), Some("age")),
            (format!(r#"{{{base}, "age": [1]}}"#), Some("age")),
            (format!(r#"{{{base}, "age": true}}"#), Some("age")),
            (format!(r#"{{{base}, "tags": ["a", 5]}}"#), Some("tags[1]")),
            (format!(r#"{{{base}, "tags": "abc"}}"#), Some("tags")),
            (format!(r#"{{{base}, "extra": 1}}"#), Some("extra")),
            (
                r#"{"name": "A", "lines": [{"sku": "a", "qty": 1}, {"sku": "b"}]}"#.into(),
                Some("lines[1]"),
            ),
            (
                r#"{"name": "A", "lines": [{"sku": "a,]}:\"", "qty": 1}, {"sku": "b", "qty": "x"}]}"#
                    .into(),
                Some("lines[1].qty"),
            ),
            ("{\n  \"name\": \"Ada\",\n  \"lines\": [],\n  \"age\": \"x\"\n}".into(), Some("age")),
            (r#"{"name": 5, "lines": []}"#.into(), Some("name")),
            (r#"{"n\u0061me": 5, "lines": []}"#.into(), Some("name")),
            // top-level problems have no path
            (r#"{"name": "Ada"}"#.into(), None),
            (r#"[1]"#.into(), Some("[0]")),
            (r#"5"#.into(), None),
        ] {
            assert_eq!(path_of(&text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn out_of_range_positions() {
        assert_eq!(path_at("{}", 5, 1), None);
        assert_eq!(path_at("{}", 1, 50), None);
        assert_eq!(path_at("", 1, 0), None);
        assert_eq!(path_at("{\"a\": 1}", 1, 0), None);
    }

    #[test]
    fn long_paths_are_cut() {
        let key = "k".repeat(300);
        let text = format!(r#"{{"{key}": 1}}"#);
        let p = path_at(&text, 1, text.len() - 1).unwrap();
        assert_eq!(p.len(), 203);
        assert!(p.ends_with("..."));
    }
}
