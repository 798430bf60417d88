//! The module's settings, read once per command by the shell and passed to the logic.

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
        }
    }
}

impl Config {
    /// What every JSON input (PAYLOAD, RESULT, META, CACHE.SET's json) is held to.
    pub fn json_limits(&self) -> crate::json::Limits {
        crate::json::Limits { max_bytes: self.max_payload_bytes, max_depth: self.json_max_depth }
    }
}

/// (name, default, min, max) of every numeric config, as registered with Redis.
pub const LIMITS: [(&str, i64, i64, i64); 11] = [
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
        ];
        for ((name, default, min, max), value) in LIMITS.iter().zip(defaults) {
            assert_eq!(*default, value, "{name}");
            assert!(min <= default && default <= max, "{name}");
        }
        assert_eq!(LIMITS.len(), defaults.len());
        assert_eq!(c.json_limits(), crate::json::Limits::default());
    }
}
