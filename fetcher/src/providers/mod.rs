//! Providers: one trait, one file per provider. A provider turns a job's request into one
//! HTTP call (or none, for echo) and classifies the outcome into a [`Success`] or a
//! [`Failure`] that says whether the module should retry it.

pub mod echo;
pub mod gemini;
pub mod http;
pub mod openai;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::secret::Redactor;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One job's call, read from its payload.
#[derive(Debug, Clone)]
pub struct Call {
    pub provider: String,
    pub model: Option<String>,
    /// The request in the provider's own JSON format.
    pub request: Value,
    /// The whole payload (echo reads `delay_ms`, http reads `endpoint` from it).
    pub payload: Value,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// A provider's answer.
#[derive(Debug, Clone)]
pub struct Success {
    /// The provider's JSON, as it answered.
    pub output: Value,
    /// The text of the answer, when it has one.
    pub text: Option<String>,
    pub usage: Usage,
    /// The model the provider says it used, when the payload named none.
    pub model: Option<String>,
}

/// A failed call: the error class and text stored in the job, and whether the module may
/// retry it (with `delay_ms` in place of its backoff, for a 429's Retry-After).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub retry: bool,
    pub class: String,
    pub message: String,
    pub delay_ms: Option<u64>,
}

impl Failure {
    pub fn retry(class: impl Into<String>, message: impl Into<String>) -> Failure {
        Failure { retry: true, class: class.into(), message: message.into(), delay_ms: None }
    }

    pub fn fatal(class: impl Into<String>, message: impl Into<String>) -> Failure {
        Failure { retry: false, class: class.into(), message: message.into(), delay_ms: None }
    }
}

pub trait Provider: Send + Sync {
    /// Makes the call. The caller bounds it with the per-call timeout too.
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Success, Failure>>;
}

/// Every provider this process can call, by name, and the reason each missing one is off.
pub struct Providers {
    enabled: BTreeMap<&'static str, Arc<dyn Provider>>,
    disabled: BTreeMap<&'static str, String>,
}

impl Providers {
    pub fn new(cfg: &Config, redactor: Redactor) -> anyhow::Result<Providers> {
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("aijob-fetcher/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("building the HTTP client: {}", e.without_url()))?;
        let http = Http { client, redactor };
        let mut enabled: BTreeMap<&'static str, Arc<dyn Provider>> = BTreeMap::new();
        let mut disabled = BTreeMap::new();
        enabled.insert("echo", Arc::new(echo::Echo));
        match &cfg.gemini_key {
            Some(key) => {
                enabled.insert("gemini", Arc::new(gemini::Gemini::new(http.clone(), &cfg.gemini_base, key.clone())));
            }
            None => {
                disabled.insert("gemini", "no Gemini API key is configured (set GEMINI_API_KEY)".to_string());
            }
        }
        match &cfg.openai_key {
            Some(key) => {
                enabled.insert("openai", Arc::new(openai::OpenAi::new(http.clone(), &cfg.openai_base, key.clone())));
            }
            None => {
                disabled.insert("openai", "no OpenAI API key is configured (set OPENAI_API_KEY)".to_string());
            }
        }
        if cfg.http_endpoints.is_empty() {
            disabled.insert("http", "no HTTP endpoint is configured (set --http-endpoint name=url)".to_string());
        } else {
            enabled.insert("http", Arc::new(http::HttpProvider::new(http, cfg.http_endpoints.clone())));
        }
        Ok(Providers { enabled, disabled })
    }

    pub fn enabled_names(&self) -> Vec<&'static str> {
        self.enabled.keys().copied().collect()
    }

    /// The provider a call names, or the failure that ends its job (class `config`).
    pub fn get(&self, name: &str) -> Result<Arc<dyn Provider>, Failure> {
        if let Some(p) = self.enabled.get(name) {
            return Ok(p.clone());
        }
        match self.disabled.get(name) {
            Some(why) => Err(Failure::fatal("config", format!("provider {name} is disabled: {why}"))),
            None => Err(Failure::fatal("payload", "unknown provider (one of gemini, openai, http, echo)")),
        }
    }
}

/// Reads a payload: `{"provider", "model", "request", ...}`. A payload that is not of this
/// shape ends its job at once (class `payload`).
pub fn parse_payload(payload: &[u8]) -> Result<Call, Failure> {
    let v: Value = serde_json::from_slice(payload).map_err(|_| Failure::fatal("payload", "the payload is not JSON"))?;
    let obj = v.as_object().ok_or_else(|| Failure::fatal("payload", "the payload is not a JSON object"))?;
    let provider = obj
        .get("provider")
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::fatal("payload", "the payload has no \"provider\" string"))?
        .to_string();
    let model = match obj.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(Failure::fatal("payload", "\"model\" must be a string")),
    };
    let request = match obj.get("request") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(r @ Value::Object(_)) => r.clone(),
        Some(_) => return Err(Failure::fatal("payload", "\"request\" must be a JSON object")),
    };
    Ok(Call { provider, model, request, payload: v })
}

/// A known provider name for metric labels (a payload's provider is any string).
pub fn label(provider: &str) -> &'static str {
    match provider {
        "gemini" => "gemini",
        "openai" => "openai",
        "http" => "http",
        "echo" => "echo",
        _ => "unknown",
    }
}

/// The result stored in the job.
pub fn result_json(call: &Call, s: &Success) -> Value {
    let mut out = Map::new();
    out.insert("provider".into(), Value::String(call.provider.clone()));
    let model = call.model.clone().or_else(|| s.model.clone());
    out.insert("model".into(), model.map_or(Value::Null, Value::String));
    out.insert("output".into(), s.output.clone());
    if let Some(t) = &s.text {
        out.insert("text".into(), Value::String(t.clone()));
    }
    out.insert("usage".into(), json!({"input_tokens": s.usage.input_tokens, "output_tokens": s.usage.output_tokens}));
    Value::Object(out)
}

/// The HTTP side shared by the providers that call out.
#[derive(Clone)]
pub struct Http {
    pub client: reqwest::Client,
    pub redactor: Redactor,
}

impl Http {
    /// POSTs `body` as JSON and returns the JSON answer of a 2xx; anything else becomes a
    /// classified [`Failure`] whose text holds no header, no URL and no secret.
    pub async fn post_json(&self, req: reqwest::RequestBuilder, body: &Value) -> Result<Value, Failure> {
        let resp = req.json(body).send().await.map_err(|e| self.transport_failure(e))?;
        let status = resp.status().as_u16();
        let retry_after = retry_after_ms(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| self.transport_failure(e))?;
        if (200..300).contains(&status) {
            return match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => Ok(v),
                Err(_) => Err(Failure::retry(
                    "response",
                    format!("HTTP {status}: the answer is not JSON: {}", self.excerpt(&bytes)),
                )),
            };
        }
        Err(self.status_failure(status, &bytes, retry_after))
    }

    /// 429 and 5xx retry (a 429's Retry-After as the delay); other statuses end the job
    /// with the status code as the class.
    pub fn status_failure(&self, status: u16, body: &[u8], retry_after: Option<u64>) -> Failure {
        let message = format!("HTTP {status}: {}", self.excerpt(body));
        match status {
            429 => Failure { retry: true, class: "429".into(), message, delay_ms: retry_after },
            500..=599 => Failure::retry(status.to_string(), message),
            _ => Failure::fatal(status.to_string(), message),
        }
    }

    pub fn transport_failure(&self, e: reqwest::Error) -> Failure {
        let e = e.without_url();
        if e.is_timeout() {
            return Failure::retry("timeout", "the provider did not answer within the timeout");
        }
        let detail = self.redactor.scrub(&root_cause(&e));
        if e.is_connect() {
            return Failure::retry("connect", format!("cannot connect to the provider: {detail}"));
        }
        Failure::retry("network", format!("the call to the provider failed: {detail}"))
    }

    /// A short, secret-free excerpt of an answer body: the provider's own error message
    /// when the body is `{"error": {"message": ...}}`, else its first 300 characters.
    pub fn excerpt(&self, body: &[u8]) -> String {
        let text = match serde_json::from_slice::<Value>(body) {
            Ok(v) => match v.pointer("/error/message").and_then(Value::as_str) {
                Some(m) => m.to_string(),
                None => match v.get("error").and_then(Value::as_str) {
                    Some(m) => m.to_string(),
                    None => v.to_string(),
                },
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

pub fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max_chars).collect();
    out.push('…');
    out
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

/// Retry-After as ms from now: `retry-after-ms` (OpenAI), else Retry-After as seconds or
/// as an HTTP date. None when absent or unreadable.
pub fn retry_after_ms(h: &reqwest::header::HeaderMap) -> Option<u64> {
    if let Some(ms) = h.get("retry-after-ms").and_then(|v| v.to_str().ok()) {
        if let Ok(ms) = ms.trim().parse::<f64>() {
            if ms.is_finite() && ms >= 0.0 {
                return Some(ms.ceil() as u64);
            }
        }
    }
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_millis() as i64;
    parse_retry_after(v, now_ms)
}

/// Retry-After's two forms (RFC 9110 10.2.3): delay-seconds, or an IMF-fixdate.
pub fn parse_retry_after(v: &str, now_ms: i64) -> Option<u64> {
    let v = v.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse::<u64>().ok().map(|s| s.saturating_mul(1000));
    }
    let at = parse_http_date(v)?;
    Some((at * 1000 - now_ms).max(0) as u64)
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` to Unix seconds.
pub fn parse_http_date(v: &str) -> Option<i64> {
    let rest = v.split_once(", ")?.1;
    let mut it = rest.split(' ');
    let day: i64 = it.next()?.parse().ok()?;
    let mon = it.next()?;
    let year: i64 = it.next()?.parse().ok()?;
    let time = it.next()?;
    if it.next()? != "GMT" {
        return None;
    }
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| *m == mon)? as u32 + 1;
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (t.next()??, t.next()??, t.next()??);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(aijob_core::cron::days_from_civil(year, month, day as u32) * 86400 + h * 3600 + m * 60 + s)
}

/// A non-negative integer field, for usage counts.
pub fn count_at(v: &Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer).and_then(Value::as_u64)
}

/// Token counts from the first of `input` and of `output` (JSON pointers) that is present.
pub fn usage_at(v: &Value, input: &[&str], output: &[&str]) -> Usage {
    let first = |ptrs: &[&str]| ptrs.iter().find_map(|p| count_at(v, p)).unwrap_or(0);
    Usage { input_tokens: first(input), output_tokens: first(output) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        assert_eq!(parse_retry_after("3", 0), Some(3000));
        assert_eq!(parse_retry_after(" 0 ", 0), Some(0));
        let at = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(at, 784111777);
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", (at - 2) * 1000), Some(2000));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", (at + 5) * 1000), Some(0));
        for bad in ["", "-1", "1.5", "soon", "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 32 Nov 1994 08:49:37 GMT"] {
            assert_eq!(parse_retry_after(bad, 0), None, "{bad}");
        }
        assert_eq!(parse_http_date("Wed, 01 Mar 2000 00:00:00 GMT"), Some(11017 * 86400));
    }

    #[test]
    fn payloads_are_checked() {
        let c = parse_payload(br#"{"provider":"gemini","model":"m","request":{"a":1}}"#).unwrap();
        assert_eq!((c.provider.as_str(), c.model.as_deref()), ("gemini", Some("m")));
        assert_eq!(parse_payload(br#"{"provider":"echo"}"#).unwrap().request, json!({}));
        for bad in [&b"[1]"[..], b"{}", br#"{"provider":1}"#, br#"{"provider":"echo","request":[1]}"#, b"x"] {
            let f = parse_payload(bad).unwrap_err();
            assert!(!f.retry);
            assert_eq!(f.class, "payload");
        }
    }

    #[test]
    fn statuses_are_classified() {
        let h =
            Http { client: reqwest::Client::new(), redactor: Redactor::new([crate::secret::Secret::new("sk-123456")]) };
        let f = h.status_failure(429, b"slow down", Some(1500));
        assert_eq!((f.retry, f.class.as_str(), f.delay_ms), (true, "429", Some(1500)));
        let f = h.status_failure(503, b"", None);
        assert_eq!((f.retry, f.class.as_str()), (true, "503"));
        let f = h.status_failure(400, br#"{"error":{"message":"bad key sk-123456"}}"#, None);
        assert_eq!((f.retry, f.class.as_str()), (false, "400"));
        assert_eq!(f.message, "HTTP 400: bad key [redacted]");
        let long = "x".repeat(1000);
        assert!(h.excerpt(long.as_bytes()).chars().count() <= 301);
    }
}
