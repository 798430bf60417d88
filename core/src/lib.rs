//! aijob-core: the pure logic of aijob. No Redis here: the module (`src/`) parses a
//! command with `grammar`, runs the logic in `queue` (and the other families) against its
//! `Store`, and replies. Everything in this crate is unit-tested with `cargo test`.

// A panic inside redis-server takes it down with its users' data: production code may not
// unwrap, expect or panic (tests may).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod args;
pub mod backoff;
pub mod config;
pub mod cron;
pub mod error;
pub mod grammar;
pub mod hash;
pub mod jcs;
pub mod job;
pub mod json;
pub mod keys;
pub mod limiter;
pub mod names;
pub mod oom;
pub mod queue;
pub mod queues;
pub mod ratelimit;
pub mod record;
pub mod rng;
pub mod store;
pub mod throttle;

#[cfg(test)]
pub mod mem;

pub use error::{AiError, Code, Result};
