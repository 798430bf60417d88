//! The moves time makes (SPEC: within 500 ms, on the master only): delayed jobs come
//! due, expired leases go back to the queue, deadlines pass, finished jobs' retention
//! ends, cache index entries of expired entries go. Each call does at most `budget`
//! moves, so a backlog of a million is worked off over many ticks without a stall.

use crate::error::Result;
use crate::job::{transition, Status, Trigger};
use crate::keys::QueueKeys;
use crate::queue::admin::remove;
use crate::queue::tx::{load_job, Env, Tally, Tx};
use crate::queue::update::{fail_tally, finish, requeue};
use crate::queue::{cache, schedule};
use crate::record;
use crate::store::{Op, Store, ZRange};

/// What one tick of one queue did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    pub moves: usize,
    /// True when work was left for the next tick because the budget ran out.
    pub more: bool,
    pub tally: Tally,
}

/// One move of the clock on one job: its index entry came due.
type Step<S> = fn(&mut S, &QueueKeys, &mut Env, &[u8]) -> Result<Tally>;

pub fn tick<S: Store>(s: &mut S, q: &QueueKeys, env: &mut Env, budget: usize) -> Result<TickReport> {
    let mut r = TickReport::default();
    let steps: [Step<S>; 4] = [come_due, expire_lease, pass_deadline, end_retention];
    let indexes = [q.delayed(), q.leases(), q.deadlines(), q.expiry()];
    for (step, index) in steps.iter().zip(indexes.iter()) {
        let left = budget.saturating_sub(r.moves);
        if left == 0 {
            r.more = true;
            break;
        }
        let due = s.zrange(index, ZRange::up_to(env.now as f64, left + 1))?;
        if due.len() > left {
            r.more = true;
        }
        for (id, _) in due.into_iter().take(left) {
            let t = step(s, q, env, &id)?;
            r.tally.add(&t);
            r.moves += 1;
        }
    }
    let left = budget.saturating_sub(r.moves);
    if left > 0 {
        let (fired, tally) = schedule::fire_due(s, q, env, left)?;
        r.moves += fired;
        r.tally.add(&tally);
    }
    let left = budget.saturating_sub(r.moves);
    if left > 0 {
        r.moves += drop_expired_cache_index(s, q, env.now, left)?;
    }
    let left = budget.saturating_sub(r.moves);
    if left > 0 {
        r.moves += cache::free_cleared(s, q, left)?;
    }
    if s.zcard(&q.cache_drops())? > 0 {
        r.more = true;
    }
    Ok(r)
}

/// Drops a stale index entry (the job is gone or moved on: its key was evicted or deleted,
/// or an index kept an entry it should not have), counted in INFO.
fn drop_entry<S: Store>(s: &mut S, index: Vec<u8>, id: &[u8]) -> Result<Tally> {
    s.apply(vec![Op::ZRem(index, id.to_vec())])?;
    Ok(Tally { index_entries_dropped: 1, ..Tally::default() })
}

fn come_due<S: Store>(s: &mut S, q: &QueueKeys, env: &mut Env, id: &[u8]) -> Result<Tally> {
    let Some(job) = load_job(s, q, id)?.filter(|j| j.status == Status::Delayed) else {
        return drop_entry(s, q.delayed(), id);
    };
    let to = transition(job.status, Trigger::Due)?;
    let mut tx = Tx::new(s, q, env.now, env.config);
    tx.hdel(id, &[record::RUN_AT]);
    requeue(&mut tx, &job, to, env.now, job.attempts)?;
    tx.commit()
}

fn expire_lease<S: Store>(s: &mut S, q: &QueueKeys, env: &mut Env, id: &[u8]) -> Result<Tally> {
    let Some(job) = load_job(s, q, id)?.filter(|j| j.status == Status::Running) else {
        return drop_entry(s, q.leases(), id);
    };
    let mut tx = Tx::new(s, q, env.now, env.config);
    tx.tally.expired_leases += 1;
    if job.attempts < job.max_attempts {
        let to = transition(job.status, Trigger::LeaseExpired)?;
        requeue(&mut tx, &job, to, env.now, job.attempts)?;
        tx.incr_meta(crate::queue::tx::meta::RETRIED, 1)?;
        tx.tally.retried += 1;
    } else {
        let to = transition(job.status, Trigger::LeaseExhausted)?;
        let msg = format!("lease expired on attempt {} of {}", job.attempts, job.max_attempts).into_bytes();
        finish(
            &mut tx,
            &job,
            to,
            vec![(record::ERROR, msg.clone()), (record::ERROR_CLASS, b"lease_expired".to_vec())],
        )?;
        tx.hdel(id, &[record::WORKER]);
        fail_tally(&mut tx)?;
        tx.event(&job, "error", to, &[(record::ERROR, &msg, false)]);
    }
    tx.commit()
}

fn pass_deadline<S: Store>(s: &mut S, q: &QueueKeys, env: &mut Env, id: &[u8]) -> Result<Tally> {
    let Some(job) = load_job(s, q, id)?.filter(|j| matches!(j.status, Status::Queued | Status::Delayed)) else {
        return drop_entry(s, q.deadlines(), id);
    };
    let to = transition(job.status, Trigger::Deadline)?;
    let mut tx = Tx::new(s, q, env.now, env.config);
    let msg = b"deadline passed before a worker claimed the job".to_vec();
    finish(&mut tx, &job, to, vec![(record::ERROR, msg.clone()), (record::ERROR_CLASS, b"deadline".to_vec())])?;
    fail_tally(&mut tx)?;
    tx.event(&job, "error", to, &[(record::ERROR, &msg, false)]);
    tx.commit()
}

fn end_retention<S: Store>(s: &mut S, q: &QueueKeys, env: &mut Env, id: &[u8]) -> Result<Tally> {
    match load_job(s, q, id)? {
        Some(job) if job.status.is_finished() => {
            let mut tx = Tx::new(s, q, env.now, env.config);
            remove(&mut tx, &job)?;
            tx.commit()
        }
        Some(_) => drop_entry(s, q.expiry(), id),
        None => {
            // The key's own safety-net TTL fired first: drop what still names the id.
            let mut ops = vec![Op::ZRem(q.expiry(), id.to_vec())];
            for st in [Status::Done, Status::Error, Status::Canceled] {
                ops.push(Op::ZRem(q.status(st), id.to_vec()));
            }
            s.apply(ops)?;
            Ok(Tally { index_entries_dropped: 1, ..Tally::default() })
        }
    }
}

fn drop_expired_cache_index<S: Store>(s: &mut S, q: &QueueKeys, now: i64, budget: usize) -> Result<usize> {
    let generation = cache::generation(s, q)?;
    let index = q.cache_index(generation);
    let gone = s.zrange(&index, ZRange::up_to(now as f64, budget))?;
    if gone.is_empty() {
        return Ok(0);
    }
    let n = gone.len();
    s.apply(gone.into_iter().map(|(h, _)| Op::ZRem(index.clone(), h)).collect())?;
    Ok(n)
}

/// The earliest instant any of this queue's clock-driven work comes due (for the
/// shell's scheduling); None when there is none.
pub fn next_due<S: Store>(s: &mut S, q: &QueueKeys) -> Result<Option<i64>> {
    let mut best: Option<f64> = None;
    let indexes =
        [q.delayed(), q.leases(), q.deadlines(), q.expiry(), q.schedules(), q.cache_index(cache::generation(s, q)?)];
    for index in indexes {
        if let Some((_, score)) = s.zrange(&index, ZRange::first(1))?.into_iter().next() {
            if score.is_finite() {
                best = Some(best.map_or(score, |b: f64| b.min(score)));
            }
        }
    }
    Ok(best.map(|b| b as i64))
}
