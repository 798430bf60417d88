//! QUEUE.* commands.

use aijob_core::args::{self, Cursor};
use aijob_core::queue::{admin, read};
use aijob_core::{AiError, Result};

use crate::command::Call;
use crate::reply::Out;

/// QUEUE.STATS Q
pub fn stats(c: &mut Call) -> Result<Out> {
    let q = args::queue_only(&c.args)?;
    let (hits, coalesced) = crate::timer::buffered_cache_counts(c.ctx, &q);
    let fields = read::stats(&mut c.store, &q, c.now)?;
    let add = |name: &str, v: i64| match name {
        "hits" => v + hits,
        "coalesced" => v + coalesced,
        _ => v,
    };
    Ok(Out::Map(fields.into_iter().map(|(k, v)| (k.to_string(), Out::Int(add(k, v)))).collect()))
}

/// QUEUE.PAUSE Q
pub fn pause(c: &mut Call) -> Result<Out> {
    let q = args::queue_only(&c.args)?;
    c.with(&q, |s, _| admin::set_paused(s, &q, true).map(|v| (v, Default::default())))?;
    Ok(Out::Str("OK"))
}

/// QUEUE.RESUME Q
pub fn resume(c: &mut Call) -> Result<Out> {
    let q = args::queue_only(&c.args)?;
    c.with(&q, |s, _| admin::set_paused(s, &q, false).map(|v| (v, Default::default())))?;
    Ok(Out::Str("OK"))
}

/// QUEUE.PURGE Q [STATUS s] [PRIORITY p]
pub fn purge(c: &mut Call) -> Result<Out> {
    let (q, status, prio) = args::queue_purge(&c.args)?;
    Ok(Out::Int(c.with(&q, |s, env| admin::purge(s, &q, env, status, prio))?))
}

/// QUEUE.GROUPCAP Q group|* n
pub fn groupcap(c: &mut Call) -> Result<Out> {
    let mut cur = Cursor::new(&c.args);
    let q = aijob_core::keys::QueueKeys::new(cur.next().unwrap_or_default())?;
    let group = cur.next().ok_or_else(|| AiError::arg("group", "is missing"))?.to_vec();
    if group != b"*" {
        aijob_core::names::validate("group", &group)?;
    }
    let cap = args::non_negative("n", cur.next().ok_or_else(|| AiError::arg("n", "is missing"))?)?;
    if let Some(extra) = cur.keyword() {
        return Err(AiError::syntax(format!("unknown option '{extra}'")));
    }
    c.with(&q, |s, env| admin::set_group_cap(s, &q, env, &group, cap).map(|v| (v, Default::default())))?;
    Ok(Out::Str("OK"))
}

/// QUEUE.GROUPS Q [CURSOR c] [COUNT n]
pub fn groups(c: &mut Call) -> Result<Out> {
    let mut cur = Cursor::new(&c.args);
    let q = aijob_core::keys::QueueKeys::new(cur.next().unwrap_or_default())?;
    let (mut cursor, mut count) = (0, 10);
    while let Some(kw) = cur.keyword() {
        match kw.as_str() {
            "CURSOR" => cursor = cur.count("CURSOR")?,
            "COUNT" => count = args::positive("COUNT", cur.value("COUNT")?)?.min(10_000),
            _ => return Err(AiError::syntax(format!("unknown option '{kw}'"))),
        }
    }
    let (next, page) = read::groups(&mut c.store, &q, cursor, count)?;
    let entries = page
        .into_iter()
        .map(|g| {
            Out::Map(vec![
                ("group".into(), Out::Bytes(g.group)),
                ("queued".into(), Out::Int(g.queued)),
                ("running".into(), Out::Int(g.running)),
                ("cap".into(), Out::Int(g.cap)),
            ])
        })
        .collect();
    Ok(Out::Array(vec![Out::bytes(next.to_string()), Out::Array(entries)]))
}

/// QUEUE.LIST [MATCH pattern] [AFTER name] [COUNT n]: the queues of this node, by name.
pub fn list(c: &mut Call) -> Result<Out> {
    use aijob_core::store::Store;
    let args = aijob_core::queues::parse(&c.args)?;
    if !crate::timer::knows_all_queues(c.ctx) {
        return Err(AiError::syntax(
            "QUEUE.LIST answers on a master once it knows its queues: on a replica ask its master; after a load or a promotion try again shortly",
        ));
    }
    // A queue whose keys are gone (FLUSHDB, a slot migrated away) stays in the registry
    // until the timer looks at it again, so each candidate is checked: a queue holds a
    // `meta` (every job and cache command makes it) or, with schedules only, `schedules`.
    let mut after = args.after.clone();
    let mut out = Vec::new();
    while out.len() < args.count {
        let want = args.count - out.len();
        let probe = aijob_core::queues::ListArgs { pattern: args.pattern.clone(), after: after.take(), count: want };
        let page = crate::timer::with_queue_names(c.ctx, |names| aijob_core::queues::page(names, &probe, want));
        let short = page.len() < want;
        after = page.last().cloned();
        for name in page {
            let q = aijob_core::keys::QueueKeys::new(&name)?;
            if c.store.exists(&q.meta())? || c.store.exists(&q.schedules())? {
                out.push(Out::Bytes(name));
            }
        }
        if short {
            break;
        }
    }
    Ok(Out::Array(out))
}
