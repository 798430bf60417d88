//! echo: answers with the request after an optional delay (`delay_ms` in the request or
//! the payload, at most an hour). Needs no key and calls nothing: for demos, tests and
//! benchmarks. text = request.text or request.prompt when a string; usage is an estimate,
//! a token per 4 bytes of JSON.

use std::time::Duration;

use serde_json::Value;

use super::call::{BoxFuture, Call, Provider, Success, Usage};
use super::failure::Failure;

pub struct Echo;

const MAX_DELAY_MS: u64 = 3_600_000;

fn tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

pub fn delay_of(call: &Call) -> Option<Duration> {
    let ms = call
        .request
        .get("delay_ms")
        .and_then(Value::as_u64)
        .or_else(|| call.payload.get("delay_ms").and_then(Value::as_u64))?;
    Some(Duration::from_millis(ms.min(MAX_DELAY_MS)))
}

impl Provider for Echo {
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Success, Failure>> {
        Box::pin(async move {
            if let Some(d) = delay_of(call) {
                tokio::time::sleep(d).await;
            }
            let text = ["text", "prompt"]
                .iter()
                .find_map(|k| call.request.get(*k).and_then(Value::as_str))
                .map(str::to_string);
            let input = tokens(call.request.to_string().len());
            let output = text.as_ref().map_or(input, |t| tokens(t.len()));
            Ok(Success {
                output: call.request.clone(),
                text,
                usage: Usage { input_tokens: input, output_tokens: output },
                model: None,
            })
        })
    }
}
