//! Byte-exact, in-place edits of JSON documents.
//!
//! [`parse`] is a strict RFC 8259 parser that keeps, for every string, the byte span of its token in the
//! original text. An edit replaces exactly those bytes with a newly escaped string ([`escape`]) and copies
//! every other byte through untouched, so key order, indentation, CRLF line ends, number spellings
//! (`1.0`, `1e3`), escapes elsewhere and the lack of a final newline all survive. This is the opposite of
//! a parse/serialize round trip, whose reformatting is the top complaint about Flux's and Argo CD Image
//! Updater's write-back (see shared/reference/anchors-gitops-image-updaters.md §1.6, §2.2).
//!
//! Not a general JSON library: scalars other than strings are only validated and skipped, and the tree
//! is meant for looking up a few paths.

use std::ops::Range;

use thiserror::Error;

/// Deepest nesting accepted; deeper documents are rejected instead of risking the stack.
pub const MAX_DEPTH: usize = 128;

/// A JSON syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid JSON at line {line}, column {column}: {message}")]
pub struct JsonError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in bytes.
    pub column: usize,
    /// Byte offset into the input.
    pub offset: usize,
    /// What was expected or found.
    pub message: String,
}

/// A parsed value. Only strings carry their content and span; other scalars carry only their span.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Members in document order (duplicates kept).
    Object(Vec<(String, Node)>),
    /// Elements in order.
    Array(Vec<Node>),
    /// A string: its decoded value and the span of the token, quotes included.
    Str {
        /// Decoded value.
        value: String,
        /// Byte range of the token (`"…"`) in the input.
        span: Range<usize>,
    },
    /// A number, `true`, `false` or `null`.
    Scalar {
        /// Byte range of the token in the input.
        span: Range<usize>,
    },
}

impl Node {
    /// Member `key` of an object. With duplicate keys the last one wins, as in Jackson (Marathon,
    /// Chronos) and serde_json.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The elements if this is an array.
    pub fn as_array(&self) -> Option<&[Node]> {
        match self {
            Node::Array(items) => Some(items),
            _ => None,
        }
    }

    /// Whether this is an object.
    pub fn is_object(&self) -> bool {
        matches!(self, Node::Object(_))
    }
}

/// One replacement of a byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// Bytes replaced (a string token's span).
    pub span: Range<usize>,
    /// New bytes (an already escaped JSON string, quotes included).
    pub replacement: String,
}

/// Why edits could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EditError {
    /// An edit's span is not inside the document.
    #[error("edit span {start}..{end} is outside the document ({len} bytes)")]
    OutOfBounds {
        /// Span start.
        start: usize,
        /// Span end.
        end: usize,
        /// Document length.
        len: usize,
    },
    /// Two edits touch the same bytes.
    #[error("edits overlap at byte {0}")]
    Overlap(usize),
}

/// Parses a complete JSON document (UTF-8, optional leading BOM, surrounding whitespace allowed).
pub fn parse(input: &[u8]) -> Result<Node, JsonError> {
    let mut p = Parser { b: input, i: 0 };
    if std::str::from_utf8(input).is_err() {
        let valid = match std::str::from_utf8(input) {
            Err(e) => e.valid_up_to(),
            Ok(_) => 0,
        };
        p.i = valid;
        return Err(p.err("invalid UTF-8"));
    }
    if input.starts_with(b"\xEF\xBB\xBF") {
        p.i = 3;
    }
    p.ws();
    let node = p.value(0)?;
    p.ws();
    if p.i != input.len() {
        return Err(p.err("trailing characters after the JSON value"));
    }
    Ok(node)
}

/// Encodes `s` as a JSON string token (quotes included), escaping only what JSON requires:
/// `"`, `\` and control characters (`\n`, `\r`, `\t`, `\b`, `\f`, others as `\u00XX`).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Applies non-overlapping edits (in any order) and returns the new document; bytes outside the edited
/// spans are copied unchanged.
pub fn apply(input: &[u8], edits: &[Edit]) -> Result<Vec<u8>, EditError> {
    let mut sorted: Vec<&Edit> = edits.iter().collect();
    sorted.sort_by_key(|e| (e.span.start, e.span.end));
    let grow: usize = sorted.iter().map(|e| e.replacement.len()).sum();
    let mut out = Vec::with_capacity(input.len() + grow);
    let mut pos = 0;
    for e in sorted {
        if e.span.start > e.span.end || e.span.end > input.len() {
            return Err(EditError::OutOfBounds {
                start: e.span.start,
                end: e.span.end,
                len: input.len(),
            });
        }
        if e.span.start < pos {
            return Err(EditError::Overlap(e.span.start));
        }
        out.extend_from_slice(&input[pos..e.span.start]);
        out.extend_from_slice(e.replacement.as_bytes());
        pos = e.span.end;
    }
    out.extend_from_slice(&input[pos..]);
    Ok(out)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, message: impl Into<String>) -> JsonError {
        let upto = &self.b[..self.i.min(self.b.len())];
        let line = upto.iter().filter(|&&c| c == b'\n').count() + 1;
        let line_start = upto.iter().rposition(|&c| c == b'\n').map_or(0, |p| p + 1);
        JsonError {
            line,
            column: self.i - line_start + 1,
            offset: self.i,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), JsonError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected '{}'", c as char)))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("nesting deeper than {MAX_DEPTH}")));
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => {
                let (value, span) = self.string()?;
                Ok(Node::Str { value, span })
            }
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("expected a JSON value")),
            None => Err(self.err("unexpected end of input")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Node, JsonError> {
        self.i += 1;
        let mut members = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Node::Object(members));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a string key"));
            }
            let (key, _) = self.string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            let v = self.value(depth + 1)?;
            members.push((key, v));
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Node::Object(members));
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Node, JsonError> {
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Node::Array(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth + 1)?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Node::Array(items));
                }
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
    }

    fn literal(&mut self, word: &str) -> Result<Node, JsonError> {
        let start = self.i;
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(Node::Scalar {
                span: start..self.i,
            })
        } else {
            Err(self.err("invalid literal"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Node, JsonError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err("expected digits after '.'"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("expected exponent digits"));
            }
        }
        Ok(Node::Scalar {
            span: start..self.i,
        })
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let Some(h) = self.b.get(self.i..self.i + 4) else {
            return Err(self.err("truncated \\u escape"));
        };
        let s = std::str::from_utf8(h).map_err(|_| self.err("invalid \\u escape"))?;
        if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(self.err("invalid \\u escape"));
        }
        self.i += 4;
        u32::from_str_radix(s, 16).map_err(|_| self.err("invalid \\u escape"))
    }

    /// A string token; returns the decoded value and the token's span (quotes included).
    fn string(&mut self) -> Result<(String, Range<usize>), JsonError> {
        let start = self.i;
        self.i += 1;
        let mut out = String::new();
        loop {
            // Copy the longest run without quote, backslash or control characters in one go.
            let run_start = self.i;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            // The input is valid UTF-8 and the run stops at ASCII bytes, so this slice is valid UTF-8.
            out.push_str(std::str::from_utf8(&self.b[run_start..self.i]).unwrap_or_default());
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok((out, start..self.i));
                }
                Some(b'\\') => {
                    self.i += 1;
                    let Some(c) = self.peek() else {
                        return Err(self.err("unterminated string"));
                    };
                    self.i += 1;
                    match c {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if !self.b[self.i..].starts_with(b"\\u") {
                                    return Err(self.err("unpaired surrogate in \\u escape"));
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("unpaired surrogate in \\u escape"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(self.err("unpaired surrogate in \\u escape"));
                            } else {
                                hi
                            };
                            match char::from_u32(code) {
                                Some(ch) => out.push(ch),
                                None => return Err(self.err("invalid \\u escape")),
                            }
                        }
                        _ => {
                            self.i -= 1;
                            return Err(self.err("invalid escape"));
                        }
                    }
                }
                Some(_) => return Err(self.err("control character in string")),
                None => return Err(self.err("unterminated string")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Node {
        parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn parses_values_and_spans() {
        let doc =
            "{\"a\": [1, -2.5e+3, true, null, \"x\\u00e9\\ud83d\\ude00\"], \"b\": {\"c\": \"d\"}}";
        let n = ok(doc);
        let arr = n.get("a").unwrap().as_array().unwrap();
        assert_eq!(arr.len(), 5);
        assert_eq!(arr[4].as_str(), Some("x\u{e9}\u{1F600}"));
        if let Node::Str { span, .. } = n.get("b").unwrap().get("c").unwrap() {
            assert_eq!(&doc[span.clone()], "\"d\"");
        } else {
            panic!("not a string");
        }
    }

    #[test]
    fn duplicate_keys_last_wins() {
        assert_eq!(
            ok(r#"{"a":"1","a":"2"}"#).get("a").unwrap().as_str(),
            Some("2")
        );
    }

    #[test]
    fn rejects_invalid_json() {
        for bad in [
            "",
            "{",
            "{\"a\":1,}",
            "[1,]",
            "{a:1}",
            "01",
            "1.",
            "-",
            "1e",
            "\"\\x\"",
            "\"a\nb\"",
            "\"\\ud800\"",
            "\"\\udc00x\"",
            "tru",
            "{} {}",
            "// c\n{}",
            "'a'",
            "[1 2]",
            "\"abc",
            "\"\\u12\"",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse(b"\"\xff\"").is_err());
        let deep = "[".repeat(MAX_DEPTH + 5) + &"]".repeat(MAX_DEPTH + 5);
        assert!(parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn error_position() {
        let e = parse(b"{\n  \"a\": 1,\n}").unwrap_err();
        assert_eq!((e.line, e.column), (3, 1));
    }

    #[test]
    fn accepts_bom_and_crlf() {
        ok("\u{feff}{\r\n  \"a\": \"b\"\r\n}\r\n");
    }

    #[test]
    fn escape_round_trips() {
        for s in ["plain", "q\"b\\", "ctl\u{1}\n\t\r\u{8}\u{c}", "ünï/côdé"] {
            let tok = escape(s);
            assert_eq!(ok(&tok).as_str(), Some(s));
            assert_eq!(serde_json::from_str::<String>(&tok).unwrap(), s);
        }
    }

    #[test]
    fn apply_replaces_only_spans() {
        let doc = b"{\"x\" : \"old\" ,\r\n\"n\":1.50}";
        let n = parse(doc).unwrap();
        let Some(Node::Str { span, .. }) = n.get("x") else {
            panic!()
        };
        let out = apply(
            doc,
            &[Edit {
                span: span.clone(),
                replacement: escape("new"),
            }],
        )
        .unwrap();
        assert_eq!(out, b"{\"x\" : \"new\" ,\r\n\"n\":1.50}");
        let overlap = [
            Edit {
                span: 1..4,
                replacement: String::new(),
            },
            Edit {
                span: 3..5,
                replacement: String::new(),
            },
        ];
        assert_eq!(apply(doc, &overlap), Err(EditError::Overlap(3)));
        assert!(apply(
            doc,
            &[Edit {
                span: 5..500,
                replacement: String::new()
            }]
        )
        .is_err());
    }
}
