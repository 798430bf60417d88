//! The grammar of the CACHE.* commands.
//!
//! CACHE.HASH and CACHE.GETORQUEUE canonicalize and hash here, in the parse: for large
//! inputs the module runs the parse on a worker thread (`json::INLINE_MAX_BYTES`), so
//! everything slow about these commands belongs in this file, never in the lookup.

use crate::args::{check_size, once, positive, queue, unknown, Cursor};
use crate::error::{AiError, Result};
use crate::grammar::{job_option, refuse_after};
use crate::hash;
use crate::json::{self, Limits, INLINE_MAX_BYTES};
use crate::keys::QueueKeys;
use crate::queue::cache::{Condition, EntryWrite, Payload, Request};
use crate::queue::create::JobSpec;

/// CACHE.GETORQUEUE Q PAYLOAD json [HASH hex] [PRIORITY p] [MAXATTEMPTS n] [RETENTION ms]
/// [CACHETTL ms] [DEADLINE ms] [META json] [GROUP g] [COST n] [KEY part ...]
pub fn get_or_queue(args: &[&[u8]], limits: Limits) -> Result<(QueueKeys, Request)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let mut spec = JobSpec::new(Vec::new());
    let (mut has_payload, mut hash, mut parts) = (false, None, None);
    while let Some(kw) = c.keyword() {
        match kw.as_str() {
            "PAYLOAD" => {
                // Judged below, or where it is used (making the job): a cache hit with
                // HASH or KEY answers without reading a small payload.
                let v = c.value("PAYLOAD")?;
                check_size("PAYLOAD", v, limits.max_bytes)?;
                spec.payload = v.to_vec();
                has_payload = true;
            }
            "HASH" => {
                let h = hash::parse_hex("HASH", c.value("HASH")?)?;
                once(&mut hash, "HASH", h)?
            }
            "CACHETTL" => {
                let v = positive("CACHETTL", c.value("CACHETTL")?)?;
                once(&mut spec.cache_ttl_ms, "CACHETTL", v)?
            }
            "KEY" => parts = Some(key_parts(&mut c, limits)?),
            other if job_option(&mut spec, other, &mut c, limits)? => {}
            _ => {
                let why = "a cached job is found by its payload's hash, and a job that takes \
                           its inputs from parents is not determined by its payload; use JOB.CREATE";
                refuse_after(&kw, "CACHE.GETORQUEUE", why)?;
                return Err(unknown(&kw));
            }
        }
    }
    if !has_payload {
        return Err(AiError::arg("PAYLOAD", "is required"));
    }
    let (h, payload) = lookup_hash(hash, parts.as_deref(), &spec.payload, limits)?;
    spec.hash = Some(h);
    Ok((q, Request { spec, payload }))
}

/// The hash a lookup uses: HASH as given, else the hash of the KEY parts, else the hash of
/// the payload (which must then be JSON); and the payload's verdict when it is known.
fn lookup_hash(
    given: Option<String>,
    parts: Option<&[&[u8]]>,
    payload: &[u8],
    limits: Limits,
) -> Result<(String, Payload)> {
    match (given, parts) {
        (Some(_), Some(_)) => Err(AiError::syntax("HASH and KEY exclude each other")),
        (Some(h), None) => Ok((h, judge_if_large(payload, limits))),
        (None, Some(parts)) => Ok((hash::of_parts(parts), judge_if_large(payload, limits))),
        // validated as it is canonicalized
        (None, None) => Ok((hash::of_payload("PAYLOAD", payload, limits)?, Payload::Judged(Ok(())))),
    }
}

/// A large payload is judged now, in the parse, which runs off the main thread for it; a
/// small one only if a job is made.
fn judge_if_large(payload: &[u8], limits: Limits) -> Payload {
    if payload.len() > INLINE_MAX_BYTES {
        Payload::Judged(json::validate("PAYLOAD", payload, limits))
    } else {
        Payload::Unjudged
    }
}

/// Every argument after KEY is a part. Together they are held to `max-payload-bytes`,
/// counting what is hashed: each part and its 8-byte length.
fn key_parts<'a>(c: &mut Cursor<'a>, limits: Limits) -> Result<Vec<&'a [u8]>> {
    let mut parts = Vec::new();
    let mut hashed: usize = 0;
    while let Some(p) = c.next() {
        hashed = hashed.saturating_add(p.len()).saturating_add(hash::PART_LENGTH_BYTES);
        parts.push(p);
    }
    if parts.is_empty() {
        return Err(AiError::arg("KEY", "needs at least one part"));
    }
    if i64::try_from(hashed).map_or(true, |n| n > limits.max_bytes) {
        return Err(AiError::too_big("KEY", hashed, limits.max_bytes));
    }
    Ok(parts)
}

/// CACHE.HASH [KEY part ...] | [PAYLOAD json]
pub fn hash(args: &[&[u8]], limits: Limits) -> Result<String> {
    let mut c = Cursor::new(args);
    match c.keyword().as_deref() {
        Some("KEY") => Ok(hash::of_parts(&key_parts(&mut c, limits)?)),
        Some("PAYLOAD") => {
            let p = c.value("PAYLOAD")?;
            if let Some(kw) = c.keyword() {
                return Err(unknown(&kw));
            }
            hash::of_payload("PAYLOAD", p, limits)
        }
        Some(other) => Err(unknown(other)),
        None => Err(AiError::syntax("CACHE.HASH needs KEY part ... or PAYLOAD json")),
    }
}

/// CACHE.GET / CACHE.DEL Q hash [WITHETAG]: (queue, hash, WITHETAG given).
pub fn key(args: &[&[u8]], allow_withetag: bool) -> Result<(QueueKeys, String, bool)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let h = hash::parse_hex("hash", c.next().ok_or_else(|| AiError::arg("hash", "is missing"))?)?;
    let mut withetag = false;
    while let Some(kw) = c.keyword() {
        match kw.as_str() {
            "WITHETAG" if allow_withetag => withetag = true,
            _ => return Err(unknown(&kw)),
        }
    }
    Ok((q, h, withetag))
}

/// CACHE.SET Q hash json [TTL ms] [IFMATCH etag | IFNONE]
pub fn set(args: &[&[u8]], limits: Limits) -> Result<(QueueKeys, EntryWrite)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let h = hash::parse_hex("hash", c.next().ok_or_else(|| AiError::arg("hash", "is missing"))?)?;
    let v = c.next().ok_or_else(|| AiError::arg("json", "is missing"))?;
    json::validate("json", v, limits)?;
    let (mut ttl, mut cond) = (None, Condition::Always);
    while let Some(kw) = c.keyword() {
        let next = match kw.as_str() {
            "TTL" => {
                let t = positive("TTL", c.value("TTL")?)?;
                once(&mut ttl, "TTL", t)?;
                continue;
            }
            "IFMATCH" => Condition::IfMatch(c.value("IFMATCH")?.to_vec()),
            "IFNONE" => Condition::IfNone,
            _ => return Err(unknown(&kw)),
        };
        if cond != Condition::Always {
            return Err(AiError::syntax("IFMATCH and IFNONE exclude each other"));
        }
        cond = next;
    }
    Ok((q, EntryWrite { hash: h, value: v.to_vec(), ttl_ms: ttl, condition: cond }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    fn words(w: &[&str]) -> Vec<Vec<u8>> {
        w.iter().map(|x| x.as_bytes().to_vec()).collect()
    }

    fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
        v.iter().map(|x| x.as_slice()).collect()
    }

    #[test]
    fn key_parts_are_held_to_the_size_limit_with_their_lengths() {
        let limits = Limits::bytes(20);
        // "abcd" + 8 and "" + 8: 20 bytes hashed, at the limit
        let fits = words(&["KEY", "abcd", ""]);
        assert_eq!(hash(&refs(&fits), limits).unwrap(), hash::of_parts(&["abcd", ""]));
        let over = words(&["KEY", "abcde", ""]);
        let e = hash(&refs(&over), limits).unwrap_err();
        assert_eq!(e.code, Code::TooBig);
        assert_eq!(e.message, "KEY is 21 bytes, over max-payload-bytes 20");
        let goq = words(&["q", "PAYLOAD", "{}", "KEY", "abcde", ""]);
        assert_eq!(get_or_queue(&refs(&goq), limits).unwrap_err().code, Code::TooBig);
    }

    #[test]
    fn a_large_payload_is_judged_in_the_parse_and_a_small_one_later() {
        let limits = Limits::default();
        let hex = "ab".repeat(32);
        let small_bad = words(&["q", "PAYLOAD", "{", "HASH", &hex]);
        let (_, req) = get_or_queue(&refs(&small_bad), limits).unwrap();
        assert_eq!(req.payload, Payload::Unjudged, "a hit must not read a small payload");
        let big_bad = format!("[{}", "1,".repeat(INLINE_MAX_BYTES));
        let big = words(&["q", "PAYLOAD", &big_bad, "HASH", &hex]);
        let (_, req) = get_or_queue(&refs(&big), limits).unwrap();
        // judged, yet not refused: only a call that makes a job refuses it
        assert!(matches!(req.payload, Payload::Judged(Err(_))), "{:?}", req.payload);
        let big_good = format!("[{}1]", "1,".repeat(INLINE_MAX_BYTES));
        let parts = words(&["q", "PAYLOAD", &big_good, "KEY", "a"]);
        assert_eq!(get_or_queue(&refs(&parts), limits).unwrap().1.payload, Payload::Judged(Ok(())));
        // hashing the payload judges it, whatever its size
        let hashed = words(&["q", "PAYLOAD", "[1]"]);
        assert_eq!(get_or_queue(&refs(&hashed), limits).unwrap().1.payload, Payload::Judged(Ok(())));
    }
}
