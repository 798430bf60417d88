//! Schedules (docs/schedules.md): periodic jobs kept in the queue's keys and fired by the
//! master's timer. Each run creates its job through `add_job`, the path of JOB.CREATE,
//! and the schedule's next run moves in the same step, so a replica that is promoted
//! neither repeats a run nor misses more than one tick.

use crate::cron;
use crate::error::{AiError, Result};
use crate::job::Priority;
use crate::keys::QueueKeys;
use crate::queue::create::{add_job, JobSpec};
use crate::queue::tx::{load_job, Env, Tally, Tx};
use crate::record::Value;
use crate::rng;
use crate::store::{Op, Score, Store, ZRange};

/// The fields of a schedule's hash (`aijob:{Q}:schedule:<name>`), as stored and replied.
pub mod field {
    pub const NAME: &str = "name";
    pub const EVERY: &str = "every";
    pub const CRON: &str = "cron";
    pub const START: &str = "start";
    pub const PAYLOAD: &str = "payload";
    pub const PRIORITY: &str = "priority";
    pub const COST: &str = "cost";
    pub const OVERLAP: &str = "overlap";
    pub const PAUSED: &str = "paused";
    pub const NEXT_RUN_AT: &str = "next_run_at";
    pub const MAX_ATTEMPTS: &str = "max_attempts";
    pub const RETENTION: &str = "retention";
    pub const DEADLINE: &str = "deadline";
    pub const META: &str = "meta";
    pub const GROUP: &str = "group";
    pub const LAST_JOB_ID: &str = "last_job_id";
    pub const LAST_RUN_AT: &str = "last_run_at";
    pub const RUNS: &str = "runs";
    pub const SKIPPED: &str = "skipped";
}

/// When a schedule runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timetable {
    Every(i64),
    Cron(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    pub name: Vec<u8>,
    pub timetable: Timetable,
    pub start: Option<i64>,
    pub overlap_allow: bool,
    pub job: JobSpec,
}

/// The first run strictly after `after`; None when the timetable never matches again.
pub fn next_run(t: &Timetable, start: i64, after: i64) -> Option<i64> {
    match t {
        Timetable::Every(every) => Some(cron::next_every(start, *every, after)),
        Timetable::Cron(expr) => cron::parse(expr).ok()?.next_after(after),
    }
}

fn n(v: i64) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn num(v: &Option<Vec<u8>>) -> Option<i64> {
    v.as_ref().and_then(|b| crate::record::int(b))
}

/// SCHEDULE.SET: creates or replaces; keeps the counters, last run and paused state of a
/// schedule it replaces. Returns `next_run_at`.
pub fn set<S: Store>(s: &mut S, q: &QueueKeys, env: &mut Env, spec: &ScheduleSpec) -> Result<(i64, Tally)> {
    let start = spec.start.unwrap_or(env.now);
    // a START of now or later runs at START; otherwise the first run is the next tick
    let after = if spec.start.is_some() { env.now - 1 } else { env.now };
    let next = next_run(&spec.timetable, start, after)
        .filter(|t| *t < i64::MAX)
        .ok_or_else(|| AiError::arg("CRON", "never matches a future instant"))?;
    let key = q.schedule(&spec.name);
    let paused = s.hget(&key, field::PAUSED.as_bytes())?.as_deref() == Some(b"1");
    let j = &spec.job;
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (field::NAME.as_bytes().to_vec(), spec.name.clone()),
        (field::START.as_bytes().to_vec(), n(start)),
        (field::PAYLOAD.as_bytes().to_vec(), j.payload.clone()),
        (field::PRIORITY.as_bytes().to_vec(), j.priority.as_str().as_bytes().to_vec()),
        (field::COST.as_bytes().to_vec(), n(j.cost)),
        (field::OVERLAP.as_bytes().to_vec(), if spec.overlap_allow { b"allow".to_vec() } else { b"skip".to_vec() }),
        (field::PAUSED.as_bytes().to_vec(), if paused { b"1".to_vec() } else { b"0".to_vec() }),
        (field::NEXT_RUN_AT.as_bytes().to_vec(), n(next)),
    ];
    let (set_kind, other_kind) = match &spec.timetable {
        Timetable::Every(e) => ((field::EVERY.as_bytes().to_vec(), n(*e)), field::CRON.as_bytes().to_vec()),
        Timetable::Cron(c) => {
            ((field::CRON.as_bytes().to_vec(), c.clone().into_bytes()), field::EVERY.as_bytes().to_vec())
        }
    };
    fields.push(set_kind);
    let optional: [(&[u8], Option<Vec<u8>>); 5] = [
        (field::MAX_ATTEMPTS.as_bytes(), j.max_attempts.map(n)),
        (field::RETENTION.as_bytes(), j.retention_ms.map(n)),
        (field::DEADLINE.as_bytes(), j.deadline_ms.map(n)),
        (field::META.as_bytes(), j.meta.clone()),
        (field::GROUP.as_bytes(), j.group.clone()),
    ];
    let mut gone = vec![other_kind];
    for (f, v) in optional {
        match v {
            Some(v) => fields.push((f.to_vec(), v)),
            None => gone.push(f.to_vec()),
        }
    }
    let score = if paused { Score::Inf } else { Score::At(next) };
    s.apply(vec![
        Op::HDel(key.clone(), gone),
        Op::HSet(key, fields),
        Op::ZAdd(q.schedules(), score, spec.name.clone()),
    ])?;
    Ok((next, Tally::default()))
}

/// A stored schedule, read back.
struct Stored {
    name: Vec<u8>,
    timetable: Timetable,
    start: i64,
    overlap_allow: bool,
    paused: bool,
    job: JobSpec,
    last_job: Option<Vec<u8>>,
}

const STORED_FIELDS: [&str; 14] = [
    field::EVERY,
    field::CRON,
    field::START,
    field::OVERLAP,
    field::PAUSED,
    field::PAYLOAD,
    field::PRIORITY,
    field::MAX_ATTEMPTS,
    field::RETENTION,
    field::DEADLINE,
    field::META,
    field::GROUP,
    field::COST,
    field::LAST_JOB_ID,
];

fn load<S: Store>(s: &mut S, q: &QueueKeys, name: &[u8]) -> Result<Option<Stored>> {
    let v = s.hmget(&q.schedule(name), &STORED_FIELDS)?;
    let get = |i: usize| v.get(i).cloned().flatten();
    let timetable = match (num(&get(0)), get(1)) {
        (Some(e), _) if e > 0 => Timetable::Every(e),
        (_, Some(c)) => Timetable::Cron(String::from_utf8_lossy(&c).into_owned()),
        _ if v.iter().all(Option::is_none) => return Ok(None),
        _ => return Err(AiError::corrupt("schedule")),
    };
    let mut job = JobSpec::new(get(5).unwrap_or_else(|| b"null".to_vec()));
    job.priority = get(6).as_deref().and_then(Priority::parse).unwrap_or(Priority::Normal);
    job.max_attempts = num(&get(7));
    job.retention_ms = num(&get(8));
    job.deadline_ms = num(&get(9));
    job.meta = get(10);
    job.group = get(11);
    job.cost = num(&get(12)).unwrap_or(1);
    job.schedule = Some(name.to_vec());
    Ok(Some(Stored {
        name: name.to_vec(),
        timetable,
        start: num(&get(2)).unwrap_or(0),
        overlap_allow: get(3).as_deref() == Some(b"allow"),
        paused: get(4).as_deref() == Some(b"1"),
        job,
        last_job: get(13),
    }))
}

/// Creates one run's job unless OVERLAP skip holds it back; the job id, or None.
fn run_once<S: Store>(tx: &mut Tx<S>, env: &mut Env, sc: &Stored) -> Result<Option<Vec<u8>>> {
    if !sc.overlap_allow {
        if let Some(last) = &sc.last_job {
            if load_job(tx.s, tx.q, last)?.is_some_and(|j| j.status.is_live()) {
                return Ok(None);
            }
        }
    }
    let id = rng::uuid7(env.now, env.entropy).into_bytes();
    add_job(tx, &id, &sc.job)?;
    let key = tx.q.schedule(&sc.name);
    tx.push(Op::HSet(
        key.clone(),
        vec![
            (field::LAST_RUN_AT.as_bytes().to_vec(), n(env.now)),
            (field::LAST_JOB_ID.as_bytes().to_vec(), id.clone()),
        ],
    ));
    tx.push(Op::HIncrBy(key, field::RUNS.as_bytes().to_vec(), 1));
    tx.tally.schedule_runs += 1;
    Ok(Some(id))
}

/// The timer's step: fires every schedule due by now, at most `budget` of them. Ticks
/// missed while no master ran collapse into this one run, then the timetable goes on.
pub fn fire_due<S: Store>(s: &mut S, q: &QueueKeys, env: &mut Env, budget: usize) -> Result<(usize, Tally)> {
    let mut tally = Tally::default();
    let due = s.zrange(&q.schedules(), ZRange::up_to(env.now as f64, budget))?;
    let count = due.len();
    for (name, _) in due {
        let Some(sc) = load(s, q, &name)? else {
            s.apply(vec![Op::ZRem(q.schedules(), name)])?;
            continue;
        };
        let mut tx = Tx::new(s, q, env.now, env.config);
        // a run the eviction guard refuses is skipped like an OVERLAP skip: the timetable
        // goes on, and the clock keeps finishing the work in progress
        let refused = env.config.admit_new_work().is_err();
        if refused || run_once(&mut tx, env, &sc)?.is_none() {
            tx.push(Op::HIncrBy(q.schedule(&name), field::SKIPPED.as_bytes().to_vec(), 1));
        }
        let next = next_run(&sc.timetable, sc.start, env.now);
        let score = match next {
            Some(t) if t < i64::MAX && !sc.paused => Score::At(t),
            _ => Score::Inf,
        };
        tx.push(Op::HSet(q.schedule(&name), vec![(field::NEXT_RUN_AT.as_bytes().to_vec(), n(next.unwrap_or(0)))]));
        tx.push(Op::ZAdd(q.schedules(), score, name));
        tally.add(&tx.commit()?);
    }
    Ok((count, tally))
}

/// SCHEDULE.RUN: a run now, outside the timetable; the job id, or None when held back.
pub fn run_now<S: Store>(s: &mut S, q: &QueueKeys, env: &mut Env, name: &[u8]) -> Result<(Option<Vec<u8>>, Tally)> {
    // refused under the eviction guard even when OVERLAP skip would hold the run back
    env.config.admit_new_work()?;
    let sc = load(s, q, name)?
        .ok_or_else(|| AiError::not_found(format!("no schedule {}", String::from_utf8_lossy(name))))?;
    let mut tx = Tx::new(s, q, env.now, env.config);
    let id = run_once(&mut tx, env, &sc)?;
    Ok((id, tx.commit()?))
}

/// SCHEDULE.PAUSE / SCHEDULE.RESUME: 1, or 0 when there is no such schedule. Resuming
/// starts the timetable again from now.
pub fn set_paused<S: Store>(s: &mut S, q: &QueueKeys, env: &mut Env, name: &[u8], paused: bool) -> Result<i64> {
    let Some(sc) = load(s, q, name)? else { return Ok(0) };
    let next = next_run(&sc.timetable, sc.start, env.now).unwrap_or(i64::MAX);
    let score = if paused || next == i64::MAX { Score::Inf } else { Score::At(next) };
    let mut fields = vec![(field::PAUSED.as_bytes().to_vec(), if paused { b"1".to_vec() } else { b"0".to_vec() })];
    if !paused {
        fields.push((field::NEXT_RUN_AT.as_bytes().to_vec(), n(next)));
    }
    s.apply(vec![Op::HSet(q.schedule(name), fields), Op::ZAdd(q.schedules(), score, name.to_vec())])?;
    Ok(1)
}

/// SCHEDULE.DEL: 1/0.
pub fn del<S: Store>(s: &mut S, q: &QueueKeys, name: &[u8]) -> Result<i64> {
    if !s.exists(&q.schedule(name))? {
        return Ok(0);
    }
    s.apply(vec![Op::Del(q.schedule(name)), Op::ZRem(q.schedules(), name.to_vec())])?;
    Ok(1)
}

/// Reply order of SCHEDULE.GET; the numbers among them are replied as integers.
const SHOWN: [&str; 19] = [
    field::NAME,
    field::EVERY,
    field::CRON,
    field::PAYLOAD,
    field::PRIORITY,
    field::MAX_ATTEMPTS,
    field::RETENTION,
    field::DEADLINE,
    field::META,
    field::GROUP,
    field::COST,
    field::OVERLAP,
    field::PAUSED,
    field::NEXT_RUN_AT,
    field::LAST_RUN_AT,
    field::LAST_JOB_ID,
    field::RUNS,
    field::SKIPPED,
    field::START,
];

fn is_number(f: &str) -> bool {
    matches!(
        f,
        field::EVERY
            | field::MAX_ATTEMPTS
            | field::RETENTION
            | field::DEADLINE
            | field::COST
            | field::PAUSED
            | field::NEXT_RUN_AT
            | field::LAST_RUN_AT
            | field::RUNS
            | field::SKIPPED
            | field::START
    )
}

/// SCHEDULE.GET: the schedule as (field, value) pairs; None when absent.
pub fn get<S: Store>(s: &mut S, q: &QueueKeys, name: &[u8]) -> Result<Option<Vec<(&'static str, Value)>>> {
    let fields = s.hgetall(&q.schedule(name))?;
    if fields.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(SHOWN.len());
    for f in SHOWN {
        let v = fields.iter().find(|(k, _)| k.as_slice() == f.as_bytes()).map(|(_, v)| v.clone());
        let v = match (f, v) {
            (field::RUNS | field::SKIPPED, None) => Value::Int(0),
            (_, None) => continue,
            (f, Some(v)) if is_number(f) => match num(&Some(v.clone())) {
                Some(x) => Value::Int(x),
                None => Value::Bytes(v),
            },
            (_, Some(v)) => Value::Bytes(v),
        };
        out.push((f, v));
    }
    Ok(Some(out))
}

/// SCHEDULE.LIST: every schedule of the queue, by name order of the index.
pub fn list<S: Store>(s: &mut S, q: &QueueKeys) -> Result<Vec<Vec<(&'static str, Value)>>> {
    let names = s.zrange(&q.schedules(), ZRange::first(usize::MAX))?;
    let mut out = Vec::with_capacity(names.len());
    for (name, _) in names {
        if let Some(sc) = get(s, q, &name)? {
            out.push(sc);
        }
    }
    out.sort_by(|a, b| a.first().map(|x| &x.1).cmp(&b.first().map(|x| &x.1)));
    Ok(out)
}
