//! Hand-written: scrubbing is `str::replace` of a few known keys, too little for a crate.
//!
//! Secrets (API keys): a type whose Debug never shows the value, and a redactor that scrubs
//! every known secret out of any text before it is logged, stored in a job or exported.

use std::fmt;
use std::sync::Arc;

/// An API key. `Debug` and `Display` print `[redacted]`; only `expose()` gives the value, and
/// only the provider code that builds the request header calls it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(s: &str) -> Secret {
        Secret(Arc::from(s))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Replaces every configured secret in a text. A second line of defence: error texts are
/// built without headers or keyed URLs in the first place, but a provider may echo a key
/// back in its body, and that body may end up in an error text or a result.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<Secret>,
}

/// Secrets shorter than this are not scrubbed (they would match ordinary text); no real
/// API key is that short.
const MIN_SCRUB_LEN: usize = 6;

pub const REDACTED: &str = "[redacted]";

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Redactor {
        Redactor { secrets: secrets.into_iter().filter(|s| s.expose().len() >= MIN_SCRUB_LEN).collect() }
    }

    /// The text with every secret replaced by `[redacted]`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.expose()) {
                out = out.replace(s.expose(), REDACTED);
            }
        }
        out
    }

    /// The JSON value with every secret replaced inside its strings and object keys.
    pub fn scrub_json(&self, v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        if self.secrets.is_empty() {
            return v;
        }
        match v {
            Value::String(s) => Value::String(self.scrub(&s)),
            Value::Array(a) => Value::Array(a.into_iter().map(|x| self.scrub_json(x)).collect()),
            Value::Object(m) => {
                Value::Object(m.into_iter().map(|(k, x)| (self.scrub(&k), self.scrub_json(x))).collect())
            }
            other => other,
        }
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("sk-very-secret");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "sk-very-secret");
    }

    #[test]
    fn scrub_replaces_every_occurrence_in_text_and_json() {
        let r = Redactor::new([Secret::new("sk-very-secret"), Secret::new("abc")]);
        assert_eq!(r.scrub("key sk-very-secret and sk-very-secret"), "key [redacted] and [redacted]");
        assert_eq!(r.scrub("abc stays: too short to scrub"), "abc stays: too short to scrub");
        let v = serde_json::json!({"a": ["x sk-very-secret"], "sk-very-secret": 1});
        let out = r.scrub_json(v).to_string();
        assert!(!out.contains("sk-very-secret"), "{out}");
    }
}
