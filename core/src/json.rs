//! JSON checks and a small writer for the documents the module builds (events, JOB.GET
//! JSON). Values the caller gave (payload, result, meta) were validated on the way in,
//! so they are embedded as they are, never re-parsed.

use crate::error::{AiError, Result};

/// PAYLOAD, RESULT and META must be valid JSON.
pub fn validate(arg: &str, bytes: &[u8]) -> Result<()> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map(|_| ())
        .map_err(|e| AiError::arg(arg, format!("is not valid JSON: {e}")))
}

/// META must be a JSON object.
pub fn validate_object(arg: &str, bytes: &[u8]) -> Result<()> {
    validate(arg, bytes)?;
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        _ => Err(AiError::arg(arg, "must be a JSON object")),
    }
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
        ObjectWriter { out: b"{".to_vec(), first: true }
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
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\u{0c}' => out.extend_from_slice(b"\\f"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert!(validate("PAYLOAD", br#"{"a":[1,2,{"b":null}]}"#).is_ok());
        assert!(validate("PAYLOAD", b"42").is_ok());
        let e = validate("PAYLOAD", b"{nope").unwrap_err();
        assert!(e.message.starts_with("PAYLOAD is not valid JSON"), "{}", e.message);
        assert!(validate("PAYLOAD", b"{} {}").is_err());
        assert!(validate("PAYLOAD", b"").is_err());
        assert!(validate_object("META", b" {\"k\":1}").is_ok());
        assert!(validate_object("META", b"[1]").is_err());
        assert!(validate_object("META", b"\"x\"").is_err());
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
