//! The module configs (`CONFIG SET aijob.<name>`), backed by atomics and read once per
//! command into the core's `Config`.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering::Relaxed};

use aijob_core::config::{Config, MemoryPolicy};

pub static RETENTION_MS: AtomicI64 = AtomicI64::new(3_600_000);
pub static CACHE_TTL_MS: AtomicI64 = AtomicI64::new(86_400_000);
pub static LEASE_MS: AtomicI64 = AtomicI64::new(30_000);
pub static MAX_ATTEMPTS: AtomicI64 = AtomicI64::new(3);
pub static BACKOFF_BASE_MS: AtomicI64 = AtomicI64::new(1_000);
pub static BACKOFF_MAX_MS: AtomicI64 = AtomicI64::new(3_600_000);
pub static MAX_PAYLOAD_BYTES: AtomicI64 = AtomicI64::new(16 * 1024 * 1024);
pub static EVENTS_MAXLEN: AtomicI64 = AtomicI64::new(10_000);
pub static JSON_MAX_DEPTH: AtomicI64 = AtomicI64::new(128);
pub static EVENT_RESULT_MAX_BYTES: AtomicI64 = AtomicI64::new(4096);
pub static MAX_USAGE: AtomicI64 = AtomicI64::new(100_000_000);
pub static STREAM_MAX_CHUNKS: AtomicI64 = AtomicI64::new(100_000);
pub static STREAM_MAX_BYTES: AtomicI64 = AtomicI64::new(16 * 1024 * 1024);
pub static FLOW_MAX_PARENTS: AtomicI64 = AtomicI64::new(100);
pub static FLOW_MAX_DEPENDENTS: AtomicI64 = AtomicI64::new(10_000);
/// `aijob.allow-eviction`: the operator accepts that an eviction policy may lose jobs.
pub static ALLOW_EVICTION: AtomicBool = AtomicBool::new(false);

/// The `maxmemory-policy` (`MemoryPolicy::code`) under which this server may evict aijob's
/// keys, or `NO_EVICTION_RISK`; kept by `eviction.rs`.
pub static EVICTION_RISK: AtomicU8 = AtomicU8::new(NO_EVICTION_RISK);
pub const NO_EVICTION_RISK: u8 = u8::MAX;

/// The policy new work is refused under: the risk stands and the operator did not accept it.
pub fn eviction_guard() -> Option<MemoryPolicy> {
    match EVICTION_RISK.load(Relaxed) {
        NO_EVICTION_RISK => None,
        _ if ALLOW_EVICTION.load(Relaxed) => None,
        code => Some(MemoryPolicy::from_code(code)),
    }
}

pub fn snapshot() -> Config {
    Config {
        retention_ms: RETENTION_MS.load(Relaxed),
        cache_ttl_ms: CACHE_TTL_MS.load(Relaxed),
        lease_ms: LEASE_MS.load(Relaxed),
        max_attempts: MAX_ATTEMPTS.load(Relaxed),
        backoff_base_ms: BACKOFF_BASE_MS.load(Relaxed),
        backoff_max_ms: BACKOFF_MAX_MS.load(Relaxed),
        max_payload_bytes: MAX_PAYLOAD_BYTES.load(Relaxed),
        events_maxlen: EVENTS_MAXLEN.load(Relaxed),
        json_max_depth: JSON_MAX_DEPTH.load(Relaxed),
        event_result_max_bytes: EVENT_RESULT_MAX_BYTES.load(Relaxed),
        max_usage: MAX_USAGE.load(Relaxed),
        stream_max_chunks: STREAM_MAX_CHUNKS.load(Relaxed),
        stream_max_bytes: STREAM_MAX_BYTES.load(Relaxed),
        flow_max_parents: FLOW_MAX_PARENTS.load(Relaxed),
        flow_max_dependents: FLOW_MAX_DEPENDENTS.load(Relaxed),
        eviction_guard: eviction_guard(),
    }
}
