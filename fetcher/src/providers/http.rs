//! http: POSTs the request to an endpoint named in the fetcher's own config
//! (`--http-endpoint name=url`); the payload names it with `"endpoint": "name"`. A job can
//! never give a URL: that would let anyone who can create jobs reach any host. The answer
//! must be JSON; its `text` (a string answer, or a string `text` field) and its `usage`
//! (`input_tokens`/`output_tokens` or `prompt_tokens`/`completion_tokens`) are read when
//! present.

use std::collections::BTreeMap;

use serde_json::Value;

use super::call::{usage_at, BoxFuture, Call, Provider, Success, Usage};
use super::client::Http;
use super::failure::{ErrorClass, Failure};

pub struct HttpProvider {
    http: Http,
    endpoints: BTreeMap<String, String>,
}

impl HttpProvider {
    pub fn new(http: Http, endpoints: BTreeMap<String, String>) -> HttpProvider {
        HttpProvider { http, endpoints }
    }
}

pub fn text_of(output: &Value) -> Option<String> {
    match output {
        Value::String(s) => Some(s.clone()),
        _ => output.get("text").and_then(Value::as_str).map(str::to_string),
    }
}

/// An endpoint's own usage names first, then OpenAI's.
pub fn usage_of(output: &Value) -> Usage {
    usage_at(
        output,
        &["/usage/input_tokens", "/usage/prompt_tokens"],
        &["/usage/output_tokens", "/usage/completion_tokens"],
    )
}

impl Provider for HttpProvider {
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Success, Failure>> {
        Box::pin(async move {
            let name = call.payload.get("endpoint").and_then(Value::as_str).ok_or_else(|| {
                Failure::fatal(ErrorClass::Config, "an http job needs \"endpoint\": the name of a configured endpoint")
            })?;
            let url = self.endpoints.get(name).ok_or_else(|| {
                let name = crate::text::truncate(name, 64);
                Failure::fatal(ErrorClass::Config, format!("no HTTP endpoint named '{name}' is configured"))
            })?;
            let output = self.http.post_json(self.http.client.post(url), &call.request).await?;
            Ok(Success { text: text_of(&output), usage: usage_of(&output), model: None, output })
        })
    }
}
