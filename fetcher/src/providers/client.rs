//! The HTTP side shared by the providers that call out: one POST of JSON, its answer or a
//! classified [`Failure`] whose text holds no header, no URL and no secret.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;

use super::failure::{ErrorClass, Failure};
use crate::secret::Redactor;
use crate::text::truncate;

#[derive(Clone)]
pub struct Http {
    pub client: reqwest::Client,
    pub redactor: Redactor,
}

impl Http {
    pub fn new(timeout: Duration, redactor: Redactor) -> anyhow::Result<Http> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("aijob-fetcher/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("building the HTTP client: {}", e.without_url()))?;
        Ok(Http { client, redactor })
    }

    /// POSTs `body` as JSON and returns the JSON answer of a 2xx.
    pub async fn post_json(&self, req: reqwest::RequestBuilder, body: &Value) -> Result<Value, Failure> {
        let resp = req.json(body).send().await.map_err(|e| self.transport_failure(e))?;
        let status = resp.status();
        let retry_after = retry_after_ms(resp.headers(), SystemTime::now());
        let bytes = resp.bytes().await.map_err(|e| self.transport_failure(e))?;
        if !status.is_success() {
            let message = format!("HTTP {}: {}", status.as_u16(), self.excerpt(&bytes));
            return Err(Failure::of_status(status, message, retry_after));
        }
        serde_json::from_slice::<Value>(&bytes).map_err(|_| {
            let message = format!("HTTP {}: the answer is not JSON: {}", status.as_u16(), self.excerpt(&bytes));
            Failure::retry(ErrorClass::Response, message)
        })
    }

    pub fn transport_failure(&self, e: reqwest::Error) -> Failure {
        let e = e.without_url();
        if e.is_timeout() {
            return Failure::retry(ErrorClass::Timeout, "the provider did not answer within the timeout");
        }
        let detail = self.redactor.scrub(&root_cause(&e));
        if e.is_connect() {
            return Failure::retry(ErrorClass::Connect, format!("cannot connect to the provider: {detail}"));
        }
        Failure::retry(ErrorClass::Network, format!("the call to the provider failed: {detail}"))
    }

    /// A short, secret-free excerpt of an answer body: the provider's own error message
    /// when the body is `{"error": {"message": ...}}`, else its first 300 characters.
    pub fn excerpt(&self, body: &[u8]) -> String {
        let text = match serde_json::from_slice::<Value>(body) {
            Ok(v) => match v.pointer("/error/message").or_else(|| v.get("error")).and_then(Value::as_str) {
                Some(m) => m.to_string(),
                None => v.to_string(),
            },
            Err(_) => String::from_utf8_lossy(body).into_owned(),
        };
        let collapsed: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let scrubbed = self.redactor.scrub(&collapsed);
        if scrubbed.is_empty() {
            return "(empty body)".into();
        }
        truncate(&scrubbed, 300)
    }
}

/// The innermost error of a chain: "Connection refused (os error 111)" rather than
/// reqwest's wrapper text.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    truncate(&cur.to_string(), 200)
}

/// Retry-After as ms from `now`: `retry-after-ms` (OpenAI), else Retry-After as seconds or
/// as an HTTP date. None when absent or unreadable.
pub fn retry_after_ms(h: &HeaderMap, now: SystemTime) -> Option<u64> {
    let ms = h.get("retry-after-ms").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<f64>().ok());
    if let Some(ms) = ms.filter(|ms| ms.is_finite() && *ms >= 0.0) {
        return Some(ms.ceil() as u64);
    }
    parse_retry_after(h.get(RETRY_AFTER)?.to_str().ok()?, now)
}

/// Retry-After's two forms (RFC 9110 10.2.3): delay-seconds, or an HTTP date.
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<u64> {
    let v = v.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse::<u64>().ok().map(|s| s.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).map_or(0, |d| d.as_millis() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use reqwest::header::HeaderValue;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        assert_eq!(parse_retry_after("3", at(0)), Some(3000));
        assert_eq!(parse_retry_after(" 0 ", at(0)), Some(0));
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(parse_retry_after(date, at(784111777 - 2)), Some(2000));
        assert_eq!(parse_retry_after(date, at(784111777 + 5)), Some(0));
        for bad in ["", "-1", "1.5", "soon", "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 32 Nov 1994 08:49:37 GMT"] {
            assert_eq!(parse_retry_after(bad, at(0)), None, "{bad}");
        }
    }

    #[test]
    fn openai_retry_after_ms_comes_first() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after_ms(&h, at(0)), Some(7000));
        h.insert("retry-after-ms", HeaderValue::from_static("12.5"));
        assert_eq!(retry_after_ms(&h, at(0)), Some(13));
        h.insert("retry-after-ms", HeaderValue::from_static("-3"));
        assert_eq!(retry_after_ms(&h, at(0)), Some(7000));
    }

    #[test]
    fn excerpts_hold_no_secret_and_stay_short() {
        let h = Http { client: reqwest::Client::new(), redactor: Redactor::new([Secret::new("sk-123456")]) };
        assert_eq!(h.excerpt(br#"{"error":{"message":"bad key sk-123456"}}"#), "bad key [redacted]");
        assert_eq!(h.excerpt(br#"{"error":"plain"}"#), "plain");
        assert_eq!(h.excerpt(b"  "), "(empty body)");
        let long = "x".repeat(1000);
        assert!(h.excerpt(long.as_bytes()).chars().count() <= 301);
    }
}
