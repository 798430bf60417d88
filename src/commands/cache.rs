//! CACHE.* commands.

use aijob_core::args;
use aijob_core::queue::cache::{self, Lookup};
use aijob_core::queue::tx::Tally;
use aijob_core::Result;

use crate::command::Call;
use crate::reply::Out;

/// CACHE.GETORQUEUE Q PAYLOAD json [HASH hex] [PRIORITY p] [MAXATTEMPTS n] [RETENTION ms]
/// [CACHETTL ms] [DEADLINE ms] [META json] [GROUP g] [COST n] [KEY part ...]
pub fn get_or_queue(c: &mut Call) -> Result<Out> {
    let (q, spec) = args::cache_get_or_queue(&c.args, c.config.json_limits())?;
    let found = c.with(&q, |s, env| cache::get_or_queue(s, &q, env, &spec))?;
    let (kind, id, value) = match found {
        Lookup::Hit(v) => ("hit", Out::Null, Out::ModuleString(v)),
        Lookup::Pending(id) => ("pending", Out::Bytes(id), Out::Null),
        Lookup::Queued(id) => ("queued", Out::Bytes(id), Out::Null),
    };
    if kind != "queued" {
        crate::timer::count_cache(c.ctx, &q, (kind == "hit") as i64, (kind == "pending") as i64);
    }
    let kind: &'static str = kind;
    Ok(Out::Array(vec![Out::Static(kind.as_bytes()), id, value]))
}

/// CACHE.HASH [KEY part ...] | [PAYLOAD json]
pub fn hash(c: &mut Call) -> Result<Out> {
    Ok(Out::bytes(args::cache_hash(&c.args, c.config.json_limits())?))
}

/// CACHE.GET Q hash [WITHETAG]
pub fn get(c: &mut Call) -> Result<Out> {
    let (q, h, withetag) = args::cache_key(&c.args, true)?;
    Ok(match cache::get(&mut c.store, &q, h.as_bytes())? {
        None => Out::Null,
        Some((value, etag)) if withetag => Out::Array(vec![Out::Bytes(value), Out::Bytes(etag)]),
        Some((value, _)) => Out::Bytes(value),
    })
}

/// CACHE.SET Q hash json [TTL ms] [IFMATCH etag | IFNONE]
pub fn set(c: &mut Call) -> Result<Out> {
    let (q, h, value, ttl, cond) = args::cache_set(&c.args, c.config.json_limits())?;
    let etag = c.with(&q, |s, env| cache::set(s, &q, env, h.as_bytes(), &value, ttl, &cond))?;
    Ok(etag.map_or(Out::Null, Out::bytes))
}

/// CACHE.DEL Q hash
pub fn del(c: &mut Call) -> Result<Out> {
    let (q, h, _) = args::cache_key(&c.args, false)?;
    Ok(Out::Int(c.with(&q, |s, _| Ok((cache::del(s, &q, h.as_bytes())?, Tally::default())))?))
}

/// CACHE.CLEAR Q
pub fn clear(c: &mut Call) -> Result<Out> {
    let q = args::queue_only(&c.args)?;
    Ok(Out::Int(c.with(&q, |s, _| Ok((cache::clear(s, &q)?, Tally::default())))?))
}
