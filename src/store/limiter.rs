//! RATELIMIT.HIT / PEEK straight on the key: the core's `limiter::hit_bytes` reads the
//! state from the string's own bytes (no copy) and encodes the new one into a reused
//! buffer; this file only opens the key, writes that buffer in place and replicates the
//! write as `SET key <state> PXAT <instant>`. This runs on every call an app makes to a
//! provider, so it must stay close to a plain SET.

use aijob_core::limiter::{self, Write};
use aijob_core::ratelimit::{Decision, State, Window};
use aijob_core::{AiError, Result};
use redis_module::raw;
use std::cell::RefCell;

use crate::ffi::{self, OpenKey};

/// A decode target and an encode buffer, kept between calls so a hit allocates nothing.
#[derive(Default)]
struct Scratch {
    state: State,
    buf: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// RATELIMIT.HIT on `name`: admits and consumes `cost` in every window, or nothing.
pub fn hit(
    ctx: *mut raw::RedisModuleCtx,
    name: *mut raw::RedisModuleString,
    windows: &[Window],
    cost: i64,
    now: i64,
) -> Result<Decision> {
    SCRATCH.with(|s| {
        let mut guard = s.try_borrow_mut().map_err(|_| AiError::syntax("rate limit state busy"))?;
        let sc = &mut *guard;
        // One lookup for the read and the write. (Closing a key opened for writing
        // counts as touching it for WATCH, also after a denied hit, which writes nothing.)
        let k = OpenKey::open_raw(ctx, name, ffi::READ | ffi::WRITE)?
            .ok_or_else(|| AiError::syntax("could not open a key for writing"))?;
        let (d, write) = limiter::hit_bytes(stored(&k)?, &mut sc.state, windows, cost, now, &mut sc.buf)?;
        match write {
            Write::Keep => {}
            Write::Delete => {
                k.delete()?;
                ffi::replicate_del(ctx, name)?;
            }
            Write::Set { expire_at } => {
                k.string_write(&sc.buf)?;
                k.expire_at(expire_at)?;
                ffi::replicate_set_pxat(ctx, name, &sc.buf, expire_at)?;
            }
        }
        Ok(d)
    })
}

/// RATELIMIT.PEEK on `name`: HIT's answer, consuming nothing.
pub fn peek(
    ctx: *mut raw::RedisModuleCtx,
    name: *mut raw::RedisModuleString,
    windows: &[Window],
    cost: i64,
    now: i64,
) -> Result<Decision> {
    SCRATCH.with(|s| {
        let mut guard = s.try_borrow_mut().map_err(|_| AiError::syntax("rate limit state busy"))?;
        let k = OpenKey::open_raw(ctx, name, ffi::READ)?;
        let bytes = match &k {
            Some(k) => stored(k)?,
            None => None,
        };
        limiter::peek_bytes(bytes, &mut guard.state, windows, cost, now)
    })
}

/// The bytes of the limiter's string key, borrowed in place; None when there is no key.
fn stored(k: &OpenKey) -> Result<Option<&[u8]>> {
    match k.key_type()? {
        ffi::KEYTYPE_STRING => Ok(Some(k.string_bytes()?)),
        ffi::KEYTYPE_EMPTY => Ok(None),
        _ => Err(AiError::wrong_type()),
    }
}
