//! QUEUE.* commands.

use aijob_core::grammar;
use aijob_core::job::{Priority, Status};
use aijob_core::keys::QueueKeys;
use aijob_core::queue::tx::meta;
use aijob_core::queue::{admin, read, repair};
use aijob_core::queues;
use aijob_core::Result;

use crate::command::arg::*;
use crate::command::key;
use crate::command::{Call, Command, Info, Keys};
use crate::reply::Out;

/// QUEUE.STATS Q
pub const STATS: Command<QueueKeys> = Command {
    info: Info {
        name: "queue.stats",
        flags: "readonly",
        arity: -2,
        summary: "Counts per status and priority, totals and cache counters of a queue.",
        complexity: "O(1)",
        keys: Keys::Queue(key::RO),
        args: &[Q],
    },
    parse: |words, _| grammar::queue::queue_only(words),
    handle: stats,
};

fn stats(c: &mut Call, q: QueueKeys) -> Result<Out> {
    let (hits, coalesced) = crate::timer::buffered_cache_counts(c.ctx, &q);
    let fields = read::stats(&mut c.store, &q, c.now)?;
    let add = |name: &str, v: i64| match name {
        meta::HITS => v + hits,
        meta::COALESCED => v + coalesced,
        _ => v,
    };
    Ok(Out::Map(fields.into_iter().map(|(k, v)| (k, Out::Int(add(k, v)))).collect()))
}

/// QUEUE.PAUSE Q
pub const PAUSE: Command<QueueKeys> = Command {
    info: Info {
        name: "queue.pause",
        flags: "write",
        arity: -2,
        summary: "Stops handing out jobs of the queue; creates still work.",
        complexity: "O(1)",
        keys: Keys::Queue(key::RW | key::UPDATE),
        args: &[Q],
    },
    parse: |words, _| grammar::queue::queue_only(words),
    handle: |c, q| set_paused(c, q, true),
};

/// QUEUE.RESUME Q
pub const RESUME: Command<QueueKeys> = Command {
    info: Info {
        name: "queue.resume",
        flags: "write",
        arity: -2,
        summary: "Hands out jobs again and wakes blocked claimers.",
        complexity: "O(1)",
        keys: Keys::Queue(key::RW | key::UPDATE),
        args: &[Q],
    },
    parse: |words, _| grammar::queue::queue_only(words),
    handle: |c, q| set_paused(c, q, false),
};

fn set_paused(c: &mut Call, q: QueueKeys, paused: bool) -> Result<Out> {
    c.with(&q, |s, _| admin::set_paused(s, &q, paused).map(|v| (v, Default::default())))?;
    Ok(Out::Str("OK"))
}

/// QUEUE.PURGE Q [STATUS s] [PRIORITY p]
pub const PURGE: Command<(QueueKeys, Status, Option<Priority>)> = Command {
    info: Info {
        name: "queue.purge",
        flags: "write",
        arity: -2,
        summary: "Removes the jobs in one status (queued by default); replies the count.",
        complexity: "O(M log N) with M the jobs removed",
        keys: Keys::Queue(key::RW | key::DELETE),
        args: &[Q, STATUS_ANY, PRIORITY],
    },
    parse: |words, _| grammar::queue::purge(words),
    handle: |c, (q, status, prio)| Ok(Out::Int(c.with(&q, |s, env| admin::purge(s, &q, env, status, prio))?)),
};

/// QUEUE.GROUPCAP Q group|* n
pub const GROUPCAP: Command<(QueueKeys, Vec<u8>, i64)> = Command {
    info: Info {
        name: "queue.groupcap",
        flags: "write deny-oom",
        arity: -4,
        summary: "Caps the running jobs of a group (or of every group, with *); 0 removes the cap.",
        complexity: "O(log N); O(G) for * with G the groups",
        keys: Keys::Queue(key::RW | key::UPDATE),
        args: &[Q, s("group"), int("n")],
    },
    parse: |words, _| grammar::queue::groupcap(words),
    handle: groupcap,
};

fn groupcap(c: &mut Call, (q, group, cap): (QueueKeys, Vec<u8>, i64)) -> Result<Out> {
    c.with(&q, |s, env| admin::set_group_cap(s, &q, env, &group, cap).map(|v| (v, Default::default())))?;
    Ok(Out::Str("OK"))
}

/// QUEUE.GROUPS Q [CURSOR c] [COUNT n]
pub const GROUPS: Command<(QueueKeys, i64, i64)> = Command {
    info: Info {
        name: "queue.groups",
        flags: "readonly",
        arity: -2,
        summary: "Pages through a queue's groups with their queued and running counts and caps.",
        complexity: "O(log G + COUNT)",
        keys: Keys::Queue(key::RO),
        args: &[Q, CURSOR, COUNT],
    },
    parse: |words, _| grammar::queue::groups(words),
    handle: groups,
};

fn groups(c: &mut Call, (q, cursor, count): (QueueKeys, i64, i64)) -> Result<Out> {
    let (next, page) = read::groups(&mut c.store, &q, cursor, count)?;
    let entries = page
        .into_iter()
        .map(|g| {
            Out::Map(vec![
                ("group", Out::Bytes(g.group)),
                ("queued", Out::Int(g.queued)),
                ("running", Out::Int(g.running)),
                ("cap", Out::Int(g.cap)),
            ])
        })
        .collect();
    Ok(Out::Array(vec![Out::bytes(next.to_string()), Out::Array(entries)]))
}

/// QUEUE.REPAIR Q [COUNT n]
pub const REPAIR: Command<(QueueKeys, usize)> = Command {
    info: Info {
        name: "queue.repair",
        flags: "write",
        arity: -2,
        summary:
            "Goes on with the queue's repair pass: drops index entries of gone jobs, re-indexes records an index lost.",
        complexity: "O(COUNT log N) with N the jobs of the queue",
        keys: Keys::Queue(key::RW | key::UPDATE),
        args: &[Q, COUNT],
    },
    parse: |words, _| grammar::queue::repair(words),
    handle: repair,
};

fn repair(c: &mut Call, (q, count): (QueueKeys, usize)) -> Result<Out> {
    let report = c.with(&q, |s, env| Ok((repair::repair(s, &q, env, count)?, Default::default())))?;
    crate::repair::account(&report);
    if report.found_damage() {
        crate::timer::touch(c.ctx, &q);
    }
    if report.done {
        // records no index names are found by the keyspace sweep, which no command runs
        crate::repair::request_sweep();
    }
    let n = |v: u64| Out::Int(v as i64);
    Ok(Out::Map(vec![
        ("checked", Out::Int(report.checked as i64)),
        ("dropped", n(report.tally.index_entries_dropped)),
        ("reindexed", n(report.tally.records_reindexed)),
        ("counters", n(report.counters)),
        ("skipped", n(report.skipped)),
        ("done", Out::Int(i64::from(report.done))),
    ]))
}

/// QUEUE.LIST [MATCH pattern] [AFTER name] [COUNT n]
pub const LIST: Command<queues::ListArgs> = Command {
    info: Info {
        name: "queue.list",
        flags: "readonly",
        arity: -1,
        summary: "The queues this node holds, by name (a master's own; a replica refuses).",
        complexity: "O(Q log COUNT) with Q the queues of the node",
        keys: Keys::None,
        args: &[ts("MATCH", "pattern").opt(), ts("AFTER", "name").opt(), ti("COUNT", "n").opt()],
    },
    parse: |words, _| queues::parse(words),
    handle: list,
};

fn list(c: &mut Call, args: queues::ListArgs) -> Result<Out> {
    use aijob_core::store::Store;
    if !crate::timer::knows_all_queues(c.ctx) {
        return Err(aijob_core::AiError::syntax(
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
        let probe = queues::ListArgs { pattern: args.pattern.clone(), after: after.take(), count: want };
        let page = crate::timer::with_queue_names(c.ctx, |names| queues::page(names, &probe, want));
        let short = page.len() < want;
        after = page.last().cloned();
        for name in page {
            let q = QueueKeys::new(&name)?;
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
