//! Retry delays: d = base × 2^(attempts-1), capped at max, drawn from [d/2, d].

/// The delay before the next attempt after `attempts` failed ones; `random` picks the
/// point in [d/2, d].
pub fn delay(attempts: i64, base_ms: i64, max_ms: i64, random: u64) -> i64 {
    let d = ceiling(attempts, base_ms, max_ms);
    let low = d / 2;
    let span = (d - low) as u64 + 1;
    low + (random % span) as i64
}

/// The un-jittered delay d, computed without overflow.
pub fn ceiling(attempts: i64, base_ms: i64, max_ms: i64) -> i64 {
    let base = base_ms.max(0);
    let max = max_ms.max(0);
    let shift = (attempts.max(1) - 1).min(62) as u32;
    base.checked_mul(1i64 << shift).map_or(max, |d| d.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubles_then_caps() {
        assert_eq!(ceiling(1, 1000, 3_600_000), 1000);
        assert_eq!(ceiling(2, 1000, 3_600_000), 2000);
        assert_eq!(ceiling(3, 1000, 3_600_000), 4000);
        assert_eq!(ceiling(13, 1000, 3_600_000), 3_600_000);
        assert_eq!(ceiling(500, 3_600_000, 3_600_000), 3_600_000);
        assert_eq!(ceiling(1, 0, 10), 0);
    }

    proptest! {
        #[test]
        fn jitter_stays_in_half_to_full(attempts in 1i64..200, base in 0i64..10_000_000, max in 0i64..100_000_000, r: u64) {
            let d = ceiling(attempts, base, max);
            let got = delay(attempts, base, max, r);
            prop_assert!(got >= d / 2 && got <= d);
        }
    }
}
