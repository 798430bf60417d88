//! The timer's share of healing (core `queue::repair`), on the master, a bounded slice per
//! tick:
//!
//! - Rounds: each known queue's health numbers are read about once a second (a few O(1)
//!   reads). A queue whose numbers disagree gets rounds of the repair pass (the same pass
//!   and cursor as QUEUE.REPAIR) until the pass ends; a pass that ends with the same
//!   numbers as its last is not started again for them (an entry the pass cannot reach,
//!   e.g. a stale `+inf` lease, waits for its next move). While the server may evict
//!   aijob's keys, every queue gets rounds all the time.
//! - The sweep: an incremental SCAN of every db that hands each job record it meets to
//!   `repair::heal_job` and each schedule to `repair::heal_schedule`, finding what no index
//!   names any more (a command may not scan the keyspace). It runs when a pass found damage, or ended with numbers that still
//!   disagree, and while eviction is possible (then every 10 s at most).

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::raw::c_int;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use aijob_core::keys::{job_of_key, queue_of_key, schedule_of_key, QueueKeys};
use aijob_core::queue::repair::{self, RepairReport};
use aijob_core::queue::tx::Env;
use aijob_core::Result;
use redis_module::raw;

use crate::entropy::OsEntropy;
use crate::ffi;
use crate::logging;
use crate::store::RedisStore;

/// A known queue: its db and name.
pub type QueueId = (c_int, Vec<u8>);

/// What the repair needs of the timer's registry of known queues, handed in by the timer so
/// that this file does not depend on it.
#[derive(Clone, Copy)]
pub struct Known {
    /// Every known queue.
    pub ids: fn() -> Vec<QueueId>,
    /// Marks a queue of the selected db for a look at the next tick.
    pub touch: fn(*mut raw::RedisModuleCtx, &QueueKeys),
}

/// Entries a round walks in one queue, and in all queues of a tick.
const ROUND_ENTRIES: usize = 256;
const TICK_ENTRIES: usize = 1_024;
/// Time a tick's rounds may take.
const TICK_TIME: Duration = Duration::from_millis(2);
/// How often each queue's numbers are read.
const LOOK_EVERY_MS: i64 = 1_000;
/// SCAN steps a tick of the sweep runs, and the pause between sweeps while eviction is on.
const SWEEP_STEPS: usize = 100;
const SWEEP_PAUSE_MS: i64 = 10_000;

#[derive(Default)]
struct Repairs {
    /// Queues still to look at in this second, and when the next second starts.
    todo: Vec<QueueId>,
    next_look: i64,
    /// Each queue's health numbers when its last pass ended.
    after_pass: HashMap<QueueId, [i64; 9]>,
    /// The sweep under way: its db and cursor.
    sweep: Option<(c_int, ffi::ScanCursor)>,
    /// A sweep was asked for (another one, when one is under way).
    sweep_wanted: bool,
    next_auto_sweep: i64,
}

thread_local! {
    static REPAIRS: RefCell<Repairs> = RefCell::new(Repairs::default());
}

/// Asks for a sweep of the keyspace: some records may have lost every index.
pub fn request_sweep() {
    REPAIRS.with(|r| r.borrow_mut().sweep_wanted = true);
}

/// Whether a sweep runs or waits to run (`aijob_repair_sweeping`).
pub fn sweeping() -> bool {
    REPAIRS.with(|r| {
        let r = r.borrow();
        r.sweep.is_some() || r.sweep_wanted
    })
}

/// Counts what a pass (of the timer or of QUEUE.REPAIR) did in INFO; asks for a sweep
/// when it found damage.
pub fn account(report: &RepairReport) {
    crate::info::add(&report.tally);
    crate::info::c::repair_counters_set.fetch_add(report.counters, Relaxed);
    if report.done {
        crate::info::c::repair_passes.fetch_add(1, Relaxed);
    }
    if report.found_damage() {
        request_sweep();
    }
}

/// One timer tick's share, on the master; `risky`: the server may evict aijob's keys.
pub fn on_tick(ctx: *mut raw::RedisModuleCtx, risky: bool, known: Known) {
    // while memory is full the timer only deletes (docs/operations.md#memory-pressure);
    // putting index entries back waits for the first tick with room
    if ffi::memory_full(ctx) {
        return;
    }
    let started = Instant::now();
    let home = ffi::selected_db(ctx);
    rounds(ctx, risky, started, known);
    sweep(ctx, risky, started, known);
    if let Err(e) = ffi::select_db(ctx, home) {
        logging::warn(ctx, "repair select", || format!("repair: cannot select db {home} again: {e}"));
    }
    crate::info::c::repair_max_tick_us.fetch_max(started.elapsed().as_micros() as u64, Relaxed);
}

fn rounds(ctx: *mut raw::RedisModuleCtx, risky: bool, started: Instant, known: Known) {
    let now = ffi::now_ms();
    REPAIRS.with(|r| {
        let mut r = r.borrow_mut();
        if r.todo.is_empty() && now >= r.next_look {
            r.todo = (known.ids)();
            r.next_look = now + LOOK_EVERY_MS;
        }
    });
    let config = crate::config::snapshot();
    let mut budget = TICK_ENTRIES;
    while budget > 0 && started.elapsed() < TICK_TIME {
        let Some(id) = REPAIRS.with(|r| r.borrow_mut().todo.pop()) else { break };
        if let Err(e) = round(ctx, &id, risky, now, config, &mut budget, known) {
            let (db, name) = &id;
            logging::warn(ctx, "repair round", || {
                format!("repair: queue '{}' (db {db}): a round failed: {e}", String::from_utf8_lossy(name))
            });
        }
    }
}

/// Reads a queue's numbers and, when they call for it, walks one round of its pass.
fn round(
    ctx: *mut raw::RedisModuleCtx,
    id: &QueueId,
    risky: bool,
    now: i64,
    config: aijob_core::config::Config,
    budget: &mut usize,
    known: Known,
) -> Result<()> {
    let (db, name) = id;
    ffi::select_db(ctx, *db)?;
    let q = QueueKeys::new(name)?;
    let mut store = RedisStore::new(ctx, now);
    let health = repair::health(&mut store, &q)?;
    let last = REPAIRS.with(|r| r.borrow().after_pass.get(id).copied());
    let fresh_damage = health.broken() && last != Some(health.numbers);
    if !(health.pass_open || risky || fresh_damage) {
        return Ok(());
    }
    let mut entropy = OsEntropy;
    let mut env = Env { now, config, entropy: &mut entropy };
    let report = repair::repair(&mut store, &q, &mut env, ROUND_ENTRIES.min(*budget))?;
    *budget = budget.saturating_sub(report.checked.max(1));
    account(&report);
    if report.found_damage() {
        // re-indexed leases or delays may be due already
        (known.touch)(ctx, &q);
    }
    if report.done {
        let after = repair::health(&mut store, &q)?;
        if after.pairs_disagree() && last != Some(after.numbers) {
            request_sweep();
        }
        REPAIRS.with(|r| r.borrow_mut().after_pass.insert(id.clone(), after.numbers));
    }
    Ok(())
}

/// A tick of the sweep: starts one when asked (or, while eviction is possible, when the
/// pause is over), then walks on.
fn sweep(ctx: *mut raw::RedisModuleCtx, risky: bool, started: Instant, known: Known) {
    let now = ffi::now_ms();
    let cursor = REPAIRS.with(|r| {
        let mut r = r.borrow_mut();
        if r.sweep.is_none() && (r.sweep_wanted || (risky && now >= r.next_auto_sweep)) {
            match ffi::ScanCursor::new() {
                Ok(c) => {
                    r.sweep = Some((0, c));
                    r.sweep_wanted = false;
                }
                Err(e) => logging::warn(ctx, "repair sweep", || format!("repair: cannot sweep the keyspace: {e}")),
            }
        }
        r.sweep.take()
    });
    let Some((mut db, cursor)) = cursor else { return };
    let mut found: Vec<(c_int, Vec<u8>)> = Vec::new();
    let mut finished = false;
    for _ in 0..SWEEP_STEPS {
        if ffi::select_db(ctx, db).is_err() {
            finished = true;
            break;
        }
        let more = cursor.scan(ctx, &mut |name| {
            if queue_of_key(name).is_some() {
                found.push((db, name.to_vec()));
            }
        });
        if !more {
            db += 1;
            cursor.restart();
        }
        if started.elapsed() > TICK_TIME * 2 {
            break;
        }
    }
    heal(ctx, found, now, known);
    REPAIRS.with(|r| {
        let mut r = r.borrow_mut();
        if finished {
            crate::info::c::repair_sweeps.fetch_add(1, Relaxed);
            r.next_auto_sweep = now + SWEEP_PAUSE_MS;
        } else {
            r.sweep = Some((db, cursor));
        }
    });
}

/// The keys of queues the sweep met: each queue is known to the timer again (its `meta`
/// may be what went), and each job record is healed when its status index lost it.
fn heal(ctx: *mut raw::RedisModuleCtx, found: Vec<(c_int, Vec<u8>)>, now: i64, known: Known) {
    let config = crate::config::snapshot();
    let mut entropy = OsEntropy;
    for (db, key) in found {
        let Some(name) = queue_of_key(&key) else { continue };
        let (Ok(q), Ok(())) = (QueueKeys::new(name), ffi::select_db(ctx, db)) else { continue };
        (known.touch)(ctx, &q);
        let mut store = RedisStore::new(ctx, now);
        let healed = match (job_of_key(&key), schedule_of_key(&key)) {
            (Some((_, id)), _) => {
                let mut env = Env { now, config, entropy: &mut entropy };
                repair::heal_job(&mut store, &q, &mut env, id)
            }
            (_, Some((_, schedule))) => repair::heal_schedule(&mut store, &q, schedule),
            _ => continue,
        };
        match healed {
            Ok(tally) => crate::info::add(&tally),
            Err(e) => logging::warn(ctx, "repair sweep", || {
                format!("repair: key '{}' (db {db}) left alone: {e}", String::from_utf8_lossy(&key))
            }),
        }
    }
}
