//! JOB.CLAIM ... BLOCK on Redis's own blocked-client machinery: the client waits on the
//! queue's `meta` key; every move that makes a job claimable signals that key, and Redis
//! then calls `on_ready` for each waiter in the order they blocked.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use aijob_core::grammar;
use aijob_core::keys::QueueKeys;
use aijob_core::{AiError, Result};
use redis_module::{raw, Context};

use crate::command::Call;
use crate::reply::Out;
use crate::store::api::{self, rm, RStr};

/// Inside MULTI, a script, or where Redis forbids blocking, a claim does not block.
pub fn may_block(ctx: *mut raw::RedisModuleCtx) -> bool {
    api::context_flags(ctx) & (api::FLAG_MULTI | api::FLAG_LUA | api::FLAG_DENY_BLOCKING) == 0
}

pub fn block(ctx: *mut raw::RedisModuleCtx, q: &QueueKeys, timeout_ms: i64) -> Result<()> {
    let key = RStr::new(ctx, &q.meta())?;
    let mut keys = [key.ptr];
    let bc = rm!(RedisModule_BlockClientOnKeys(
        ctx,
        Some(on_ready),
        Some(on_timeout),
        None,
        timeout_ms,
        keys.as_mut_ptr(),
        1,
        std::ptr::null_mut()
    ));
    if bc.is_null() {
        return Err(AiError::syntax("could not block the client"));
    }
    Ok(())
}

/// Redis calls this when the queue was signalled: claim now, or stay blocked (ERR).
unsafe extern "C" fn on_ready(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let owned = copy_args(argv, argc);
        let slices: Vec<&[u8]> = owned.iter().skip(1).map(|a| a.as_slice()).collect();
        let mut call = Call::new(ctx, slices);
        let (q, a) = grammar::job::claim(&call.args)?;
        let (got, denied_for) = crate::commands::claim_ready::claim_now(&mut call, &q, &a)?;
        crate::info::add(&call.tally);
        if let (true, Some(wait)) = (got.is_empty(), denied_for) {
            wake_later(ctx, &q, call.now, wait);
        }
        Ok::<_, AiError>(got)
    }));
    match outcome {
        Ok(Ok(got)) if got.is_empty() => raw::REDISMODULE_ERR as c_int,
        Ok(Ok(got)) => {
            Out::Array(got).emit(ctx);
            raw::REDISMODULE_OK as c_int
        }
        Ok(Err(e)) => {
            reply_error(ctx, &e.to_string());
            raw::REDISMODULE_OK as c_int
        }
        Err(_) => {
            reply_error(ctx, "ERR aijob hit an internal error");
            raw::REDISMODULE_OK as c_int
        }
    }
}

unsafe extern "C" fn on_timeout(
    ctx: *mut raw::RedisModuleCtx,
    _argv: *mut *mut raw::RedisModuleString,
    _argc: c_int,
) -> c_int {
    Out::NullArray.emit(ctx);
    raw::REDISMODULE_OK as c_int
}

unsafe fn copy_args(argv: *mut *mut raw::RedisModuleString, argc: c_int) -> Vec<Vec<u8>> {
    (0..argc.max(0) as usize).map(|i| api::bytes_of(*argv.add(i)).unwrap_or_default()).collect()
}

fn reply_error(ctx: *mut raw::RedisModuleCtx, msg: &str) {
    let line = crate::command::error_line(msg);
    if let (Ok(c), Some(f)) = (std::ffi::CString::new(line), unsafe { raw::RedisModule_ReplyWithError }) {
        unsafe { f(ctx, c.as_ptr()) };
    }
}

thread_local! {
    /// The earliest pending charge wake-up per (db, queue meta key), so a crowd of waiters
    /// refused by the same limit shares one timer.
    static WAKES: RefCell<HashMap<(c_int, Vec<u8>), i64>> = RefCell::new(HashMap::new());
}

/// A charged claim was refused for `wait` ms: signal the queue then, so its waiters try
/// again exactly when the limits would admit (a timer, not polling).
pub fn wake_later(ctx: *mut raw::RedisModuleCtx, q: &QueueKeys, now: i64, wait: i64) {
    let db = match unsafe { raw::RedisModule_GetSelectedDb } {
        Some(f) => unsafe { f(ctx) },
        None => 0,
    };
    let at = now.saturating_add(wait.max(1));
    let id = (db, q.meta());
    let scheduled = WAKES.with(|w| {
        let mut w = w.borrow_mut();
        match w.get(&id) {
            Some(t) if *t > now && *t <= at => false,
            _ => {
                w.insert(id.clone(), at);
                true
            }
        }
    });
    if scheduled {
        let context = Context::new(ctx);
        context.create_timer(Duration::from_millis(wait.max(1) as u64), signal, id);
    }
}

fn signal(ctx: &Context, id: (c_int, Vec<u8>)) {
    WAKES.with(|w| {
        let mut w = w.borrow_mut();
        if w.get(&id).is_some_and(|t| *t <= api::now_ms()) {
            w.remove(&id);
        }
    });
    if let Some(select) = unsafe { raw::RedisModule_SelectDb } {
        unsafe { select(ctx.ctx, id.0) };
    }
    if let (Ok(key), Some(f)) = (RStr::new(ctx.ctx, &id.1), unsafe { raw::RedisModule_SignalKeyAsReady }) {
        unsafe { f(ctx.ctx, key.ptr) };
    }
}
