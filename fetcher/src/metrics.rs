//! The fetcher's metrics, kept by `prometheus-client` and rendered in the Prometheus text
//! format (served by `server.rs`):
//!
//! - `aijob_fetcher_jobs_total{queue,provider,outcome,class}`: finished attempts (see
//!   [`Outcome`]: done, retry, failed, released, lost; class empty for done and released).
//! - `aijob_fetcher_call_seconds{provider}`: provider call latency histogram.
//! - `aijob_fetcher_in_flight`: jobs held right now.
//! - `aijob_fetcher_ratelimit_waits_total{provider,limit}`: denied RATELIMIT.HITs waited out.
//! - `aijob_fetcher_redis_up`: 1 when the last Redis command got an answer.
//! - `aijob_fetcher_claims_total{queue}`: jobs claimed.
//! - `aijob_fetcher_fallbacks_total{from,to,class}`: moves from one leg of a job's plan to
//!   the next (`class`: why the leg left did not answer, `cooldown` when it was skipped).
//! - `aijob_fetcher_cooldowns_total{provider}`: cooldowns this fetcher started.
//! - `aijob_fetcher_cooldown_skips_total{provider}`: calls not made because the provider was
//!   cooled down.
//! - `aijob_fetcher_stream_appends_total{provider,kind}`: streamed text appended to jobs'
//!   output streams (`kind`: `chunk`, or `restart` for an append that started the output
//!   over behind a boundary).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::outcome::Outcome;
use crate::providers::{ErrorClass, ProviderName};

/// The Content-Type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

pub const BUCKETS: [f64; 13] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    queue: String,
    provider: &'static str,
    outcome: &'static str,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FallbackLabels {
    from: &'static str,
    to: &'static str,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppendLabels {
    provider: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WaitLabels {
    provider: &'static str,
    limit: &'static str,
}

fn call_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

pub struct Metrics {
    registry: Registry,
    jobs: Family<JobLabels, Counter>,
    claims: Family<QueueLabels, Counter>,
    calls: Family<ProviderLabels, Histogram, fn() -> Histogram>,
    rl_waits: Family<WaitLabels, Counter>,
    fallbacks: Family<FallbackLabels, Counter>,
    cooldowns: Family<ProviderLabels, Counter>,
    cooldown_skips: Family<ProviderLabels, Counter>,
    stream_appends: Family<AppendLabels, Counter>,
    in_flight: Gauge,
    redis_up_gauge: Gauge,
    /// Set by the Redis link on every answer or failure; read when rendering.
    pub redis_up: Arc<AtomicBool>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            jobs: Family::default(),
            claims: Family::default(),
            calls: Family::new_with_constructor(call_histogram as fn() -> Histogram),
            rl_waits: Family::default(),
            fallbacks: Family::default(),
            cooldowns: Family::default(),
            cooldown_skips: Family::default(),
            stream_appends: Family::default(),
            in_flight: Gauge::default(),
            redis_up_gauge: Gauge::default(),
            redis_up: Arc::default(),
        };
        m.registered()
    }
}

impl Metrics {
    fn registered(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register("aijob_fetcher_jobs", "Job attempts finished by this fetcher", self.jobs.clone());
        r.register("aijob_fetcher_claims", "Jobs claimed", self.claims.clone());
        r.register("aijob_fetcher_call_seconds", "Provider call latency", self.calls.clone());
        r.register("aijob_fetcher_in_flight", "Jobs held by this fetcher now", self.in_flight.clone());
        r.register("aijob_fetcher_ratelimit_waits", "Calls held back by a denied RATELIMIT.HIT", self.rl_waits.clone());
        r.register("aijob_fetcher_fallbacks", "Moves to a job's next provider", self.fallbacks.clone());
        r.register("aijob_fetcher_cooldowns", "Provider cooldowns this fetcher started", self.cooldowns.clone());
        r.register(
            "aijob_fetcher_cooldown_skips",
            "Calls not made: the provider was cooled down",
            self.cooldown_skips.clone(),
        );
        r.register(
            "aijob_fetcher_stream_appends",
            "Streamed text appended to jobs' output streams (kind: chunk, or restart behind a boundary)",
            self.stream_appends.clone(),
        );
        r.register(
            "aijob_fetcher_redis_up",
            "1 when the last Redis command got an answer",
            self.redis_up_gauge.clone(),
        );
        self
    }

    pub fn job(&self, queue: &str, provider: Option<ProviderName>, outcome: &Outcome) {
        let labels = JobLabels {
            queue: queue.to_string(),
            provider: ProviderName::label(provider),
            outcome: outcome.as_str(),
            class: outcome.class().to_string(),
        };
        self.jobs.get_or_create(&labels).inc();
    }

    /// A streamed call's append landed; `restart` when it started the output over.
    pub fn appended(&self, provider: ProviderName, restart: bool) {
        let kind = if restart { "restart" } else { "chunk" };
        self.stream_appends.get_or_create(&AppendLabels { provider: provider.as_str(), kind }).inc();
    }

    pub fn claimed(&self, queue: &str, n: usize) {
        self.claims.get_or_create(&QueueLabels { queue: queue.to_string() }).inc_by(n as u64);
    }

    pub fn call(&self, provider: ProviderName, d: Duration) {
        self.calls.get_or_create(&ProviderLabels { provider: provider.as_str() }).observe(d.as_secs_f64());
    }

    pub fn ratelimit_wait(&self, provider: ProviderName, limit: &'static str) {
        self.rl_waits.get_or_create(&WaitLabels { provider: provider.as_str(), limit }).inc();
    }

    /// A job moved on from a leg of `from` (that ended with `class`) to a leg of `to`.
    pub fn fallback(&self, from: ProviderName, to: ProviderName, class: &ErrorClass) {
        let labels = FallbackLabels { from: from.as_str(), to: to.as_str(), class: class.as_str().to_string() };
        self.fallbacks.get_or_create(&labels).inc();
    }

    pub fn cooldown_started(&self, provider: ProviderName) {
        self.cooldowns.get_or_create(&ProviderLabels { provider: provider.as_str() }).inc();
    }

    pub fn cooldown_skip(&self, provider: ProviderName) {
        self.cooldown_skips.get_or_create(&ProviderLabels { provider: provider.as_str() }).inc();
    }

    /// One more job held; the count drops when the guard does.
    pub fn holding(&self) -> HeldJob<'_> {
        self.in_flight.inc();
        HeldJob(self)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.redis_up_gauge.set(i64::from(self.redis_up.load(Ordering::Relaxed)));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// A job counted in `aijob_fetcher_in_flight` while it lives.
pub struct HeldJob<'a>(&'a Metrics);

impl Drop for HeldJob<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        let failed = Outcome::Failed(ErrorClass::Status(StatusCode::BAD_REQUEST));
        m.job("q\"1", Some(ProviderName::Gemini), &failed);
        m.job("q\"1", Some(ProviderName::Gemini), &failed);
        m.job("q", None, &Outcome::Done);
        m.claimed("q", 3);
        m.call(ProviderName::Gemini, Duration::from_millis(300));
        m.ratelimit_wait(ProviderName::Gemini, "rpm");
        m.fallback(ProviderName::Gemini, ProviderName::OpenAi, &ErrorClass::Status(StatusCode::SERVICE_UNAVAILABLE));
        m.fallback(ProviderName::Gemini, ProviderName::Echo, &ErrorClass::Cooldown);
        m.cooldown_started(ProviderName::Gemini);
        m.cooldown_skip(ProviderName::Gemini);
        m.cooldown_skip(ProviderName::Gemini);
        m.job("q", Some(ProviderName::Gemini), &Outcome::Deferred(ErrorClass::Cooldown));
        let (_a, _b) = (m.holding(), m.holding());
        {
            let _c = m.holding();
        }
        let t = m.render();
        for want in [
            "aijob_fetcher_jobs_total{queue=\"q\\\"1\",provider=\"gemini\",outcome=\"failed\",class=\"400\"} 2",
            "aijob_fetcher_jobs_total{queue=\"q\",provider=\"unknown\",outcome=\"done\",class=\"\"} 1",
            "aijob_fetcher_claims_total{queue=\"q\"} 3",
            "# TYPE aijob_fetcher_call_seconds histogram",
            "aijob_fetcher_call_seconds_bucket{provider=\"gemini\",le=\"0.25\"} 0",
            "aijob_fetcher_call_seconds_bucket{provider=\"gemini\",le=\"0.5\"} 1",
            "aijob_fetcher_call_seconds_bucket{provider=\"gemini\",le=\"+Inf\"} 1",
            "aijob_fetcher_call_seconds_count{provider=\"gemini\"} 1",
            "aijob_fetcher_in_flight 2",
            "aijob_fetcher_ratelimit_waits_total{provider=\"gemini\",limit=\"rpm\"} 1",
            "aijob_fetcher_redis_up 0",
            "aijob_fetcher_fallbacks_total{from=\"gemini\",to=\"openai\",class=\"503\"} 1",
            "aijob_fetcher_fallbacks_total{from=\"gemini\",to=\"echo\",class=\"cooldown\"} 1",
            "aijob_fetcher_cooldowns_total{provider=\"gemini\"} 1",
            "aijob_fetcher_cooldown_skips_total{provider=\"gemini\"} 2",
            "aijob_fetcher_jobs_total{queue=\"q\",provider=\"gemini\",outcome=\"deferred\",class=\"cooldown\"} 1",
        ] {
            assert!(t.contains(want), "{want} not in:\n{t}");
        }
        m.redis_up.store(true, Ordering::Relaxed);
        assert!(m.render().contains("aijob_fetcher_redis_up 1"));
    }
}
