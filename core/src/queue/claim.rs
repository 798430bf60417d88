//! JOB.CLAIM: strict priority, round robin across groups within a priority, FIFO
//! within a group; a fresh lease token per claim.

use crate::args::ClaimArgs;
use crate::error::Result;
use crate::job::{transition, Priority, Status, Trigger};
use crate::keys::QueueKeys;
use crate::queue::tx::{load_job, meta, Env, Tally, Tx};
use crate::record::{self, JobState};
use crate::rng;
use crate::store::{Op, Score, Store, ZRange};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: Vec<u8>,
    pub token: String,
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
    let mut out = ClaimResult::default();
    if is_paused(s, q)? {
        return Ok(out);
    }
    while (out.jobs.len() as i64) < args.count {
        let Some(job) = next_claimable(s, q, env)? else { break };
        let mut tx = Tx::new(s, q, env.now, env.config);
        if let Err(wait) = gate.admit(&mut tx, &job)? {
            out.denied_for_ms = Some(wait);
            out.tally.charges_denied += 1;
            break;
        }
        let token = rng::token(env.entropy);
        take(&mut tx, &job, args, &token)?;
        out.tally.add(&tx.commit()?);
        out.jobs.push(Claimed { id: job.id, token });
    }
    Ok(out)
}

/// The job the next claim would take, without taking it.
pub fn next_claimable<S: Store>(s: &mut S, q: &QueueKeys, env: &Env) -> Result<Option<JobState>> {
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
            match load_job(s, q, &id)? {
                Some(job) if job.status == Status::Queued => return Ok(Some(job)),
                _ => {
                    // An id without a queued record: drop the stale entry.
                    s.apply(vec![Op::ZRem(q.queued(p, &group), id)])?;
                    let _ = env;
                }
            }
        }
    }
    Ok(None)
}

/// Moves a queued job to running under a new lease.
pub fn take<S: Store>(tx: &mut Tx<S>, job: &JobState, args: &ClaimArgs, token: &str) -> Result<()> {
    let to = transition(job.status, Trigger::Claim)?;
    let now = tx.now;
    let lease_ms = args.lease_ms.unwrap_or(tx.config.lease_ms);
    let lease_until = now.saturating_add(lease_ms);
    let attempts = job.attempts + 1;
    tx.unplace(job, job.status, true)?;
    let n = |v: i64| v.to_string().into_bytes();
    let mut fields = vec![
        ("status", to.as_str().as_bytes().to_vec()),
        ("attempts", n(attempts)),
        ("started_at", n(now)),
        ("updated_at", n(now)),
        ("lease_until", n(lease_until)),
        (record::TOKEN, token.as_bytes().to_vec()),
        (record::LEASE_MS, n(lease_ms)),
    ];
    match &args.worker {
        Some(w) => fields.push(("worker", w.clone())),
        None => tx.hdel(&job.id, &["worker"]),
    }
    tx.hset(&job.id, fields);
    tx.place(job, to, Score::At(lease_until))?;
    tx.tally.claims += 1;
    tx.event(job, "running", to, &[]);
    Ok(())
}
