//! aijob: a Redis module that runs the whole life of an AI call inside Redis.
//! This file is the module's table: configs, INFO, init. The commands are in `commands/`
//! (one file per family, listed in `commands::ALL`, registered by `register.rs`), the
//! logic in the `aijob-core` crate.

mod blocking;
mod command;
mod commands;
mod config;
mod entropy;
mod ffi;
mod guard;
mod info;
mod logging;
mod offload;
mod register;
mod reply;
mod store;
mod timer;

use info::info as info_section;
use redis_module::configuration::ConfigurationFlags;
use redis_module::{redis_module, Context, InfoContext, RedisResult, RedisString, Status};

fn init(ctx: &Context, _args: &[RedisString]) -> Status {
    if register::register(ctx) == Status::Err {
        return Status::Err;
    }
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
        ],
        string: [],
        bool: [],
        enum: [],
        module_args_as_configuration: true,
    ]
}
