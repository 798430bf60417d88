//! Provider budgets: requests and tokens per window (`--rpm`, `--tpm`, over `--rl-period`),
//! per provider, kept in Redis with RATELIMIT.HIT so that every fetcher process on the same
//! Redis shares one budget. A denied hit waits its `retry_after_ms`; it never calls.
//!
//! Keys, one per budget, each its own cluster slot (the `{provider}` hash tag):
//! `<prefix>:{<provider>}:rpm` and `<prefix>:{<provider>}:tpm` (prefix `aijob-rl`).
//!
//! Order of the charges before one call, so that a call is charged in both budgets at
//! nearly the same instant and a denied budget wastes as little as possible:
//! 1. PEEK the token budget for the job's cost (consumes nothing): wait if it would deny;
//! 2. HIT the request budget with COST 1: wait if denied;
//! 3. HIT the token budget with COST cost: if denied now (another fetcher took it between 1
//!    and 3), the request charge of step 2 is lost (the budget errs on the safe side: it
//!    may admit less than the limit, never more), wait and start again.
//!
//! A job's token charge is its record's `cost` (estimated tokens, 1 when unset), capped at
//! the token limit (a single call larger than the whole budget takes all of one window).
//!
//! Seam for charged claims (SPEC section 11): when JOB.CLAIM ... CHARGE and USAGE settling
//! land, `claim_charges` gives the CHARGE arguments for a queue whose provider is known in
//! advance, and `settle_usage` the USAGE of the final update; the per-call charges here then
//! apply only to jobs claimed without them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Value;

use crate::config::LimitSpec;
use crate::metrics::Metrics;
use crate::providers::{Failure, Usage};
use crate::rconn::{self, Backoff, Redis};

#[derive(Clone)]
pub struct Limits {
    redis: Redis,
    rpm: LimitSpec,
    tpm: LimitSpec,
    prefix: String,
    period_ms: u64,
    metrics: Arc<Metrics>,
}

/// One RATELIMIT reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub remaining: i64,
    pub retry_after_ms: u64,
}

impl Verdict {
    pub fn from_value(v: &Value) -> Option<Verdict> {
        let Value::Array(items) = v else { return None };
        let int = |i: usize| items.get(i).and_then(|x| rconn::as_string(x)?.parse::<i64>().ok());
        Some(Verdict { allowed: int(0)? == 1, remaining: int(1)?, retry_after_ms: int(2)?.max(0) as u64 })
    }
}

/// Budget names, as in the key and the metric label.
pub const RPM: &str = "rpm";
pub const TPM: &str = "tpm";

impl Limits {
    pub fn new(
        redis: Redis,
        rpm: LimitSpec,
        tpm: LimitSpec,
        prefix: &str,
        period_ms: u64,
        metrics: Arc<Metrics>,
    ) -> Limits {
        Limits { redis, rpm, tpm, prefix: prefix.to_string(), period_ms, metrics }
    }

    /// True when some provider has a budget.
    pub fn any(&self) -> bool {
        self.rpm != LimitSpec::default() || self.tpm != LimitSpec::default()
    }

    /// `<prefix>:{<provider>}:<budget>`.
    pub fn key(&self, provider: &str, budget: &str) -> String {
        format!("{}:{{{provider}}}:{budget}", self.prefix)
    }

    pub fn describe(&self, provider: &str) -> Option<String> {
        let r = self.rpm.for_provider(provider);
        let t = self.tpm.for_provider(provider);
        if r.is_none() && t.is_none() {
            return None;
        }
        let show = |x: Option<u64>| x.map_or("unlimited".to_string(), |n| n.to_string());
        Some(format!("{} requests and {} tokens per {} ms", show(r), show(t), self.period_ms))
    }

    /// Waits until the provider's budgets admit one call of `cost` tokens, and charges them.
    /// An error reply from Redis (e.g. a module without RATELIMIT.HIT) fails the attempt,
    /// retryably, with class `ratelimit`; a lost link is retried here.
    pub async fn acquire(&self, provider: &str, cost: u64) -> Result<(), Failure> {
        let rpm = self.rpm.for_provider(provider);
        let tpm = self.tpm.for_provider(provider);
        if rpm.is_none() && tpm.is_none() {
            return Ok(());
        }
        let tokens = tpm.map(|t| cost.clamp(1, t));
        loop {
            if let (Some(limit), Some(c)) = (tpm, tokens) {
                let v = self.ask("RATELIMIT.PEEK", provider, TPM, limit, c).await?;
                if !v.allowed {
                    self.wait(provider, TPM, v.retry_after_ms).await;
                    continue;
                }
            }
            if let Some(limit) = rpm {
                let v = self.ask("RATELIMIT.HIT", provider, RPM, limit, 1).await?;
                if !v.allowed {
                    self.wait(provider, RPM, v.retry_after_ms).await;
                    continue;
                }
            }
            if let (Some(limit), Some(c)) = (tpm, tokens) {
                let v = self.ask("RATELIMIT.HIT", provider, TPM, limit, c).await?;
                if !v.allowed {
                    self.wait(provider, TPM, v.retry_after_ms).await;
                    continue;
                }
            }
            return Ok(());
        }
    }

    async fn ask(&self, verb: &str, provider: &str, budget: &str, limit: u64, cost: u64) -> Result<Verdict, Failure> {
        let mut cmd = redis::cmd(verb);
        cmd.arg(self.key(provider, budget))
            .arg("LIMIT")
            .arg(limit)
            .arg("PERIOD")
            .arg(self.period_ms)
            .arg("COST")
            .arg(cost);
        let mut backoff = Backoff::new(Duration::from_secs(5));
        loop {
            match self.redis.query(&cmd).await {
                Ok(v) => {
                    return Verdict::from_value(&v)
                        .ok_or_else(|| Failure::retry("ratelimit", format!("{verb} answered in an unexpected shape")))
                }
                Err(e) if rconn::is_transport(&e) => {
                    tracing::warn!(provider, budget, error = %rconn::describe(&e), "rate limit check failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => {
                    return Err(Failure::retry("ratelimit", format!("{verb} failed: {}", rconn::describe(&e))));
                }
            }
        }
    }

    async fn wait(&self, provider: &str, budget: &str, retry_after_ms: u64) {
        self.metrics.ratelimit_wait(provider, budget);
        // A little jitter so that fetchers waiting on one budget do not all ask at once.
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() as u64);
        let jitter = nanos % (retry_after_ms / 10 + 5);
        tracing::debug!(provider, budget, retry_after_ms, "rate limited; waiting");
        tokio::time::sleep(Duration::from_millis(retry_after_ms.max(1) + jitter)).await;
    }

    /// CHARGE arguments for `JOB.CLAIM` on `queue` (SPEC 11). None yet: a queue does not
    /// say which provider its jobs call, so budgets are charged per call in `acquire`.
    pub fn claim_charges(&self, _queue: &str) -> Vec<String> {
        Vec::new()
    }

    /// The `USAGE n` to report with the final update: the tokens really used, which the
    /// module settles against a COST charge taken by a charged claim.
    pub fn settle_usage(&self, usage: &Usage) -> u64 {
        usage.total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_parse() {
        let v = Value::Array(vec![Value::Int(0), Value::Int(0), Value::Int(1500), Value::Int(60000)]);
        assert_eq!(Verdict::from_value(&v), Some(Verdict { allowed: false, remaining: 0, retry_after_ms: 1500 }));
        assert_eq!(Verdict::from_value(&Value::Nil), None);
    }
}
