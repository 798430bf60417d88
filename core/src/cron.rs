//! Schedule times (docs/schedules.md#timetables): the standard 5-field cron expression (minute hour
//! day-of-month month day-of-week) evaluated in UTC, and the `EVERY ms` grid.
//!
//! Grammar (Vixie cron): each field is a comma list of items; an item is `*`, a value or a
//! range `a-b`, and `*` or a range may take a step `/n`. Month names JAN-DEC and day names
//! SUN-SAT (3 letters, any case) stand for their numbers, in ranges too. Day-of-week is 0-7,
//! 0 and 7 both Sunday. Shorthands (any case): `@yearly`/`@annually`, `@monthly`, `@weekly`,
//! `@daily`/`@midnight`, `@hourly`. When day-of-month and day-of-week are both restricted a
//! day matches if EITHER does, otherwise both must. As in Vixie's `entry.c`, a day field
//! counts as unrestricted when its text starts with `*` (so `*/2` too), not only for a bare
//! `*`. Refused, because Vixie refuses them or they are not part of the standard: a step on a
//! single value (`5/10`), reversed ranges (`5-1`), a step of 0 or above the field's maximum,
//! empty list items, `?`, `L`, `W`, `#`, a seconds or year field.
//!
//! # Hand-written, not a crate: the decision
//!
//! The crates on crates.io were measured (release build, from 2026-11-27 UTC):
//! - `cron` 0.17 needs 6 or 7 fields (seconds first), counts day-of-week 1-7 from Sunday
//!   (Quartz), refuses `0` and reads `7` as Saturday, and ANDs day-of-month with day-of-week.
//! - `saffron` 0.1 (last release 2020) also counts days from 1 = Sunday (`0 9 * * 1-5` fired
//!   on a Sunday), has no `@` shorthands and accepts the reversed range `5-1`.
//! - `croner` 2.2 / 4.0 is the closest fit. It parsed about 19 million random strings
//!   without panicking, and it does 5 fields, UTC, names and the OR rule. But it accepts
//!   more than the standard: `L`/`W`/`#`, `?` (2.x), `1,,2`, a lone `,`, and in 4.x 6- and
//!   7-field patterns by default. An accepted `", * * * *"` (no minute at all) makes
//!   `find_next_occurrence` walk to the year 5000 for about 4 s, which would block
//!   redis-server. `0 0 30 2 *` takes 5-15 ms, stepping day by day. It treats `*/2` as
//!   restricted, so the OR rule differs from Vixie's. It has no `@midnight`, and 2.x has an
//!   `expect` in `iter_after`. 4.x pulls in `derive_builder` and `strum` (proc macros) on top
//!   of `chrono`.
//!
//! Guarding croner would mean validating the full grammar first, which is the whole parser.
//! Once the fields are bitmasks, the evaluator is a few dozen lines. So this module does
//! both itself and needs no `chrono`. Nothing here can panic: there is no indexing and no
//! unwrap, and arithmetic near the i64 limits is checked or done in i128. The search is
//! bounded by the horizon below and by `MAX_STEPS`.

use crate::error::{AiError, Result};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Longer input is refused before any parsing: no real expression comes close.
const MAX_LEN: usize = 256;

/// How far `next_after` looks. 8 years rather than 5: the longest gap between two
/// 29 Februaries is 8 years (2096 -> 2104), and `0 0 29 2 *` must not stop in between.
const HORIZON_YEARS: i64 = 8;

/// Backstop on the search loop. Each step advances at least one day, month or hour, so the
/// horizon (about 3,300 days) ends the search long before this.
const MAX_STEPS: u32 = 10_000;

/// A parsed cron expression: one bitmask per field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cron {
    /// Bit n = minute n (0-59).
    minutes: u64,
    /// Bit n = hour n (0-23).
    hours: u64,
    /// Bit n = day n of the month (1-31).
    doms: u64,
    /// Bit n = month n (1-12).
    months: u64,
    /// Bit n = weekday n, 0 = Sunday .. 6 = Saturday (7 is folded onto 0).
    dows: u64,
    /// The day-of-month text starts with `*` (Vixie's DOM_STAR).
    dom_star: bool,
    /// The day-of-week text starts with `*` (Vixie's DOW_STAR).
    dow_star: bool,
}

/// What one field accepts, for parsing and for error messages.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// 3-letter names, the first standing for `name_base`.
    names: &'static [&'static str],
    name_base: u32,
}

const MINUTE: Field = Field { name: "minute", min: 0, max: 59, names: &[], name_base: 0 };
const HOUR: Field = Field { name: "hour", min: 0, max: 23, names: &[], name_base: 0 };
const DOM: Field = Field { name: "day-of-month", min: 1, max: 31, names: &[], name_base: 0 };
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
    name_base: 1,
};
const DOW: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    name_base: 0,
};

fn bad(problem: impl std::fmt::Display) -> AiError {
    AiError::arg("CRON", problem)
}

/// Parses a 5-field expression or an `@` shorthand; the error names CRON and the field.
pub fn parse(expr: &str) -> Result<Cron> {
    if expr.len() > MAX_LEN {
        return Err(bad(format!("is longer than {MAX_LEN} bytes")));
    }
    let text = expr.trim_matches(|c: char| c.is_ascii_whitespace());
    if text.is_empty() {
        return Err(bad("is empty"));
    }
    let text = if text.starts_with('@') { shorthand(text)? } else { text };
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let [minute, hour, dom, month, dow] = fields.as_slice() else {
        return Err(bad(format!(
            "must have 5 fields (minute hour day-of-month month day-of-week), got {}",
            fields.len()
        )));
    };
    Ok(Cron {
        minutes: field_mask(minute, &MINUTE)?,
        hours: field_mask(hour, &HOUR)?,
        doms: field_mask(dom, &DOM)?,
        months: field_mask(month, &MONTH)?,
        dows: fold_sunday(field_mask(dow, &DOW)?),
        dom_star: dom.starts_with('*'),
        dow_star: dow.starts_with('*'),
    })
}

fn shorthand(text: &str) -> Result<&'static str> {
    const TABLE: [(&str, &str); 7] = [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ];
    TABLE.iter().find(|(name, _)| name.eq_ignore_ascii_case(text)).map(|(_, expr)| *expr).ok_or_else(|| {
        bad(format!(
            "has an unknown shorthand '{}' (use @yearly, @annually, @monthly, @weekly, \
                 @daily, @midnight or @hourly)",
            shown(text)
        ))
    })
}

/// User text echoed in an error: printable ASCII only and short, so a reply stays one
/// clean line whatever was sent.
fn shown(text: &str) -> String {
    let mut out: String =
        text.chars().take(32).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
    if text.chars().nth(32).is_some() {
        out.push_str("...");
    }
    out
}

fn field_mask(text: &str, field: &Field) -> Result<u64> {
    text.split(',').try_fold(0u64, |mask, item| Ok(mask | item_mask(item, field)?))
}

fn item_mask(item: &str, field: &Field) -> Result<u64> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(step_value(step, field)?)),
        None => (item, None),
    };
    let (lo, hi) = if range == "*" {
        (field.min, field.max)
    } else if let Some((a, b)) = range.split_once('-') {
        let (lo, hi) = (value(a, field)?, value(b, field)?);
        if lo > hi {
            return Err(bad(format!("{} range {} is reversed", field.name, shown(range))));
        }
        (lo, hi)
    } else {
        let v = value(range, field)?;
        if step.is_some() {
            // Vixie refuses `5/10`; guessing "5 to max" would be a silent surprise.
            return Err(bad(format!("{} step '{}' needs * or a range before the /", field.name, shown(item))));
        }
        (v, v)
    };
    Ok(bits(lo, hi, step.unwrap_or(1)))
}

fn value(text: &str, field: &Field) -> Result<u32> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // More than 9 digits cannot be in range and would not fit a u32 anyway.
        let v = if text.len() > 9 { None } else { text.parse::<u32>().ok() };
        return match v {
            Some(v) if (field.min..=field.max).contains(&v) => Ok(v),
            _ => Err(bad(format!("{} {} is out of range {}-{}", field.name, shown(text), field.min, field.max))),
        };
    }
    let named = field.names.iter().position(|n| n.eq_ignore_ascii_case(text));
    match named.and_then(|i| u32::try_from(i).ok()) {
        Some(i) => Ok(field.name_base + i),
        None => Err(bad(format!("{} has a bad value '{}'", field.name, shown(text)))),
    }
}

fn step_value(text: &str, field: &Field) -> Result<u32> {
    let ok = !text.is_empty() && text.len() <= 9 && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u32>() {
        Ok(step) if ok && (1..=field.max).contains(&step) => Ok(step),
        _ => Err(bad(format!("{} step '{}' must be a number from 1 to {}", field.name, shown(text), field.max))),
    }
}

fn bits(lo: u32, hi: u32, step: u32) -> u64 {
    let step = usize::try_from(step.max(1)).unwrap_or(1);
    (lo..=hi).step_by(step).fold(0, |mask, v| mask | 1u64.checked_shl(v).unwrap_or(0))
}

/// 7 and 0 are both Sunday; the search only knows 0.
fn fold_sunday(mask: u64) -> u64 {
    if mask & (1 << 7) != 0 {
        (mask & !(1 << 7)) | 1
    } else {
        mask
    }
}

fn has(mask: u64, n: u32) -> bool {
    mask.checked_shr(n).is_some_and(|m| m & 1 == 1)
}

/// The lowest set bit at or above `from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    let above = mask.checked_shr(from)?;
    (above != 0).then(|| from + above.trailing_zeros())
}

impl Cron {
    /// The first instant strictly after `after_ms` (ms since the Unix epoch, UTC) that
    /// matches, in ms (always on a whole minute); None if none within 8 years (e.g.
    /// "0 0 30 2 *" never matches) or past the range of i64.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        self.search(after_ms).0
    }

    /// The search, with the number of steps it took (the tests bound it).
    fn search(&self, after_ms: i64) -> (Option<i64>, u32) {
        let first = after_ms.div_euclid(MINUTE_MS).checked_add(1).and_then(|m| m.checked_mul(MINUTE_MS));
        let Some(first) = first else { return (None, 0) };
        let mut at = Moment::from_ms(first);
        let last_year = at.year.saturating_add(HORIZON_YEARS);
        for steps in 1..=MAX_STEPS {
            if at.year > last_year {
                return (None, steps);
            }
            if self.advance(&mut at) {
                return (at.to_ms(), steps);
            }
        }
        (None, MAX_STEPS)
    }

    /// True when `at` matches; otherwise moves `at` to the next instant that could, skipping
    /// whole months, days or hours so the search never walks minute by minute.
    fn advance(&self, at: &mut Moment) -> bool {
        if !has(self.months, at.month) {
            at.next_month(self.months);
            return false;
        }
        if !self.day_matches(at) {
            at.next_day();
            return false;
        }
        match next_bit(self.hours, at.hour) {
            None => {
                at.next_day();
                return false;
            }
            Some(h) if h != at.hour => {
                at.hour = h;
                at.minute = 0;
            }
            Some(_) => {}
        }
        match next_bit(self.minutes, at.minute) {
            Some(m) => {
                at.minute = m;
                true
            }
            None => {
                at.next_hour();
                false
            }
        }
    }

    /// Vixie's rule: OR when both day fields are restricted, AND otherwise.
    fn day_matches(&self, at: &Moment) -> bool {
        let dom = has(self.doms, at.day);
        let dow = has(self.dows, weekday(days_from_civil(at.year, at.month, at.day)));
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }
}

/// For EVERY ms schedules: the first tick strictly after `after_ms` on the grid
/// start + k*every (k >= 0): `start_ms` itself while `after_ms` is before it. An `every_ms`
/// below 1 counts as 1 (the caller validates); a tick beyond i64 saturates to i64::MAX.
pub fn next_every(start_ms: i64, every_ms: i64, after_ms: i64) -> i64 {
    if after_ms < start_ms {
        return start_ms;
    }
    // i128 holds every intermediate value, so no overflow check is needed.
    let every = i128::from(every_ms.max(1));
    let k = (i128::from(after_ms) - i128::from(start_ms)) / every + 1;
    i64::try_from(i128::from(start_ms) + k * every).unwrap_or(i64::MAX)
}

/// A UTC wall-clock minute under consideration by the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Moment {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
}

impl Moment {
    fn from_ms(ms: i64) -> Moment {
        let (year, month, day) = civil_from_days(ms.div_euclid(DAY_MS));
        let in_day = ms.rem_euclid(DAY_MS);
        Moment {
            year,
            month,
            day,
            hour: u32::try_from(in_day / HOUR_MS).unwrap_or(0),
            minute: u32::try_from(in_day % HOUR_MS / MINUTE_MS).unwrap_or(0),
        }
    }

    /// None past the range of i64. i128 because the day's start may lie below i64::MIN
    /// while the minute itself does not.
    fn to_ms(self) -> Option<i64> {
        let day = i128::from(days_from_civil(self.year, self.month, self.day));
        let time = i128::from(self.hour) * i128::from(HOUR_MS) + i128::from(self.minute) * i128::from(MINUTE_MS);
        i64::try_from(day * i128::from(DAY_MS) + time).ok()
    }

    /// Midnight on the 1st of the next month in `months`, possibly in the next year.
    fn next_month(&mut self, months: u64) {
        match next_bit(months, self.month + 1) {
            Some(m) => self.month = m,
            None => {
                self.year = self.year.saturating_add(1);
                // An empty mask cannot be parsed; January just lets the horizon end it.
                self.month = next_bit(months, 1).unwrap_or(1);
            }
        }
        self.day = 1;
        self.hour = 0;
        self.minute = 0;
    }

    fn next_day(&mut self) {
        self.day += 1;
        if self.day > days_in_month(self.year, self.month) {
            self.day = 1;
            self.month += 1;
            if self.month > 12 {
                self.month = 1;
                self.year = self.year.saturating_add(1);
            }
        }
        self.hour = 0;
        self.minute = 0;
    }

    fn next_hour(&mut self) {
        if self.hour >= 23 {
            self.next_day();
        } else {
            self.hour += 1;
            self.minute = 0;
        }
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// 0 = Sunday .. 6 = Saturday; day 0 (1970-01-01) was a Thursday.
fn weekday(days: i64) -> u32 {
    u32::try_from((days + 4).rem_euclid(7)).unwrap_or(0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
/// Counting years from March puts the leap day last, so the year's shape is regular.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of `days_from_civil` (Hinnant's civil_from_days): (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, u32::try_from(m).unwrap_or(1), u32::try_from(d).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// ms of a UTC wall-clock time.
    fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
        days_from_civil(y, mo, d) * DAY_MS + h * HOUR_MS + mi * MINUTE_MS
    }

    fn next(expr: &str, after: i64) -> Option<i64> {
        parse(expr).unwrap().next_after(after)
    }

    fn err(expr: &str) -> String {
        let e = parse(expr).expect_err(expr);
        assert_eq!(e.code, crate::error::Code::Err);
        assert!(e.message.starts_with("CRON "), "{expr:?}: {}", e.message);
        e.message
    }

    // ---- civil dates ----

    #[test]
    fn days_from_civil_matches_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 1, 1), 10_957);
        assert_eq!(days_from_civil(2026, 11, 27), 20_784);
        assert_eq!(days_from_civil(2028, 2, 29), 21_243);
        assert_eq!(days_from_civil(2100, 3, 1), 47_541);
        assert_eq!(days_from_civil(1900, 3, 1), -25_508);
        assert_eq!(days_from_civil(1600, 3, 1), -135_080);
        assert_eq!(days_from_civil(1, 1, 1), -719_162);
        assert_eq!(days_from_civil(9999, 12, 31), 2_932_896);
        // 2026-11-27 10:07:30 UTC, as any Unix tool gives it.
        assert_eq!(at(2026, 11, 27, 10, 7) + 30_000, 1_795_774_050_000);
    }

    #[test]
    fn weekdays_of_known_dates() {
        assert_eq!(weekday(0), 4); // 1970-01-01 Thursday
        assert_eq!(weekday(-1), 3); // 1969-12-31 Wednesday
        assert_eq!(weekday(days_from_civil(2026, 11, 27)), 5); // Friday
        assert_eq!(weekday(days_from_civil(2000, 1, 1)), 6); // Saturday
        assert_eq!(weekday(days_from_civil(1, 1, 1)), 1); // Monday
        assert_eq!(weekday(days_from_civil(2028, 2, 29)), 2); // Tuesday
    }

    #[test]
    fn leap_years() {
        assert!(is_leap(2000) && is_leap(2028) && is_leap(2400) && is_leap(-4));
        assert!(!is_leap(1900) && !is_leap(2100) && !is_leap(2026));
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(2026, 4), 30);
    }

    /// An independent civil calendar: walks whole years, then months, from 1970.
    fn naive_civil(mut days: i64) -> (i64, u32, u32) {
        let mut y = 1970;
        loop {
            let len = if is_leap(y) { 366 } else { 365 };
            if days < 0 {
                y -= 1;
                days += if is_leap(y) { 366 } else { 365 };
            } else if days >= len {
                days -= len;
                y += 1;
            } else {
                break;
            }
        }
        let mut m = 1;
        while days >= i64::from(days_in_month(y, m)) {
            days -= i64::from(days_in_month(y, m));
            m += 1;
        }
        (y, m, days as u32 + 1)
    }

    // ---- parse: accepted ----

    #[test]
    fn shorthands_expand() {
        assert_eq!(parse("@yearly"), parse("0 0 1 1 *"));
        assert_eq!(parse("@annually"), parse("0 0 1 1 *"));
        assert_eq!(parse("@monthly"), parse("0 0 1 * *"));
        assert_eq!(parse("@weekly"), parse("0 0 * * 0"));
        assert_eq!(parse("@daily"), parse("0 0 * * *"));
        assert_eq!(parse("@midnight"), parse("0 0 * * *"));
        assert_eq!(parse("@hourly"), parse("0 * * * *"));
        assert_eq!(parse("  @HOURLY\t"), parse("0 * * * *"));
    }

    #[test]
    fn names_and_sunday_spellings_agree() {
        assert_eq!(parse("0 0 * * 7"), parse("0 0 * * 0"));
        assert_eq!(parse("0 0 * * sun"), parse("0 0 * * 0"));
        assert_eq!(parse("0 0 * * 0,7"), parse("0 0 * * 0"));
        assert_eq!(parse("0 0 * * Mon-FRI"), parse("0 0 * * 1-5"));
        assert_eq!(parse("0 0 * jan-Mar,dec *"), parse("0 0 * 1-3,12 *"));
        assert_eq!(parse("0 0 * * 5-7"), parse("0 0 * * 0,5,6"));
        assert_eq!(parse("0 0 * * SAT-7"), parse("0 0 * * 0,6"));
    }

    #[test]
    fn lists_ranges_steps() {
        let c = parse("10-50/10 */6 1,15 */3 *").unwrap();
        assert_eq!(c.minutes, (1 << 10) | (1 << 20) | (1 << 30) | (1 << 40) | (1 << 50));
        assert_eq!(c.hours, (1 << 0) | (1 << 6) | (1 << 12) | (1 << 18));
        assert_eq!(c.doms, (1 << 1) | (1 << 15));
        assert_eq!(c.months, (1 << 1) | (1 << 4) | (1 << 7) | (1 << 10));
        assert_eq!(c.dows, 0x7f);
        assert!(!c.dom_star && c.dow_star);
        assert_eq!(parse("05 08 * * *"), parse("5 8 * * *"));
        assert_eq!(parse("*/59 * * * *").unwrap().minutes, 1 | (1 << 59));
        assert!(parse("*/2 * * * *").unwrap().minutes & 0x3 == 1);
    }

    // ---- parse: refused ----

    #[test]
    fn wrong_field_count() {
        assert!(err("* * * *").contains("must have 5 fields"));
        assert!(err("* * * * * *").contains("got 6"));
        assert!(err("0 0 0 1 1 * 2026").contains("got 7"));
        assert!(err("garbage").contains("got 1"));
    }

    #[test]
    fn out_of_range_values() {
        assert_eq!(err("60 * * * *"), "CRON minute 60 is out of range 0-59");
        assert_eq!(err("* 24 * * *"), "CRON hour 24 is out of range 0-23");
        assert_eq!(err("* * 0 * *"), "CRON day-of-month 0 is out of range 1-31");
        assert_eq!(err("* * 32 * *"), "CRON day-of-month 32 is out of range 1-31");
        assert_eq!(err("* * * 0 *"), "CRON month 0 is out of range 1-12");
        assert_eq!(err("* * * 13 *"), "CRON month 13 is out of range 1-12");
        assert_eq!(err("* * * * 8"), "CRON day-of-week 8 is out of range 0-7");
        assert!(err("99999999999999999999 * * * *").contains("out of range"));
        assert!(err("1-60 * * * *").contains("minute 60 is out of range"));
    }

    #[test]
    fn bad_steps() {
        assert_eq!(err("*/0 * * * *"), "CRON minute step '0' must be a number from 1 to 59");
        assert!(err("*/60 * * * *").contains("minute step '60'"));
        assert!(err("* */24 * * *").contains("hour step"));
        assert!(err("*/ * * * *").contains("minute step ''"));
        assert!(err("*/-1 * * * *").contains("minute step"));
        assert!(err("*/+5 * * * *").contains("minute step"));
        assert!(err("*/5/2 * * * *").contains("minute step"));
        assert!(err("*/4294967296 * * * *").contains("minute step"));
        assert!(err("5/10 * * * *").contains("needs * or a range"));
    }

    #[test]
    fn reversed_ranges() {
        assert_eq!(err("5-1 * * * *"), "CRON minute range 5-1 is reversed");
        assert!(err("0 0 * * 7-0").contains("day-of-week range 7-0 is reversed"));
        assert!(err("0 0 * * SAT-SUN").contains("reversed"));
        assert!(err("0 0 * DEC-JAN *").contains("month range"));
    }

    #[test]
    fn garbage_and_extensions() {
        assert_eq!(err(""), "CRON is empty");
        assert_eq!(err(" \t "), "CRON is empty");
        assert!(err("a b c d e").contains("minute has a bad value 'a'"));
        assert!(err("1,,2 * * * *").contains("minute has a bad value ''"));
        assert!(err(", * * * *").contains("bad value ''"));
        assert!(err("-1 * * * *").contains("bad value ''"));
        assert!(err("1--2 * * * *").contains("bad value"));
        assert!(err("+5 * * * *").contains("bad value"));
        assert!(err("? * * * *").contains("bad value"));
        assert!(err("0 0 L * *").contains("day-of-month has a bad value 'L'"));
        assert!(err("0 0 15W * *").contains("bad value"));
        assert!(err("0 0 * * 5#2").contains("day-of-week has a bad value '5#2'"));
        assert!(err("0 0 * * MONDAY").contains("bad value 'MONDAY'"));
        assert!(err("JAN * * * *").contains("minute has a bad value 'JAN'"));
        assert!(err("0 0 * MON *").contains("month has a bad value"));
        assert!(err("0 0 * * JAN").contains("day-of-week has a bad value"));
        assert!(err("*-5 * * * *").contains("bad value '*'"));
        assert!(err("@reboot").contains("unknown shorthand '@reboot'"));
        assert!(err("@every 5m").contains("unknown shorthand"));
        assert!(err("@").contains("unknown shorthand"));
        assert!(err("@hourly *").contains("unknown shorthand"));
        assert!(err("0 0 * * \u{e9}").contains("bad value '?'"));
    }

    #[test]
    fn very_long_input() {
        let long = format!("{} * * * *", "1,".repeat(200));
        assert_eq!(err(&long), "CRON is longer than 256 bytes");
        assert_eq!(err(&" ".repeat(10_000)), "CRON is longer than 256 bytes");
        // Just under the limit still parses when valid.
        let ok = format!("{}0 * * * *", "0,".repeat(120));
        assert!(ok.len() <= MAX_LEN && parse(&ok).is_ok());
    }

    #[test]
    fn echoed_text_is_clean_and_short() {
        let e = err(&format!("{}x * * * *", "1".repeat(40)));
        assert!(e.contains("..."), "{e}");
        assert!(e.len() < 100, "{e}");
        assert!(!err("0 0 * * \u{7}").contains('\u{7}'));
    }

    // ---- next_after: hand-computed ----

    #[test]
    fn every_fifteen_minutes() {
        let e = "*/15 * * * *";
        assert_eq!(next(e, at(2026, 11, 27, 10, 7) + 30_000), Some(at(2026, 11, 27, 10, 15)));
        assert_eq!(next(e, at(2026, 11, 27, 10, 45)), Some(at(2026, 11, 27, 11, 0)));
        assert_eq!(next(e, at(2026, 11, 27, 23, 50)), Some(at(2026, 11, 28, 0, 0)));
    }

    #[test]
    fn strictly_after_an_exact_match() {
        let e = "*/5 * * * *";
        assert_eq!(next(e, at(2026, 11, 27, 10, 5)), Some(at(2026, 11, 27, 10, 10)));
        assert_eq!(next(e, at(2026, 11, 27, 10, 5) + 1), Some(at(2026, 11, 27, 10, 10)));
        assert_eq!(next(e, at(2026, 11, 27, 10, 5) - 1), Some(at(2026, 11, 27, 10, 5)));
    }

    #[test]
    fn weekdays_skip_the_weekend() {
        // 2026-11-27 is a Friday.
        let e = "0 9 * * 1-5";
        assert_eq!(next(e, at(2026, 11, 27, 8, 59)), Some(at(2026, 11, 27, 9, 0)));
        assert_eq!(next(e, at(2026, 11, 27, 9, 0)), Some(at(2026, 11, 30, 9, 0)));
        assert_eq!(next(e, at(2026, 11, 28, 12, 0)), Some(at(2026, 11, 30, 9, 0)));
    }

    #[test]
    fn day_31_skips_short_months() {
        let e = "0 0 31 * *";
        assert_eq!(next(e, at(2026, 11, 1, 0, 0)), Some(at(2026, 12, 31, 0, 0)));
        assert_eq!(next(e, at(2027, 1, 31, 0, 0)), Some(at(2027, 3, 31, 0, 0)));
        assert_eq!(next(e, at(2027, 3, 31, 0, 0)), Some(at(2027, 5, 31, 0, 0)));
        assert_eq!(next(e, at(2027, 7, 31, 0, 0)), Some(at(2027, 8, 31, 0, 0)));
        assert_eq!(next(e, at(2027, 8, 31, 0, 0)), Some(at(2027, 10, 31, 0, 0)));
    }

    #[test]
    fn february_29_waits_for_a_leap_year() {
        let e = "0 0 29 2 *";
        assert_eq!(next(e, at(2026, 11, 27, 0, 0)), Some(at(2028, 2, 29, 0, 0)));
        assert_eq!(next(e, at(2028, 2, 29, 0, 0)), Some(at(2032, 2, 29, 0, 0)));
        // 2100 is not a leap year: the 8-year gap is within the horizon.
        assert_eq!(next(e, at(2096, 3, 1, 0, 0)), Some(at(2104, 2, 29, 0, 0)));
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // Both restricted: the 1st, the 15th, or any Friday.
        let e = "0 0 1,15 * 5";
        let mut t = at(2026, 11, 27, 0, 0); // a Friday
        let expected = [
            (2026, 12, 1), // Tuesday, the 1st
            (2026, 12, 4), // Friday
            (2026, 12, 11),
            (2026, 12, 15), // Tuesday, the 15th
            (2026, 12, 18),
            (2026, 12, 25),
            (2027, 1, 1), // Friday and the 1st
            (2027, 1, 8),
            (2027, 1, 15),
        ];
        for (y, m, d) in expected {
            let got = next(e, t).unwrap();
            assert_eq!(got, at(y, m, d, 0, 0), "after {t}");
            t = got;
        }
        // dom 29 of February OR Monday: 2027-02-01 is a Monday.
        assert_eq!(next("0 0 29 2 1", at(2026, 11, 27, 0, 0)), Some(at(2027, 2, 1, 0, 0)));
    }

    #[test]
    fn a_star_led_day_field_means_and() {
        // Vixie: `*/2` starts with `*`, so odd days AND Mondays: Nov 30 is even, Dec 7 odd.
        assert_eq!(next("0 0 */2 * 1", at(2026, 11, 27, 0, 0)), Some(at(2026, 12, 7, 0, 0)));
        // Only dow restricted: plain Sundays.
        assert_eq!(next("0 0 * * 0", at(2026, 11, 27, 0, 0)), Some(at(2026, 11, 29, 0, 0)));
        // Only dom restricted: the 13th, whatever the weekday.
        assert_eq!(next("0 0 13 * *", at(2026, 11, 27, 0, 0)), Some(at(2026, 12, 13, 0, 0)));
    }

    #[test]
    fn shorthand_times() {
        let t = at(2026, 11, 27, 10, 7); // Friday
        assert_eq!(next("@hourly", t), Some(at(2026, 11, 27, 11, 0)));
        assert_eq!(next("@daily", t), Some(at(2026, 11, 28, 0, 0)));
        assert_eq!(next("@midnight", t), Some(at(2026, 11, 28, 0, 0)));
        assert_eq!(next("@weekly", t), Some(at(2026, 11, 29, 0, 0))); // Sunday
        assert_eq!(next("@weekly", at(2026, 11, 29, 0, 0)), Some(at(2026, 12, 6, 0, 0)));
        assert_eq!(next("@monthly", t), Some(at(2026, 12, 1, 0, 0)));
        assert_eq!(next("@yearly", t), Some(at(2027, 1, 1, 0, 0)));
        assert_eq!(next("@annually", at(2027, 1, 1, 0, 0)), Some(at(2028, 1, 1, 0, 0)));
    }

    #[test]
    fn month_end_and_year_rollover() {
        let eve = at(2026, 12, 31, 23, 59);
        assert_eq!(next("* * * * *", eve), Some(at(2027, 1, 1, 0, 0)));
        assert_eq!(next("* * * * *", eve - 1), Some(eve));
        assert_eq!(next("59 23 31 12 *", eve), Some(at(2027, 12, 31, 23, 59)));
        assert_eq!(next("0 0 1 * *", at(2027, 2, 28, 12, 0)), Some(at(2027, 3, 1, 0, 0)));
        assert_eq!(next("0 12 28-31 2 *", at(2028, 2, 28, 12, 0)), Some(at(2028, 2, 29, 12, 0)));
        assert_eq!(next("0 12 28-31 2 *", at(2027, 2, 28, 12, 0)), Some(at(2028, 2, 28, 12, 0)));
        assert_eq!(next("30 23 * * *", at(2026, 11, 30, 23, 45)), Some(at(2026, 12, 1, 23, 30)));
    }

    #[test]
    fn names_in_fields() {
        let t = at(2026, 11, 27, 7, 0); // Friday
                                        // Sundays of Jan-Mar: 2027-01-01 is a Friday, so the 3rd.
        assert_eq!(next("0 0 * JAN-mar sun", t), Some(at(2027, 1, 3, 0, 0)));
        assert_eq!(next("30 6 * * MON,wed,Fri", t), Some(at(2026, 11, 30, 6, 30)));
        assert_eq!(next("0 0 1 feb,Aug *", t), Some(at(2027, 2, 1, 0, 0)));
    }

    #[test]
    fn seven_is_sunday() {
        let t = at(2026, 11, 27, 0, 0); // Friday
        for e in ["0 0 * * 7", "0 0 * * 0", "0 0 * * SUN", "0 0 * * 6-7"] {
            let want = if e.ends_with("6-7") { at(2026, 11, 28, 0, 0) } else { at(2026, 11, 29, 0, 0) };
            assert_eq!(next(e, t), Some(want), "{e}");
        }
        assert_eq!(next("0 0 * * 5-7", at(2026, 11, 28, 0, 0)), Some(at(2026, 11, 29, 0, 0)));
    }

    #[test]
    fn ranges_with_steps() {
        let e = "10-50/10 * * * *";
        assert_eq!(next(e, at(2026, 11, 27, 10, 50)), Some(at(2026, 11, 27, 11, 10)));
        assert_eq!(next(e, at(2026, 11, 27, 10, 11)), Some(at(2026, 11, 27, 10, 20)));
        assert_eq!(next("0 9-17/4 * * *", at(2026, 11, 27, 13, 0)), Some(at(2026, 11, 27, 17, 0)));
    }

    #[test]
    fn never_matching_gives_none_quickly() {
        let t = at(2026, 11, 27, 0, 0);
        for e in ["0 0 30 2 *", "0 0 31 2,4,6,9,11 *", "59 23 31 4 *", "0 0 30,31 2 *"] {
            let (got, steps) = parse(e).unwrap().search(t);
            assert_eq!(got, None, "{e}");
            assert!(steps < 2_000, "{e}: {steps} steps");
        }
    }

    #[test]
    fn search_work_is_bounded() {
        // The most day-by-day walking: every month visited, no day ever matching.
        let (got, steps) = parse("0 0 31 2,4,6,9,11 *").unwrap().search(0);
        assert_eq!(got, None);
        assert!(steps < 5_000, "{steps}");
        // A match on a minute far from the start: only a few dozen steps.
        let (got, steps) = parse("59 23 31 12 *").unwrap().search(at(2026, 1, 1, 0, 0));
        assert_eq!(got, Some(at(2026, 12, 31, 23, 59)));
        assert!(steps < 50, "{steps}");
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        let c = parse("* * * * *").unwrap();
        assert_eq!(c.next_after(i64::MAX), None);
        let near_end = i64::MAX - MINUTE_MS;
        assert!(c.next_after(near_end).is_some_and(|r| r > near_end && r % MINUTE_MS == 0));
        assert_eq!(c.next_after(-1), Some(0));
        assert_eq!(c.next_after(-MINUTE_MS), Some(0));
        assert!(c.next_after(i64::MIN).is_some());
        let far = parse("0 0 29 2 *").unwrap();
        assert!(far.next_after(i64::MIN).is_some());
        assert_eq!(far.next_after(i64::MAX - 1), None);
    }

    // ---- next_every ----

    #[test]
    fn every_grid() {
        assert_eq!(next_every(1000, 500, 999), 1000);
        assert_eq!(next_every(1000, 500, -5000), 1000);
        assert_eq!(next_every(1000, 500, i64::MIN), 1000);
        assert_eq!(next_every(1000, 500, 1000), 1500);
        assert_eq!(next_every(1000, 500, 1499), 1500);
        assert_eq!(next_every(1000, 500, 1500), 2000);
        assert_eq!(next_every(1000, 500, 123_456), 123_500);
        // 15 minutes from a start on the hour.
        let start = at(2026, 11, 27, 9, 0);
        assert_eq!(next_every(start, 15 * MINUTE_MS, at(2026, 11, 27, 10, 7)), at(2026, 11, 27, 10, 15));
        assert_eq!(next_every(-1000, 300, -1000), -700);
        assert_eq!(next_every(-1000, 300, 0), 200);
    }

    #[test]
    fn every_edge_values() {
        assert_eq!(next_every(0, 0, 10), 11);
        assert_eq!(next_every(0, -5, 10), 11);
        assert_eq!(next_every(i64::MAX - 10, 100, i64::MAX), i64::MAX);
        assert_eq!(next_every(i64::MIN, i64::MAX, i64::MAX), i64::MAX);
        assert_eq!(next_every(0, i64::MAX, i64::MAX - 1), i64::MAX);
    }

    // ---- properties ----

    /// One list item of a generated field.
    #[derive(Debug, Clone)]
    enum Item {
        Star(Option<u32>),
        One(u32),
        Range(u32, u32, Option<u32>),
    }

    /// A generated field: its items and how to spell names (0 = digits).
    type GenField = (Vec<Item>, u8);

    fn item(min: u32, max: u32) -> impl Strategy<Value = Item> {
        let step = prop::option::of(1..=max);
        prop_oneof![
            2 => step.clone().prop_map(Item::Star),
            3 => (min..=max).prop_map(Item::One),
            2 => (min..=max, min..=max, step)
                .prop_map(|(a, b, s)| Item::Range(a.min(b), a.max(b), s)),
        ]
    }

    fn field(min: u32, max: u32) -> impl Strategy<Value = GenField> {
        (prop::collection::vec(item(min, max), 1..4), 0u8..4)
    }

    fn spell(v: u32, f: &Field, style: u8) -> String {
        let name = v.checked_sub(f.name_base).and_then(|i| f.names.get(i as usize));
        match (name, style) {
            (Some(n), 1) => n.to_string(),
            (Some(n), 2) => n.to_ascii_lowercase(),
            (Some(n), 3) => format!("{}{}", &n[..1], n[1..].to_ascii_lowercase()),
            _ => v.to_string(),
        }
    }

    fn render(gf: &GenField, f: &Field) -> String {
        let (items, style) = gf;
        let one = |it: &Item| match it {
            Item::Star(None) => "*".to_string(),
            Item::Star(Some(s)) => format!("*/{s}"),
            Item::One(v) => spell(*v, f, *style),
            Item::Range(a, b, None) => format!("{}-{}", spell(*a, f, *style), spell(*b, f, *style)),
            Item::Range(a, b, Some(s)) => {
                format!("{}-{}/{s}", spell(*a, f, *style), spell(*b, f, *style))
            }
        };
        items.iter().map(one).collect::<Vec<_>>().join(",")
    }

    /// The set a generated field denotes, computed without the parser.
    fn set(gf: &GenField, f: &Field) -> Vec<bool> {
        let mut s = vec![false; f.max as usize + 1];
        for it in &gf.0 {
            let (a, b, step) = match *it {
                Item::Star(st) => (f.min, f.max, st.unwrap_or(1)),
                Item::One(v) => (v, v, 1),
                Item::Range(a, b, st) => (a, b, st.unwrap_or(1)),
            };
            let mut v = a;
            while v <= b {
                s[v as usize] = true;
                v += step;
            }
        }
        s
    }

    /// A brute-force matcher over broken-down UTC time. It uses `civil_from_days`, which
    /// `civil_round_trips` checks against the year-walking `naive_civil` over 1422-2517.
    #[derive(Debug)]
    struct Brute {
        minute: Vec<bool>,
        hour: Vec<bool>,
        dom: Vec<bool>,
        month: Vec<bool>,
        dow: Vec<bool>,
        either: bool,
    }

    impl Brute {
        fn day_ok(&self, days: i64) -> bool {
            let (_, m, d) = civil_from_days(days);
            let wd = ((days % 7 + 7 + 4) % 7) as usize;
            let dow = self.dow[wd] || (wd == 0 && self.dow[7]);
            let dom = self.dom[d as usize];
            self.month[m as usize] && if self.either { dom || dow } else { dom && dow }
        }

        fn matches(&self, ms: i64) -> bool {
            let days = ms.div_euclid(DAY_MS);
            let in_day = ms.rem_euclid(DAY_MS);
            ms % MINUTE_MS == 0
                && self.day_ok(days)
                && self.hour[(in_day / HOUR_MS) as usize]
                && self.minute[(in_day % HOUR_MS / MINUTE_MS) as usize]
        }

        /// The next match by scanning every minute of every day that can match.
        fn next_after(&self, t: i64) -> Option<i64> {
            let first = (t.div_euclid(MINUTE_MS) + 1) * MINUTE_MS;
            let last_year = civil_from_days(first.div_euclid(DAY_MS)).0 + HORIZON_YEARS;
            let mut day = first.div_euclid(DAY_MS);
            while civil_from_days(day).0 <= last_year {
                if self.day_ok(day) {
                    for minute in 0..1440 {
                        let ms = day * DAY_MS + minute * MINUTE_MS;
                        if ms >= first && self.matches(ms) {
                            return Some(ms);
                        }
                    }
                }
                day += 1;
            }
            None
        }
    }

    fn expression() -> impl Strategy<Value = (String, Brute)> {
        (field(0, 59), field(0, 23), field(1, 31), field(1, 12), field(0, 7)).prop_map(|(mi, h, dom, mo, dow)| {
            let text =
                [render(&mi, &MINUTE), render(&h, &HOUR), render(&dom, &DOM), render(&mo, &MONTH), render(&dow, &DOW)]
                    .join(" ");
            let star = |gf: &GenField| matches!(gf.0.first(), Some(Item::Star(_)));
            let brute = Brute {
                minute: set(&mi, &MINUTE),
                hour: set(&h, &HOUR),
                dom: set(&dom, &DOM),
                month: set(&mo, &MONTH),
                dow: set(&dow, &DOW),
                either: !star(&dom) && !star(&dow),
            };
            (text, brute)
        })
    }

    /// 1900-01-01 .. 2300-01-01, at any millisecond.
    fn instant() -> impl Strategy<Value = i64> {
        -2_208_988_800_000i64..10_413_792_000_000
    }

    proptest! {
        #[test]
        fn civil_round_trips(days in -200_000i64..200_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!((y, m, d), naive_civil(days));
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }

        #[test]
        fn civil_round_trips_far(days in i64::MIN / DAY_MS..i64::MAX / DAY_MS) {
            let (y, m, d) = civil_from_days(days);
            prop_assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }

        #[test]
        fn next_after_is_the_first_match((text, brute) in expression(), t in instant()) {
            let cron = parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            let got = cron.next_after(t);
            if let Some(r) = got {
                prop_assert!(r > t, "{} after {}: {}", text, t, r);
                prop_assert_eq!(r % MINUTE_MS, 0);
                prop_assert!(brute.matches(r), "{} after {}: {} does not match", text, t, r);
                if r - t <= 3 * DAY_MS {
                    let mut m = (t.div_euclid(MINUTE_MS) + 1) * MINUTE_MS;
                    while m < r {
                        prop_assert!(!brute.matches(m), "{} after {}: {} matches before {}", text, t, m, r);
                        m += MINUTE_MS;
                    }
                }
            }
            prop_assert_eq!(got, brute.next_after(t), "{}", text);
        }

        #[test]
        fn parse_never_panics(s in ".{0,300}") {
            if let Ok(c) = parse(&s) {
                let _ = c.next_after(0);
            }
        }

        #[test]
        fn cron_alphabet_never_panics(
            s in "[0-9*/,\\- @a-zA-Z\t]{0,60}",
            t in any::<i64>(),
        ) {
            if let Ok(c) = parse(&s) {
                if let Some(r) = c.next_after(t) {
                    prop_assert!(r > t);
                }
            }
        }

        #[test]
        fn valid_expressions_at_any_instant((text, _b) in expression(), t in any::<i64>()) {
            let (got, steps) = parse(&text).unwrap().search(t);
            prop_assert!(steps <= 5_000, "{} after {}: {} steps", text, t, steps);
            if let Some(r) = got {
                prop_assert!(r > t);
            }
        }

        #[test]
        fn every_is_strictly_after_on_the_grid(
            start in any::<i64>(),
            every in 1i64..1_000_000_000_000,
            after in any::<i64>(),
        ) {
            let n = next_every(start, every, after);
            if n < i64::MAX {
                prop_assert!(n > after && n >= start);
                prop_assert_eq!((i128::from(n) - i128::from(start)) % i128::from(every), 0);
                // The tick before it (if on the grid) is not after `after`.
                if n > start {
                    prop_assert!(i128::from(n) - i128::from(every) <= i128::from(after));
                }
            }
        }

        #[test]
        fn every_never_panics(start: i64, every: i64, after: i64) {
            let _ = next_every(start, every, after);
        }
    }
}
