//! JSON as the module accepts it, and a small writer for the documents the module builds
//! (events, JOB.GET JSON).
//!
//! One validator serves every place JSON comes in (PAYLOAD, RESULT, META, CACHE.SET's
//! json) and the content hash (`crate::jcs` reads with the same `Reader`), so one input is
//! accepted or refused the same way everywhere, with the same words. It accepts I-JSON
//! (RFC 7493), which RFC 8785 needs for a stable hash: UTF-8, no duplicate member names
//! (compared after unescaping), no lone surrogate escapes, no number beyond a double; plus
//! a size and a depth limit. The reader is iterative (a deep input costs one byte of stack
//! per level, not a call frame) and linear; it allocates only for the container stack and
//! for duplicate-name detection. Noncharacters such as U+FFFF are accepted: they are valid
//! scalar values that canonicalize unambiguously, and refusing them would fail worker
//! results that happen to contain one.
//!
//! Values the caller gave were validated on the way in, so they are embedded as they are,
//! never re-parsed.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};

use hashbrown::HashTable;

use crate::error::{AiError, Result};

/// A command whose arguments total more than this is parsed (its JSON validated,
/// canonicalized, hashed) on a worker thread rather than on Redis's main thread, where
/// it could do that; see the module's `offload.rs`. Set by measurement (docs/cache.md):
/// at the slowest rate found, an object of many one-digit members, this much takes about
/// 2 ms in a release build, while the hand-off to a thread and back costs some 50 µs.
pub const INLINE_MAX_BYTES: usize = 16 * 1024;

/// The limits every JSON input is held to (configs `max-payload-bytes`, `json-max-depth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: i64,
    /// Containers nested at most this deep: `[]` is depth 1, `[[]]` depth 2, a scalar 0.
    pub max_depth: i64,
}

impl Limits {
    /// At most `max_bytes`, at the default depth.
    pub fn bytes(max_bytes: i64) -> Self {
        Limits { max_bytes, ..Default::default() }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 16 * 1024 * 1024, max_depth: 128 }
    }
}

/// PAYLOAD, RESULT, META and CACHE.SET's json: within the limits and I-JSON.
pub fn validate(arg: &str, bytes: &[u8], limits: Limits) -> Result<()> {
    check_size(arg, bytes, limits.max_bytes.min(i64::from(u32::MAX)))?;
    let mut reader = Reader::new(bytes, limits.max_depth).map_err(|p| p.into_error(arg))?;
    let mut names = Names::new(bytes);
    while let Some(token) = reader.next_token().map_err(|p| p.into_error(arg))? {
        match token {
            Token::BeginObject => names.open(),
            Token::EndObject => names.close(),
            Token::Name(text) if !names.insert(text) => {
                return Err(Problem::new(Kind::DuplicateName, text.at).into_error(arg));
            }
            _ => {}
        }
    }
    Ok(())
}

/// META must be a JSON object.
pub fn validate_object(arg: &str, bytes: &[u8], limits: Limits) -> Result<()> {
    validate(arg, bytes, limits)?;
    match bytes.iter().find(|b| !is_space(**b)) {
        Some(b'{') => Ok(()),
        _ => Err(AiError::arg(arg, "must be a JSON object")),
    }
}

/// `TOOBIG` past `max_bytes` (config `max-payload-bytes`).
pub fn check_size(arg: &str, v: &[u8], max_bytes: i64) -> Result<()> {
    if i64::try_from(v.len()).map_or(true, |len| len > max_bytes) {
        return Err(AiError::too_big(arg, v.len(), max_bytes));
    }
    Ok(())
}

/// What is wrong with a JSON text, and where (a byte offset from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Problem {
    pub kind: Kind,
    pub at: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Utf8,
    Expected(&'static str),
    ControlCharacter,
    BadEscape,
    LoneSurrogate,
    NumberTooLarge,
    DuplicateName,
    TooDeep(i64),
    TrailingText,
}

impl Problem {
    fn new(kind: Kind, at: usize) -> Self {
        Problem { kind, at }
    }

    /// The error naming the argument; the words are the same for every argument.
    pub fn into_error(self, arg: &str) -> AiError {
        let at = self.at;
        let what = match self.kind {
            Kind::Utf8 => format!("is not valid JSON: invalid UTF-8 at offset {at}"),
            Kind::Expected(what) => format!("is not valid JSON: expected {what} at offset {at}"),
            Kind::ControlCharacter => format!("is not valid JSON: unescaped control character at offset {at}"),
            Kind::BadEscape => format!("is not valid JSON: invalid escape at offset {at}"),
            Kind::TrailingText => format!("is not valid JSON: text after the value at offset {at}"),
            Kind::LoneSurrogate => format!("is not I-JSON: lone surrogate escape at offset {at}"),
            Kind::NumberTooLarge => format!("is not I-JSON: number beyond a double at offset {at}"),
            Kind::DuplicateName => format!("is not I-JSON: duplicate member name at offset {at}"),
            Kind::TooDeep(max) => format!("nests deeper than json-max-depth {max} at offset {at}"),
        };
        AiError::arg(arg, what)
    }
}

type Parse<T> = std::result::Result<T, Problem>;

/// One token of a JSON text, in document order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    BeginObject,
    EndObject,
    BeginArray,
    EndArray,
    Name(Text<'a>),
    Str(Text<'a>),
    /// The number as written; it reads as a finite double.
    Number(&'a str),
    Bool(bool),
    Null,
}

/// A string literal's contents between its quotes, escapes still in place (checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text<'a> {
    pub raw: &'a [u8],
    pub escaped: bool,
    /// Offset of the opening quote.
    pub at: usize,
}

impl Text<'_> {
    /// Appends the string's UTF-8 bytes, escapes decoded.
    pub fn unescape_into(&self, out: &mut Vec<u8>) {
        if !self.escaped {
            out.extend_from_slice(self.raw);
            return;
        }
        let mut i = 0;
        while let Some(&b) = self.raw.get(i) {
            if b != b'\\' {
                out.push(b);
                i += 1;
                continue;
            }
            let (c, used) = decode_escape(self.raw, i).unwrap_or(('\u{fffd}', 2));
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            i += used;
        }
    }
}

/// The escape at `raw[i]` (a backslash): the character and how many bytes it spans. None
/// for a malformed escape or a lone surrogate.
fn decode_escape(raw: &[u8], i: usize) -> Option<(char, usize)> {
    let simple = match raw.get(i + 1)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => return decode_unicode(raw, i),
        _ => return None,
    };
    Some((simple, 2))
}

fn decode_unicode(raw: &[u8], i: usize) -> Option<(char, usize)> {
    let unit = hex4(raw.get(i + 2..i + 6)?)?;
    match unit {
        0xD800..=0xDBFF => {
            if raw.get(i + 6..i + 8)? != b"\\u" {
                return None;
            }
            let low = hex4(raw.get(i + 8..i + 12)?)?;
            if !(0xDC00..=0xDFFF).contains(&low) {
                return None;
            }
            let c = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
            Some((char::from_u32(c)?, 12))
        }
        0xDC00..=0xDFFF => None,
        _ => Some((char::from_u32(unit)?, 6)),
    }
}

fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| Some(acc * 16 + char::from(d).to_digit(16)?))
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// What the reader expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A value: the document's, an array element after a comma, or a member's after ':'.
    Value,
    /// Right after '[': an element or ']'.
    ElementOrEnd,
    /// Right after '{': a name or '}'.
    NameOrEnd,
    /// After a value: ',' or the container's end, or the end of the document.
    CommaOrEnd,
    Done,
}

/// A pull reader of one JSON text: `next` yields tokens until Ok(None) at the end.
pub struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    /// The open containers, innermost last: true for an object.
    open: Vec<bool>,
    max_depth: i64,
    expect: Expect,
}

impl<'a> Reader<'a> {
    /// Checks UTF-8 up front, so the scanner only looks at ASCII bytes.
    pub fn new(input: &'a [u8], max_depth: i64) -> Parse<Self> {
        if let Err(e) = std::str::from_utf8(input) {
            return Err(Problem::new(Kind::Utf8, e.valid_up_to()));
        }
        Ok(Reader { input, pos: 0, open: Vec::new(), max_depth, expect: Expect::Value })
    }

    pub fn offset(&self) -> usize {
        self.pos
    }

    fn skip_space(&mut self) {
        while self.input.get(self.pos).copied().is_some_and(is_space) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn expected(&self, what: &'static str) -> Problem {
        Problem::new(Kind::Expected(what), self.pos)
    }

    pub fn next_token(&mut self) -> Parse<Option<Token<'a>>> {
        self.skip_space();
        match self.expect {
            Expect::Done => match self.peek() {
                None => Ok(None),
                Some(_) => Err(Problem::new(Kind::TrailingText, self.pos)),
            },
            Expect::Value => self.value().map(Some),
            Expect::ElementOrEnd if self.peek() == Some(b']') => self.close().map(Some),
            Expect::ElementOrEnd => self.value().map(Some),
            Expect::NameOrEnd if self.peek() == Some(b'}') => self.close().map(Some),
            Expect::NameOrEnd => self.name().map(Some),
            Expect::CommaOrEnd => self.after_value(),
        }
    }

    /// After a value: ',' continues the container, a bracket closes it.
    fn after_value(&mut self) -> Parse<Option<Token<'a>>> {
        let in_object = match self.open.last() {
            None => {
                self.expect = Expect::Done;
                return self.next_token();
            }
            Some(&o) => o,
        };
        match (self.peek(), in_object) {
            (Some(b','), true) => {
                self.pos += 1;
                self.skip_space();
                self.name().map(Some)
            }
            (Some(b','), false) => {
                self.pos += 1;
                self.skip_space();
                self.value().map(Some)
            }
            (Some(b'}'), true) | (Some(b']'), false) => self.close().map(Some),
            (_, true) => Err(self.expected("',' or '}'")),
            (_, false) => Err(self.expected("',' or ']'")),
        }
    }

    fn close(&mut self) -> Parse<Token<'a>> {
        self.pos += 1;
        self.expect = Expect::CommaOrEnd;
        match self.open.pop() {
            Some(true) => Ok(Token::EndObject),
            _ => Ok(Token::EndArray),
        }
    }

    fn begin(&mut self, object: bool) -> Parse<Token<'a>> {
        if i64::try_from(self.open.len()).map_or(true, |d| d >= self.max_depth) {
            return Err(Problem::new(Kind::TooDeep(self.max_depth), self.pos));
        }
        self.pos += 1;
        self.open.push(object);
        if object {
            self.expect = Expect::NameOrEnd;
            Ok(Token::BeginObject)
        } else {
            self.expect = Expect::ElementOrEnd;
            Ok(Token::BeginArray)
        }
    }

    fn name(&mut self) -> Parse<Token<'a>> {
        if self.peek() != Some(b'"') {
            return Err(self.expected("a member name"));
        }
        let text = self.string()?;
        self.skip_space();
        if self.peek() != Some(b':') {
            return Err(self.expected("':'"));
        }
        self.pos += 1;
        self.expect = Expect::Value;
        Ok(Token::Name(text))
    }

    fn value(&mut self) -> Parse<Token<'a>> {
        let token = match self.peek() {
            Some(b'{') => return self.begin(true),
            Some(b'[') => return self.begin(false),
            Some(b'"') => Token::Str(self.string()?),
            Some(b'-' | b'0'..=b'9') => Token::Number(self.number()?),
            Some(b't') => self.literal(b"true", Token::Bool(true))?,
            Some(b'f') => self.literal(b"false", Token::Bool(false))?,
            Some(b'n') => self.literal(b"null", Token::Null)?,
            _ => return Err(self.expected("a value")),
        };
        self.expect = Expect::CommaOrEnd;
        Ok(token)
    }

    fn literal(&mut self, word: &[u8], token: Token<'a>) -> Parse<Token<'a>> {
        if self.input.get(self.pos..self.pos + word.len()) != Some(word) {
            return Err(self.expected("a value"));
        }
        self.pos += word.len();
        Ok(token)
    }

    /// A string literal at the opening quote.
    fn string(&mut self) -> Parse<Text<'a>> {
        let at = self.pos;
        let start = at + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            // Skip plain bytes in one pass: most of a large payload is string contents.
            i += plain_run(self.input.get(i..).unwrap_or_default());
            match self.input.get(i).copied() {
                None => return Err(Problem::new(Kind::Expected("'\"'"), i)),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    i += self.escape(i)?;
                }
                Some(_) => return Err(Problem::new(Kind::ControlCharacter, i)),
            }
        }
        self.pos = i + 1;
        let raw = self.input.get(start..i).unwrap_or_default();
        Ok(Text { raw, escaped, at })
    }

    /// Checks the escape at `i`; returns its length.
    fn escape(&self, i: usize) -> Parse<usize> {
        let is_unicode = self.input.get(i + 1) == Some(&b'u');
        match decode_escape(self.input, i) {
            Some((_, used)) => Ok(used),
            None if is_unicode && self.input.get(i + 2..i + 6).and_then(hex4).is_some() => {
                Err(Problem::new(Kind::LoneSurrogate, i))
            }
            None => Err(Problem::new(Kind::BadEscape, i)),
        }
    }

    /// A number: the JSON grammar, then it must read as a finite double.
    fn number(&mut self) -> Parse<&'a str> {
        let start = self.pos;
        let mut i = start;
        if self.input.get(i) == Some(&b'-') {
            i += 1;
        }
        match self.input.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = self.digits(i),
            _ => return Err(Problem::new(Kind::Expected("a digit"), i)),
        }
        if self.input.get(i) == Some(&b'.') {
            i = self.required_digits(i + 1)?;
        }
        let has_exponent = matches!(self.input.get(i), Some(b'e' | b'E'));
        if has_exponent {
            i += 1;
            if matches!(self.input.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            i = self.required_digits(i)?;
        }
        self.pos = i;
        let text = self.input.get(start..i).and_then(|t| std::str::from_utf8(t).ok()).unwrap_or("");
        // Without an exponent, fewer than 300 digits stay below f64::MAX (1.8e308): no
        // need to convert the common case.
        if !has_exponent && text.len() < 300 {
            return Ok(text);
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(text),
            _ => Err(Problem::new(Kind::NumberTooLarge, start)),
        }
    }

    fn digits(&self, mut i: usize) -> usize {
        while self.input.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    }

    fn required_digits(&self, i: usize) -> Parse<usize> {
        let end = self.digits(i);
        if end == i {
            return Err(Problem::new(Kind::Expected("a digit"), i));
        }
        Ok(end)
    }
}

/// One member name seen: its hash (kept, so the table grows without hashing again), the
/// object it belongs to and where its unescaped bytes are (in the input, or in
/// `Names::unescaped` when the name had escapes). 24 bytes a name.
#[derive(Debug, Clone, Copy)]
struct Seen {
    hash: u64,
    object: u32,
    start: u32,
    len: u32,
    unescaped: bool,
}

/// Duplicate-name detection for a whole document in one hash table, keyed by (object,
/// name): linear time, no allocation per object.
struct Names<'a> {
    input: &'a [u8],
    unescaped: Vec<u8>,
    seen: HashTable<Seen>,
    hasher: RandomState,
    open: Vec<u32>,
    next_object: u32,
}

impl<'a> Names<'a> {
    fn new(input: &'a [u8]) -> Self {
        Names {
            input,
            unescaped: Vec::new(),
            seen: HashTable::new(),
            hasher: RandomState::new(),
            open: Vec::new(),
            next_object: 0,
        }
    }

    fn open(&mut self) {
        self.open.push(self.next_object);
        self.next_object = self.next_object.wrapping_add(1);
    }

    fn close(&mut self) {
        self.open.pop();
    }

    /// False when the innermost open object already has this name.
    fn insert(&mut self, text: Text) -> bool {
        let Some(&object) = self.open.last() else { return true };
        let entry = if text.escaped {
            let start = self.unescaped.len();
            text.unescape_into(&mut self.unescaped);
            Seen { hash: 0, object, start: offset(start), len: offset(self.unescaped.len() - start), unescaped: true }
        } else {
            Seen { hash: 0, object, start: offset(text.at + 1), len: offset(text.raw.len()), unescaped: false }
        };
        let Names { input, unescaped, seen, hasher, .. } = self;
        let name = name_bytes(input, unescaped, &entry);
        let hash = name_hash(hasher, object, name);
        let same = |s: &Seen| s.hash == hash && s.object == object && name_bytes(input, unescaped, s) == name;
        if seen.find(hash, same).is_some() {
            return false;
        }
        seen.insert_unique(hash, Seen { hash, ..entry }, |s| s.hash);
        true
    }
}

/// Inputs are at most `u32::MAX` bytes (`validate` checks), so offsets fit.
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn name_bytes<'b>(input: &'b [u8], unescaped: &'b [u8], s: &Seen) -> &'b [u8] {
    let source = if s.unescaped { unescaped } else { input };
    let start = s.start as usize;
    source.get(start..start + s.len as usize).unwrap_or_default()
}

fn name_hash(hasher: &RandomState, object: u32, name: &[u8]) -> u64 {
    let mut h = hasher.build_hasher();
    object.hash(&mut h);
    name.hash(&mut h);
    h.finish()
}

/// How many bytes at the start of `bytes` need no look in a string: neither `"`, nor `\`,
/// nor a control character. Eight bytes at a time (a word-wide test that is exact for
/// whether a word holds such a byte), then byte by byte in the word that does.
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_byte = |w: u64, b: u8| {
        let x = w ^ (ONES * u64::from(b));
        x.wrapping_sub(ONES) & !x & HIGH != 0
    };
    let mut done = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_ne_bytes(word);
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0;
        if control || has_byte(w, b'"') || has_byte(w, b'\\') {
            break;
        }
        done += 8;
    }
    let rest = bytes.get(done..).unwrap_or_default();
    done + rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(rest.len())
}

/// Builds one JSON object, field by field.
pub struct ObjectWriter {
    out: Vec<u8>,
    first: bool,
}

impl Default for ObjectWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ObjectWriter {
    pub fn new() -> Self {
        Self::with_capacity(64)
    }

    /// A writer whose buffer holds `bytes` before it grows (a known size saves reallocations).
    pub fn with_capacity(bytes: usize) -> Self {
        let mut out = Vec::with_capacity(bytes.max(2));
        out.push(b'{');
        ObjectWriter { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_string(&mut self.out, key.as_bytes());
        self.out.push(b':');
    }

    /// A string value; bytes that are not UTF-8 are replaced (JSON text is UTF-8).
    pub fn string(&mut self, key: &str, value: &[u8]) -> &mut Self {
        self.key(key);
        write_string(&mut self.out, value);
        self
    }

    pub fn int(&mut self, key: &str, value: i64) -> &mut Self {
        self.key(key);
        self.out.extend_from_slice(value.to_string().as_bytes());
        self
    }

    pub fn null(&mut self, key: &str) -> &mut Self {
        self.key(key);
        self.out.extend_from_slice(b"null");
        self
    }

    /// A value that is already valid JSON.
    pub fn raw(&mut self, key: &str, json: &[u8]) -> &mut Self {
        self.key(key);
        self.out.extend_from_slice(json);
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out
    }
}

/// Appends `bytes` as a JSON string literal.
pub fn write_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let mut rest = text.as_bytes();
    out.reserve(rest.len() + 2);
    out.push(b'"');
    // runs that need no escape are copied whole (valid UTF-8 stays as it is)
    while !rest.is_empty() {
        let run = plain_run(rest);
        out.extend_from_slice(rest.get(..run).unwrap_or_default());
        let Some(&b) = rest.get(run) else { break };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            c => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
        }
        rest = rest.get(run + 1..).unwrap_or_default();
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_written_escaped_and_as_utf8() {
        let cases: [(&[u8], &str); 5] = [
            (b"plain text", r#""plain text""#),
            (b"q\"b\\n\nr\rt\tb\x08f\x0c\x01", r#""q\"b\\n\nr\rt\tb\bf\f\u0001""#),
            ("caf\u{e9} \u{1f600}".as_bytes(), "\"caf\u{e9} \u{1f600}\""),
            (b"bad \xff byte", "\"bad \u{fffd} byte\""),
            (b"", "\"\""),
        ];
        for (input, want) in cases {
            let mut out = Vec::new();
            write_string(&mut out, input);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{input:?}");
        }
        let long = "x".repeat(100) + "\"" + &"y".repeat(50);
        let mut out = Vec::new();
        write_string(&mut out, long.as_bytes());
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, long);
    }

    #[test]
    fn plain_runs_stop_at_the_first_byte_a_string_must_look_at() {
        for special in [b'"', b'\\', 0x00, 0x1f] {
            for at in 0..40 {
                let mut bytes = vec![b'a'; 40];
                bytes[at] = special;
                // bytes that read like the special one in other lanes change nothing
                bytes.iter_mut().skip(at + 1).for_each(|b| *b = 0x20);
                assert_eq!(plain_run(&bytes), at, "{special:#x} at {at}");
            }
        }
        for plain in [0x20u8, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff] {
            assert_eq!(plain_run(&[plain; 37]), 37, "{plain:#x}");
        }
        assert_eq!(plain_run(b""), 0);
    }

    fn check(json: &[u8]) -> Result<()> {
        validate("PAYLOAD", json, Limits::default())
    }

    /// The error's message, which must name the argument.
    fn refused(json: &[u8]) -> String {
        let e = check(json).unwrap_err();
        assert!(e.message.starts_with("PAYLOAD "), "{}", e.message);
        assert!(e.message.bytes().all(|b| (0x20..0x7f).contains(&b)), "printable ASCII: {}", e.message);
        e.message
    }

    fn nested(depth: usize) -> Vec<u8> {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
    }

    #[test]
    fn validates() {
        assert!(check(br#"{"a":[1,2,{"b":null}]}"#).is_ok());
        assert!(check(b"42").is_ok());
        assert!(check(b" \t\r\n[true , false,null, \"x\", -1.5e-3, 0, {} ,[]] ").is_ok());
        assert!(refused(b"{nope").starts_with("PAYLOAD is not valid JSON"));
        for bad in [
            &b"{} {}"[..],
            b"",
            b" ",
            b"[1,]",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"{1:2}",
            b"[1 2]",
            b"01",
            b"1.",
            b".5",
            b"-",
            b"1e",
            b"+1",
            b"tru",
            b"nulll",
            b"\"abc",
            b"\"\\x\"",
            b"\"\\u12\"",
            b"\"a\tb\"",
            b"[1}",
            b"{\"a\":1]",
            b"NaN",
            b"Infinity",
        ] {
            let msg = refused(bad);
            assert!(msg.starts_with("PAYLOAD is not valid JSON"), "{:?}: {msg}", String::from_utf8_lossy(bad));
        }
        assert!(validate_object("META", b" {\"k\":1}", Limits::default()).is_ok());
        assert!(validate_object("META", b"[1]", Limits::default()).is_err());
        assert!(validate_object("META", b"\"x\"", Limits::default()).is_err());
        assert_eq!(
            validate_object("META", b"{\"k\":1,\"k\":2}", Limits::default()).unwrap_err(),
            validate("META", b"{\"k\":1,\"k\":2}", Limits::default()).unwrap_err()
        );
    }

    #[test]
    fn utf8_is_checked() {
        assert!(check("\"é€😀\"".as_bytes()).is_ok());
        assert_eq!(refused(b"[\"ok\",\"\xff\"]"), "PAYLOAD is not valid JSON: invalid UTF-8 at offset 7");
        assert!(refused(b"\"\xed\xa0\x80\"").contains("UTF-8"), "an encoded surrogate is not UTF-8");
        // noncharacters are scalar values: accepted (see the module comment)
        assert!(check("\"\u{ffff}\u{fdd0}\\uffff\"".as_bytes()).is_ok());
    }

    #[test]
    fn surrogate_escapes_must_pair() {
        assert!(check(br#""\ud83d\ude00""#).is_ok());
        assert!(check(br#""\uD83D\uDE00 and \u00e9""#).is_ok());
        for lone in [&br#""\ud800""#[..], br#""\udc00""#, br#""\ud800x""#, br#""\ud800\u0041""#, br#""\ud800\ud800""#] {
            let msg = refused(lone);
            assert!(msg.starts_with("PAYLOAD is not I-JSON: lone surrogate escape at offset 1"), "{msg}");
        }
        assert!(refused(br#"{"\ud800":1}"#).contains("lone surrogate"), "names too");
    }

    #[test]
    fn numbers_must_be_finite_doubles() {
        for ok in [
            &b"-0"[..],
            b"0",
            b"-0.0",
            b"1e308",
            b"1.7976931348623157e308",
            b"1e-999",
            b"5e-324",
            b"123456789012345678901234567890",
        ] {
            assert!(check(ok).is_ok(), "{}", String::from_utf8_lossy(ok));
        }
        for big in [&b"1e999"[..], b"-1e400", b"1.8e308", b"[1,2e1000]"] {
            let msg = refused(big);
            assert!(msg.contains("is not I-JSON: number beyond a double"), "{msg}");
        }
        assert!(refused("9".repeat(400).as_bytes()).contains("beyond a double"));
    }

    #[test]
    fn duplicate_names_are_found_after_unescaping() {
        assert_eq!(refused(br#"{"a":1,"a":2}"#), "PAYLOAD is not I-JSON: duplicate member name at offset 7");
        for dup in [
            &br#"{"a":1,"\u0061":2}"#[..],
            br#"{"\u0061":1,"a":2}"#,
            "{\"\\ud83d\\ude00\":1,\"😀\":2}".as_bytes(),
            br#"{"x":{"b":1,"c":2,"b":3}}"#,
            br#"[{},{"k":[{"a":{}}],"k":0}]"#,
            br#"{"":1,"":2}"#,
        ] {
            assert!(refused(dup).contains("duplicate member name"), "{}", String::from_utf8_lossy(dup));
        }
        // the same name in sibling or nested objects is fine
        assert!(check(br#"{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}],"c":{"a":1}}"#).is_ok());
        assert!(check(br#"{"a":1,"A":2,"a ":3,"\u00e9":4,"e\u0301":5}"#).is_ok());
        let many: Vec<String> = (0..20_000).map(|i| format!("\"k{i}\":{i}")).collect();
        assert!(check(format!("{{{}}}", many.join(",")).as_bytes()).is_ok());
    }

    #[test]
    fn depth_is_limited() {
        let limits = Limits { max_bytes: i64::MAX, max_depth: 128 };
        assert!(validate("PAYLOAD", &nested(128), limits).is_ok());
        let e = validate("PAYLOAD", &nested(129), limits).unwrap_err();
        assert_eq!(e.message, "PAYLOAD nests deeper than json-max-depth 128 at offset 128");
        let objects = |d: usize| format!("{}1{}", "{\"a\":".repeat(d), "}".repeat(d)).into_bytes();
        assert!(validate("PAYLOAD", &objects(128), limits).is_ok());
        assert!(validate("PAYLOAD", &objects(129), limits).is_err());
        let one = Limits { max_bytes: 100, max_depth: 1 };
        assert!(validate("PAYLOAD", b"[1,{},2]", one).is_err());
        assert!(validate("PAYLOAD", b"[1,2]", one).is_ok());
        assert!(validate("PAYLOAD", b"\"scalars have depth 0\"", one).is_ok());
    }

    #[test]
    fn a_million_nested_brackets_are_refused_without_recursion() {
        let deep = nested(1_000_000);
        let big = Limits { max_bytes: i64::MAX, max_depth: 128 };
        assert!(validate("PAYLOAD", &deep, big).unwrap_err().message.contains("json-max-depth 128"));
        // and read to the end when the limit allows it: no stack overflow either way
        let unlimited = Limits { max_bytes: i64::MAX, max_depth: i64::MAX };
        assert!(validate("PAYLOAD", &deep, unlimited).is_ok());
    }

    #[test]
    fn size_is_limited() {
        let limits = Limits { max_bytes: 5, max_depth: 128 };
        assert!(validate("RESULT", b"[1,2]", limits).is_ok());
        let e = validate("RESULT", b"[1, 2]", limits).unwrap_err();
        assert_eq!(e.code, crate::error::Code::TooBig);
        assert_eq!(e.message, "RESULT is 6 bytes, over max-payload-bytes 5");
    }

    #[test]
    fn the_error_differs_only_in_the_argument_name() {
        for bad in [&br#"{"a":1,"a":2}"#[..], b"[[[", br#""\ud800""#, b"1e999"] {
            let p = validate("PAYLOAD", bad, Limits::default()).unwrap_err().message;
            let r = validate("RESULT", bad, Limits::default()).unwrap_err().message;
            assert_eq!(p.strip_prefix("PAYLOAD"), r.strip_prefix("RESULT"));
        }
    }

    #[test]
    fn unescapes() {
        let mut out = Vec::new();
        let mut reader = Reader::new(br#"["a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00z"]"#, 8).unwrap();
        while let Some(token) = reader.next_token().unwrap() {
            if let Token::Str(t) = token {
                t.unescape_into(&mut out);
            }
        }
        assert_eq!(String::from_utf8(out).unwrap(), "a\"\\/\u{8}\u{c}\n\r\té😀z");
    }

    #[test]
    fn writes_objects_that_parse() {
        let mut w = ObjectWriter::new();
        w.string("s", b"a\"b\\c\n\x01\xff").int("n", -5).null("z").raw("r", br#"{"x":[1]}"#);
        let doc = w.finish();
        let v: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(v["s"], "a\"b\\c\n\u{1}\u{fffd}");
        assert_eq!(v["n"], -5);
        assert!(v["z"].is_null());
        assert_eq!(v["r"]["x"][0], 1);
    }
}
