//! JOB.CANCEL, JOB.RETRY, JOB.DELETE, QUEUE.PURGE, QUEUE.PAUSE/RESUME, QUEUE.GROUPCAP.

use crate::error::{AiError, Result};
use crate::job::{transition, Priority, Status, Trigger};
use crate::keys::QueueKeys;
use crate::queue::tx::{load_job, meta, Env, Tally, Tx};
use crate::queue::update::finish;
use crate::queue::{flow, pending, stream};
use crate::record::{self, JobState};
use crate::store::{Op, Score, Store, ZRange};

fn missing(id: &[u8]) -> AiError {
    AiError::not_found(format!("no job {} in queue", String::from_utf8_lossy(id)))
}

/// JOB.CANCEL: 1, or 0 when the job had already finished.
pub fn cancel<S: Store>(s: &mut S, q: &QueueKeys, env: &mut Env, id: &[u8]) -> Result<(i64, Tally)> {
    let job = load_job(s, q, id)?.ok_or_else(|| missing(id))?;
    if job.status.is_finished() {
        return Ok((0, Tally::default()));
    }
    let to = transition(job.status, Trigger::Cancel)?;
    let mut tx = Tx::new(s, q, env.now, env.config);
    finish(&mut tx, &job, to, vec![])?;
    tx.tally.canceled += 1;
    tx.event(&job, "canceled", to, &[]);
    Ok((1, tx.commit()?))
}

/// JOB.RETRY: an `error` or `canceled` job goes back to the queue with attempts reset:
/// 1; 0 when the job is live already. A retried job has no deadline any more.
pub fn retry<S: Store>(s: &mut S, q: &QueueKeys, env: &mut Env, id: &[u8]) -> Result<(i64, Tally)> {
    let job = load_job(s, q, id)?.ok_or_else(|| missing(id))?;
    if job.status.is_live() {
        return Ok((0, Tally::default()));
    }
    let mut tx = Tx::new(s, q, env.now, env.config);
    // a job with AFTER waits again for its parents that are live
    let waits_on = flow::retry_target(&mut tx, &job)?;
    let to = transition(job.status, if waits_on.is_some() { Trigger::RetryWaiting } else { Trigger::Retry })?;
    tx.unplace(&job, job.status, false)?;
    let job = JobState { deadline_at: None, ..job };
    tx.hdel(
        id,
        &[
            record::FINISHED_AT,
            record::RUN_AT,
            record::DEADLINE_AT,
            record::LEASE_UNTIL,
            record::WORKER,
            record::TOKEN,
            record::EXPIRE_AT,
            record::FAILED_BY,
            record::START_DELAY,
            record::DEADLINE_MS,
        ],
    );
    let mut fields = vec![
        (record::STATUS, to.as_str().as_bytes().to_vec()),
        (record::ATTEMPTS, b"0".to_vec()),
        (record::UPDATED_AT, tx.now.to_string().into_bytes()),
    ];
    fields.extend(waits_on.map(|n| (record::WAITING_ON, n.to_string().into_bytes())));
    tx.hset(id, fields);
    tx.place(&job, to, Score::At(tx.now))?;
    stream::reopened(&mut tx, &job)?;
    if let Some(h) = &job.hash {
        pending::claim_hash(&mut tx, h, id)?;
    }
    tx.incr_meta(meta::RETRIED, 1)?;
    tx.tally.retried += 1;
    tx.event(&job, to.as_str(), to, &[]);
    if to == Status::Queued {
        tx.wake_claimers();
    }
    // the jobs its failure ended wait for it again
    let defer = std::mem::replace(&mut tx.defer_events, true);
    flow::parent_retried(&mut tx, &job, to)?;
    tx.defer_events = defer;
    Ok((1, tx.commit()?))
}

/// Removes a job's record and every index entry, inside `tx`.
pub fn remove<S: Store>(tx: &mut Tx<S>, job: &JobState) -> Result<()> {
    tx.unplace(job, job.status, false)?;
    // its waiting dependents lose a parent (ONPARENTFAIL), its links go
    flow::removed(tx, job)?;
    if job.status.is_live() {
        if let Some(h) = &job.hash {
            pending::release_hash(tx, h, &job.id)?;
        }
    }
    tx.push(Op::Del(tx.q.job(&job.id)));
    stream::removed(tx, job);
    Ok(())
}

/// JOB.DELETE: 1, or 0 when there is no such job.
pub fn delete<S: Store>(s: &mut S, q: &QueueKeys, env: &mut Env, id: &[u8]) -> Result<(i64, Tally)> {
    let Some(job) = load_job(s, q, id)? else {
        return Ok((0, Tally::default()));
    };
    let mut tx = Tx::new(s, q, env.now, env.config);
    remove(&mut tx, &job)?;
    tx.event(&job, "deleted", job.status, &[]);
    Ok((1, tx.commit()?))
}

/// QUEUE.PURGE: removes every job in `status` (of one priority when given); the count.
pub fn purge<S: Store>(
    s: &mut S,
    q: &QueueKeys,
    env: &mut Env,
    status: Status,
    priority: Option<Priority>,
) -> Result<(i64, Tally)> {
    const BATCH: usize = 512;
    let mut removed = 0;
    let mut after = f64::NEG_INFINITY;
    loop {
        let range = ZRange { min: after, min_exclusive: true, ..ZRange::first(BATCH) };
        let ids = s.zrange(&q.status(status), range)?;
        if ids.is_empty() {
            break;
        }
        after = ids.last().map_or(after, |(_, score)| *score);
        let mut tx = Tx::new(s, q, env.now, env.config);
        for (id, _) in &ids {
            let Some(job) = load_job(tx.s, q, id)? else {
                tx.push(Op::ZRem(q.status(status), id.clone()));
                continue;
            };
            // a job a cascade of this batch moved or removed is not what the index said
            let moved = tx.overlay.touched(id);
            if moved || job.status != status || priority.is_some_and(|p| p != job.priority) {
                continue;
            }
            remove(&mut tx, &job)?;
            removed += 1;
            // each job's group counters live in the tx: commit per batch keeps them exact
        }
        tx.commit()?;
        if ids.len() < BATCH {
            break;
        }
    }
    Ok((removed, Tally::default()))
}

/// QUEUE.PAUSE / QUEUE.RESUME.
pub fn set_paused<S: Store>(s: &mut S, q: &QueueKeys, paused: bool) -> Result<()> {
    let mut ops = vec![Op::HSet(
        q.meta(),
        vec![(meta::PAUSED.as_bytes().to_vec(), if paused { b"1".to_vec() } else { b"0".to_vec() })],
    )];
    if !paused {
        ops.push(Op::Wake(q.meta()));
    }
    s.apply(ops)
}

/// QUEUE.GROUPCAP Q group n (n = 0 removes the cap) or QUEUE.GROUPCAP Q * n.
pub fn set_group_cap<S: Store>(s: &mut S, q: &QueueKeys, env: &mut Env, group: &[u8], cap: i64) -> Result<()> {
    let cap = (cap > 0).then_some(cap);
    let mut tx = Tx::new(s, q, env.now, env.config);
    if group == b"*" {
        let value = cap.unwrap_or(0);
        tx.push(Op::HSet(q.meta(), vec![(meta::GROUP_CAP.as_bytes().to_vec(), value.to_string().into_bytes())]));
        // Every group without a cap of its own follows the default: re-check them all.
        let groups = tx.s.zrange(&q.groups(), ZRange::first(usize::MAX))?;
        for (g, _) in groups {
            tx.recheck_group(&g, value)?;
        }
    } else {
        tx.set_group_cap(group, cap)?;
    }
    tx.wake_claimers();
    tx.commit()?;
    Ok(())
}
