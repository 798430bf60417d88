//! The calls one attempt may make, in order: the payload's own provider and model, then its
//! fallbacks. A payload's `"fallback": [{"provider", "model", "request", "endpoint"}, ...]`
//! is its list (`[]`: none); without that key, the fetcher's `--fallback` rules for the
//! payload's provider are. Every leg is read and checked before the first call: a payload
//! whose fallback list is malformed calls nothing (class `payload`).
//!
//! A leg's request is its entry's `request` when given, else the payload's request written
//! for the leg's provider ([`translate`](super::translate)). A payload entry whose request
//! cannot be written is a payload error; a `--fallback` rule's is left out for that job (the
//! rule is the operator's, the request the job's).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::call::{parse_payload, Call};
use super::failure::{ErrorClass, Failure};
use super::gemini;
use super::name::ProviderName;
use super::translate::request_for;

/// At most this many fallbacks per payload, and per provider in `--fallback`.
pub const MAX_FALLBACKS: usize = 8;

/// A fallback the fetcher's `--fallback` names: a provider and its model (gemini, openai) or
/// endpoint (http); echo takes neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub provider: ProviderName,
    pub model: Option<String>,
    pub endpoint: Option<String>,
}

/// `--fallback` rules: the fallbacks of each provider's jobs, in order.
pub type FallbackRules = BTreeMap<ProviderName, Vec<Target>>;

impl Target {
    /// `gemini:<model>`, `openai:<model>`, `http:<endpoint>` or `echo`.
    pub fn parse(text: &str) -> Result<Target, String> {
        let (name, arg) = match text.trim().split_once(':') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (text.trim(), None),
        };
        let provider = name.parse::<ProviderName>()?;
        let arg = arg.filter(|a| !a.is_empty());
        let target = |model, endpoint| Ok(Target { provider, model, endpoint });
        match (provider, arg) {
            (ProviderName::Echo, None) => target(None, None),
            (ProviderName::Echo, Some(_)) => Err("echo takes no model".into()),
            (ProviderName::Http, Some(e)) => target(None, Some(e.to_string())),
            (ProviderName::Http, None) => Err("http needs its endpoint's name: http:<endpoint>".into()),
            (p, None) => Err(format!("{p} needs a model: {p}:<model>")),
            (p, Some(m)) => target(Some(check_model(p, m).map_err(|f| f.message)?), None),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.model.as_deref().or(self.endpoint.as_deref()) {
            Some(m) => write!(f, "{}:{m}", self.provider),
            None => write!(f, "{}", self.provider),
        }
    }
}

/// A model name as the provider takes it: gemini's is checked to stay inside the URL path;
/// any other is 1 to 128 printable characters without spaces.
fn check_model(provider: ProviderName, model: &str) -> Result<String, Failure> {
    if provider == ProviderName::Gemini {
        return gemini::model_path(Some(model));
    }
    if model.is_empty() || model.len() > 128 || !model.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(&format!("the {provider} model must be 1 to 128 printable characters without spaces")));
    }
    Ok(model.to_string())
}

fn bad(message: &str) -> Failure {
    Failure::fatal(ErrorClass::Payload, message)
}

/// One attempt's calls: `legs[0]` is the payload's own, the rest its fallbacks in order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub legs: Vec<Call>,
}

impl Plan {
    /// The payload's own call.
    pub fn primary(&self) -> Option<&Call> {
        self.legs.first()
    }
}

/// Reads a payload and its fallbacks (see the module doc).
pub fn parse_plan(payload: &[u8], rules: &FallbackRules) -> Result<Plan, Failure> {
    let primary = parse_payload(payload)?;
    let fallbacks = match primary.payload.get("fallback") {
        None | Some(Value::Null) => from_rules(&primary, rules.get(&primary.provider).map_or(&[], Vec::as_slice)),
        Some(Value::Array(entries)) => from_entries(&primary, entries)?,
        Some(_) => return Err(bad("\"fallback\" must be an array of {\"provider\", \"model\", ...}")),
    };
    let mut legs = vec![primary];
    legs.extend(fallbacks);
    Ok(Plan { legs })
}

fn from_entries(primary: &Call, entries: &[Value]) -> Result<Vec<Call>, Failure> {
    if entries.len() > MAX_FALLBACKS {
        return Err(bad(&format!("\"fallback\" has more than {MAX_FALLBACKS} entries")));
    }
    let read =
        |(i, e): (usize, &Value)| from_entry(primary, e).map_err(|f| bad(&format!("fallback[{i}]: {}", f.message)));
    entries.iter().enumerate().map(read).collect()
}

fn from_entry(primary: &Call, entry: &Value) -> Result<Call, Failure> {
    let obj = entry.as_object().ok_or_else(|| bad("not a JSON object"))?;
    let provider = obj.get("provider").and_then(Value::as_str).ok_or_else(|| bad("no \"provider\" string"))?;
    let provider = provider.parse::<ProviderName>().map_err(|e| bad(&e))?;
    let model = match obj.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(check_model(provider, m)?),
        Some(_) => return Err(bad("\"model\" must be a string")),
    };
    let request = match obj.get("request") {
        None | Some(Value::Null) => request_for(primary.provider, provider, &primary.request).ok_or_else(|| {
            let from = primary.provider;
            bad(&format!("the {from} request cannot be written for {provider}: give this entry its own \"request\""))
        })?,
        Some(r @ Value::Object(_)) => r.clone(),
        Some(_) => return Err(bad("\"request\" must be a JSON object")),
    };
    let mut payload = obj.clone();
    payload.remove("fallback");
    if let (false, Some(e)) = (payload.contains_key("endpoint"), primary.payload.get("endpoint")) {
        payload.insert("endpoint".into(), e.clone());
    }
    let leg = Call { provider, model, request, payload: Value::Object(payload) };
    check_leg(&leg)?;
    Ok(leg)
}

/// The `--fallback` targets of the payload's provider that can take its request; a target
/// with the payload's own provider and model is no fallback and is left out.
fn from_rules(primary: &Call, targets: &[Target]) -> Vec<Call> {
    targets
        .iter()
        .filter(|t| !(t.provider == primary.provider && t.model == primary.model && t.endpoint.is_none()))
        .filter_map(|t| {
            let request = request_for(primary.provider, t.provider, &primary.request)?;
            let mut payload = Map::new();
            payload.insert("provider".into(), Value::String(t.provider.as_str().into()));
            if let Some(m) = &t.model {
                payload.insert("model".into(), Value::String(m.clone()));
            }
            if let Some(e) = &t.endpoint {
                payload.insert("endpoint".into(), Value::String(e.clone()));
            }
            let leg = Call { provider: t.provider, model: t.model.clone(), request, payload: Value::Object(payload) };
            check_leg(&leg).is_ok().then_some(leg)
        })
        .collect()
}

/// What a fallback needs before it may be called: openai a model (the leg's or the
/// request's), http an endpoint's name.
fn check_leg(leg: &Call) -> Result<(), Failure> {
    match leg.provider {
        ProviderName::Gemini => gemini::model_path(leg.model.as_deref()).map(|_| ()),
        ProviderName::OpenAi if leg.model.is_none() && leg.request.get("model").and_then(Value::as_str).is_none() => {
            Err(bad("openai needs a \"model\""))
        }
        ProviderName::Http if leg.payload.get("endpoint").and_then(Value::as_str).is_none() => {
            Err(bad("http needs an \"endpoint\""))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(spec: &[(&str, &str)]) -> FallbackRules {
        let mut r = FallbackRules::new();
        for (from, to) in spec {
            r.entry(from.parse().unwrap()).or_default().push(Target::parse(to).unwrap());
        }
        r
    }

    fn names(p: &Plan) -> Vec<String> {
        p.legs.iter().map(|l| format!("{} {}", l.provider, l.model.as_deref().unwrap_or("-"))).collect()
    }

    const GEMINI: &str = r#"{"provider":"gemini","model":"g1","request":{"contents":[{"parts":[{"text":"hi"}]}]}}"#;

    #[test]
    fn targets_name_a_model_an_endpoint_or_nothing() {
        let t = Target::parse(" openai : gpt-4o-mini ").unwrap();
        assert_eq!((t.provider, t.model.as_deref(), t.endpoint), (ProviderName::OpenAi, Some("gpt-4o-mini"), None));
        assert_eq!(Target::parse("gemini:models/gemini-1.5-flash").unwrap().model.as_deref(), Some("gemini-1.5-flash"));
        assert_eq!(Target::parse("http:summarize").unwrap().endpoint.as_deref(), Some("summarize"));
        assert_eq!(Target::parse("echo").unwrap().to_string(), "echo");
        assert_eq!(Target::parse("openai:o3").unwrap().to_string(), "openai:o3");
        for (bad, why) in [
            ("openai", "needs a model"),
            ("gemini:", "needs a model"),
            ("gemini:../x", "must be 1 to 128"),
            ("openai:a b", "printable"),
            ("http", "endpoint"),
            ("echo:x", "no model"),
            ("claude:x", "unknown provider"),
        ] {
            let e = Target::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn without_a_fallback_key_the_rules_of_the_payloads_provider_apply() {
        let r = rules(&[("gemini", "openai:gpt-4o-mini"), ("gemini", "echo"), ("openai", "gemini:g9")]);
        let p = parse_plan(GEMINI.as_bytes(), &r).unwrap();
        assert_eq!(names(&p), ["gemini g1", "openai gpt-4o-mini", "echo -"]);
        assert_eq!(p.legs[1].request, json!({"messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(p.legs[1].payload, json!({"provider": "openai", "model": "gpt-4o-mini"}));
        assert_eq!(p.legs[2].request, p.legs[0].request, "echo takes the request as it is");
        assert_eq!(names(&parse_plan(br#"{"provider":"echo"}"#, &r).unwrap()), ["echo -"]);
    }

    #[test]
    fn rules_that_cannot_take_the_request_or_repeat_the_primary_are_left_out() {
        let r = rules(&[("openai", "gemini:g9"), ("openai", "openai:gpt-4o"), ("openai", "openai:o3")]);
        let image = br#"{"provider":"openai","model":"gpt-4o","request":{"prompt":"a cat"}}"#;
        assert_eq!(names(&parse_plan(image, &r).unwrap()), ["openai gpt-4o", "openai o3"]);
    }

    #[test]
    fn a_payload_list_replaces_the_rules() {
        let r = rules(&[("gemini", "echo")]);
        let p = br#"{"provider":"gemini","model":"g1","request":{"contents":[{"parts":[{"text":"hi"}]}]},
            "fallback":[{"provider":"gemini","model":"g2"},
                        {"provider":"openai","model":"o","request":{"messages":[{"role":"user","content":"own"}]}},
                        {"provider":"http","endpoint":"sum"}]}"#;
        let plan = parse_plan(p, &r).unwrap();
        assert_eq!(names(&plan), ["gemini g1", "gemini g2", "openai o", "http -"]);
        assert_eq!(plan.legs[1].request, plan.legs[0].request);
        assert_eq!(plan.legs[2].request["messages"][0]["content"], "own");
        assert_eq!(plan.legs[3].payload["endpoint"], "sum");
        let none = br#"{"provider":"gemini","model":"g1","fallback":[]}"#;
        assert_eq!(names(&parse_plan(none, &r).unwrap()), ["gemini g1"]);
    }

    #[test]
    fn an_http_fallback_inherits_the_payloads_endpoint() {
        let p = br#"{"provider":"http","endpoint":"a","request":{"text":"x"},"fallback":[{"provider":"http","endpoint":"b"},{"provider":"http"}]}"#;
        let plan = parse_plan(p, &FallbackRules::new()).unwrap();
        let endpoints: Vec<&Value> = plan.legs.iter().map(|l| &l.payload["endpoint"]).collect();
        assert_eq!(endpoints, [&json!("a"), &json!("b"), &json!("a")]);
    }

    #[test]
    fn malformed_fallback_lists_call_nothing() {
        let nine = format!(r#"{{"provider":"echo","fallback":[{}]}}"#, [r#"{"provider":"echo"}"#; 9].join(","));
        let cases = [
            (r#"{"provider":"echo","fallback":{}}"#.to_string(), "must be an array"),
            (r#"{"provider":"echo","fallback":[1]}"#.into(), "fallback[0]: not a JSON object"),
            (r#"{"provider":"echo","fallback":[{"model":"m"}]}"#.into(), "no \"provider\""),
            (r#"{"provider":"echo","fallback":[{"provider":"nope"}]}"#.into(), "unknown provider"),
            (r#"{"provider":"echo","fallback":[{"provider":"echo","request":[]}]}"#.into(), "\"request\" must be"),
            (r#"{"provider":"echo","fallback":[{"provider":"echo","model":7}]}"#.into(), "\"model\" must be"),
            (r#"{"provider":"echo","fallback":[{"provider":"gemini","model":"x"}]}"#.into(), "give this entry its own"),
            (r#"{"provider":"echo","fallback":[{"provider":"gemini","request":{}}]}"#.into(), "gemini needs a \"model\""),
            (r#"{"provider":"echo","fallback":[{"provider":"openai","request":{}}]}"#.into(), "openai needs"),
            (r#"{"provider":"echo","fallback":[{"provider":"http"}]}"#.into(), "http needs"),
            (
                r#"{"provider":"gemini","model":"g","request":{"contents":[{"parts":[{"text":"hi"}]}]},"fallback":[{"provider":"openai"}]}"#.into(),
                "fallback[0]: openai needs",
            ),
            (nine, "more than 8"),
        ];
        for (payload, want) in cases {
            let f = parse_plan(payload.as_bytes(), &FallbackRules::new()).unwrap_err();
            assert_eq!((f.retry, f.class), (false, ErrorClass::Payload), "{payload}");
            assert!(f.message.contains(want), "{payload}: {}", f.message);
        }
    }
}
