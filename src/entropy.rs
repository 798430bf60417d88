//! Randomness from the operating system for ids, lease and lock tokens, and jitter.

use aijob_core::rng::Entropy;

pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        if getrandom::getrandom(buf).is_err() {
            // Never seen on Linux; fall back to the clock mixed through SplitMix so a
            // token is still unique, if not secret.
            let mut s = aijob_core::rng::SplitMix(crate::store::api::now_ms() as u64 ^ buf.as_ptr() as u64);
            s.fill(buf);
        }
    }
}
