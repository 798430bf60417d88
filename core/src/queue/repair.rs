//! Healing a queue whose keys went missing: evicted (a `maxmemory-policy` other than
//! `noeviction`, see docs/operations.md) or deleted by hand. The job records are the truth
//! and the indexes are rebuilt from them, a bounded number of entries per call:
//!
//! - A pass walks the status indexes `s:<status>` in creation order from a cursor kept in
//!   `meta` (field `repair`), so QUEUE.REPAIR and the timer's rounds share one pass, and a
//!   promoted replica goes on where its master stopped.
//! - An entry naming no job, or a job in another status, is dropped. A job is put back into
//!   every index its status uses that lost it: its group's ready index and turns, `delayed`,
//!   `leases`, `expiry`, `deadlines`, and for a waiting job its parents' `dependents:<id>`. (Not the content-hash claims of `pending`: two live
//!   jobs may share a hash, and a lost claim costs one uncoalesced request, not a job.)
//! - The queued jobs are walked last, and the pass ends by setting the `meta` counters the
//!   indexes determine: `seq`, `turn`, `queued_*`.
//!
//! A record that no status index names any more is found by the timer's keyspace sweep
//! (`heal_job`; `heal_schedule` for a schedule `schedules` lost): no command may scan the
//! keyspace.

use crate::error::Result;
use crate::job::{Priority, Status};
use crate::keys::{Key, QueueKeys};
use crate::queue::schedule;
use crate::queue::tx::{expire_at, load_job, meta, Env, Tally, Tx};
use crate::record::{self, JobState};
use crate::store::{Op, Score, Store, ZRange};

/// The `meta` field holding an unfinished pass's place; absent between passes.
pub const CURSOR: &str = "repair";

/// The order a pass walks the status indexes in: queued last, so the queued counts it
/// makes are set at once, before jobs move on.
const PHASES: [Status; 7] =
    [Status::Waiting, Status::Delayed, Status::Running, Status::Done, Status::Error, Status::Canceled, Status::Queued];

/// Entries per step (one batch of writes).
const CHUNK: usize = 128;

/// Where a pass stands: the phase, the last score walked in it, and the queued jobs per
/// priority counted so far.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cursor {
    phase: usize,
    after: f64,
    queued: [i64; 3],
}

impl Default for Cursor {
    fn default() -> Self {
        Cursor { phase: 0, after: f64::NEG_INFINITY, queued: [0; 3] }
    }
}

impl Cursor {
    /// A malformed cursor (edited by hand) starts a new pass.
    fn parse(v: Option<&[u8]>) -> Cursor {
        let parsed = || -> Option<Cursor> {
            let text = std::str::from_utf8(v?).ok()?;
            let mut it = text.split(':');
            let phase: usize = it.next()?.parse().ok()?;
            let after: f64 = it.next()?.parse().ok()?;
            let mut queued = [0i64; 3];
            for slot in &mut queued {
                *slot = it.next()?.parse().ok()?;
            }
            (phase < PHASES.len() && it.next().is_none() && !after.is_nan()).then_some(Cursor { phase, after, queued })
        };
        parsed().unwrap_or_default()
    }

    fn encode(&self) -> Vec<u8> {
        let [h, n, l] = self.queued;
        format!("{}:{}:{h}:{n}:{l}", self.phase, self.after).into_bytes()
    }
}

/// What one call of `repair` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RepairReport {
    /// Status-index entries looked at.
    pub checked: usize,
    /// Records left alone because they do not parse (changed outside aijob).
    pub skipped: u64,
    /// `meta` counters set from the indexes.
    pub counters: u64,
    /// This call finished a pass; the next one starts a new pass.
    pub done: bool,
    /// `index_entries_dropped` and `records_reindexed` hold the entries dropped and put back.
    pub tally: Tally,
}

impl RepairReport {
    /// Whether the call found anything broken (besides counters).
    pub fn found_damage(&self) -> bool {
        self.tally.index_entries_dropped > 0 || self.tally.records_reindexed > 0
    }
}

/// QUEUE.REPAIR and the timer's rounds: goes on with the queue's pass for at most `count`
/// entries.
pub fn repair<S: Store>(s: &mut S, q: &QueueKeys, env: &mut Env, count: usize) -> Result<RepairReport> {
    let stored = s.hget(&q.meta(), CURSOR.as_bytes())?;
    let start = Cursor::parse(stored.as_deref());
    let mut cur = start;
    let mut r = RepairReport::default();
    while let Some(&status) = PHASES.get(cur.phase) {
        let want = count.saturating_sub(r.checked).min(CHUNK);
        if want == 0 {
            break;
        }
        let page =
            s.zrange(&q.status(status), ZRange { min: cur.after, min_exclusive: true, ..ZRange::first(want) })?;
        let mut tx = Tx::new(s, q, env.now, env.config);
        for (id, score) in &page {
            check_entry(&mut tx, status, id, &mut cur, &mut r)?;
            cur.after = *score;
            r.checked += 1;
        }
        r.tally.add(&tx.commit()?);
        if page.len() < want {
            cur.phase += 1;
            cur.after = f64::NEG_INFINITY;
        }
        if cur.phase == PHASES.len() {
            let mut tx = Tx::new(s, q, env.now, env.config);
            r.counters = fix_counters(&mut tx, cur.queued)?;
            r.tally.add(&tx.commit()?);
            r.done = true;
        }
    }
    let field = CURSOR.as_bytes().to_vec();
    if r.done && stored.is_some() {
        s.apply(vec![Op::HDel(q.meta(), vec![field])])?;
    } else if !r.done && cur != start {
        s.apply(vec![Op::HSet(q.meta(), vec![(field, cur.encode())])])?;
    }
    Ok(r)
}

/// One entry of `s:<status>`: dropped when it names no job or one in another status; the
/// job it names put back into the indexes its status uses.
fn check_entry<S: Store>(
    tx: &mut Tx<S>,
    status: Status,
    id: &[u8],
    cur: &mut Cursor,
    r: &mut RepairReport,
) -> Result<()> {
    let job = match load_job(tx.s, tx.q, id) {
        Ok(job) => job,
        Err(_) => {
            r.skipped += 1;
            return Ok(());
        }
    };
    let Some(job) = job else {
        drop_entry(tx, status, id);
        return Ok(());
    };
    if job.status != status {
        tx.push(Op::ZRem(tx.q.status(status), id.to_vec()));
        tx.tally.index_entries_dropped += 1;
    }
    // counted where the pass walks the queued jobs only, so none is counted twice
    if status == Status::Queued && job.status == Status::Queued {
        if let Some(n) = cur.queued.get_mut(job.priority as usize) {
            *n += 1;
        }
    }
    tx.tally.records_reindexed += reindex(tx, &job)?;
    Ok(())
}

/// An entry of `s:<status>` whose job is gone: it goes, with the entries of the indexes
/// kept by id that the status uses (a ready-index entry is dropped by the next claim that
/// meets it, as the group is unknown without the record).
fn drop_entry<S: Store>(tx: &mut Tx<S>, status: Status, id: &[u8]) {
    let q = tx.q;
    let mut indexes = vec![q.status(status)];
    match status {
        Status::Queued => indexes.push(q.deadlines()),
        Status::Delayed => indexes.extend([q.delayed(), q.deadlines()]),
        Status::Running => indexes.push(q.leases()),
        Status::Done | Status::Error | Status::Canceled => indexes.push(q.expiry()),
        Status::Waiting => {}
    }
    for index in indexes {
        tx.push(Op::ZRem(index, id.to_vec()));
    }
    tx.tally.index_entries_dropped += 1;
}

/// Puts `job` back into every index its status uses that lost it; the entries put back.
fn reindex<S: Store>(tx: &mut Tx<S>, job: &JobState) -> Result<u64> {
    let q = tx.q;
    let mut n = restore(tx, q.status(job.status), Score::At(job.seq), &job.id)?;
    match job.status {
        Status::Queued => {
            n += restore(tx, q.queued(job.priority, &job.group), Score::At(job.seq), &job.id)?;
            n += tx.restore_turns(&job.group, job.priority)?;
            n += restore_deadline(tx, job)?;
        }
        Status::Delayed => {
            n += restore(tx, q.delayed(), Score::At(job.run_at.unwrap_or(tx.now)), &job.id)?;
            n += restore_deadline(tx, job)?;
        }
        Status::Running => {
            if tx.s.zscore(&q.leases(), &job.id)?.is_none() {
                let score = lease_score(tx, job)?;
                tx.push(Op::ZAdd(q.leases(), score, job.id.clone()));
                n += 1;
            }
        }
        Status::Done | Status::Error | Status::Canceled => {
            let until = job.expire_at.unwrap_or_else(|| expire_at(job, tx.now, &tx.config));
            // a parent kept for dependents that have not ended (docs/flows.md#retention)
            let score = if job.dependents.unwrap_or(0) > 0 { Score::Inf } else { Score::At(until) };
            n += restore(tx, q.expiry(), score, &job.id)?;
        }
        // its parents' `dependents:<id>` are how their finish finds it: without them it
        // would wait for ever
        Status::Waiting => {
            let parents = job.parents.as_deref().map(record::split_ids).into_iter().flatten();
            for p in parents.map(<[u8]>::to_vec).collect::<Vec<_>>() {
                n += restore(tx, q.dependents(&p), Score::At(job.seq), &job.id)?;
            }
        }
    }
    Ok(n)
}

/// A running job's place in `leases`: its lease's end (now, when the record lost it, so the
/// lease expires and the job is retried), or +inf for a job its app runs without lease.
fn lease_score<S: Store>(tx: &mut Tx<S>, job: &JobState) -> Result<Score> {
    if job.token.is_none() {
        return Ok(Score::Inf);
    }
    let until = tx.s.hget(&tx.q.job(&job.id), record::LEASE_UNTIL.as_bytes())?;
    let until = until.as_deref().and_then(record::int);
    Ok(Score::At(until.unwrap_or(tx.now)))
}

fn restore_deadline<S: Store>(tx: &mut Tx<S>, job: &JobState) -> Result<u64> {
    match job.deadline_at {
        Some(at) => restore(tx, tx.q.deadlines(), Score::At(at), &job.id),
        None => Ok(0),
    }
}

/// Adds `id` to `index` unless it is there: 1 when it was missing.
fn restore<S: Store>(tx: &mut Tx<S>, index: Key, score: Score, id: &[u8]) -> Result<u64> {
    if tx.s.zscore(&index, id)?.is_some() {
        return Ok(0);
    }
    tx.push(Op::ZAdd(index, score, id.to_vec()));
    Ok(1)
}

/// The end of a pass: `seq` and `turn` at least the highest score given from them (new
/// entries must sort after old ones), and the queued counts per priority the pass counted,
/// when `meta` disagrees with the queued index. Returns how many counters it set.
fn fix_counters<S: Store>(tx: &mut Tx<S>, counted: [i64; 3]) -> Result<u64> {
    let q = tx.q;
    let mut seq_indexes: Vec<Key> = Status::ALL.iter().map(|st| q.status(*st)).collect();
    seq_indexes.push(q.groups());
    let turn_indexes: Vec<Key> = Priority::ORDER.iter().map(|p| q.turns(*p)).collect();
    let mut n = u64::from(tx.restore_counter(meta::SEQ, &seq_indexes)?);
    n += u64::from(tx.restore_counter(meta::TURN, &turn_indexes)?);
    let mut in_meta = [0i64; 3];
    for (p, v) in Priority::ORDER.iter().zip(in_meta.iter_mut()) {
        *v = tx.meta_i64(meta::queued(*p))?;
    }
    // A pass spanning several calls counts jobs that moved meanwhile too: a counter that
    // agrees with the index is kept rather than replaced by such a count.
    if in_meta.iter().sum::<i64>() != tx.s.zcard(&q.status(Status::Queued))? {
        for ((p, have), want) in Priority::ORDER.iter().zip(in_meta).zip(counted) {
            if have != want {
                tx.incr_meta(meta::queued(*p), want - have)?;
                n += 1;
            }
        }
    }
    Ok(n)
}

/// The timer's keyspace sweep met the record of `id`: when its status index lost it, it
/// is put back into every index its status uses. Reads two keys for a healthy record.
pub fn heal_job<S: Store>(s: &mut S, q: &QueueKeys, env: &mut Env, id: &[u8]) -> Result<Tally> {
    let Some(job) = load_job(s, q, id)? else { return Ok(Tally::default()) };
    if s.zscore(&q.status(job.status), id)?.is_some() {
        return Ok(Tally::default());
    }
    let mut tx = Tx::new(s, q, env.now, env.config);
    tx.tally.records_reindexed += reindex(&mut tx, &job)?;
    if job.status == Status::Queued {
        count_behind_cursor(&mut tx, &job)?;
    }
    tx.commit()
}

/// A queued job put back behind the cursor of a pass walking the queued jobs would not be
/// counted by it: the pass's count takes it in.
fn count_behind_cursor<S: Store>(tx: &mut Tx<S>, job: &JobState) -> Result<()> {
    let Some(stored) = tx.s.hget(&tx.q.meta(), CURSOR.as_bytes())? else { return Ok(()) };
    let mut cur = Cursor::parse(Some(&stored));
    let walking_queued = PHASES.get(cur.phase) == Some(&Status::Queued);
    if walking_queued && job.seq as f64 <= cur.after {
        if let Some(n) = cur.queued.get_mut(job.priority as usize) {
            *n += 1;
        }
        tx.push(Op::HSet(tx.q.meta(), vec![(CURSOR.as_bytes().to_vec(), cur.encode())]));
    }
    Ok(())
}

/// The sweep met the schedule `name`: when `schedules` lost it, it goes back at its next
/// run (+inf while paused), or it would never fire again. Reads one key for a healthy one.
pub fn heal_schedule<S: Store>(s: &mut S, q: &QueueKeys, name: &[u8]) -> Result<Tally> {
    if s.zscore(&q.schedules(), name)?.is_some() {
        return Ok(Tally::default());
    }
    let v = s.hmget(&q.schedule(name), &[schedule::field::NEXT_RUN_AT, schedule::field::PAUSED])?;
    let mut it = v.into_iter();
    let (next, paused) = (it.next().flatten(), it.next().flatten());
    let Some(next) = next.as_deref().and_then(record::int) else {
        return Ok(Tally::default());
    };
    let score = if paused.as_deref() == Some(b"1") || next <= 0 { Score::Inf } else { Score::At(next) };
    s.apply(vec![Op::ZAdd(q.schedules(), score, name.to_vec())])?;
    Ok(Tally { records_reindexed: 1, ..Tally::default() })
}

/// A few numbers that agree on a healthy queue, each read in O(1): what the timer looks at
/// before it spends a round on the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// A pass has begun and not ended.
    pub pass_open: bool,
    /// Four pairs that must be equal (each status index against the index or counter
    /// that keeps the same jobs another way), then the priorities with queued jobs but no
    /// group taking turns while nothing runs (so no group can be parked at its cap: the
    /// turn set was lost).
    pub numbers: [i64; 9],
}

impl Health {
    pub fn broken(&self) -> bool {
        self.pairs_disagree() || self.numbers[8] > 0
    }

    /// An index holds fewer jobs than the one it pairs with: records an index lost, maybe
    /// records no status index names any more (for the keyspace sweep to find).
    pub fn pairs_disagree(&self) -> bool {
        let v = &self.numbers;
        v[0] != v[1] || v[2] != v[3] || v[4] != v[5] || v[6] != v[7]
    }
}

pub fn health<S: Store>(s: &mut S, q: &QueueKeys) -> Result<Health> {
    let meta_fields =
        [CURSOR, meta::queued(Priority::High), meta::queued(Priority::Normal), meta::queued(Priority::Low)];
    let m = s.hmget(&q.meta(), &meta_fields)?;
    let num = |v: &Option<Vec<u8>>| v.as_ref().and_then(|b| record::int(b));
    let queued_by_priority: Vec<i64> = m.iter().skip(1).map(|v| num(v).unwrap_or(0)).collect();
    let running = s.zcard(&q.status(Status::Running))?;
    let mut turnless = 0;
    for (p, n) in Priority::ORDER.iter().zip(&queued_by_priority) {
        if *n > 0 && running == 0 && s.zcard(&q.turns(*p))? == 0 {
            turnless += 1;
        }
    }
    let mut finished = 0;
    for st in [Status::Done, Status::Error, Status::Canceled] {
        finished += s.zcard(&q.status(st))?;
    }
    Ok(Health {
        pass_open: m.first().is_some_and(Option::is_some),
        numbers: [
            s.zcard(&q.status(Status::Queued))?,
            queued_by_priority.iter().sum(),
            s.zcard(&q.status(Status::Delayed))?,
            s.zcard(&q.delayed())?,
            running,
            s.zcard(&q.leases())?,
            finished,
            s.zcard(&q.expiry())?,
            turnless,
        ],
    })
}
