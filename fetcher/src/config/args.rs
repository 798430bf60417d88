//! The command line: every flag with its environment fallback, each value checked by
//! clap's own parsers (ranges, value enums, the parsers of `parse.rs`).

use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::{value_parser, Parser};

use super::parse::{base_url, endpoint, rl_prefix, seconds, worker_name};
use super::parse::{Binding, FallbackRule, LimitSpec, Listen, LogFormat, LogLevel, QueueList, Scope};

#[derive(Parser)]
#[command(
    name = "aijob-fetcher",
    version,
    about = "Claims aijob jobs from Redis, calls the AI provider each payload names, and finishes the job.",
    long_about = "Claims aijob jobs from Redis (JOB.CLAIM), calls the AI provider each payload names \
(gemini, openai, http or echo), heartbeats while the call runs, and finishes the job with JOB.UPDATE \
and its lease token.\n\nPayload: {\"provider\": \"gemini\"|\"openai\"|\"http\"|\"echo\", \"model\": ..., \
\"request\": {...}} with the request in the provider's own JSON format; optional \"stream\": true (the \
answer appended to the job's stream as it comes, JOB.APPEND), \"fallback\": [{\"provider\": ..., \"model\": ...}] \
(tried in order when the provider fails), and {{parents.N.text}} in the request's strings (a flow job: \
the answer of its N-th parent).\n\nEvery flag has an environment \
fallback, shown as [env: NAME]. Prefer the environment for API keys: flags show up in `ps`."
)]
pub struct Args {
    /// Redis server with the aijob module loaded. `redis+cluster://host:port[,host:port...]`
    /// names seed nodes of a Redis Cluster (same as --cluster).
    // Its environment value is not shown in --help: it may hold a password. Checked in
    // `Config::from_args`, not by a value parser: clap's error would repeat the URL.
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
    #[arg(long, env = "AIJOB_QUEUES", default_value = "default", value_parser = QueueList::parse)]
    pub queues: QueueList,

    /// How often the queues of --queues patterns are looked for again (SCAN MATCH
    /// `aijob:{pattern}:meta` on every master), in ms.
    #[arg(long, env = "AIJOB_DISCOVER_MS", default_value_t = 10_000, value_name = "MS",
          value_parser = value_parser!(u64).range(100..))]
    pub discover_every: u64,

    /// The provider a queue's jobs call, `queue=provider` (the queue a name, brace range or
    /// pattern; repeatable, or comma separated). With --rpm/--tpm for that provider, the
    /// queue's claims take the budgets themselves (JOB.CLAIM ... CHARGE) when the budget keys
    /// can share the queue's slot; the first binding that matches a queue counts.
    #[arg(
        long = "queue-provider",
        env = "AIJOB_QUEUE_PROVIDERS",
        value_delimiter = ',',
        value_name = "QUEUE=PROVIDER",
        value_parser = Binding::parse
    )]
    pub queue_providers: Vec<Option<Binding>>,

    /// Whose budget --rpm/--tpm are (charged claims on a cluster need `queue`).
    #[arg(long, env = "AIJOB_RL_SCOPE", default_value = "provider", value_name = "SCOPE", value_enum)]
    pub rl_scope: Scope,

    /// How many provider calls run at once (one process, async).
    #[arg(long, env = "AIJOB_CONCURRENCY", default_value_t = 8,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub concurrency: usize,

    /// Lease of each claim in ms; default: the module's `aijob.lease-ms`. Heartbeats extend it
    /// every lease/3 while the call runs.
    #[arg(long, env = "AIJOB_LEASE_MS", value_name = "MS", value_parser = value_parser!(u64).range(1..))]
    pub lease: Option<u64>,

    /// On SIGTERM/SIGINT: seconds the running calls get to finish before the rest are
    /// aborted and given back with JOB.RELEASE.
    #[arg(long, env = "AIJOB_GRACE", default_value = "10", value_name = "SECONDS", value_parser = seconds)]
    pub grace: Duration,

    /// Timeout of one provider call, in seconds (a timeout is retried through the module's
    /// backoff, class `timeout`).
    #[arg(long, env = "AIJOB_TIMEOUT", default_value = "120", value_name = "SECONDS", value_parser = seconds)]
    pub timeout: Duration,

    /// Requests per minute, per provider, shared by every fetcher on this Redis (RATELIMIT.HIT).
    /// `N` for every provider, or `provider=N,...`, or both (`60,gemini=10`). Unset: no limit.
    #[arg(long, env = "AIJOB_RPM", value_name = "LIMITS", value_parser = LimitSpec::parse)]
    pub rpm: Option<LimitSpec>,

    /// Tokens per minute, per provider, shared like --rpm. Each call is charged the job's `cost`
    /// (its estimated tokens; at most the limit) before it is made. Same syntax as --rpm.
    #[arg(long, env = "AIJOB_TPM", value_name = "LIMITS", value_parser = LimitSpec::parse)]
    pub tpm: Option<LimitSpec>,

    /// Prefix of the rate-limit keys: `<prefix>:{<provider>}:rpm` and `<prefix>:{<provider>}:tpm`.
    #[arg(long, env = "AIJOB_RL_PREFIX", default_value = "aijob-rl", value_parser = rl_prefix)]
    pub rl_prefix: String,

    /// The window --rpm and --tpm count over, in ms (60000: a minute). Shorter windows make
    /// finer budgets and quick tests.
    #[arg(long, env = "AIJOB_RL_PERIOD_MS", default_value_t = 60_000, value_name = "MS",
          value_parser = value_parser!(u64).range(1..))]
    pub rl_period: u64,

    /// A fallback for a provider's jobs, `provider=target` (repeatable, or comma separated; a
    /// provider's targets are tried in the order given). A target is `gemini:<model>`,
    /// `openai:<model>`, `http:<endpoint>` or `echo`: `gemini=openai:gpt-4o-mini`. When a call
    /// fails on the provider's side (timeout, connection, 5xx, a 429 past --fallback-429-wait)
    /// the next is called within the same attempt, with the job's request rewritten for it
    /// (text chats between gemini and openai). A payload's own "fallback" list replaces these.
    #[arg(long = "fallback", env = "AIJOB_FALLBACK", value_delimiter = ',', value_name = "PROVIDER=TARGET",
          value_parser = FallbackRule::parse)]
    pub fallback: Vec<Option<FallbackRule>>,

    /// A 429 whose Retry-After is at most this many ms ends the attempt and the job is retried
    /// after it on the same provider; a longer one, or none, moves on to the next fallback.
    #[arg(long = "fallback-429-wait", env = "AIJOB_FALLBACK_429_WAIT_MS", default_value_t = 5000, value_name = "MS",
          value_parser = value_parser!(u64).range(0..=86_400_000))]
    pub fallback_429_wait: u64,

    /// Cool a provider down for this many ms after --cooldown-failures failures (timeouts,
    /// connection errors, 5xx, 429) within --cooldown-window: no fetcher on this Redis calls it
    /// meanwhile (state in RATELIMIT keys `<rl-prefix>:{<provider>}:cooldown|failures`); its
    /// jobs go to their fallbacks, or back to the queue until it ends. Unset: no cooldown.
    #[arg(long, env = "AIJOB_COOLDOWN_MS", value_name = "MS", value_parser = value_parser!(u64).range(1..=86_400_000))]
    pub cooldown: Option<u64>,

    /// How many provider failures within --cooldown-window start a cooldown.
    #[arg(long, env = "AIJOB_COOLDOWN_FAILURES", default_value_t = 5, value_name = "N", requires = "cooldown",
          value_parser = value_parser!(u64).range(1..=1_000_000))]
    pub cooldown_failures: u64,

    /// The window --cooldown-failures are counted over, in ms.
    #[arg(long, env = "AIJOB_COOLDOWN_WINDOW_MS", default_value_t = 10_000, value_name = "MS", requires = "cooldown",
          value_parser = value_parser!(u64).range(1..=86_400_000))]
    pub cooldown_window: u64,

    /// `host:port` to serve /healthz and /metrics (Prometheus text) on. Unset: no server.
    #[arg(long, env = "AIJOB_LISTEN", value_name = "HOST:PORT", value_parser = Listen::parse)]
    pub listen: Option<Listen>,

    /// Gemini API key (sent in the x-goog-api-key header). Unset: gemini jobs fail, class `config`.
    #[arg(long, env = "GEMINI_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub gemini_api_key: Option<String>,

    /// Gemini base URL, no version path.
    #[arg(long, env = "GEMINI_BASE_URL", default_value = "https://generativelanguage.googleapis.com",
          value_parser = base_url)]
    pub gemini_base_url: String,

    /// OpenAI API key (sent as Authorization: Bearer). Unset: openai jobs fail, class `config`.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub openai_api_key: Option<String>,

    /// OpenAI base URL, no version path.
    #[arg(long, env = "OPENAI_BASE_URL", default_value = "https://api.openai.com", value_parser = base_url)]
    pub openai_base_url: String,

    /// An endpoint for the `http` provider, `name=url` (repeatable; in the environment, comma
    /// separated). A job names it with `"endpoint": "name"`; a job never gives a URL.
    #[arg(long = "http-endpoint", env = "AIJOB_HTTP_ENDPOINTS", value_delimiter = ',', value_name = "NAME=URL",
          value_parser = endpoint)]
    pub http_endpoints: Vec<Option<(String, String)>>,

    /// Worker name recorded in each claimed job; default `<hostname>-<pid>`.
    #[arg(long, env = "AIJOB_WORKER", value_parser = worker_name)]
    pub worker: Option<String>,

    /// How long one blocking claim waits when every queue is empty, in ms. With several queues
    /// a job on a queue other than the one blocked on waits at most this long.
    #[arg(long, env = "AIJOB_CLAIM_BLOCK_MS", default_value_t = 1000, value_name = "MS",
          value_parser = value_parser!(u64).range(1..))]
    pub claim_block: u64,

    /// Log format (one line per event, to stderr).
    #[arg(long, env = "AIJOB_LOG_FORMAT", default_value = "text", value_enum)]
    pub log_format: LogFormat,

    /// Log level.
    #[arg(long, env = "AIJOB_LOG", default_value = "info", value_enum, ignore_case = true)]
    pub log_level: LogLevel,
}
