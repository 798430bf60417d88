//! LOCK.* commands: a lock is its key holding the holder's token, with a TTL.

use aijob_core::grammar;
use aijob_core::limiter;

use crate::command::arg::*;
use crate::command::key;
use crate::command::{Command, Info, Keys};
use crate::reply::Out;

/// LOCK.ACQUIRE key TTL ms
pub const ACQUIRE: Command<(Vec<u8>, i64)> = Command {
    info: Info {
        name: "lock.acquire",
        flags: "write deny-oom fast",
        arity: -4,
        summary: "Takes the lock for TTL ms: a token, or nil when it is held.",
        complexity: "O(1)",
        keys: Keys::Own(key::RW | key::INSERT),
        args: &[key("key"), ti("TTL", "ms")],
    },
    parse: |words, _| grammar::limits::lock_acquire(words),
    handle: |c, (key, ttl)| {
        let token = limiter::acquire(&mut c.store, &key, ttl, c.now, &mut c.entropy)?;
        Ok(token.map_or(Out::Null, Out::bytes))
    },
};

/// LOCK.RELEASE key token
pub const RELEASE: Command<(Vec<u8>, Vec<u8>)> = Command {
    info: Info {
        name: "lock.release",
        flags: "write fast",
        arity: -3,
        summary: "Releases the lock if the token is the holder's: 1, else 0.",
        complexity: "O(1)",
        keys: Keys::Own(key::RW | key::DELETE),
        args: &[key("key"), s("token")],
    },
    parse: |words, _| grammar::limits::lock_release(words),
    handle: |c, (key, token)| Ok(Out::Int(limiter::release(&mut c.store, &key, &token)?)),
};

/// LOCK.EXTEND key token TTL ms
pub const EXTEND: Command<(Vec<u8>, Vec<u8>, i64)> = Command {
    info: Info {
        name: "lock.extend",
        flags: "write fast",
        arity: -5,
        summary: "Makes the holder's lock live TTL ms from now: 1, else 0.",
        complexity: "O(1)",
        keys: Keys::Own(key::RW | key::UPDATE),
        args: &[key("key"), s("token"), ti("TTL", "ms")],
    },
    parse: |words, _| grammar::limits::lock_extend(words),
    handle: |c, (key, token, ttl)| Ok(Out::Int(limiter::extend(&mut c.store, &key, &token, ttl, c.now)?)),
};
