//! One file per command family. Each handler parses, runs the core, replies.

pub mod cache;
pub mod job;
pub mod lock;
pub mod queue;
pub mod ratelimit;
pub mod schedule;
