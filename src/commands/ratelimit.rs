//! RATELIMIT.* commands: strict multi-window limits in the caller's own key.

use std::sync::atomic::Ordering::Relaxed;

use aijob_core::args;
use aijob_core::limiter;
use aijob_core::ratelimit::Decision;
use aijob_core::Result;

use crate::command::Call;
use crate::reply::Out;

fn reply(d: Decision) -> Out {
    Out::Array(vec![
        Out::Int(d.allowed as i64),
        Out::Int(d.remaining),
        Out::Int(d.retry_after_ms),
        Out::Int(d.reset_ms),
    ])
}

/// RATELIMIT.HIT key LIMIT n PERIOD ms [LIMIT n PERIOD ms ...] [COST c]
pub fn hit(c: &mut Call) -> Result<Out> {
    let (key, windows, cost) = args::ratelimit(&c.args)?;
    let d = limiter::hit(&mut c.store, &key, &windows, cost, c.now)?;
    let counter = if d.allowed { &crate::info::c::ratelimit_allowed } else { &crate::info::c::ratelimit_denied };
    counter.fetch_add(1, Relaxed);
    Ok(reply(d))
}

/// RATELIMIT.PEEK key LIMIT n PERIOD ms [LIMIT n PERIOD ms ...] [COST c]
pub fn peek(c: &mut Call) -> Result<Out> {
    let (key, windows, cost) = args::ratelimit(&c.args)?;
    Ok(reply(limiter::peek(&mut c.store, &key, &windows, cost, c.now)?))
}

/// RATELIMIT.RESET key
pub fn reset(c: &mut Call) -> Result<Out> {
    let (key, _, _) = limiter::lock_args(&c.args, false, false)?;
    Ok(Out::Int(limiter::reset(&mut c.store, key)?))
}
