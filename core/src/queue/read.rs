//! JOB.GET, JOB.LIST, QUEUE.STATS, QUEUE.GROUPS: reads only, so they answer on replicas.

use crate::error::Result;
use crate::job::{Priority, Status};
use crate::keys::QueueKeys;
use crate::queue::tx::meta;
use crate::record::{self, Value};
use crate::store::{Store, ZRange};

/// What JOB.LIST pages through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListArgs {
    pub status: Option<Status>,
    pub cursor: i64,
    pub count: i64,
}

/// A job's record as replied, with `ttl` (ms left; -1 for live jobs) and `extra` fields.
pub fn get<S: Store>(
    s: &mut S,
    q: &QueueKeys,
    now: i64,
    id: &[u8],
    mut extra: Vec<(&'static str, Value)>,
) -> Result<Option<record::Reply>> {
    let fields = s.hgetall(&q.job(id))?;
    if fields.is_empty() {
        return Ok(None);
    }
    let field = |name: &str| fields.iter().find(|(f, _)| f.as_slice() == name.as_bytes()).map(|(_, v)| v);
    let live = field(record::STATUS).and_then(|v| Status::parse(v)).is_some_and(Status::is_live);
    // a finished parent kept for its dependents has no end yet either
    let kept = field(record::DEPENDENTS).is_some_and(|v| v.as_slice() != b"0");
    let live = live || kept;
    let ttl = match field(record::EXPIRE_AT).and_then(|v| record::int(v)) {
        Some(at) if !live => (at - now).max(0),
        _ => -1,
    };
    extra.insert(0, (record::TTL, Value::Int(ttl)));
    Ok(Some(record::to_reply(id, q.name(), &fields, extra)))
}

/// One page of JOB.LIST: newest first; the cursor is the sequence to continue below.
/// Without STATUS the page merges the per-status indexes (each read at most one page deep).
pub fn list<S: Store>(s: &mut S, q: &QueueKeys, now: i64, a: &ListArgs) -> Result<(i64, Vec<record::Reply>)> {
    let statuses: Vec<Status> = match a.status {
        Some(st) => vec![st],
        None => Status::ALL.to_vec(),
    };
    let range = ZRange {
        min: f64::NEG_INFINITY,
        min_exclusive: false,
        max: if a.cursor == 0 { f64::INFINITY } else { a.cursor as f64 },
        max_exclusive: a.cursor != 0,
        reverse: true,
        limit: a.count as usize + 1,
    };
    let mut ids = Vec::new();
    for st in statuses {
        ids.extend(s.zrange(&q.status(st), range)?);
    }
    ids.sort_by(|x, y| y.1.total_cmp(&x.1));
    let more = ids.len() > a.count as usize;
    ids.truncate(a.count as usize);
    let next = if more { ids.last().map_or(0, |(_, score)| *score as i64) } else { 0 };
    let mut page = Vec::with_capacity(ids.len());
    for (id, _) in ids {
        if let Some(r) = get(s, q, now, &id, vec![])? {
            page.push(r);
        }
    }
    Ok((next, page))
}

/// QUEUE.STATS as (name, value) in reply order.
pub fn stats<S: Store>(s: &mut S, q: &QueueKeys, now: i64) -> Result<Vec<(&'static str, i64)>> {
    let mut out = Vec::with_capacity(24);
    for st in Status::ALL {
        out.push((st.as_str(), s.zcard(&q.status(st))?));
    }
    let meta_fields = [
        meta::queued(Priority::High),
        meta::queued(Priority::Normal),
        meta::queued(Priority::Low),
        meta::CREATED,
        meta::COMPLETED,
        meta::FAILED,
        meta::RETRIED,
        meta::HITS,
        meta::MISSES,
        meta::COALESCED,
    ];
    let values = s.hmget(&q.meta(), &meta_fields)?;
    for (name, v) in meta_fields.iter().zip(values) {
        let n = v.as_deref().and_then(record::int).unwrap_or(0);
        out.push((name, n.max(0)));
    }
    out.push(("oldest_queued_ms", oldest_queued_ms(s, q, now)?));
    out.push(("schedules", s.zcard(&q.schedules())?));
    out.push(("groups", s.zcard(&q.groups())?));
    let paused = s.hget(&q.meta(), meta::PAUSED.as_bytes())?.as_deref() == Some(b"1");
    out.push(("paused", paused as i64));
    Ok(out)
}

fn oldest_queued_ms<S: Store>(s: &mut S, q: &QueueKeys, now: i64) -> Result<i64> {
    let Some((id, _)) = s.zrange(&q.status(Status::Queued), ZRange::first(1))?.into_iter().next() else {
        return Ok(0);
    };
    let created = s.hget(&q.job(&id), record::CREATED_AT.as_bytes())?;
    let created = created.as_deref().and_then(record::int).unwrap_or(now);
    Ok((now - created).max(0))
}

/// One entry of QUEUE.GROUPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub group: Vec<u8>,
    pub queued: i64,
    pub running: i64,
    pub cap: i64,
}

/// One page of QUEUE.GROUPS, in order of first appearance.
pub fn groups<S: Store>(s: &mut S, q: &QueueKeys, cursor: i64, count: i64) -> Result<(i64, Vec<GroupInfo>)> {
    let range = ZRange {
        min: if cursor == 0 { f64::NEG_INFINITY } else { cursor as f64 },
        min_exclusive: cursor != 0,
        max: f64::INFINITY,
        max_exclusive: false,
        reverse: false,
        limit: count as usize + 1,
    };
    let mut names = s.zrange(&q.groups(), range)?;
    let more = names.len() > count as usize;
    names.truncate(count as usize);
    let next = if more { names.last().map_or(0, |(_, score)| *score as i64) } else { 0 };
    let default_cap = s.hget(&q.meta(), meta::GROUP_CAP.as_bytes())?.as_deref().and_then(record::int).unwrap_or(0);
    let mut out = Vec::with_capacity(names.len());
    for (g, _) in names {
        let v = s.hmget(&q.group(&g), &["running", "cap"])?;
        let num = |i: usize| v.get(i).and_then(|x| x.as_ref()).and_then(|b| record::int(b));
        let mut queued = 0;
        for p in Priority::ORDER {
            queued += s.zcard(&q.queued(p, &g))?;
        }
        out.push(GroupInfo { running: num(0).unwrap_or(0), cap: num(1).unwrap_or(default_cap), group: g, queued });
    }
    Ok((next, out))
}
