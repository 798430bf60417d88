//! The rules of fallback, pure: when a failed call moves on to the next leg of its
//! [`Plan`](crate::providers::Plan), and what an attempt whose legs all failed reports.
//!
//! - A provider failure ([`ErrorClass::is_provider_failure`]: timeout, connect, network, a
//!   2xx that is not JSON, 5xx, 429) moves on, within the same attempt. A 429 whose
//!   Retry-After is at most `--fallback-429-wait` is the exception: the provider said when it
//!   will take the call again, so the attempt ends there and the job is retried after it on
//!   the same provider, as without fallback.
//! - Anything else stops the attempt: a 4xx other than 429 (the request is wrong), the
//!   payload, a missing key or endpoint, RATELIMIT errors.
//! - A leg whose provider is cooled down is skipped (class `cooldown`), no call made.
//!
//! When no leg answered, the attempt reports the last call's failure (its class and text,
//! the text followed by every leg tried), with one change: it is retryable unless that call
//! was the only leg tried. A fallback never ends a job that its own provider alone would
//! have retried. When no call was made at all (every leg cooled down), the job is given
//! back with JOB.RELEASE DELAY until the first cooldown ends: the attempt does not count.

use serde_json::{json, Value};

use crate::outcome::Refusal;
use crate::providers::{self, Call, ErrorClass, Failure, Success};

/// A leg that did not answer: the result's `tried` list and the error text name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tried {
    pub provider: providers::ProviderName,
    pub model: Option<String>,
    pub class: ErrorClass,
    pub error: String,
}

impl Tried {
    pub fn failed(leg: &Call, f: &Failure) -> Tried {
        Tried { provider: leg.provider, model: leg.model.clone(), class: f.class, error: f.message.clone() }
    }

    pub fn cooled(leg: &Call, remaining_ms: u64) -> Tried {
        let error = format!("not called: {} is cooled down for {remaining_ms} ms more", leg.provider);
        Tried { provider: leg.provider, model: leg.model.clone(), class: ErrorClass::Cooldown, error }
    }

    /// `{"provider", "model", "class", "error"}`, as in the result's `tried`.
    pub fn to_json(&self) -> Value {
        json!({"provider": self.provider.as_str(), "model": self.model, "class": self.class.as_str(), "error": self.error})
    }

    /// `gemini gemini-2.0-flash: 503`.
    fn label(&self) -> String {
        match &self.model {
            Some(m) => format!("{} {m}: {}", self.provider, self.class.as_str()),
            None => format!("{}: {}", self.provider, self.class.as_str()),
        }
    }
}

/// After a failed call: try the next leg, or end the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    MoveOn,
    Stop,
}

pub fn after_failure(f: &Failure, max_429_wait_ms: u64) -> Next {
    if let ErrorClass::Status(s) = f.class {
        if s.as_u16() == 429 && f.delay_ms.is_some_and(|d| d <= max_429_wait_ms) {
            return Next::Stop;
        }
    }
    if f.class.is_provider_failure() {
        Next::MoveOn
    } else {
        Next::Stop
    }
}

/// How one attempt's legs ended.
#[derive(Debug, Clone)]
pub enum End {
    /// Leg `leg` answered; `tried` are the legs before it.
    Answered { leg: usize, success: Success, tried: Vec<Tried> },
    /// No leg answered: the failure to report (its text names every leg tried).
    Failed(Failure),
    /// Every leg was skipped, cooled down: give the job back for `delay_ms`.
    Cooled { delay_ms: u64 },
    /// Redis refused a streamed leg's append: the job is no longer ours, nothing is written.
    Lost(Refusal),
}

/// The failure an attempt reports when `last` (the last call's) ended it; `tried` holds
/// every leg that did not answer, `last`'s included.
pub fn reported(last: Failure, tried: &[Tried]) -> Failure {
    let only_leg = tried.len() <= 1;
    let retry = last.retry || !only_leg;
    Failure {
        retry,
        delay_ms: if retry { last.delay_ms } else { None },
        message: with_tried(&last.message, tried),
        class: last.class,
    }
}

/// The error text, followed by every leg tried when there was more than one.
pub fn with_tried(message: &str, tried: &[Tried]) -> String {
    if tried.len() <= 1 {
        return message.to_string();
    }
    let legs: Vec<String> = tried.iter().map(Tried::label).collect();
    format!("{message} (tried {})", legs.join(", "))
}

/// The job's result: the answering leg's provider and model, and the legs tried before
/// (`tried`, left out when there were none, so a result without fallback is unchanged).
pub fn result_json(leg: &Call, s: &Success, tried: &[Tried]) -> Value {
    let mut r = providers::result_json(leg, s);
    if let (false, Value::Object(obj)) = (tried.is_empty(), &mut r) {
        obj.insert("tried".into(), Value::Array(tried.iter().map(Tried::to_json).collect()));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{parse_plan, FallbackRules, ProviderName, Usage};
    use reqwest::StatusCode;

    fn status(n: u16, delay_ms: Option<u64>) -> Failure {
        Failure::of_status(StatusCode::from_u16(n).unwrap(), format!("HTTP {n}"), delay_ms)
    }

    fn leg(p: &str) -> Call {
        parse_plan(p.as_bytes(), &FallbackRules::new()).unwrap().legs.remove(0)
    }

    #[test]
    fn provider_failures_move_on_and_the_rest_stop() {
        let wait = 5000;
        for f in [
            status(500, None),
            status(503, None),
            status(429, None),
            status(429, Some(5001)),
            Failure::retry(ErrorClass::Timeout, "t"),
            Failure::retry(ErrorClass::Connect, "c"),
            Failure::retry(ErrorClass::Network, "n"),
            Failure::retry(ErrorClass::Response, "r"),
        ] {
            assert_eq!(after_failure(&f, wait), Next::MoveOn, "{f:?}");
        }
        for f in [
            status(429, Some(5000)),
            status(429, Some(0)),
            status(400, None),
            status(401, None),
            status(404, None),
            Failure::fatal(ErrorClass::Config, "no key"),
            Failure::fatal(ErrorClass::Payload, "bad"),
            Failure::retry(ErrorClass::RateLimit, "redis"),
        ] {
            assert_eq!(after_failure(&f, wait), Next::Stop, "{f:?}");
        }
    }

    #[test]
    fn an_attempt_fails_for_good_only_when_its_one_leg_did() {
        let g = leg(r#"{"provider":"gemini","model":"g1"}"#);
        let o = leg(r#"{"provider":"openai","model":"o1"}"#);
        let bad = status(400, None);
        let alone = reported(bad.clone(), &[Tried::failed(&g, &bad)]);
        assert_eq!((alone.retry, alone.class.as_str(), alone.message.as_str()), (false, "400", "HTTP 400"));

        let first = status(503, None);
        let tried = [Tried::failed(&g, &first), Tried::failed(&o, &bad)];
        let r = reported(bad.clone(), &tried);
        assert_eq!((r.retry, r.class.as_str(), r.delay_ms), (true, "400", None));
        assert_eq!(r.message, "HTTP 400 (tried gemini g1: 503, openai o1: 400)");

        let short = status(429, Some(1000));
        let tried = [Tried::cooled(&g, 700), Tried::failed(&o, &short)];
        let r = reported(short.clone(), &tried);
        assert_eq!((r.retry, r.delay_ms), (true, Some(1000)), "a 429's Retry-After still sets the delay");
        assert_eq!(r.message, "HTTP 429 (tried gemini g1: cooldown, openai o1: 429)");
    }

    #[test]
    fn results_list_the_legs_tried_before_the_answer() {
        let g = leg(r#"{"provider":"gemini","model":"g1"}"#);
        let o = leg(r#"{"provider":"openai","model":"o1"}"#);
        let s = Success { output: json!({}), text: Some("hi".into()), usage: Usage::default(), model: None };
        assert!(result_json(&o, &s, &[]).get("tried").is_none(), "unchanged without fallback");
        let r = result_json(&o, &s, &[Tried::failed(&g, &status(503, None)), Tried::cooled(&g, 10)]);
        assert_eq!((r["provider"].as_str(), r["model"].as_str()), (Some("openai"), Some("o1")));
        assert_eq!(
            r["tried"],
            json!([
                {"provider": "gemini", "model": "g1", "class": "503", "error": "HTTP 503"},
                {"provider": "gemini", "model": "g1", "class": "cooldown",
                 "error": "not called: gemini is cooled down for 10 ms more"}
            ])
        );
        let e = leg(r#"{"provider":"echo"}"#);
        assert_eq!(Tried::failed(&e, &status(500, None)).to_json()["model"], Value::Null);
        assert_eq!(Tried::cooled(&e, 1).provider, ProviderName::Echo);
    }
}
