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

    /// How much of a text that is still growing (a streamed answer) can be scrubbed and sent
    /// now: all of it but a tail that could be the start of a secret (the longest end of the
    /// text that begins one), and never a cut through a secret. The rest waits for what
    /// follows, so a key split across two pieces is still caught.
    pub fn settled(&self, text: &str) -> usize {
        let bytes = text.as_bytes();
        let mut cut = bytes.len();
        for s in &self.secrets {
            let key = s.expose().as_bytes();
            if let Some(k) = (1..key.len()).rev().find(|&k| key.get(..k).is_some_and(|p| bytes.ends_with(p))) {
                cut = cut.min(bytes.len() - k);
            }
        }
        loop {
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let through = |s: &Secret| {
                let len = s.expose().len();
                text.match_indices(s.expose()).map(|(at, _)| at).find(|&at| at < cut && cut < at + len)
            };
            match self.secrets.iter().find_map(through) {
                Some(at) => cut = at,
                None => return cut,
            }
        }
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

    #[test]
    fn a_growing_text_is_settled_up_to_where_a_secret_could_begin() {
        let r = Redactor::new([Secret::new("sk-very-secret"), Secret::new("gk-other-key")]);
        assert_eq!(r.settled("plain text"), 10);
        assert_eq!(r.settled("the key is s"), 11, "`s` may begin sk-...");
        assert_eq!(r.settled("the key is sk-very-se"), 11);
        assert_eq!(r.settled("the key is sk-very-secret"), 25, "a whole key is settled: scrub will replace it");
        assert_eq!(r.settled("é s"), 3);
        assert_eq!(Redactor::default().settled("sk-very"), 7, "no secrets, nothing held");
        // Every way of cutting a text into two pieces leaks no key.
        let text = "a sk-very-secret b gk-other-key c";
        for cut in 0..=text.len() {
            let (a, b) = text.split_at(cut);
            let first = r.settled(a);
            let sent = r.scrub(&a[..first]) + &r.scrub(&format!("{}{b}", &a[first..]));
            assert_eq!(sent, "a [redacted] b [redacted] c", "cut at {cut}");
        }
    }
}
