//! Which live job computes a content hash (`aijob:{Q}:pending`): a job made with a hash
//! takes it, and gives it back when it finishes or goes away, so CACHE.GETORQUEUE can
//! coalesce identical requests onto one job.

use crate::error::Result;
use crate::keys::QueueKeys;
use crate::queue::tx::Tx;
use crate::store::{Op, Store};

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
