//! Gemini: `POST {base}/v1beta/models/{model}:generateContent`, the key in `x-goog-api-key`.
//! text = candidates[0].content.parts[*].text joined; usage from usageMetadata
//! (promptTokenCount; candidatesTokenCount plus thoughtsTokenCount when present).
//!
//! Streaming (when the payload asks for a stream): `POST ...:streamGenerateContent?alt=sse`,
//! whose events are each a `GenerateContentResponse` holding the next piece of the text; the
//! usage is the `usageMetadata` of the last event that has one (Gemini repeats it, the last
//! being the whole call's), and the answer is complete when a candidate said its
//! `finishReason` (or the prompt was blocked) before the stream ended.

use serde_json::Value;

use super::call::{count_at, BoxFuture, Call, Deltas, Provider, Success, Usage};
use super::client::Http;
use super::failure::{ErrorClass, Failure};
use super::sse::{self, Event};
use crate::secret::Secret;

pub struct Gemini {
    http: Http,
    base: String,
    key: Secret,
}

impl Gemini {
    pub fn new(http: Http, base: &str, key: Secret) -> Gemini {
        Gemini { http, base: base.to_string(), key }
    }
}

/// A model name as it may appear in the path: `gemini-2.0-flash`, or `models/...`.
pub fn model_path(model: Option<&str>) -> Result<String, Failure> {
    let m = model.ok_or_else(|| Failure::fatal(ErrorClass::Payload, "gemini needs a \"model\""))?;
    let m = m.strip_prefix("models/").unwrap_or(m);
    let ok = !m.is_empty()
        && m.len() <= 128
        && m.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && !m.starts_with('.');
    if !ok {
        return Err(Failure::fatal(ErrorClass::Payload, "the gemini \"model\" must be 1 to 128 of [A-Za-z0-9._-]"));
    }
    Ok(m.to_string())
}

pub fn text_of(output: &Value) -> Option<String> {
    let parts = output.pointer("/candidates/0/content/parts")?.as_array()?;
    let texts: Vec<&str> = parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect();
    if texts.is_empty() {
        return None;
    }
    Some(texts.concat())
}

pub fn usage_of(output: &Value) -> Usage {
    let out = count_at(output, "/usageMetadata/candidatesTokenCount").unwrap_or(0)
        + count_at(output, "/usageMetadata/thoughtsTokenCount").unwrap_or(0);
    Usage { input_tokens: count_at(output, "/usageMetadata/promptTokenCount").unwrap_or(0), output_tokens: out }
}

/// A streamed answer as its events arrive.
#[derive(Debug, Default)]
pub struct Streamed {
    answer: sse::Answer,
    finished: bool,
}

impl Streamed {
    /// One event; returns the piece of text it carries, or the failure it reports.
    pub fn event(&mut self, e: &Event, http: &Http) -> Result<Option<String>, Failure> {
        let v = sse::json_of(e)?;
        if let Some(f) = sse::error_in(&v, http) {
            return Err(f);
        }
        let usage = v.get("usageMetadata").is_some_and(Value::is_object).then(|| usage_of(&v));
        let reason = v.pointer("/candidates/0/finishReason").and_then(Value::as_str);
        let blocked = v.pointer("/promptFeedback/blockReason").is_some();
        self.finished |= reason.is_some() || blocked;
        let (piece, model) = (text_of(&v), v.get("modelVersion").and_then(Value::as_str).map(str::to_string));
        Ok(self.answer.take(v, usage, model.as_deref(), piece))
    }

    /// The answer, when a finish reason came before the stream ended; `output` is the last
    /// event.
    pub fn finish(self) -> Result<Success, Failure> {
        if !self.finished {
            let m = "the stream ended before a finishReason: the answer broke off";
            return Err(Failure::retry(ErrorClass::Network, m));
        }
        Ok(self.answer.success())
    }
}

impl Gemini {
    /// `method` is `generateContent` or `streamGenerateContent?alt=sse`.
    fn post(&self, call: &Call, method: &str) -> Result<reqwest::RequestBuilder, Failure> {
        let model = model_path(call.model.as_deref())?;
        let url = format!("{}/v1beta/models/{model}:{method}", self.base);
        Ok(self.http.client.post(url).header("x-goog-api-key", self.key.expose()))
    }
}

/// A whole answer (JSON) as the result.
fn answer_of(output: Value) -> Success {
    Success {
        text: text_of(&output),
        usage: usage_of(&output),
        model: output.get("modelVersion").and_then(Value::as_str).map(str::to_string),
        output,
    }
}

impl Provider for Gemini {
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Success, Failure>> {
        Box::pin(async move {
            Ok(answer_of(self.http.post_json(self.post(call, "generateContent")?, &call.request).await?))
        })
    }

    fn stream<'a>(&'a self, call: &'a Call, deltas: Deltas) -> BoxFuture<'a, Result<Success, Failure>> {
        Box::pin(async move {
            let req = self.post(call, "streamGenerateContent?alt=sse")?;
            let mut streamed = Streamed::default();
            let on_event = |e: Event| {
                if let Some(piece) = streamed.event(&e, &self.http)? {
                    let _ = deltas.send(piece);
                }
                Ok(true)
            };
            match self.http.post_sse(req, &call.request, on_event).await? {
                Some(whole) => Ok(answer_of(whole).sent_whole(&deltas)),
                None => streamed.finish(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_and_usage() {
        let out = json!({
            "candidates": [{"content": {"parts": [{"text": "Hello"}, {"inlineData": {}}, {"text": ", world"}]}}],
            "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3, "thoughtsTokenCount": 2}
        });
        assert_eq!(text_of(&out).as_deref(), Some("Hello, world"));
        assert_eq!(usage_of(&out), Usage { input_tokens: 7, output_tokens: 5 });
        assert_eq!(text_of(&json!({"candidates": []})), None);
    }

    #[test]
    fn a_stream_gives_its_pieces_and_the_last_usage_once_it_finished() {
        let http = Http { client: reqwest::Client::new(), redactor: Default::default() };
        let ev = |d: &str| Event { name: String::new(), data: d.into() };
        let mut s = Streamed::default();
        let events = [
            r#"{"candidates":[{"content":{"parts":[{"text":"Hel"}]}}],"usageMetadata":{"promptTokenCount":7,"candidatesTokenCount":1}}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"lo"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":7,"candidatesTokenCount":2},"modelVersion":"g-1"}"#,
        ];
        let got: Vec<Option<String>> = events.iter().map(|e| s.event(&ev(e), &http).unwrap()).collect();
        assert_eq!(got, [Some("Hel".into()), Some("lo".into())]);
        let a = s.finish().unwrap();
        assert_eq!((a.text.as_deref(), a.model.as_deref()), (Some("Hello"), Some("g-1")));
        assert_eq!(a.usage, Usage { input_tokens: 7, output_tokens: 2 });
        assert_eq!(a.output["candidates"][0]["finishReason"], "STOP");
        let mut s = Streamed::default();
        s.event(&ev(events[0]), &http).unwrap();
        assert_eq!(s.finish().unwrap_err().class, ErrorClass::Network, "no finishReason: it broke off");
        let mut s = Streamed::default();
        s.event(&ev(r#"{"promptFeedback":{"blockReason":"SAFETY"}}"#), &http).unwrap();
        assert_eq!(s.finish().unwrap().text, None);
    }

    #[test]
    fn model_names_cannot_leave_the_path() {
        assert_eq!(model_path(Some("models/gemini-2.0-flash")).unwrap(), "gemini-2.0-flash");
        for bad in [None, Some(""), Some("../x"), Some("a/b"), Some("a?key=1"), Some("..")] {
            assert!(model_path(bad).is_err(), "{bad:?}");
        }
    }
}
