//! The one panic guard, around every command body, blocked-client callback, timer tick and
//! worker-thread parse: a panic inside redis-server would take it down with all its users'
//! data. A caught panic is counted (`aijob_panics` in INFO aijob) and logged (by the main
//! thread); the caller answers with [`INTERNAL_ERROR`] where a client waits.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;

use redis_module::raw;

/// The reply to a client whose command panicked.
pub const INTERNAL_ERROR: &str = "ERR aijob hit an internal error (a bug; the server is fine, please report it)";

/// Runs `f`; None when it panicked (counted and logged, naming `what`).
pub fn guard<T>(ctx: *mut raw::RedisModuleCtx, what: &'static str, f: impl FnOnce() -> T) -> Option<T> {
    match catch(f) {
        Ok(v) => Some(v),
        Err(message) => {
            log_panic(ctx, what, &message);
            None
        }
    }
}

/// Runs `f` on any thread; the panic's message when it panicked (counted, not logged: a
/// worker thread hands the message to the main thread, which calls [`log_panic`]).
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        crate::info::c::panics.fetch_add(1, Relaxed);
        match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
            (Some(s), _) => s.to_string(),
            (_, Some(s)) => s.clone(),
            _ => "no message".to_string(),
        }
    })
}

/// Logs a caught panic; on the main thread.
pub fn log_panic(ctx: *mut raw::RedisModuleCtx, what: &'static str, message: &str) {
    crate::logging::warn(ctx, what, || {
        format!("caught a panic in {what}: {message} (a bug, please report it; the server goes on)")
    });
}
