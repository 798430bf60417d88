//! RATELIMIT.* and LOCK.* over a `Store`: each keeps all its state in the caller's one key
//! (a string), written with an absolute expiry so a replica holds exactly the master's
//! state.

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

/// The write that stores `state` with the expiry its contents need.
pub fn store_op(key: &[u8], state: &State, now: i64) -> Op {
    if state.is_empty() {
        return Op::Del(key.to_vec());
    }
    Op::Set(key.to_vec(), ratelimit::encode(state), Some(now.saturating_add(state.reset_ms(now).max(1))))
}

/// RATELIMIT.HIT: admits and consumes `cost` in every window, or nothing.
pub fn hit<S: Store>(s: &mut S, key: &[u8], windows: &[Window], cost: i64, now: i64) -> Result<Decision> {
    let mut state = load(s, key)?;
    let d = state.hit(windows, cost, now);
    if d.allowed {
        s.apply(vec![store_op(key, &state, now)])?;
    }
    Ok(d)
}

/// RATELIMIT.PEEK: the same answer as HIT, consuming nothing.
pub fn peek<S: Store>(s: &mut S, key: &[u8], windows: &[Window], cost: i64, now: i64) -> Result<Decision> {
    Ok(load(s, key)?.peek(windows, cost, now))
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

    #[test]
    fn hits_store_state_with_an_expiry_no_later_than_reset() {
        let mut s = MemStore::new(1000);
        let w = [Window { limit: 2, period: 1000 }];
        let d = hit(&mut s, b"k", &w, 1, 1000).unwrap();
        assert!(d.allowed);
        assert!(s.pttl(b"k").unwrap() <= d.reset_ms && s.pttl(b"k").unwrap() > 0);
        assert!(hit(&mut s, b"k", &w, 1, 1000).unwrap().allowed);
        let denied = hit(&mut s, b"k", &w, 1, 1000).unwrap();
        assert!(!denied.allowed);
        assert_eq!(peek(&mut s, b"k", &w, 1, 1000 + denied.retry_after_ms).unwrap().allowed, true);
        assert_eq!(reset(&mut s, b"k").unwrap(), 1);
        assert_eq!(reset(&mut s, b"k").unwrap(), 0);
    }

    #[test]
    fn corrupt_and_wrong_type_keys_are_errors() {
        let mut s = MemStore::new(0);
        s.apply(vec![Op::Set(b"k".to_vec(), b"notanumber".to_vec(), None)]).unwrap();
        let w = [Window { limit: 2, period: 1000 }];
        assert!(hit(&mut s, b"k", &w, 1, 0).is_err());
        s.apply(vec![Op::HSet(b"h".to_vec(), vec![(b"f".to_vec(), b"v".to_vec())])]).unwrap();
        assert_eq!(hit(&mut s, b"h", &w, 1, 0).unwrap_err().code, crate::error::Code::WrongType);
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
