//! aijob: a Redis module that runs the whole life of an AI call inside Redis.
//! This file is the registration table: commands, configs, INFO, init. The commands are
//! in `commands/` (one file per family), the logic in the `aijob-core` crate.

mod blocking;
mod command;
mod commands;
mod config;
mod docs;
mod entropy;
mod info;
mod reply;
mod store;
mod timer;

use info::info as info_section;
use redis_module::configuration::ConfigurationFlags;
use redis_module::{redis_module, Context, InfoContext, RedisResult, RedisString, Status};

/// Wraps a command body in the common runner: `cmd!(min_args, body)`, where min_args
/// counts the command name.
macro_rules! cmd {
    ($min:expr, $body:path) => {
        |ctx: &Context, args: Vec<RedisString>| command::run(ctx, args, $min, $body)
    };
}

fn init(ctx: &Context, _args: &[RedisString]) -> Status {
    timer::start(ctx);
    docs::register(ctx);
    Status::Ok
}

redis_module! {
    name: "aijob",
    version: 1_00_00,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [],
    init: init,
    info: info_section,
    commands: [
        ["job.create", cmd!(4, commands::job::create), "write deny-oom", 1, 1, 1, ""],
        ["job.get", cmd!(3, commands::job::get), "readonly", 1, 1, 1, ""],
        ["job.claim", commands::job::claim_entry, "write deny-oom getkeys-api", 1, 1, 1, ""],
        ["job.update", cmd!(3, commands::job::update), "write deny-oom", 1, 1, 1, ""],
        ["job.release", cmd!(5, commands::job::release), "write deny-oom", 1, 1, 1, ""],
        ["job.cancel", cmd!(3, commands::job::cancel), "write deny-oom", 1, 1, 1, ""],
        ["job.retry", cmd!(3, commands::job::retry), "write deny-oom", 1, 1, 1, ""],
        ["job.delete", cmd!(3, commands::job::delete), "write", 1, 1, 1, ""],
        ["job.list", cmd!(2, commands::job::list), "readonly", 1, 1, 1, ""],
        ["queue.stats", cmd!(2, commands::queue::stats), "readonly", 1, 1, 1, ""],
        ["queue.pause", cmd!(2, commands::queue::pause), "write", 1, 1, 1, ""],
        ["queue.resume", cmd!(2, commands::queue::resume), "write", 1, 1, 1, ""],
        ["queue.purge", cmd!(2, commands::queue::purge), "write", 1, 1, 1, ""],
        ["queue.groupcap", cmd!(4, commands::queue::groupcap), "write deny-oom", 1, 1, 1, ""],
        ["queue.groups", cmd!(2, commands::queue::groups), "readonly", 1, 1, 1, ""],
        ["queue.list", cmd!(1, commands::queue::list), "readonly", 0, 0, 0, ""],
        ["cache.getorqueue", cmd!(4, commands::cache::get_or_queue), "write deny-oom", 1, 1, 1, ""],
        ["cache.hash", cmd!(2, commands::cache::hash), "readonly fast", 0, 0, 0, ""],
        ["cache.get", cmd!(3, commands::cache::get), "readonly fast", 1, 1, 1, ""],
        ["cache.set", cmd!(4, commands::cache::set), "write deny-oom", 1, 1, 1, ""],
        ["cache.del", cmd!(3, commands::cache::del), "write", 1, 1, 1, ""],
        ["cache.clear", cmd!(2, commands::cache::clear), "write", 1, 1, 1, ""],
        ["ratelimit.hit", cmd!(6, commands::ratelimit::hit), "write deny-oom fast", 1, 1, 1, ""],
        ["ratelimit.peek", cmd!(6, commands::ratelimit::peek), "readonly fast", 1, 1, 1, ""],
        ["ratelimit.reset", cmd!(2, commands::ratelimit::reset), "write fast", 1, 1, 1, ""],
        ["lock.acquire", cmd!(4, commands::lock::acquire), "write deny-oom fast", 1, 1, 1, ""],
        ["lock.release", cmd!(3, commands::lock::release), "write fast", 1, 1, 1, ""],
        ["lock.extend", cmd!(5, commands::lock::extend), "write fast", 1, 1, 1, ""],
        ["schedule.set", cmd!(5, commands::schedule::set), "write deny-oom", 1, 1, 1, ""],
        ["schedule.get", cmd!(3, commands::schedule::get), "readonly", 1, 1, 1, ""],
        ["schedule.list", cmd!(2, commands::schedule::list), "readonly", 1, 1, 1, ""],
        ["schedule.del", cmd!(3, commands::schedule::del), "write", 1, 1, 1, ""],
        ["schedule.run", cmd!(3, commands::schedule::run), "write deny-oom", 1, 1, 1, ""],
        ["schedule.pause", cmd!(3, commands::schedule::pause), "write", 1, 1, 1, ""],
        ["schedule.resume", cmd!(3, commands::schedule::resume), "write", 1, 1, 1, ""],
    ],
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
        ],
        string: [],
        bool: [],
        enum: [],
        module_args_as_configuration: true,
    ]
}
