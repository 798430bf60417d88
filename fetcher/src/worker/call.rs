//! One attempt's calls: the legs of the job's plan (its provider, then its fallbacks; see
//! `fallback.rs` for when a failure moves on), each after its cooldown check and its
//! budgets, bounded by --timeout and timed for the latency histogram.
//!
//! Budgets apply to the provider actually called. A charged claim took the budgets of the
//! provider its queue is bound to, for one call: the first leg to that provider uses it;
//! every other leg (another provider, or that provider again) takes its own provider's
//! budgets per call (RATELIMIT.HIT) before it calls. A skipped (cooled) leg takes none.
//!
//! A payload that asks for a stream (`"stream": true`) has every leg called in streaming
//! mode (`stream.rs`): its text is appended to the job's output stream as it arrives.

use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, info, warn};

use crate::fallback::{self, End, Next, Tried};
use crate::providers::{self, Call, ErrorClass, Failure, Plan, Provider, ProviderName, Success};
use crate::rconn;

use super::commands;
use super::job::Job;
use super::shared::Shared;
use super::stream::{self, Output, Stop};

/// Runs the plan (when the payload was readable). Returns it and how its legs ended.
pub async fn execute(sh: &Shared, parsed: Result<Plan, Failure>, job: &Job) -> (Option<Plan>, End) {
    match parsed {
        Ok(plan) => {
            let end = run_plan(sh, &plan, job).await;
            (Some(plan), end)
        }
        Err(f) => (None, End::Failed(f)),
    }
}

async fn run_plan(sh: &Shared, plan: &Plan, job: &Job) -> End {
    let providers: Vec<ProviderName> = plan.legs.iter().map(|l| l.provider).collect();
    let per_call = charged_per_call(job.charged, &providers);
    let mut tried: Vec<Tried> = Vec::new();
    let mut last_call: Option<Failure> = None;
    let mut cooled_ms: Option<u64> = None;
    let mut output = plan.primary().is_some_and(providers::wants_stream).then(Output::default);
    for (i, (leg, per_call)) in plan.legs.iter().zip(per_call).enumerate() {
        let before = i.checked_sub(1).and_then(|p| plan.legs.get(p)).zip(tried.last().cloned());
        if let Some((prev, left)) = &before {
            sh.metrics.fallback(prev.provider, leg.provider, &left.class);
        }
        if let Some(ms) = sh.breaker.cooled(leg.provider).await {
            debug!(queue = %job.queue, id = %job.id, provider = %leg.provider, left_ms = ms, "cooled down: not called");
            tried.push(Tried::cooled(leg, ms));
            cooled_ms = Some(cooled_ms.map_or(ms, |c| c.min(ms)));
            continue;
        }
        if let Some((prev, left)) = &before {
            begin_fallback(sh, job, i, prev, leg, left).await;
        }
        let f = match call_leg(sh, leg, i, job, per_call, output.as_mut()).await {
            Ok(success) => return End::Answered { leg: i, success, tried },
            Err(Stop::Lost(refusal)) => return End::Lost(refusal),
            Err(Stop::Failed(f)) => f,
        };
        if f.class.is_provider_failure() {
            sh.breaker.failed(leg.provider).await;
        }
        tried.push(Tried::failed(leg, &f));
        let next = fallback::after_failure(&f, sh.cfg.fallback_429_wait_ms);
        last_call = Some(f);
        if next == Next::Stop {
            break;
        }
    }
    match last_call {
        Some(f) => End::Failed(fallback::reported(f, &tried)),
        None => End::Cooled { delay_ms: cooled_ms.unwrap_or(1) },
    }
}

/// Leg `index` is about to be called after leg `index - 1` (`prev`, which ended as `left`
/// says): logged, and told to subscribers with a PROGRESS update.
///
/// Streaming: a leg that streams appends its output to the job's stream as it arrives, so a
/// fallback after output has begun puts an attempt boundary before its own first chunk:
/// that append carries RESTART ([`Output::begin_leg`], in `stream.rs`; an attempt entry
/// cannot be appended alone), and readers see the earlier text end and the new one start,
/// never one text made of two models' output.
async fn begin_fallback(sh: &Shared, job: &Job, index: usize, prev: &Call, leg: &Call, left: &Tried) {
    let (class, provider, model) = (left.class.as_str(), leg.provider, leg.model.as_deref().unwrap_or(""));
    info!(queue = %job.queue, id = %job.id, from = %prev.provider, class, to = %provider, model, leg = index, "falling back");
    let text = commands::fallback_text(index, prev.provider, &left.class, provider, leg.model.as_deref());
    if let Err(e) = sh.redis.query(&commands::progress(job, &text)).await {
        debug!(queue = %job.queue, id = %job.id, error = %rconn::describe(&e), "progress update not taken");
    }
}

/// Leg `index`: the provider this fetcher has for it, its budgets when the claim's charge
/// does not cover it, then the call (streamed into `output` when the job streams).
async fn call_leg(
    sh: &Shared,
    leg: &Call,
    index: usize,
    job: &Job,
    per_call: bool,
    output: Option<&mut Output>,
) -> Result<Success, Stop> {
    let provider = sh.providers.get(leg.provider)?;
    if per_call {
        if let (0, Some(bound)) = (index, job.charged) {
            warn!(queue = %job.queue, id = %job.id, %bound, provider = %leg.provider, "the job names another provider than its queue's --queue-provider: charged per call too");
        }
        sh.limits.acquire(&job.queue, leg.provider, job.cost).await?;
    }
    match output {
        Some(out) => stream::call(sh, job, leg, provider, out).await,
        None => Ok(timed_call(sh, leg, provider).await?),
    }
}

async fn timed_call(sh: &Shared, call: &Call, provider: Arc<dyn Provider>) -> Result<Success, Failure> {
    let t = Instant::now();
    let r = match tokio::time::timeout(sh.cfg.timeout, provider.call(call)).await {
        Ok(r) => r,
        Err(_) => Err(Failure::retry(ErrorClass::Timeout, "the provider did not answer within the timeout")),
    };
    sh.metrics.call(call.provider, t.elapsed());
    r
}

/// Which legs take their budgets per call: all but the first leg to the provider whose
/// budgets the claim charged (that charge is for one call).
pub fn charged_per_call(charged: Option<ProviderName>, legs: &[ProviderName]) -> Vec<bool> {
    let mut covers = charged;
    legs.iter()
        .map(|p| {
            let covered = covers == Some(*p);
            if covered {
                covers = None;
            }
            !covered
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProviderName::{Gemini, OpenAi};

    #[test]
    fn the_claims_charge_covers_one_call_to_its_provider() {
        assert_eq!(charged_per_call(Some(Gemini), &[Gemini]), [false]);
        assert_eq!(charged_per_call(Some(Gemini), &[OpenAi]), [true]);
        assert_eq!(charged_per_call(None, &[Gemini]), [true]);
        assert_eq!(charged_per_call(Some(Gemini), &[Gemini, OpenAi, Gemini]), [false, true, true]);
        assert_eq!(charged_per_call(Some(Gemini), &[OpenAi, Gemini]), [true, false]);
    }
}
