//! JOB.UPDATE and JOB.RELEASE: the moves a worker makes, fenced by its lease token.

use crate::args::{UpdateArgs, UpdateStatus};
use crate::backoff;
use crate::error::{AiError, Code, Result};
use crate::job::{transition, Status, Trigger};
use crate::keys::QueueKeys;
use crate::queue::cache;
use crate::queue::tx::{expire_at, load_job, meta, Env, Tally, Tx};
use crate::record::{self, JobState};
use crate::store::{Score, Store};

fn n(v: i64) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// Loads a job a worker is about to move: NOTFOUND, CANCELED and the token rule.
fn load_for_worker<S: Store>(s: &mut S, q: &QueueKeys, id: &[u8], token: Option<&[u8]>) -> Result<JobState> {
    let job = load_job(s, q, id)?
        .ok_or_else(|| AiError::not_found(format!("no job {} in queue", String::from_utf8_lossy(id))))?;
    if job.status == Status::Canceled {
        return Err(AiError::new(Code::Canceled, "the job was canceled: stop working on it"));
    }
    let leased = job.status == Status::Running && job.token.is_some();
    let matches = token.is_some() && token == job.token.as_deref();
    if (leased || token.is_some()) && !matches {
        return Err(AiError::new(Code::LeaseLost, "the token does not hold the job's current lease"));
    }
    Ok(job)
}

/// JOB.UPDATE: returns the job's new status.
pub fn update<S: Store>(s: &mut S, q: &QueueKeys, env: &mut Env, id: &[u8], a: &UpdateArgs) -> Result<(Status, Tally)> {
    let job = load_for_worker(s, q, id, a.token.as_deref())?;
    let retry_left = job.attempts < job.max_attempts && !a.noretry;
    let trigger = match a.status {
        None => Trigger::Progress,
        Some(UpdateStatus::Running) => Trigger::Start,
        Some(UpdateStatus::Done) => Trigger::Done,
        Some(UpdateStatus::Error) if retry_left => Trigger::Backoff,
        Some(UpdateStatus::Error) => Trigger::Fail,
    };
    let to = transition(job.status, trigger)?;
    let mut tx = Tx::new(s, q, env.now, env.config);
    let mut job = job;
    let mut fields = progress_fields(&mut job, a, env.now);
    match trigger {
        Trigger::Progress => {
            if job.token.is_some() {
                let lease_ms = a.lease_ms.unwrap_or(job.lease_ms);
                let until = env.now.saturating_add(lease_ms);
                fields.push(("lease_until", n(until)));
                tx.push(crate::store::Op::ZAdd(q.leases(), Score::At(until), job.id.clone()));
            }
            tx.hset(id, fields);
            // a bare heartbeat changes nothing a subscriber sees: no event for it
            if a.progress.is_some() || a.percent.is_some() || a.meta.is_some() {
                tx.event(&job, "progress", to, &[]);
            }
        }
        Trigger::Start => {
            tx.unplace(&job, job.status, false)?;
            fields.extend([
                ("status", to.as_str().as_bytes().to_vec()),
                ("attempts", n(job.attempts + 1)),
                ("started_at", n(env.now)),
            ]);
            tx.hdel(id, &["lease_until", record::TOKEN, "worker"]);
            tx.hset(id, fields);
            tx.place(&job, to, Score::Inf)?;
            tx.event(&job, "running", to, &[]);
        }
        Trigger::Done => {
            let result = a.result.clone().unwrap_or_default();
            fields.push(("result", result.clone()));
            settle_usage(&mut fields, a);
            settle_charges(&mut tx, &job, a)?;
            finish(&mut tx, &job, to, fields)?;
            if let Some(h) = &job.hash {
                let ttl = job.cache_ttl_ms.unwrap_or(tx.config.cache_ttl_ms);
                cache::write_entry(&mut tx, h, &result, ttl)?;
            }
            tx.incr_meta(meta::COMPLETED, 1)?;
            tx.tally.completed += 1;
            done_event(&mut tx, &job, to, &result);
        }
        Trigger::Backoff => {
            let delay = a.delay_ms.unwrap_or_else(|| {
                let c = &tx.config;
                backoff::delay(job.attempts, c.backoff_base_ms, c.backoff_max_ms, env.entropy.next_u64())
            });
            let run_at = env.now.saturating_add(delay);
            tx.unplace(&job, job.status, false)?;
            fields.extend(error_fields(a));
            fields.extend([("status", to.as_str().as_bytes().to_vec()), ("run_at", n(run_at))]);
            settle_usage(&mut fields, a);
            settle_charges(&mut tx, &job, a)?;
            tx.hdel(id, &["lease_until", record::TOKEN]);
            tx.hset(id, fields);
            tx.place(&job, to, Score::At(run_at))?;
            tx.incr_meta(meta::RETRIED, 1)?;
            tx.tally.retried += 1;
            let err = a.error.clone().unwrap_or_default();
            tx.event(&job, "retrying", to, &[("error", &err, false)]);
        }
        Trigger::Fail => {
            fields.extend(error_fields(a));
            settle_usage(&mut fields, a);
            settle_charges(&mut tx, &job, a)?;
            finish(&mut tx, &job, to, fields)?;
            fail_tally(&mut tx)?;
            let err = a.error.clone().unwrap_or_default();
            tx.event(&job, "error", to, &[("error", &err, false)]);
        }
        _ => return Err(crate::job::bad_state(job.status, trigger)),
    }
    Ok((to, tx.commit()?))
}

/// PROGRESS, PERCENT and META go with any update; `job` takes them for the event.
fn progress_fields(job: &mut JobState, a: &UpdateArgs, now: i64) -> Vec<(&'static str, Vec<u8>)> {
    let mut f = vec![("updated_at", n(now))];
    if let Some(p) = &a.progress {
        f.push(("progress", p.clone()));
        job.progress = Some(p.clone());
    }
    if let Some(p) = a.percent {
        f.push(("percent", n(p)));
        job.percent = p;
    }
    if let Some(m) = &a.meta {
        f.push(("meta", m.clone()));
    }
    f
}

fn error_fields(a: &UpdateArgs) -> Vec<(&'static str, Vec<u8>)> {
    let mut f = vec![("error", a.error.clone().unwrap_or_default())];
    if let Some(c) = &a.class {
        f.push(("error_class", c.clone()));
    }
    f
}

fn settle_usage(fields: &mut Vec<(&'static str, Vec<u8>)>, a: &UpdateArgs) {
    if let Some(u) = a.usage {
        fields.push(("usage", n(u)));
    }
}

/// USAGE moves the job's COST charges to what it really used.
fn settle_charges<S: Store>(tx: &mut Tx<S>, job: &JobState, a: &UpdateArgs) -> Result<()> {
    if let Some(u) = a.usage {
        tx.tally.usage_settled += crate::queue::charge::settle(tx, job, u)?;
    }
    Ok(())
}

pub fn fail_tally<S: Store>(tx: &mut Tx<S>) -> Result<()> {
    tx.incr_meta(meta::FAILED, 1)?;
    tx.tally.failed += 1;
    Ok(())
}

/// Ends a live job in `to` (done, error, canceled): out of its indexes, retained for its
/// retention, its content hash freed.
pub fn finish<S: Store>(
    tx: &mut Tx<S>,
    job: &JobState,
    to: Status,
    mut fields: Vec<(&'static str, Vec<u8>)>,
) -> Result<()> {
    let now = tx.now;
    tx.unplace(job, job.status, false)?;
    let until = expire_at(job, now, &tx.config);
    fields.extend([
        ("status", to.as_str().as_bytes().to_vec()),
        ("finished_at", n(now)),
        ("updated_at", n(now)),
        (record::EXPIRE_AT, n(until)),
    ]);
    // a finished job keeps no lease: a late worker's update is LEASELOST
    tx.hdel(&job.id, &["lease_until", record::TOKEN, record::LEASE_MS]);
    tx.hset(&job.id, fields);
    tx.place(job, to, Score::At(until))?;
    if let Some(h) = &job.hash {
        cache::release_hash(tx, h, &job.id)?;
    }
    Ok(())
}

/// Puts a running job back: queued now, or delayed until `run_at`. Clears the lease.
pub fn requeue<S: Store>(tx: &mut Tx<S>, job: &JobState, to: Status, run_at: i64, attempts: i64) -> Result<()> {
    tx.unplace(job, job.status, false)?;
    let mut fields =
        vec![("status", to.as_str().as_bytes().to_vec()), ("attempts", n(attempts)), ("updated_at", n(tx.now))];
    if to == Status::Delayed {
        fields.push(("run_at", n(run_at)));
    }
    tx.hdel(&job.id, &["lease_until", record::TOKEN, "worker"]);
    tx.hset(&job.id, fields);
    tx.place(job, to, Score::At(run_at))?;
    tx.event(job, to.as_str(), to, &[]);
    if to == Status::Queued {
        tx.wake_claimers();
    }
    Ok(())
}

/// JOB.RELEASE: the worker gives the job back; the attempt does not count.
pub fn release<S: Store>(
    s: &mut S,
    q: &QueueKeys,
    env: &mut Env,
    id: &[u8],
    token: &[u8],
    delay_ms: Option<i64>,
) -> Result<(Status, Tally)> {
    let job = load_for_worker(s, q, id, Some(token))?;
    let trigger = match delay_ms {
        Some(d) if d > 0 => Trigger::ReleaseDelayed,
        _ => Trigger::Release,
    };
    let to = transition(job.status, trigger)?;
    let run_at = env.now.saturating_add(delay_ms.unwrap_or(0));
    let mut tx = Tx::new(s, q, env.now, env.config);
    requeue(&mut tx, &job, to, run_at, (job.attempts - 1).max(0))?;
    Ok((to, tx.commit()?))
}

/// The done event carries the result's size, and the result itself only up to
/// `event-result-max-bytes`: a large result is published once per subscriber and kept in
/// the events stream, so past that size readers fetch it with JOB.GET.
fn done_event<S: Store>(tx: &mut Tx<S>, job: &JobState, to: Status, result: &[u8]) {
    let size = result.len().to_string();
    let inline = i64::try_from(result.len()).is_ok_and(|n| n <= tx.config.event_result_max_bytes);
    let mut extra = vec![("result_bytes", size.as_bytes(), true)];
    if inline {
        extra.push(("result", result, true));
    }
    tx.event(job, "done", to, &extra);
}
