//! What aijob does while Redis is out of memory: used memory over `maxmemory` with a policy
//! that evicts nothing. Work already in progress can always finish (a worker's report, a
//! release, a cancel, a delete); new work waits (a create, a claim, a cache miss); the
//! timer only makes the moves that free memory. The shell tells whether the server is
//! full (Redis's own test, the one behind the `deny-oom` flag); these rules say what
//! follows from it. docs/operations.md, "Memory pressure", is the operator's view.

use crate::error::{AiError, Code, Result};
use crate::queue::update::{UpdateArgs, UpdateStatus};

/// The most bytes one JOB.UPDATE may carry in RESULT, PROGRESS, META, ERROR and CLASS
/// together while the server is full. A finishing job then grows memory by at most about
/// twice this (its record, and the cache entry of a job with a hash), and only the jobs
/// already running can finish, as no claim is admitted: the overshoot stays bounded.
pub const REPORT_MAX_BYTES: usize = 64 * 1024;

/// The refusal of new work: Redis's own OOM text, then what was refused.
pub fn refused(what: &str) -> AiError {
    AiError::new(Code::Oom, format!("command not allowed when used memory > 'maxmemory': {what}"))
}

/// Whether a JOB.UPDATE may run while the server is full. A heartbeat, and any report
/// within `REPORT_MAX_BYTES`, may; STATUS running (a job started without a claim) is new
/// work and may not. A refused report changes nothing and its lease is kept: the worker
/// sends it again once memory is freed.
pub fn admit_update(a: &UpdateArgs) -> Result<()> {
    if a.status == Some(UpdateStatus::Running) {
        return Err(refused("STATUS running starts new work"));
    }
    let carried: Vec<(&str, usize)> =
        [("RESULT", &a.result), ("PROGRESS", &a.progress), ("META", &a.meta), ("ERROR", &a.error), ("CLASS", &a.class)]
            .into_iter()
            .filter_map(|(name, v)| Some((name, v.as_ref()?.len())))
            .collect();
    let bytes: usize = carried.iter().map(|(_, n)| n).sum();
    if bytes <= REPORT_MAX_BYTES {
        return Ok(());
    }
    let names: Vec<&str> = carried.iter().map(|(name, _)| *name).collect();
    let verb = if names.len() == 1 { "carries" } else { "carry" };
    Err(refused(&format!(
        "{} {verb} {bytes} bytes, over the {REPORT_MAX_BYTES} a report may carry while memory is full; the lease is kept: send it again once memory is freed",
        names.join(" and ")
    )))
}

/// The moves of the timer (`queue::clock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockMove {
    /// A delayed job's time comes: it is queued.
    ComeDue,
    /// A lease runs out: the job is queued again, or ends in error on its last attempt.
    ExpireLease,
    /// A job's deadline passes before a claim: it ends in error.
    PassDeadline,
    /// A finished job's retention ends: it is deleted.
    EndRetention,
    /// A schedule's time comes: it creates a job.
    FireSchedule,
    /// An expired cache entry's index entry goes.
    DropCacheIndex,
    /// A cleared cache generation's entries are deleted.
    FreeCleared,
    /// Cache hits counted in the module's memory are added to the queue's `meta`.
    FlushCacheCounts,
}

impl ClockMove {
    /// Whether the move only deletes.
    pub fn frees_memory(self) -> bool {
        matches!(self, ClockMove::EndRetention | ClockMove::DropCacheIndex | ClockMove::FreeCleared)
    }
}

/// What the timer knows of memory when it ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    /// Used memory is over `maxmemory` now.
    pub full: bool,
    /// The last instant (ms) the timer saw the server full, since this node became master.
    pub full_seen_at: Option<i64>,
}

impl Pressure {
    /// While the server is full the timer only frees memory; every other move waits, so
    /// the timer never grows memory past `maxmemory`.
    pub fn allows(&self, m: ClockMove) -> bool {
        !self.full || m.frees_memory()
    }
}

/// What becomes of a lease that ran out, once the server is not full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEnd {
    /// The usual: the job is queued again, or ends on its last attempt.
    Expire,
    /// The lease starts again, until this instant, and no attempt is counted.
    Renew { until: i64 },
}

/// A lease that ran out while the server was full, or within one lease length of the last
/// time it was seen full, is renewed for one more lease length from now: its worker may
/// have had a report refused for memory and must get a lease's time to send it again.
/// Renewed once per episode (the new end lies past that window); a worker that is gone
/// loses its lease one lease length later than it would have.
pub fn lapsed_lease(now: i64, lease_until: i64, lease_ms: i64, p: &Pressure) -> LeaseEnd {
    match p.full_seen_at {
        Some(seen) if lease_until < seen.saturating_add(lease_ms) => {
            LeaseEnd::Renew { until: now.saturating_add(lease_ms.max(0)) }
        }
        _ => LeaseEnd::Expire,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: Option<UpdateStatus>, result: usize, progress: usize) -> UpdateArgs {
        UpdateArgs {
            token: Some(b"t".to_vec()),
            status,
            result: (result > 0).then(|| vec![b'1'; result]),
            progress: (progress > 0).then(|| vec![b'p'; progress]),
            ..Default::default()
        }
    }

    #[test]
    fn a_heartbeat_and_a_report_within_the_bound_are_admitted() {
        assert_eq!(admit_update(&report(None, 0, 0)), Ok(()));
        assert_eq!(admit_update(&report(None, 0, REPORT_MAX_BYTES)), Ok(()));
        assert_eq!(admit_update(&report(Some(UpdateStatus::Done), REPORT_MAX_BYTES - 10, 10)), Ok(()));
        assert_eq!(admit_update(&report(Some(UpdateStatus::Error), 0, 0)), Ok(()));
    }

    #[test]
    fn a_report_over_the_bound_is_refused_naming_what_it_carries() {
        let e = admit_update(&report(Some(UpdateStatus::Done), REPORT_MAX_BYTES, 1)).unwrap_err();
        assert_eq!(e.code, Code::Oom);
        let text = e.to_string();
        assert!(text.starts_with("OOM command not allowed when used memory > 'maxmemory'"), "{text}");
        assert!(text.contains("RESULT and PROGRESS carry 65537 bytes"), "{text}");
        let e = admit_update(&report(None, 0, REPORT_MAX_BYTES + 1)).unwrap_err();
        assert!(e.to_string().contains("PROGRESS carries 65537 bytes"), "{e}");
    }

    #[test]
    fn starting_a_job_without_a_claim_is_new_work() {
        let e = admit_update(&report(Some(UpdateStatus::Running), 0, 0)).unwrap_err();
        assert_eq!(e.code, Code::Oom);
        assert!(e.to_string().contains("STATUS running"), "{e}");
    }

    #[test]
    fn a_full_server_only_frees() {
        use ClockMove::*;
        let full = Pressure { full: true, full_seen_at: Some(5) };
        let all = [
            ComeDue,
            ExpireLease,
            PassDeadline,
            EndRetention,
            FireSchedule,
            DropCacheIndex,
            FreeCleared,
            FlushCacheCounts,
        ];
        let allowed: Vec<ClockMove> = all.into_iter().filter(|m| full.allows(*m)).collect();
        assert_eq!(allowed, vec![EndRetention, DropCacheIndex, FreeCleared]);
        let calm = Pressure { full: false, full_seen_at: Some(5) };
        assert!(all.into_iter().all(|m| calm.allows(m)));
    }

    #[test]
    fn a_lease_that_ran_out_near_a_full_moment_is_renewed_once() {
        let never = Pressure::default();
        assert_eq!(lapsed_lease(10_000, 9_000, 1_000, &never), LeaseEnd::Expire);
        let seen = Pressure { full: false, full_seen_at: Some(8_000) };
        // ran out while full, or within one lease length after: renewed from now
        assert_eq!(lapsed_lease(10_000, 7_500, 1_000, &seen), LeaseEnd::Renew { until: 11_000 });
        assert_eq!(lapsed_lease(10_000, 8_999, 1_000, &seen), LeaseEnd::Renew { until: 11_000 });
        // ran out later than that: the worker had a whole lease to report
        assert_eq!(lapsed_lease(10_000, 9_000, 1_000, &seen), LeaseEnd::Expire);
        // the renewed lease lies past the window: when it runs out, it expires
        assert_eq!(lapsed_lease(11_000, 11_000, 1_000, &seen), LeaseEnd::Expire);
    }
}
