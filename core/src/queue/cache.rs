//! The result cache of one queue and request coalescing (docs/cache.md#coalescing-one-live-job-per-hash). Entries are
//! hashes (`value`, `etag`) keyed by content hash inside the current cache generation;
//! CACHE.CLEAR starts a new generation and the timer frees the old one in bounded steps,
//! so clearing a million entries costs O(1) in the command.

use crate::error::{AiError, Result};
use crate::job::Status;
use crate::keys::QueueKeys;
use crate::queue::create::{add_job, JobSpec};
use crate::queue::pending::pending_job;
use crate::queue::tx::{load_job, meta, Env, Tally, Tx};
use crate::rng;
use crate::store::{Op, Score, Store, ZRange};

pub const VALUE: &str = "value";
pub const ETAG: &str = "etag";

pub fn generation<S: Store>(s: &mut S, q: &QueueKeys) -> Result<i64> {
    let v = s.hget(&q.meta(), meta::CACHE_GEN.as_bytes())?;
    Ok(v.as_deref().and_then(crate::record::int).unwrap_or(0))
}

/// Writes an entry (replacing any) that lives `ttl_ms`; returns its new etag.
pub fn write_entry<S: Store>(tx: &mut Tx<S>, hash: &[u8], value: &[u8], ttl_ms: i64) -> Result<String> {
    let generation = generation(tx.s, tx.q)?;
    let etag = tx.next_seq()?.to_string();
    let key = tx.q.cache(generation, hash);
    let expire_at = tx.now.saturating_add(ttl_ms);
    // HSET replaces both fields of an older entry and PEXPIREAT its TTL: no DEL first
    tx.push(Op::HSet(
        key.clone(),
        vec![(VALUE.as_bytes().to_vec(), value.to_vec()), (ETAG.as_bytes().to_vec(), etag.clone().into_bytes())],
    ));
    tx.push(Op::PExpireAt(key, expire_at));
    tx.push(Op::ZAdd(tx.q.cache_index(generation), Score::At(expire_at), hash.to_vec()));
    Ok(etag)
}

/// What CACHE.GETORQUEUE found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<B> {
    Hit(B),
    /// A live job already computes this hash: its id.
    Pending(Vec<u8>),
    /// A new job was made: its id.
    Queued(Vec<u8>),
}

/// What CACHE.GETORQUEUE asks for: the job to make on a miss (`spec.hash` set), and what
/// the parse already knows of its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub spec: JobSpec,
    pub payload: Payload,
}

/// The payload's verdict. It is needed only when a job is made, so a hit or a pending
/// answer does not read the payload; but the parse judges it when it hashed the payload
/// anyway, or when the payload is large (`json::INLINE_MAX_BYTES`: such a parse runs off
/// Redis's main thread), so the lookup on the main thread never reads a large input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Unjudged,
    Judged(Result<()>),
}

/// CACHE.GETORQUEUE: the cached result, or the live job computing it, or a new job.
pub fn get_or_queue<S: Store>(
    s: &mut S,
    q: &QueueKeys,
    env: &mut Env,
    req: &Request,
) -> Result<(Lookup<S::Blob>, Tally)> {
    let spec = &req.spec;
    if let (Some(found), tally) = lookup(s, q, spec)? {
        return Ok((found, tally));
    }
    let hash = spec.hash.as_deref().ok_or_else(|| AiError::arg("HASH", "is required"))?.as_bytes();
    // a job is made: now the payload must be JSON (a hit or a pending answer never reads it)
    match &req.payload {
        Payload::Judged(verdict) => verdict.clone()?,
        Payload::Unjudged => crate::json::validate("PAYLOAD", &spec.payload, env.config.json_limits())?,
    }
    let stale = pending_job(s, q, hash)?.is_some();
    let id = rng::uuid7(env.now, env.entropy).into_bytes();
    let mut tx = Tx::new(s, q, env.now, env.config);
    add_job(&mut tx, &id, spec)?;
    if stale {
        // the holder went away without freeing the hash: the new job takes it over
        tx.push(Op::HSet(q.pending(), vec![(hash.to_vec(), id.clone())]));
    }
    tx.incr_meta(meta::MISSES, 1)?;
    tx.tally.cache_misses += 1;
    Ok((Lookup::Queued(id), tx.commit()?))
}

/// The answer of CACHE.GETORQUEUE that writes nothing: the cached result, or the live job
/// computing it; None when only a new job would answer (a miss). `spec.hash` must be set.
pub fn lookup<S: Store>(s: &mut S, q: &QueueKeys, spec: &JobSpec) -> Result<(Option<Lookup<S::Blob>>, Tally)> {
    let hash = spec.hash.as_deref().ok_or_else(|| AiError::arg("HASH", "is required"))?.as_bytes();
    let mut tally = Tally::default();
    let key = q.cache(generation(s, q)?, hash);
    if let Some(v) = s.hget_blob(&key, VALUE.as_bytes())? {
        tally.cache_hits += 1;
        return Ok((Some(Lookup::Hit(v)), tally));
    }
    if let Some(id) = live_holder(s, q, hash)? {
        tally.coalesced += 1;
        return Ok((Some(Lookup::Pending(id)), tally));
    }
    Ok((None, tally))
}

/// The job holding `hash`, when it is still live (a holder that went away without
/// freeing the hash does not block a new job).
fn live_holder<S: Store>(s: &mut S, q: &QueueKeys, hash: &[u8]) -> Result<Option<Vec<u8>>> {
    let Some(id) = pending_job(s, q, hash)? else { return Ok(None) };
    Ok(load_job(s, q, &id)?.filter(|j| j.status.is_live() && j.status != Status::Done).map(|j| j.id))
}

/// CACHE.GET: the value and its etag.
pub fn get<S: Store>(s: &mut S, q: &QueueKeys, hash: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    let key = q.cache(generation(s, q)?, hash);
    let v = s.hmget(&key, &[VALUE, ETAG])?;
    let mut it = v.into_iter();
    match (it.next().flatten(), it.next().flatten()) {
        (Some(value), etag) => Ok(Some((value, etag.unwrap_or_default()))),
        _ => Ok(None),
    }
}

/// What CACHE.SET writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryWrite {
    pub hash: String,
    pub value: Vec<u8>,
    /// None: the queue's cache-ttl-ms.
    pub ttl_ms: Option<i64>,
    pub condition: Condition,
}

/// The condition of CACHE.SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Always,
    IfMatch(Vec<u8>),
    IfNone,
}

/// CACHE.SET: the new etag, or None when the condition does not hold.
pub fn set<S: Store>(
    s: &mut S,
    q: &QueueKeys,
    env: &mut Env,
    hash: &[u8],
    value: &[u8],
    ttl_ms: Option<i64>,
    cond: &Condition,
) -> Result<(Option<String>, Tally)> {
    let current = get(s, q, hash)?;
    let holds = match (cond, &current) {
        (Condition::Always, _) => true,
        (Condition::IfNone, cur) => cur.is_none(),
        (Condition::IfMatch(want), Some((_, etag))) => etag == want,
        (Condition::IfMatch(_), None) => false,
    };
    if !holds {
        return Ok((None, Tally::default()));
    }
    let mut tx = Tx::new(s, q, env.now, env.config);
    let ttl = ttl_ms.unwrap_or(tx.config.cache_ttl_ms);
    let etag = write_entry(&mut tx, hash, value, ttl)?;
    Ok((Some(etag), tx.commit()?))
}

/// CACHE.DEL: 1, or 0 when there was no entry.
pub fn del<S: Store>(s: &mut S, q: &QueueKeys, hash: &[u8]) -> Result<i64> {
    let generation = generation(s, q)?;
    let key = q.cache(generation, hash);
    if !s.exists(&key)? {
        return Ok(0);
    }
    s.apply(vec![Op::Del(key), Op::ZRem(q.cache_index(generation), hash.to_vec())])?;
    Ok(1)
}

/// CACHE.CLEAR: every entry of the queue is gone at once (a new generation); the old
/// generation's keys are freed by the timer. Replies how many entries there were.
pub fn clear<S: Store>(s: &mut S, q: &QueueKeys) -> Result<i64> {
    let generation = generation(s, q)?;
    let count = s.zcard(&q.cache_index(generation))?;
    let mut ops = vec![Op::HSet(
        q.meta(),
        vec![(meta::CACHE_GEN.as_bytes().to_vec(), (generation + 1).to_string().into_bytes())],
    )];
    if count > 0 {
        ops.push(Op::ZAdd(q.cache_drops(), Score::At(generation), generation.to_string().into_bytes()));
    }
    s.apply(ops)?;
    Ok(count)
}

/// Frees up to `budget` entries of cleared generations; returns how many it freed.
pub fn free_cleared<S: Store>(s: &mut S, q: &QueueKeys, budget: usize) -> Result<usize> {
    let mut freed = 0;
    for (gen_bytes, _) in s.zrange(&q.cache_drops(), ZRange::first(4))? {
        let left = budget.saturating_sub(freed);
        if left == 0 {
            break;
        }
        let generation = crate::record::int(&gen_bytes);
        let Some(generation) = generation else {
            s.apply(vec![Op::ZRem(q.cache_drops(), gen_bytes)])?;
            continue;
        };
        let index = q.cache_index(generation);
        let batch = s.zrange(&index, ZRange::first(left))?;
        let mut ops = Vec::with_capacity(batch.len() * 2 + 1);
        for (hash, _) in &batch {
            ops.push(Op::Del(q.cache(generation, hash)));
            ops.push(Op::ZRem(index.clone(), hash.clone()));
        }
        if batch.len() < left {
            // the whole generation is freed
            ops.push(Op::ZRem(q.cache_drops(), gen_bytes));
        }
        freed += batch.len();
        s.apply(ops)?;
    }
    Ok(freed)
}
