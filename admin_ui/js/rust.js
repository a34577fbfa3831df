// A small Rust tokenizer for highlighting: not a parser, but it knows
// comments (nested block ones), doc comments, strings (escaped, raw, byte),
// chars versus lifetimes, numbers with suffixes, attributes, macros, keywords,
// types and function names. tokenize(source) -> [[kind, text], ...] covering
// the source exactly, so the highlighted copy lines up with the text area.

const KEYWORDS = new Set(
  ("as async await break const continue crate dyn else enum extern false fn for if impl in let loop " +
    "match mod move mut pub ref return self static struct super trait true type union unsafe use where while")
    .split(" "),
);
const TYPES = new Set(
  "bool char str u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize f32 f64 Self".split(" "),
);

const SPACE = /[ \t\r\n]/;
const IDENT_START = /[A-Za-z_]/;
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*/;
const NUMBER = /^(?:0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|[0-9][0-9_]*(?:\.(?![.A-Za-z_])[0-9_]*)?(?:[eE][+-]?[0-9_]+)?)(?:[iu](?:8|16|32|64|128|size)|f32|f64)?/;
const CHAR = /^'(?:[^'\\\n]|\\(?:[nrt0\\'"]|x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}))'/;
const LIFETIME = /^'[A-Za-z_][A-Za-z0-9_]*/;

export function tokenize(src) {
  const out = [];
  const n = src.length;
  let i = 0;
  let plain = "";
  const flush = () => {
    if (plain) {
      out.push(["text", plain]);
      plain = "";
    }
  };
  const push = (kind, text) => {
    flush();
    out.push([kind, text]);
  };
  while (i < n) {
    const c = src[i];
    const next = src[i + 1];
    if (SPACE.test(c)) {
      let j = i + 1;
      while (j < n && SPACE.test(src[j])) j++;
      plain += src.slice(i, j);
      i = j;
      continue;
    }
    if (c === "/" && next === "/") {
      let j = src.indexOf("\n", i);
      if (j < 0) j = n;
      const text = src.slice(i, j);
      push(/^\/\/[/!](?!\/)/.test(text) ? "doc" : "comment", text);
      i = j;
      continue;
    }
    if (c === "/" && next === "*") {
      let depth = 1;
      let j = i + 2;
      while (j < n && depth > 0) {
        if (src[j] === "/" && src[j + 1] === "*") {
          depth++;
          j += 2;
        } else if (src[j] === "*" && src[j + 1] === "/") {
          depth--;
          j += 2;
        } else {
          j++;
        }
      }
      const text = src.slice(i, j);
      push(/^\/\*[*!](?!\/)/.test(text) ? "doc" : "comment", text);
      i = j;
      continue;
    }
    // raw strings: r"..", r#".."#, br#".."#
    if (c === "r" || (c === "b" && next === "r")) {
      const start = c === "b" ? i + 2 : i + 1;
      let k = start;
      while (src[k] === "#") k++;
      if (src[k] === '"') {
        const close = '"' + "#".repeat(k - start);
        let j = src.indexOf(close, k + 1);
        j = j < 0 ? n : j + close.length;
        push("string", src.slice(i, j));
        i = j;
        continue;
      }
    }
    if (c === '"' || (c === "b" && next === '"')) {
      let j = c === "b" ? i + 2 : i + 1;
      while (j < n && src[j] !== '"') j += src[j] === "\\" ? 2 : 1;
      j = Math.min(n, j + 1);
      push("string", src.slice(i, j));
      i = j;
      continue;
    }
    if (c === "'" || (c === "b" && next === "'")) {
      const s = c === "b" ? i + 1 : i;
      let m = CHAR.exec(src.slice(s, s + 14));
      if (m) {
        push("char", src.slice(i, s + m[0].length));
        i = s + m[0].length;
        continue;
      }
      if (c === "'") {
        m = LIFETIME.exec(src.slice(i, i + 80));
        if (m) {
          push("lifetime", m[0]);
          i += m[0].length;
          continue;
        }
      }
    }
    if (c >= "0" && c <= "9") {
      const m = NUMBER.exec(src.slice(i, i + 100));
      const text = m ? m[0] : c;
      push("number", text);
      i += text.length;
      continue;
    }
    if (IDENT_START.test(c)) {
      const word = IDENT.exec(src.slice(i, i + 200))[0];
      let j = i + word.length;
      if (src[j] === "!" && src[j + 1] !== "=") {
        push("macro", word + "!");
        i = j + 1;
        continue;
      }
      let kind = "text";
      if (KEYWORDS.has(word)) kind = "keyword";
      else if (TYPES.has(word) || /^[A-Z]/.test(word)) kind = "type";
      else {
        let k = j;
        while (k < n && (src[k] === " " || src[k] === "\t")) k++;
        if (src[k] === "(" || (src[k] === ":" && src[k + 1] === ":" && src[k + 2] === "<")) kind = "fn";
      }
      if (kind === "text") plain += word;
      else push(kind, word);
      i = j;
      continue;
    }
    if (c === "#" && (next === "[" || (next === "!" && src[i + 2] === "["))) {
      let j = src.indexOf("[", i) + 1;
      let depth = 1;
      while (j < n && depth > 0) {
        if (src[j] === "[") depth++;
        else if (src[j] === "]") depth--;
        j++;
      }
      push("attr", src.slice(i, j));
      i = j;
      continue;
    }
    plain += c;
    i++;
  }
  flush();
  return out;
}
