//! JOB.UPDATE and JOB.RELEASE: the moves a worker makes, fenced by its lease token.

use crate::backoff;
use crate::error::Result;
use crate::job::{transition, Status, Trigger};
use crate::keys::QueueKeys;
use crate::queue::fence::load_for_worker;
use crate::queue::tx::{expire_at, meta, Env, Tally, Tx};
use crate::queue::{cache, flow, pending, stream};
use crate::record::{self, JobState};
use crate::store::{Score, Store};

/// The STATUS of JOB.UPDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateStatus {
    Running,
    Done,
    Error,
}

/// What JOB.UPDATE asks for, after Q and the id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpdateArgs {
    pub token: Option<Vec<u8>>,
    pub status: Option<UpdateStatus>,
    pub progress: Option<Vec<u8>>,
    pub percent: Option<i64>,
    pub result: Option<Vec<u8>>,
    pub error: Option<Vec<u8>>,
    pub class: Option<Vec<u8>>,
    pub noretry: bool,
    pub lease_ms: Option<i64>,
    pub meta: Option<Vec<u8>>,
    pub usage: Option<i64>,
    /// The keys named by CHARGE, which the command declares (ACL, cluster routing): the
    /// only rate-limit keys USAGE may settle.
    pub charge_keys: Vec<Vec<u8>>,
    /// With STATUS error: wait exactly this long before the retry instead of the backoff.
    pub delay_ms: Option<i64>,
}

fn n(v: i64) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// The fields a step writes to the record.
pub type Fields = Vec<(&'static str, Vec<u8>)>;

/// JOB.UPDATE: returns the job's new status.
pub fn update<S: Store>(s: &mut S, q: &QueueKeys, env: &mut Env, id: &[u8], a: &UpdateArgs) -> Result<(Status, Tally)> {
    let mut tx = Tx::new(s, q, env.now, env.config);
    let to = update_in(&mut tx, env, id, a)?;
    Ok((to, tx.commit()?))
}

/// JOB.UPDATE's moves, written into `tx` (not committed): JOB.UPDATE ... NEXT goes on to
/// claim in the same step. Returns the job's new status.
pub fn update_in<S: Store>(tx: &mut Tx<S>, env: &mut Env, id: &[u8], a: &UpdateArgs) -> Result<Status> {
    let mut job = load_for_worker(tx.s, tx.q, id, a.token.as_deref())?;
    let trigger = trigger_of(&job, a);
    let to = transition(job.status, trigger)?;
    let fields = progress_fields(&mut job, a, env.now);
    match trigger {
        Trigger::Progress => heartbeat(tx, &job, to, fields, a),
        Trigger::Start => start(tx, &job, to, fields)?,
        Trigger::Done => complete(tx, &job, to, fields, a)?,
        Trigger::Backoff => back_off(tx, env, &job, to, fields, a)?,
        Trigger::Fail => fail(tx, &job, to, fields, a)?,
        _ => return Err(crate::job::bad_state(job.status, trigger)),
    }
    Ok(to)
}

/// The move STATUS asks for; an error retries while attempts are left and NORETRY is not given.
fn trigger_of(job: &JobState, a: &UpdateArgs) -> Trigger {
    let retry_left = job.attempts < job.max_attempts && !a.noretry;
    match a.status {
        None => Trigger::Progress,
        Some(UpdateStatus::Running) => Trigger::Start,
        Some(UpdateStatus::Done) => Trigger::Done,
        Some(UpdateStatus::Error) if retry_left => Trigger::Backoff,
        Some(UpdateStatus::Error) => Trigger::Fail,
    }
}

/// No STATUS: progress and a heartbeat that extends a leased job's lease.
fn heartbeat<S: Store>(tx: &mut Tx<S>, job: &JobState, to: Status, mut fields: Fields, a: &UpdateArgs) {
    if job.token.is_some() {
        let lease_ms = a.lease_ms.unwrap_or(job.lease_ms);
        let until = tx.now.saturating_add(lease_ms);
        fields.push((record::LEASE_UNTIL, n(until)));
        tx.push(crate::store::Op::ZAdd(tx.q.leases(), Score::At(until), job.id.clone()));
    }
    tx.hset(&job.id, fields);
    // a bare heartbeat changes nothing a subscriber sees: no event for it
    if a.progress.is_some() || a.percent.is_some() || a.meta.is_some() {
        tx.event(job, "progress", to, &[]);
    }
}

/// STATUS running without a claim: the job starts, leaseless, an attempt counted.
fn start<S: Store>(tx: &mut Tx<S>, job: &JobState, to: Status, mut fields: Fields) -> Result<()> {
    tx.unplace(job, job.status, false)?;
    fields.extend([
        (record::STATUS, to.as_str().as_bytes().to_vec()),
        (record::ATTEMPTS, n(job.attempts + 1)),
        (record::STARTED_AT, n(tx.now)),
    ]);
    stream::new_attempt(tx, job, job.attempts + 1, &mut fields)?;
    tx.hdel(&job.id, &[record::LEASE_UNTIL, record::TOKEN, record::WORKER]);
    tx.hset(&job.id, fields);
    tx.place(job, to, Score::Inf)?;
    tx.event(job, "running", to, &[]);
    Ok(())
}

/// STATUS done: the result stored (and cached under the job's hash), the job finished.
fn complete<S: Store>(tx: &mut Tx<S>, job: &JobState, to: Status, mut fields: Fields, a: &UpdateArgs) -> Result<()> {
    let result = a.result.clone().unwrap_or_default();
    fields.push((record::RESULT, result.clone()));
    settle_usage(&mut fields, a);
    settle_charges(tx, job, a)?;
    finish(tx, job, to, fields)?;
    if let Some(h) = &job.hash {
        let ttl = job.cache_ttl_ms.unwrap_or(tx.config.cache_ttl_ms);
        cache::write_entry(tx, h, &result, ttl)?;
    }
    tx.incr_meta(meta::COMPLETED, 1)?;
    tx.tally.completed += 1;
    done_event(tx, job, to, &result);
    Ok(())
}

/// STATUS error with attempts left: delayed until DELAY, or the backoff, has passed.
fn back_off<S: Store>(
    tx: &mut Tx<S>,
    env: &mut Env,
    job: &JobState,
    to: Status,
    mut fields: Fields,
    a: &UpdateArgs,
) -> Result<()> {
    let delay = a.delay_ms.unwrap_or_else(|| {
        let c = &tx.config;
        backoff::delay(job.attempts, c.backoff_base_ms, c.backoff_max_ms, env.entropy.next_u64())
    });
    let run_at = tx.now.saturating_add(delay);
    tx.unplace(job, job.status, false)?;
    fields.extend(error_fields(a));
    fields.extend([(record::STATUS, to.as_str().as_bytes().to_vec()), (record::RUN_AT, n(run_at))]);
    settle_usage(&mut fields, a);
    settle_charges(tx, job, a)?;
    tx.hdel(&job.id, &[record::LEASE_UNTIL, record::TOKEN]);
    tx.hset(&job.id, fields);
    tx.place(job, to, Score::At(run_at))?;
    tx.incr_meta(meta::RETRIED, 1)?;
    tx.tally.retried += 1;
    let err = a.error.clone().unwrap_or_default();
    tx.event(job, "retrying", to, &[(record::ERROR, &err, false)]);
    Ok(())
}

/// STATUS error with no attempt left (or NORETRY): the job finishes in error.
fn fail<S: Store>(tx: &mut Tx<S>, job: &JobState, to: Status, mut fields: Fields, a: &UpdateArgs) -> Result<()> {
    fields.extend(error_fields(a));
    settle_usage(&mut fields, a);
    settle_charges(tx, job, a)?;
    finish(tx, job, to, fields)?;
    fail_tally(tx)?;
    let err = a.error.clone().unwrap_or_default();
    tx.event(job, "error", to, &[(record::ERROR, &err, false)]);
    Ok(())
}

/// PROGRESS, PERCENT and META go with any update; `job` takes them for the event.
fn progress_fields(job: &mut JobState, a: &UpdateArgs, now: i64) -> Fields {
    let mut f = vec![(record::UPDATED_AT, n(now))];
    if let Some(p) = &a.progress {
        f.push((record::PROGRESS, p.clone()));
        job.progress = Some(p.clone());
    }
    if let Some(p) = a.percent {
        f.push((record::PERCENT, n(p)));
        job.percent = p;
    }
    if let Some(m) = &a.meta {
        f.push((record::META, m.clone()));
    }
    f
}

fn error_fields(a: &UpdateArgs) -> Fields {
    let mut f = vec![(record::ERROR, a.error.clone().unwrap_or_default())];
    if let Some(c) = &a.class {
        f.push((record::ERROR_CLASS, c.clone()));
    }
    f
}

fn settle_usage(fields: &mut Fields, a: &UpdateArgs) {
    if let Some(u) = a.usage {
        fields.push((record::USAGE, n(u)));
    }
}

/// USAGE moves the job's COST charges on the keys CHARGE names to what it really used;
/// a charge on any other key is left as taken, and counted.
fn settle_charges<S: Store>(tx: &mut Tx<S>, job: &JobState, a: &UpdateArgs) -> Result<()> {
    if let Some(u) = a.usage {
        let s = crate::queue::charge::settle(tx, job, u, &a.charge_keys)?;
        tx.tally.usage_settled += s.settled;
        tx.tally.usage_unsettled += s.left;
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
pub fn finish<S: Store>(tx: &mut Tx<S>, job: &JobState, to: Status, mut fields: Fields) -> Result<()> {
    let now = tx.now;
    tx.unplace(job, job.status, false)?;
    let until = expire_at(job, now, &tx.config);
    fields.extend([
        (record::STATUS, to.as_str().as_bytes().to_vec()),
        (record::FINISHED_AT, n(now)),
        (record::UPDATED_AT, n(now)),
        (record::EXPIRE_AT, n(until)),
    ]);
    stream::finished(tx, job, to, until)?;
    // a finished job keeps no lease: a late worker's update is LEASELOST
    tx.hdel(&job.id, &[record::LEASE_UNTIL, record::TOKEN, record::LEASE_MS]);
    tx.hset(&job.id, fields);
    // its dependents move in this step; it is kept while any of them has not ended
    let score = flow::ended(tx, job, job.status, to, until)?;
    tx.place(job, to, score)?;
    if let Some(h) = &job.hash {
        pending::release_hash(tx, h, &job.id)?;
    }
    Ok(())
}

/// Puts a running job back: queued now, or delayed until `run_at`. Clears the lease.
pub fn requeue<S: Store>(tx: &mut Tx<S>, job: &JobState, to: Status, run_at: i64, attempts: i64) -> Result<()> {
    tx.unplace(job, job.status, false)?;
    let mut fields = vec![
        (record::STATUS, to.as_str().as_bytes().to_vec()),
        (record::ATTEMPTS, n(attempts)),
        (record::UPDATED_AT, n(tx.now)),
    ];
    if to == Status::Delayed {
        fields.push((record::RUN_AT, n(run_at)));
    }
    tx.hdel(&job.id, &[record::LEASE_UNTIL, record::TOKEN, record::WORKER]);
    tx.hset(&job.id, fields);
    tx.place(job, to, Score::At(run_at))?;
    tx.event(job, to.as_str(), to, &[]);
    if to == Status::Queued {
        tx.wake_claimers();
    }
    Ok(())
}

/// The arguments of JOB.RELEASE after the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseArgs {
    pub token: Vec<u8>,
    /// Queued again after this long (delayed), or at once.
    pub delay_ms: Option<i64>,
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
        extra.push((record::RESULT, result, true));
    }
    tx.event(job, "done", to, &extra);
}
