//! OpenAI: `POST {base}/v1/chat/completions` with `Authorization: Bearer`, or
//! `POST {base}/v1/images/generations` when the request has a `prompt` and no `messages`.
//! The payload's `model`, when given, is put into the request body as `model`.
//! text = choices[0].message.content; usage from usage.prompt_tokens/completion_tokens
//! (or input_tokens/output_tokens, as the images endpoint reports them).

use serde_json::Value;

use super::call::{usage_at, BoxFuture, Call, Provider, Success, Usage};
use super::client::Http;
use super::failure::{ErrorClass, Failure};
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

impl Provider for OpenAi {
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Success, Failure>> {
        Box::pin(async move {
            let mut body = call.request.clone();
            if let (Some(m), Some(obj)) = (&call.model, body.as_object_mut()) {
                obj.insert("model".into(), Value::String(m.clone()));
            }
            if body.get("model").and_then(Value::as_str).is_none() {
                return Err(Failure::fatal(
                    ErrorClass::Payload,
                    "openai needs a \"model\" (in the payload or the request)",
                ));
            }
            let url = format!("{}{}", self.base, endpoint(&body));
            let req = self.http.client.post(url).bearer_auth(self.key.expose());
            let output = self.http.post_json(req, &body).await?;
            Ok(Success {
                text: text_of(&output),
                usage: usage_of(&output),
                model: output.get("model").and_then(Value::as_str).map(str::to_string),
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
}
