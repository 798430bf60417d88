//! Claiming. JOB.CLAIM BLOCK waits on one queue only, so several weighted queues are served
//! in two steps, looping:
//! 1. a non-blocking pass: the free slots are dealt out over the queues by weight (see
//!    `queues.rs`), and each queue dealt some is asked for them at once (`JOB.CLAIM q COUNT
//!    k`, all queues concurrently: on a cluster each goes to its own master). A queue that
//!    hands out fewer than asked is left out for the rest of the pass and what it left is
//!    dealt out again to the others.
//! 2. when the pass found nothing anywhere: `JOB.CLAIM q BLOCK <--claim-block> COUNT 1` on the
//!    next queue by weight, so an idle fetcher costs one command a second and wakes at once
//!    for that queue; a job on another queue waits at most --claim-block ms.
//!
//! A slot is taken before claiming and held until the job task ends: never more than
//! --concurrency jobs are held. The blocking claim runs on a connection of its own, so
//! heartbeats and final updates never queue behind it.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use redis::RedisError;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::queues::{self, Picker};
use crate::rconn::{self, Backoff, Redis};

use super::commands::{self, ClaimAsk};
use super::job::Job;
use super::shared::Shared;
use super::{report, task};

/// Claims while there are free slots, spawning a task per job, until `shutdown`.
pub async fn claim_loop(
    sh: &Arc<Shared>,
    redis: &Redis,
    tasks: &mut JoinSet<()>,
    mut found: watch::Receiver<BTreeSet<String>>,
    shutdown: &CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(sh.cfg.concurrency));
    let mut picker = Picker::new(&sh.cfg.queues);
    picker.set(queues::assign(&sh.cfg.queues, &found.borrow_and_update()));
    note_sole_queue(sh, &picker);
    let mut backoff = Backoff::new(Duration::from_secs(5));
    loop {
        while tasks.try_join_next().is_some() {}
        let Some(permits) = free_slots(&slots, shutdown).await else { return };
        if found.has_changed().unwrap_or(false) {
            picker.set(queues::assign(&sh.cfg.queues, &found.borrow_and_update()));
            note_sole_queue(sh, &picker);
        }
        let (jobs, err) = claim_batch(sh, redis, &mut picker, permits.len(), shutdown).await;
        start_jobs(sh, tasks, jobs, permits, shutdown).await;
        let Some(e) = err else {
            backoff.reset();
            continue;
        };
        let wait = backoff.next_delay();
        warn!(error = %rconn::describe(&e), retry_in_ms = wait.as_millis() as u64, "claim failed");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Tells the job tasks whether the pick has one queue only (then a finished job claims its
/// successor itself, with JOB.UPDATE ... NEXT).
fn note_sole_queue(sh: &Shared, picker: &Picker) {
    let mut queues = picker.queues();
    let sole = match (queues.next(), queues.next()) {
        (Some(q), None) => Some(q.clone()),
        _ => None,
    };
    if let Ok(mut s) = sh.sole_queue.lock() {
        *s = sole;
    }
}

/// Waits for one free slot, then takes every other free one. None on shutdown.
async fn free_slots(slots: &Arc<Semaphore>, shutdown: &CancellationToken) -> Option<Vec<OwnedSemaphorePermit>> {
    let first = tokio::select! {
        biased;
        _ = shutdown.cancelled() => return None,
        p = slots.clone().acquire_owned() => p.ok()?,
    };
    let mut permits = vec![first];
    while let Ok(p) = slots.clone().try_acquire_owned() {
        permits.push(p);
    }
    Some(permits)
}

/// A task per claimed job, each holding one slot; a job claimed while shutting down is
/// given back at once. Slots left over are freed.
async fn start_jobs(
    sh: &Arc<Shared>,
    tasks: &mut JoinSet<()>,
    jobs: Vec<Job>,
    mut permits: Vec<OwnedSemaphorePermit>,
    shutdown: &CancellationToken,
) {
    for job in jobs {
        let Some(permit) = permits.pop() else {
            // Never happens: a claim asks for at most as many jobs as there are slots.
            error!(queue = %job.queue, id = %job.id, "claimed more jobs than free slots; giving it back");
            report::release(sh, &job).await;
            continue;
        };
        if shutdown.is_cancelled() {
            info!(queue = %job.queue, id = %job.id, "claimed while shutting down; giving it back");
            report::release(sh, &job).await;
            continue;
        }
        tasks.spawn(task::run_job(sh.clone(), job, permit));
    }
}

/// The non-blocking weighted pass, then (when it found nothing) one blocking claim. An
/// error after some jobs were claimed still hands those jobs over (they hold leases).
async fn claim_batch(
    sh: &Shared,
    redis: &Redis,
    picker: &mut Picker,
    want: usize,
    shutdown: &CancellationToken,
) -> (Vec<Job>, Option<RedisError>) {
    let (jobs, err) = weighted_pass(sh, redis, picker, want).await;
    if err.is_some() || !jobs.is_empty() {
        return (jobs, err);
    }
    match blocking_claim(sh, redis, picker, shutdown).await {
        Ok(jobs) => (jobs, None),
        Err(e) => (Vec::new(), Some(e)),
    }
}

/// Deals `want` slots out by weight and asks the queues dealt some, all at once, until the
/// slots are filled or every queue came up short.
async fn weighted_pass(sh: &Shared, redis: &Redis, picker: &mut Picker, want: usize) -> (Vec<Job>, Option<RedisError>) {
    let mut out = Vec::new();
    let mut short: HashSet<String> = HashSet::new();
    while out.len() < want {
        let deal = deal(picker, want - out.len(), &short);
        if deal.is_empty() {
            break;
        }
        let asks = deal.iter().map(|(q, n)| claim_one(sh, redis, q, *n, None));
        let results = futures::future::join_all(asks).await;
        let mut first_err = None;
        for ((q, n), r) in deal.into_iter().zip(results) {
            match r {
                Ok(got) if got.len() >= n => out.extend(got),
                Ok(got) => {
                    short.insert(q);
                    out.extend(got);
                }
                Err(e) => {
                    short.insert(q);
                    first_err.get_or_insert(e);
                }
            }
        }
        if first_err.is_some() {
            return (out, first_err);
        }
    }
    (out, None)
}

/// `slots` turns dealt out by weight over the queues not in `short`: each queue with how
/// many jobs to ask it for, in the order first dealt.
pub fn deal(picker: &mut Picker, slots: usize, short: &HashSet<String>) -> Vec<(String, usize)> {
    let mut deal: Vec<(String, usize)> = Vec::new();
    for _ in 0..slots {
        let Some(q) = picker.next(short) else { break };
        match deal.iter_mut().find(|(d, _)| *d == q) {
            Some((_, n)) => *n += 1,
            None => deal.push((q, 1)),
        }
    }
    deal
}

/// One JOB.CLAIM BLOCK on the next queue by weight; with no queue yet (patterns that match
/// nothing so far), waits as long as a blocking claim would.
async fn blocking_claim(
    sh: &Shared,
    redis: &Redis,
    picker: &mut Picker,
    shutdown: &CancellationToken,
) -> Result<Vec<Job>, RedisError> {
    let block_ms = sh.cfg.claim_block_ms;
    if let Some(q) = picker.next(&HashSet::new()) {
        return claim_one(sh, redis, &q, 1, Some(block_ms)).await;
    }
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(block_ms)) => {}
        _ = shutdown.cancelled() => {}
    }
    Ok(Vec::new())
}

/// One JOB.CLAIM; the jobs it handed out.
async fn claim_one(
    sh: &Shared,
    redis: &Redis,
    queue: &str,
    count: usize,
    block_ms: Option<u64>,
) -> Result<Vec<Job>, RedisError> {
    let plan = sh.limits.charge_plan(queue);
    let ask = ClaimAsk { queue, worker: &sh.cfg.worker, lease_ms: sh.lease_ms, count, block_ms };
    let reply = redis.query(&commands::claim(ask, plan.as_ref())).await;
    let v = match reply {
        Err(e) if plan.is_some() && charges_refused(rconn::code(&e), e.detail()) => {
            if sh.limits.refuse_charges(queue) {
                error!(queue, error = %rconn::describe(&e), "Redis refused a charged claim; this queue's jobs are charged per call from now on");
            }
            return Err(e);
        }
        r => r?,
    };
    let records = rconn::records(&v);
    let charged = plan.map(|p| p.provider);
    let jobs: Vec<Job> = records.iter().filter_map(|r| Job::from_record(queue, r, charged)).collect();
    if jobs.len() < records.len() {
        error!(queue, "JOB.CLAIM returned a record without id or token; it will come back when its lease expires");
    }
    if !jobs.is_empty() {
        sh.metrics.claimed(queue, jobs.len());
    }
    Ok(jobs)
}

/// True when Redis refused a charged claim for a reason that will not go away (a module
/// without CHARGE, a key in another slot).
pub fn charges_refused(code: Option<&str>, detail: Option<&str>) -> bool {
    match code {
        Some("CROSSSLOT") => true,
        Some("ERR") => detail.is_some_and(|d| d.to_ascii_uppercase().contains("CHARGE")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picker(spec: &str) -> Picker {
        let entries = queues::parse_entries(spec).unwrap();
        let mut p = Picker::new(&entries);
        p.set(queues::assign(&entries, &BTreeSet::new()));
        p
    }

    fn set(v: &[&str]) -> HashSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn slots_are_dealt_by_weight_and_grouped_per_queue() {
        let mut p = picker("a:3,b:1");
        assert_eq!(deal(&mut p, 8, &set(&[])), vec![("a".to_string(), 6), ("b".to_string(), 2)]);
        assert_eq!(deal(&mut p, 3, &set(&["a"])), vec![("b".to_string(), 3)]);
        assert!(deal(&mut p, 3, &set(&["a", "b"])).is_empty());
        assert!(deal(&mut p, 0, &set(&[])).is_empty());
    }

    #[test]
    fn a_range_shares_its_weight_among_its_queues() {
        let mut p = picker("s-{0..1}:2,low:2");
        let d = deal(&mut p, 4, &set(&[]));
        let n = |q: &str| d.iter().find(|(x, _)| x == q).map_or(0, |(_, n)| *n);
        assert_eq!((n("s-0"), n("s-1"), n("low")), (1, 1, 2), "{d:?}");
    }

    #[test]
    fn charges_refused_for_good_only_by_a_missing_charge_or_a_slot() {
        assert!(charges_refused(Some("CROSSSLOT"), None));
        assert!(charges_refused(Some("ERR"), Some("unknown argument charge")));
        assert!(!charges_refused(Some("ERR"), Some("syntax error")));
        assert!(!charges_refused(Some("LOADING"), None));
        assert!(!charges_refused(None, None));
    }
}
