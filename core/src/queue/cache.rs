//! The result cache of one queue: entries keyed by content hash, in the current cache
//! generation (CACHE.CLEAR starts a new generation and frees the old one in the
//! background, so clearing a million entries costs O(1) in the command).

use crate::error::Result;
use crate::keys::QueueKeys;
use crate::queue::tx::{meta, Tx};
use crate::store::{Op, Score, Store};

pub const VALUE: &str = "value";
pub const ETAG: &str = "etag";

pub fn generation<S: Store>(s: &mut S, q: &QueueKeys) -> Result<i64> {
    let v = s.hget(&q.meta(), meta::CACHE_GEN.as_bytes())?;
    Ok(v.and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok()).unwrap_or(0))
}

/// Writes an entry (replacing any) that lives `ttl_ms`; returns its new etag.
pub fn write_entry<S: Store>(tx: &mut Tx<S>, hash: &[u8], value: &[u8], ttl_ms: i64) -> Result<String> {
    let generation = generation(tx.s, tx.q)?;
    let etag = tx.next_seq()?.to_string();
    let key = tx.q.cache(generation, hash);
    let expire_at = tx.now.saturating_add(ttl_ms);
    tx.push(Op::Del(key.clone()));
    tx.push(Op::HSet(
        key.clone(),
        vec![
            (VALUE.as_bytes().to_vec(), value.to_vec()),
            (ETAG.as_bytes().to_vec(), etag.clone().into_bytes()),
        ],
    ));
    tx.push(Op::PExpireAt(key, expire_at));
    tx.push(Op::ZAdd(tx.q.cache_index(generation), Score::At(expire_at), hash.to_vec()));
    Ok(etag)
}

/// The live job that holds `hash`, if any.
pub fn pending_job<S: Store>(s: &mut S, q: &QueueKeys, hash: &[u8]) -> Result<Option<Vec<u8>>> {
    s.hget(&q.pending(), hash)
}

/// Frees `hash` when `id` holds it (the job finished or went away).
pub fn release_hash<S: Store>(tx: &mut Tx<S>, hash: &[u8], id: &[u8]) -> Result<()> {
    if pending_job(tx.s, tx.q, hash)?.as_deref() == Some(id) {
        tx.push(Op::HDel(tx.q.pending(), vec![hash.to_vec()]));
    }
    Ok(())
}

/// Takes `hash` for `id` unless another live job holds it.
pub fn claim_hash<S: Store>(tx: &mut Tx<S>, hash: &[u8], id: &[u8]) -> Result<()> {
    if pending_job(tx.s, tx.q, hash)?.is_none() {
        tx.push(Op::HSet(tx.q.pending(), vec![(hash.to_vec(), id.to_vec())]));
    }
    Ok(())
}
