//! echo: answers with the request after an optional delay (`delay_ms` in the request or
//! the payload, at most an hour). Needs no key and calls nothing: for demos, tests and
//! benchmarks. text = request.text or request.prompt when a string; usage is an estimate,
//! a token per 4 bytes of JSON.
//!
//! Streamed, echo sends its text word by word (each piece a word and the spaces before it),
//! the delay spread evenly over the words: a stream to watch without a provider's key.

use std::time::Duration;

use serde_json::Value;

use super::call::{BoxFuture, Call, Deltas, Provider, Success, Usage};
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

/// `text` cut into words, each with the spaces before it: the pieces join back into it.
pub fn words(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if space && in_word {
            out.push(&text[start..i]);
            start = i;
        }
        in_word = !space;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

fn answer(call: &Call) -> Success {
    let text = ["text", "prompt"].iter().find_map(|k| call.request.get(*k).and_then(Value::as_str)).map(str::to_string);
    let input = tokens(call.request.to_string().len());
    let output = text.as_ref().map_or(input, |t| tokens(t.len()));
    Success {
        output: call.request.clone(),
        text,
        usage: Usage { input_tokens: input, output_tokens: output },
        model: None,
    }
}

impl Provider for Echo {
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Success, Failure>> {
        Box::pin(async move {
            if let Some(d) = delay_of(call) {
                tokio::time::sleep(d).await;
            }
            Ok(answer(call))
        })
    }

    fn stream<'a>(&'a self, call: &'a Call, deltas: Deltas) -> BoxFuture<'a, Result<Success, Failure>> {
        Box::pin(async move {
            let s = answer(call);
            let pieces = s.text.as_deref().map(words).unwrap_or_default();
            let gap = delay_of(call).unwrap_or_default() / (pieces.len().max(1) as u32);
            for p in &pieces {
                tokio::time::sleep(gap).await;
                let _ = deltas.send(p.to_string());
            }
            if pieces.is_empty() {
                tokio::time::sleep(gap).await;
            }
            Ok(s)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_join_back_into_the_text() {
        for text in ["", "one", "  two words ", "a\nb  c", "é è"] {
            assert_eq!(words(text).concat(), text);
        }
        assert_eq!(words("The answer is 42."), ["The", " answer", " is", " 42."]);
        assert_eq!(words("  lead"), ["  lead"]);
    }
}
