//! Every registered command against its one declaration (`src/commands/`, registered by
//! `src/register.rs`), checked on a real server from the outside: it has COMMAND DOCS, a key
//! spec (or is declared keyless), a syntax line in the reference (README.md and every page
//! under docs/) equal to what COMMAND DOCS describes, and a parser that takes exactly the
//! words the docs require; the arity Redis enforces agrees with all of them.

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

/// The reference pages: README.md, then every Markdown page under docs/ (when there is one).
fn reference_pages() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = vec![root.join("README.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut found: Vec<_> = entries.map(|e| e.expect("a docs/ entry").path()).collect();
        found.sort();
        for p in found {
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                paths.push(p);
            }
        }
    }
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.strip_prefix(root).unwrap_or(&p).display().to_string(), text)
        })
        .collect()
}

/// The reference's syntax lines, each with its page: in code blocks, a line that starts
/// with a command name (`JOB.CREATE Q ...`, not a redis-cli prompt), with its indented
/// continuation lines, a trailing `# comment` removed, whitespace collapsed.
fn reference_syntax() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (page, text) in reference_pages() {
        out.extend(syntax_lines(&text).into_iter().map(|l| (page.clone(), l)));
    }
    out
}

fn syntax_lines(text: &str) -> Vec<String> {
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
fn every_command_has_docs_that_match_the_reference() {
    let srv = Server::start();
    let mut c = srv.conn();
    let docs = docs(&mut c);
    let reference = reference_syntax();
    let mut problems = Vec::new();
    for (name, (line, _)) in &docs {
        let upper = name.to_uppercase();
        let given: Vec<&(String, String)> =
            reference.iter().filter(|(_, l)| l.split_whitespace().next() == Some(upper.as_str())).collect();
        match given.first() {
            None => {
                problems.push(format!("the reference has no syntax line for {upper}; COMMAND DOCS says:\n    {line}"))
            }
            Some((page, first)) if !given.iter().any(|(_, g)| g == line) => {
                problems.push(format!("{upper}:\n    COMMAND DOCS: {line}\n    {page}: {first}"))
            }
            Some(_) => {}
        }
    }
    for (page, l) in &reference {
        let name = l.split_whitespace().next().unwrap_or("").to_lowercase();
        if !docs.contains_key(&name) {
            problems.push(format!("{page} names a command the module does not have: {l}"));
        }
    }
    assert!(problems.is_empty(), "COMMAND DOCS and the reference disagree:\n{}", problems.join("\n"));
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

/// The arguments of a command's docs.
fn arguments(doc: &Value) -> Vec<Value> {
    list(&get(doc, "arguments").expect("arguments"))
}

fn is_key(arg: &Value) -> bool {
    s(&get(arg, "type").expect("type")) == "key"
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
        let needed: i64 = 1 + arguments(doc).iter().map(min_words).sum::<i64>();
        assert!(arity < 0 && -arity <= needed, "{name}: arity {arity}, the syntax needs {needed} words");
        let specs = list(&info[8]);
        let first_key = int(&info[3]);
        if specs.is_empty() {
            // Declared keyless: no legacy key range, no key in the syntax either.
            assert_eq!(first_key, 0, "{name}: no key spec, yet its first key is at {first_key}");
            assert!(!arguments(doc).iter().any(is_key), "{name}: a key argument without a key spec");
            continue;
        }
        assert_eq!(first_key, 1, "{name}: the key is argument 1");
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
        // More keys than the spec finds are reported by the command itself.
        let getkeys = list(&info[2]).iter().any(|f| s(f) == "movablekeys");
        assert_eq!(
            flags.contains("incomplete"),
            getkeys,
            "{name}: incomplete goes with a getkeys callback (movablekeys)"
        );
        // The first key is where the docs put the `key` argument.
        let first = arguments(doc)[0].clone();
        assert!(is_key(&first), "{name}");
        assert_eq!(int(&get(&first, "key_spec_index").unwrap()), 0, "{name}");
    }
}

/// A value the grammar accepts for an argument, by the name the docs give it.
fn sample(arg: &Value, command: &str) -> String {
    let name = get(arg, "name").map(|v| s(&v)).expect("name");
    match s(&get(arg, "type").expect("type")).as_str() {
        "key" => format!("docs-{command}"),
        "integer" | "unix-time" => "1000".into(),
        _ => match name.as_str() {
            "json" => "{}".into(),
            "hex" | "hash" => "0".repeat(64),
            "expr" => "* * * * *".into(),
            other => format!("docs-{other}"),
        },
    }
}

/// The words of the shortest call the docs allow, one group per required argument: the
/// first of each one-of, one round of a repeated block.
fn minimal_words(args: &[Value], command: &str) -> Vec<Vec<String>> {
    let required = args.iter().filter(|a| !flags_of(a).contains("optional"));
    required
        .map(|arg| {
            let mut words: Vec<String> = get(arg, "token").map(|t| s(&t)).into_iter().collect();
            match s(&get(arg, "type").expect("type")).as_str() {
                "pure-token" => {}
                "oneof" => words.extend(minimal_words(&arguments(arg)[..1], command).concat()),
                "block" => words.extend(minimal_words(&arguments(arg), command).concat()),
                _ => words.push(sample(arg, command)),
            }
            words
        })
        .collect()
}

/// Whether the last argument of the docs takes every word after it (`KEY part ...`), so an
/// extra word is one more part.
fn takes_the_rest(args: &[Value]) -> bool {
    let Some(last) = args.iter().rfind(|a| !flags_of(a).contains("optional")) else { return false };
    let flags = flags_of(last);
    let repeats = flags.contains("multiple") && !flags.contains("multiple_token");
    repeats || (s(&get(last, "type").expect("type")) == "oneof" && takes_the_rest(&arguments(last)[..1]))
}

/// Each command's parser against its docs and arity: the shortest call the docs allow
/// parses (no ERR); without any one of its required arguments it is refused, by Redis's
/// arity check when it is then shorter than the arity, else by the parser; a word more is
/// refused by the parser, naming it; fewer words than the arity is Redis's arity error. A
/// command without a parser, or whose parser, docs and arity want different words, fails.
#[test]
fn every_parser_takes_what_the_docs_and_arity_say() {
    let srv = Server::start();
    let mut c = srv.conn();
    let docs = docs(&mut c);
    let arity_of: BTreeMap<&String, usize> = docs
        .keys()
        .map(|name| (name, -int(&list(&list(&ok(&mut c, &["COMMAND", "INFO", name]))[0])[1]) as usize))
        .collect();
    let mut problems = Vec::new();
    let mut call = |words: &[String]| {
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        cmd(&mut c, &w).map_err(|e| error_text(&e))
    };
    for (name, (_, doc)) in &docs {
        let arity = arity_of[name];
        let groups = minimal_words(&arguments(doc), name);
        let with = |groups: &[Vec<String>]| [vec![name.to_uppercase()], groups.concat()].concat();
        let shortest = with(&groups);
        // NOTFOUND and the like are fine: the words parsed, the job is just not there. A
        // command that asks to be tried again shortly (QUEUE.LIST before the timer knows
        // the queues) gets two seconds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let refused = loop {
            match call(&shortest) {
                Err(e) if e.starts_with("ERR") && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(e) if e.starts_with("ERR") => break Some(e),
                _ => break None,
            }
        };
        if let Some(e) = refused {
            problems.push(format!("{}: the shortest call the docs allow is refused: {e}", shortest.join(" ")));
        }
        for i in 0..groups.len() {
            let mut fewer = groups.clone();
            fewer.remove(i);
            let words = with(&fewer);
            match call(&words) {
                Err(e) if words.len() < arity && e.contains("wrong number of arguments") => {}
                Err(e) if words.len() >= arity && e.starts_with("ERR") && !e.contains("wrong number") => {}
                other => problems
                    .push(format!("{} (arity {arity}), a required argument left out: {other:?}", words.join(" "))),
            }
        }
        let too_short = &shortest[..(arity - 1).min(shortest.len())];
        // (an arity of 1 has nothing too short)
        if !too_short.is_empty() {
            match call(too_short) {
                Err(e) if e.contains("wrong number of arguments") => {}
                other => {
                    problems.push(format!("{}: fewer words than the arity {arity}: {other:?}", too_short.join(" ")))
                }
            }
        }
        if !takes_the_rest(&arguments(doc)) {
            let longer = [shortest.clone(), vec!["BOGUS".to_string()]].concat();
            match call(&longer) {
                Err(e) if e.starts_with("ERR") && e.contains("BOGUS") => {}
                other => problems.push(format!("{}: an unknown word gives {other:?}", longer.join(" "))),
            }
        }
    }
    assert!(problems.is_empty(), "parsers, docs and arity disagree:\n{}", problems.join("\n"));
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
    // and JOB.UPDATE's, after NEXT
    let next = [
        "JOB.UPDATE",
        "{t}q",
        "id",
        "STATUS",
        "done",
        "RESULT",
        "{}",
        "NEXT",
        "CHARGE",
        "rl:{t}",
        "REQUESTS",
        "LIMIT",
        "1",
        "PERIOD",
        "10",
    ];
    assert_eq!(keys(&mut c, &next), ["{t}q", "rl:{t}"]);
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

/// The ACL users the reference documents (README.md or a page under docs/) work as
/// described: each role can do its part and nothing of the other's.
#[test]
fn reference_acl_roles_grant_what_they_say() {
    let srv = Server::start();
    let mut c = srv.conn();
    let mut users: Vec<(String, String)> = Vec::new();
    let pages = reference_pages();
    let lines = pages.iter().flat_map(|(_, text)| text.lines()).filter(|l| l.starts_with("ACL SETUSER "));
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        // a role shown on two pages (while the reference moves) is set up once
        if users.iter().any(|u| u.0 == words[2]) {
            continue;
        }
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
    let (claimed, token) = claim(&mut worker, "analyze", &[]).expect("the app's job");
    assert_eq!(claimed, id);
    ok(&mut worker, &["JOB.APPEND", "analyze", &id, "TOKEN", &token, "DATA", "streamed"]);
    ok(&mut worker, &["RATELIMIT.HIT", "aijob-rl:{echo}:rpm", "LIMIT", "5", "PERIOD", "1000"]);
    ok(&mut worker, &["CONFIG", "GET", "aijob.lease-ms"]);
    ok(&mut worker, &["COMMAND", "INFO", "RATELIMIT.HIT"]);
    let mut app3 = login("app");
    let refused = |who: &mut Connection, words: &[&str]| {
        let e = err(who, words);
        assert!(e.starts_with("NOPERM"), "{words:?}: {e}");
    };
    refused(&mut app3, &["JOB.CLAIM", "analyze"]);
    refused(&mut app3, &["JOB.APPEND", "analyze", &id, "TOKEN", &token, "DATA", "x"]);
    assert_eq!(fi(&ok(&mut app3, &["JOB.READ", "analyze", &id]), "ended"), 0, "the app reads the output");
    refused(&mut worker, &["JOB.CREATE", "analyze", "PAYLOAD", "{}"]);
    refused(&mut worker, &["JOB.CLAIM", "payments"]);
    assert_eq!(int(&ok(&mut ops, &["QUEUE.PURGE", "analyze", "STATUS", "running"])), 1);
    ok(&mut ops, &["SCHEDULE.SET", "ops", "tick", "EVERY", "60000", "PAYLOAD", "{}"]);
}
