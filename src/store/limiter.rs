//! RATELIMIT.HIT / PEEK straight on the key: the core's `limiter::hit_bytes` reads the
//! state from the string's own bytes (no copy) and encodes the new one into a reused
//! buffer; this file only opens the key, writes that buffer in place and replicates the
//! write as `SET key <state> PXAT <instant>`. This runs on every call an app makes to a
//! provider, so it must stay close to a plain SET.

use std::cell::RefCell;
use std::os::raw::c_char;

use aijob_core::limiter::{self, Write};
use aijob_core::ratelimit::{Decision, State, Window};
use aijob_core::{AiError, Result};
use redis_module::raw;

use super::api::{self, rm, OpenKey};

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
        let k = OpenKey::open_raw(ctx, name, api::READ | api::WRITE)?
            .ok_or_else(|| AiError::syntax("could not open a key for writing"))?;
        let (d, write) = limiter::hit_bytes(stored(&k)?, &mut sc.state, windows, cost, now, &mut sc.buf)?;
        match write {
            Write::Keep => {}
            Write::Delete => {
                k.delete()?;
                rm!(RedisModule_Replicate(ctx, c"DEL".as_ptr(), c"s".as_ptr(), name));
            }
            Write::Set { expire_at } => {
                k.string_write(&sc.buf)?;
                k.expire_at(expire_at)?;
                rm!(RedisModule_Replicate(
                    ctx,
                    c"SET".as_ptr(),
                    c"sbcl".as_ptr(),
                    name,
                    sc.buf.as_ptr() as *const c_char,
                    sc.buf.len(),
                    c"PXAT".as_ptr(),
                    expire_at as std::os::raw::c_longlong
                ));
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
        let k = OpenKey::open_raw(ctx, name, api::READ)?;
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
        api::KEYTYPE_STRING => Ok(Some(k.string_bytes()?)),
        api::KEYTYPE_EMPTY => Ok(None),
        _ => Err(AiError::wrong_type()),
    }
}
