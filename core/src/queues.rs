//! QUEUE.LIST: which queues a node holds, paged by name. The module knows its queues in
//! memory (the timer's registry); this file is the pure part: the arguments, the glob
//! match, and picking one page of names out of that registry.

use crate::args::{self, Cursor};
use crate::error::{AiError, Result};
use crate::names;

/// A page without COUNT.
pub const DEFAULT_COUNT: usize = 100;
/// The largest page.
pub const MAX_COUNT: usize = 10_000;
/// The longest MATCH pattern: a glob over names of at most 128 bytes.
pub const MAX_PATTERN_LEN: usize = 256;

/// QUEUE.LIST [MATCH pattern] [AFTER name] [COUNT n]
#[derive(Debug, PartialEq, Eq)]
pub struct ListArgs {
    pub pattern: Option<Vec<u8>>,
    /// Names strictly after this one (byte order); None starts at the first.
    pub after: Option<Vec<u8>>,
    pub count: usize,
}

/// Parses QUEUE.LIST's arguments (after the command name).
pub fn parse(raw: &[&[u8]]) -> Result<ListArgs> {
    let mut cur = Cursor::new(raw);
    let mut out = ListArgs { pattern: None, after: None, count: DEFAULT_COUNT };
    while let Some(kw) = cur.keyword() {
        match kw.as_str() {
            "MATCH" => {
                let p = cur.value("MATCH")?;
                if p.is_empty() || p.len() > MAX_PATTERN_LEN {
                    return Err(AiError::arg("MATCH", format!("must be 1 to {MAX_PATTERN_LEN} bytes")));
                }
                if p.iter().any(|b| !b.is_ascii_graphic()) {
                    return Err(AiError::arg("MATCH", "must be printable ASCII without spaces"));
                }
                out.pattern = Some(p.to_vec());
            }
            "AFTER" => out.after = Some(cur.name("AFTER")?.to_vec()),
            "COUNT" => {
                let n = args::positive("COUNT", cur.value("COUNT")?)?;
                if n as usize > MAX_COUNT {
                    return Err(AiError::arg("COUNT", format!("must be at most {MAX_COUNT}, got {n}")));
                }
                out.count = n as usize;
            }
            _ => return Err(AiError::syntax(format!("unknown option '{kw}'"))),
        }
    }
    Ok(out)
}

/// Redis's glob, as KEYS and SCAN MATCH use it: `*` any run, `?` one byte, `[abc]`,
/// `[a-z]`, `[^a]` (and `[!a]`), `\x` a literal x. A class without its `]` matches nothing.
pub fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    // Iterative with one backtrack point for the last `*`: linear in practice and never
    // exponential, whatever the pattern (`a*a*a*...b` included).
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = name.get(n) {
        if let Some(step) = match_one(pattern, p, c) {
            p = step;
            n += 1;
            continue;
        }
        if pattern.get(p) == Some(&b'*') {
            star = Some((p, n));
            p += 1;
            continue;
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pattern.iter().skip(p).all(|b| *b == b'*')
}

/// If the pattern element at `p` (not `*`) matches byte `c`: the position after it.
fn match_one(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match *pattern.get(p)? {
        b'*' => None,
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern.get(p + 1) == Some(&c)).then_some(p + 2),
        b'[' => match_class(pattern, p + 1, c),
        lit => (lit == c).then_some(p + 1),
    }
}

/// A `[...]` class starting after its `[`: the position after its `]` when `c` is in it.
fn match_class(pattern: &[u8], start: usize, c: u8) -> Option<usize> {
    let mut i = start;
    let negate = matches!(pattern.get(i), Some(b'^') | Some(b'!'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let b = *pattern.get(i)?;
        if b == b']' && !first {
            break;
        }
        first = false;
        let range_end = pattern.get(i + 2).copied().filter(|e| *e != b']' && pattern.get(i + 1) == Some(&b'-'));
        if b == b'\\' && i + 1 < pattern.len() {
            hit |= pattern.get(i + 1) == Some(&c);
            i += 2;
        } else if let Some(e) = range_end {
            let (lo, hi) = (b.min(e), b.max(e));
            hit |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            hit |= b == c;
            i += 1;
        }
    }
    (hit != negate).then_some(i + 1)
}

/// The candidates of one page, in byte order: the names that match, strictly after
/// `after`, at most `limit` of them. O(N log limit) over the N names given, without
/// sorting them all; the module then drops the ones whose data is gone.
pub fn page<'a>(names: impl IntoIterator<Item = &'a [u8]>, args: &ListArgs, limit: usize) -> Vec<Vec<u8>> {
    use std::collections::BinaryHeap;
    let mut best: BinaryHeap<&'a [u8]> = BinaryHeap::new();
    for name in names {
        if names::validate("Q", name).is_err() {
            continue;
        }
        if args.after.as_deref().is_some_and(|a| name <= a) {
            continue;
        }
        if args.pattern.as_deref().is_some_and(|p| !glob_match(p, name)) {
            continue;
        }
        if best.len() < limit {
            best.push(name);
        } else if best.peek().is_some_and(|top| name < *top) {
            best.pop();
            best.push(name);
        }
    }
    best.into_sorted_vec().into_iter().map(|n| n.to_vec()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(words: &[&str]) -> Result<ListArgs> {
        let raw: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        parse(&raw)
    }

    #[test]
    fn parses_options_in_any_order_and_case() {
        let got = a(&["count", "5", "MATCH", "sk*", "after", "b"]).unwrap();
        assert_eq!(got, ListArgs { pattern: Some(b"sk*".to_vec()), after: Some(b"b".to_vec()), count: 5 });
        assert_eq!(a(&[]).unwrap().count, DEFAULT_COUNT);
        assert_eq!(a(&["COUNT", "10000"]).unwrap().count, MAX_COUNT);
    }

    #[test]
    fn bad_input_names_the_argument() {
        let msg = |w: &[&str]| a(w).unwrap_err().message;
        assert!(msg(&["COUNT"]).starts_with("COUNT "), "{}", msg(&["COUNT"]));
        assert!(msg(&["COUNT", "0"]).starts_with("COUNT must be positive"));
        assert!(msg(&["COUNT", "-3"]).starts_with("COUNT "));
        assert!(msg(&["COUNT", "ten"]).starts_with("COUNT must be an integer"));
        assert!(msg(&["COUNT", "10001"]).starts_with("COUNT must be at most"));
        assert!(msg(&["MATCH"]).starts_with("MATCH needs a value"));
        assert!(msg(&["MATCH", ""]).starts_with("MATCH must be 1 to"));
        assert!(msg(&["MATCH", "a b"]).starts_with("MATCH must be printable"));
        assert!(msg(&["MATCH", &"*".repeat(257)]).starts_with("MATCH must be 1 to"));
        assert!(msg(&["AFTER", "a{b}"]).starts_with("AFTER has a character"));
        assert!(msg(&["FROB"]).contains("unknown option 'FROB'"));
    }

    #[test]
    fn glob_matches_like_redis() {
        let yes = |p: &str, n: &str| assert!(glob_match(p.as_bytes(), n.as_bytes()), "{p} ~ {n}");
        let no = |p: &str, n: &str| assert!(!glob_match(p.as_bytes(), n.as_bytes()), "{p} !~ {n}");
        yes("*", "anything");
        yes("*", "");
        yes("sketch-*", "sketch-0");
        no("sketch-*", "sketch");
        yes("s?etch", "sketch");
        no("s?etch", "setch");
        yes("q[0-9]", "q7");
        no("q[0-9]", "qa");
        yes("q[^0-9]", "qa");
        yes("q[!0-9]", "qa");
        no("q[^0-9]", "q1");
        yes("q[abc]x", "qbx");
        yes("a\\*", "a*");
        no("a\\*", "ab");
        yes("*a*b*c", "xxaybzzc");
        no("*a*b*c", "xxaybzz");
        yes("a*", "a");
        yes("**", "x");
        no("", "x");
        yes("", "");
        // a class that never closes matches nothing past its end
        no("q[ab", "qa");
    }

    #[test]
    fn glob_is_not_exponential() {
        let pattern = "a*".repeat(40) + "b";
        let name = "a".repeat(128);
        let started = std::time::Instant::now();
        assert!(!glob_match(pattern.as_bytes(), name.as_bytes()));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn pages_in_byte_order_after_the_cursor() {
        let all: Vec<&[u8]> = vec![b"mail", b"ai", b"sketch-1", b"sketch-0", b"zeta", b"bad{name}"];
        let args = a(&[]).unwrap();
        assert_eq!(page(all.clone(), &args, 3), vec![b"ai".to_vec(), b"mail".to_vec(), b"sketch-0".to_vec()]);
        let args = a(&["AFTER", "sketch-0"]).unwrap();
        assert_eq!(page(all.clone(), &args, 3), vec![b"sketch-1".to_vec(), b"zeta".to_vec()]);
        let args = a(&["MATCH", "sketch-*"]).unwrap();
        assert_eq!(page(all.clone(), &args, 10), vec![b"sketch-0".to_vec(), b"sketch-1".to_vec()]);
        assert!(page(all, &a(&["AFTER", "zeta"]).unwrap(), 10).is_empty());
    }

    #[test]
    fn paging_walks_every_name_once() {
        let names: Vec<String> = (0..1000).map(|i| format!("q{:x}", i * 7919 % 1000)).collect();
        let mut seen = Vec::new();
        let mut args = a(&["COUNT", "64"]).unwrap();
        loop {
            let p = page(names.iter().map(|n| n.as_bytes()), &args, args.count);
            seen.extend(p.iter().cloned());
            if p.len() < args.count {
                break;
            }
            args.after = p.last().cloned();
        }
        let mut want: Vec<Vec<u8>> = names.iter().map(|n| n.as_bytes().to_vec()).collect();
        want.sort();
        assert_eq!(seen, want);
    }
}
