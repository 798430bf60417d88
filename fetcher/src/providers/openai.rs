//! OpenAI: `POST {base}/v1/chat/completions` with `Authorization: Bearer`, or
//! `POST {base}/v1/images/generations` when the request has a `prompt` and no `messages`.
//! The payload's `model`, when given, is put into the request body as `model`.
//! text = choices[0].message.content; usage from usage.prompt_tokens/completion_tokens
//! (or input_tokens/output_tokens, as the images endpoint reports them).
//!
//! Streaming (a chat request, when the payload asks for a stream): the body gets
//! `"stream": true` and `"stream_options": {"include_usage": true}`, the answer is read as
//! server-sent events, each `choices[0].delta.content` is a piece of the text, the usage is
//! the one of the last chunk (the one `include_usage` adds), and the answer is complete at
//! `data: [DONE]`: a stream that ends before it broke off.

use serde_json::{json, Value};

use super::call::{usage_at, BoxFuture, Call, Deltas, Provider, Success, Usage};
use super::client::Http;
use super::failure::{ErrorClass, Failure};
use super::sse::{self, Event};
use crate::secret::Secret;

pub struct OpenAi {
    http: Http,
    base: String,
    key: Secret,
}

impl OpenAi {
    pub fn new(http: Http, base: &str, key: Secret) -> OpenAi {
        OpenAi { http, base: base.to_string(), key }
    }
}

/// Which endpoint a request goes to: images when it has `prompt` and no `messages`.
pub fn endpoint(request: &Value) -> &'static str {
    if request.get("prompt").is_some() && request.get("messages").is_none() {
        "/v1/images/generations"
    } else {
        "/v1/chat/completions"
    }
}

pub fn text_of(output: &Value) -> Option<String> {
    match output.pointer("/choices/0/message/content")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect();
            (!texts.is_empty()).then(|| texts.concat())
        }
        _ => None,
    }
}

/// Chat completions name them prompt/completion, the images endpoint input/output.
pub fn usage_of(output: &Value) -> Usage {
    usage_at(
        output,
        &["/usage/prompt_tokens", "/usage/input_tokens"],
        &["/usage/completion_tokens", "/usage/output_tokens"],
    )
}

/// The request's body: the payload's model put in, and the streaming settings set (`stream`
/// on, with the usage in the last chunk) or taken out (the answer must then be one JSON).
pub fn body_of(call: &Call, stream: bool) -> Result<Value, Failure> {
    let mut body = call.request.clone();
    if let Some(obj) = body.as_object_mut() {
        if let Some(m) = &call.model {
            obj.insert("model".into(), Value::String(m.clone()));
        }
        if stream {
            obj.insert("stream".into(), Value::Bool(true));
            let options = obj.entry("stream_options").or_insert_with(|| json!({}));
            match options.as_object_mut() {
                Some(o) => drop(o.insert("include_usage".into(), Value::Bool(true))),
                None => *options = json!({"include_usage": true}),
            }
        } else {
            obj.remove("stream");
            obj.remove("stream_options");
        }
    }
    if body.get("model").and_then(Value::as_str).is_none() {
        return Err(Failure::fatal(ErrorClass::Payload, "openai needs a \"model\" (in the payload or the request)"));
    }
    Ok(body)
}

/// A streamed chat answer as its chunks arrive.
#[derive(Debug, Default)]
pub struct Streamed {
    answer: sse::Answer,
    done: bool,
}

impl Streamed {
    /// One event; returns the piece of text it carries (choice 0's), or the failure it
    /// reports. `[DONE]` completes the answer.
    pub fn event(&mut self, e: &Event, http: &Http) -> Result<Option<String>, Failure> {
        if sse::is_done(e) {
            self.done = true;
            return Ok(None);
        }
        let v = sse::json_of(e)?;
        if let Some(f) = sse::error_in(&v, http) {
            return Err(f);
        }
        let usage = v.get("usage").is_some_and(Value::is_object).then(|| usage_of(&v));
        let first = v
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0));
        let piece = first.and_then(|c| c.pointer("/delta/content")).and_then(Value::as_str).map(str::to_string);
        let model = v.get("model").and_then(Value::as_str).map(str::to_string);
        Ok(self.answer.take(v, usage, model.as_deref(), piece))
    }

    /// The answer, when the stream got to its `[DONE]`; `output` is its last JSON chunk.
    pub fn finish(self) -> Result<Success, Failure> {
        if !self.done {
            return Err(Failure::retry(
                ErrorClass::Network,
                "the stream ended before its [DONE]: the answer broke off",
            ));
        }
        Ok(self.answer.success())
    }
}

impl OpenAi {
    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let url = format!("{}{}", self.base, endpoint(body));
        self.http.client.post(url).bearer_auth(self.key.expose())
    }
}

/// A whole answer (JSON) as the result.
fn answer_of(output: Value) -> Success {
    Success {
        text: text_of(&output),
        usage: usage_of(&output),
        model: output.get("model").and_then(Value::as_str).map(str::to_string),
        output,
    }
}

impl Provider for OpenAi {
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Success, Failure>> {
        Box::pin(async move {
            let body = body_of(call, false)?;
            Ok(answer_of(self.http.post_json(self.post(&body), &body).await?))
        })
    }

    fn stream<'a>(&'a self, call: &'a Call, deltas: Deltas) -> BoxFuture<'a, Result<Success, Failure>> {
        Box::pin(async move {
            if endpoint(&call.request) != "/v1/chat/completions" {
                return Ok(self.call(call).await?.sent_whole(&deltas));
            }
            let body = body_of(call, true)?;
            let mut streamed = Streamed::default();
            let on_event = |e: Event| {
                if let Some(piece) = streamed.event(&e, &self.http)? {
                    let _ = deltas.send(piece);
                }
                Ok(!streamed.done)
            };
            match self.http.post_sse(self.post(&body), &body, on_event).await? {
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
    fn endpoint_rule() {
        assert_eq!(endpoint(&json!({"messages": []})), "/v1/chat/completions");
        assert_eq!(endpoint(&json!({"prompt": "a cat"})), "/v1/images/generations");
        assert_eq!(endpoint(&json!({"prompt": "x", "messages": []})), "/v1/chat/completions");
    }

    #[test]
    fn text_and_usage() {
        let out =
            json!({"choices": [{"message": {"content": "Hi"}}], "usage": {"prompt_tokens": 5, "completion_tokens": 2}});
        assert_eq!(text_of(&out).as_deref(), Some("Hi"));
        assert_eq!(usage_of(&out), Usage { input_tokens: 5, output_tokens: 2 });
        let img = json!({"data": [{"b64_json": "AAAA"}], "usage": {"input_tokens": 9, "output_tokens": 100}});
        assert_eq!(text_of(&img), None);
        assert_eq!(usage_of(&img), Usage { input_tokens: 9, output_tokens: 100 });
    }

    fn call(request: Value) -> Call {
        Call { provider: super::super::ProviderName::OpenAi, model: Some("m".into()), request, payload: json!({}) }
    }

    #[test]
    fn streamed_bodies_ask_for_the_usage_and_plain_ones_for_one_json() {
        let b = body_of(&call(json!({"messages": [], "stream_options": {"x": 1}})), true).unwrap();
        assert_eq!(
            b,
            json!({"messages": [], "model": "m", "stream": true, "stream_options": {"x": 1, "include_usage": true}})
        );
        let b = body_of(&call(json!({"messages": [], "stream": true, "stream_options": 3})), false).unwrap();
        assert_eq!(b, json!({"messages": [], "model": "m"}));
        let b = body_of(&call(json!({"stream_options": 3})), true).unwrap();
        assert_eq!(b["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn a_stream_gives_its_pieces_then_the_answer_at_done() {
        let http = Http { client: reqwest::Client::new(), redactor: Default::default() };
        let ev = |d: &str| Event { name: String::new(), data: d.into() };
        let mut s = Streamed::default();
        let pieces = [
            r#"{"model":"gpt-x","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"index":1,"delta":{"content":"other choice"}},{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}"#,
        ];
        let got: Vec<Option<String>> = pieces.iter().map(|p| s.event(&ev(p), &http).unwrap()).collect();
        assert_eq!(got, [None, Some("Hel".into()), Some("lo".into()), None]);
        let broke = Streamed { done: false, ..Default::default() };
        assert_eq!(broke.finish().unwrap_err().class, ErrorClass::Network);
        assert_eq!(s.event(&ev("[DONE]"), &http).unwrap(), None);
        let a = s.finish().unwrap();
        assert_eq!((a.text.as_deref(), a.model.as_deref()), (Some("Hello"), Some("gpt-x")));
        assert_eq!(a.usage, Usage { input_tokens: 4, output_tokens: 2 });
        assert_eq!(a.output["usage"]["completion_tokens"], 2, "the output is the last chunk");
        let mut s = Streamed::default();
        let f = s.event(&ev(r#"{"error":{"message":"overloaded"}}"#), &http).unwrap_err();
        assert!(f.retry && f.message.contains("overloaded"));
    }
}
