//! Flows (docs/flows.md): a job made with `AFTER id ...` waits for its parents, is
//! released in the step in which its last live parent finishes, and under
//! `ONPARENTFAIL fail` ends `error` (class `dependency`) when a parent fails, is canceled
//! or is deleted, cascading to its own waiting dependents in that same step.
//!
//! The links: the child's record names its parents (`parents`, `on_parent_fail`, and while
//! it waits `waiting_on`, the number of its parents that are live); each parent has the
//! sorted set `dependents:<id>` of the jobs that named it (by sequence, so a cascade walks
//! in one order everywhere) and the field `dependents`, how many of them have not ended:
//! a finished parent is kept (in `expiry` at +inf, its key without TTL) while that count
//! is above 0, and its normal retention runs from the moment it reaches 0.
//!
//! Every move runs inside the step that causes it; a cascade is a worklist, not recursion.

use std::collections::{BTreeSet, VecDeque};

use crate::config::EXPIRY_GRACE_MS;
use crate::error::{AiError, Result};
use crate::job::{transition, Status, Trigger};
use crate::keys::QueueKeys;
use crate::queue::tx::{expire_at, load_job, meta, Tx};
use crate::queue::{pending, stream};
use crate::record::{self, split_ids, JobState, Value};
use crate::store::{Op, Score, Store, ZRange};

/// What a parent's failure does to a job that waits on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnParentFail {
    /// The job ends `error`, class `dependency` (the default).
    Fail,
    /// The failed parent counts as finished; the job sees its error in `inputs`.
    Run,
}

impl OnParentFail {
    pub fn as_str(self) -> &'static str {
        match self {
            OnParentFail::Fail => "fail",
            OnParentFail::Run => "run",
        }
    }

    pub fn parse(v: &[u8]) -> Option<OnParentFail> {
        [OnParentFail::Fail, OnParentFail::Run].into_iter().find(|p| p.as_str().as_bytes().eq_ignore_ascii_case(v))
    }
}

/// JOB.CREATE's AFTER and ONPARENTFAIL: the parents, deduplicated, in AFTER order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub parents: Vec<Vec<u8>>,
    pub on_fail: OnParentFail,
}

/// The error class of a job a parent's failure ended.
pub const DEPENDENCY: &[u8] = b"dependency";

fn n(v: i64) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn lossy(id: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(id)
}

/// A job as this step sees it (the overlay's status and count over the store's record);
/// None when it is gone or was removed in this step.
pub fn current<S: Store>(tx: &mut Tx<S>, id: &[u8]) -> Result<Option<JobState>> {
    if tx.overlay.is_removed(id) {
        return Ok(None);
    }
    let Some(mut job) = load_job(tx.s, tx.q, id)? else { return Ok(None) };
    if let Some(st) = tx.overlay.status(id) {
        job.status = st;
    }
    if let Some(c) = tx.overlay.dependents(id) {
        job.dependents = Some(c);
    }
    Ok(Some(job))
}

fn open_count<S: Store>(tx: &Tx<S>, job: &JobState) -> i64 {
    tx.overlay.dependents(&job.id).or(job.dependents).unwrap_or(0)
}

fn parent_ids(job: &JobState) -> Vec<Vec<u8>> {
    job.parents.as_deref().map(|p| split_ids(p).map(<[u8]>::to_vec).collect()).unwrap_or_default()
}

/// JOB.CREATE's checks of AFTER, before the first write: every parent is a job of this
/// queue, none is the new job itself, and none has `flow-max-dependents` dependents.
pub fn check_parents<S: Store>(s: &mut S, q: &QueueKeys, id: &[u8], after: &After, max_dependents: i64) -> Result<()> {
    for p in &after.parents {
        if p.as_slice() == id {
            return Err(AiError::arg("AFTER", format!("names the job {} itself", lossy(id))));
        }
        if load_job(s, q, p)?.is_none() {
            return Err(AiError::not_found(format!("parent {} is not a job of queue {}", lossy(p), lossy(q.name()))));
        }
        let have = s.zcard(&q.dependents(p))?;
        if have >= max_dependents {
            return Err(AiError::arg(
                "AFTER",
                format!("{} has {have} dependents, the most aijob.flow-max-dependents allows", lossy(p)),
            ));
        }
    }
    Ok(())
}

/// How a new job with AFTER starts, from its parents as they are now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every parent finished in a way that releases it: it starts as any job does.
    Ready,
    /// This many parents are live: it waits.
    Wait(i64),
    /// A parent already ended error or canceled and ONPARENTFAIL is fail: it is made and
    /// ended at once (visible, not refused). (parent id, its status)
    Failed(Vec<u8>, Status),
}

pub fn verdict<S: Store>(tx: &mut Tx<S>, after: &After) -> Result<Verdict> {
    let mut live = 0;
    for p in &after.parents {
        let status = current(tx, p)?.map(|j| j.status);
        match status {
            Some(st) if st.is_live() => live += 1,
            Some(Status::Done) => {}
            Some(st) if after.on_fail == OnParentFail::Fail => return Ok(Verdict::Failed(p.clone(), st)),
            None if after.on_fail == OnParentFail::Fail => return Ok(Verdict::Failed(p.clone(), Status::Canceled)),
            _ => {}
        }
    }
    Ok(if live > 0 { Verdict::Wait(live) } else { Verdict::Ready })
}

/// The new job's links: it joins each parent's `dependents:<id>` and, when it `opens`
/// (it is not ended at once by a failed parent), counts in each parent's `dependents`,
/// which keeps a finished parent.
pub fn link<S: Store>(tx: &mut Tx<S>, job: &JobState, after: &After, opens: bool) -> Result<()> {
    for p in &after.parents {
        tx.push(Op::ZAdd(tx.q.dependents(p), Score::At(job.seq), job.id.clone()));
        // the field is there whenever the index is (0 when the job does not count)
        count_open(tx, p, i64::from(opens))?;
    }
    Ok(())
}

/// Adds `by` to the count of a parent's dependents that have not ended. A finished parent
/// is kept while the count is above 0 and falls under its retention when it reaches 0.
fn count_open<S: Store>(tx: &mut Tx<S>, parent: &[u8], by: i64) -> Result<()> {
    let Some(p) = current(tx, parent)? else { return Ok(()) };
    let before = open_count(tx, &p);
    let now = (before + by).max(0);
    tx.overlay.set_dependents(parent, now);
    tx.hset(parent, vec![(record::DEPENDENTS, n(now))]);
    // a job ending in this step is placed when its cascade is done, from its final count
    if !p.status.is_finished() || tx.overlay.is_ending(parent) {
        return Ok(());
    }
    if before == 0 && now > 0 {
        keep(tx, &p);
    } else if before > 0 && now == 0 {
        let until = expire_at(&p, tx.now, &tx.config).max(p.expire_at.unwrap_or(0));
        tx.push(Op::ZAdd(tx.q.expiry(), Score::At(until), p.id.clone()));
        tx.push(Op::PExpireAt(tx.q.job(&p.id), until.saturating_add(EXPIRY_GRACE_MS)));
        if p.stream.is_some() {
            tx.push(Op::PExpireAt(tx.q.out(&p.id), until.saturating_add(EXPIRY_GRACE_MS)));
        }
        tx.hset(&p.id, vec![(record::EXPIRE_AT, n(until))]);
    }
    Ok(())
}

/// A finished job is kept for its dependents: no expiry, no TTL (nor on its stream).
fn keep<S: Store>(tx: &mut Tx<S>, job: &JobState) {
    tx.push(Op::ZAdd(tx.q.expiry(), Score::Inf, job.id.clone()));
    tx.push(Op::Persist(tx.q.job(&job.id)));
    if job.stream.is_some() {
        tx.push(Op::Persist(tx.q.out(&job.id)));
    }
}

/// How a parent left its dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Ended(Status),
    Deleted,
}

/// One job of a cascade: ended (or removed) in this step, its dependents still to walk.
struct Ending {
    job: JobState,
    cause: Cause,
    /// Where its retention would end; None for a removed job (nothing to place).
    until: Option<i64>,
}

/// `job` ends in `to` (done, error, canceled) in this step, its retention running to
/// `until`: its waiting dependents are released or failed, its parents count one open
/// dependent less, and the cascade runs to its end. Returns the score `job` takes in
/// `expiry`: +inf while dependents of it have not ended.
pub fn ended<S: Store>(tx: &mut Tx<S>, job: &JobState, from: Status, to: Status, until: i64) -> Result<Score> {
    if job.parents.is_none() && open_count(tx, job) == 0 && job.dependents.is_none() {
        return Ok(Score::At(until));
    }
    if from == Status::Waiting {
        tx.hdel(&job.id, &[record::WAITING_ON]);
    }
    tx.overlay.set_status(&job.id, to);
    tx.overlay.set_ending(&job.id);
    cascade(tx, Ending { job: job.clone(), cause: Cause::Ended(to), until: Some(until) })?;
    let score = if open_count(tx, job) > 0 { Score::Inf } else { Score::At(until) };
    if score == Score::Inf && job.stream.is_some() {
        tx.push(Op::Persist(tx.q.out(&job.id)));
    }
    Ok(score)
}

/// `job` is removed in this step (JOB.DELETE, QUEUE.PURGE, the end of its retention):
/// its waiting dependents lose a parent, its parents an open dependent, and its links go.
pub fn removed<S: Store>(tx: &mut Tx<S>, job: &JobState) -> Result<()> {
    // a job outside any flow is never looked up by a cascade: nothing to note
    if job.parents.is_none() && job.dependents.is_none() {
        return Ok(());
    }
    tx.overlay.set_removed(&job.id);
    for p in parent_ids(job) {
        tx.push(Op::ZRem(tx.q.dependents(&p), job.id.clone()));
    }
    let status = tx.overlay.status(&job.id).unwrap_or(job.status);
    let job = JobState { status, ..job.clone() };
    // a finished job has no dependent waiting on it (they were released, ended, or count it
    // as finished already): only a live one's removal moves them
    if status.is_live() {
        cascade(tx, Ending { job: job.clone(), cause: Cause::Deleted, until: None })?;
    }
    if job.dependents.is_some() {
        tx.push(Op::Del(tx.q.dependents(&job.id)));
    }
    Ok(())
}

/// The worklist: each job in it has its waiting dependents walked and its parents told;
/// the jobs it ended are placed in `expiry` at the end, from their final counts.
fn cascade<S: Store>(tx: &mut Tx<S>, first: Ending) -> Result<()> {
    let deferred = std::mem::replace(&mut tx.defer_events, true);
    let r = run_cascade(tx, first);
    tx.defer_events = deferred;
    r
}

fn run_cascade<S: Store>(tx: &mut Tx<S>, first: Ending) -> Result<()> {
    let mut work = VecDeque::from([first]);
    let mut to_place: Vec<(JobState, i64)> = Vec::new();
    let mut is_first = true;
    while let Some(e) = work.pop_front() {
        if open_count(tx, &e.job) > 0 {
            walk_dependents(tx, &e, &mut work)?;
        }
        for p in parent_ids(&e.job) {
            count_open(tx, &p, -1)?;
        }
        if let (false, Some(until)) = (is_first, e.until) {
            to_place.push((e.job, until));
        }
        is_first = false;
    }
    for (job, until) in to_place {
        let score = if open_count(tx, &job) > 0 { Score::Inf } else { Score::At(until) };
        tx.place(&job, Status::Error, score)?;
    }
    Ok(())
}

/// The flow fields of a waiting dependent, read once.
struct Waiter {
    job: JobState,
    waiting_on: i64,
    on_fail: OnParentFail,
    start_delay: Option<i64>,
    deadline_ms: Option<i64>,
}

fn load_waiter<S: Store>(tx: &mut Tx<S>, job: JobState) -> Result<Waiter> {
    let fields = [record::WAITING_ON, record::ON_PARENT_FAIL, record::START_DELAY, record::DEADLINE_MS];
    let v = tx.s.hmget(&tx.q.job(&job.id), &fields)?;
    let num = |i: usize| -> Option<i64> { v.get(i)?.as_ref().and_then(|b| record::int(b)) };
    let on_fail = v.get(1).and_then(|b| b.as_deref()).and_then(OnParentFail::parse).unwrap_or(OnParentFail::Fail);
    let waiting_on = tx.overlay.waiting_on(&job.id).or_else(|| num(0)).unwrap_or(0);
    Ok(Waiter { waiting_on, on_fail, start_delay: num(2), deadline_ms: num(3), job })
}

/// The waiting dependents of `e.job`, in creation order: released, counted down, or ended.
fn walk_dependents<S: Store>(tx: &mut Tx<S>, e: &Ending, work: &mut VecDeque<Ending>) -> Result<()> {
    let ids = tx.s.zrange(&tx.q.dependents(&e.job.id), ZRange::first(usize::MAX))?;
    for (id, _) in ids {
        let Some(child) = current(tx, &id)? else { continue };
        if child.status != Status::Waiting {
            continue;
        }
        let w = load_waiter(tx, child)?;
        let settles = matches!(e.cause, Cause::Ended(Status::Done)) || w.on_fail == OnParentFail::Run;
        if settles {
            settle(tx, w)?;
        } else {
            work.push_back(fail_dependent(tx, w.job, &e.job.id, e.cause)?);
        }
    }
    Ok(())
}

/// One parent of a waiting job finished: at its last, the job is released.
fn settle<S: Store>(tx: &mut Tx<S>, w: Waiter) -> Result<()> {
    let left = (w.waiting_on - 1).max(0);
    tx.overlay.set_waiting_on(&w.job.id, left);
    if left > 0 {
        tx.hset(&w.job.id, vec![(record::WAITING_ON, n(left))]);
        return Ok(());
    }
    release(tx, w)
}

/// A waiting job whose parents all finished: queued, or delayed when it asked for DELAY
/// (counted from now) or an AT still to come. Its DEADLINE counts from now.
fn release<S: Store>(tx: &mut Tx<S>, w: Waiter) -> Result<()> {
    let now = tx.now;
    let run_at = match (w.start_delay, w.job.run_at) {
        (Some(d), _) if d > 0 => Some(now.saturating_add(d)),
        (_, Some(at)) if at > now => Some(at),
        _ => None,
    };
    let trigger = if run_at.is_some() { Trigger::ParentsDoneDelayed } else { Trigger::ParentsDone };
    let to = transition(w.job.status, trigger)?;
    tx.unplace(&w.job, w.job.status, false)?;
    let job = JobState { deadline_at: w.deadline_ms.map(|d| now.saturating_add(d)), run_at, ..w.job };
    let mut fields = vec![(record::STATUS, to.as_str().as_bytes().to_vec()), (record::UPDATED_AT, n(now))];
    fields.extend(run_at.map(|at| (record::RUN_AT, n(at))));
    fields.extend(job.deadline_at.map(|at| (record::DEADLINE_AT, n(at))));
    let mut gone = vec![record::WAITING_ON, record::START_DELAY, record::DEADLINE_MS];
    if run_at.is_none() {
        gone.push(record::RUN_AT);
    }
    tx.hdel(&job.id, &gone);
    tx.hset(&job.id, fields);
    tx.place(&job, to, Score::At(run_at.unwrap_or(now)))?;
    tx.overlay.set_status(&job.id, to);
    tx.event(&job, to.as_str(), to, &[]);
    if to == Status::Queued {
        tx.wake_claimers();
    }
    Ok(())
}

/// A waiting job under ONPARENTFAIL fail whose parent failed: it ends `error`, class
/// `dependency`, `failed_by` naming the parent. Returned for the worklist (its own
/// dependents, its parents' counts, its place in `expiry`).
fn fail_dependent<S: Store>(tx: &mut Tx<S>, job: JobState, parent: &[u8], cause: Cause) -> Result<Ending> {
    let to = transition(job.status, Trigger::ParentFailed)?;
    let msg = match cause {
        Cause::Ended(st) => format!("parent {} ended {}", lossy(parent), st.as_str()),
        Cause::Deleted => format!("parent {} was deleted", lossy(parent)),
    }
    .into_bytes();
    end_failed(tx, job, to, parent, msg)
}

fn end_failed<S: Store>(tx: &mut Tx<S>, job: JobState, to: Status, parent: &[u8], msg: Vec<u8>) -> Result<Ending> {
    let now = tx.now;
    tx.unplace(&job, job.status, false)?;
    let until = expire_at(&job, now, &tx.config);
    tx.hdel(&job.id, &[record::WAITING_ON]);
    tx.hset(
        &job.id,
        vec![
            (record::STATUS, to.as_str().as_bytes().to_vec()),
            (record::ERROR, msg.clone()),
            (record::ERROR_CLASS, DEPENDENCY.to_vec()),
            (record::FAILED_BY, parent.to_vec()),
            (record::FINISHED_AT, n(now)),
            (record::UPDATED_AT, n(now)),
            (record::EXPIRE_AT, n(until)),
        ],
    );
    stream::finished(tx, &job, to, until)?;
    if let Some(h) = &job.hash {
        pending::release_hash(tx, h, &job.id)?;
    }
    tx.incr_meta(meta::FAILED, 1)?;
    tx.tally.failed += 1;
    tx.overlay.set_status(&job.id, to);
    tx.overlay.set_ending(&job.id);
    tx.event(&job, "error", to, &[(record::ERROR, &msg, false), (record::ERROR_CLASS, DEPENDENCY, false)]);
    let job = JobState { status: to, ..job };
    Ok(Ending { job, cause: Cause::Ended(to), until: Some(until) })
}

/// A job made with AFTER whose parent had already failed (ONPARENTFAIL fail): written as
/// waiting and linked (without counting in its parents' `dependents`), it ends at once in
/// this step, so it is visible and a JOB.RETRY of that parent brings it back. It has no
/// dependents yet: there is no cascade.
pub fn fail_at_creation<S: Store>(tx: &mut Tx<S>, job: &JobState, parent: &[u8], status: Status) -> Result<()> {
    let to = transition(job.status, Trigger::ParentFailed)?;
    let msg = format!("parent {} ended {}", lossy(parent), status.as_str()).into_bytes();
    let e = end_failed(tx, job.clone(), to, parent, msg)?;
    let until = e.until.unwrap_or(tx.now);
    tx.place(&e.job, to, Score::At(until))
}

/// The count of `job`'s parents that are live now.
fn live_parents<S: Store>(tx: &mut Tx<S>, job: &JobState) -> Result<(i64, bool)> {
    let (mut live, mut failed) = (0, false);
    for p in parent_ids(job) {
        match current(tx, &p)?.map(|j| j.status) {
            Some(st) if st.is_live() => live += 1,
            Some(Status::Done) => {}
            _ => failed = true,
        }
    }
    Ok((live, failed))
}

/// JOB.RETRY of a job with AFTER: it waits again for those of its parents that are live
/// (a parent that failed does not stop it: the retry asks for it to run); Some(count)
/// when it must wait. Its parents count it as open again.
pub fn retry_target<S: Store>(tx: &mut Tx<S>, job: &JobState) -> Result<Option<i64>> {
    if job.parents.is_none() {
        return Ok(None);
    }
    for p in parent_ids(job) {
        count_open(tx, &p, 1)?;
    }
    let (live, _) = live_parents(tx, job)?;
    Ok((live > 0).then_some(live))
}

/// A parent is live again (JOB.RETRY): the jobs its failure ended wait again (and theirs,
/// down the cascade), each with `waiting_on` recounted; its other waiting dependents wait
/// on it again. A job another failed parent would end at once stays as it is.
pub fn parent_retried<S: Store>(tx: &mut Tx<S>, parent: &JobState, now_status: Status) -> Result<()> {
    if parent.dependents.is_none() {
        return Ok(());
    }
    tx.overlay.set_status(&parent.id, now_status);
    // the jobs live again in this step: a job one of them had ended may come back
    let mut revived: BTreeSet<Vec<u8>> = BTreeSet::from([parent.id.clone()]);
    let mut work = VecDeque::from([parent.id.clone()]);
    while let Some(pid) = work.pop_front() {
        let ids = tx.s.zrange(&tx.q.dependents(&pid), ZRange::first(usize::MAX))?;
        for (id, _) in ids {
            let Some(child) = current(tx, &id)? else { continue };
            match child.status {
                // recounted when it came back in this step: it counts its live parents already
                Status::Waiting if revived.contains(&id) => {}
                Status::Waiting => {
                    let w = load_waiter(tx, child)?;
                    let more = w.waiting_on + 1;
                    tx.overlay.set_waiting_on(&w.job.id, more);
                    tx.hset(&w.job.id, vec![(record::WAITING_ON, n(more))]);
                }
                Status::Error => {
                    let ended_by_revived = failed_by(tx, &id)?.is_some_and(|by| revived.contains(&by));
                    if ended_by_revived && bring_back(tx, child)? {
                        revived.insert(id.clone());
                        work.push_back(id);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn failed_by<S: Store>(tx: &mut Tx<S>, id: &[u8]) -> Result<Option<Vec<u8>>> {
    tx.s.hget(&tx.q.job(id), record::FAILED_BY.as_bytes())
}

/// One job a retried parent's failure had ended: waiting again; false when another of
/// its parents failed (it would end again at once) or none is live.
fn bring_back<S: Store>(tx: &mut Tx<S>, job: JobState) -> Result<bool> {
    let (live, failed) = live_parents(tx, &job)?;
    if failed || live == 0 {
        return Ok(false);
    }
    let to = transition(job.status, Trigger::ParentRetried)?;
    tx.unplace(&job, job.status, false)?;
    tx.hdel(&job.id, &[record::ERROR, record::ERROR_CLASS, record::FAILED_BY, record::FINISHED_AT, record::EXPIRE_AT]);
    tx.hset(
        &job.id,
        vec![
            (record::STATUS, to.as_str().as_bytes().to_vec()),
            (record::WAITING_ON, n(live)),
            (record::UPDATED_AT, n(tx.now)),
        ],
    );
    let job = JobState { status: to, ..job };
    tx.place(&job, to, Score::At(tx.now))?;
    stream::reopened(tx, &job)?;
    if let Some(h) = &job.hash {
        pending::claim_hash(tx, h, &job.id)?;
    }
    tx.overlay.set_status(&job.id, to);
    tx.overlay.set_waiting_on(&job.id, live);
    for p in parent_ids(&job) {
        count_open(tx, &p, 1)?;
    }
    tx.event(&job, "waiting", to, &[]);
    Ok(true)
}

/// A claimed job's `inputs`: per parent, in AFTER order, its id, its status (`deleted`
/// when it is gone) and its `result` (done) or `error` (failed, seen under
/// ONPARENTFAIL run). The results together carry at most `budget` bytes (the claim reply
/// of a job with 100 parents must not grow to 100 results of the largest size): a result
/// that does not fit in what is left is announced by `result_bytes`, and read with JOB.GET.
pub fn inputs<S: Store>(s: &mut S, q: &QueueKeys, parents: &[u8], budget: i64) -> Result<Value> {
    let mut left = budget;
    let mut out = Vec::new();
    for id in split_ids(parents) {
        let key = q.job(id);
        let v = s.hmget(&key, &[record::STATUS, record::ERROR])?;
        let mut it = v.into_iter();
        let (status, error) = (it.next().flatten(), it.next().flatten());
        let mut entry = vec![
            (record::ID, Value::Bytes(id.to_vec())),
            (record::STATUS, Value::Bytes(status.clone().unwrap_or_else(|| b"deleted".to_vec()))),
        ];
        match status.as_deref() {
            Some(b"done") => {
                let result = s.hget_blob(&key, record::RESULT.as_bytes())?;
                let bytes = result.as_ref().map_or(&[][..], |r| r.as_ref());
                let len = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
                if len <= left {
                    left -= len;
                    entry.push((record::RESULT, Value::Bytes(bytes.to_vec())));
                } else {
                    entry.push((RESULT_BYTES, Value::Int(len)));
                }
            }
            Some(b"error" | b"canceled") => entry.extend(error.map(|e| (record::ERROR, Value::Bytes(e)))),
            _ => {}
        }
        out.push(Value::Map(entry));
    }
    Ok(Value::List(out))
}

/// The size of a parent's result left out of `inputs` (see `inputs`).
pub const RESULT_BYTES: &str = "result_bytes";
