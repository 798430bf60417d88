//! `INFO aijob`: module-wide counters, kept in memory (no key outside a queue's slot).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use aijob_core::queue::tx::Tally;
use redis_module::InfoContext;

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        #[allow(non_upper_case_globals)]
        pub mod c {
            use super::AtomicU64;
            $(pub static $name: AtomicU64 = AtomicU64::new(0);)*
        }
        fn fields() -> Vec<(&'static str, u64)> {
            vec![$((stringify!($name), c::$name.load(Relaxed)),)*]
        }
    };
}

counters!(
    jobs_created,
    jobs_completed,
    jobs_failed,
    jobs_canceled,
    jobs_retried,
    claims,
    expired_leases,
    cache_hits,
    cache_misses,
    coalesced,
    ratelimit_allowed,
    ratelimit_denied,
    charges_denied,
    usage_settled,
    usage_unsettled,
    schedule_runs,
    timer_ticks,
    timer_moves,
    timer_max_tick_us,
    timer_max_tick_moves,
    known_queues,
    panics,
    oom_refusals,
    timer_paused_oom,
    oom_lease_renewals,
    index_entries_dropped,
    records_reindexed,
    repair_passes,
    repair_counters_set,
    repair_sweeps,
    repair_max_tick_us,
    offloaded,
    offload_inflight,
);

pub fn add(t: &Tally) {
    let pairs = [
        (&c::jobs_created, t.created),
        (&c::jobs_completed, t.completed),
        (&c::jobs_failed, t.failed),
        (&c::jobs_canceled, t.canceled),
        (&c::jobs_retried, t.retried),
        (&c::claims, t.claims),
        (&c::expired_leases, t.expired_leases),
        (&c::cache_hits, t.cache_hits),
        (&c::cache_misses, t.cache_misses),
        (&c::coalesced, t.coalesced),
        (&c::schedule_runs, t.schedule_runs),
        (&c::charges_denied, t.charges_denied),
        (&c::usage_settled, t.usage_settled),
        (&c::usage_unsettled, t.usage_unsettled),
        (&c::index_entries_dropped, t.index_entries_dropped),
        (&c::records_reindexed, t.records_reindexed),
    ];
    for (counter, n) in pairs {
        if n > 0 {
            counter.fetch_add(n, Relaxed);
        }
    }
}

/// Writes the `aijob` INFO section: the counters, then `extra` (the state other parts
/// report, handed in by lib.rs so this file depends on none of them).
pub fn section(ctx: &InfoContext, extra: Vec<(&'static str, String)>) {
    let build = || -> redis_module::RedisResult<()> {
        let mut section = ctx.builder().add_section("stats");
        for (name, value) in fields() {
            section = section.field(name, value.to_string())?;
        }
        for (name, value) in extra {
            section = section.field(name, value)?;
        }
        section.build_section()?.build_info()?;
        Ok(())
    };
    if let Err(e) = build() {
        crate::logging::warn(std::ptr::null_mut(), "info", || format!("INFO aijob could not be built: {e}"));
    }
}
