//! LOCK.* commands: a lock is its key holding the holder's token, with a TTL.

use aijob_core::limiter;
use aijob_core::Result;

use crate::command::Call;
use crate::reply::Out;

/// LOCK.ACQUIRE key TTL ms
pub fn acquire(c: &mut Call) -> Result<Out> {
    let (key, _, ttl) = limiter::lock_args(&c.args, false, true)?;
    let token = limiter::acquire(&mut c.store, key, ttl, c.now, &mut c.entropy)?;
    Ok(token.map_or(Out::Null, Out::bytes))
}

/// LOCK.RELEASE key token
pub fn release(c: &mut Call) -> Result<Out> {
    let (key, token, _) = limiter::lock_args(&c.args, true, false)?;
    Ok(Out::Int(limiter::release(&mut c.store, key, token)?))
}

/// LOCK.EXTEND key token TTL ms
pub fn extend(c: &mut Call) -> Result<Out> {
    let (key, token, ttl) = limiter::lock_args(&c.args, true, true)?;
    Ok(Out::Int(limiter::extend(&mut c.store, key, token, ttl, c.now)?))
}
