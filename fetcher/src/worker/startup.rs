//! Before the first claim: the lease to claim with, the commands --rpm/--tpm need, and the
//! log lines that say what this fetcher will do.

use std::time::Duration;

use anyhow::Result;
use redis::Value;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::limits::Limits;
use crate::providers::{ProviderName, Providers};
use crate::queues::Sel;
use crate::rconn::{self, Backoff, Redis};

/// The lease when the module's own cannot be read.
pub const FALLBACK_LEASE_MS: u64 = 30_000;

/// The lease to claim with: --lease, else the module's `aijob.lease-ms`. Waits for Redis;
/// None when shut down before it answered.
pub async fn lease_ms(cfg: &Config, redis: &Redis, shutdown: &CancellationToken) -> Option<u64> {
    if let Some(l) = cfg.lease_ms {
        return Some(l);
    }
    let mut backoff = Backoff::new(Duration::from_secs(5));
    loop {
        let e = match redis.query(redis::cmd("CONFIG").arg("GET").arg("aijob.lease-ms")).await {
            Ok(v) => return Some(lease_of_reply(&v).unwrap_or_else(fallback)),
            Err(e) if !rconn::is_transport(&e) => {
                warn!(error = %rconn::describe(&e), "CONFIG GET aijob.lease-ms refused (set --lease); claiming with {FALLBACK_LEASE_MS} ms");
                return Some(FALLBACK_LEASE_MS);
            }
            Err(e) => e,
        };
        warn!(error = %rconn::describe(&e), "Redis is not reachable yet; retrying");
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.cancelled() => return None,
        }
    }
}

fn fallback(why: &str) -> u64 {
    warn!("{why}; claiming with {FALLBACK_LEASE_MS} ms");
    FALLBACK_LEASE_MS
}

/// The positive lease of a `CONFIG GET aijob.lease-ms` reply (RESP2 pair or RESP3 map), or
/// why there is none.
pub fn lease_of_reply(v: &Value) -> Result<u64, &'static str> {
    let value = match v {
        Value::Array(items) => match items.as_slice() {
            [_, value] => Some(value),
            _ => None,
        },
        Value::Map(items) => match items.as_slice() {
            [(_, value)] => Some(value),
            _ => None,
        },
        _ => None,
    };
    let value = value.ok_or("CONFIG GET aijob.lease-ms gave nothing (is the aijob module loaded?)")?;
    rconn::as_string(value)
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .ok_or("aijob.lease-ms is not a positive number")
}

/// --rpm/--tpm/--cooldown need RATELIMIT.HIT and RATELIMIT.PEEK: refuse to start without them rather
/// than fail every job.
pub async fn check_ratelimit_commands(redis: &Redis) -> Result<()> {
    let v = redis
        .query(redis::cmd("COMMAND").arg("INFO").arg("RATELIMIT.HIT").arg("RATELIMIT.PEEK"))
        .await
        .map_err(|e| anyhow::anyhow!("COMMAND INFO failed: {}", rconn::describe(&e)))?;
    if !both_known(&v) {
        anyhow::bail!("--rpm/--tpm/--cooldown need RATELIMIT.HIT and RATELIMIT.PEEK, which this Redis does not have (is the aijob module loaded, and recent enough?)");
    }
    Ok(())
}

/// A COMMAND INFO reply for two commands that knows both.
pub fn both_known(v: &Value) -> bool {
    matches!(v, Value::Array(items) if items.len() == 2 && items.iter().all(|i| !matches!(i, Value::Nil)))
}

/// Which providers are on, and their budgets.
pub fn log_providers(providers: &Providers, limits: &Limits) {
    let enabled = providers.enabled_names();
    if enabled == [ProviderName::Echo] {
        warn!("echo only: no API keys set (GEMINI_API_KEY, OPENAI_API_KEY) and no --http-endpoint; jobs for other providers fail with class config");
    }
    for p in enabled {
        match limits.describe(p) {
            Some(l) => info!(provider = %p, limits = %l, "provider enabled"),
            None => info!(provider = %p, "provider enabled, no rate limit"),
        }
    }
}

/// The start line, and how the first named queues take their budgets.
pub fn log_started(cfg: &Config, lease_ms: u64, limits: &Limits) {
    let entries: Vec<String> = cfg.queues.iter().map(|e| format!("{}:{}", e.text, e.weight)).collect();
    info!(
        redis = %cfg.redis.redacted(),
        cluster = cfg.cluster,
        queues = ?entries,
        concurrency = cfg.concurrency,
        lease_ms,
        worker = %cfg.worker,
        "fetcher started"
    );
    if !limits.any() {
        return;
    }
    let named = cfg.queues.iter().filter_map(|e| match &e.sel {
        Sel::Names(ns) => Some(ns.iter().take(16)),
        Sel::Glob(_) => None,
    });
    for q in named.flatten() {
        info!(queue = %q, mode = %limits.charge_mode(q), "rate limits");
    }
}

/// Each provider's --fallback list, and the cooldown.
pub fn log_fallbacks(cfg: &Config) {
    for (from, targets) in &cfg.fallback {
        let to: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
        info!(provider = %from, fallbacks = ?to, "fallbacks");
    }
    if let Some(c) = cfg.cooldown {
        info!(
            failures = c.failures,
            window_ms = c.window_ms,
            cooldown_ms = c.cool_ms,
            "providers cool down after repeated failures"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn the_lease_from_resp2_and_resp3_replies() {
        let resp2 = Value::Array(vec![bulk("aijob.lease-ms"), bulk("9000")]);
        assert_eq!(lease_of_reply(&resp2), Ok(9000));
        let resp3 = Value::Map(vec![(bulk("aijob.lease-ms"), bulk("1200"))]);
        assert_eq!(lease_of_reply(&resp3), Ok(1200));
        let zero = Value::Array(vec![bulk("aijob.lease-ms"), bulk("0")]);
        assert!(lease_of_reply(&zero).unwrap_err().contains("positive"));
        assert!(lease_of_reply(&Value::Array(vec![])).unwrap_err().contains("module"));
    }

    #[test]
    fn ratelimit_commands_must_both_be_known() {
        let info = Value::Array(vec![Value::Array(vec![]), Value::Array(vec![])]);
        assert!(both_known(&info));
        assert!(!both_known(&Value::Array(vec![Value::Array(vec![]), Value::Nil])));
        assert!(!both_known(&Value::Nil));
    }
}
