//! One job's task: the call with heartbeats beside it, then the report and the log line.
//!
//! A heartbeat (`JOB.UPDATE q id TOKEN t` every lease/3) keeps the lease while the call runs;
//! when Redis answers that the job is no longer ours (LEASELOST, CANCELED, NOTFOUND,
//! BADSTATE) the call is dropped and nothing is written. When the shutdown's grace is over
//! the call is dropped and the job given back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, info, warn};

use crate::fallback::End;
use crate::outcome::{LostReason, Outcome, Refusal};
use crate::placeholders;
use crate::providers::{self, Failure, Plan, ProviderName};
use crate::rconn;

use super::job::Job;
use super::report::{self, Report};
use super::shared::Shared;
use super::{call, commands, inputs};

/// Runs one claimed job to its end, then the job its final update claimed next, if any
/// (JOB.UPDATE ... NEXT), and so on. The permit is its slot among --concurrency, held
/// throughout.
pub async fn run_job(sh: Arc<Shared>, job: Job, _permit: OwnedSemaphorePermit) {
    let mut job = Some(job);
    while let Some(j) = job.take() {
        job = run_one(&sh, j).await;
        if let Some(next) = job.take_if(|_| sh.stop_claims.is_cancelled()) {
            info!(queue = %next.queue, id = %next.id, "claimed while shutting down; giving it back");
            report::release(&sh, &next).await;
        }
    }
}

/// One job's call and report; the next job when the final update claimed one.
async fn run_one(sh: &Shared, mut job: Job) -> Option<Job> {
    let _held = sh.metrics.holding();
    let started = Instant::now();
    let parsed = providers::parse_plan(&job.payload, &sh.cfg.fallback);
    let (provider, model) = match parsed.as_ref().ok().and_then(|p| p.primary()) {
        Some(c) => (Some(c.provider), c.model.clone()),
        None => (None, None),
    };
    let parsed = match parsed {
        Ok(plan) => inputs::read_left_out(sh, &mut job, &plan).await.map(|()| plan),
        Err(f) => Err(f),
    };
    let parsed = parsed.and_then(|plan| placeholders::fill_plan(plan, &job.inputs));
    announce(sh, &job, &commands::announce_text(provider, model.as_deref())).await;
    let mut report = hold(sh, &job, parsed).await;
    sh.metrics.job(&job.queue, provider, &report.outcome);
    log_end(&job, provider, model.as_deref(), &report, started.elapsed());
    report.next.take()
}

enum Step {
    Called(Box<(Option<Plan>, End)>),
    Lost(Refusal),
    Aborted,
}

/// The call while heartbeats keep the lease, then the report of how it ended.
async fn hold(sh: &Shared, job: &Job, parsed: Result<Plan, Failure>) -> Report {
    let step = tokio::select! {
        r = call::execute(sh, parsed, job) => Step::Called(Box::new(r)),
        refusal = heartbeat(sh, job) => Step::Lost(refusal),
        _ = sh.abort.cancelled() => Step::Aborted,
    };
    match step {
        Step::Called(b) => {
            let (plan, end) = *b;
            report::finish(sh, job, plan.as_ref(), end).await
        }
        Step::Lost(refusal) => Report::of(Outcome::Lost(LostReason::Refused(refusal))),
        Step::Aborted => report::release(sh, job).await,
    }
}

/// One PROGRESS update before the call, so subscribers see what the job is waiting on.
/// A refusal here (lease lost, canceled) is left to the heartbeat to act on.
async fn announce(sh: &Shared, job: &Job, text: &str) {
    if let Err(e) = sh.redis.query(&commands::progress(job, text)).await {
        debug!(queue = %job.queue, id = %job.id, error = %rconn::describe(&e), "progress update not taken");
    }
}

/// How often the lease is extended: lease/3 (at least 20 ms).
pub fn heartbeat_every(lease_ms: u64) -> Duration {
    Duration::from_millis((lease_ms / 3).max(20))
}

/// After a failed heartbeat the next comes sooner: the lease is running out.
pub fn after_failed_heartbeat(every: Duration) -> Duration {
    (every / 3).max(Duration::from_millis(20))
}

/// Heartbeats until Redis refuses one for good; returns that refusal.
async fn heartbeat(sh: &Shared, job: &Job) -> Refusal {
    let every = heartbeat_every(sh.lease_ms);
    let cmd = commands::update(job);
    let mut wait = every;
    loop {
        tokio::time::sleep(wait).await;
        let e = match sh.redis.query(&cmd).await {
            Ok(_) => {
                wait = every;
                continue;
            }
            Err(e) => e,
        };
        let refusal = Refusal::from_code(rconn::code(&e).unwrap_or(""));
        if refusal.ends_the_hold() {
            info!(queue = %job.queue, id = %job.id, reason = refusal.as_str(), "heartbeat refused: dropping the call");
            return refusal;
        }
        warn!(queue = %job.queue, id = %job.id, error = %rconn::describe(&e), "heartbeat failed; retrying");
        wait = after_failed_heartbeat(every);
    }
}

/// The one log line of each attempt's end.
fn log_end(job: &Job, provider: Option<ProviderName>, model: Option<&str>, r: &Report, took: Duration) {
    let (outcome, class) = (r.outcome.as_str(), r.outcome.class());
    let (provider, model) = (ProviderName::label(provider), model.unwrap_or(""));
    let (status, ms, attempt) = (r.status.as_deref().unwrap_or(""), took.as_millis() as u64, job.attempts);
    let (queue, id) = (&job.queue, &job.id);
    match (&r.outcome, &r.error) {
        (Outcome::Done, _) => match &r.answered_by {
            Some(by) => {
                info!(%queue, %id, provider, model, attempt, outcome, status, ms, answered_by = %by, "job finished")
            }
            None => info!(%queue, %id, provider, model, attempt, outcome, status, ms, "job finished"),
        },
        (_, Some(error)) => {
            let max_attempts = job.max_attempts;
            warn!(%queue, %id, provider, model, attempt, max_attempts, outcome, class, status, ms, %error, "job finished")
        }
        (_, None) => warn!(%queue, %id, provider, model, attempt, outcome, class, status, ms, "job finished"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_every_third_of_the_lease_and_sooner_after_a_failure() {
        assert_eq!(heartbeat_every(30_000), Duration::from_secs(10));
        assert_eq!(heartbeat_every(30), Duration::from_millis(20));
        assert_eq!(after_failed_heartbeat(Duration::from_secs(9)), Duration::from_secs(3));
        assert_eq!(after_failed_heartbeat(Duration::from_millis(30)), Duration::from_millis(20));
    }
}
