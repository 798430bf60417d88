//! The module's own lines in the server log (`RedisModule_Log`), rate-limited by the core's
//! `Throttle`: at most one line per kind every 10 s, the next one saying how many were held
//! back. The timer runs ten times a second, so an error it meets every tick must not flood
//! the log.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use aijob_core::throttle::Throttle;
use redis_module::raw;

use crate::ffi;

thread_local! {
    static GATE: RefCell<Throttle> = RefCell::new(Throttle::new(Duration::from_secs(10)));
}

/// Logs the line `line` makes at warning level, unless a line of `kind` was logged less
/// than 10 s ago (then `line` is not even made).
pub fn warn(ctx: *mut raw::RedisModuleCtx, kind: &'static str, line: impl FnOnce() -> String) {
    log(ctx, c"warning", kind, line);
}

/// Like `warn`, at notice level: news for the operator that is no fault.
pub fn notice(ctx: *mut raw::RedisModuleCtx, kind: &'static str, line: impl FnOnce() -> String) {
    log(ctx, c"notice", kind, line);
}

fn log(ctx: *mut raw::RedisModuleCtx, level: &std::ffi::CStr, kind: &'static str, line: impl FnOnce() -> String) {
    let admitted = GATE.with(|g| {
        let mut g = g.try_borrow_mut().ok()?;
        Some((g.admit(kind, Instant::now())?, g.quiet()))
    });
    let Some((held, quiet)) = admitted else { return };
    let mut text = line();
    if held > 0 {
        text.push_str(&format!(" ({held} more like it in the last {} s not logged)", quiet.as_secs()));
    }
    ffi::log(ctx, level, &text);
}
