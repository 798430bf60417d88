//! Flags with environment fallbacks (SPEC section 9), parsed once and validated into a
//! [`Config`]. `Config`'s Debug is written by hand so that no key can reach a log.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::secret::Secret;

/// The providers a payload may name.
pub const PROVIDERS: [&str; 4] = ["gemini", "openai", "http", "echo"];

#[derive(Parser)]
#[command(
    name = "aijob-fetcher",
    version,
    about = "Claims aijob jobs from Redis, calls the AI provider each payload names, and finishes the job.",
    long_about = "Claims aijob jobs from Redis (JOB.CLAIM), calls the AI provider each payload names \
(gemini, openai, http or echo), heartbeats while the call runs, and finishes the job with JOB.UPDATE \
and its lease token.\n\nPayload: {\"provider\": \"gemini\"|\"openai\"|\"http\"|\"echo\", \"model\": ..., \
\"request\": {...}} with the request in the provider's own JSON format.\n\nEvery flag has an environment \
fallback, shown as [env: NAME]. Prefer the environment for API keys: flags show up in `ps`."
)]
pub struct Args {
    /// Redis server with the aijob module loaded.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,

    /// Queues to claim from, with weights: `name:weight,...` (weight 1 when left out). Claims
    /// follow the weights (smooth weighted round robin, like Asynq's `critical:6,default:3,low:1`);
    /// an empty queue passes its turn to the others.
    #[arg(long, env = "AIJOB_QUEUES", default_value = "default")]
    pub queues: String,

    /// How many provider calls run at once (one process, async).
    #[arg(long, env = "AIJOB_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,

    /// Lease of each claim in ms; default: the module's `aijob.lease-ms`. Heartbeats extend it
    /// every lease/3 while the call runs.
    #[arg(long, env = "AIJOB_LEASE_MS", value_name = "MS")]
    pub lease: Option<u64>,

    /// On SIGTERM/SIGINT: seconds the running calls get to finish before the rest are
    /// aborted and given back with JOB.RELEASE.
    #[arg(long, env = "AIJOB_GRACE", default_value_t = 10.0, value_name = "SECONDS")]
    pub grace: f64,

    /// Timeout of one provider call, in seconds (a timeout is retried through the module's
    /// backoff, class `timeout`).
    #[arg(long, env = "AIJOB_TIMEOUT", default_value_t = 120.0, value_name = "SECONDS")]
    pub timeout: f64,

    /// Requests per minute, per provider, shared by every fetcher on this Redis (RATELIMIT.HIT).
    /// `N` for every provider, or `provider=N,...`, or both (`60,gemini=10`). Unset: no limit.
    #[arg(long, env = "AIJOB_RPM", value_name = "LIMITS")]
    pub rpm: Option<String>,

    /// Tokens per minute, per provider, shared like --rpm. Each call is charged the job's `cost`
    /// (its estimated tokens; at most the limit) before it is made. Same syntax as --rpm.
    #[arg(long, env = "AIJOB_TPM", value_name = "LIMITS")]
    pub tpm: Option<String>,

    /// Prefix of the rate-limit keys: `<prefix>:{<provider>}:rpm` and `<prefix>:{<provider>}:tpm`.
    #[arg(long, env = "AIJOB_RL_PREFIX", default_value = "aijob-rl")]
    pub rl_prefix: String,

    /// The window --rpm and --tpm count over, in ms (60000: a minute). Shorter windows make
    /// finer budgets and quick tests.
    #[arg(long, env = "AIJOB_RL_PERIOD_MS", default_value_t = 60_000, value_name = "MS")]
    pub rl_period: u64,

    /// `host:port` to serve /healthz and /metrics (Prometheus text) on. Unset: no server.
    #[arg(long, env = "AIJOB_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<String>,

    /// Gemini API key (sent in the x-goog-api-key header). Unset: gemini jobs fail, class `config`.
    #[arg(long, env = "GEMINI_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub gemini_api_key: Option<String>,

    /// Gemini base URL, no version path.
    #[arg(long, env = "GEMINI_BASE_URL", default_value = "https://generativelanguage.googleapis.com")]
    pub gemini_base_url: String,

    /// OpenAI API key (sent as Authorization: Bearer). Unset: openai jobs fail, class `config`.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub openai_api_key: Option<String>,

    /// OpenAI base URL, no version path.
    #[arg(long, env = "OPENAI_BASE_URL", default_value = "https://api.openai.com")]
    pub openai_base_url: String,

    /// An endpoint for the `http` provider, `name=url` (repeatable; in the environment, comma
    /// separated). A job names it with `"endpoint": "name"`; a job never gives a URL.
    #[arg(long = "http-endpoint", env = "AIJOB_HTTP_ENDPOINTS", value_delimiter = ',', value_name = "NAME=URL")]
    pub http_endpoints: Vec<String>,

    /// Worker name recorded in each claimed job; default `<hostname>-<pid>`.
    #[arg(long, env = "AIJOB_WORKER")]
    pub worker: Option<String>,

    /// How long one blocking claim waits when every queue is empty, in ms. With several queues
    /// a job on a queue other than the one blocked on waits at most this long.
    #[arg(long, env = "AIJOB_CLAIM_BLOCK_MS", default_value_t = 1000, value_name = "MS")]
    pub claim_block: u64,

    /// Log format: `text` or `json` (one line per event, to stderr).
    #[arg(long, env = "AIJOB_LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long, env = "AIJOB_LOG", default_value = "info")]
    pub log_level: String,
}

/// Requests or tokens per window, per provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitSpec {
    pub default: Option<u64>,
    pub per_provider: BTreeMap<String, u64>,
}

impl LimitSpec {
    pub fn parse(flag: &str, text: &str) -> Result<LimitSpec> {
        let mut spec = LimitSpec::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((p, n)) => {
                    let p = p.trim();
                    if !PROVIDERS.contains(&p) {
                        bail!("{flag}: unknown provider '{p}' (one of {})", PROVIDERS.join(", "));
                    }
                    spec.per_provider.insert(p.to_string(), positive(flag, n)?);
                }
                None => spec.default = Some(positive(flag, part)?),
            }
        }
        Ok(spec)
    }

    pub fn for_provider(&self, provider: &str) -> Option<u64> {
        self.per_provider.get(provider).copied().or(self.default)
    }
}

fn positive(flag: &str, n: &str) -> Result<u64> {
    let v: u64 = n.trim().parse().with_context(|| format!("{flag}: '{}' is not a positive integer", n.trim()))?;
    if v == 0 {
        bail!("{flag}: limits must be positive");
    }
    Ok(v)
}

/// The validated configuration the worker runs with.
#[derive(Clone)]
pub struct Config {
    pub redis_url: String,
    pub queues: Vec<(String, u32)>,
    pub concurrency: usize,
    pub lease_ms: Option<u64>,
    pub grace: Duration,
    pub timeout: Duration,
    pub rpm: LimitSpec,
    pub tpm: LimitSpec,
    pub rl_prefix: String,
    pub rl_period_ms: u64,
    pub listen: Option<SocketAddr>,
    pub gemini_key: Option<Secret>,
    pub gemini_base: String,
    pub openai_key: Option<Secret>,
    pub openai_base: String,
    pub http_endpoints: BTreeMap<String, String>,
    pub worker: String,
    pub claim_block_ms: u64,
    pub log_json: bool,
    pub log_level: tracing::Level,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |k: &Option<Secret>| if k.is_some() { "[redacted]" } else { "unset" };
        f.debug_struct("Config")
            .field("redis_url", &redact_url(&self.redis_url))
            .field("queues", &self.queues)
            .field("concurrency", &self.concurrency)
            .field("lease_ms", &self.lease_ms)
            .field("grace", &self.grace)
            .field("timeout", &self.timeout)
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .field("rl_prefix", &self.rl_prefix)
            .field("rl_period_ms", &self.rl_period_ms)
            .field("listen", &self.listen)
            .field("gemini_key", &set(&self.gemini_key))
            .field("gemini_base", &self.gemini_base)
            .field("openai_key", &set(&self.openai_key))
            .field("openai_base", &self.openai_base)
            .field("http_endpoints", &self.http_endpoints.keys().collect::<Vec<_>>())
            .field("worker", &self.worker)
            .field("claim_block_ms", &self.claim_block_ms)
            .finish()
    }
}

/// A Redis URL without its password (`redis://user:pw@host` -> `redis://user:[redacted]@host`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth_end, _) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match auth_end.rfind('@') {
        Some(at) => {
            let user = auth_end[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:[redacted]@{}", &rest[at + 1..])
        }
        None => url.to_string(),
    }
}

/// `name:weight,...`, weight 1 when left out; names follow the module's queue-name rules.
pub fn parse_queues(text: &str) -> Result<Vec<(String, u32)>> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        // Queue names may hold ':' themselves: the weight is the part after the last ':'
        // when it is all digits.
        let (name, weight) = match part.rsplit_once(':') {
            Some((n, w)) if !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()) => {
                let w: u32 = w.parse().with_context(|| format!("--queues: weight '{w}' is too large"))?;
                (n, w)
            }
            _ => (part, 1),
        };
        if weight == 0 {
            bail!("--queues: the weight of '{name}' must be at least 1");
        }
        aijob_core::names::validate("queue", name.as_bytes())
            .map_err(|e| anyhow::anyhow!("--queues: {}", e.message))?;
        if out.iter().any(|(n, _)| n == name) {
            bail!("--queues: '{name}' is given twice");
        }
        out.push((name.to_string(), weight));
    }
    if out.is_empty() {
        bail!("--queues: no queue given");
    }
    Ok(out)
}

fn parse_endpoints(items: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (name, url) = item.split_once('=').with_context(|| format!("--http-endpoint: '{item}' is not name=url"))?;
        let url = check_base_url("--http-endpoint", url.trim())?;
        if name.trim().is_empty() {
            bail!("--http-endpoint: empty name in '{item}'");
        }
        out.insert(name.trim().to_string(), url);
    }
    Ok(out)
}

fn check_base_url(flag: &str, url: &str) -> Result<String> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("{flag}: '{url}' is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("{flag}: '{url}' must be http or https");
    }
    Ok(url.trim_end_matches('/').to_string())
}

fn seconds(flag: &str, v: f64) -> Result<Duration> {
    if !v.is_finite() || !(0.0..=1e9).contains(&v) {
        bail!("{flag}: {v} is not a number of seconds");
    }
    Ok(Duration::from_secs_f64(v))
}

fn non_empty_key(k: Option<String>) -> Option<Secret> {
    k.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).map(|s| Secret::new(&s))
}

fn default_worker() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "fetcher".to_string());
    format!("{host}-{}", std::process::id())
}

impl Config {
    pub fn from_args(a: Args) -> Result<Config> {
        if a.concurrency == 0 || a.concurrency > 100_000 {
            bail!("--concurrency must be 1 to 100000");
        }
        if a.lease == Some(0) {
            bail!("--lease must be positive");
        }
        if a.rl_period == 0 {
            bail!("--rl-period must be positive");
        }
        if a.claim_block == 0 {
            bail!("--claim-block must be positive");
        }
        let listen = match a.listen.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(l) => Some(
                l.to_socket_addrs()
                    .with_context(|| format!("--listen: cannot resolve '{l}'"))?
                    .next()
                    .with_context(|| format!("--listen: '{l}' resolves to no address"))?,
            ),
            None => None,
        };
        let log_level = a
            .log_level
            .parse::<tracing::Level>()
            .map_err(|_| anyhow::anyhow!("--log-level: '{}' is not error, warn, info, debug or trace", a.log_level))?;
        let log_json = match a.log_format.as_str() {
            "json" => true,
            "text" => false,
            other => bail!("--log-format: '{other}' is not text or json"),
        };
        let worker = a.worker.filter(|w| !w.is_empty()).unwrap_or_else(default_worker);
        if worker.len() > 256 {
            bail!("--worker: at most 256 bytes");
        }
        Ok(Config {
            redis_url: a.redis_url,
            queues: parse_queues(&a.queues)?,
            concurrency: a.concurrency,
            lease_ms: a.lease,
            grace: seconds("--grace", a.grace)?,
            timeout: seconds("--timeout", a.timeout)?,
            rpm: LimitSpec::parse("--rpm", a.rpm.as_deref().unwrap_or(""))?,
            tpm: LimitSpec::parse("--tpm", a.tpm.as_deref().unwrap_or(""))?,
            rl_prefix: a.rl_prefix,
            rl_period_ms: a.rl_period,
            listen,
            gemini_key: non_empty_key(a.gemini_api_key),
            gemini_base: check_base_url("--gemini-base-url", &a.gemini_base_url)?,
            openai_key: non_empty_key(a.openai_api_key),
            openai_base: check_base_url("--openai-base-url", &a.openai_base_url)?,
            http_endpoints: parse_endpoints(&a.http_endpoints)?,
            worker,
            claim_block_ms: a.claim_block,
            log_json,
            log_level,
        })
    }

    /// Every secret the process holds, for the redactor.
    pub fn secrets(&self) -> Vec<Secret> {
        let mut v: Vec<Secret> = [&self.gemini_key, &self.openai_key].into_iter().flatten().cloned().collect();
        if let Ok(u) = reqwest::Url::parse(&self.redis_url) {
            if let Some(p) = u.password() {
                v.push(Secret::new(p));
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_with_and_without_weights() {
        assert_eq!(
            parse_queues("sketch:6, default:3,low").unwrap(),
            vec![("sketch".into(), 6), ("default".into(), 3), ("low".into(), 1)]
        );
        assert_eq!(parse_queues("a:b:2").unwrap(), vec![("a:b".into(), 2)]);
        assert_eq!(parse_queues("a:b").unwrap(), vec![("a:b".into(), 1)]);
        for bad in ["", "a:0", "a,a", "bad{name}:1", "a:99999999999"] {
            assert!(parse_queues(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_default_and_per_provider() {
        let s = LimitSpec::parse("--rpm", "60,gemini=10").unwrap();
        assert_eq!(s.for_provider("gemini"), Some(10));
        assert_eq!(s.for_provider("openai"), Some(60));
        let s = LimitSpec::parse("--rpm", "openai=5").unwrap();
        assert_eq!(s.for_provider("gemini"), None);
        for bad in ["0", "x", "nope=3", "gemini=-1"] {
            assert!(LimitSpec::parse("--rpm", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redis_passwords_are_redacted() {
        assert_eq!(redact_url("redis://:pw@h:1/0"), "redis://:[redacted]@h:1/0");
        assert_eq!(redact_url("redis://u:pw@h"), "redis://u:[redacted]@h");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
    }
}
