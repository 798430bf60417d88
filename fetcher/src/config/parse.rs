//! The value parsers and value types of the flags. Each parser's error names what is wrong
//! with the value; clap adds the flag and the value.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::providers::{ProviderName, Target};
use crate::queues::{self, Entry, Sel};

/// `--queues`: the entries, checked as a whole (no queue twice, at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueList(pub Vec<Entry>);

impl QueueList {
    pub fn parse(text: &str) -> Result<QueueList, String> {
        queues::parse_entries(text).map(QueueList).map_err(|e| format!("{e:#}"))
    }
}

/// `--queue-provider queue=provider`: the provider a queue's jobs call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub sel: Sel,
    pub provider: ProviderName,
}

impl Binding {
    /// None for an empty item (`a=gemini,` or an empty variable).
    pub fn parse(item: &str) -> Result<Option<Binding>, String> {
        if item.trim().is_empty() {
            return Ok(None);
        }
        let (q, p) = item.trim().split_once('=').ok_or("not queue=provider")?;
        let provider = p.trim().parse::<ProviderName>()?;
        let sel = queues::parse_sel(q.trim()).map_err(|e| format!("{e:#}"))?;
        Ok(Some(Binding { sel, provider }))
    }
}

/// `--fallback provider=target`: one more fallback for the jobs of a provider, after those
/// given before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackRule {
    pub from: ProviderName,
    pub to: Target,
}

impl FallbackRule {
    /// None for an empty item.
    pub fn parse(item: &str) -> Result<Option<FallbackRule>, String> {
        if item.trim().is_empty() {
            return Ok(None);
        }
        let (from, to) = item.trim().split_once('=').ok_or("not provider=target (e.g. gemini=openai:gpt-4o-mini)")?;
        let from = from.trim().parse::<ProviderName>()?;
        let to = Target::parse(to)?;
        if to.provider == from && to.model.is_none() && to.endpoint.is_none() {
            return Err(format!("{from} falls back to itself"));
        }
        Ok(Some(FallbackRule { from, to }))
    }
}

/// Requests or tokens per window, per provider: `N`, `provider=N,...` or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitSpec {
    pub default: Option<u64>,
    pub per_provider: BTreeMap<ProviderName, u64>,
}

impl LimitSpec {
    pub fn parse(text: &str) -> Result<LimitSpec, String> {
        let mut spec = LimitSpec::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((p, n)) => {
                    spec.per_provider.insert(p.trim().parse::<ProviderName>()?, positive(n)?);
                }
                None => spec.default = Some(positive(part)?),
            }
        }
        Ok(spec)
    }

    pub fn for_provider(&self, provider: ProviderName) -> Option<u64> {
        self.per_provider.get(&provider).copied().or(self.default)
    }
}

fn positive(n: &str) -> Result<u64, String> {
    match n.trim().parse::<u64>() {
        Ok(0) => Err("limits must be positive".into()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("'{}' is not a positive integer", n.trim())),
    }
}

/// Whose budget --rpm/--tpm are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    /// One budget per provider for every queue: `<prefix>:{<provider>}:rpm|tpm`.
    Provider,
    /// One budget per queue and provider, in the queue's slot: `<prefix>:{<queue>}:<provider>:rpm|tpm`.
    Queue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl From<LogLevel> for tracing::Level {
    fn from(l: LogLevel) -> tracing::Level {
        match l {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Trace => tracing::Level::TRACE,
        }
    }
}

/// A number of seconds, 0 to 1e9, fractions allowed.
pub fn seconds(v: &str) -> Result<Duration, String> {
    let s: f64 = v.trim().parse().map_err(|_| "not a number of seconds".to_string())?;
    if !s.is_finite() || !(0.0..=1e9).contains(&s) {
        return Err("not a number of seconds from 0 to 1e9".into());
    }
    Ok(Duration::from_secs_f64(s))
}

/// `--listen host:port`, resolved once at start; empty: no server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

impl Listen {
    pub fn parse(v: &str) -> Result<Listen, String> {
        if v.trim().is_empty() {
            return Ok(Listen(None));
        }
        let mut addrs = v.trim().to_socket_addrs().map_err(|e| format!("cannot resolve it: {e}"))?;
        addrs.next().map(|a| Listen(Some(a))).ok_or_else(|| "it resolves to no address".into())
    }
}

/// An http(s) URL, without its trailing `/`.
pub fn base_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be http or https".into());
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// `--http-endpoint name=url`; None for an empty item.
pub fn endpoint(item: &str) -> Result<Option<(String, String)>, String> {
    if item.trim().is_empty() {
        return Ok(None);
    }
    let (name, url) = item.trim().split_once('=').ok_or("not name=url")?;
    if name.trim().is_empty() {
        return Err("empty name".into());
    }
    Ok(Some((name.trim().to_string(), base_url(url)?)))
}

/// The rate-limit keys' hash tag is the provider or the queue: the prefix holds no brace.
pub fn rl_prefix(v: &str) -> Result<String, String> {
    if v.is_empty() || v.contains(['{', '}']) {
        return Err("must be non-empty and hold no brace (the keys' hash tag is the provider or the queue)".into());
    }
    Ok(v.to_string())
}

/// At most 256 bytes (empty: the default name).
pub fn worker_name(v: &str) -> Result<String, String> {
    if v.len() > 256 {
        return Err("at most 256 bytes".into());
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings() {
        let b = Binding::parse("sketch=gemini").unwrap();
        assert_eq!(b, Some(Binding { sel: Sel::Names(vec!["sketch".into()]), provider: ProviderName::Gemini }));
        assert_eq!(Binding::parse(" s-* = openai").unwrap().map(|b| b.sel), Some(Sel::Glob("s-*".into())));
        assert_eq!(Binding::parse(" "), Ok(None));
        for bad in ["sketch", "sketch=nope", "b{a}d=gemini"] {
            assert!(Binding::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fallback_rules() {
        let r = FallbackRule::parse(" gemini = openai:gpt-4o-mini ").unwrap().unwrap();
        assert_eq!((r.from, r.to.to_string()), (ProviderName::Gemini, "openai:gpt-4o-mini".to_string()));
        assert_eq!(
            FallbackRule::parse("gemini=gemini:gemini-1.5-flash").unwrap().unwrap().to.provider,
            ProviderName::Gemini
        );
        assert_eq!(FallbackRule::parse(""), Ok(None));
        for (bad, why) in [
            ("gemini", "not provider=target"),
            ("gemini:openai", "not provider=target"),
            ("nope=echo", "unknown provider"),
            ("gemini=openai", "openai needs a model"),
            ("echo=echo", "falls back to itself"),
            ("gemini=http", "endpoint"),
        ] {
            let e = FallbackRule::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn limits_default_and_per_provider() {
        let s = LimitSpec::parse("60,gemini=10").unwrap();
        assert_eq!(s.for_provider(ProviderName::Gemini), Some(10));
        assert_eq!(s.for_provider(ProviderName::OpenAi), Some(60));
        let s = LimitSpec::parse("openai=5").unwrap();
        assert_eq!(s.for_provider(ProviderName::Gemini), None);
        for bad in ["0", "x", "nope=3", "gemini=-1"] {
            assert!(LimitSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn seconds_urls_and_endpoints() {
        assert_eq!(seconds("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["-1", "nan", "inf", "x", "1e10"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
        assert_eq!(base_url("http://h:1/v/").as_deref(), Ok("http://h:1/v"));
        assert!(base_url("ftp://h").is_err());
        assert_eq!(endpoint("a = http://h"), Ok(Some(("a".into(), "http://h".into()))));
        assert_eq!(endpoint(""), Ok(None));
        assert_eq!(Listen::parse(" "), Ok(Listen(None)));
        assert!(Listen::parse("127.0.0.1:9").unwrap().0.is_some());
        assert!(Listen::parse("nowhere").is_err());
        assert!(endpoint("=http://h").is_err());
        assert!(rl_prefix("a{b").is_err());
        assert!(worker_name(&"w".repeat(257)).is_err());
    }
}
