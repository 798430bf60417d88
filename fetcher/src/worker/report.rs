//! Reporting an attempt's end to Redis: the final JOB.UPDATE (or JOB.RELEASE on shutdown),
//! sent until it lands or Redis answers that it never will, and the [`Outcome`] it came to.

use std::time::Duration;

use tracing::{info, warn};

use crate::fallback::{self, End, Tried};
use crate::outcome::{LostReason, Outcome, Refusal};
use crate::providers::{Call, ErrorClass, Failure, Plan, ProviderName, Success};
use crate::rconn::{self, Backoff, Record};

use super::commands;
use super::job::Job;
use super::shared::Shared;

/// What a command on a held job came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Landed {
    /// The reply: the job's new status.
    Status(String),
    /// The reply of a final update with NEXT: the job's new status and the records of the
    /// jobs claimed after it.
    Next(String, Vec<Record>),
    /// Redis refused it for good; the text of the error.
    Refused(Refusal, String),
    /// Shutdown's last deadline passed before Redis answered.
    GaveUp,
}

/// Sends `cmd` until it lands or Redis refuses it for good; a lost link, or a full server
/// (`OOM`: it keeps the lease of a refused report), is retried with backoff (100 ms
/// doubling to 1 s: a restarted Redis should get the result before its timer expires the
/// lease) until the shutdown's last deadline.
pub async fn until_landed(sh: &Shared, job: &Job, what: &str, cmd: &redis::Cmd) -> Landed {
    let mut backoff = Backoff::new(Duration::from_secs(1));
    let mut failed_before = false;
    loop {
        let e = match sh.redis.query(cmd).await {
            Ok(v) => {
                if failed_before {
                    info!(queue = %job.queue, id = %job.id, what, "landed after reconnecting");
                }
                return landed(&v);
            }
            Err(e) if !sends_again(&e) => return refused(job, what, &e, failed_before),
            Err(e) => e,
        };
        let wait = backoff.next_delay();
        let why = if rconn::is_transport(&e) { "Redis unreachable" } else { "Redis is out of memory" };
        warn!(queue = %job.queue, id = %job.id, what, error = %rconn::describe(&e), retry_in_ms = wait.as_millis() as u64, "{why}; retrying");
        failed_before = true;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = sh.hard.cancelled() => return Landed::GaveUp,
        }
    }
}

/// A reply as landed: a status, or NEXT's `[status, jobs]`.
pub fn landed(v: &redis::Value) -> Landed {
    match v {
        redis::Value::Array(items) if items.len() == 2 => {
            let status = items.first().and_then(rconn::as_string).unwrap_or_default();
            Landed::Next(status, items.get(1).map(rconn::records).unwrap_or_default())
        }
        v => Landed::Status(rconn::as_string(v).unwrap_or_default()),
    }
}

/// A lost link, or a server over `maxmemory` that refused the report and kept its lease.
fn sends_again(e: &redis::RedisError) -> bool {
    rconn::is_transport(e) || rconn::code(e) == Some("OOM")
}

fn refused(job: &Job, what: &str, e: &redis::RedisError, failed_before: bool) -> Landed {
    let refusal = Refusal::from_code(rconn::code(e).unwrap_or("ERR"));
    if failed_before && matches!(refusal, Refusal::LeaseLost | Refusal::BadState) {
        // An earlier try may have landed before the link broke.
        info!(queue = %job.queue, id = %job.id, what, code = refusal.as_str(), "refused after a reconnect: an earlier try may have landed");
    }
    Landed::Refused(refusal, rconn::describe(e))
}

/// What an attempt came to, for the metrics and the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    /// The job's status after the final command, when Redis answered one.
    pub status: Option<String>,
    /// The error text of a failed call or a refused command.
    pub error: Option<String>,
    /// The provider and model that answered, when a fallback did.
    pub answered_by: Option<String>,
    /// The job the final update claimed next (JOB.UPDATE ... NEXT), for this task to run.
    pub next: Option<Job>,
}

impl Report {
    pub fn of(outcome: Outcome) -> Report {
        Report { outcome, status: None, error: None, answered_by: None, next: None }
    }
}

/// The final update of `job`, with NEXT when the task may go on to the queue's next job.
fn final_update(sh: &Shared, job: &Job, cmd: redis::Cmd) -> (redis::Cmd, Option<ProviderName>) {
    if !sh.may_take_next(&job.queue) {
        return (cmd, None);
    }
    let plan = sh.limits.charge_plan(&job.queue);
    let ask = commands::NextAsk { worker: &sh.cfg.worker, lease_ms: sh.lease_ms };
    (commands::then_next(cmd, ask, plan.as_ref()), plan.map(|p| p.provider))
}

/// The job NEXT handed back (COUNT 1: one at most), counted as claimed.
fn next_job(sh: &Shared, queue: &str, landed: &Landed, charged: Option<ProviderName>) -> Option<Job> {
    let Landed::Next(_, records) = landed else { return None };
    let job = records.first().and_then(|r| Job::from_record(queue, r, charged))?;
    sh.metrics.claimed(queue, 1);
    Some(job)
}

/// The final update of an attempt's calls, and what it came to.
pub async fn finish(sh: &Shared, job: &Job, plan: Option<&Plan>, end: End) -> Report {
    let f = match end {
        End::Answered { leg, success, tried } => match plan.and_then(|p| p.legs.get(leg)) {
            Some(call) => match report_done(sh, job, call, &success, &tried).await {
                Ok(report) => return report,
                Err(f) => f,
            },
            None => Failure::fatal(ErrorClass::Payload, "the payload could not be read"),
        },
        End::Failed(failure) => failure,
        End::Cooled { delay_ms } => return defer(sh, job, delay_ms).await,
        End::Lost(refusal) => return Report::of(Outcome::Lost(LostReason::Refused(refusal))),
    };
    let f = Failure { message: sh.redactor.scrub(&f.message), ..f };
    let (cmd, charged) = final_update(sh, job, commands::error(job, &f, &sh.redactor));
    let landed = until_landed(sh, job, "final update", &cmd).await;
    let next = next_job(sh, &job.queue, &landed, charged);
    Report { next, ..after_error(landed, f) }
}

/// Stores the result. A result too big to store is the failure to report instead.
async fn report_done(sh: &Shared, job: &Job, call: &Call, s: &Success, tried: &[Tried]) -> Result<Report, Failure> {
    let result = sh.redactor.scrub_json(fallback::result_json(call, s, tried)).to_string();
    let charges = sh.limits.settle_keys(&job.queue, job.charged);
    let done = commands::done(job, &result, sh.limits.settle_usage(&s.usage), &charges);
    let (cmd, charged) = final_update(sh, job, done);
    match until_landed(sh, job, "final update", &cmd).await {
        Landed::Refused(Refusal::TooBig, detail) => {
            Err(Failure::fatal(ErrorClass::TooBig, format!("the result could not be stored: {detail}")))
        }
        landed => {
            let next = next_job(sh, &job.queue, &landed, charged);
            let mut report = Report { next, ..after_done(landed) };
            if !tried.is_empty() {
                let model = call.model.as_deref().map(|m| format!(" {m}")).unwrap_or_default();
                report.answered_by = Some(format!("{}{model}", call.provider));
            }
            Ok(report)
        }
    }
}

/// Every provider of the plan is cooled down and nothing was called: the job goes back to
/// its queue until the first cooldown ends, and the attempt does not count.
async fn defer(sh: &Shared, job: &Job, delay_ms: u64) -> Report {
    let outcome = Outcome::Deferred(ErrorClass::Cooldown);
    match until_landed(sh, job, "release", &commands::release_for(job, delay_ms)).await {
        Landed::Status(st) | Landed::Next(st, _) => {
            info!(queue = %job.queue, id = %job.id, delay_ms, "every provider is cooled down; given back");
            Report { status: Some(st), ..Report::of(outcome) }
        }
        other => lost(other),
    }
}

/// What the final update of a result came to.
pub fn after_done(landed: Landed) -> Report {
    match landed {
        Landed::Status(st) | Landed::Next(st, _) => Report { status: Some(st), ..Report::of(Outcome::Done) },
        other => lost(other),
    }
}

/// What the final update of an error came to: `error` status ends the job, any other
/// (queued, delayed) is a retry.
pub fn after_error(landed: Landed, f: Failure) -> Report {
    match landed {
        Landed::Status(st) | Landed::Next(st, _) => {
            let outcome = if st == "error" { Outcome::Failed(f.class) } else { Outcome::Retry(f.class) };
            Report { status: Some(st), error: Some(f.message), ..Report::of(outcome) }
        }
        other => lost(other),
    }
}

fn lost(landed: Landed) -> Report {
    let (why, error) = match landed {
        Landed::Refused(r, detail) => (LostReason::Refused(r), detail),
        Landed::GaveUp => (LostReason::Unreachable, "Redis stayed unreachable through the shutdown".into()),
        Landed::Status(st) | Landed::Next(st, _) => return Report { status: Some(st), ..Report::of(Outcome::Done) },
    };
    Report { error: Some(error), ..Report::of(Outcome::Lost(why)) }
}

/// Gives a job back without counting the attempt: released, or lost when it did not land.
pub async fn release(sh: &Shared, job: &Job) -> Report {
    match until_landed(sh, job, "release", &commands::release(job)).await {
        Landed::Status(st) | Landed::Next(st, _) => {
            info!(queue = %job.queue, id = %job.id, "released");
            Report { status: Some(st), ..Report::of(Outcome::Released) }
        }
        Landed::Refused(r, _) => {
            info!(queue = %job.queue, id = %job.id, code = r.as_str(), "release refused");
            Report::of(Outcome::Lost(LostReason::ReleaseFailed))
        }
        Landed::GaveUp => {
            warn!(queue = %job.queue, id = %job.id, "release never landed; the lease will expire");
            Report::of(Outcome::Lost(LostReason::ReleaseFailed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error reply as the client reads it off the wire.
    fn server_error(line: &str) -> redis::RedisError {
        let value = redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap();
        value.extract_error().unwrap_err()
    }

    #[test]
    fn a_report_refused_by_a_full_server_is_sent_again() {
        assert!(sends_again(&server_error("OOM command not allowed when used memory > 'maxmemory'.")));
        assert!(sends_again(&redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "r"))));
        for final_reply in ["LEASELOST the token", "CANCELED the job", "TOOBIG RESULT", "ERR bad"] {
            assert!(!sends_again(&server_error(final_reply)), "{final_reply}");
        }
    }

    #[test]
    fn a_stored_error_is_a_retry_unless_it_ended_the_job() {
        let f = Failure::retry(ErrorClass::Timeout, "slow");
        let r = after_error(Landed::Status("error".into()), f.clone());
        assert_eq!(
            (r.outcome, r.status.as_deref(), r.error.as_deref()),
            (Outcome::Failed(f.class), Some("error"), Some("slow"))
        );
        assert_eq!(after_error(Landed::Status("queued".into()), f.clone()).outcome, Outcome::Retry(f.class));
        assert_eq!(after_error(Landed::Status("delayed".into()), f.clone()).outcome, Outcome::Retry(f.class));
        let lost = after_error(Landed::Refused(Refusal::LeaseLost, "LEASELOST x".into()), f.clone());
        assert_eq!(
            (lost.outcome.as_str(), lost.outcome.class(), lost.error.as_deref()),
            ("lost", "leaselost", Some("LEASELOST x"))
        );
        assert_eq!(after_error(Landed::GaveUp, f).outcome, Outcome::Lost(LostReason::Unreachable));
    }

    #[test]
    fn a_result_lands_or_is_lost_with_the_reason() {
        let r = after_done(Landed::Status("done".into()));
        assert_eq!((r.outcome, r.status.as_deref(), r.error), (Outcome::Done, Some("done"), None));
        let r = after_done(Landed::Refused(Refusal::Canceled, "CANCELED the job".into()));
        assert_eq!((r.outcome.class(), r.error.as_deref()), ("canceled", Some("CANCELED the job")));
        assert_eq!(after_done(Landed::GaveUp).outcome.class(), "unreachable");
    }
}
