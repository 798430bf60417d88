//! The content hash (docs/cache.md#the-content-hash): SHA-256, lowercase hex, of length-prefixed KEY
//! parts, or of the canonical JSON (RFC 8785) of the payload.

use sha2::{Digest, Sha256};

use crate::error::{AiError, Result};
use crate::jcs;
use crate::json::Limits;
use crate::rng::hex;

/// Each KEY part is hashed after its length, this many bytes.
pub const PART_LENGTH_BYTES: usize = 8;

/// SHA-256 of the parts, each prefixed by its length as 8 bytes big-endian, so that
/// ("a:b", "") and ("a", ":b") differ.
pub fn of_parts<P: AsRef<[u8]>>(parts: &[P]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        let part = part.as_ref();
        let length: [u8; PART_LENGTH_BYTES] = (part.len() as u64).to_be_bytes();
        h.update(length);
        h.update(part);
    }
    hex(&h.finalize())
}

/// SHA-256 of the payload's canonical JSON; `arg` names it in errors. The payload is
/// validated by `json::validate` like every JSON input, so what hashes here is what a job
/// may carry, and the reverse.
pub fn of_payload(arg: &str, json: &[u8], limits: Limits) -> Result<String> {
    let canonical = jcs::canonicalize(arg, json, limits)?;
    Ok(hex(&Sha256::digest(&canonical)))
}

/// A HASH argument: 64 hex digits, any case; returned in lowercase.
pub fn parse_hex(arg: &str, given: &[u8]) -> Result<String> {
    if given.len() != 64 || !given.iter().all(u8::is_ascii_hexdigit) {
        return Err(AiError::arg(arg, "must be 64 hex digits (a SHA-256)"));
    }
    // all ASCII hex digits: the conversion cannot fail
    String::from_utf8(given.to_ascii_lowercase()).map_err(|_| AiError::arg(arg, "must be 64 hex digits (a SHA-256)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_length_prefixed() {
        assert_ne!(of_parts(&["a:b", ""]), of_parts(&["a", ":b"]));
        // sha256 of 8 zero bytes (one empty part)
        assert_eq!(of_parts(&[""]), "af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc");
    }

    #[test]
    fn payload_hash_ignores_key_order_and_whitespace() {
        let a = of_payload("PAYLOAD", br#"{"b":1,"a":[true, null]}"#, Limits::default()).unwrap();
        let b = of_payload("PAYLOAD", br#"{ "a" : [true,null], "b" : 1 }"#, Limits::default()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn payload_hash_refuses_what_a_job_refuses() {
        let limits = Limits::default();
        for bad in [&br#"{"a":1,"a":2}"#[..], br#""\ud800""#, b"1e999", b"{"] {
            let hashed = of_payload("PAYLOAD", bad, limits).unwrap_err();
            let validated = crate::json::validate("PAYLOAD", bad, limits).unwrap_err();
            assert_eq!(hashed, validated);
        }
        let tight = Limits { max_bytes: 3, max_depth: 128 };
        assert_eq!(of_payload("PAYLOAD", b"[1,2]", tight).unwrap_err().code, crate::error::Code::TooBig);
    }

    #[test]
    fn hex_argument() {
        let h = "AB".repeat(32);
        assert_eq!(parse_hex("HASH", h.as_bytes()).unwrap(), "ab".repeat(32));
        assert!(parse_hex("HASH", b"abc").is_err());
        assert!(parse_hex("HASH", "zz".repeat(32).as_bytes()).is_err());
    }
}
