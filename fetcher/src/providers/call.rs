//! One job's call as its payload gives it, and the result stored when it succeeds.

use std::future::Future;
use std::pin::Pin;

use serde_json::{json, Map, Value};

use super::failure::{ErrorClass, Failure};
use super::name::ProviderName;

/// One job's call, read from its payload.
#[derive(Debug, Clone)]
pub struct Call {
    pub provider: ProviderName,
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

impl Success {
    /// An answer that came whole to a streamed call: its text is sent as one piece.
    pub fn sent_whole(self, deltas: &Deltas) -> Success {
        if let Some(t) = self.text.as_ref().filter(|t| !t.is_empty()) {
            let _ = deltas.send(t.clone());
        }
        self
    }
}

fn bad(message: &str) -> Failure {
    Failure::fatal(ErrorClass::Payload, message)
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a streamed call sends the pieces of its answer's text as they arrive.
pub type Deltas = tokio::sync::mpsc::UnboundedSender<String>;

pub trait Provider: Send + Sync {
    /// Makes the call. The caller bounds it with the per-call timeout too.
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Success, Failure>>;

    /// Makes the call in streaming mode: each piece of the answer's text goes to `deltas` as
    /// the provider sends it, and the answer is the same [`Success`] as [`Provider::call`]'s
    /// (the whole text, the usage, the provider's final JSON). A provider that cannot stream
    /// answers whole, and its text is one piece.
    fn stream<'a>(&'a self, call: &'a Call, deltas: Deltas) -> BoxFuture<'a, Result<Success, Failure>> {
        Box::pin(async move { Ok(self.call(call).await?.sent_whole(&deltas)) })
    }
}

/// Whether a payload asks for its answer as a stream: `"stream": true` at its top level, or
/// in its request (OpenAI's own flag).
pub fn wants_stream(call: &Call) -> bool {
    let on = |v: &Value| v.get("stream").and_then(Value::as_bool) == Some(true);
    on(&call.payload) || on(&call.request)
}

/// Reads a payload: `{"provider", "model", "request", ...}`. A payload that is not of this
/// shape, or names no known provider, ends its job at once (class `payload`).
pub fn parse_payload(payload: &[u8]) -> Result<Call, Failure> {
    let v: Value = serde_json::from_slice(payload).map_err(|_| bad("the payload is not JSON"))?;
    let obj = v.as_object().ok_or_else(|| bad("the payload is not a JSON object"))?;
    let provider =
        obj.get("provider").and_then(Value::as_str).ok_or_else(|| bad("the payload has no \"provider\" string"))?;
    let provider = provider.parse::<ProviderName>().map_err(|e| bad(&e))?;
    let model = match obj.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad("\"model\" must be a string")),
    };
    let request = match obj.get("request") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(r @ Value::Object(_)) => r.clone(),
        Some(_) => return Err(bad("\"request\" must be a JSON object")),
    };
    Ok(Call { provider, model, request, payload: v })
}

/// The result stored in the job.
pub fn result_json(call: &Call, s: &Success) -> Value {
    let mut out = Map::new();
    out.insert("provider".into(), Value::String(call.provider.as_str().into()));
    let model = call.model.clone().or_else(|| s.model.clone());
    out.insert("model".into(), model.map_or(Value::Null, Value::String));
    out.insert("output".into(), s.output.clone());
    if let Some(t) = &s.text {
        out.insert("text".into(), Value::String(t.clone()));
    }
    out.insert("usage".into(), json!({"input_tokens": s.usage.input_tokens, "output_tokens": s.usage.output_tokens}));
    Value::Object(out)
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
    fn payloads_are_checked() {
        let c = parse_payload(br#"{"provider":"gemini","model":"m","request":{"a":1}}"#).unwrap();
        assert_eq!((c.provider, c.model.as_deref()), (ProviderName::Gemini, Some("m")));
        assert_eq!(parse_payload(br#"{"provider":"echo"}"#).unwrap().request, json!({}));
        let bads: [&[u8]; 6] = [
            b"[1]",
            b"{}",
            br#"{"provider":1}"#,
            br#"{"provider":"echo","request":[1]}"#,
            b"x",
            br#"{"provider":"nope"}"#,
        ];
        for bad in bads {
            let f = parse_payload(bad).unwrap_err();
            assert!(!f.retry);
            assert_eq!(f.class, ErrorClass::Payload);
        }
    }

    #[test]
    fn a_payload_asks_for_a_stream_at_its_top_level_or_in_its_request() {
        let top = parse_payload(br#"{"provider":"gemini","stream":true}"#).unwrap();
        let req = parse_payload(br#"{"provider":"openai","request":{"stream":true}}"#).unwrap();
        let off = parse_payload(br#"{"provider":"openai","stream":"yes","request":{"stream":false}}"#).unwrap();
        assert_eq!((wants_stream(&top), wants_stream(&req), wants_stream(&off)), (true, true, false));
    }

    #[test]
    fn results_name_the_model_the_provider_used_when_the_payload_named_none() {
        let call = parse_payload(br#"{"provider":"echo"}"#).unwrap();
        let s = Success {
            output: json!({}),
            text: None,
            usage: Usage { input_tokens: 1, output_tokens: 2 },
            model: Some("m2".into()),
        };
        let r = result_json(&call, &s);
        assert!(!wants_stream(&call));
        assert_eq!(r["model"], "m2");
        assert_eq!(r["provider"], "echo");
        assert!(r.get("text").is_none());
        assert_eq!(r["usage"]["output_tokens"], 2);
    }
}
