//! Randomness the logic needs (ids, lease tokens, backoff jitter), supplied by the shell
//! so that unit tests can be deterministic. Everything built from it is replicated as
//! an effect, never recomputed on a replica.

pub trait Entropy {
    fn fill(&mut self, buf: &mut [u8]);

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }
}

/// A UUIDv7 string for `now_ms` (time-ordered across milliseconds).
pub fn uuid7(now_ms: i64, entropy: &mut dyn Entropy) -> String {
    let mut random = [0u8; 10];
    entropy.fill(&mut random);
    uuid::Builder::from_unix_timestamp_millis(now_ms.max(0) as u64, &random).into_uuid().hyphenated().to_string()
}

/// 128 random bits as 32 lowercase hex digits: lease tokens and lock tokens.
pub fn token(entropy: &mut dyn Entropy) -> String {
    let mut b = [0u8; 16];
    entropy.fill(&mut b);
    hex(&b)
}

pub fn hex(bytes: &[u8]) -> String {
    let digit = |n: u8| char::from_digit(u32::from(n), 16).unwrap_or('0');
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(digit(b >> 4));
        s.push(digit(b & 15));
    }
    s
}

/// A deterministic generator for tests (SplitMix64).
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl Entropy for SplitMix {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            for (dst, src) in chunk.iter_mut().zip(z.to_le_bytes()) {
                *dst = src;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid7_is_version_7_and_time_ordered() {
        let mut e = SplitMix(1);
        let a = uuid7(1_700_000_000_000, &mut e);
        let b = uuid7(1_700_000_000_001, &mut e);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "7");
        assert!(a < b);
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
    }

    #[test]
    fn tokens_differ_and_are_hex() {
        let mut e = SplitMix(7);
        let (a, b) = (token(&mut e), token(&mut e));
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }
}
