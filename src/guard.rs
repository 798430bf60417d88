//! The one panic guard, around every command body, blocked-client callback and timer tick:
//! a panic inside redis-server would take it down with all its users' data. A caught panic
//! is counted (`aijob_panics` in INFO aijob) and logged; the caller answers with
//! [`INTERNAL_ERROR`] where a client waits.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;

use redis_module::raw;

/// The reply to a client whose command panicked.
pub const INTERNAL_ERROR: &str = "ERR aijob hit an internal error (a bug; the server is fine, please report it)";

/// Runs `f`; None when it panicked (counted and logged, naming `what`).
pub fn guard<T>(ctx: *mut raw::RedisModuleCtx, what: &'static str, f: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(payload) => {
            crate::info::c::panics.fetch_add(1, Relaxed);
            let message = match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
                (Some(s), _) => s.to_string(),
                (_, Some(s)) => s.clone(),
                _ => "no message".to_string(),
            };
            crate::logging::warn(ctx, what, || {
                format!("caught a panic in {what}: {message} (a bug, please report it; the server goes on)")
            });
            None
        }
    }
}
