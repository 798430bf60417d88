//! The shared circuit breaker of `--cooldown`: a provider that failed `--cooldown-failures`
//! times within `--cooldown-window` ms is not called for `--cooldown` ms by any fetcher on
//! this Redis. Its state is two RATELIMIT keys per provider, in the provider's hash tag (one
//! slot on a cluster, beside its `--rpm`/`--tpm` budget keys):
//!
//! - `<prefix>:{<provider>}:failures`: every provider failure (see
//!   [`ErrorClass::is_provider_failure`](crate::providers::ErrorClass::is_provider_failure))
//!   is `RATELIMIT.HIT ... LIMIT <failures> PERIOD <window>`. The hit that takes the last
//!   unit (remaining 0), or is denied, trips the breaker;
//! - `<prefix>:{<provider>}:cooldown`: tripping is `RATELIMIT.HIT ... LIMIT 1 PERIOD
//!   <cooldown>`. Admitted: this fetcher started the cooldown (counted and logged); denied:
//!   another one already had, and the cooldown is not made longer. Before each call,
//!   `RATELIMIT.PEEK` of this key says whether the provider is cooled down and for how many
//!   ms more (`retry_after_ms`).
//!
//! A RATELIMIT key rather than a LOCK.ACQUIRE marker: PEEK reads it without taking it (there
//! is no command that reads a lock), its reply says how long is left, a second trip while
//! cooled changes nothing, the key expires by itself, and a replica holds the same bytes.
//! The cooldown lasts `--cooldown` ms, up to a 64th of it longer (RATELIMIT's sub-windows).
//!
//! The breaker is advice: when Redis answers an error or not at all, the call is made (and a
//! failure not counted), so a Redis hiccup never stops a provider that works.

use std::sync::Arc;

use redis::Value;
use tracing::warn;

use crate::config::{Config, CooldownSpec};
use crate::limits::Verdict;
use crate::metrics::Metrics;
use crate::providers::ProviderName;
use crate::rconn::{self, Redis};

/// The breaker's two keys of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Failures,
    Cooldown,
}

#[derive(Clone)]
pub struct Breaker {
    redis: Redis,
    prefix: String,
    spec: Option<CooldownSpec>,
    metrics: Arc<Metrics>,
}

impl Breaker {
    pub fn new(redis: Redis, cfg: &Config, metrics: Arc<Metrics>) -> Breaker {
        Breaker { redis, prefix: cfg.rl_prefix.clone(), spec: cfg.cooldown, metrics }
    }

    pub fn enabled(&self) -> bool {
        self.spec.is_some()
    }

    /// `<prefix>:{<provider>}:failures` or `<prefix>:{<provider>}:cooldown`.
    pub fn key(&self, provider: ProviderName, key: Key) -> String {
        key_of(&self.prefix, provider, key)
    }

    /// How many ms more `provider` is cooled down; None when it may be called.
    pub async fn cooled(&self, provider: ProviderName) -> Option<u64> {
        let spec = self.spec?;
        let cmd = limit_cmd("RATELIMIT.PEEK", &self.key(provider, Key::Cooldown), 1, spec.cool_ms);
        let left = cooled_for(&self.ask(provider, &cmd).await?);
        if left.is_some() {
            self.metrics.cooldown_skip(provider);
        }
        left
    }

    /// Counts a provider failure; trips the breaker on the last one the window allows.
    pub async fn failed(&self, provider: ProviderName) {
        let Some(spec) = self.spec else { return };
        let count = limit_cmd("RATELIMIT.HIT", &self.key(provider, Key::Failures), spec.failures, spec.window_ms);
        let Some(v) = self.ask(provider, &count).await else { return };
        if !trips(&v) {
            return;
        }
        let trip = limit_cmd("RATELIMIT.HIT", &self.key(provider, Key::Cooldown), 1, spec.cool_ms);
        if self.ask(provider, &trip).await.is_some_and(|v| v.allowed) {
            self.metrics.cooldown_started(provider);
            warn!(%provider, failures = spec.failures, window_ms = spec.window_ms, cooldown_ms = spec.cool_ms, "provider cooled down: no fetcher calls it until the cooldown ends");
        }
    }

    /// One RATELIMIT command; None (after a log line) when Redis did not answer a verdict.
    async fn ask(&self, provider: ProviderName, cmd: &redis::Cmd) -> Option<Verdict> {
        let why = match self.redis.query(cmd).await {
            Ok(v) => match Verdict::from_value(&v) {
                Some(verdict) => return Some(verdict),
                None => format!("an unexpected reply: {}", shape(&v)),
            },
            Err(e) => rconn::describe(&e),
        };
        warn!(%provider, error = %why, "cooldown check failed; calling as if not cooled down");
        None
    }
}

fn shape(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Array(_) => "an array",
        _ => "not an array",
    }
}

pub fn key_of(prefix: &str, provider: ProviderName, key: Key) -> String {
    let which = match key {
        Key::Failures => "failures",
        Key::Cooldown => "cooldown",
    };
    format!("{prefix}:{{{provider}}}:{which}")
}

/// `RATELIMIT.PEEK|HIT <key> LIMIT n PERIOD ms COST 1`.
pub fn limit_cmd(verb: &str, key: &str, limit: u64, period_ms: u64) -> redis::Cmd {
    let mut cmd = redis::cmd(verb);
    cmd.arg(key).arg("LIMIT").arg(limit).arg("PERIOD").arg(period_ms).arg("COST").arg(1);
    cmd
}

/// A failure hit that used up the window (or found it used up) trips the breaker.
pub fn trips(v: &Verdict) -> bool {
    !v.allowed || v.remaining <= 0
}

/// A PEEK of the cooldown key: the ms left when it would deny (at least 1).
pub fn cooled_for(v: &Verdict) -> Option<u64> {
    (!v.allowed).then_some(v.retry_after_ms.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(allowed: bool, remaining: i64, retry_after_ms: u64) -> Verdict {
        Verdict { allowed, remaining, retry_after_ms }
    }

    #[test]
    fn keys_carry_the_providers_hash_tag() {
        assert_eq!(key_of("aijob-rl", ProviderName::Gemini, Key::Cooldown), "aijob-rl:{gemini}:cooldown");
        assert_eq!(key_of("p", ProviderName::OpenAi, Key::Failures), "p:{openai}:failures");
        let slot = |k: &str| rconn::slot(k);
        assert_eq!(slot("aijob-rl:{gemini}:cooldown"), slot("aijob-rl:{gemini}:failures"));
        assert_eq!(slot("aijob-rl:{gemini}:cooldown"), slot("aijob-rl:{gemini}:rpm"), "beside its budgets");
    }

    #[test]
    fn commands_are_single_unit_limits() {
        let packed = limit_cmd("RATELIMIT.HIT", "k", 5, 10_000).get_packed_command();
        let want = "*8\r\n$13\r\nRATELIMIT.HIT\r\n$1\r\nk\r\n$5\r\nLIMIT\r\n$1\r\n5\r\n$6\r\nPERIOD\r\n$5\r\n10000\r\n$4\r\nCOST\r\n$1\r\n1\r\n";
        assert_eq!(String::from_utf8_lossy(&packed), want);
    }

    #[test]
    fn the_last_failure_the_window_allows_trips_it() {
        assert!(!trips(&verdict(true, 2, 0)));
        assert!(trips(&verdict(true, 0, 0)));
        assert!(trips(&verdict(false, 0, 900)));
    }

    #[test]
    fn a_denying_peek_is_a_cooldown_with_its_time_left() {
        assert_eq!(cooled_for(&verdict(true, 1, 0)), None);
        assert_eq!(cooled_for(&verdict(false, 0, 1234)), Some(1234));
        assert_eq!(cooled_for(&verdict(false, 0, 0)), Some(1));
    }
}
