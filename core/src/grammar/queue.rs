//! The grammar of the QUEUE.* commands.

use crate::args::{non_negative, once, positive, priority, queue, status, unknown, Cursor};
use crate::error::{AiError, Result};
use crate::job::{Priority, Status};
use crate::keys::QueueKeys;
use crate::names;

/// QUEUE.STATS / QUEUE.PAUSE / QUEUE.RESUME / CACHE.CLEAR / SCHEDULE.LIST Q
pub fn queue_only(args: &[&[u8]]) -> Result<QueueKeys> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    if let Some(kw) = c.keyword() {
        return Err(unknown(&kw));
    }
    Ok(q)
}

/// QUEUE.PURGE Q [STATUS s] [PRIORITY p]
pub fn purge(args: &[&[u8]]) -> Result<(QueueKeys, Status, Option<Priority>)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let (mut st, mut prio) = (Status::Queued, None);
    while let Some(kw) = c.keyword() {
        match kw.as_str() {
            "STATUS" => st = status(c.value("STATUS")?)?,
            "PRIORITY" => prio = Some(priority(c.value("PRIORITY")?)?),
            _ => return Err(unknown(&kw)),
        }
    }
    if prio.is_some() && st != Status::Queued {
        return Err(AiError::arg("PRIORITY", "is only allowed with STATUS queued"));
    }
    Ok((q, st, prio))
}

/// QUEUE.GROUPCAP Q group|* n: (queue, group or `*`, cap).
pub fn groupcap(args: &[&[u8]]) -> Result<(QueueKeys, Vec<u8>, i64)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let group = c.next().ok_or_else(|| AiError::arg("group", "is missing"))?.to_vec();
    if group != b"*" {
        names::validate("group", &group)?;
    }
    let cap = non_negative("n", c.next().ok_or_else(|| AiError::arg("n", "is missing"))?)?;
    if let Some(kw) = c.keyword() {
        return Err(unknown(&kw));
    }
    Ok((q, group, cap))
}

/// QUEUE.GROUPS Q [CURSOR c] [COUNT n]: (queue, cursor, count). A COUNT past 10000 pages
/// by 10000.
pub fn groups(args: &[&[u8]]) -> Result<(QueueKeys, i64, i64)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let (mut cursor, mut count) = (0, 10);
    while let Some(kw) = c.keyword() {
        match kw.as_str() {
            "CURSOR" => cursor = c.count("CURSOR")?,
            "COUNT" => count = positive("COUNT", c.value("COUNT")?)?.min(10_000),
            _ => return Err(unknown(&kw)),
        }
    }
    Ok((q, cursor, count))
}

/// Entries one QUEUE.REPAIR looks at without COUNT, and at most.
pub const REPAIR_COUNT: i64 = 1_000;
pub const REPAIR_COUNT_MAX: i64 = 100_000;

/// QUEUE.REPAIR Q [COUNT n]: (queue, entries to look at). COUNT is 1 to 100000.
pub fn repair(args: &[&[u8]]) -> Result<(QueueKeys, usize)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let mut count = None;
    while let Some(kw) = c.keyword() {
        match kw.as_str() {
            "COUNT" => {
                let n = positive("COUNT", c.value("COUNT")?)?;
                if n > REPAIR_COUNT_MAX {
                    return Err(AiError::arg("COUNT", format!("must be at most {REPAIR_COUNT_MAX}")));
                }
                once(&mut count, "COUNT", n)?
            }
            _ => return Err(unknown(&kw)),
        }
    }
    Ok((q, count.unwrap_or(REPAIR_COUNT) as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::{a, refs};

    #[test]
    fn groupcap_takes_a_group_or_star_and_a_cap() {
        let v = a("q * 3");
        let (q, g, n) = groupcap(&refs(&v)).unwrap();
        assert_eq!((q.name(), g.as_slice(), n), (&b"q"[..], &b"*"[..], 3));
        for (line, arg) in [("q g -1", "n"), ("q g", "n"), ("q a{b} 1", "group"), ("q g 1 EXTRA", "EXTRA")] {
            let v = a(line);
            let e = groupcap(&refs(&v)).unwrap_err();
            assert!(e.message.contains(arg), "{line}: {}", e.message);
        }
    }

    #[test]
    fn groups_pages_at_most_ten_thousand() {
        let v = a("q COUNT 20000 CURSOR 5");
        assert_eq!(groups(&refs(&v)).unwrap().1..groups(&refs(&v)).unwrap().2, 5..10_000);
        let v = a("q COUNT 0");
        assert!(groups(&refs(&v)).unwrap_err().message.contains("COUNT"));
    }

    #[test]
    fn repair_takes_a_count_of_one_to_a_hundred_thousand() {
        let v = a("q");
        assert_eq!(repair(&refs(&v)).unwrap().1, 1_000);
        let v = a("q count 7");
        assert_eq!(repair(&refs(&v)).unwrap().1, 7);
        let v = a("q COUNT 100000");
        assert_eq!(repair(&refs(&v)).unwrap().1, 100_000);
        for (line, arg) in [
            ("q COUNT 0", "COUNT"),
            ("q COUNT -1", "COUNT"),
            ("q COUNT x", "COUNT"),
            ("q COUNT", "COUNT"),
            ("q COUNT 100001", "COUNT"),
            ("q COUNT 1 COUNT 2", "COUNT"),
            ("q EXTRA", "EXTRA"),
            ("a{b}", "Q"),
        ] {
            let v = a(line);
            let e = repair(&refs(&v)).unwrap_err();
            assert!(e.message.contains(arg), "{line}: {}", e.message);
        }
    }
}
