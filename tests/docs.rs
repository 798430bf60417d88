//! COMMAND DOCS and COMMAND INFO (src/docs.rs) against a real server, and against the README:
//! the syntax line the README gives for each command must be what COMMAND DOCS describes.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;

/// A field of a map reply (RESP2 flat array or RESP3 map).
fn get(v: &Value, name: &str) -> Option<Value> {
    field(v, name)
}

fn list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a.clone(),
        Value::Nil => vec![],
        other => panic!("not a list: {other:?}"),
    }
}

fn flags_of(arg: &Value) -> BTreeSet<String> {
    get(arg, "flags").map(|f| list(&f).iter().map(s).collect()).unwrap_or_default()
}

/// Renders one argument of COMMAND DOCS in the README's notation:
/// `TOKEN value`, `[optional]`, `a|b` (one-of keywords), `(a x | b y)` (a required one-of of
/// longer alternatives), `X [X ...]` (repeats with its token), `[X] ...` (optional, repeats
/// with its token), `TOKEN value ...` (one token, many values).
fn render(arg: &Value) -> String {
    let kind = s(&get(arg, "type").expect("type"));
    let name = get(arg, "display_text").or_else(|| get(arg, "name")).map(|v| s(&v)).expect("name");
    let token = get(arg, "token").map(|v| s(&v));
    let flags = flags_of(arg);
    let optional = flags.contains("optional");
    let with_token = |body: String| match &token {
        Some(t) => format!("{t} {body}"),
        None => body,
    };
    let subargs = || list(&get(arg, "arguments").expect("arguments"));
    let mut parens = false;
    let body = match kind.as_str() {
        "pure-token" => token.clone().expect("a pure token has a token"),
        "oneof" => {
            let alts: Vec<String> = subargs().iter().map(render).collect();
            let simple = alts.iter().all(|a| !a.contains(' '));
            let joined = alts.join(if simple { "|" } else { " | " });
            parens = !simple && token.is_none() && !optional;
            with_token(joined)
        }
        "block" => with_token(subargs().iter().map(render).collect::<Vec<_>>().join(" ")),
        _ => with_token(name),
    };
    let body = if parens { format!("({body})") } else { body };
    if flags.contains("multiple_token") {
        return if optional { format!("[{body}] ...") } else { format!("{body} [{body} ...]") };
    }
    let body = if flags.contains("multiple") { format!("{body} ...") } else { body };
    if optional {
        format!("[{body}]")
    } else {
        body
    }
}

/// COMMAND DOCS of every aijob command: name -> (syntax line, the docs map).
fn docs(c: &mut Connection) -> BTreeMap<String, (String, Value)> {
    let names: Vec<String> = list(&ok(c, &["COMMAND", "LIST", "FILTERBY", "MODULE", "aijob"])).iter().map(s).collect();
    assert!(names.len() >= 30, "the module registers its commands: {names:?}");
    let mut out = BTreeMap::new();
    for name in names {
        let reply = ok(c, &["COMMAND", "DOCS", &name]);
        let entries = pairs(&reply);
        assert_eq!(entries.len(), 1, "COMMAND DOCS {name}: {reply:?}");
        let doc = entries[0].1.clone();
        let args = get(&doc, "arguments").unwrap_or_else(|| panic!("COMMAND DOCS {name} has no arguments: {doc:?}"));
        let mut line = name.to_uppercase();
        for a in list(&args) {
            line.push(' ');
            line.push_str(&render(&a));
        }
        out.insert(name, (line, doc));
    }
    out
}

/// The README's syntax lines: in code blocks, a line that starts with a command name
/// (`JOB.CREATE Q ...`, not a redis-cli prompt), with its indented continuation lines, a
/// trailing `# comment` removed, whitespace collapsed.
fn readme_syntax() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let starts_command = |l: &str| {
        let word = l.split_whitespace().next().unwrap_or("");
        let mut parts = word.split('.');
        let (a, b) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        parts.next().is_none()
            && !a.is_empty()
            && !b.is_empty()
            && a.chars().all(|c| c.is_ascii_uppercase())
            && b.chars().all(|c| c.is_ascii_uppercase())
    };
    let strip = |l: &str| l.split(" #").next().unwrap_or("").to_string();
    let (mut lines, mut in_code, mut current): (Vec<String>, bool, Option<String>) = (vec![], false, None);
    for l in text.lines() {
        if l.trim_start().starts_with("```") {
            in_code = !in_code;
            lines.extend(current.take());
            continue;
        }
        if !in_code {
            continue;
        }
        if starts_command(l) {
            lines.extend(current.take());
            current = Some(strip(l));
        } else if l.starts_with("  ") && !l.trim().is_empty() && !l.trim_start().starts_with('#') {
            if let Some(cur) = current.as_mut() {
                cur.push(' ');
                cur.push_str(&strip(l));
            }
        } else {
            lines.extend(current.take());
        }
    }
    lines.iter().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

#[test]
fn every_command_has_docs_that_match_the_readme() {
    let srv = Server::start();
    let mut c = srv.conn();
    let docs = docs(&mut c);
    let readme = readme_syntax();
    let mut problems = Vec::new();
    for (name, (line, _)) in &docs {
        let upper = name.to_uppercase();
        let given: Vec<&String> =
            readme.iter().filter(|l| l.split_whitespace().next() == Some(upper.as_str())).collect();
        if given.is_empty() {
            problems.push(format!("README has no syntax line for {upper}; COMMAND DOCS says:\n    {line}"));
        } else if !given.iter().any(|g| *g == line) {
            problems.push(format!("{upper}:\n    COMMAND DOCS: {line}\n    README:       {}", given[0]));
        }
    }
    for l in &readme {
        let name = l.split_whitespace().next().unwrap_or("").to_lowercase();
        if !docs.contains_key(&name) {
            problems.push(format!("README names a command the module does not have: {l}"));
        }
    }
    assert!(problems.is_empty(), "COMMAND DOCS and the README disagree:\n{}", problems.join("\n"));
}

/// The minimum number of words a syntax needs (its required leaves).
fn min_words(arg: &Value) -> i64 {
    if flags_of(arg).contains("optional") {
        return 0;
    }
    let kind = s(&get(arg, "type").expect("type"));
    let own = get(arg, "token").is_some() as i64;
    let sub = || list(&get(arg, "arguments").expect("arguments"));
    match kind.as_str() {
        "pure-token" => 1,
        "oneof" => own + sub().iter().map(min_words).min().unwrap_or(0),
        "block" => own + sub().iter().map(min_words).sum::<i64>(),
        _ => own + 1,
    }
}

#[test]
fn command_info_has_arity_flags_and_key_specs() {
    let srv = Server::start();
    let mut c = srv.conn();
    let docs = docs(&mut c);
    for (name, (_, doc)) in &docs {
        for f in ["summary", "complexity", "since"] {
            assert!(get(doc, f).is_some_and(|v| !s(&v).is_empty()), "{name}: no {f} in {doc:?}");
        }
        let info = list(&ok(&mut c, &["COMMAND", "INFO", name]));
        let info = list(&info[0]);
        assert_eq!(s(&info[0]), *name);
        let arity = int(&info[1]);
        let needed: i64 = 1 + list(&get(doc, "arguments").unwrap()).iter().map(min_words).sum::<i64>();
        assert!(arity < 0 && -arity <= needed, "{name}: arity {arity}, the syntax needs {needed} words");
        let specs = list(&info[8]);
        if name == "cache.hash" || name == "queue.list" {
            assert!(specs.is_empty(), "{name} has no key");
            continue;
        }
        assert_eq!(specs.len(), 1, "{name}: one key spec: {specs:?}");
        let spec = &specs[0];
        let bs = get(spec, "begin_search").unwrap();
        assert_eq!(s(&get(&bs, "type").unwrap()), "index");
        assert_eq!(int(&get(&get(&bs, "spec").unwrap(), "index").unwrap()), 1);
        let fk = get(spec, "find_keys").unwrap();
        assert_eq!(s(&get(&fk, "type").unwrap()), "range");
        let fkspec = get(&fk, "spec").unwrap();
        assert_eq!((int(&get(&fkspec, "lastkey").unwrap()), int(&get(&fkspec, "keystep").unwrap())), (0, 1));
        let flags: BTreeSet<String> = list(&get(spec, "flags").unwrap()).iter().map(s).collect();
        let readonly = list(&info[2]).iter().any(|f| s(f) == "readonly");
        let access = ["RO", "RW", "OW", "RM"].iter().filter(|f| flags.contains(**f)).count();
        assert_eq!(access, 1, "{name}: exactly one of RO/RW/OW/RM: {flags:?}");
        assert_eq!(flags.contains("RO"), readonly, "{name}: a readonly command reads its key, others write: {flags:?}");
        // The first key is where the docs put the `key` argument.
        let first = list(&get(doc, "arguments").unwrap())[0].clone();
        assert_eq!(s(&get(&first, "type").unwrap()), "key", "{name}");
        assert_eq!(int(&get(&first, "key_spec_index").unwrap()), 0, "{name}");
    }
}

#[test]
fn getkeys_routes_by_the_key_spec_and_arity_is_enforced() {
    let srv = Server::start();
    let mut c = srv.conn();
    let keys = |c: &mut Connection, words: &[&str]| -> Vec<String> {
        let mut w = vec!["COMMAND", "GETKEYS"];
        w.extend_from_slice(words);
        list(&ok(c, &w)).iter().map(s).collect()
    };
    assert_eq!(keys(&mut c, &["JOB.CREATE", "mail", "PAYLOAD", "{}", "PRIORITY", "high"]), ["mail"]);
    assert_eq!(keys(&mut c, &["JOB.CLAIM", "{t}sketch", "WORKER", "w", "BLOCK", "0"]), ["{t}sketch"]);
    // CHARGE keys come from JOB.CLAIM's getkeys-api callback; its key spec says INCOMPLETE.
    let charged = ["JOB.CLAIM", "{t}q", "CHARGE", "rl:{t}", "REQUESTS", "LIMIT", "1", "PERIOD", "10"];
    assert_eq!(keys(&mut c, &charged), ["{t}q", "rl:{t}"]);
    assert_eq!(keys(&mut c, &["CACHE.GETORQUEUE", "q", "PAYLOAD", "{}", "KEY", "a", "b"]), ["q"]);
    assert_eq!(keys(&mut c, &["RATELIMIT.HIT", "rl:{c}", "LIMIT", "1", "PERIOD", "10"]), ["rl:{c}"]);
    assert_eq!(keys(&mut c, &["LOCK.EXTEND", "lock:x", "tok", "TTL", "10"]), ["lock:x"]);
    assert_eq!(keys(&mut c, &["SCHEDULE.RUN", "ai", "poll"]), ["ai"]);
    let e = err(&mut c, &["COMMAND", "GETKEYS", "CACHE.HASH", "KEY", "a"]);
    assert!(e.contains("no key"), "{e}");
    // The arity in COMMAND INFO is the one each command checked already: too few words is
    // Redis's own arity error, extra words stay the command's own "unknown option".
    let e = err(&mut c, &["JOB.CREATE", "q"]);
    assert!(e.contains("wrong number of arguments"), "{e}");
    let e = err(&mut c, &["RATELIMIT.HIT", "k", "LIMIT", "1", "PERIOD"]);
    assert!(e.contains("wrong number of arguments"), "{e}");
    let e = err(&mut c, &["JOB.CANCEL", "q", "a", "b"]);
    assert!(e.contains("unknown option"), "{e}");
    // The server is fine after all of it, and RESP3 clients read the same docs.
    let mut c3 = srv.conn3();
    let d = ok(&mut c3, &["COMMAND", "DOCS", "job.update"]);
    assert!(matches!(d, Value::Map(_)), "{d:?}");
    assert_eq!(s(&ok(&mut c, &["PING"])), "PONG");
}

/// The ACL users of the README's operating notes work as described: each role can do its
/// part and nothing of the other's.
#[test]
fn readme_acl_roles_grant_what_they_say() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let notes = text.split("## Operating notes").nth(1).expect("an Operating notes section");
    let notes = notes.split("\n## ").next().unwrap();
    let srv = Server::start();
    let mut c = srv.conn();
    let mut users = Vec::new();
    for line in notes.lines().filter(|l| l.starts_with("ACL SETUSER")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        ok(&mut c, &words);
        let pass = words.iter().find_map(|w| w.strip_prefix('>')).expect("a password");
        users.push((words[2].to_string(), pass.to_string()));
    }
    assert_eq!(users.iter().map(|u| u.0.as_str()).collect::<Vec<_>>(), ["app", "worker", "ops"]);
    let login = |name: &str| {
        let pass = &users.iter().find(|u| u.0 == name).unwrap().1;
        let url = format!("redis://{name}:{pass}@127.0.0.1:{}/", srv.port);
        redis::Client::open(url).unwrap().get_connection().unwrap()
    };
    let (mut app, mut worker, mut ops) = (login("app"), login("worker"), login("ops"));
    let goq = ok(&mut app, &["CACHE.GETORQUEUE", "analyze", "PAYLOAD", "{}"]);
    let id = s(&array(&goq)[1]);
    ok(&mut app, &["RATELIMIT.HIT", "rl:{c1}:generate", "LIMIT", "5", "PERIOD", "1000"]);
    ok(&mut app, &["SUBSCRIBE", &format!("aijob:{{analyze}}:job:{id}")]);
    let mut app2 = login("app");
    ok(&mut app2, &["PSUBSCRIBE", "aijob:{improve_sketch}:job:*"]);
    assert_eq!(claim(&mut worker, "analyze", &[]).map(|j| j.0), Some(id.clone()));
    ok(&mut worker, &["RATELIMIT.HIT", "aijob-rl:{echo}:rpm", "LIMIT", "5", "PERIOD", "1000"]);
    ok(&mut worker, &["CONFIG", "GET", "aijob.lease-ms"]);
    ok(&mut worker, &["COMMAND", "INFO", "RATELIMIT.HIT"]);
    let mut app3 = login("app");
    let refused = |who: &mut Connection, words: &[&str]| {
        let e = err(who, words);
        assert!(e.starts_with("NOPERM"), "{words:?}: {e}");
    };
    refused(&mut app3, &["JOB.CLAIM", "analyze"]);
    refused(&mut worker, &["JOB.CREATE", "analyze", "PAYLOAD", "{}"]);
    refused(&mut worker, &["JOB.CLAIM", "payments"]);
    assert_eq!(int(&ok(&mut ops, &["QUEUE.PURGE", "analyze", "STATUS", "running"])), 1);
    ok(&mut ops, &["SCHEDULE.SET", "ops", "tick", "EVERY", "60000", "PAYLOAD", "{}"]);
}
