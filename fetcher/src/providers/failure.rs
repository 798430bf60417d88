//! How a call failed: the error class stored in the job (and the metric label), the text,
//! and whether the module may retry it.

use reqwest::StatusCode;

/// The `CLASS` of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The provider did not answer within `--timeout`.
    Timeout,
    /// The provider could not be reached.
    Connect,
    /// The link broke during the call.
    Network,
    /// The provider answered with this non-2xx status.
    Status(StatusCode),
    /// A 2xx whose body is not JSON.
    Response,
    /// The fetcher cannot make this call (no key, unknown endpoint).
    Config,
    /// The payload is not a call the fetcher can read.
    Payload,
    /// A placeholder of the request cannot be filled from the job's parents (a flow).
    Input,
    /// The result is larger than the module stores.
    TooBig,
    /// RATELIMIT.* answered an error.
    RateLimit,
    /// No call was made: the provider is cooled down (`--cooldown`, shared in Redis).
    Cooldown,
}

impl ErrorClass {
    /// As stored in the job and shown in the metrics: a word, or the status code.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorClass::Timeout => "timeout",
            ErrorClass::Connect => "connect",
            ErrorClass::Network => "network",
            ErrorClass::Status(code) => code.as_str(),
            ErrorClass::Response => "response",
            ErrorClass::Config => "config",
            ErrorClass::Payload => "payload",
            ErrorClass::Input => "input",
            ErrorClass::TooBig => "toobig",
            ErrorClass::RateLimit => "ratelimit",
            ErrorClass::Cooldown => "cooldown",
        }
    }

    /// The provider itself is unwell: it did not answer in time, could not be reached, broke
    /// the link, answered 5xx or 429, or answered a 2xx that is not JSON. These failures move
    /// a call on to its next fallback and count towards the provider's cooldown. Everything
    /// else is about the job or this fetcher (a 4xx, the payload, a key, the result's size,
    /// Redis) and would fail the same way on the next try.
    pub fn is_provider_failure(&self) -> bool {
        match self {
            ErrorClass::Timeout | ErrorClass::Connect | ErrorClass::Network | ErrorClass::Response => true,
            ErrorClass::Status(s) => s.as_u16() == 429 || s.is_server_error(),
            ErrorClass::Config | ErrorClass::Payload | ErrorClass::Input | ErrorClass::TooBig => false,
            ErrorClass::RateLimit => false,
            ErrorClass::Cooldown => false,
        }
    }
}

/// A failed call: its class and text, and whether the module may retry it (with
/// `delay_ms` in place of its backoff, for a 429's Retry-After).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub retry: bool,
    pub class: ErrorClass,
    pub message: String,
    pub delay_ms: Option<u64>,
}

impl Failure {
    pub fn retry(class: ErrorClass, message: impl Into<String>) -> Failure {
        Failure { retry: true, class, message: message.into(), delay_ms: None }
    }

    pub fn fatal(class: ErrorClass, message: impl Into<String>) -> Failure {
        Failure { retry: false, class, message: message.into(), delay_ms: None }
    }

    /// The class of an HTTP status that is not 2xx: 429 and 5xx retry (a 429 after
    /// `retry_after_ms` when the provider said so), the rest end the job.
    pub fn of_status(status: StatusCode, message: String, retry_after_ms: Option<u64>) -> Failure {
        let class = ErrorClass::Status(status);
        match status.as_u16() {
            429 => Failure { retry: true, class, message, delay_ms: retry_after_ms },
            500..=599 => Failure::retry(class, message),
            _ => Failure::fatal(class, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(n: u16) -> StatusCode {
        StatusCode::from_u16(n).unwrap()
    }

    #[test]
    fn classes_are_words_or_status_codes() {
        assert_eq!(ErrorClass::TooBig.as_str(), "toobig");
        assert_eq!(ErrorClass::RateLimit.as_str(), "ratelimit");
        assert_eq!(ErrorClass::Status(status(503)).as_str(), "503");
        assert_eq!(ErrorClass::Cooldown.as_str(), "cooldown");
        assert_eq!(ErrorClass::Input.as_str(), "input");
    }

    #[test]
    fn provider_failures_are_the_retryable_answers_of_the_provider() {
        for c in [ErrorClass::Timeout, ErrorClass::Connect, ErrorClass::Network, ErrorClass::Response] {
            assert!(c.is_provider_failure(), "{c:?}");
        }
        for n in [429, 500, 502, 503, 504, 599] {
            assert!(ErrorClass::Status(status(n)).is_provider_failure(), "{n}");
            assert!(Failure::of_status(status(n), String::new(), None).retry, "a provider failure is retryable: {n}");
        }
        for n in [400, 401, 403, 404, 409, 422, 302] {
            assert!(!ErrorClass::Status(status(n)).is_provider_failure(), "{n}");
        }
        let others = [ErrorClass::Config, ErrorClass::Payload, ErrorClass::Input, ErrorClass::TooBig];
        for c in others.into_iter().chain([ErrorClass::RateLimit, ErrorClass::Cooldown]) {
            assert!(!c.is_provider_failure(), "{c:?}");
        }
    }

    #[test]
    fn statuses_retry_or_end_the_job() {
        let f = Failure::of_status(status(429), "slow".into(), Some(1500));
        assert_eq!((f.retry, f.class.as_str(), f.delay_ms), (true, "429", Some(1500)));
        let f = Failure::of_status(status(503), String::new(), Some(9));
        assert_eq!((f.retry, f.class.as_str(), f.delay_ms), (true, "503", None));
        let f = Failure::of_status(status(400), String::new(), None);
        assert_eq!((f.retry, f.class.as_str()), (false, "400"));
        assert!(!Failure::of_status(status(302), String::new(), None).retry);
    }
}
