//! Whether this server may evict aijob's keys: `maxmemory` set and a `maxmemory-policy`
//! other than `noeviction` (core `config::eviction_risk`; docs/operations.md says why the
//! `volatile-*` policies count too). Looked at when the module loads, after every CONFIG
//! SET (the server event of Redis 7.0), and on the timer's ticks: when the context's
//! MAXMEMORY/EVICT flags change (a replica promoted), and every second on a server without
//! the event. While the risk stands and `aijob.allow-eviction` is no, new work is refused
//! (`config::eviction_guard`); either way it is logged and shown in `INFO aijob`.

use std::cell::Cell;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

use aijob_core::config::{eviction_risk, MemoryPolicy};
use redis_module::raw;

use crate::config::{ALLOW_EVICTION, EVICTION_RISK, NO_EVICTION_RISK};
use crate::{ffi, logging};

/// The policy and `maxmemory` last read, for INFO.
static POLICY: AtomicU8 = AtomicU8::new(0);
static MAXMEMORY: AtomicU64 = AtomicU64::new(0);

/// Timer ticks between looks where the server has no config event (one second).
const FALLBACK_TICKS: u32 = 10;

#[derive(Clone, Copy, Default)]
struct Watch {
    /// The server calls `on_config_change` after every CONFIG SET.
    event: bool,
    /// The context's MAXMEMORY and EVICT flags at the last look.
    flags: c_int,
    ticks: u32,
    /// What was last logged: (risk, policy, allowed).
    logged: Option<(bool, u8, bool)>,
}

thread_local! {
    static WATCH: Cell<Watch> = Cell::new(Watch::default());
}

/// At load: subscribes to config changes (or falls back to the timer) and looks once.
pub fn watch(ctx: *mut raw::RedisModuleCtx) {
    let event = match ffi::on_config_change(ctx, on_config_change) {
        Ok(()) => true,
        Err(e) => {
            logging::notice(ctx, "eviction watch", || {
                format!("{e}: the maxmemory policy is looked at every second instead of on CONFIG SET")
            });
            false
        }
    };
    WATCH.with(|w| w.set(Watch { event, ..w.get() }));
    look(ctx);
}

fn on_config_change(ctx: *mut raw::RedisModuleCtx) {
    crate::guard::guard(ctx, "the eviction watch", || look(ctx));
}

/// Every timer tick, on every node: looks again when the flags moved (or, without the
/// config event, every second).
pub fn on_tick(ctx: *mut raw::RedisModuleCtx) {
    crate::guard::guard(ctx, "the eviction watch", || {
        let flags = ffi::context_flags(ctx) & (ffi::FLAG_MAXMEMORY | ffi::FLAG_EVICT);
        let mut w = WATCH.with(Cell::get);
        w.ticks = w.ticks.wrapping_add(1);
        let due = flags != w.flags || (!w.event && w.ticks.is_multiple_of(FALLBACK_TICKS));
        w.flags = flags;
        WATCH.with(|cell| cell.set(w));
        if due {
            look(ctx);
        }
    });
}

/// Reads the memory settings and updates the risk; logs when what it means changed.
fn look(ctx: *mut raw::RedisModuleCtx) {
    let (maxmemory, name) = match ffi::memory_settings(ctx) {
        Ok(v) => v,
        Err(e) => {
            logging::warn(ctx, "eviction watch", || format!("cannot tell whether keys may be evicted: {e}"));
            return;
        }
    };
    let policy = MemoryPolicy::parse(&name);
    let risky = eviction_risk(policy, maxmemory);
    POLICY.store(policy.code(), Relaxed);
    MAXMEMORY.store(maxmemory, Relaxed);
    EVICTION_RISK.store(if risky { policy.code() } else { NO_EVICTION_RISK }, Relaxed);
    WATCH
        .with(|w| w.set(Watch { flags: ffi::context_flags(ctx) & (ffi::FLAG_MAXMEMORY | ffi::FLAG_EVICT), ..w.get() }));
    report(ctx, risky, policy, maxmemory);
}

fn report(ctx: *mut raw::RedisModuleCtx, risky: bool, policy: MemoryPolicy, maxmemory: u64) {
    let allowed = ALLOW_EVICTION.load(Relaxed);
    let now = (risky, policy.code(), allowed);
    let before = WATCH.with(|w| {
        let mut v = w.get();
        let before = v.logged.replace(now);
        w.set(v);
        before
    });
    if before == Some(now) || (!risky && before.is_none_or(|b| !b.0)) {
        return;
    }
    let name = policy.as_str();
    let what = policy.evicts().unwrap_or("nothing");
    match (risky, allowed) {
        (true, false) => logging::warn(ctx, "eviction refused", || {
            format!(
                "maxmemory-policy {name} with maxmemory {maxmemory} can evict aijob's keys ({what}): new jobs and \
                 claims are refused until maxmemory-policy is noeviction or aijob.allow-eviction is yes \
                 (docs/operations.md, Eviction and memory policy)"
            )
        }),
        (true, true) => logging::warn(ctx, "eviction allowed", || {
            format!(
                "maxmemory-policy {name} with maxmemory {maxmemory} can evict aijob's keys ({what}) and \
                 aijob.allow-eviction is yes: jobs may be lost; the timer and QUEUE.REPAIR heal the indexes"
            )
        }),
        (false, _) => {
            logging::notice(ctx, "eviction cleared", || {
                format!("maxmemory-policy {name}, maxmemory {maxmemory}: aijob's keys are not evicted; new work is accepted")
            })
        }
    }
}

/// The policy that may evict aijob's keys now, if any.
pub fn risk() -> Option<MemoryPolicy> {
    match EVICTION_RISK.load(Relaxed) {
        NO_EVICTION_RISK => None,
        code => Some(MemoryPolicy::from_code(code)),
    }
}

/// The fields of `INFO aijob` about eviction.
pub fn info_fields() -> Vec<(&'static str, String)> {
    let refused = crate::config::eviction_guard().is_some();
    vec![
        ("eviction_risk", u8::from(risk().is_some()).to_string()),
        ("eviction_policy", MemoryPolicy::from_code(POLICY.load(Relaxed)).as_str().to_string()),
        ("eviction_maxmemory", MAXMEMORY.load(Relaxed).to_string()),
        ("eviction_new_work_refused", u8::from(refused).to_string()),
    ]
}
