//! The grammar of the RATELIMIT.* and LOCK.* commands: each takes the caller's own key.

use crate::args::{limit_period, once, positive, unknown, Cursor};
use crate::error::{AiError, Result};
use crate::ratelimit::{self, Window};

/// RATELIMIT.HIT / RATELIMIT.PEEK key LIMIT n PERIOD ms [LIMIT n PERIOD ms ...] [COST c]
/// (COST defaults to 1). Keywords are compared in place: this runs on every hit.
pub fn ratelimit(args: &[&[u8]]) -> Result<(Vec<u8>, Vec<Window>, i64)> {
    let mut c = Cursor::new(args);
    let key = c.next().ok_or_else(|| AiError::arg("key", "is missing"))?.to_vec();
    let mut windows = Vec::with_capacity(2);
    let mut cost = None;
    while let Some(kw) = c.next() {
        if kw.eq_ignore_ascii_case(b"LIMIT") {
            if windows.len() >= ratelimit::MAX_WINDOWS {
                let most = ratelimit::MAX_WINDOWS;
                return Err(AiError::arg("LIMIT", format!("may be given at most {most} times")));
            }
            windows.push(limit_period(&mut c)?);
        } else if kw.eq_ignore_ascii_case(b"COST") {
            let v = c.count("COST")?;
            once(&mut cost, "COST", v)?
        } else {
            return Err(unknown(&String::from_utf8_lossy(kw)));
        }
    }
    let cost = cost.unwrap_or(1);
    ratelimit::check_args(&windows, cost)?;
    Ok((key, windows, cost))
}

/// LOCK.ACQUIRE key TTL ms: (key, ttl).
pub fn lock_acquire(args: &[&[u8]]) -> Result<(Vec<u8>, i64)> {
    let (key, _, ttl) = lock_args(args, false, true)?;
    Ok((key.to_vec(), ttl))
}

/// LOCK.RELEASE key token: (key, token).
pub fn lock_release(args: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>)> {
    let (key, token, _) = lock_args(args, true, false)?;
    Ok((key.to_vec(), token.to_vec()))
}

/// LOCK.EXTEND key token TTL ms: (key, token, ttl).
pub fn lock_extend(args: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>, i64)> {
    let (key, token, ttl) = lock_args(args, true, true)?;
    Ok((key.to_vec(), token.to_vec(), ttl))
}

/// RATELIMIT.RESET key: the key.
pub fn key_only(args: &[&[u8]]) -> Result<Vec<u8>> {
    Ok(lock_args(args, false, false)?.0.to_vec())
}

/// `key [token] [TTL ms]`, nothing after.
fn lock_args<'a>(args: &[&'a [u8]], with_token: bool, with_ttl: bool) -> Result<(&'a [u8], &'a [u8], i64)> {
    let mut it = args.iter().copied();
    let key = it.next().ok_or_else(|| AiError::arg("key", "is missing"))?;
    let token = if with_token { it.next().ok_or_else(|| AiError::arg("token", "is missing"))? } else { &b""[..] };
    let mut ttl = 0;
    if with_ttl {
        match it.next() {
            Some(k) if k.eq_ignore_ascii_case(b"TTL") => {}
            _ => return Err(AiError::arg("TTL", "is required: TTL ms")),
        }
        ttl = positive("TTL", it.next().ok_or_else(|| AiError::arg("TTL", "needs a value"))?)?;
    }
    if let Some(extra) = it.next() {
        return Err(unknown(&String::from_utf8_lossy(extra)));
    }
    Ok((key, token, ttl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::{a, refs};

    #[test]
    fn ratelimit_parses_windows_and_cost() {
        let v = a("rl:{c}:gen limit 10 period 1000 LIMIT 100 PERIOD 60000 COST 3");
        let (key, w, cost) = ratelimit(&refs(&v)).unwrap();
        assert_eq!(key, b"rl:{c}:gen");
        assert_eq!(w, vec![Window { limit: 10, period: 1000 }, Window { limit: 100, period: 60000 }]);
        assert_eq!(cost, 3);
        let v = a("k LIMIT 5 PERIOD 10");
        assert_eq!(ratelimit(&refs(&v)).unwrap().2, 1);
        let v = a("k COST 0 LIMIT 5 PERIOD 10");
        assert_eq!(ratelimit(&refs(&v)).unwrap().2, 0);
        let nine = format!("k{}", " LIMIT 1 PERIOD 1".repeat(9));
        for (line, arg) in [
            ("k", "LIMIT"),
            ("k COST 1", "LIMIT"),
            ("k LIMIT 0 PERIOD 5", "LIMIT"),
            ("k LIMIT -1 PERIOD 5", "LIMIT"),
            ("k LIMIT 1.5 PERIOD 5", "LIMIT"),
            ("k LIMIT 5", "LIMIT"),
            ("k LIMIT 5 COST 1", "LIMIT"),
            ("k LIMIT 5 PERIOD", "PERIOD"),
            ("k LIMIT 5 PERIOD 0", "PERIOD"),
            ("k LIMIT 5 PERIOD 1e3", "PERIOD"),
            ("k LIMIT 5 PERIOD 1000000000001", "PERIOD"),
            ("k LIMIT 5 PERIOD 10 LIMIT 6 PERIOD 10", "PERIOD"),
            ("k LIMIT 5 PERIOD 10 COST 6", "COST"),
            ("k LIMIT 5 PERIOD 10 COST -1", "COST"),
            ("k LIMIT 5 PERIOD 10 COST 1 COST 2", "COST"),
            ("k LIMIT 5 PERIOD 10 COST", "COST"),
            ("k LIMIT 5 PERIOD 10 BOGUS", "BOGUS"),
            (nine.as_str(), "LIMIT"),
        ] {
            let v = a(line);
            let e = ratelimit(&refs(&v)).unwrap_err();
            assert!(e.message.contains(arg), "{line}: {}", e.message);
        }
        assert!(ratelimit(&[]).unwrap_err().message.contains("key"));
    }

    #[test]
    fn lock_arguments_need_ttl_and_nothing_more() {
        let v = a("l TTL 100");
        assert_eq!(lock_acquire(&refs(&v)).unwrap(), (b"l".to_vec(), 100));
        let v = a("l tok TTL 5");
        assert_eq!(lock_extend(&refs(&v)).unwrap(), (b"l".to_vec(), b"tok".to_vec(), 5));
        for (line, arg) in [("l 100", "TTL"), ("l TTL 0", "TTL"), ("l TTL", "TTL"), ("l TTL 1 x", "x")] {
            let v = a(line);
            let e = lock_acquire(&refs(&v)).unwrap_err();
            assert!(e.message.contains(arg), "{line}: {}", e.message);
        }
        let v = a("l tok extra");
        assert!(lock_release(&refs(&v)).unwrap_err().message.contains("extra"));
        let v = a("k x");
        assert!(key_only(&refs(&v)).is_err());
    }
}
