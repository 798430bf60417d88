//! Job statuses, priorities and the transition table of docs/jobs.md#statuses-and-moves.

use crate::error::{AiError, Code, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Queued,
    Delayed,
    Running,
    Done,
    Error,
    Canceled,
    /// Created with AFTER: waits for its parents to finish (docs/flows.md).
    Waiting,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Queued,
        Status::Delayed,
        Status::Running,
        Status::Done,
        Status::Error,
        Status::Canceled,
        Status::Waiting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Delayed => "delayed",
            Status::Running => "running",
            Status::Done => "done",
            Status::Error => "error",
            Status::Canceled => "canceled",
            Status::Waiting => "waiting",
        }
    }

    pub fn parse(s: &[u8]) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str().as_bytes().eq_ignore_ascii_case(s))
    }

    /// Waiting, queued, delayed and running jobs are work owed: they never expire.
    pub fn is_live(self) -> bool {
        matches!(self, Status::Queued | Status::Delayed | Status::Running | Status::Waiting)
    }

    pub fn is_finished(self) -> bool {
        !self.is_live()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    High,
    Normal,
    Low,
}

impl Priority {
    /// Claim order: every high before any normal before any low.
    pub const ORDER: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    pub fn parse(s: &[u8]) -> Option<Priority> {
        Priority::ORDER.into_iter().find(|p| p.as_str().as_bytes().eq_ignore_ascii_case(s))
    }
}

/// What moves a job. Each names one row (or a few rows) of the state table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A delayed job's `run_at` came.
    Due,
    /// JOB.CLAIM.
    Claim,
    /// JOB.UPDATE STATUS running: an app's own worker takes a queued job.
    Start,
    /// JOB.UPDATE without STATUS: progress and heartbeat.
    Progress,
    /// JOB.UPDATE STATUS done.
    Done,
    /// JOB.UPDATE STATUS error with attempts left: backoff.
    Backoff,
    /// JOB.UPDATE STATUS error without attempts left, or NORETRY.
    Fail,
    /// The lease expired and attempts remain: back to the queue, the attempt counts.
    LeaseExpired,
    /// The lease expired on the last attempt: the job ends `error` (class `lease_expired`).
    LeaseExhausted,
    /// JOB.RELEASE, without DELAY.
    Release,
    /// JOB.RELEASE with DELAY.
    ReleaseDelayed,
    /// JOB.CANCEL.
    Cancel,
    /// DEADLINE passed before a claim.
    Deadline,
    /// JOB.RETRY.
    Retry,
    /// JOB.RETRY of a job with AFTER while one of its parents is live: it waits again.
    RetryWaiting,
    /// The last parent a waiting job waited on finished: it is released.
    ParentsDone,
    /// ... and it asked for DELAY or AT: released into `delayed`.
    ParentsDoneDelayed,
    /// A parent ended error or canceled, or was deleted, under ONPARENTFAIL fail.
    ParentFailed,
    /// JOB.RETRY of the parent whose failure ended this job: it waits again.
    ParentRetried,
}

impl Trigger {
    /// The step as the user would name it in a BADSTATE message.
    pub fn describe(self) -> &'static str {
        match self {
            Trigger::Due => "come due",
            Trigger::Claim => "be claimed",
            Trigger::Start => "start running",
            Trigger::Progress => "take progress",
            Trigger::Done => "finish done",
            Trigger::Backoff | Trigger::Fail => "finish with an error",
            Trigger::LeaseExpired | Trigger::LeaseExhausted => "expire its lease",
            Trigger::Release | Trigger::ReleaseDelayed => "be released",
            Trigger::Cancel => "be canceled",
            Trigger::Deadline => "pass its deadline",
            Trigger::Retry | Trigger::RetryWaiting => "be retried",
            Trigger::ParentsDone | Trigger::ParentsDoneDelayed => "be released by its parents",
            Trigger::ParentFailed => "fail with its parent",
            Trigger::ParentRetried => "wait again for its retried parent",
        }
    }
}

/// The only legal moves. Anything else is `BADSTATE`.
pub fn transition(from: Status, by: Trigger) -> Result<Status> {
    use Status::*;
    use Trigger as T;
    let to = match (from, by) {
        (Delayed, T::Due) => Queued,
        (Queued, T::Claim) | (Queued, T::Start) => Running,
        (Running, T::Progress) => Running,
        (Running, T::Done) => Done,
        (Running, T::Backoff) => Delayed,
        (Running, T::Fail) | (Running, T::LeaseExhausted) => Error,
        (Running, T::LeaseExpired) | (Running, T::Release) => Queued,
        (Running, T::ReleaseDelayed) => Delayed,
        (Queued | Delayed | Running | Waiting, T::Cancel) => Canceled,
        (Queued | Delayed, T::Deadline) => Error,
        (Error | Canceled, T::Retry) => Queued,
        (Error | Canceled, T::RetryWaiting) => Waiting,
        (Waiting, T::ParentsDone) => Queued,
        (Waiting, T::ParentsDoneDelayed) => Delayed,
        (Waiting, T::ParentFailed) => Error,
        (Error, T::ParentRetried) => Waiting,
        _ => return Err(bad_state(from, by)),
    };
    Ok(to)
}

pub fn bad_state(from: Status, by: Trigger) -> AiError {
    AiError::new(Code::BadState, format!("job is {}, it cannot {}", from.as_str(), by.describe()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRIGGERS: [Trigger; 19] = [
        Trigger::Due,
        Trigger::Claim,
        Trigger::Start,
        Trigger::Progress,
        Trigger::Done,
        Trigger::Backoff,
        Trigger::Fail,
        Trigger::LeaseExpired,
        Trigger::LeaseExhausted,
        Trigger::Release,
        Trigger::ReleaseDelayed,
        Trigger::Cancel,
        Trigger::Deadline,
        Trigger::Retry,
        Trigger::RetryWaiting,
        Trigger::ParentsDone,
        Trigger::ParentsDoneDelayed,
        Trigger::ParentFailed,
        Trigger::ParentRetried,
    ];

    #[test]
    fn the_table_has_exactly_the_spec_rows() {
        let mut legal = vec![];
        for from in Status::ALL {
            for by in TRIGGERS {
                if let Ok(to) = transition(from, by) {
                    legal.push((from, by, to));
                }
            }
        }
        use Status::*;
        use Trigger as T;
        let expected = vec![
            (Queued, T::Claim, Running),
            (Queued, T::Start, Running),
            (Queued, T::Cancel, Canceled),
            (Queued, T::Deadline, Error),
            (Delayed, T::Due, Queued),
            (Delayed, T::Cancel, Canceled),
            (Delayed, T::Deadline, Error),
            (Running, T::Progress, Running),
            (Running, T::Done, Done),
            (Running, T::Backoff, Delayed),
            (Running, T::Fail, Error),
            (Running, T::LeaseExpired, Queued),
            (Running, T::LeaseExhausted, Error),
            (Running, T::Release, Queued),
            (Running, T::ReleaseDelayed, Delayed),
            (Running, T::Cancel, Canceled),
            (Error, T::Retry, Queued),
            (Error, T::RetryWaiting, Waiting),
            (Error, T::ParentRetried, Waiting),
            (Canceled, T::Retry, Queued),
            (Canceled, T::RetryWaiting, Waiting),
            (Waiting, T::Cancel, Canceled),
            (Waiting, T::ParentsDone, Queued),
            (Waiting, T::ParentsDoneDelayed, Delayed),
            (Waiting, T::ParentFailed, Error),
        ];
        assert_eq!(legal, expected);
    }

    #[test]
    fn bad_state_names_status_and_step() {
        let e = transition(Status::Done, Trigger::Claim).unwrap_err();
        assert_eq!(e.code, Code::BadState);
        assert!(e.message.contains("done") && e.message.contains("claimed"), "{}", e.message);
    }

    #[test]
    fn parse_is_case_insensitive_and_strict() {
        assert_eq!(Status::parse(b"DONE"), Some(Status::Done));
        assert_eq!(Status::parse(b"finished"), None);
        assert_eq!(Priority::parse(b"High"), Some(Priority::High));
        assert_eq!(Priority::parse(b"urgent"), None);
    }
}
