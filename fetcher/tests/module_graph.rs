//! No import cycle among the fetcher's source files.
//!
//! Each file is a node; an edge goes to the file that a path in it names: `crate::a::b`,
//! `super::x`, `self::x` and `child::x` (a child declared with `mod`), resolved to the
//! deepest module that is a file (`crate::providers::ErrorClass` is `providers/mod.rs`,
//! `super::call::Call` is `providers/call.rs`). Re-exports count: a `mod.rs` that re-exports
//! a child has an edge to it, so a child importing through its parent's re-export closes a
//! cycle. `mod x;` declarations are not edges, nor are unit-test modules (`#[cfg(test)] mod
//! tests` at the end of a file, whose `super` is the file itself). Comment lines are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/main.rs` is the root; `a.rs` and `a/mod.rs` are `a`; `a/b.rs` is `a::b`.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).expect("under src").with_extension("");
    let mut parts: Module = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "main") {
        parts.pop();
    }
    parts
}

/// The code of a file without its comment lines and its unit tests.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path of `code` that starts with `crate`, `super`, `self` or a child module, as its
/// segments; a `{...}` group gives one path per item.
fn paths(code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == ':');
        if !starts_word || !is_ident(chars[i]) {
            i += 1;
            continue;
        }
        let (path, next) = read_path(&chars, i);
        let first = path.first().map(String::as_str).unwrap_or("");
        if path.len() > 1 && (matches!(first, "crate" | "super" | "self") || children.contains(first)) {
            out.extend(expand(&chars, &path, next));
        }
        i = next.max(i + 1);
    }
    out
}

/// The segments `a::b::c` starting at `i`, and where they end.
fn read_path(chars: &[char], mut i: usize) -> (Vec<String>, usize) {
    let mut segs = Vec::new();
    loop {
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        segs.push(chars[start..i].iter().collect());
        if chars.get(i) == Some(&':')
            && chars.get(i + 1) == Some(&':')
            && chars.get(i + 2).is_some_and(|c| is_ident(*c))
        {
            i += 2;
        } else {
            return (segs, i);
        }
    }
}

/// `prefix::{a, b::c}` as `prefix::a` and `prefix::b::c`; any other path as itself.
fn expand(chars: &[char], prefix: &[String], end: usize) -> Vec<Vec<String>> {
    if !(chars.get(end) == Some(&':') && chars.get(end + 1) == Some(&':') && chars.get(end + 2) == Some(&'{')) {
        return vec![prefix.to_vec()];
    }
    let close = chars[end..].iter().position(|c| *c == '}').map_or(chars.len(), |p| end + p);
    let group: String = chars[end + 3..close].iter().collect();
    group
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| prefix.iter().cloned().chain(item.split("::").map(|s| s.trim().to_string())).collect())
        .collect()
}

/// The deepest module a path names, seen from `from`.
fn resolve(from: &Module, path: &[String], modules: &BTreeSet<Module>) -> Module {
    let mut base: Module = from.clone();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &path[1..];
        }
        Some("self") => rest = &path[1..],
        _ => {}
    }
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    for seg in rest {
        let mut next = base.clone();
        next.push(seg.clone());
        if !modules.contains(&next) {
            break;
        }
        base = next;
    }
    base
}

fn find_cycle(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    fn visit(
        m: &Module,
        edges: &BTreeMap<Module, BTreeSet<Module>>,
        done: &mut BTreeSet<Module>,
        stack: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        if let Some(at) = stack.iter().position(|s| s == m) {
            return Some(stack[at..].iter().cloned().chain([m.clone()]).collect());
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.clone());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.clone());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|m| visit(m, edges, &mut done, &mut Vec::new()))
}

fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut edges = BTreeMap::new();
    for f in &files {
        let m = module_of(&src, f);
        let children: BTreeSet<String> = modules
            .iter()
            .filter(|c| c.len() == m.len() + 1 && c.starts_with(&m))
            .map(|c| c[m.len()].clone())
            .collect();
        let text = code(&std::fs::read_to_string(f).expect("source"));
        let targets: BTreeSet<Module> = paths(&text, &children)
            .iter()
            .map(|p| resolve(&m, p, &modules))
            .filter(|t| *t != m && !t.is_empty())
            .collect();
        edges.insert(m, targets);
    }
    edges
}

fn show(cycle: &[Module]) -> String {
    cycle.iter().map(|m| m.join("::")).collect::<Vec<_>>().join(" -> ")
}

#[test]
fn no_import_cycle_among_the_fetchers_files() {
    let edges = graph();
    assert!(edges.len() > 20, "the scan found the sources: {:?}", edges.keys().collect::<Vec<_>>());
    let worker = edges.get(&vec!["worker".to_string()]).expect("worker/mod.rs");
    assert!(worker.contains(&vec!["worker".to_string(), "claim".to_string()]), "edges are found: {worker:?}");
    if let Some(c) = find_cycle(&edges) {
        panic!("import cycle: {}", show(&c));
    }
}

#[test]
fn the_checker_sees_a_cycle() {
    let m = |s: &str| -> Module { s.split("::").map(String::from).collect() };
    let modules: BTreeSet<Module> = [m("config"), m("rconn"), m("providers"), m("providers::call")].into();
    let children = BTreeSet::from(["call".to_string()]);
    let p = paths("use crate::rconn::{self, Redis};\nlet x = call::parse(1);\nuse super::ProviderName;", &children);
    let from = m("providers");
    let targets: BTreeSet<Module> = p.iter().map(|p| resolve(&from, p, &modules)).collect();
    assert_eq!(targets, [m("rconn"), m("providers::call"), vec![]].into());
    let mut edges = BTreeMap::new();
    edges.insert(m("config"), BTreeSet::from([m("rconn")]));
    edges.insert(m("rconn"), BTreeSet::from([m("providers")]));
    edges.insert(m("providers"), BTreeSet::from([m("config")]));
    assert_eq!(show(&find_cycle(&edges).unwrap()), "config -> rconn -> providers -> config");
}
