//! The moves time makes (within 500 ms, on the master only: docs/operations.md#the-clock): delayed jobs come
//! due, expired leases go back to the queue, deadlines pass, finished jobs' retention
//! ends, cache index entries of expired entries go. Each call does at most `budget`
//! moves, so a backlog of a million is worked off over many ticks without a stall.

use crate::error::Result;
use crate::job::{transition, Status, Trigger};
use crate::keys::QueueKeys;
use crate::oom::{lapsed_lease, ClockMove, LeaseEnd, Pressure};
use crate::queue::admin::remove;
use crate::queue::tx::{load_job, Env, Tally, Tx};
use crate::queue::update::{fail_tally, finish, requeue};
use crate::queue::{cache, schedule};
use crate::record;
use crate::store::{Op, Score, Store, ZRange};

/// What one tick of one queue did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    pub moves: usize,
    /// True when work was left for the next tick because the budget ran out.
    pub more: bool,
    pub tally: Tally,
    /// Leases renewed instead of expired because the server was full (`crate::oom`).
    pub renewed_leases: usize,
}

pub fn tick<S: Store>(s: &mut S, q: &QueueKeys, env: &mut Env, budget: usize) -> Result<TickReport> {
    tick_under(s, q, env, budget, &Pressure::default())
}

/// A tick under memory pressure: while the server is full, only the moves that free
/// memory run (`Pressure::allows`); the others wait in their indexes.
pub fn tick_under<S: Store>(
    s: &mut S,
    q: &QueueKeys,
    env: &mut Env,
    budget: usize,
    p: &Pressure,
) -> Result<TickReport> {
    let mut r = TickReport::default();
    let indexed = [
        (ClockMove::ComeDue, q.delayed()),
        (ClockMove::ExpireLease, q.leases()),
        (ClockMove::PassDeadline, q.deadlines()),
        (ClockMove::EndRetention, q.expiry()),
    ];
    for (kind, index) in indexed.iter().filter(|(kind, _)| p.allows(*kind)) {
        let left = budget.saturating_sub(r.moves);
        if left == 0 {
            r.more = true;
            break;
        }
        let due = s.zrange(index, ZRange::up_to(env.now as f64, left + 1))?;
        if due.len() > left {
            r.more = true;
        }
        for (id, score) in due.into_iter().take(left) {
            let t = match kind {
                ClockMove::ComeDue => come_due(s, q, env, &id)?,
                ClockMove::ExpireLease => match expire_lease(s, q, env, &id, score as i64, p)? {
                    Some(t) => t,
                    None => {
                        r.renewed_leases += 1;
                        Tally::default()
                    }
                },
                ClockMove::PassDeadline => pass_deadline(s, q, env, &id)?,
                ClockMove::EndRetention => end_retention(s, q, env, &id)?,
                // the moves of no index
                _ => continue,
            };
            r.tally.add(&t);
            r.moves += 1;
        }
    }
    let left = budget.saturating_sub(r.moves);
    if left > 0 && p.allows(ClockMove::FireSchedule) {
        let (fired, tally) = schedule::fire_due(s, q, env, left)?;
        r.moves += fired;
        r.tally.add(&tally);
    }
    let left = budget.saturating_sub(r.moves);
    if left > 0 && p.allows(ClockMove::DropCacheIndex) {
        r.moves += drop_expired_cache_index(s, q, env.now, left)?;
    }
    let left = budget.saturating_sub(r.moves);
    if left > 0 && p.allows(ClockMove::FreeCleared) {
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

/// The lease of a running job ran out at `lease_until`: None when it was renewed instead
/// (the server was full near that time, `oom::lapsed_lease`).
fn expire_lease<S: Store>(
    s: &mut S,
    q: &QueueKeys,
    env: &mut Env,
    id: &[u8],
    lease_until: i64,
    p: &Pressure,
) -> Result<Option<Tally>> {
    let Some(job) = load_job(s, q, id)?.filter(|j| j.status == Status::Running) else {
        return drop_entry(s, q.leases(), id).map(Some);
    };
    let mut tx = Tx::new(s, q, env.now, env.config);
    if let LeaseEnd::Renew { until } = lapsed_lease(env.now, lease_until, job.lease_ms, p) {
        tx.hset(id, vec![(record::LEASE_UNTIL, until.to_string().into_bytes())]);
        tx.push(Op::ZAdd(q.leases(), Score::At(until), id.to_vec()));
        tx.commit()?;
        return Ok(None);
    }
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
    tx.commit().map(Some)
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
        // kept for its dependents (an index edited by hand, an old entry): no end yet
        Some(job) if job.status.is_finished() && job.dependents.unwrap_or(0) > 0 => {
            s.apply(vec![Op::ZAdd(q.expiry(), Score::Inf, id.to_vec()), Op::Persist(q.job(id))])?;
            Ok(Tally::default())
        }
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
    next_due_under(s, q, &Pressure::default())
}

/// `next_due` of the work `p` allows: while the server is full, the held-back moves do not
/// count (the shell looks at every queue again once it is not).
pub fn next_due_under<S: Store>(s: &mut S, q: &QueueKeys, p: &Pressure) -> Result<Option<i64>> {
    let mut best: Option<f64> = None;
    let indexes = [
        (ClockMove::ComeDue, q.delayed()),
        (ClockMove::ExpireLease, q.leases()),
        (ClockMove::PassDeadline, q.deadlines()),
        (ClockMove::EndRetention, q.expiry()),
        (ClockMove::FireSchedule, q.schedules()),
        (ClockMove::DropCacheIndex, q.cache_index(cache::generation(s, q)?)),
    ];
    for (_, index) in indexes.iter().filter(|(kind, _)| p.allows(*kind)) {
        if let Some((_, score)) = s.zrange(index, ZRange::first(1))?.into_iter().next() {
            if score.is_finite() {
                best = Some(best.map_or(score, |b: f64| b.min(score)));
            }
        }
    }
    Ok(best.map(|b| b as i64))
}
