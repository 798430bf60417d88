//! The module's settings, read once per command by the shell and passed to the logic.

use crate::error::{AiError, Code, Result};

/// Every config of docs/configs.md with its default, minimum and maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub retention_ms: i64,
    pub cache_ttl_ms: i64,
    pub lease_ms: i64,
    pub max_attempts: i64,
    pub backoff_base_ms: i64,
    pub backoff_max_ms: i64,
    pub max_payload_bytes: i64,
    pub events_maxlen: i64,
    /// JSON inputs nest at most this deep (`crate::json::Limits`).
    pub json_max_depth: i64,
    /// A done event carries the result inline up to this size, else only its size.
    pub event_result_max_bytes: i64,
    /// The largest USAGE a JOB.UPDATE takes.
    pub max_usage: i64,
    /// A job's output stream holds at most this many chunks per attempt (JOB.APPEND).
    pub stream_max_chunks: i64,
    /// ... and at most this many bytes of chunks per attempt.
    pub stream_max_bytes: i64,
    /// JOB.CREATE ... AFTER names at most this many parents.
    pub flow_max_parents: i64,
    /// At most this many jobs may name one parent in AFTER (the work of finishing it).
    pub flow_max_dependents: i64,
    /// Some(policy) while the server may evict aijob's keys under `policy` and the operator
    /// has not accepted that (`aijob.allow-eviction no`): new work is refused.
    pub eviction_guard: Option<MemoryPolicy>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            retention_ms: 3_600_000,
            cache_ttl_ms: 86_400_000,
            lease_ms: 30_000,
            max_attempts: 3,
            backoff_base_ms: 1_000,
            backoff_max_ms: 3_600_000,
            max_payload_bytes: 16 * 1024 * 1024,
            events_maxlen: 10_000,
            json_max_depth: 128,
            event_result_max_bytes: 4096,
            max_usage: 100_000_000,
            stream_max_chunks: 100_000,
            stream_max_bytes: 16 * 1024 * 1024,
            flow_max_parents: 100,
            flow_max_dependents: 10_000,
            eviction_guard: None,
        }
    }
}

impl Config {
    /// What every JSON input (PAYLOAD, RESULT, META, CACHE.SET's json) is held to.
    pub fn json_limits(&self) -> crate::json::Limits {
        crate::json::Limits { max_bytes: self.max_payload_bytes, max_depth: self.json_max_depth }
    }

    /// New work (a new job, by any command or a schedule, and a claim) is refused while the
    /// server may evict aijob's keys, unless the operator accepted that risk: a job made
    /// now could vanish, or sit in a queue no claim finds. Work in progress goes on.
    pub fn admit_new_work(&self) -> Result<()> {
        match self.eviction_guard {
            None => Ok(()),
            Some(policy) => Err(AiError::new(
                Code::Eviction,
                format!(
                    "maxmemory-policy {} with maxmemory set can evict aijob's keys and lose jobs: \
                     new jobs and claims are refused; set maxmemory-policy noeviction, or \
                     CONFIG SET aijob.allow-eviction yes to accept the risk",
                    policy.as_str()
                ),
            )),
        }
    }
}

/// A server's `maxmemory-policy`, as far as aijob's keys are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryPolicy {
    #[default]
    NoEviction,
    AllKeysLru,
    AllKeysLfu,
    AllKeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
    /// A policy this version does not know (a newer server's): taken as one that evicts.
    Other,
}

const POLICY_NAMES: [(MemoryPolicy, &str); 8] = [
    (MemoryPolicy::NoEviction, "noeviction"),
    (MemoryPolicy::AllKeysLru, "allkeys-lru"),
    (MemoryPolicy::AllKeysLfu, "allkeys-lfu"),
    (MemoryPolicy::AllKeysRandom, "allkeys-random"),
    (MemoryPolicy::VolatileLru, "volatile-lru"),
    (MemoryPolicy::VolatileLfu, "volatile-lfu"),
    (MemoryPolicy::VolatileRandom, "volatile-random"),
    (MemoryPolicy::VolatileTtl, "volatile-ttl"),
];

impl MemoryPolicy {
    /// The policy named as `CONFIG GET maxmemory-policy` and `INFO memory` show it.
    pub fn parse(name: &[u8]) -> MemoryPolicy {
        POLICY_NAMES.iter().find(|(_, n)| n.as_bytes().eq_ignore_ascii_case(name)).map_or(MemoryPolicy::Other, |p| p.0)
    }

    pub fn as_str(self) -> &'static str {
        POLICY_NAMES.iter().find(|(p, _)| *p == self).map_or("unknown", |p| p.1)
    }

    /// What of aijob's this policy may evict once `maxmemory` is reached; None for nothing.
    /// The `volatile-*` policies evict keys with a TTL, and aijob gives one to every
    /// finished job's record (its retention), every cache entry, and every RATELIMIT and
    /// LOCK key: a result nobody has read yet, a limiter's count, a held lock can vanish.
    pub fn evicts(self) -> Option<&'static str> {
        match self {
            MemoryPolicy::NoEviction => None,
            MemoryPolicy::VolatileLru
            | MemoryPolicy::VolatileLfu
            | MemoryPolicy::VolatileRandom
            | MemoryPolicy::VolatileTtl => {
                Some("keys with a TTL: finished jobs' records and results, cache entries, rate-limit and lock keys")
            }
            _ => Some("any key: job records, the queue indexes, leases, queue counters, rate-limit and lock keys"),
        }
    }

    /// Stored in an atomic by the shell: 0 to 8 (`Other` is 8).
    pub fn code(self) -> u8 {
        POLICY_NAMES.iter().position(|(p, _)| *p == self).unwrap_or(POLICY_NAMES.len()) as u8
    }

    pub fn from_code(code: u8) -> MemoryPolicy {
        POLICY_NAMES.get(code as usize).map_or(MemoryPolicy::Other, |p| p.0)
    }
}

/// Whether a server with this policy and `maxmemory` (bytes, 0 for no limit) may evict
/// aijob's keys: only `noeviction`, or no limit at all, is safe.
pub fn eviction_risk(policy: MemoryPolicy, maxmemory: u64) -> bool {
    maxmemory > 0 && policy.evicts().is_some()
}

/// (name, default, min, max) of every numeric config, as registered with Redis.
pub const LIMITS: [(&str, i64, i64, i64); 15] = [
    ("retention-ms", 3_600_000, 0, 31_536_000_000_000),
    ("cache-ttl-ms", 86_400_000, 1, 31_536_000_000_000),
    ("lease-ms", 30_000, 1, 31_536_000_000),
    ("max-attempts", 3, 1, 1_000_000),
    ("backoff-base-ms", 1_000, 0, 31_536_000_000),
    ("backoff-max-ms", 3_600_000, 0, 31_536_000_000),
    ("max-payload-bytes", 16 * 1024 * 1024, 1, 536_870_912),
    ("events-maxlen", 10_000, 0, 1_000_000_000),
    ("json-max-depth", 128, 1, 100_000),
    ("event-result-max-bytes", 4096, 0, 536_870_912),
    ("max-usage", 100_000_000, 1, 1_000_000_000_000_000),
    ("stream-max-chunks", 100_000, 1, 1_000_000_000),
    ("stream-max-bytes", 16 * 1024 * 1024, 1, 4_294_967_296),
    ("flow-max-parents", 100, 1, 10_000),
    ("flow-max-dependents", 10_000, 1, 1_000_000),
];

/// A record keeps its key this long past its logical expiry, as a safety net for data
/// loaded without the module; the module itself deletes it at the logical expiry.
pub const EXPIRY_GRACE_MS: i64 = 5_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_limits_table() {
        let c = Config::default();
        let defaults = [
            c.retention_ms,
            c.cache_ttl_ms,
            c.lease_ms,
            c.max_attempts,
            c.backoff_base_ms,
            c.backoff_max_ms,
            c.max_payload_bytes,
            c.events_maxlen,
            c.json_max_depth,
            c.event_result_max_bytes,
            c.max_usage,
            c.stream_max_chunks,
            c.stream_max_bytes,
            c.flow_max_parents,
            c.flow_max_dependents,
        ];
        for ((name, default, min, max), value) in LIMITS.iter().zip(defaults) {
            assert_eq!(*default, value, "{name}");
            assert!(min <= default && default <= max, "{name}");
        }
        assert_eq!(LIMITS.len(), defaults.len());
        assert_eq!(c.json_limits(), crate::json::Limits::default());
        assert_eq!(c.eviction_guard, None);
    }

    #[test]
    fn only_noeviction_or_no_limit_is_safe() {
        for (policy, name) in POLICY_NAMES {
            assert_eq!(MemoryPolicy::parse(name.as_bytes()), policy);
            assert_eq!(MemoryPolicy::parse(name.to_uppercase().as_bytes()), policy);
            assert_eq!(policy.as_str(), name);
            assert_eq!(MemoryPolicy::from_code(policy.code()), policy);
            assert!(!eviction_risk(policy, 0), "{name} without maxmemory");
            assert_eq!(eviction_risk(policy, 1 << 20), name != "noeviction", "{name}");
        }
        assert_eq!(MemoryPolicy::parse(b"allkeys-future"), MemoryPolicy::Other);
        assert!(eviction_risk(MemoryPolicy::Other, 1));
        assert_eq!(MemoryPolicy::from_code(MemoryPolicy::Other.code()), MemoryPolicy::Other);
    }

    #[test]
    fn new_work_is_refused_naming_the_policy_and_the_config() {
        assert!(Config::default().admit_new_work().is_ok());
        let guarded = Config { eviction_guard: Some(MemoryPolicy::AllKeysLru), ..Config::default() };
        let e = guarded.admit_new_work().unwrap_err().to_string();
        assert!(e.starts_with("EVICTION maxmemory-policy allkeys-lru "), "{e}");
        assert!(e.contains("aijob.allow-eviction yes"), "{e}");
        assert!(e.bytes().all(|b| (b' '..=b'~').contains(&b)), "{e}");
    }
}
