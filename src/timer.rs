//! The clock (docs/operations.md#the-clock): every 100 ms, on the master only, each queue with work
//! due gets its moves (core `queue::clock::tick`), with a bounded budget per tick.
//! Which queues exist is kept in memory (a command on Q may create no key outside
//! `aijob:{Q}:*`): commands register the queues they touch, and a master that just
//! loaded its data or was just promoted discovers the rest with an incremental SCAN.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::raw::c_int;
use std::time::{Duration, Instant};

use aijob_core::keys::{queue_of_key, QueueKeys};
use aijob_core::oom::{ClockMove, Pressure};
use aijob_core::queue::clock;
use aijob_core::queue::tx::Env;
use redis_module::{raw, Context};

use crate::entropy::OsEntropy;
use crate::ffi;
use crate::logging;
use crate::store::RedisStore;

const TICK: Duration = Duration::from_millis(100);
/// The next tick's delay while a backlog is being worked off.
const BACKLOG_TICK: Duration = Duration::from_millis(10);
/// Most moves one tick makes, and the most time it spends, over all queues.
const MOVES_PER_TICK: usize = 2_000;
const TIME_PER_TICK: Duration = Duration::from_millis(10);
/// SCAN steps a discovering tick runs (each step visits a few keys).
const SCAN_STEPS_PER_TICK: usize = 2_000;

/// A known queue: its db and name.
pub use crate::repair::QueueId;

#[derive(Default)]
struct Clock {
    /// When each known queue next needs a look (0 = at the next tick).
    queues: HashMap<QueueId, i64>,
    /// Discovery after load or promotion: the db being scanned and its cursor.
    scan: Option<(c_int, ffi::ScanCursor)>,
    was_master: bool,
    /// Ticks so far: `last_touch` is only good within the tick it was made in.
    ticks: u64,
    /// The queue the last command touched, and in which tick: touching it again before
    /// the next tick changes nothing, so the common case skips the map (and the key copy).
    last_touch: Option<(c_int, Vec<u8>, u64)>,
    /// The last tick that found used memory over `maxmemory`, and whether the previous one did.
    full_seen_at: Option<i64>,
    was_full: bool,
}

/// Cache hits and coalesced requests per queue, not yet added to its `meta`: the hit path
/// stays a pure read, and the timer adds them up with one write per tick. The counts of
/// the queue counted last wait in `last` (no map lookup, no key copy per hit) until
/// another queue is counted or somebody reads them.
#[derive(Default)]
struct CacheCounts {
    map: HashMap<QueueId, (i64, i64)>,
    last: Option<(c_int, Vec<u8>, i64, i64)>,
}

impl CacheCounts {
    fn spill(&mut self) {
        if let Some((db, name, hits, coalesced)) = self.last.take() {
            let e = self.map.entry((db, name)).or_insert((0, 0));
            e.0 += hits;
            e.1 += coalesced;
        }
    }
}

thread_local! {
    static CLOCK: RefCell<Clock> = RefCell::new(Clock::default());
    static CACHE_COUNTS: RefCell<CacheCounts> = RefCell::new(CacheCounts::default());
}

pub fn count_cache(ctx: *mut raw::RedisModuleCtx, q: &QueueKeys, hits: i64, coalesced: i64) {
    let db = ffi::selected_db(ctx);
    CACHE_COUNTS.with(|m| {
        let mut m = m.borrow_mut();
        match &mut m.last {
            Some((d, name, h, c)) if *d == db && name.as_slice() == q.name() => {
                *h += hits;
                *c += coalesced;
            }
            _ => {
                m.spill();
                m.last = Some((db, q.name().to_vec(), hits, coalesced));
            }
        }
    });
}

/// The counts `count_cache` holds for `q` that `meta` does not show yet.
pub fn buffered_cache_counts(ctx: *mut raw::RedisModuleCtx, q: &QueueKeys) -> (i64, i64) {
    let id = (ffi::selected_db(ctx), q.name().to_vec());
    CACHE_COUNTS.with(|m| {
        let mut m = m.borrow_mut();
        m.spill();
        m.map.get(&id).copied().unwrap_or((0, 0))
    })
}

fn flush_cache_counts(ctx: *mut raw::RedisModuleCtx, store: &mut RedisStore, id: &QueueId, q: &QueueKeys) {
    use aijob_core::queue::tx::meta;
    use aijob_core::store::{Op, Store};
    let taken = CACHE_COUNTS.with(|m| {
        let mut m = m.borrow_mut();
        m.spill();
        m.map.remove(id)
    });
    let Some((hits, coalesced)) = taken else { return };
    let mut ops = Vec::new();
    for (field, n) in [(meta::HITS, hits), (meta::COALESCED, coalesced)] {
        if n > 0 {
            ops.push(Op::HIncrBy(q.meta(), field.as_bytes().to_vec(), n));
        }
    }
    if let Err(e) = store.apply(ops) {
        let what = format!("{hits} cache hits and {coalesced} coalesced requests not counted in meta");
        report(ctx, "timer cache counts", id, &what, &e);
    }
}

/// Logs (rate-limited) what the timer could not do for queue `id`: nothing else would
/// tell, as no client waits on the timer.
fn report(
    ctx: *mut raw::RedisModuleCtx,
    kind: &'static str,
    (db, name): &QueueId,
    what: &str,
    e: &dyn std::fmt::Display,
) {
    logging::warn(ctx, kind, || format!("timer: queue '{}' (db {db}): {what}: {e}", String::from_utf8_lossy(name)));
}

/// A command touched `q`: the timer looks at it on its next tick.
pub fn touch(ctx: *mut raw::RedisModuleCtx, q: &QueueKeys) {
    let db = ffi::selected_db(ctx);
    CLOCK.with(|c| {
        let mut c = c.borrow_mut();
        let ticks = c.ticks;
        if let Some((d, name, t)) = &c.last_touch {
            if *d == db && *t == ticks && name.as_slice() == q.name() {
                return;
            }
        }
        c.queues.insert((db, q.name().to_vec()), 0);
        c.last_touch = Some((db, q.name().to_vec(), ticks));
    });
}

/// Whether this node knows every queue it holds: a master whose discovery SCAN (after a
/// load or a promotion) has finished. A replica learns nothing from replicated effects.
pub fn knows_all_queues(ctx: *mut raw::RedisModuleCtx) -> bool {
    let flags = ffi::context_flags(ctx);
    let master = flags & ffi::FLAG_MASTER != 0 && flags & ffi::FLAG_LOADING == 0;
    master
        && CLOCK.with(|c| {
            let c = c.borrow();
            c.was_master && c.scan.is_none()
        })
}

/// Runs `f` over the names of the known queues of the selected db (QUEUE.LIST).
pub fn with_queue_names<T>(ctx: *mut raw::RedisModuleCtx, f: impl FnOnce(&mut dyn Iterator<Item = &[u8]>) -> T) -> T {
    let db = ffi::selected_db(ctx);
    CLOCK.with(|c| {
        let c = c.borrow();
        let mut names = c.queues.keys().filter(|(d, _)| *d == db).map(|(_, name)| name.as_slice());
        f(&mut names)
    })
}

/// Every known queue (the repair's rounds visit them).
pub fn queue_ids() -> Vec<QueueId> {
    CLOCK.with(|c| c.borrow().queues.keys().cloned().collect())
}

pub fn start(ctx: &Context) {
    ctx.create_timer(TICK, on_tick, ());
}

fn on_tick(ctx: &Context, _: ()) {
    let raw_ctx = ctx.ctx;
    let flags = ffi::context_flags(raw_ctx);
    let master = flags & ffi::FLAG_MASTER != 0 && flags & ffi::FLAG_LOADING == 0;
    crate::info::c::timer_ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    CLOCK.with(|c| c.borrow_mut().ticks += 1);
    let mut backlog = false;
    if master {
        let started = Instant::now();
        crate::guard::guard(raw_ctx, "the timer", || {
            discover(raw_ctx);
            backlog = run_due(raw_ctx);
        });
        let took = started.elapsed().as_micros() as u64;
        crate::info::c::timer_max_tick_us.fetch_max(took, std::sync::atomic::Ordering::Relaxed);
    }
    crate::eviction::on_tick(raw_ctx);
    if master {
        let known = crate::repair::Known { ids: queue_ids, touch };
        let risky = crate::eviction::risk().is_some();
        crate::guard::guard(raw_ctx, "the repair", || crate::repair::on_tick(raw_ctx, risky, known));
    }
    CLOCK.with(|c| {
        let mut c = c.borrow_mut();
        if !master {
            c.was_master = false;
        }
        crate::info::c::known_queues.store(c.queues.len() as u64, std::sync::atomic::Ordering::Relaxed);
    });
    // with work left over, come back soon: the server still gets 10 ms of every 20
    ctx.create_timer(if backlog { BACKLOG_TICK } else { TICK }, on_tick, ());
}

/// On becoming master (at startup or by promotion), SCAN every db for queues.
fn discover(ctx: *mut raw::RedisModuleCtx) {
    let begin = CLOCK.with(|c| {
        let mut c = c.borrow_mut();
        let begin = !c.was_master;
        c.was_master = true;
        begin
    });
    if begin {
        match ffi::ScanCursor::new() {
            Ok(cursor) => CLOCK.with(|c| c.borrow_mut().scan = Some((0, cursor))),
            Err(e) => logging::warn(ctx, "timer scan", || format!("timer: cannot look for queues: {e}")),
        }
    }
    let Some((mut db, cursor)) = CLOCK.with(|c| c.borrow_mut().scan.take()) else { return };
    let home = ffi::selected_db(ctx);
    let mut found: Vec<QueueId> = Vec::new();
    let mut steps = 0;
    let finished = loop {
        if ffi::select_db(ctx, db).is_err() {
            break true;
        }
        let more = cursor.scan(ctx, &mut |name| {
            if let Some(q) = queue_of_key(name) {
                let id = (db, q.to_vec());
                if !found.contains(&id) {
                    found.push(id);
                }
            }
        });
        steps += 1;
        if !more {
            db += 1;
            cursor.restart();
        }
        if steps >= SCAN_STEPS_PER_TICK {
            break false;
        }
    };
    select_home(ctx, home);
    CLOCK.with(|c| {
        let mut c = c.borrow_mut();
        for id in found {
            c.queues.entry(id).or_insert(0);
        }
        // a finished walk drops (and so destroys) its cursor
        c.scan = (!finished).then_some((db, cursor));
    });
}

/// Back to the db the timer's context had before it visited others.
fn select_home(ctx: *mut raw::RedisModuleCtx, home: c_int) {
    if let Err(e) = ffi::select_db(ctx, home) {
        logging::warn(ctx, "timer select", || format!("timer: cannot select db {home} again: {e}"));
    }
}

/// Runs the moves of every queue whose next look has come; true when work is left over.
fn run_due(ctx: *mut raw::RedisModuleCtx) -> bool {
    let now = ffi::now_ms();
    let pressure = observe_memory(ctx, now);
    let due: Vec<QueueId> =
        CLOCK.with(|c| c.borrow().queues.iter().filter(|(_, at)| **at <= now).map(|(id, _)| id.clone()).collect());
    if due.is_empty() {
        return false;
    }
    let mut backlog = false;
    let started = Instant::now();
    let home = ffi::selected_db(ctx);
    let config = crate::config::snapshot();
    let mut budget = MOVES_PER_TICK;
    for id in due {
        if budget == 0 || started.elapsed() > TIME_PER_TICK {
            backlog = true;
            break;
        }
        let next = tick_queue(ctx, &id, now, config, &pressure, &mut budget, started);
        backlog |= next.is_some_and(|at| at <= now);
        CLOCK.with(|c| {
            let mut c = c.borrow_mut();
            match next {
                Some(at) => {
                    c.queues.insert(id, at);
                }
                None => {
                    c.queues.remove(&id);
                }
            }
        });
    }
    select_home(ctx, home);
    let moves = (MOVES_PER_TICK - budget) as u64;
    crate::info::c::timer_max_tick_moves.fetch_max(moves, std::sync::atomic::Ordering::Relaxed);
    backlog
}

/// Whether used memory is over `maxmemory` this tick, and when it last was. While it is,
/// the timer only frees memory (`aijob_core::oom`); when it stops being, every known queue
/// is looked at again, as the moves held back were left out of its next look.
fn observe_memory(ctx: *mut raw::RedisModuleCtx, now: i64) -> Pressure {
    let full = ffi::memory_full(ctx);
    if full {
        crate::info::c::timer_paused_oom.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    CLOCK.with(|c| {
        let mut c = c.borrow_mut();
        if full {
            c.full_seen_at = Some(now);
        } else if c.was_full {
            c.queues.values_mut().for_each(|at| *at = 0);
        }
        c.was_full = full;
        Pressure { full, full_seen_at: c.full_seen_at }
    })
}

/// Moves per call of the core's tick: small, so the time budget is checked often.
const MOVES_PER_CHUNK: usize = 32;

/// One queue's moves, in chunks while the tick's budget lasts; returns when to look again
/// (None: the queue is gone).
fn tick_queue(
    ctx: *mut raw::RedisModuleCtx,
    (db, name): &QueueId,
    now: i64,
    config: aijob_core::config::Config,
    pressure: &Pressure,
    budget: &mut usize,
    started: Instant,
) -> Option<i64> {
    let id = (*db, name.clone());
    let q = match QueueKeys::new(name) {
        Ok(q) => q,
        Err(e) => {
            report(ctx, "timer queue name", &id, "dropped from the timer", &e);
            return None;
        }
    };
    if let Err(e) = ffi::select_db(ctx, *db) {
        report(ctx, "timer select", &id, "dropped from the timer", &e);
        return None;
    }
    let mut store = RedisStore::new(ctx, now);
    if pressure.allows(ClockMove::FlushCacheCounts) {
        flush_cache_counts(ctx, &mut store, &id, &q);
    }
    let mut entropy = OsEntropy;
    let mut env = Env { now, config, entropy: &mut entropy };
    loop {
        let report = match clock::tick_under(&mut store, &q, &mut env, (*budget).min(MOVES_PER_CHUNK), pressure) {
            Ok(r) => r,
            Err(e) => {
                report(ctx, "timer moves", &id, "moves not made, next try in 1 s", &e);
                return Some(now + 1_000);
            }
        };
        *budget = budget.saturating_sub(report.moves);
        crate::info::add(&report.tally);
        crate::info::c::timer_moves.fetch_add(report.moves as u64, std::sync::atomic::Ordering::Relaxed);
        crate::info::c::oom_lease_renewals
            .fetch_add(report.renewed_leases as u64, std::sync::atomic::Ordering::Relaxed);
        if report.more {
            if *budget == 0 || started.elapsed() > TIME_PER_TICK {
                return Some(now);
            }
            continue;
        }
        break;
    }
    match clock::next_due_under(&mut store, &q, pressure) {
        Ok(Some(at)) => Some(at),
        Ok(None) => {
            use aijob_core::store::Store;
            let alive = store.exists(&q.meta()).unwrap_or_else(|e| {
                report(ctx, "timer next due", &id, "cannot tell whether the queue is gone, kept", &e);
                true
            });
            alive.then_some(i64::MAX)
        }
        Err(e) => {
            report(ctx, "timer next due", &id, "next due time unknown, next try in 1 s", &e);
            Some(now + 1_000)
        }
    }
}
