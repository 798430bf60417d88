//! Flags with environment fallbacks (docs: the fetcher's README), checked by clap while
//! parsing ([`Args`]) and gathered into the [`Config`] the worker runs with. No key can
//! reach a log through `Config`'s Debug: keys are [`Secret`]s and the Redis URL is redacted.

mod args;
mod parse;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;

pub use args::Args;
pub use parse::{Binding, LimitSpec, LogFormat, Scope};

use crate::providers::{FallbackRules, ProviderName, ProviderSettings, Target, MAX_FALLBACKS};
use crate::queues::Entry;
use crate::redis_url::RedisUrl;
use crate::secret::Secret;

/// The validated configuration the worker runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub redis: RedisUrl,
    /// Cluster mode: `--cluster`, or a `redis+cluster://` URL.
    pub cluster: bool,
    pub queues: Vec<Entry>,
    pub discover_every_ms: u64,
    pub queue_providers: Vec<Binding>,
    pub rl_scope: Scope,
    pub concurrency: usize,
    pub lease_ms: Option<u64>,
    pub grace: Duration,
    pub timeout: Duration,
    pub rpm: LimitSpec,
    pub tpm: LimitSpec,
    pub rl_prefix: String,
    pub rl_period_ms: u64,
    /// `--fallback`: each provider's fallbacks, in order.
    pub fallback: FallbackRules,
    pub fallback_429_wait_ms: u64,
    /// `--cooldown`: the shared circuit breaker, when on.
    pub cooldown: Option<CooldownSpec>,
    pub listen: Option<SocketAddr>,
    pub providers: ProviderSettings,
    pub worker: String,
    pub claim_block_ms: u64,
    pub log_format: LogFormat,
    pub log_level: tracing::Level,
}

/// `--cooldown MS --cooldown-failures N --cooldown-window MS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CooldownSpec {
    pub cool_ms: u64,
    pub failures: u64,
    pub window_ms: u64,
}

impl Config {
    pub fn from_args(a: Args) -> Result<Config> {
        let redis = RedisUrl::parse(&a.redis_url).map_err(|e| anyhow::anyhow!("--redis-url: {e}"))?;
        let mut fallback = FallbackRules::new();
        for rule in a.fallback.into_iter().flatten() {
            fallback.entry(rule.from).or_default().push(rule.to);
        }
        let cooldown = a.cooldown.map(|cool_ms| CooldownSpec {
            cool_ms,
            failures: a.cooldown_failures,
            window_ms: a.cooldown_window,
        });
        let cfg = Config {
            cluster: a.cluster || redis.cluster,
            redis,
            queues: a.queues.0,
            discover_every_ms: a.discover_every,
            queue_providers: a.queue_providers.into_iter().flatten().collect(),
            rl_scope: a.rl_scope,
            concurrency: a.concurrency,
            lease_ms: a.lease,
            grace: a.grace,
            timeout: a.timeout,
            rpm: a.rpm.unwrap_or_default(),
            tpm: a.tpm.unwrap_or_default(),
            rl_prefix: a.rl_prefix,
            rl_period_ms: a.rl_period,
            fallback,
            fallback_429_wait_ms: a.fallback_429_wait,
            cooldown,
            listen: a.listen.and_then(|l| l.0),
            providers: ProviderSettings {
                gemini_key: non_empty_key(a.gemini_api_key),
                gemini_base: a.gemini_base_url,
                openai_key: non_empty_key(a.openai_api_key),
                openai_base: a.openai_base_url,
                http_endpoints: a.http_endpoints.into_iter().flatten().collect(),
            },
            worker: a.worker.filter(|w| !w.is_empty()).unwrap_or_else(default_worker),
            claim_block_ms: a.claim_block,
            log_format: a.log_format,
            log_level: a.log_level.into(),
        };
        cfg.check_fallbacks()?;
        Ok(cfg)
    }

    /// Every `--fallback` target is one this fetcher can call, at most MAX_FALLBACKS a provider.
    fn check_fallbacks(&self) -> Result<()> {
        for (from, targets) in &self.fallback {
            if targets.len() > MAX_FALLBACKS {
                anyhow::bail!("--fallback: {from} has more than {MAX_FALLBACKS} fallbacks");
            }
            for t in targets {
                if let Some(why) = self.cannot_call(t) {
                    anyhow::bail!("--fallback {from}={t}: {why}");
                }
            }
        }
        Ok(())
    }

    fn cannot_call(&self, t: &Target) -> Option<&'static str> {
        let p = &self.providers;
        match t.provider {
            ProviderName::Gemini if p.gemini_key.is_none() => {
                Some("no Gemini API key is configured (set GEMINI_API_KEY)")
            }
            ProviderName::OpenAi if p.openai_key.is_none() => {
                Some("no OpenAI API key is configured (set OPENAI_API_KEY)")
            }
            ProviderName::Http if !t.endpoint.as_ref().is_some_and(|e| p.http_endpoints.contains_key(e)) => {
                Some("no such --http-endpoint")
            }
            _ => None,
        }
    }

    /// Every secret the process holds, for the redactor.
    pub fn secrets(&self) -> Vec<Secret> {
        let keys = [&self.providers.gemini_key, &self.providers.openai_key];
        keys.into_iter().flatten().cloned().chain(self.redis.passwords()).collect()
    }
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

/// The configuration of these flags alone: the environment is not read (for unit tests,
/// which must not depend on the variables of the shell that runs them).
#[cfg(test)]
pub fn from_flags(args: &[&str]) -> Result<Config> {
    use clap::{CommandFactory, FromArgMatches};
    let cmd = Args::command().mut_args(|a| a.env(None::<&'static str>));
    let m = cmd.try_get_matches_from(std::iter::once("aijob-fetcher").chain(args.iter().copied()))?;
    Config::from_args(Args::from_arg_matches(&m)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Config> {
        from_flags(args)
    }

    #[test]
    fn every_flag_keeps_its_environment_variable() {
        let want = [
            ("redis-url", "REDIS_URL"),
            ("cluster", "AIJOB_CLUSTER"),
            ("queues", "AIJOB_QUEUES"),
            ("discover-every", "AIJOB_DISCOVER_MS"),
            ("queue-provider", "AIJOB_QUEUE_PROVIDERS"),
            ("rl-scope", "AIJOB_RL_SCOPE"),
            ("concurrency", "AIJOB_CONCURRENCY"),
            ("lease", "AIJOB_LEASE_MS"),
            ("grace", "AIJOB_GRACE"),
            ("timeout", "AIJOB_TIMEOUT"),
            ("rpm", "AIJOB_RPM"),
            ("tpm", "AIJOB_TPM"),
            ("rl-prefix", "AIJOB_RL_PREFIX"),
            ("rl-period", "AIJOB_RL_PERIOD_MS"),
            ("fallback", "AIJOB_FALLBACK"),
            ("fallback-429-wait", "AIJOB_FALLBACK_429_WAIT_MS"),
            ("cooldown", "AIJOB_COOLDOWN_MS"),
            ("cooldown-failures", "AIJOB_COOLDOWN_FAILURES"),
            ("cooldown-window", "AIJOB_COOLDOWN_WINDOW_MS"),
            ("listen", "AIJOB_LISTEN"),
            ("gemini-api-key", "GEMINI_API_KEY"),
            ("gemini-base-url", "GEMINI_BASE_URL"),
            ("openai-api-key", "OPENAI_API_KEY"),
            ("openai-base-url", "OPENAI_BASE_URL"),
            ("http-endpoint", "AIJOB_HTTP_ENDPOINTS"),
            ("worker", "AIJOB_WORKER"),
            ("claim-block", "AIJOB_CLAIM_BLOCK_MS"),
            ("log-format", "AIJOB_LOG_FORMAT"),
            ("log-level", "AIJOB_LOG"),
        ];
        let cmd = Args::command();
        let have: Vec<(String, String)> = cmd
            .get_arguments()
            .filter_map(|a| Some((a.get_long()?.to_string(), a.get_env()?.to_string_lossy().into_owned())))
            .collect();
        let want: Vec<(String, String)> = want.iter().map(|(f, e)| (f.to_string(), e.to_string())).collect();
        assert_eq!(have, want);
        let hidden = |long: &str| cmd.get_arguments().any(|a| a.get_long() == Some(long) && a.is_hide_env_values_set());
        assert!(hidden("redis-url") && hidden("gemini-api-key") && hidden("openai-api-key"));
    }

    #[test]
    fn empty_values_and_items_mean_none() {
        let c = parse(&["--listen", " ", "--queue-provider", "a=echo,,", "--http-endpoint", ""]).unwrap();
        assert_eq!((c.listen, c.queue_providers.len(), c.providers.http_endpoints.len()), (None, 1, 0));
        assert_eq!(parse(&["--listen", "127.0.0.1:9"]).unwrap().listen.map(|a| a.port()), Some(9));
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!((c.concurrency, c.grace, c.timeout), (8, Duration::from_secs(10), Duration::from_secs(120)));
        assert_eq!((c.rl_scope, c.log_format, c.log_level), (Scope::Provider, LogFormat::Text, tracing::Level::INFO));
        assert_eq!(c.redis.seeds, vec!["redis://127.0.0.1:6379"]);
        assert!(!c.cluster && c.listen.is_none() && c.lease_ms.is_none());
        assert!(c.fallback.is_empty() && c.cooldown.is_none());
        assert_eq!(c.fallback_429_wait_ms, 5000);
    }

    #[test]
    fn fallbacks_keep_their_order_per_provider() {
        let keys = ["--gemini-api-key", "gk-123456", "--openai-api-key", "sk-123456"];
        let c = parse(
            &[
                &keys[..],
                &["--http-endpoint", "sum=http://h", "--fallback", "gemini=openai:gpt-4o-mini,openai=gemini:g2"],
                &["--fallback", "gemini=http:sum", "--fallback", "gemini=echo", "--fallback-429-wait", "0"],
            ]
            .concat(),
        )
        .unwrap();
        let of = |p: ProviderName| c.fallback[&p].iter().map(|t| t.to_string()).collect::<Vec<_>>();
        assert_eq!(of(ProviderName::Gemini), ["openai:gpt-4o-mini", "http:sum", "echo"]);
        assert_eq!(of(ProviderName::OpenAi), ["gemini:g2"]);
        assert_eq!(c.fallback_429_wait_ms, 0);
    }

    #[test]
    fn fallbacks_must_be_callable_by_this_fetcher() {
        for (args, why) in [
            (
                &["--fallback", "gemini=openai:gpt-4o-mini"][..],
                "--fallback gemini=openai:gpt-4o-mini: no OpenAI API key",
            ),
            (&["--fallback", "openai=gemini:g"], "GEMINI_API_KEY"),
            (&["--fallback", "echo=http:nope", "--http-endpoint", "sum=http://h"], "no such --http-endpoint"),
            (&["--fallback", &"gemini=echo,".repeat(9)], "more than 8"),
        ] {
            let e = format!("{:#}", parse(args).unwrap_err());
            assert!(e.contains(why), "{args:?}: {e}");
        }
        assert!(parse(&["--fallback", "gemini=echo,echo=http:sum", "--http-endpoint", "sum=http://h"]).is_ok());
    }

    #[test]
    fn cooldown_flags() {
        let c = parse(&["--cooldown", "30000", "--cooldown-failures", "3", "--cooldown-window", "5000"]).unwrap();
        assert_eq!(c.cooldown, Some(CooldownSpec { cool_ms: 30000, failures: 3, window_ms: 5000 }));
        let c = parse(&["--cooldown", "1000"]).unwrap();
        assert_eq!(c.cooldown, Some(CooldownSpec { cool_ms: 1000, failures: 5, window_ms: 10000 }));
        for bad in [
            &["--cooldown", "0"][..],
            &["--cooldown", "86400001"],
            &["--cooldown", "1000", "--cooldown-failures", "0"],
            &["--cooldown", "1000", "--cooldown-window", "0"],
            &["--cooldown-failures", "3"],
            &["--cooldown-window", "3000"],
            &["--fallback-429-wait", "-1"],
            &["--fallback", "gemini"],
            &["--fallback", "gemini=openai"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clap_checks_ranges_and_value_enums() {
        for bad in [
            &["--concurrency", "0"][..],
            &["--concurrency", "100001"],
            &["--lease", "0"],
            &["--rl-period", "0"],
            &["--claim-block", "0"],
            &["--discover-every", "99"],
            &["--rl-scope", "tenant"],
            &["--log-format", "xml"],
            &["--log-level", "loud"],
            &["--grace", "-1"],
            &["--rl-prefix", "a{b}"],
            &["--listen", "nowhere"],
            &["--queues", "a:0"],
            &["--redis-url", "redis+cluster://"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let c = parse(&["--log-level", "DEBUG", "--rl-scope", "queue", "--log-format", "json"]).unwrap();
        assert_eq!((c.log_level, c.rl_scope, c.log_format), (tracing::Level::DEBUG, Scope::Queue, LogFormat::Json));
    }

    #[test]
    fn cluster_passwords_reach_the_redactor_and_not_the_debug_form() {
        let c = parse(&["--redis-url", "redis+cluster://u:p%40ss@h1:1,h2:2", "--gemini-api-key", "gk-123456"]).unwrap();
        assert!(c.cluster);
        let secrets: Vec<String> = c.secrets().iter().map(|s| s.expose().to_string()).collect();
        assert!(secrets.contains(&"p%40ss".to_string()) && secrets.contains(&"p@ss".to_string()), "{secrets:?}");
        assert!(secrets.contains(&"gk-123456".to_string()));
        let debug = format!("{c:?}");
        assert!(!debug.contains("p%40ss") && !debug.contains("gk-123456"), "{debug}");
    }

    #[test]
    fn lists_come_comma_separated() {
        let c =
            parse(&["--queue-provider", "a=echo,b-*=gemini", "--http-endpoint", "x=http://h/,y=https://k"]).unwrap();
        assert_eq!(c.queue_providers.len(), 2);
        assert_eq!(c.providers.http_endpoints.get("x").map(String::as_str), Some("http://h"));
        assert_eq!(c.providers.http_endpoints.len(), 2);
    }
}
