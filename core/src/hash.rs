//! The content hash of SPEC section 3: SHA-256, lowercase hex, of length-prefixed KEY
//! parts, or of the canonical JSON (RFC 8785) of the payload.

use sha2::{Digest, Sha256};

use crate::error::{AiError, Result};
use crate::jcs;
use crate::rng::hex;

/// SHA-256 of the parts, each prefixed by its length as 8 bytes big-endian, so that
/// ("a:b", "") and ("a", ":b") differ.
pub fn of_parts<P: AsRef<[u8]>>(parts: &[P]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        let part = part.as_ref();
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex(&h.finalize())
}

/// SHA-256 of the payload's canonical JSON.
pub fn of_payload(json: &[u8]) -> Result<String> {
    let canonical = canonical_json(json)?;
    Ok(hex(&Sha256::digest(&canonical)))
}

/// The canonical form of a JSON text, RFC 8785 (JCS): see `crate::jcs`.
pub fn canonical_json(json: &[u8]) -> Result<Vec<u8>> {
    jcs::canonicalize(json)
}

/// A HASH argument: 64 hex digits, any case; returned in lowercase.
pub fn parse_hex(arg: &str, given: &[u8]) -> Result<String> {
    if given.len() != 64 || !given.iter().all(u8::is_ascii_hexdigit) {
        return Err(AiError::arg(arg, "must be 64 hex digits (a SHA-256)"));
    }
    Ok(String::from_utf8_lossy(given).to_ascii_lowercase())
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
        let a = of_payload(br#"{"b":1,"a":[true, null]}"#).unwrap();
        let b = of_payload(br#"{ "a" : [true,null], "b" : 1 }"#).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn hex_argument() {
        let h = "AB".repeat(32);
        assert_eq!(parse_hex("HASH", h.as_bytes()).unwrap(), "ab".repeat(32));
        assert!(parse_hex("HASH", b"abc").is_err());
        assert!(parse_hex("HASH", "zz".repeat(32).as_bytes()).is_err());
    }
}
