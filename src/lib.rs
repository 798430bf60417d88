//! aijob: a Redis module that runs the whole life of an AI call inside Redis.
//! This file is the module's table: configs, INFO, init. The commands are in `commands/`
//! (one file per family, listed in `commands::ALL`, registered by `register.rs`), the
//! logic in the `aijob-core` crate.

// A panic inside redis-server takes it down with its users' data: production code may not
// unwrap, expect or panic (tests may).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod blocking;
mod command;
mod commands;
mod config;
mod entropy;
mod eviction;
mod ffi;
mod guard;
mod info;
mod logging;
mod offload;
mod readers;
mod register;
mod repair;
mod reply;
mod store;
mod timer;
mod waiters;

use redis_module::configuration::ConfigurationFlags;
use redis_module::{redis_module, Context, InfoContext, RedisResult, RedisString, Status};

fn init(ctx: &Context, _args: &[RedisString]) -> Status {
    if register::register(ctx) == Status::Err {
        return Status::Err;
    }
    eviction::watch(ctx.ctx);
    timer::start(ctx);
    Status::Ok
}

redis_module! {
    name: "aijob",
    version: 1_00_00,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [],
    init: init,
    info: info_section,
    // The commands are registered by `init` from the one list, `commands::ALL`.
    configurations: [
        i64: [
            ["retention-ms", &config::RETENTION_MS, 3_600_000, 0, 31_536_000_000_000, ConfigurationFlags::DEFAULT, None],
            ["cache-ttl-ms", &config::CACHE_TTL_MS, 86_400_000, 1, 31_536_000_000_000, ConfigurationFlags::DEFAULT, None],
            ["lease-ms", &config::LEASE_MS, 30_000, 1, 31_536_000_000, ConfigurationFlags::DEFAULT, None],
            ["max-attempts", &config::MAX_ATTEMPTS, 3, 1, 1_000_000, ConfigurationFlags::DEFAULT, None],
            ["backoff-base-ms", &config::BACKOFF_BASE_MS, 1_000, 0, 31_536_000_000, ConfigurationFlags::DEFAULT, None],
            ["backoff-max-ms", &config::BACKOFF_MAX_MS, 3_600_000, 0, 31_536_000_000, ConfigurationFlags::DEFAULT, None],
            ["max-payload-bytes", &config::MAX_PAYLOAD_BYTES, 16_777_216, 1, 536_870_912, ConfigurationFlags::DEFAULT, None],
            ["events-maxlen", &config::EVENTS_MAXLEN, 10_000, 0, 1_000_000_000, ConfigurationFlags::DEFAULT, None],
            ["json-max-depth", &config::JSON_MAX_DEPTH, 128, 1, 100_000, ConfigurationFlags::DEFAULT, None],
            ["event-result-max-bytes", &config::EVENT_RESULT_MAX_BYTES, 4096, 0, 536_870_912, ConfigurationFlags::DEFAULT, None],
            ["max-usage", &config::MAX_USAGE, 100_000_000, 1, 1_000_000_000_000_000, ConfigurationFlags::DEFAULT, None],
            ["stream-max-chunks", &config::STREAM_MAX_CHUNKS, 100_000, 1, 1_000_000_000, ConfigurationFlags::DEFAULT, None],
            ["stream-max-bytes", &config::STREAM_MAX_BYTES, 16_777_216, 1, 4_294_967_296, ConfigurationFlags::DEFAULT, None],
            ["flow-max-parents", &config::FLOW_MAX_PARENTS, 100, 1, 10_000, ConfigurationFlags::DEFAULT, None],
            ["flow-max-dependents", &config::FLOW_MAX_DEPENDENTS, 10_000, 1, 1_000_000, ConfigurationFlags::DEFAULT, None],
        ],
        string: [],
        bool: [
            ["allow-eviction", &config::ALLOW_EVICTION, false, ConfigurationFlags::DEFAULT, None],
        ],
        enum: [],
        module_args_as_configuration: true,
    ]
}

/// INFO aijob: the counters, the repair's sweep and the eviction watch.
fn info_section(ctx: &redis_module::InfoContext, _for_crash_report: bool) {
    let mut extra = vec![
        ("repair_sweeping", u8::from(repair::sweeping()).to_string()),
        ("readers_blocked", waiters::blocked().to_string()),
    ];
    extra.extend(eviction::info_fields());
    info::section(ctx, extra);
}
