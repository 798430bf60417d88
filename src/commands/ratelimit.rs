//! RATELIMIT.* commands: strict multi-window limits in the caller's own key.

use std::sync::atomic::Ordering::Relaxed;

use aijob_core::grammar;
use aijob_core::limiter;
use aijob_core::ratelimit::{Decision, Window};
use aijob_core::Result;

use crate::command::arg::*;
use crate::command::key;
use crate::command::{Call, Command, Info, Keys};
use crate::reply::Out;
use crate::store;

/// The words of RATELIMIT.HIT and RATELIMIT.PEEK after the command name.
const WINDOWS_AND_COST: &[crate::command::Arg] = &[key("key"), WINDOW, ti("COST", "c").opt()];

/// RATELIMIT.HIT key LIMIT n PERIOD ms [LIMIT n PERIOD ms ...] [COST c]
pub const HIT: Command<(Vec<u8>, Vec<Window>, i64)> = Command {
    info: Info {
        name: "ratelimit.hit",
        flags: "write deny-oom fast",
        arity: -6,
        summary: "Admits COST if every window allows it, strictly: [allowed, remaining, retry_after_ms, reset_ms].",
        complexity: "O(W) with W the windows",
        keys: Keys::Own(key::RW | key::UPDATE),
        args: WINDOWS_AND_COST,
    },
    parse: |words, _| grammar::limits::ratelimit(words),
    handle: hit,
};

fn hit(c: &mut Call, (_, windows, cost): (Vec<u8>, Vec<Window>, i64)) -> Result<Out> {
    let mut hold = None;
    let key = c.arg_str(0, &mut hold)?;
    let d = store::limiter::hit(c.ctx, key, &windows, cost, c.now)?;
    let counter = if d.allowed { &crate::info::c::ratelimit_allowed } else { &crate::info::c::ratelimit_denied };
    counter.fetch_add(1, Relaxed);
    Ok(reply(d))
}

/// RATELIMIT.PEEK key LIMIT n PERIOD ms [LIMIT n PERIOD ms ...] [COST c]
pub const PEEK: Command<(Vec<u8>, Vec<Window>, i64)> = Command {
    info: Info {
        name: "ratelimit.peek",
        flags: "readonly fast",
        arity: -6,
        summary: "What RATELIMIT.HIT would answer, consuming nothing.",
        complexity: "O(W) with W the windows",
        keys: Keys::Own(key::RO),
        args: WINDOWS_AND_COST,
    },
    parse: |words, _| grammar::limits::ratelimit(words),
    handle: peek,
};

fn peek(c: &mut Call, (_, windows, cost): (Vec<u8>, Vec<Window>, i64)) -> Result<Out> {
    let mut hold = None;
    let key = c.arg_str(0, &mut hold)?;
    Ok(reply(store::limiter::peek(c.ctx, key, &windows, cost, c.now)?))
}

/// RATELIMIT.RESET key
pub const RESET: Command<Vec<u8>> = Command {
    info: Info {
        name: "ratelimit.reset",
        flags: "write fast",
        arity: -2,
        summary: "Forgets a rate limit's state: 1, or 0 when there was none.",
        complexity: "O(1)",
        keys: Keys::Own(key::RM | key::DELETE),
        args: &[key("key")],
    },
    parse: |words, _| grammar::limits::key_only(words),
    handle: |c, key| Ok(Out::Int(limiter::reset(&mut c.store, &key)?)),
};

fn reply(d: Decision) -> Out {
    Out::Array(vec![
        Out::Int(d.allowed as i64),
        Out::Int(d.remaining),
        Out::Int(d.retry_after_ms),
        Out::Int(d.reset_ms),
    ])
}
