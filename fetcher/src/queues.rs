//! Which queues the fetcher serves, and in which order it asks them.
//! Hand-written here: brace ranges (the brace crates expand shell syntax, not one bounded
//! numeric range) and the weighted pick (no maintained crate skips members per pass).
//!
//! `--queues` is a comma-separated list of entries, each with an optional `:weight` (1 when
//! left out):
//! - a name: `sketch:6`;
//! - a brace range, expanded once at start: `sketch-{0..7}:6` is `sketch-0` .. `sketch-7`
//!   (`{00..15}` keeps the zero padding);
//! - a glob pattern with `*` (any run of characters) and `?` (one character): `sketch-*:6`
//!   is every queue whose name matches, found by SCAN MATCH `aijob:{sketch-*}:meta` on every
//!   master, again every `--discover-every` ms, so that queues created later are served too.
//!
//! The weight belongs to the whole entry, however many queues it holds: `sketch-*:6,low:1`
//! claims like `sketch:6,low:1`, and the 6 turns of `sketch-*` go round its queues in turn.
//! Spreading one hot queue over N slots thus changes nothing of the weights. A queue named by
//! several entries belongs to the first that names it explicitly (a name or a brace range),
//! else to the first pattern that matches it.
//!
//! The pick is two-level: smooth weighted round robin (nginx's SWRR) over the entries, then
//! round robin over the queues of the chosen entry, both skipping the queues that answered
//! empty in the current claim pass.

use std::collections::{BTreeSet, HashSet};

use anyhow::{bail, Context, Result};

/// What one `--queues` entry selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sel {
    /// A name, or the names of a brace range.
    Names(Vec<String>),
    /// A glob pattern (`*`, `?`), matched against the queues found by discovery.
    Glob(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// As written (without the weight), for logs.
    pub text: String,
    pub sel: Sel,
    pub weight: u32,
}

/// Largest number of queues one brace range may expand to.
pub const MAX_RANGE: u64 = 10_000;

fn validate_name(name: &str) -> Result<()> {
    aijob_core::names::validate("queue", name.as_bytes()).map_err(|e| anyhow::anyhow!("{}", e.message))
}

/// True when `text` holds a glob wildcard.
pub fn is_glob(text: &str) -> bool {
    text.contains(['*', '?'])
}

/// A glob's characters must be those of a queue name, or `*` and `?`.
fn validate_glob(glob: &str) -> Result<()> {
    let plain: String = glob.chars().map(|c| if c == '*' || c == '?' { 'x' } else { c }).collect();
    validate_name(&plain).with_context(|| format!("bad pattern '{glob}'"))
}

/// `pre{a..b}post` to its names; None when `text` has no brace.
pub fn expand_braces(text: &str) -> Result<Option<Vec<String>>> {
    let Some(open) = text.find('{') else {
        if text.contains('}') {
            bail!("'{text}' has a '}}' without '{{'");
        }
        return Ok(None);
    };
    let close = text[open..].find('}').map(|i| open + i).with_context(|| format!("'{text}' has no '}}'"))?;
    let (pre, range, post) = (&text[..open], &text[open + 1..close], &text[close + 1..]);
    if post.contains(['{', '}']) || pre.contains('}') {
        bail!("'{text}': one brace range per entry");
    }
    let (a, b) = range.split_once("..").with_context(|| format!("'{text}': a range is {{first..last}}"))?;
    let num = |s: &str| -> Result<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            bail!("'{text}': '{s}' is not a number");
        }
        s.parse::<u64>().with_context(|| format!("'{text}': '{s}' is too large"))
    };
    let (first, last) = (num(a)?, num(b)?);
    if first > last {
        bail!("'{text}': the range goes down");
    }
    if last - first >= MAX_RANGE {
        bail!("'{text}': at most {MAX_RANGE} queues in a range");
    }
    // {00..15}: zero-padded to the width of the first bound, like bash.
    let width = if a.len() > 1 && a.starts_with('0') { a.len() } else { 0 };
    let names: Vec<String> = (first..=last).map(|n| format!("{pre}{n:0width$}{post}")).collect();
    Ok(Some(names))
}

/// Glob match with `*` (any run, empty included) and `?` (any one character). Queue names
/// hold no `[`, `]` or `\`, so this agrees with Redis's own SCAN MATCH.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    wildmatch::WildMatch::new(pattern).matches(name)
}

/// Splits `name:weight` (the weight is the part after the last ':' when it is all digits;
/// queue names may hold ':' themselves).
fn split_weight(part: &str) -> Result<(&str, u32)> {
    match part.rsplit_once(':') {
        Some((n, w)) if !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()) => {
            let w: u32 = w.parse().with_context(|| format!("weight '{w}' is too large"))?;
            if w == 0 {
                bail!("the weight of '{n}' must be at least 1");
            }
            Ok((n, w))
        }
        _ => Ok((part, 1)),
    }
}

/// A selector: a name, a brace range or a glob.
pub fn parse_sel(text: &str) -> Result<Sel> {
    if let Some(names) = expand_braces(text)? {
        if is_glob(text) {
            bail!("'{text}': a brace range and a pattern cannot be mixed");
        }
        for n in &names {
            validate_name(n)?;
        }
        return Ok(Sel::Names(names));
    }
    if is_glob(text) {
        validate_glob(text)?;
        return Ok(Sel::Glob(text.to_string()));
    }
    validate_name(text)?;
    Ok(Sel::Names(vec![text.to_string()]))
}

/// `--queues`.
pub fn parse_entries(text: &str) -> Result<Vec<Entry>> {
    let mut out: Vec<Entry> = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (sel_text, weight) = split_weight(part)?;
        let sel = parse_sel(sel_text)?;
        match &sel {
            Sel::Names(ns) => {
                for n in ns {
                    if !names.insert(n.clone()) {
                        bail!("'{n}' is given twice");
                    }
                }
            }
            Sel::Glob(g) => {
                if out.iter().any(|e| e.sel == Sel::Glob(g.clone())) {
                    bail!("'{g}' is given twice");
                }
            }
        }
        out.push(Entry { text: sel_text.to_string(), sel, weight });
    }
    if out.is_empty() {
        bail!("no queue given");
    }
    Ok(out)
}

/// The glob patterns among the entries (what discovery looks for).
pub fn globs(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| match &e.sel {
            Sel::Glob(g) => Some(g.clone()),
            Sel::Names(_) => None,
        })
        .collect()
}

/// The queues of each entry, given the queues discovery found: explicit names as written;
/// for a pattern, the found queues it matches (sorted) that no explicit name and no earlier
/// pattern took.
pub fn assign(entries: &[Entry], found: &BTreeSet<String>) -> Vec<Vec<String>> {
    let explicit: HashSet<&str> = entries
        .iter()
        .flat_map(|e| match &e.sel {
            Sel::Names(ns) => ns.iter().map(String::as_str).collect::<Vec<_>>(),
            Sel::Glob(_) => Vec::new(),
        })
        .collect();
    let mut taken: HashSet<&str> = HashSet::new();
    entries
        .iter()
        .map(|e| match &e.sel {
            Sel::Names(ns) => ns.clone(),
            Sel::Glob(g) => found
                .iter()
                .filter(|q| glob_match(g, q) && !explicit.contains(q.as_str()))
                .filter(|q| taken.insert(q.as_str()))
                .cloned()
                .collect(),
        })
        .collect()
}

/// The queue name of a meta key `aijob:{Q}:meta`, when it is one.
pub fn queue_of_meta_key(key: &[u8]) -> Option<String> {
    let k = std::str::from_utf8(key).ok()?;
    let name = k.strip_prefix("aijob:{")?.strip_suffix("}:meta")?;
    aijob_core::names::validate("queue", name.as_bytes()).ok()?;
    Some(name.to_string())
}

/// The SCAN MATCH pattern that finds the queues of `globs`: the glob itself inside the
/// meta key when there is one, else every queue's meta key (filtered here).
pub fn scan_pattern(globs: &[String]) -> String {
    match globs {
        [one] => format!("aijob:{{{one}}}:meta"),
        _ => "aijob:{*}:meta".to_string(),
    }
}

/// Smooth weighted round robin (nginx's algorithm), with members left out on demand.
pub struct Wrr {
    weights: Vec<i64>,
    current: Vec<i64>,
}

impl Wrr {
    pub fn new(weights: &[u32]) -> Wrr {
        Wrr { weights: weights.iter().map(|w| *w as i64).collect(), current: vec![0; weights.len()] }
    }

    /// The next member, skipping `skip`; None when every member is skipped.
    pub fn next(&mut self, skip: &HashSet<usize>) -> Option<usize> {
        let mut total = 0;
        let mut best: Option<(usize, i64)> = None;
        for (i, (current, weight)) in self.current.iter_mut().zip(&self.weights).enumerate() {
            if skip.contains(&i) {
                continue;
            }
            *current += weight;
            total += weight;
            if best.is_none_or(|(_, b)| *current > b) {
                best = Some((i, *current));
            }
        }
        let (b, _) = best?;
        if let Some(current) = self.current.get_mut(b) {
            *current -= total;
        }
        Some(b)
    }
}

/// The weighted pick over the entries and their queues.
pub struct Picker {
    groups: Vec<(Vec<String>, usize)>,
    wrr: Wrr,
}

impl Picker {
    pub fn new(entries: &[Entry]) -> Picker {
        let weights: Vec<u32> = entries.iter().map(|e| e.weight).collect();
        let groups = assign(entries, &BTreeSet::new()).into_iter().map(|q| (q, 0)).collect();
        Picker { groups, wrr: Wrr::new(&weights) }
    }

    /// Sets the queues of every entry (from [`assign`]).
    pub fn set(&mut self, queues: Vec<Vec<String>>) {
        for (g, qs) in self.groups.iter_mut().zip(queues) {
            if g.0 != qs {
                let keep = g.0.get(g.1).cloned();
                g.1 = keep.and_then(|k| qs.iter().position(|q| *q == k)).unwrap_or(0);
                g.0 = qs;
            }
        }
    }

    /// Every queue served now.
    pub fn queues(&self) -> impl Iterator<Item = &String> {
        self.groups.iter().flat_map(|g| g.0.iter())
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(|g| g.0.is_empty())
    }

    /// The next queue by weight, skipping the queues in `skip`; None when none is left.
    pub fn next(&mut self, skip: &HashSet<String>) -> Option<String> {
        let dead: HashSet<usize> = (self.groups.iter().enumerate())
            .filter(|(_, (qs, _))| qs.iter().all(|q| skip.contains(q)))
            .map(|(i, _)| i)
            .collect();
        let i = self.wrr.next(&dead)?;
        let (qs, next) = self.groups.get_mut(i)?;
        let n = qs.len();
        let j = (0..n).map(|k| (*next + k) % n).find(|&j| qs.get(j).is_some_and(|q| !skip.contains(q)))?;
        *next = (j + 1) % n;
        qs.get(j).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Sel {
        Sel::Names(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn entries_names_weights_ranges_and_globs() {
        let e = parse_entries("sketch:6, default:3,low").unwrap();
        assert_eq!(
            e.iter().map(|e| (e.sel.clone(), e.weight)).collect::<Vec<_>>(),
            vec![(names(&["sketch"]), 6), (names(&["default"]), 3), (names(&["low"]), 1)]
        );
        assert_eq!(parse_entries("a:b:2").unwrap()[0].sel, names(&["a:b"]));
        assert_eq!(parse_entries("a:b").unwrap()[0].weight, 1);
        let e = parse_entries("s-{0..3}:6").unwrap();
        assert_eq!((e[0].sel.clone(), e[0].weight), (names(&["s-0", "s-1", "s-2", "s-3"]), 6));
        let e = parse_entries("s{08..10}x").unwrap();
        assert_eq!(e[0].sel, names(&["s08x", "s09x", "s10x"]));
        let e = parse_entries("q-*:4,a?c").unwrap();
        assert_eq!((e[0].sel.clone(), e[0].weight), (Sel::Glob("q-*".into()), 4));
        assert_eq!(e[1].sel, Sel::Glob("a?c".into()));
        for bad in [
            "",
            "a:0",
            "a,a",
            "bad{name}:1",
            "a:99999999999",
            "s-{3..1}",
            "s-{0..x}",
            "s-{0..1}-{0..1}",
            "s-{0..99999}",
            "s-{0..3}*",
            "s}",
            "q-*,q-*",
            "a-{0..2},a-1",
            "bad/*",
        ] {
            assert!(parse_entries(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn globs_match() {
        assert!(glob_match("q-*", "q-1"));
        assert!(glob_match("q-*", "q-"));
        assert!(!glob_match("q-*", "q1"));
        assert!(glob_match("*-x-*", "a-x-b-x-c"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b", "acbd"));
        assert!(glob_match("a*b*", "acbd"));
    }

    #[test]
    fn meta_keys_name_their_queue() {
        assert_eq!(queue_of_meta_key(b"aijob:{q-1}:meta").as_deref(), Some("q-1"));
        assert_eq!(queue_of_meta_key(b"aijob:{q-1}:job:x"), None);
        assert_eq!(queue_of_meta_key(b"aijob:{a}:b}:meta"), None);
        assert_eq!(scan_pattern(&["q-*".into()]), "aijob:{q-*}:meta");
        assert_eq!(scan_pattern(&["a*".into(), "b*".into()]), "aijob:{*}:meta");
    }

    #[test]
    fn explicit_names_and_earlier_patterns_win() {
        let e = parse_entries("q-1:5,q-*:2,*:1").unwrap();
        let found: BTreeSet<String> = ["q-1", "q-2", "q-3", "other"].iter().map(|s| s.to_string()).collect();
        let a = assign(&e, &found);
        assert_eq!(a, vec![vec!["q-1".to_string()], vec!["q-2".into(), "q-3".into()], vec!["other".into()]]);
    }

    #[test]
    fn wrr_follows_the_weights() {
        let mut w = Wrr::new(&[3, 1]);
        let none = HashSet::new();
        let seq: Vec<usize> = (0..8).map(|_| w.next(&none).unwrap()).collect();
        assert_eq!(seq.iter().filter(|i| **i == 0).count(), 6);
        assert_eq!(seq.iter().filter(|i| **i == 1).count(), 2);
        let mut w = Wrr::new(&[6, 3, 1]);
        let seq: Vec<usize> = (0..10).map(|_| w.next(&none).unwrap()).collect();
        assert_eq!([0, 1, 2].map(|q| seq.iter().filter(|i| **i == q).count()), [6, 3, 1]);
        let skip: HashSet<usize> = [0].into();
        for _ in 0..4 {
            assert_ne!(w.next(&skip), Some(0));
        }
        let all: HashSet<usize> = [0, 1, 2].into();
        assert_eq!(w.next(&all), None);
    }

    #[test]
    fn a_patterns_weight_is_split_among_its_queues() {
        let e = parse_entries("s-{0..3}:6,low:2").unwrap();
        let mut p = Picker::new(&e);
        let none = HashSet::new();
        let seq: Vec<String> = (0..32).map(|_| p.next(&none).unwrap()).collect();
        let count = |q: &str| seq.iter().filter(|x| *x == q).count();
        assert_eq!(count("low"), 8, "the entry keeps its weight: {seq:?}");
        for i in 0..4 {
            assert_eq!(count(&format!("s-{i}")), 6, "{seq:?}");
        }
        // Skipped queues pass their turn to the others of their entry, then to other entries.
        let skip: HashSet<String> = ["s-0", "s-1", "s-2"].iter().map(|s| s.to_string()).collect();
        let seq: Vec<String> = (0..8).map(|_| p.next(&skip).unwrap()).collect();
        assert!(seq.iter().all(|q| q == "s-3" || q == "low"), "{seq:?}");
        let skip: HashSet<String> = ["s-0", "s-1", "s-2", "s-3", "low"].iter().map(|s| s.to_string()).collect();
        assert_eq!(p.next(&skip), None);
    }

    #[test]
    fn discovered_queues_join_their_pattern() {
        let e = parse_entries("q-*:1").unwrap();
        let mut p = Picker::new(&e);
        assert!(p.is_empty());
        assert_eq!(p.next(&HashSet::new()), None);
        let found: BTreeSet<String> = ["q-a", "q-b"].iter().map(|s| s.to_string()).collect();
        p.set(assign(&e, &found));
        let seq: Vec<String> = (0..4).map(|_| p.next(&HashSet::new()).unwrap()).collect();
        assert_eq!(seq, ["q-a", "q-b", "q-a", "q-b"]);
        assert_eq!(p.queues().count(), 2);
    }
}
