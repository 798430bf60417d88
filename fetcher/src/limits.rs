//! Provider budgets: requests and tokens per window (`--rpm`, `--tpm`, over `--rl-period`),
//! per provider, kept in Redis in RATELIMIT's format so that every fetcher process on the
//! same Redis shares one budget. Two ways to take them:
//!
//! **Charged claims** (docs/limits.md#charged-claims). When a queue is bound to a provider (`--queue-provider
//! sketch=gemini`), that provider has a budget, and the budget keys can share the queue's
//! slot (always on a single node; on a cluster only with `--rl-scope queue`, whose keys carry
//! the queue's hash tag), the claim itself takes the budgets: `JOB.CLAIM sketch ... CHARGE
//! <tpm key> COST LIMIT n PERIOD p CHARGE <rpm key> REQUESTS LIMIT n PERIOD p`. The module
//! hands out a job only if every charge admits it (the job's `cost`, its creator's estimate,
//! for the tokens; 1 for the request), atomically with the claim, and a blocked claim is
//! woken when the budget would admit the next job. The final update's `USAGE` (the tokens
//! the provider reported) then moves the token charge to what was really used.
//!
//! **Per call** (every other case: an unbound queue, a job whose payload names another
//! provider than its queue's binding, a per-provider budget on a cluster): RATELIMIT.HIT
//! before each call. A denied hit waits its `retry_after_ms`; it never calls. Order:
//! 1. PEEK the token budget for the job's cost (consumes nothing): wait if it would deny;
//! 2. HIT the request budget with COST 1: wait if denied;
//! 3. HIT the token budget with COST cost: if denied now (another fetcher took it between 1
//!    and 3), the request charge of step 2 is lost (the budget errs on the safe side: it
//!    may admit less than the limit, never more), wait and start again.
//!
//! A job's token charge is its record's `cost` (estimated tokens, 1 when unset), capped at
//! the token limit (a single call larger than the whole budget takes all of one window).
//!
//! Keys (`--rl-scope`): `provider` (default): `<prefix>:{<provider>}:rpm|tpm`, one budget per
//! provider for every queue; `queue`: `<prefix>:{<queue>}:<provider>:rpm|tpm`, one budget per
//! queue and provider, in the queue's slot. Both ways use the same keys, so charged claims
//! and per-call hits of one budget add up.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Value;

use crate::config::{Binding, Config, LimitSpec, Scope};
use crate::metrics::Metrics;
use crate::providers::{ErrorClass, Failure, ProviderName, Usage};
use crate::queues::{glob_match, Sel};
use crate::rconn::{self, Backoff, Redis};

#[derive(Clone)]
pub struct Limits {
    redis: Redis,
    rpm: LimitSpec,
    tpm: LimitSpec,
    prefix: String,
    period_ms: u64,
    metrics: Arc<Metrics>,
    scope: Scope,
    bindings: Vec<Binding>,
    cluster: bool,
    /// Queues whose charged claims Redis refused (a module without CHARGE, CROSSSLOT): they
    /// fall back to per-call hits.
    refused: Arc<std::sync::Mutex<HashSet<String>>>,
}

/// How a queue's claims take the budgets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargePlan {
    /// The provider whose budgets the claim charges.
    pub provider: ProviderName,
    /// The CHARGE clauses of JOB.CLAIM.
    pub args: Vec<String>,
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

/// A provider's two budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Requests per window (`--rpm`).
    Rpm,
    /// Tokens per window (`--tpm`).
    Tpm,
}

impl Budget {
    /// As in the key and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Budget::Rpm => "rpm",
            Budget::Tpm => "tpm",
        }
    }
}

/// One RATELIMIT question on the way to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub verb: &'static str,
    pub budget: Budget,
    pub limit: u64,
    pub cost: u64,
}

/// The questions asked before a call (see "Per call" above): PEEK the tokens, HIT the
/// request, HIT the tokens; the token charge capped at the limit. None without budgets.
pub fn per_call_steps(rpm: Option<u64>, tpm: Option<u64>, cost: u64) -> Vec<Step> {
    let tokens = |limit: u64| cost.clamp(1, limit);
    let peek = tpm.map(|limit| Step { verb: "RATELIMIT.PEEK", budget: Budget::Tpm, limit, cost: tokens(limit) });
    let request = rpm.map(|limit| Step { verb: "RATELIMIT.HIT", budget: Budget::Rpm, limit, cost: 1 });
    let charge = tpm.map(|limit| Step { verb: "RATELIMIT.HIT", budget: Budget::Tpm, limit, cost: tokens(limit) });
    [peek, request, charge].into_iter().flatten().collect()
}

impl Limits {
    pub fn new(redis: Redis, cfg: &Config, metrics: Arc<Metrics>) -> Limits {
        Limits {
            redis,
            rpm: cfg.rpm.clone(),
            tpm: cfg.tpm.clone(),
            prefix: cfg.rl_prefix.clone(),
            period_ms: cfg.rl_period_ms,
            metrics,
            scope: cfg.rl_scope,
            bindings: cfg.queue_providers.clone(),
            cluster: cfg.cluster,
            refused: Arc::default(),
        }
    }

    /// True when some provider has a budget.
    pub fn any(&self) -> bool {
        self.rpm != LimitSpec::default() || self.tpm != LimitSpec::default()
    }

    /// `<prefix>:{<provider>}:<budget>`, or `<prefix>:{<queue>}:<provider>:<budget>` with
    /// `--rl-scope queue`.
    pub fn key(&self, queue: &str, provider: ProviderName, budget: Budget) -> String {
        let budget = budget.as_str();
        match self.scope {
            Scope::Provider => format!("{}:{{{provider}}}:{budget}", self.prefix),
            Scope::Queue => format!("{}:{{{queue}}}:{provider}:{budget}", self.prefix),
        }
    }

    /// The provider `--queue-provider` binds `queue` to.
    pub fn provider_of(&self, queue: &str) -> Option<ProviderName> {
        self.bindings
            .iter()
            .find(|b| match &b.sel {
                Sel::Names(ns) => ns.iter().any(|n| n == queue),
                Sel::Glob(g) => glob_match(g, queue),
            })
            .map(|b| b.provider)
    }

    /// The CHARGE clauses for claims on `queue`, when its claims take the budgets (see the
    /// module doc); None when its jobs are charged per call.
    pub fn charge_plan(&self, queue: &str) -> Option<ChargePlan> {
        self.charge_or_why(queue).ok()
    }

    /// Why `queue`'s claims are not charged, for the log.
    pub fn charge_mode(&self, queue: &str) -> String {
        match self.charge_or_why(queue) {
            Ok(p) => format!("charged claims ({} budgets)", p.provider),
            Err(why) => format!("per-call hits: {why}"),
        }
    }

    fn charge_or_why(&self, queue: &str) -> Result<ChargePlan, &'static str> {
        let provider = self.provider_of(queue).ok_or("no --queue-provider binding")?;
        let rpm = self.rpm.for_provider(provider);
        let tpm = self.tpm.for_provider(provider);
        if rpm.is_none() && tpm.is_none() {
            return Err("its provider has no --rpm/--tpm");
        }
        if self.refused.lock().unwrap_or_else(|p| p.into_inner()).contains(queue) {
            return Err("Redis refused its charged claims");
        }
        let mut args = Vec::new();
        for (limit, budget, mode) in [(tpm, Budget::Tpm, "COST"), (rpm, Budget::Rpm, "REQUESTS")] {
            let Some(limit) = limit else { continue };
            let key = self.key(queue, provider, budget);
            if self.cluster && rconn::slot(&key) != rconn::slot(queue) {
                return Err("on a cluster the per-provider budget keys are in another slot (--rl-scope queue puts them in the queue's)");
            }
            args.extend([
                "CHARGE".to_string(),
                key,
                mode.to_string(),
                "LIMIT".to_string(),
                limit.to_string(),
                "PERIOD".to_string(),
                self.period_ms.to_string(),
            ]);
        }
        Ok(ChargePlan { provider, args })
    }

    /// Redis refused a charged claim on `queue` for good: its jobs are charged per call from
    /// now on. True the first time.
    pub fn refuse_charges(&self, queue: &str) -> bool {
        self.refused.lock().unwrap_or_else(|p| p.into_inner()).insert(queue.to_string())
    }

    pub fn describe(&self, provider: ProviderName) -> Option<String> {
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
    pub async fn acquire(&self, queue: &str, provider: ProviderName, cost: u64) -> Result<(), Failure> {
        let steps = per_call_steps(self.rpm.for_provider(provider), self.tpm.for_provider(provider), cost);
        'again: loop {
            for step in &steps {
                let v = self.ask(queue, provider, step).await?;
                if !v.allowed {
                    self.wait(provider, step.budget, v.retry_after_ms).await;
                    continue 'again;
                }
            }
            return Ok(());
        }
    }

    /// `RATELIMIT.PEEK|HIT <key> LIMIT n PERIOD p COST c`.
    fn command(&self, queue: &str, provider: ProviderName, step: &Step) -> redis::Cmd {
        let mut cmd = redis::cmd(step.verb);
        cmd.arg(self.key(queue, provider, step.budget));
        cmd.arg("LIMIT").arg(step.limit).arg("PERIOD").arg(self.period_ms).arg("COST").arg(step.cost);
        cmd
    }

    async fn ask(&self, queue: &str, provider: ProviderName, step: &Step) -> Result<Verdict, Failure> {
        let cmd = self.command(queue, provider, step);
        let verb = step.verb;
        let mut backoff = Backoff::new(Duration::from_secs(5));
        loop {
            let e = match self.redis.query(&cmd).await {
                Ok(v) => {
                    let shape =
                        || Failure::retry(ErrorClass::RateLimit, format!("{verb} answered in an unexpected shape"));
                    return Verdict::from_value(&v).ok_or_else(shape);
                }
                Err(e) if !rconn::is_transport(&e) => {
                    let message = format!("{verb} failed: {}", rconn::describe(&e));
                    return Err(Failure::retry(ErrorClass::RateLimit, message));
                }
                Err(e) => e,
            };
            tracing::warn!(%provider, budget = step.budget.as_str(), error = %rconn::describe(&e), "rate limit check failed; retrying");
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    async fn wait(&self, provider: ProviderName, budget: Budget, retry_after_ms: u64) {
        self.metrics.ratelimit_wait(provider, budget.as_str());
        // A little jitter so that fetchers waiting on one budget do not all ask at once.
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() as u64);
        let jitter = nanos % (retry_after_ms / 10 + 5);
        tracing::debug!(%provider, budget = budget.as_str(), retry_after_ms, "rate limited; waiting");
        tokio::time::sleep(Duration::from_millis(retry_after_ms.max(1) + jitter)).await;
    }

    /// The `USAGE n` to report with the final update: the tokens really used (input + output,
    /// as the provider reported them), which the module settles against the COST charge of a
    /// charged claim (and keeps as the job's `usage` in any case).
    pub fn settle_usage(&self, usage: &Usage) -> u64 {
        usage.total()
    }

    /// The keys the final update names with `CHARGE` after its USAGE: the token budget a
    /// charged claim took on `queue` for `charged`. The module settles only the keys an
    /// update names (they are its declared keys, checked by ACL and routed on a cluster).
    pub fn settle_keys(&self, queue: &str, charged: Option<ProviderName>) -> Vec<String> {
        let Some(provider) = charged else { return Vec::new() };
        match self.tpm.for_provider(provider) {
            Some(_) => vec![self.key(queue, provider, Budget::Tpm)],
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_call_steps_peek_then_hit_requests_then_tokens() {
        let words = |steps: Vec<Step>| -> Vec<String> {
            steps.iter().map(|s| format!("{} {} {}/{}", s.verb, s.budget.as_str(), s.cost, s.limit)).collect()
        };
        assert_eq!(
            words(per_call_steps(Some(60), Some(1000), 5000)),
            ["RATELIMIT.PEEK tpm 1000/1000", "RATELIMIT.HIT rpm 1/60", "RATELIMIT.HIT tpm 1000/1000"]
        );
        assert_eq!(words(per_call_steps(None, Some(100), 0)), ["RATELIMIT.PEEK tpm 1/100", "RATELIMIT.HIT tpm 1/100"]);
        assert!(per_call_steps(None, None, 7).is_empty());
    }

    #[test]
    fn verdicts_parse() {
        let v = Value::Array(vec![Value::Int(0), Value::Int(0), Value::Int(1500), Value::Int(60000)]);
        assert_eq!(Verdict::from_value(&v), Some(Verdict { allowed: false, remaining: 0, retry_after_ms: 1500 }));
        assert_eq!(Verdict::from_value(&Value::Nil), None);
    }

    fn limits(args: &[&str]) -> Limits {
        let cfg = crate::config::from_flags(args).unwrap();
        let redis = Redis::new(&cfg.redis.seeds, cfg.cluster, Duration::from_secs(1), Arc::default()).unwrap();
        Limits::new(redis, &cfg, Arc::default())
    }

    #[test]
    fn charged_claims_when_the_keys_share_the_queues_slot() {
        let bound = ["--queue-provider", "sketch-*=gemini,chat=openai", "--tpm", "gemini=1000", "--rpm", "60"];
        let l = limits(&[&bound[..], &["--rl-period", "1000"]].concat());
        let p = l.charge_plan("sketch-3").unwrap();
        assert_eq!(p.provider, ProviderName::Gemini);
        assert_eq!(
            p.args.join(" "),
            "CHARGE aijob-rl:{gemini}:tpm COST LIMIT 1000 PERIOD 1000 CHARGE aijob-rl:{gemini}:rpm REQUESTS LIMIT 60 PERIOD 1000"
        );
        assert_eq!(
            l.charge_plan("chat").unwrap().args.join(" "),
            "CHARGE aijob-rl:{openai}:rpm REQUESTS LIMIT 60 PERIOD 1000"
        );
        assert_eq!(l.charge_plan("other"), None, "an unbound queue is charged per call");
        assert!(l.refuse_charges("chat"));
        assert!(!l.refuse_charges("chat"));
        assert_eq!(l.charge_plan("chat"), None);
        // The final update names the token budget the claim charged, and only that.
        assert_eq!(l.settle_keys("sketch-3", Some(ProviderName::Gemini)), ["aijob-rl:{gemini}:tpm"]);
        assert!(l.settle_keys("chat", Some(ProviderName::OpenAi)).is_empty(), "openai has no --tpm here");
        assert!(l.settle_keys("other", None).is_empty());

        // A cluster: per-provider keys live in another slot; per-queue keys in the queue's.
        let l = limits(&[&bound[..], &["--cluster"]].concat());
        assert_eq!(l.charge_plan("sketch-3"), None);
        assert!(l.charge_mode("sketch-3").contains("another slot"), "{}", l.charge_mode("sketch-3"));
        let l = limits(&[&bound[..], &["--cluster", "--rl-scope", "queue"]].concat());
        let p = l.charge_plan("sketch-3").unwrap();
        assert!(p.args.contains(&"aijob-rl:{sketch-3}:gemini:tpm".to_string()), "{:?}", p.args);
        assert_eq!(l.key("q", ProviderName::Echo, Budget::Rpm), "aijob-rl:{q}:echo:rpm");

        // No budget for the bound provider: nothing to charge.
        let l = limits(&["--queue-provider", "a=echo", "--tpm", "gemini=5"]);
        assert_eq!(l.charge_plan("a"), None);
    }
}
