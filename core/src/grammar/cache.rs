//! The grammar of the CACHE.* commands.

use crate::args::{check_size, once, positive, queue, unknown, Cursor};
use crate::error::{AiError, Result};
use crate::grammar::job_option;
use crate::hash;
use crate::json;
use crate::keys::QueueKeys;
use crate::queue::cache::{Condition, EntryWrite};
use crate::queue::create::JobSpec;

/// CACHE.GETORQUEUE Q PAYLOAD json [HASH hex] [PRIORITY p] [MAXATTEMPTS n] [RETENTION ms]
/// [CACHETTL ms] [DEADLINE ms] [META json] [GROUP g] [COST n] [KEY part ...]
pub fn get_or_queue(args: &[&[u8]], max_bytes: i64) -> Result<(QueueKeys, JobSpec)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let mut spec = JobSpec::new(Vec::new());
    let (mut has_payload, mut hash, mut parts) = (false, None, None);
    while let Some(kw) = c.keyword() {
        match kw.as_str() {
            "PAYLOAD" => {
                // Parsed only where it is used (hashing it, or making the job): a cache hit
                // with HASH or KEY answers without reading the payload.
                let v = c.value("PAYLOAD")?;
                check_size("PAYLOAD", v, max_bytes)?;
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
            "KEY" => parts = Some(key_parts(&mut c)?),
            other if job_option(&mut spec, other, &mut c, max_bytes)? => {}
            _ => return Err(unknown(&kw)),
        }
    }
    if !has_payload {
        return Err(AiError::arg("PAYLOAD", "is required"));
    }
    spec.hash = Some(lookup_hash(hash, parts.as_deref(), &spec.payload)?);
    Ok((q, spec))
}

/// The hash a lookup uses: HASH as given, else the hash of the KEY parts, else the hash of
/// the payload (which must then be JSON).
fn lookup_hash(given: Option<String>, parts: Option<&[&[u8]]>, payload: &[u8]) -> Result<String> {
    match (given, parts) {
        (Some(_), Some(_)) => Err(AiError::syntax("HASH and KEY exclude each other")),
        (Some(h), None) => Ok(h),
        (None, Some(parts)) => Ok(hash::of_parts(parts)),
        (None, None) => {
            json::validate("PAYLOAD", payload)?;
            hash::of_payload(payload)
        }
    }
}

/// Every argument after KEY is a part.
fn key_parts<'a>(c: &mut Cursor<'a>) -> Result<Vec<&'a [u8]>> {
    let mut parts = Vec::new();
    while let Some(p) = c.next() {
        parts.push(p);
    }
    if parts.is_empty() {
        return Err(AiError::arg("KEY", "needs at least one part"));
    }
    Ok(parts)
}

/// CACHE.HASH [KEY part ...] | [PAYLOAD json]
pub fn hash(args: &[&[u8]], max_bytes: i64) -> Result<String> {
    let mut c = Cursor::new(args);
    match c.keyword().as_deref() {
        Some("KEY") => Ok(hash::of_parts(&key_parts(&mut c)?)),
        Some("PAYLOAD") => {
            let p = c.json("PAYLOAD", max_bytes)?;
            if let Some(kw) = c.keyword() {
                return Err(unknown(&kw));
            }
            hash::of_payload(p)
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
pub fn set(args: &[&[u8]], max_bytes: i64) -> Result<(QueueKeys, EntryWrite)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let h = hash::parse_hex("hash", c.next().ok_or_else(|| AiError::arg("hash", "is missing"))?)?;
    let v = c.next().ok_or_else(|| AiError::arg("json", "is missing"))?;
    check_size("json", v, max_bytes)?;
    json::validate("json", v)?;
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
