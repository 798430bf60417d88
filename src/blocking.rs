//! JOB.CLAIM ... BLOCK on Redis's own blocked-client machinery: the client waits on the
//! queue's `meta` key; every move that makes a job claimable signals that key, and Redis
//! then calls `on_ready` for each waiter in the order they blocked.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::raw::c_int;
use std::time::Duration;

use aijob_core::grammar;
use aijob_core::keys::QueueKeys;
use aijob_core::queue::claim::ClaimArgs;
use aijob_core::{AiError, Result};
use redis_module::{raw, Context};

use crate::command::Call;
use crate::ffi::{self, RStr};
use crate::reply::Out;

/// Inside MULTI, a script, or where Redis forbids blocking, a claim does not block.
pub fn may_block(ctx: *mut raw::RedisModuleCtx) -> bool {
    ffi::context_flags(ctx) & (ffi::FLAG_MULTI | ffi::FLAG_LUA | ffi::FLAG_DENY_BLOCKING) == 0
}

pub fn block(ctx: *mut raw::RedisModuleCtx, q: &QueueKeys, timeout_ms: i64) -> Result<()> {
    let key = RStr::new(ctx, &q.meta())?;
    ffi::block_on_key::<BlockedClaim>(ctx, &key, timeout_ms, ())
}

/// Blocks a JOB.UPDATE ... NEXT whose finish is done (`status` is the job's new status) and
/// whose claim found nothing: it waits like JOB.CLAIM ... BLOCK.
pub fn block_next(ctx: *mut raw::RedisModuleCtx, q: &QueueKeys, timeout_ms: i64, status: &'static str) -> Result<()> {
    let key = RStr::new(ctx, &q.meta())?;
    ffi::block_on_key::<BlockedNext>(ctx, &key, timeout_ms, status)
}

/// Reads the claim a blocked command asked for from its words (after the command name).
type ClaimParser = fn(&[&[u8]]) -> Result<(QueueKeys, ClaimArgs)>;

/// Runs a woken claim: its records, or None to stay blocked (nothing to claim yet).
fn claim_again(
    ctx: *mut raw::RedisModuleCtx,
    owned: &[Vec<u8>],
    parse: ClaimParser,
) -> Option<std::result::Result<Vec<Out>, String>> {
    let outcome = crate::guard::guard(ctx, "a blocked claim", || {
        let slices: Vec<&[u8]> = owned.iter().skip(1).map(|a| a.as_slice()).collect();
        let mut call = Call::new(ctx, slices);
        let (q, a) = parse(&call.args)?;
        let (got, denied_for) = crate::commands::claim_ready::claim_now(&mut call, &q, &a)?;
        crate::info::add(&call.tally);
        if let (true, Some(wait)) = (got.is_empty(), denied_for) {
            wake_later(ctx, &q, call.now, wait);
        }
        Ok::<_, AiError>(got)
    });
    match outcome {
        Some(Ok(got)) if got.is_empty() => None,
        Some(Ok(got)) => Some(Ok(got)),
        Some(Err(e)) => Some(Err(crate::command::error_line(&e.to_string()))),
        None => Some(Err(crate::guard::INTERNAL_ERROR.to_string())),
    }
}

/// The callbacks of a blocked JOB.CLAIM.
struct BlockedClaim;

impl ffi::Blocked for BlockedClaim {
    type Private = ();

    /// The queue was signalled: claim now and reply, or stay blocked (false).
    fn on_ready(ctx: *mut raw::RedisModuleCtx, owned: &[Vec<u8>], _: Option<&()>) -> bool {
        match claim_again(ctx, owned, grammar::job::claim) {
            None => return false,
            Some(Ok(got)) => Out::Array(got).emit(ctx),
            Some(Err(line)) => ffi::reply_error(ctx, &line),
        }
        true
    }

    fn on_timeout(ctx: *mut raw::RedisModuleCtx, _: Option<&()>) {
        Out::NullArray.emit(ctx);
    }
}

/// The callbacks of a blocked JOB.UPDATE ... NEXT: the reply is `[status, jobs]`, the
/// status the finish left, the jobs as JOB.CLAIM's.
struct BlockedNext;

fn next_claim(args: &[&[u8]]) -> Result<(QueueKeys, ClaimArgs)> {
    grammar::job::next_claim(args)?.ok_or_else(|| AiError::syntax("a blocked JOB.UPDATE without NEXT"))
}

impl ffi::Blocked for BlockedNext {
    type Private = &'static str;

    fn on_ready(ctx: *mut raw::RedisModuleCtx, owned: &[Vec<u8>], status: Option<&&'static str>) -> bool {
        match claim_again(ctx, owned, next_claim) {
            None => return false,
            Some(Ok(got)) => next_reply(status.copied().unwrap_or_default(), Out::Array(got)).emit(ctx),
            Some(Err(line)) => ffi::reply_error(ctx, &line),
        }
        true
    }

    fn on_timeout(ctx: *mut raw::RedisModuleCtx, status: Option<&&'static str>) {
        next_reply(status.copied().unwrap_or_default(), Out::NullArray).emit(ctx);
    }
}

/// JOB.UPDATE ... NEXT's reply: the finished job's status, then what the claim gave.
pub fn next_reply(status: &'static str, jobs: Out) -> Out {
    Out::Array(vec![Out::Static(status.as_bytes()), jobs])
}

thread_local! {
    /// The earliest pending charge wake-up per (db, queue meta key), so a crowd of waiters
    /// refused by the same limit shares one timer.
    static WAKES: RefCell<HashMap<(c_int, Vec<u8>), i64>> = RefCell::new(HashMap::new());
}

/// A charged claim was refused for `wait` ms: signal the queue then, so its waiters try
/// again exactly when the limits would admit (a timer, not polling).
pub fn wake_later(ctx: *mut raw::RedisModuleCtx, q: &QueueKeys, now: i64, wait: i64) {
    let db = ffi::selected_db(ctx);
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
    crate::guard::guard(ctx.ctx, "a claim wake-up", || {
        WAKES.with(|w| {
            let mut w = w.borrow_mut();
            if w.get(&id).is_some_and(|t| *t <= ffi::now_ms()) {
                w.remove(&id);
            }
        });
        let signalled = ffi::select_db(ctx.ctx, id.0)
            .and_then(|()| RStr::new(ctx.ctx, &id.1))
            .and_then(|key| ffi::signal_key_as_ready(ctx.ctx, &key));
        if let Err(e) = signalled {
            crate::logging::warn(ctx.ctx, "claim wake-up", || {
                format!("a charged claim's wake-up failed (its waiters try again on the next signal): {e}")
            });
        }
    });
}
