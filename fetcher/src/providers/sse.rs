//! Server-sent events (the WHATWG `text/event-stream` format) as OpenAI and Gemini stream
//! their answers: a parser fed with the body's bytes as they arrive, whatever the network
//! cut them into, and the loop that reads a streamed answer through it.
//!
//! The parser keeps the bytes of a line that has not ended yet and the `data` lines of an
//! event that has not ended yet, so an event split across reads (even inside a multi-byte
//! character) comes out whole once its blank line arrives. Comment lines (`: keepalive`) and
//! the fields other than `event` and `data` (`id`, `retry`) are skipped. Lines end with LF,
//! CRLF or a lone CR.

use std::time::SystemTime;

use serde_json::Value;

use super::call::{Success, Usage};
use super::client::{retry_after_ms, Http};
use super::failure::{ErrorClass, Failure};
use crate::text::truncate;

/// One dispatched event: its `event` name (empty when none was given) and its data lines
/// joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub data: String,
}

/// The most bytes one line or one event may hold before the stream is refused (a provider's
/// event is a few KB; this bounds the memory a broken or hostile stream can take).
pub const MAX_EVENT_BYTES: usize = 8 << 20;

#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    /// The previous chunk ended with CR: an LF at the start of the next one belongs to it.
    after_cr: bool,
    name: String,
    data: String,
    has_data: bool,
}

impl Parser {
    /// Feeds the next bytes; returns the events they complete, in order. Err when a line
    /// or an event grows past [`MAX_EVENT_BYTES`].
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, String> {
        let mut out = Vec::new();
        for &b in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            match b {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    let line = std::mem::take(&mut self.line);
                    if let Some(e) = self.line_done(&line) {
                        out.push(e);
                    }
                }
                _ => self.line.push(b),
            }
            if self.line.len() + self.data.len() > MAX_EVENT_BYTES {
                return Err(format!("an event of the stream is larger than {MAX_EVENT_BYTES} bytes"));
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8]) -> Option<Event> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.first() == Some(&b':') {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.name = value.to_string(),
            _ => {}
        }
        None
    }

    /// A blank line: the event so far, when it has data (an event without data is none).
    fn dispatch(&mut self) -> Option<Event> {
        let name = std::mem::take(&mut self.name);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(Event { name, data: std::mem::take(&mut self.data) })
    }
}

/// `data: [DONE]`, OpenAI's last event.
/// What a provider's events have said so far: the text, the latest usage and model, and
/// the last event (the result's `output`).
#[derive(Debug, Default)]
pub struct Answer {
    text: Option<String>,
    usage: Usage,
    model: Option<String>,
    last: Value,
}

impl Answer {
    /// Takes one event `v` with what the provider's format found in it; returns the piece
    /// of text to append, when it is not empty.
    pub fn take(
        &mut self,
        v: Value,
        usage: Option<Usage>,
        model: Option<&str>,
        piece: Option<String>,
    ) -> Option<String> {
        if let Some(u) = usage {
            self.usage = u;
        }
        if let Some(m) = model {
            self.model = Some(m.to_string());
        }
        if let Some(p) = &piece {
            self.text.get_or_insert_with(String::new).push_str(p);
        }
        self.last = v;
        piece.filter(|p| !p.is_empty())
    }

    pub fn success(self) -> Success {
        Success { output: self.last, text: self.text, usage: self.usage, model: self.model }
    }
}

pub fn is_done(e: &Event) -> bool {
    e.data.trim() == "[DONE]"
}

/// An event's data as JSON, or the failure of a stream that sends something else.
pub fn json_of(e: &Event) -> Result<Value, Failure> {
    serde_json::from_str(&e.data).map_err(|_| {
        let excerpt = truncate(&e.data.split_whitespace().collect::<Vec<_>>().join(" "), 200);
        Failure::retry(ErrorClass::Response, format!("an event of the stream is not JSON: {excerpt}"))
    })
}

/// An event that reports an error instead of a piece of the answer (`{"error": ...}`):
/// the provider gave up in the middle of the answer.
pub fn error_in(v: &Value, http: &Http) -> Option<Failure> {
    let e = v.get("error")?;
    let text = e.get("message").and_then(Value::as_str).map_or_else(|| e.to_string(), str::to_string);
    let text = http.excerpt(serde_json::json!({"error": text}).to_string().as_bytes());
    Some(Failure::retry(ErrorClass::Response, format!("the stream reported an error: {text}")))
}

impl Http {
    /// POSTs `body` as JSON and reads the answer as a stream of events, handing each to
    /// `on_event` as it completes (`false` from it ends the reading: the answer is
    /// complete). A non-2xx answer is classified as [`Http::post_json`] does; a broken link
    /// during the stream is a retryable `network` failure. A server that answers one JSON
    /// document (`Content-Type: application/json`: it does not stream) gives it back whole.
    pub async fn post_sse(
        &self,
        req: reqwest::RequestBuilder,
        body: &Value,
        mut on_event: impl FnMut(Event) -> Result<bool, Failure> + Send,
    ) -> Result<Option<Value>, Failure> {
        let req = req.header(reqwest::header::ACCEPT, "text/event-stream");
        let mut resp = req.json(body).send().await.map_err(|e| self.transport_failure(e))?;
        let status = resp.status();
        if !status.is_success() {
            let retry_after = retry_after_ms(resp.headers(), SystemTime::now());
            let bytes = resp.bytes().await.map_err(|e| self.transport_failure(e))?;
            let message = format!("HTTP {}: {}", status.as_u16(), self.excerpt(&bytes));
            return Err(Failure::of_status(status, message, retry_after));
        }
        if is_json(resp.headers()) {
            let bytes = resp.bytes().await.map_err(|e| self.transport_failure(e))?;
            return serde_json::from_slice(&bytes).map(Some).map_err(|_| {
                let message = format!("HTTP {}: the answer is not JSON: {}", status.as_u16(), self.excerpt(&bytes));
                Failure::retry(ErrorClass::Response, message)
            });
        }
        let mut parser = Parser::default();
        while let Some(bytes) = resp.chunk().await.map_err(|e| self.transport_failure(e))? {
            let events = parser.push(&bytes).map_err(|m| Failure::retry(ErrorClass::Response, m))?;
            for e in events {
                if !on_event(e)? {
                    return Ok(None);
                }
            }
        }
        Ok(None)
    }
}

/// `Content-Type: application/json` (any parameters after it).
fn is_json(h: &reqwest::header::HeaderMap) -> bool {
    let ct = h.get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    ct.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str, data: &str) -> Event {
        Event { name: name.into(), data: data.into() }
    }

    fn all(parts: &[&[u8]]) -> Vec<Event> {
        let mut p = Parser::default();
        parts.iter().flat_map(|b| p.push(b).unwrap()).collect()
    }

    #[test]
    fn events_end_at_a_blank_line_and_join_their_data_lines() {
        let got = all(&[b"data: {\"a\":1}\n\ndata: x\ndata:y\n\nevent: ping\ndata: 2\n\n"]);
        assert_eq!(got, [ev("", "{\"a\":1}"), ev("", "x\ny"), ev("ping", "2")]);
    }

    #[test]
    fn events_split_across_reads_anywhere_come_out_whole() {
        let text = "data: {\"t\":\"héllo\"}\r\n\r\n: keepalive\n\ndata: [DONE]\r\r";
        let bytes = text.as_bytes();
        let want = all(&[bytes]);
        assert_eq!(want, [ev("", "{\"t\":\"héllo\"}"), ev("", "[DONE]")]);
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(all(&[a, b]), want, "cut at {cut}");
        }
        let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(all(&one_by_one), want);
    }

    #[test]
    fn comments_other_fields_and_events_without_data_are_skipped() {
        let got = all(&[b": ping\n\nid: 7\nretry: 10\n\nevent: x\n\ndata\n\n"]);
        assert_eq!(got, [ev("", "")], "a bare `data` line is an empty data line");
        assert!(is_done(&ev("", "[DONE]")));
        assert!(!is_done(&ev("", "{}")));
    }

    #[test]
    fn a_json_answer_is_told_apart_from_a_stream() {
        let mut h = reqwest::header::HeaderMap::new();
        assert!(!is_json(&h));
        h.insert(reqwest::header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
        assert!(!is_json(&h));
        h.insert(reqwest::header::CONTENT_TYPE, "Application/JSON; charset=utf-8".parse().unwrap());
        assert!(is_json(&h));
    }

    #[test]
    fn an_unending_line_is_refused() {
        let mut p = Parser::default();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert!(p.push(&big).is_err());
    }

    #[test]
    fn events_that_are_not_json_or_carry_an_error_fail_the_call() {
        let f = json_of(&ev("", "nope")).unwrap_err();
        assert_eq!((f.retry, f.class), (true, ErrorClass::Response));
        let http = Http { client: reqwest::Client::new(), redactor: Default::default() };
        let v: Value = serde_json::from_str(r#"{"error":{"message":"overloaded"}}"#).unwrap();
        let f = error_in(&v, &http).unwrap();
        assert!(f.message.ends_with("overloaded"), "{}", f.message);
        assert!(error_in(&serde_json::json!({"choices": []}), &http).is_none());
    }
}
