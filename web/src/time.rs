//! Instants as operators read them: UTC wall time, and "3 min ago" / "in 12 s".

/// `YYYY-MM-DD HH:MM:SS` (UTC) of ms since the epoch; "–" for 0 or less.
pub fn utc(ms: i64) -> String {
    if ms <= 0 {
        return "–".into();
    }
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// "12 s ago", "in 3 min", "just now"; "–" for 0 or less.
pub fn ago(ms: i64, now_ms: i64) -> String {
    if ms <= 0 {
        return "–".into();
    }
    let delta = now_ms - ms;
    let span = |d: i64| match d {
        0..=999 => None,
        1_000..=59_999 => Some(format!("{} s", d / 1000)),
        60_000..=3_599_999 => Some(format!("{} min", d / 60_000)),
        3_600_000..=172_799_999 => Some(format!("{} h", d / 3_600_000)),
        _ => Some(format!("{} d", d / 86_400_000)),
    };
    match (delta >= 0, span(delta.abs())) {
        (_, None) => "just now".into(),
        (true, Some(s)) => format!("{s} ago"),
        (false, Some(s)) => format!("in {s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_time_and_relative() {
        assert_eq!(utc(0), "–");
        assert_eq!(utc(1_796_073_758_709), "2026-11-30 21:22:38");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(ago(10_000, 10_500), "just now");
        assert_eq!(ago(10_000, 75_000), "1 min ago");
        assert_eq!(ago(100_000, 88_000), "in 12 s");
    }
}
