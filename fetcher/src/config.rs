//! Flags with environment fallbacks (SPEC section 9), parsed once and validated into a
//! [`Config`]. `Config`'s Debug is written by hand so that no key can reach a log.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::queues::{self, Entry, Sel};
use crate::rconn;
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
    /// Redis server with the aijob module loaded. `redis+cluster://host:port[,host:port...]`
    /// names seed nodes of a Redis Cluster (same as --cluster).
    // Its environment value is not shown in --help: it may hold a password.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,

    /// --redis-url is a seed node of a Redis Cluster: use the cluster client, which sends each
    /// command to the master of its queue's slot (queues on every master are served).
    #[arg(long, env = "AIJOB_CLUSTER")]
    pub cluster: bool,

    /// Queues to claim from, with weights: `entry:weight,...` (weight 1 when left out). An entry
    /// is a name (`sketch`), a brace range (`sketch-{0..7}`: sketch-0 .. sketch-7) or a pattern
    /// with `*` and `?` (`sketch-*`: every queue whose name matches, found with SCAN and again
    /// every --discover-every). The weight belongs to the whole entry, split among its queues.
    /// Claims follow the weights (smooth weighted round robin, like Asynq's
    /// `critical:6,default:3,low:1`); an empty queue passes its turn to the others.
    #[arg(long, env = "AIJOB_QUEUES", default_value = "default")]
    pub queues: String,

    /// How often the queues of --queues patterns are looked for again (SCAN MATCH
    /// `aijob:{pattern}:meta` on every master), in ms.
    #[arg(long, env = "AIJOB_DISCOVER_MS", default_value_t = 10_000, value_name = "MS")]
    pub discover_every: u64,

    /// The provider a queue's jobs call, `queue=provider` (the queue a name, brace range or
    /// pattern; repeatable, or comma separated). With --rpm/--tpm for that provider, the
    /// queue's claims take the budgets themselves (JOB.CLAIM ... CHARGE) when the budget keys
    /// can share the queue's slot; the first binding that matches a queue counts.
    #[arg(
        long = "queue-provider",
        env = "AIJOB_QUEUE_PROVIDERS",
        value_delimiter = ',',
        value_name = "QUEUE=PROVIDER"
    )]
    pub queue_providers: Vec<String>,

    /// Whose budget --rpm/--tpm are: `provider` (one budget per provider for every queue, keys
    /// `<prefix>:{<provider>}:rpm|tpm`) or `queue` (one budget per queue and provider, keys
    /// `<prefix>:{<queue>}:<provider>:rpm|tpm`, in the queue's slot: charged claims on a cluster).
    #[arg(long, env = "AIJOB_RL_SCOPE", default_value = "provider", value_name = "SCOPE")]
    pub rl_scope: String,

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

/// Whose budget --rpm/--tpm are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Provider,
    Queue,
}

/// The validated configuration the worker runs with.
#[derive(Clone)]
pub struct Config {
    pub redis_url: String,
    /// The URLs to connect to (the seed nodes with --cluster).
    pub redis_seeds: Vec<String>,
    pub cluster: bool,
    pub queues: Vec<Entry>,
    pub discover_every_ms: u64,
    pub queue_providers: Vec<(Sel, String)>,
    pub rl_scope: Scope,
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
            .field("cluster", &self.cluster)
            .field("queues", &self.queues)
            .field("discover_every_ms", &self.discover_every_ms)
            .field("queue_providers", &self.queue_providers)
            .field("rl_scope", &self.rl_scope)
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

/// `--queue-provider queue=provider,...`.
pub fn parse_queue_providers(items: &[String]) -> Result<Vec<(Sel, String)>> {
    const FLAG: &str = "--queue-provider";
    let mut out = Vec::new();
    for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (q, p) = item.split_once('=').with_context(|| format!("{FLAG}: '{item}' is not queue=provider"))?;
        let p = p.trim();
        if !PROVIDERS.contains(&p) {
            bail!("{FLAG}: unknown provider '{p}' (one of {})", PROVIDERS.join(", "));
        }
        out.push((queues::parse_sel(FLAG, q.trim())?, p.to_string()));
    }
    Ok(out)
}

/// `%XX` decoded; an error when the text is not valid percent-encoded UTF-8.
fn percent_decode(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).context("truncated escape")?;
            out.push(u8::from_str_radix(hex, 16).context("bad escape")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8(out)?)
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
        if a.discover_every < 100 {
            bail!("--discover-every must be at least 100 ms");
        }
        if a.rl_prefix.is_empty() || a.rl_prefix.contains(['{', '}']) {
            bail!("--rl-prefix must be non-empty and hold no brace (the keys' hash tag is the provider or the queue)");
        }
        let rl_scope = match a.rl_scope.as_str() {
            "provider" => Scope::Provider,
            "queue" => Scope::Queue,
            other => bail!("--rl-scope: '{other}' is not provider or queue"),
        };
        let (redis_seeds, cluster_url) = rconn::seeds(a.redis_url.trim())?;
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
            redis_seeds,
            cluster: a.cluster || cluster_url,
            queues: queues::parse_entries(&a.queues)?,
            discover_every_ms: a.discover_every,
            queue_providers: parse_queue_providers(&a.queue_providers)?,
            rl_scope,
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
        for seed in &self.redis_seeds {
            if let Ok(u) = reqwest::Url::parse(seed) {
                if let Some(p) = u.password() {
                    v.push(Secret::new(p));
                    // The URL form may be percent-encoded; the redactor gets the decoded one too.
                    if let Ok(d) = percent_decode(p) {
                        if d != p {
                            v.push(Secret::new(&d));
                        }
                    }
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_providers() {
        let b = parse_queue_providers(&["sketch=gemini".into(), " s-* = openai".into()]).unwrap();
        assert_eq!(b[0], (Sel::Names(vec!["sketch".into()]), "gemini".into()));
        assert_eq!(b[1], (Sel::Glob("s-*".into()), "openai".into()));
        for bad in ["sketch", "sketch=nope", "b{a}d=gemini"] {
            assert!(parse_queue_providers(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_urls_give_seeds() {
        let (s, c) = rconn::seeds("redis+cluster://:pw@h1:1,h2:2/?protocol=resp2").unwrap();
        assert!(c);
        assert_eq!(s, vec!["redis://:pw@h1:1/?protocol=resp2", "redis://:pw@h2:2/?protocol=resp2"]);
        assert_eq!(rconn::seeds("redis://h:1").unwrap(), (vec!["redis://h:1".to_string()], false));
        assert!(rconn::seeds("redis+cluster://").is_err());
        assert_eq!(redact_url("redis+cluster://u:pw@h1:1,h2:2"), "redis+cluster://u:[redacted]@h1:1,h2:2");
    }

    #[test]
    fn cluster_passwords_reach_the_redactor() {
        let a = Args::parse_from(["aijob-fetcher", "--redis-url", "redis+cluster://u:p%40ss@h1:1,h2:2"]);
        let cfg = Config::from_args(a).unwrap();
        assert!(cfg.cluster);
        let secrets: Vec<String> = cfg.secrets().iter().map(|s| s.expose().to_string()).collect();
        assert!(secrets.contains(&"p%40ss".to_string()) && secrets.contains(&"p@ss".to_string()), "{secrets:?}");
        assert!(!format!("{cfg:?}").contains("p%40ss"));
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
