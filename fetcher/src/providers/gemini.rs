//! Gemini: `POST {base}/v1beta/models/{model}:generateContent`, the key in `x-goog-api-key`.
//! text = candidates[0].content.parts[*].text joined; usage from usageMetadata
//! (promptTokenCount; candidatesTokenCount plus thoughtsTokenCount when present).

use serde_json::Value;

use super::call::{count_at, BoxFuture, Call, Provider, Success, Usage};
use super::client::Http;
use super::failure::{ErrorClass, Failure};
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

impl Provider for Gemini {
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Success, Failure>> {
        Box::pin(async move {
            let model = model_path(call.model.as_deref())?;
            let url = format!("{}/v1beta/models/{model}:generateContent", self.base);
            let req = self.http.client.post(url).header("x-goog-api-key", self.key.expose());
            let output = self.http.post_json(req, &call.request).await?;
            Ok(Success {
                text: text_of(&output),
                usage: usage_of(&output),
                model: output.get("modelVersion").and_then(Value::as_str).map(str::to_string),
                output,
            })
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
    fn model_names_cannot_leave_the_path() {
        assert_eq!(model_path(Some("models/gemini-2.0-flash")).unwrap(), "gemini-2.0-flash");
        for bad in [None, Some(""), Some("../x"), Some("a/b"), Some("a?key=1"), Some("..")] {
            assert!(model_path(bad).is_err(), "{bad:?}");
        }
    }
}
