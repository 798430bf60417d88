//! JOB.CREATE: a new job, queued or delayed.

use crate::error::{AiError, Code, Result};
use crate::job::{Priority, Status};
use crate::keys::QueueKeys;
use crate::queue::flow::{self, After, Verdict};
use crate::queue::pending;
use crate::queue::tx::{meta, Env, Tally, Tx};
use crate::record::{self, JobState};
use crate::rng;
use crate::store::{Score, Store};

/// When a new job first runs: now, after DELAY, or AT an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Now,
    Delay(i64),
    At(i64),
}

/// The options of a new job, shared by JOB.CREATE, CACHE.GETORQUEUE and SCHEDULE.SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub payload: Vec<u8>,
    pub id: Option<Vec<u8>>,
    pub priority: Priority,
    pub start: Start,
    pub max_attempts: Option<i64>,
    pub retention_ms: Option<i64>,
    pub deadline_ms: Option<i64>,
    pub hash: Option<String>,
    pub meta: Option<Vec<u8>>,
    pub group: Option<Vec<u8>>,
    pub cost: i64,
    pub cache_ttl_ms: Option<i64>,
    pub schedule: Option<Vec<u8>>,
    /// AFTER and ONPARENTFAIL: JOB.CREATE only (docs/flows.md).
    pub after: Option<After>,
}

impl JobSpec {
    pub fn new(payload: Vec<u8>) -> Self {
        JobSpec {
            payload,
            id: None,
            priority: Priority::Normal,
            start: Start::Now,
            max_attempts: None,
            retention_ms: None,
            deadline_ms: None,
            hash: None,
            meta: None,
            group: None,
            cost: 1,
            cache_ttl_ms: None,
            schedule: None,
            after: None,
        }
    }
}

/// Creates the job of `spec` and returns its id. `EXISTS` when the id is taken.
pub fn create<S: Store>(s: &mut S, q: &QueueKeys, env: &mut Env, spec: &JobSpec) -> Result<(Vec<u8>, Tally)> {
    // A made id is a UUIDv7 with 74 random bits, like CACHE.GETORQUEUE's and a schedule's:
    // only an id the caller chose can be taken already.
    let id = match &spec.id {
        Some(id) => {
            if s.exists(&q.job(id))? {
                return Err(AiError::new(Code::Exists, format!("job {} exists", String::from_utf8_lossy(id))));
            }
            id.clone()
        }
        None => rng::uuid7(env.now, env.entropy).into_bytes(),
    };
    if let Some(after) = &spec.after {
        flow::check_parents(s, q, &id, after, env.config.flow_max_dependents)?;
    }
    let mut tx = Tx::new(s, q, env.now, env.config);
    add_job(&mut tx, &id, spec)?;
    let tally = tx.commit()?;
    Ok((id, tally))
}

/// Writes a new job into `tx`: the record, its indexes, its hash claim, its event.
/// Shared by JOB.CREATE, CACHE.GETORQUEUE and schedules, so every job is made the same way.
pub fn add_job<S: Store>(tx: &mut Tx<S>, id: &[u8], spec: &JobSpec) -> Result<JobState> {
    tx.config.admit_new_work()?;
    let now = tx.now;
    let seq = tx.next_seq()?;
    let verdict = match &spec.after {
        Some(after) => flow::verdict(tx, after)?,
        None => Verdict::Ready,
    };
    let (status, run_at) = match (&verdict, spec.start) {
        // its start and its DEADLINE count from its release (`flow::release`)
        (Verdict::Wait(_) | Verdict::Failed(..), Start::At(at)) if at > now => (Status::Waiting, Some(at)),
        (Verdict::Wait(_) | Verdict::Failed(..), _) => (Status::Waiting, None),
        (Verdict::Ready, Start::Now | Start::Delay(0)) => (Status::Queued, None),
        (Verdict::Ready, Start::Delay(d)) => (Status::Delayed, Some(now.saturating_add(d))),
        (Verdict::Ready, Start::At(at)) if at <= now => (Status::Queued, None),
        (Verdict::Ready, Start::At(at)) => (Status::Delayed, Some(at)),
    };
    let waits = status == Status::Waiting;
    let max_attempts = spec.max_attempts.unwrap_or(tx.config.max_attempts);
    let job = JobState {
        id: id.to_vec(),
        status,
        priority: spec.priority,
        group: spec.group.clone().unwrap_or_default(),
        seq,
        attempts: 0,
        max_attempts,
        token: None,
        lease_ms: 0,
        hash: spec.hash.clone().map(String::into_bytes),
        retention_ms: spec.retention_ms,
        cache_ttl_ms: spec.cache_ttl_ms,
        deadline_at: spec.deadline_ms.filter(|_| !waits).map(|d| now.saturating_add(d)),
        run_at,
        cost: spec.cost,
        charges: None,
        schedule: spec.schedule.clone(),
        progress: None,
        percent: 0,
        expire_at: None,
        stream: None,
        parents: spec.after.as_ref().map(|a| a.parents.join(&b',')),
        dependents: None,
    };
    let mut fields = record_fields(&job, spec, now);
    if let Some(after) = &spec.after {
        fields.extend(flow_fields(&job, spec, after, &verdict));
    }
    tx.hset(id, fields);
    let score = run_at.map_or(Score::At(now), Score::At);
    tx.place(&job, status, score)?;
    if let Some(h) = &job.hash {
        pending::claim_hash(tx, h, id)?;
    }
    tx.incr_meta(meta::CREATED, 1)?;
    tx.tally.created += 1;
    tx.event(&job, "created", status, &[]);
    if status == Status::Queued {
        tx.wake_claimers();
    }
    if let Some(after) = &spec.after {
        flow::link(tx, &job, after)?;
        if let Verdict::Failed(parent, st) = &verdict {
            flow::fail_at_creation(tx, &job, parent, *st)?;
        }
    }
    Ok(job)
}

/// The record fields of a job made with AFTER: its parents and policy, and while it waits
/// the count of live parents and the DELAY and DEADLINE to apply from its release.
fn flow_fields(job: &JobState, spec: &JobSpec, after: &After, verdict: &Verdict) -> Vec<(&'static str, Vec<u8>)> {
    let n = |v: i64| v.to_string().into_bytes();
    let mut f = vec![
        (record::PARENTS, job.parents.clone().unwrap_or_default()),
        (record::ON_PARENT_FAIL, after.on_fail.as_str().as_bytes().to_vec()),
    ];
    if job.status == Status::Waiting {
        let live = match verdict {
            Verdict::Wait(live) => *live,
            _ => 0,
        };
        f.push((record::WAITING_ON, n(live)));
        if let Start::Delay(d) = spec.start {
            f.push((record::START_DELAY, n(d)));
        }
        f.extend(spec.deadline_ms.map(|d| (record::DEADLINE_MS, n(d))));
    }
    f
}

fn record_fields(job: &JobState, spec: &JobSpec, now: i64) -> Vec<(&'static str, Vec<u8>)> {
    let n = |v: i64| v.to_string().into_bytes();
    let mut f: Vec<(&'static str, Vec<u8>)> = vec![
        (record::STATUS, job.status.as_str().as_bytes().to_vec()),
        (record::PRIORITY, job.priority.as_str().as_bytes().to_vec()),
        (record::PAYLOAD, spec.payload.clone()),
        (record::ATTEMPTS, n(0)),
        (record::MAX_ATTEMPTS, n(job.max_attempts)),
        (record::COST, n(job.cost)),
        (record::PERCENT, n(0)),
        (record::CREATED_AT, n(now)),
        (record::UPDATED_AT, n(now)),
        (record::SEQ, n(job.seq)),
    ];
    let optional: [(&'static str, Option<Vec<u8>>); 8] = [
        (record::GROUP, spec.group.clone()),
        (record::HASH, job.hash.clone()),
        (record::META, spec.meta.clone()),
        (record::RUN_AT, job.run_at.map(n)),
        (record::DEADLINE_AT, job.deadline_at.map(n)),
        (record::SCHEDULE, job.schedule.clone()),
        (record::RETENTION, job.retention_ms.map(n)),
        (record::CACHE_TTL, job.cache_ttl_ms.map(n)),
    ];
    f.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    f
}
