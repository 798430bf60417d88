//! A gate for repeated messages: at most one per kind per quiet period, the next one
//! admitted saying how many were held back. The module logs through it, so an error the
//! timer meets ten times a second writes one line every 10 s, not a flood.

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct Throttle {
    quiet: Duration,
    /// When each kind was last admitted, and how many were held back since.
    kinds: HashMap<&'static str, (Instant, u64)>,
}

impl Throttle {
    pub fn new(quiet: Duration) -> Throttle {
        Throttle { quiet, kinds: HashMap::new() }
    }

    pub fn quiet(&self) -> Duration {
        self.quiet
    }

    /// Whether a message of `kind` may go out at `now`: Some(how many were held back since
    /// the last one), or None (then it is counted as held back).
    pub fn admit(&mut self, kind: &'static str, now: Instant) -> Option<u64> {
        match self.kinds.get_mut(kind) {
            Some((last, held)) if now.saturating_duration_since(*last) < self.quiet => {
                *held += 1;
                None
            }
            Some((last, held)) => {
                *last = now;
                Some(std::mem::take(held))
            }
            None => {
                self.kinds.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_kind_per_quiet_period_then_the_count_held_back() {
        let quiet = Duration::from_secs(10);
        let mut g = Throttle::new(quiet);
        let t0 = Instant::now();
        assert_eq!(g.admit("a", t0), Some(0));
        assert_eq!(g.admit("b", t0), Some(0), "kinds are apart");
        assert_eq!(g.admit("a", t0 + Duration::from_secs(1)), None);
        assert_eq!(g.admit("a", t0 + Duration::from_secs(9)), None);
        assert_eq!(g.admit("a", t0 + quiet), Some(2));
        assert_eq!(g.admit("a", t0 + quiet + Duration::from_secs(1)), None);
        assert_eq!(g.admit("a", t0 + quiet * 2), Some(1));
        assert_eq!(g.admit("b", t0 + quiet * 2), Some(0));
    }
}
