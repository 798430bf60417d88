//! Writing a job's request for another provider, so that a fallback can reuse the payload's
//! request instead of carrying its own.
//!
//! - the same provider, echo and http take the request as it is (echo answers it back; an
//!   http endpoint's format is its own);
//! - gemini and openai chat requests are rewritten into each other when they are a plain text
//!   chat: text turns (user and model/assistant), system text, and the sampling settings
//!   both have (`maxOutputTokens`/`max_tokens`, `temperature`, `topP`/`top_p`,
//!   `stopSequences`/`stop`); OpenAI's `stream` and `stream_options` say how the answer
//!   travels, not what is asked: the job's streaming mode is read from the payload and every
//!   leg sets its own, so they are left out of the rewrite;
//! - anything else (images, tools, files, other settings, an openai images request, a request
//!   for echo or http) has no faithful rewrite: None. Dropping a setting silently would
//!   change what the fallback is asked, so a request with one is never rewritten.

use serde_json::{json, Map, Value};

use super::name::ProviderName;

/// `request` (written for `from`) as `to` reads it; None when it cannot be rewritten.
pub fn request_for(from: ProviderName, to: ProviderName, request: &Value) -> Option<Value> {
    if from == to || matches!(to, ProviderName::Echo | ProviderName::Http) {
        return Some(request.clone());
    }
    let chat = match from {
        ProviderName::Gemini => from_gemini(request)?,
        ProviderName::OpenAi => from_openai(request)?,
        ProviderName::Echo | ProviderName::Http => return None,
    };
    match to {
        ProviderName::Gemini => Some(to_gemini(&chat)),
        ProviderName::OpenAi => Some(to_openai(&chat)),
        ProviderName::Echo | ProviderName::Http => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Speaker {
    User,
    Model,
}

/// A plain text chat, in neither provider's words.
#[derive(Debug, Default, PartialEq)]
struct Chat {
    system: Vec<String>,
    turns: Vec<(Speaker, String)>,
    max_tokens: Option<Value>,
    temperature: Option<Value>,
    top_p: Option<Value>,
    stop: Vec<String>,
}

/// The first of `names` present in `obj`.
fn field<'a>(obj: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| obj.get(*n))
}

/// A number, or None for an absent field; Err for a field of another type.
fn number(v: Option<&Value>) -> Result<Option<Value>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(n @ Value::Number(_)) => Ok(Some(n.clone())),
        Some(_) => Err(()),
    }
}

/// Gemini `parts` that are all text, joined; None when one is anything else.
fn gemini_text(parts: &Value) -> Option<String> {
    let mut out = String::new();
    for p in parts.as_array()? {
        let obj = p.as_object()?;
        if obj.len() != 1 {
            return None;
        }
        out.push_str(obj.get("text")?.as_str()?);
    }
    Some(out)
}

const GEMINI_KEYS: [&str; 7] = [
    "contents",
    "systemInstruction",
    "system_instruction",
    "generationConfig",
    "generation_config",
    // Safety thresholds have no openai counterpart and do not change what is asked.
    "safetySettings",
    "safety_settings",
];

const GEMINI_CONFIG_KEYS: [&str; 7] =
    ["maxOutputTokens", "max_output_tokens", "temperature", "topP", "top_p", "stopSequences", "stop_sequences"];

fn from_gemini(r: &Value) -> Option<Chat> {
    let obj = r.as_object()?;
    if obj.keys().any(|k| !GEMINI_KEYS.contains(&k.as_str())) {
        return None;
    }
    let mut chat = Chat::default();
    for c in obj.get("contents")?.as_array()? {
        let speaker = match c.get("role").and_then(Value::as_str) {
            None | Some("user") => Speaker::User,
            Some("model") => Speaker::Model,
            Some(_) => return None,
        };
        chat.turns.push((speaker, gemini_text(c.get("parts")?)?));
    }
    if let Some(si) = field(obj, &["systemInstruction", "system_instruction"]) {
        chat.system.push(gemini_text(si.get("parts")?)?);
    }
    if let Some(cfg) = field(obj, &["generationConfig", "generation_config"]) {
        let cfg = cfg.as_object()?;
        if cfg.keys().any(|k| !GEMINI_CONFIG_KEYS.contains(&k.as_str())) {
            return None;
        }
        chat.max_tokens = number(field(cfg, &["maxOutputTokens", "max_output_tokens"])).ok()?;
        chat.temperature = number(cfg.get("temperature")).ok()?;
        chat.top_p = number(field(cfg, &["topP", "top_p"])).ok()?;
        if let Some(stops) = field(cfg, &["stopSequences", "stop_sequences"]) {
            chat.stop = strings(stops)?;
        }
    }
    (!chat.turns.is_empty()).then_some(chat)
}

/// A string or an array of strings.
fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items.iter().map(|i| i.as_str().map(str::to_string)).collect(),
        Value::Null => Some(Vec::new()),
        _ => None,
    }
}

/// OpenAI message content: a string, or parts that are all `{"type": "text", "text": ...}`.
fn openai_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                if p.get("type").and_then(Value::as_str) != Some("text") || p.as_object()?.len() != 2 {
                    return None;
                }
                out.push_str(p.get("text")?.as_str()?);
            }
            Some(out)
        }
        _ => None,
    }
}

const OPENAI_KEYS: [&str; 10] = [
    "messages",
    "model",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "user",
    "stream",
    "stream_options",
];

fn from_openai(r: &Value) -> Option<Chat> {
    let obj = r.as_object()?;
    if obj.keys().any(|k| !OPENAI_KEYS.contains(&k.as_str())) {
        return None;
    }
    let mut chat = Chat::default();
    for m in obj.get("messages")?.as_array()? {
        let obj = m.as_object()?;
        if obj.keys().any(|k| !matches!(k.as_str(), "role" | "content" | "name")) {
            return None;
        }
        let text = openai_text(obj.get("content")?)?;
        match obj.get("role")?.as_str()? {
            "system" | "developer" => chat.system.push(text),
            "user" => chat.turns.push((Speaker::User, text)),
            "assistant" => chat.turns.push((Speaker::Model, text)),
            _ => return None,
        }
    }
    chat.max_tokens = number(field(obj, &["max_completion_tokens", "max_tokens"])).ok()?;
    chat.temperature = number(obj.get("temperature")).ok()?;
    chat.top_p = number(obj.get("top_p")).ok()?;
    if let Some(stop) = obj.get("stop") {
        chat.stop = strings(stop)?;
    }
    (!chat.turns.is_empty()).then_some(chat)
}

fn to_gemini(chat: &Chat) -> Value {
    let contents: Vec<Value> = chat
        .turns
        .iter()
        .map(|(who, text)| {
            let role = if *who == Speaker::Model { "model" } else { "user" };
            json!({"role": role, "parts": [{"text": text}]})
        })
        .collect();
    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents));
    if !chat.system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": [{"text": chat.system.join("\n\n")}]}));
    }
    let mut cfg = Map::new();
    let settings = [("maxOutputTokens", &chat.max_tokens), ("temperature", &chat.temperature), ("topP", &chat.top_p)];
    for (name, v) in settings {
        if let Some(v) = v {
            cfg.insert(name.into(), v.clone());
        }
    }
    if !chat.stop.is_empty() {
        cfg.insert("stopSequences".into(), json!(chat.stop));
    }
    if !cfg.is_empty() {
        out.insert("generationConfig".into(), Value::Object(cfg));
    }
    Value::Object(out)
}

fn to_openai(chat: &Chat) -> Value {
    let mut messages = Vec::new();
    if !chat.system.is_empty() {
        messages.push(json!({"role": "system", "content": chat.system.join("\n\n")}));
    }
    for (who, text) in &chat.turns {
        let role = if *who == Speaker::Model { "assistant" } else { "user" };
        messages.push(json!({"role": role, "content": text}));
    }
    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(messages));
    for (name, v) in [("max_tokens", &chat.max_tokens), ("temperature", &chat.temperature), ("top_p", &chat.top_p)] {
        if let Some(v) = v {
            out.insert(name.into(), v.clone());
        }
    }
    if !chat.stop.is_empty() {
        out.insert("stop".into(), json!(chat.stop));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProviderName::{Echo, Gemini, Http, OpenAi};

    #[test]
    fn a_gemini_chat_becomes_an_openai_chat_and_back() {
        let g = json!({
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Hi"}, {"text": " there"}]},
                {"role": "model", "parts": [{"text": "Hello."}]},
                {"parts": [{"text": "Sum 2+2"}]}
            ],
            "generationConfig": {"maxOutputTokens": 64, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
        });
        let o = request_for(Gemini, OpenAi, &g).unwrap();
        assert_eq!(
            o,
            json!({
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi there"},
                    {"role": "assistant", "content": "Hello."},
                    {"role": "user", "content": "Sum 2+2"}
                ],
                "max_tokens": 64, "temperature": 0.2, "top_p": 0.9, "stop": ["END"]
            })
        );
        let back = request_for(OpenAi, Gemini, &o).unwrap();
        assert_eq!(back["contents"][0], json!({"role": "user", "parts": [{"text": "Hi there"}]}));
        assert_eq!(back["contents"][1]["role"], "model");
        assert_eq!(back["systemInstruction"], json!({"parts": [{"text": "Be brief."}]}));
        assert_eq!(
            back["generationConfig"],
            json!({"maxOutputTokens": 64, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]})
        );
    }

    #[test]
    fn openai_text_parts_system_messages_and_the_model_field() {
        let o = json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "developer", "content": "A"},
                {"role": "system", "content": [{"type": "text", "text": "B"}]},
                {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]}
            ],
            "max_completion_tokens": 10,
            "stop": "STOP"
        });
        let g = request_for(OpenAi, Gemini, &o).unwrap();
        assert_eq!(
            g,
            json!({
                "contents": [{"role": "user", "parts": [{"text": "xy"}]}],
                "systemInstruction": {"parts": [{"text": "A\n\nB"}]},
                "generationConfig": {"maxOutputTokens": 10, "stopSequences": ["STOP"]}
            })
        );
    }

    #[test]
    fn same_provider_echo_and_http_take_the_request_as_it_is() {
        let r = json!({"anything": [1, 2]});
        for (from, to) in [(Gemini, Gemini), (OpenAi, OpenAi), (Gemini, Echo), (OpenAi, Http), (Http, Http)] {
            assert_eq!(request_for(from, to, &r), Some(r.clone()), "{from} -> {to}");
        }
        assert_eq!(request_for(Echo, Gemini, &json!({"text": "hi"})), None);
        assert_eq!(request_for(Http, OpenAi, &json!({"text": "hi"})), None);
    }

    #[test]
    fn an_openai_request_that_streams_is_rewritten_without_its_transport_settings() {
        let r = json!({"messages": [{"role": "user", "content": "hi"}], "stream": true,
            "stream_options": {"include_usage": true}});
        assert_eq!(
            request_for(OpenAi, Gemini, &r),
            Some(json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}))
        );
    }

    #[test]
    fn requests_without_a_faithful_rewrite_are_refused() {
        let refused = [
            (Gemini, json!({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "AA"}}]}]})),
            (Gemini, json!({"contents": [{"parts": [{"text": "a"}]}], "tools": []})),
            (Gemini, json!({"contents": [{"parts": [{"text": "a"}]}], "generationConfig": {"responseMimeType": "x"}})),
            (Gemini, json!({"contents": [{"role": "function", "parts": [{"text": "a"}]}]})),
            (Gemini, json!({"contents": []})),
            (Gemini, json!({"contents": [{"parts": [{"text": "a"}]}], "generationConfig": {"temperature": "hot"}})),
            (OpenAi, json!({"prompt": "a cat"})),
            (OpenAi, json!({"messages": [{"role": "tool", "content": "x"}]})),
            (OpenAi, json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})),
            (OpenAi, json!({"messages": [{"role": "user", "content": "a"}], "tools": []})),
            (OpenAi, json!({"messages": [{"role": "assistant", "content": null, "tool_calls": []}]})),
            (OpenAi, json!({"messages": [{"role": "user", "content": "a"}], "stop": 3})),
        ];
        for (from, r) in refused {
            let to = if from == Gemini { OpenAi } else { Gemini };
            assert_eq!(request_for(from, to, &r), None, "{r}");
        }
    }
}
