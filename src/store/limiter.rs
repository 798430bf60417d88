//! RATELIMIT.HIT / PEEK straight on the key: the state is decoded from the string's own
//! bytes (no copy), the new state encoded into a reused buffer and written in place, and
//! the write replicated as `SET key <state> PXAT <instant>`. Same effects as the core's
//! `limiter::hit` over the generic store, at a fraction of the cost: this runs on every
//! call an app makes to a provider, so it must stay close to a plain SET.

use std::cell::RefCell;
use std::os::raw::c_char;

use aijob_core::ratelimit::{self, Decision, State, Window};
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
        let existed = load(&k, &mut sc.state)?;
        let d = sc.state.hit(windows, cost, now);
        if d.allowed {
            store(ctx, &k, name, &sc.state, existed, now, &mut sc.buf)?;
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
        match OpenKey::open_raw(ctx, name, api::READ)? {
            Some(k) => load(&k, &mut guard.state)?,
            None => {
                guard.state = State::default();
                false
            }
        };
        Ok(guard.state.peek(windows, cost, now))
    })
}

/// Reads the state of the open key `k` into `state`; false when the key does not exist.
fn load(k: &OpenKey, state: &mut State) -> Result<bool> {
    match k.key_type()? {
        api::KEYTYPE_STRING => {}
        api::KEYTYPE_EMPTY => {
            *state = State::default();
            return Ok(false);
        }
        _ => return Err(AiError::wrong_type()),
    }
    ratelimit::decode_into(k.string_bytes()?, state)?;
    Ok(true)
}

/// Writes `state` with the expiry its contents need (or deletes the key when it holds
/// nothing), and replicates the effect.
fn store(
    ctx: *mut raw::RedisModuleCtx,
    k: &OpenKey,
    name: *mut raw::RedisModuleString,
    state: &State,
    existed: bool,
    now: i64,
    buf: &mut Vec<u8>,
) -> Result<()> {
    if state.is_empty() {
        if existed {
            k.delete()?;
            rm!(RedisModule_Replicate(ctx, c"DEL".as_ptr(), c"s".as_ptr(), name));
        }
        return Ok(());
    }
    ratelimit::encode_into(state, buf);
    let at = now.saturating_add(state.reset_ms(now).max(1));
    k.string_write(buf)?;
    k.expire_at(at)?;
    rm!(RedisModule_Replicate(
        ctx,
        c"SET".as_ptr(),
        c"sbcl".as_ptr(),
        name,
        buf.as_ptr() as *const c_char,
        buf.len(),
        c"PXAT".as_ptr(),
        at as std::os::raw::c_longlong
    ));
    Ok(())
}
