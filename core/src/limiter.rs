//! RATELIMIT.* and LOCK.* over a `Store`: each keeps all its state in the caller's one key
//! (a string), written with an absolute expiry so a replica holds exactly the master's
//! state.
//!
//! RATELIMIT.HIT and PEEK work on the key's bytes ([`hit_bytes`], [`peek_bytes`]): the
//! module reads them in place and writes what [`Write`] says, so the logic lives here once
//! and the store only opens the key.

use crate::error::Result;
use crate::ratelimit::{self, Decision, State, Window};
use crate::rng::{self, Entropy};
use crate::store::{Op, Store};

/// The limiter state at `key` (empty when absent).
pub fn load<S: Store>(s: &mut S, key: &[u8]) -> Result<State> {
    match s.get(key)? {
        Some(bytes) => ratelimit::decode(&bytes),
        None => Ok(State::default()),
    }
}

/// When a stored `state` expires: once no bucket counts any more (at least 1 ms on, so a
/// key is never written already expired).
pub fn expire_at(state: &State, now: i64) -> i64 {
    now.saturating_add(state.reset_ms(now).max(1))
}

/// The write that stores `state` with the expiry its contents need.
pub fn store_op(key: &[u8], state: &State, now: i64) -> Op {
    if state.is_empty() {
        return Op::Del(key.to_vec());
    }
    Op::Set(key.to_vec(), ratelimit::encode(state), Some(expire_at(state, now)))
}

/// What a hit leaves in the limiter's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// The key stays as it is (a denied hit, or no state before or after).
    Keep,
    /// The key becomes the encoded state, expiring at this instant (ms since the epoch).
    Set { expire_at: i64 },
    /// The key goes: its state holds nothing any more.
    Delete,
}

/// `state` from the key's bytes (`None`: no key).
fn decode_stored(stored: Option<&[u8]>, state: &mut State) -> Result<()> {
    match stored {
        Some(bytes) => ratelimit::decode_into(bytes, state),
        None => {
            *state = State::default();
            Ok(())
        }
    }
}

/// RATELIMIT.HIT on the key's bytes (`None` when there is no key): admits and consumes
/// `cost` in every window, or nothing. Returns the decision and the write it needs; for
/// `Write::Set` the new state is encoded in `out`. `state` and `out` are the caller's
/// scratch, reused so a hit allocates nothing.
pub fn hit_bytes(
    stored: Option<&[u8]>,
    state: &mut State,
    windows: &[Window],
    cost: i64,
    now: i64,
    out: &mut Vec<u8>,
) -> Result<(Decision, Write)> {
    decode_stored(stored, state)?;
    let d = state.hit(windows, cost, now);
    let write = if !d.allowed {
        Write::Keep
    } else if state.is_empty() {
        if stored.is_some() {
            Write::Delete
        } else {
            Write::Keep
        }
    } else {
        ratelimit::encode_into(state, out);
        Write::Set { expire_at: expire_at(state, now) }
    };
    Ok((d, write))
}

/// RATELIMIT.PEEK on the key's bytes: HIT's answer, consuming nothing.
pub fn peek_bytes(
    stored: Option<&[u8]>,
    state: &mut State,
    windows: &[Window],
    cost: i64,
    now: i64,
) -> Result<Decision> {
    decode_stored(stored, state)?;
    Ok(state.peek(windows, cost, now))
}

/// RATELIMIT.RESET: 1 when there was state, else 0.
pub fn reset<S: Store>(s: &mut S, key: &[u8]) -> Result<i64> {
    if s.get(key)?.is_none() {
        return Ok(0);
    }
    s.apply(vec![Op::Del(key.to_vec())])?;
    Ok(1)
}

/// LOCK.ACQUIRE: a fresh unguessable token, or None when the lock is held.
pub fn acquire<S: Store>(s: &mut S, key: &[u8], ttl_ms: i64, now: i64, e: &mut dyn Entropy) -> Result<Option<String>> {
    if s.get(key)?.is_some() {
        return Ok(None);
    }
    let token = rng::token(e);
    s.apply(vec![Op::Set(key.to_vec(), token.clone().into_bytes(), Some(now.saturating_add(ttl_ms)))])?;
    Ok(Some(token))
}

/// LOCK.RELEASE: 1 when `token` held the lock, else 0.
pub fn release<S: Store>(s: &mut S, key: &[u8], token: &[u8]) -> Result<i64> {
    if s.get(key)?.as_deref() != Some(token) {
        return Ok(0);
    }
    s.apply(vec![Op::Del(key.to_vec())])?;
    Ok(1)
}

/// LOCK.EXTEND: the holder's lock lives `ttl_ms` from now: 1; 0 for anyone else.
pub fn extend<S: Store>(s: &mut S, key: &[u8], token: &[u8], ttl_ms: i64, now: i64) -> Result<i64> {
    if s.get(key)?.as_deref() != Some(token) {
        return Ok(0);
    }
    s.apply(vec![Op::PExpireAt(key.to_vec(), now.saturating_add(ttl_ms))])?;
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemStore;
    use crate::rng::SplitMix;

    const W: [Window; 1] = [Window { limit: 2, period: 1000 }];

    /// One HIT against the key's bytes, applied the way the module applies its write.
    fn hit_key(key: &mut Option<(Vec<u8>, i64)>, cost: i64, now: i64) -> Result<(Decision, Write)> {
        let (mut state, mut out) = (State::default(), Vec::new());
        let stored = key.as_ref().filter(|(_, at)| *at > now).map(|(b, _)| b.clone());
        let (d, w) = hit_bytes(stored.as_deref(), &mut state, &W, cost, now, &mut out)?;
        match w {
            Write::Keep => {}
            Write::Set { expire_at } => *key = Some((out, expire_at)),
            Write::Delete => *key = None,
        }
        Ok((d, w))
    }

    #[test]
    fn hits_store_state_with_an_expiry_no_later_than_reset() {
        let mut key = None;
        let (d, w) = hit_key(&mut key, 1, 1000).unwrap();
        assert!(d.allowed);
        assert_eq!(w, Write::Set { expire_at: 1000 + d.reset_ms });
        assert!(d.reset_ms > 0);
        let bytes = key.clone().unwrap().0;
        assert_eq!(ratelimit::decode(&bytes).unwrap().held(1000, 1000), 1, "the bytes hold the hit");
        assert!(hit_key(&mut key, 1, 1000).unwrap().0.allowed);
        let stored = key.clone();
        let (denied, w) = hit_key(&mut key, 1, 1000).unwrap();
        assert!(!denied.allowed);
        assert_eq!((w, &key), (Write::Keep, &stored), "a denied hit writes nothing");
        let mut state = State::default();
        let later = 1000 + denied.retry_after_ms;
        let bytes = key.as_ref().map(|(b, _)| b.as_slice());
        assert!(peek_bytes(bytes, &mut state, &W, 1, later).unwrap().allowed);
        assert_eq!(key, stored, "PEEK consumes nothing");
    }

    #[test]
    fn a_hit_that_leaves_nothing_deletes_the_key() {
        let mut state = State::default();
        let mut out = Vec::new();
        let (_, w) = hit_bytes(None, &mut state, &W, 0, 0, &mut out).unwrap();
        assert_eq!(w, Write::Keep, "COST 0 on no key writes nothing");
        hit_bytes(None, &mut state, &W, 1, 0, &mut out).unwrap();
        let old = out.clone();
        let (d, w) = hit_bytes(Some(&old), &mut state, &W, 0, 10_000, &mut out).unwrap();
        assert!(d.allowed);
        assert_eq!(w, Write::Delete, "every bucket has drained: the key goes");
    }

    #[test]
    fn the_expiry_is_when_the_last_bucket_drains() {
        let mut state = State::default();
        let d = state.hit(&W, 1, 500);
        assert_eq!(expire_at(&state, 500), 500 + d.reset_ms);
        assert_eq!(expire_at(&State::default(), 500), 501, "never already expired");
        let op = store_op(b"k", &state, 500);
        assert_eq!(op, Op::Set(b"k".to_vec(), ratelimit::encode(&state), Some(500 + d.reset_ms)));
        assert_eq!(store_op(b"k", &State::default(), 500), Op::Del(b"k".to_vec()));
    }

    #[test]
    fn reset_deletes_state() {
        let mut s = MemStore::new(0);
        let mut state = State::default();
        state.hit(&W, 1, 0);
        s.apply(vec![store_op(b"k", &state, 0)]).unwrap();
        assert_eq!(reset(&mut s, b"k").unwrap(), 1);
        assert_eq!(reset(&mut s, b"k").unwrap(), 0);
    }

    #[test]
    fn corrupt_bytes_are_errors() {
        let mut state = State::default();
        assert!(hit_bytes(Some(b"notanumber"), &mut state, &W, 1, 0, &mut Vec::new()).is_err());
        assert!(peek_bytes(Some(b"notanumber"), &mut state, &W, 1, 0).is_err());
        let mut s = MemStore::new(0);
        s.apply(vec![Op::HSet(b"h".to_vec(), vec![(b"f".to_vec(), b"v".to_vec())])]).unwrap();
        assert_eq!(load(&mut s, b"h").unwrap_err().code, crate::error::Code::WrongType);
    }

    #[test]
    fn locks_belong_to_their_token() {
        let mut s = MemStore::new(0);
        let mut e = SplitMix(3);
        let t = acquire(&mut s, b"l", 100, 0, &mut e).unwrap().unwrap();
        assert_eq!(acquire(&mut s, b"l", 100, 0, &mut e).unwrap(), None);
        assert_eq!(release(&mut s, b"l", b"other").unwrap(), 0);
        assert_eq!(extend(&mut s, b"l", t.as_bytes(), 500, 50).unwrap(), 1);
        s.now = 200;
        assert_eq!(acquire(&mut s, b"l", 100, 200, &mut e).unwrap(), None, "extended past 100");
        assert_eq!(release(&mut s, b"l", t.as_bytes()).unwrap(), 1);
        assert!(acquire(&mut s, b"l", 100, 200, &mut e).unwrap().is_some());
        s.now = 1000;
        assert!(acquire(&mut s, b"l", 100, 1000, &mut e).unwrap().is_some(), "expired by TTL");
    }
}
