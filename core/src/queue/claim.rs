//! JOB.CLAIM: strict priority, round robin across groups within a priority, FIFO
//! within a group; a fresh lease token per claim.

use crate::error::Result;
use crate::job::{transition, Priority, Status, Trigger};
use crate::keys::QueueKeys;
use crate::queue::tx::{meta, Env, Tally, Tx};
use crate::ratelimit::Window;
use crate::record::{self, JobState};
use crate::rng;
use crate::store::{Op, Score, Store, ZRange};

/// One `CHARGE key REQUESTS|COST LIMIT n PERIOD ms [LIMIT n PERIOD ms ...]` of JOB.CLAIM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub key: Vec<u8>,
    pub by_cost: bool,
    pub windows: Vec<Window>,
}

/// What JOB.CLAIM asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClaimArgs {
    pub worker: Option<Vec<u8>>,
    pub lease_ms: Option<i64>,
    pub block_ms: Option<i64>,
    pub count: i64,
    pub charges: Vec<Charge>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: Vec<u8>,
    pub token: String,
    /// The record as claimed, for the reply (with `ttl` and `token`).
    pub record: record::Reply,
}

/// What a claim gave: the jobs, and when a CHARGE refused the next one, how long until
/// it would be admitted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimResult {
    pub jobs: Vec<Claimed>,
    pub denied_for_ms: Option<i64>,
    pub tally: Tally,
}

/// Decides whether the job may be claimed now and, if so, adds its charges to the step.
/// Returns Err(retry_after_ms) when a limit refuses it.
pub trait Gate<S: Store> {
    fn admit(&mut self, tx: &mut Tx<S>, job: &JobState) -> Result<std::result::Result<(), i64>>;
}

/// The gate of a claim without CHARGE.
pub struct Open;

impl<S: Store> Gate<S> for Open {
    fn admit(&mut self, _tx: &mut Tx<S>, _job: &JobState) -> Result<std::result::Result<(), i64>> {
        Ok(Ok(()))
    }
}

pub fn is_paused<S: Store>(s: &mut S, q: &QueueKeys) -> Result<bool> {
    Ok(s.hget(&q.meta(), meta::PAUSED.as_bytes())?.as_deref() == Some(b"1"))
}

pub fn claim<S: Store, G: Gate<S>>(
    s: &mut S,
    q: &QueueKeys,
    env: &mut Env,
    args: &ClaimArgs,
    gate: &mut G,
) -> Result<ClaimResult> {
    env.config.admit_new_work()?;
    let mut out = ClaimResult::default();
    if is_paused(s, q)? {
        return Ok(out);
    }
    claim_more(s, q, env, args, gate, &mut out)?;
    Ok(out)
}

/// Claims into `out` until it holds COUNT jobs, nothing is ready or a charge refuses: one
/// step per job, so each claim sees the one before it.
pub fn claim_more<S: Store, G: Gate<S>>(
    s: &mut S,
    q: &QueueKeys,
    env: &mut Env,
    args: &ClaimArgs,
    gate: &mut G,
    out: &mut ClaimResult,
) -> Result<()> {
    while (out.jobs.len() as i64) < args.count && out.denied_for_ms.is_none() {
        let mut tx = Tx::new(s, q, env.now, env.config);
        if !claim_into(&mut tx, env, args, gate, out)? {
            break;
        }
        out.tally.add(&tx.commit()?);
    }
    Ok(())
}

/// Takes the next claimable job in `tx` (not committed) and adds it to `out`; false when
/// nothing is ready, or when a charge refused it (`out.denied_for_ms` then says how long).
/// The queue must not be paused, and `tx` must not yet have changed the turns or the
/// queued jobs (which the search reads from the store).
pub fn claim_into<S: Store, G: Gate<S>>(
    tx: &mut Tx<S>,
    env: &mut Env,
    args: &ClaimArgs,
    gate: &mut G,
    out: &mut ClaimResult,
) -> Result<bool> {
    let Some((job, mut fields)) = next_claimable(tx.s, tx.q, &mut out.tally)? else { return Ok(false) };
    if let Err(wait) = gate.admit(tx, &job)? {
        out.denied_for_ms = Some(wait);
        out.tally.charges_denied += 1;
        return Ok(false);
    }
    let token = rng::token(env.entropy);
    let had_worker = fields.iter().any(|(f, _)| f.as_slice() == record::WORKER.as_bytes());
    let (set, removed) = take(tx, &job, args, &token, had_worker)?;
    fields.retain(|(f, _)| !removed.contains(&f.as_slice()) && !set.iter().any(|(n, _)| n.as_bytes() == f.as_slice()));
    fields.extend(set.into_iter().map(|(n, v)| (n.as_bytes().to_vec(), v)));
    let mut extra = vec![
        (record::TTL, record::Value::Int(-1)),
        (record::CLAIM_TOKEN, record::Value::Bytes(token.clone().into_bytes())),
    ];
    // a job made with AFTER gets its parents' results with its claim (docs/flows.md#inputs)
    if let Some(parents) = &job.parents {
        let budget = tx.config.max_payload_bytes;
        extra.push((record::INPUTS, crate::queue::flow::inputs(tx.s, tx.q, parents, budget)?));
    }
    let record = record::to_reply(&job.id, tx.q.name(), &fields, extra);
    out.jobs.push(Claimed { id: job.id, token, record });
    Ok(true)
}

/// A record's stored fields, as `Store::hgetall` returns them.
pub type StoredFields = Vec<(Vec<u8>, Vec<u8>)>;

/// A job's control fields and its whole record, read with one pass over the hash.
pub fn load_job_with_fields<S: Store>(s: &mut S, q: &QueueKeys, id: &[u8]) -> Result<Option<(JobState, StoredFields)>> {
    let fields = s.hgetall(&q.job(id))?;
    if fields.is_empty() {
        return Ok(None);
    }
    let state = record::STATE_FIELDS
        .iter()
        .map(|name| fields.iter().find(|(f, _)| f.as_slice() == name.as_bytes()).map(|(_, v)| v.clone()))
        .collect();
    Ok(Some((JobState::from_fields(id, state)?, fields)))
}

/// The job the next claim would take (its state and record), without taking it. Stale
/// entries met on the way (a job gone or no longer queued) are dropped and counted.
pub fn next_claimable<S: Store>(
    s: &mut S,
    q: &QueueKeys,
    tally: &mut Tally,
) -> Result<Option<(JobState, StoredFields)>> {
    for p in Priority::ORDER {
        // A turn set only holds groups with jobs at this priority and room under their
        // cap; the loop only runs again to mend an entry that broke that rule.
        for _ in 0..16 {
            let Some((group, _)) = s.zrange(&q.turns(p), ZRange::first(1))?.into_iter().next() else {
                break;
            };
            let head = s.zrange(&q.queued(p, &group), ZRange::first(1))?.into_iter().next();
            let Some((id, _)) = head else {
                s.apply(vec![Op::ZRem(q.turns(p), group)])?;
                continue;
            };
            match load_job_with_fields(s, q, &id)? {
                Some(found) if found.0.status == Status::Queued => return Ok(Some(found)),
                _ => {
                    // An id without a queued record: drop the stale entry.
                    s.apply(vec![Op::ZRem(q.queued(p, &group), id)])?;
                    tally.index_entries_dropped += 1;
                }
            }
        }
    }
    Ok(None)
}

/// The record fields a claim sets, and those it removes.
pub type FieldChanges = (Vec<(&'static str, Vec<u8>)>, Vec<&'static [u8]>);

/// Moves a queued job to running under a new lease; returns the record fields it changed.
/// `had_worker`: the record names a worker (of an earlier attempt) that a claim without
/// WORKER removes.
pub fn take<S: Store>(
    tx: &mut Tx<S>,
    job: &JobState,
    args: &ClaimArgs,
    token: &str,
    had_worker: bool,
) -> Result<FieldChanges> {
    let to = transition(job.status, Trigger::Claim)?;
    let now = tx.now;
    let lease_ms = args.lease_ms.unwrap_or(tx.config.lease_ms);
    let lease_until = now.saturating_add(lease_ms);
    let attempts = job.attempts + 1;
    tx.unplace(job, job.status, true)?;
    let n = |v: i64| v.to_string().into_bytes();
    let mut fields = vec![
        (record::STATUS, to.as_str().as_bytes().to_vec()),
        (record::ATTEMPTS, n(attempts)),
        (record::STARTED_AT, n(now)),
        (record::UPDATED_AT, n(now)),
        (record::LEASE_UNTIL, n(lease_until)),
        (record::TOKEN, token.as_bytes().to_vec()),
        (record::LEASE_MS, n(lease_ms)),
    ];
    let mut removed: Vec<&'static [u8]> = Vec::new();
    match &args.worker {
        Some(w) => fields.push((record::WORKER, w.clone())),
        None if had_worker => {
            tx.hdel(&job.id, &[record::WORKER]);
            removed.push(record::WORKER.as_bytes());
        }
        None => {}
    }
    crate::queue::stream::new_attempt(tx, job, attempts, &mut fields)?;
    tx.hset(&job.id, fields.clone());
    tx.place(job, to, Score::At(lease_until))?;
    tx.tally.claims += 1;
    tx.event(job, "running", to, &[]);
    Ok((fields, removed))
}
