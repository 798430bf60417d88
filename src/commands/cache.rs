//! CACHE.* commands.

use aijob_core::grammar;
use aijob_core::keys::QueueKeys;
use aijob_core::queue::cache::{self, EntryWrite, Lookup, Request};
use aijob_core::queue::tx::Tally;
use aijob_core::{oom, Result};

use crate::command::arg::*;
use crate::command::key;
use crate::command::{Call, Command, Info, Keys};
use crate::offload::Offloaded;
use crate::reply::Out;

/// CACHE.GETORQUEUE Q PAYLOAD json [HASH hex] [PRIORITY p] [MAXATTEMPTS n] [RETENTION ms]
/// [CACHETTL ms] [DEADLINE ms] [META json] [GROUP g] [COST n] [KEY part ...]
///
/// Offloaded: a large input is parsed and hashed on a worker thread, then the lookup and
/// any write run on the main thread.
pub const GET_OR_QUEUE: Offloaded<(QueueKeys, Request)> = Offloaded(Command {
    info: Info {
        name: "cache.getorqueue",
        flags: "write",
        arity: -4,
        summary: "The cached result, or the id of the job computing it, or a new job: one atomic step.",
        complexity: "O(size of the input) to parse and hash it, off the main thread above 16 KB; then O(1) on a hit, O(log N) when it creates a job",
        keys: Keys::Queue(key::RW | key::ACCESS | key::INSERT),
        args: &[
            Q,
            PAYLOAD,
            HASH,
            PRIORITY,
            MAXATTEMPTS,
            RETENTION,
            ti("CACHETTL", "ms").opt(),
            DEADLINE,
            META,
            GROUP,
            COST,
            KEY_PARTS.opt(),
        ],
    },
    parse: |words, config| grammar::cache::get_or_queue(words, config.json_limits()),
    handle: get_or_queue,
});

/// No `deny-oom`: while used memory is over `maxmemory` a hit or a pending job still
/// answers, and only a miss, which would queue a new job, is refused.
fn get_or_queue(c: &mut Call, (q, req): (QueueKeys, Request)) -> Result<Out> {
    let mut answered = None;
    crate::command::when_memory_full(c.ctx, || {
        answered = c.with(&q, |s, _| cache::lookup(s, &q, &req.spec))?;
        answered.as_ref().map(|_| ()).ok_or_else(|| oom::refused("a cache miss would queue a new job"))
    })?;
    let found = match answered {
        Some(found) => found,
        None => c.with(&q, |s, env| cache::get_or_queue(s, &q, env, &req))?,
    };
    // hits and coalesced answers write nothing: the timer flushes their counters
    match &found {
        Lookup::Hit(_) => crate::timer::count_cache(c.ctx, &q, 1, 0),
        Lookup::Pending(_) => crate::timer::count_cache(c.ctx, &q, 0, 1),
        Lookup::Queued(_) => {}
    }
    let (kind, id, value): (&'static str, Out, Out) = match found {
        Lookup::Hit(v) => ("hit", Out::Null, Out::ModuleString(v)),
        Lookup::Pending(id) => ("pending", Out::Bytes(id), Out::Null),
        Lookup::Queued(id) => ("queued", Out::Bytes(id), Out::Null),
    };
    Ok(Out::Array(vec![Out::Static(kind.as_bytes()), id, value]))
}

/// CACHE.HASH [KEY part ...] | [PAYLOAD json]
///
/// Offloaded: all its work is the parse. Not `fast`: it is linear in its input.
pub const HASH_OF: Offloaded<String> = Offloaded(Command {
    info: Info {
        name: "cache.hash",
        flags: "readonly",
        arity: -2,
        summary: "The content hash CACHE.GETORQUEUE would use for these KEY parts or this PAYLOAD.",
        complexity: "O(size of the input), off the main thread above 16 KB",
        keys: Keys::None,
        args: &[oneof("input", &[KEY_PARTS, PAYLOAD])],
    },
    parse: |words, config| grammar::cache::hash(words, config.json_limits()),
    handle: |_, hash| Ok(Out::bytes(hash)),
});

/// CACHE.GET Q hash [WITHETAG]
pub const GET: Command<(QueueKeys, String, bool)> = Command {
    info: Info {
        name: "cache.get",
        flags: "readonly fast",
        arity: -3,
        summary: "A cache entry's value (with WITHETAG, [value, etag]); nil when absent.",
        complexity: "O(1)",
        keys: Keys::Queue(key::RO | key::ACCESS),
        args: &[Q, s("hash"), pure("WITHETAG", "withetag").opt()],
    },
    parse: |words, _| grammar::cache::key(words, true),
    handle: get,
};

fn get(c: &mut Call, (q, h, withetag): (QueueKeys, String, bool)) -> Result<Out> {
    Ok(match cache::get(&mut c.store, &q, h.as_bytes())? {
        None => Out::Null,
        Some((value, etag)) if withetag => Out::Array(vec![Out::Bytes(value), Out::Bytes(etag)]),
        Some((value, _)) => Out::Bytes(value),
    })
}

/// CACHE.SET Q hash json [TTL ms] [IFMATCH etag | IFNONE]
///
/// Offloaded: a large json is validated on a worker thread, then written on the main thread.
pub const SET: Offloaded<(QueueKeys, EntryWrite)> = Offloaded(Command {
    info: Info {
        name: "cache.set",
        flags: "write deny-oom",
        arity: -4,
        summary: "Writes a cache entry, optionally only if its etag matches or none exists.",
        complexity: "O(size of the json) to validate it, off the main thread above 16 KB; then O(log N) with N the entries of the queue",
        keys: Keys::Queue(key::RW | key::UPDATE),
        args: &[
            Q,
            s("hash"),
            s("json"),
            ti("TTL", "ms").opt(),
            oneof("condition", &[ts("IFMATCH", "etag"), pure("IFNONE", "ifnone")]).opt(),
        ],
    },
    parse: |words, config| grammar::cache::set(words, config.json_limits()),
    handle: set,
});

fn set(c: &mut Call, (q, w): (QueueKeys, EntryWrite)) -> Result<Out> {
    let etag = c.with(&q, |s, env| cache::set(s, &q, env, w.hash.as_bytes(), &w.value, w.ttl_ms, &w.condition))?;
    Ok(etag.map_or(Out::Null, Out::bytes))
}

/// CACHE.DEL Q hash
pub const DEL: Command<(QueueKeys, String, bool)> = Command {
    info: Info {
        name: "cache.del",
        flags: "write",
        arity: -3,
        summary: "Deletes a cache entry: 1, or 0 when there was none.",
        complexity: "O(log N) with N the entries of the queue",
        keys: Keys::Queue(key::RW | key::DELETE),
        args: &[Q, s("hash")],
    },
    parse: |words, _| grammar::cache::key(words, false),
    handle: |c, (q, h, _)| Ok(Out::Int(c.with(&q, |s, _| Ok((cache::del(s, &q, h.as_bytes())?, Tally::default())))?)),
};

/// CACHE.CLEAR Q
pub const CLEAR: Command<QueueKeys> = Command {
    info: Info {
        name: "cache.clear",
        flags: "write",
        arity: -2,
        summary: "Drops every cache entry of the queue at once; replies how many there were.",
        complexity: "O(1); the entries are freed in the background",
        keys: Keys::Queue(key::RW | key::DELETE),
        args: &[Q],
    },
    parse: |words, _| grammar::queue::queue_only(words),
    handle: |c, q| Ok(Out::Int(c.with(&q, |s, _| Ok((cache::clear(s, &q)?, Tally::default())))?)),
};
