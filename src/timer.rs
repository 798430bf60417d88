//! The clock of SPEC section 1: every 100 ms, on the master only, each queue with work
//! due gets its moves (core `queue::clock::tick`), with a bounded budget per tick.
//! Which queues exist is kept in memory (a command on Q may create no key outside
//! `aijob:{Q}:*`): commands register the queues they touch, and a master that just
//! loaded its data or was just promoted discovers the rest with an incremental SCAN.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::raw::{c_int, c_void};
use std::time::{Duration, Instant};

use aijob_core::keys::{queue_of_key, QueueKeys};
use aijob_core::queue::clock;
use aijob_core::queue::tx::Env;
use redis_module::{raw, Context};

use crate::entropy::OsEntropy;
use crate::store::api::{self, rm};
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
type QueueId = (c_int, Vec<u8>);

#[derive(Default)]
struct Clock {
    /// When each known queue next needs a look (0 = at the next tick).
    queues: HashMap<QueueId, i64>,
    /// Discovery after load or promotion: the db being scanned and its cursor.
    scan: Option<(c_int, *mut raw::RedisModuleScanCursor)>,
    was_master: bool,
    /// Ticks so far: `last_touch` is only good within the tick it was made in.
    ticks: u64,
    /// The queue the last command touched, and in which tick: touching it again before
    /// the next tick changes nothing, so the common case skips the map (and the key copy).
    last_touch: Option<(c_int, Vec<u8>, u64)>,
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
    let db = selected_db(ctx);
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
    let id = (selected_db(ctx), q.name().to_vec());
    CACHE_COUNTS.with(|m| {
        let mut m = m.borrow_mut();
        m.spill();
        m.map.get(&id).copied().unwrap_or((0, 0))
    })
}

fn flush_cache_counts(store: &mut RedisStore, id: &QueueId, q: &QueueKeys) {
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
    let _ = store.apply(ops);
}

fn selected_db(ctx: *mut raw::RedisModuleCtx) -> c_int {
    match unsafe { raw::RedisModule_GetSelectedDb } {
        Some(f) => unsafe { f(ctx) },
        None => 0,
    }
}

/// A command touched `q`: the timer looks at it on its next tick.
pub fn touch(ctx: *mut raw::RedisModuleCtx, q: &QueueKeys) {
    let db = selected_db(ctx);
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
    let flags = api::context_flags(ctx);
    let master = flags & api::FLAG_MASTER != 0 && flags & api::FLAG_LOADING == 0;
    master
        && CLOCK.with(|c| {
            let c = c.borrow();
            c.was_master && c.scan.is_none()
        })
}

/// Runs `f` over the names of the known queues of the selected db (QUEUE.LIST).
pub fn with_queue_names<T>(ctx: *mut raw::RedisModuleCtx, f: impl FnOnce(&mut dyn Iterator<Item = &[u8]>) -> T) -> T {
    let db = selected_db(ctx);
    CLOCK.with(|c| {
        let c = c.borrow();
        let mut names = c.queues.keys().filter(|(d, _)| *d == db).map(|(_, name)| name.as_slice());
        f(&mut names)
    })
}

pub fn start(ctx: &Context) {
    ctx.create_timer(TICK, on_tick, ());
}

fn on_tick(ctx: &Context, _: ()) {
    let raw_ctx = ctx.ctx;
    let flags = api::context_flags(raw_ctx);
    let master = flags & api::FLAG_MASTER != 0 && flags & api::FLAG_LOADING == 0;
    crate::info::c::timer_ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    CLOCK.with(|c| c.borrow_mut().ticks += 1);
    let mut backlog = false;
    if master {
        let started = Instant::now();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            discover(raw_ctx);
            backlog = run_due(raw_ctx);
        }));
        let took = started.elapsed().as_micros() as u64;
        crate::info::c::timer_max_tick_us.fetch_max(took, std::sync::atomic::Ordering::Relaxed);
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
        if let Ok(cursor) = new_cursor() {
            CLOCK.with(|c| c.borrow_mut().scan = Some((0, cursor)));
        }
    }
    let Some((mut db, cursor)) = CLOCK.with(|c| c.borrow().scan) else { return };
    let home = selected_db(ctx);
    let mut found: Vec<QueueId> = Vec::new();
    let mut steps = 0;
    let finished = loop {
        if select_db(ctx, db).is_err() {
            break true;
        }
        let more = scan_step(ctx, cursor, db, &mut found);
        steps += 1;
        if !more {
            db += 1;
            restart_cursor(cursor);
        }
        if steps >= SCAN_STEPS_PER_TICK {
            break false;
        }
    };
    let _ = select_db(ctx, home);
    CLOCK.with(|c| {
        let mut c = c.borrow_mut();
        for id in found {
            c.queues.entry(id).or_insert(0);
        }
        c.scan = if finished { None } else { Some((db, cursor)) };
    });
    if finished {
        destroy_cursor(cursor);
    }
}

fn new_cursor() -> aijob_core::Result<*mut raw::RedisModuleScanCursor> {
    Ok(rm!(RedisModule_ScanCursorCreate()))
}

fn restart_cursor(cursor: *mut raw::RedisModuleScanCursor) {
    if let Some(f) = unsafe { raw::RedisModule_ScanCursorRestart } {
        unsafe { f(cursor) };
    }
}

fn destroy_cursor(cursor: *mut raw::RedisModuleScanCursor) {
    if let Some(f) = unsafe { raw::RedisModule_ScanCursorDestroy } {
        unsafe { f(cursor) };
    }
}

fn select_db(ctx: *mut raw::RedisModuleCtx, db: c_int) -> Result<(), ()> {
    match unsafe { raw::RedisModule_SelectDb } {
        Some(f) if unsafe { f(ctx, db) } == raw::REDISMODULE_OK as c_int => Ok(()),
        _ => Err(()),
    }
}

struct ScanSink<'a> {
    db: c_int,
    found: &'a mut Vec<QueueId>,
}

/// One SCAN step; false when the db has been walked through.
fn scan_step(
    ctx: *mut raw::RedisModuleCtx,
    cursor: *mut raw::RedisModuleScanCursor,
    db: c_int,
    found: &mut Vec<QueueId>,
) -> bool {
    let mut sink = ScanSink { db, found };
    match unsafe { raw::RedisModule_Scan } {
        Some(f) => unsafe { f(ctx, cursor, Some(on_key), &mut sink as *mut _ as *mut c_void) != 0 },
        None => false,
    }
}

unsafe extern "C" fn on_key(
    _ctx: *mut raw::RedisModuleCtx,
    name: *mut raw::RedisModuleString,
    _key: *mut raw::RedisModuleKey,
    privdata: *mut c_void,
) {
    let sink = &mut *(privdata as *mut ScanSink);
    if let Ok(bytes) = api::bytes_of(name) {
        if let Some(q) = queue_of_key(&bytes) {
            let id = (sink.db, q.to_vec());
            if !sink.found.contains(&id) {
                sink.found.push(id);
            }
        }
    }
}

/// Runs the moves of every queue whose next look has come; true when work is left over.
fn run_due(ctx: *mut raw::RedisModuleCtx) -> bool {
    let now = api::now_ms();
    let due: Vec<QueueId> =
        CLOCK.with(|c| c.borrow().queues.iter().filter(|(_, at)| **at <= now).map(|(id, _)| id.clone()).collect());
    if due.is_empty() {
        return false;
    }
    let mut backlog = false;
    let started = Instant::now();
    let home = selected_db(ctx);
    let config = crate::config::snapshot();
    let mut budget = MOVES_PER_TICK;
    for id in due {
        if budget == 0 || started.elapsed() > TIME_PER_TICK {
            backlog = true;
            break;
        }
        let next = tick_queue(ctx, &id, now, config, &mut budget, started);
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
    let _ = select_db(ctx, home);
    let moves = (MOVES_PER_TICK - budget) as u64;
    crate::info::c::timer_max_tick_moves.fetch_max(moves, std::sync::atomic::Ordering::Relaxed);
    backlog
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
    budget: &mut usize,
    started: Instant,
) -> Option<i64> {
    let Ok(q) = QueueKeys::new(name) else { return None };
    select_db(ctx, *db).ok()?;
    let mut store = RedisStore::new(ctx, now);
    let id = (*db, name.clone());
    flush_cache_counts(&mut store, &id, &q);
    let mut entropy = OsEntropy;
    let mut env = Env { now, config, entropy: &mut entropy };
    loop {
        let report = match clock::tick(&mut store, &q, &mut env, (*budget).min(MOVES_PER_CHUNK)) {
            Ok(r) => r,
            Err(_) => return Some(now + 1_000),
        };
        *budget = budget.saturating_sub(report.moves);
        crate::info::add(&report.tally);
        crate::info::c::timer_moves.fetch_add(report.moves as u64, std::sync::atomic::Ordering::Relaxed);
        if report.more {
            if *budget == 0 || started.elapsed() > TIME_PER_TICK {
                return Some(now);
            }
            continue;
        }
        break;
    }
    match clock::next_due(&mut store, &q) {
        Ok(Some(at)) => Some(at),
        Ok(None) => {
            use aijob_core::store::Store;
            let alive = store.exists(&q.meta()).unwrap_or(true);
            alive.then_some(i64::MAX)
        }
        Err(_) => Some(now + 1_000),
    }
}
