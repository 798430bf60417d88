//! Randomness from the operating system for ids, lease and lock tokens, and jitter.
//! The bytes come from a pool refilled by one getrandom call per 4 KB: a syscall per id
//! or token cost more than the rest of making it. Every byte is handed out once.

use std::cell::RefCell;

use aijob_core::rng::Entropy;

const POOL: usize = 4096;

struct Pool {
    bytes: [u8; POOL],
    used: usize,
}

thread_local! {
    static RANDOM: RefCell<Pool> = const { RefCell::new(Pool { bytes: [0; POOL], used: POOL }) };
}

pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        let pooled = buf.len() <= POOL && RANDOM.with(|p| p.try_borrow_mut().map(|mut p| p.take(buf)).unwrap_or(false));
        if !pooled {
            os_fill(buf);
        }
    }
}

impl Pool {
    /// Fills `buf` from the pool (refilling it when short); false when the OS refused.
    fn take(&mut self, buf: &mut [u8]) -> bool {
        if POOL - self.used < buf.len() {
            if getrandom::getrandom(&mut self.bytes).is_err() {
                return false;
            }
            self.used = 0;
        }
        let Some(src) = self.bytes.get(self.used..self.used + buf.len()) else { return false };
        buf.copy_from_slice(src);
        self.used += buf.len();
        true
    }
}

fn os_fill(buf: &mut [u8]) {
    if getrandom::getrandom(buf).is_err() {
        // Never seen on Linux; fall back to the clock mixed through SplitMix so a
        // token is still unique, if not secret.
        let mut s = aijob_core::rng::SplitMix(crate::ffi::now_ms() as u64 ^ buf.as_ptr() as u64);
        s.fill(buf);
    }
}
