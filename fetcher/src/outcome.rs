//! How a job attempt ended, as the log line and the `outcome`/`class` metric labels show it.

use crate::providers::ErrorClass;

/// The end of one attempt held by this fetcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The result is stored.
    Done,
    /// The error is stored and the module retries the job.
    Retry(ErrorClass),
    /// The error is stored and ends the job.
    Failed(ErrorClass),
    /// Given back on shutdown (the attempt does not count).
    Released,
    /// Given back with a delay, no call made (the attempt does not count): every provider
    /// of its plan is cooled down (class `cooldown`).
    Deferred(ErrorClass),
    /// Nothing was written: the job was no longer ours, or Redis stayed away.
    Lost(LostReason),
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Retry(_) => "retry",
            Outcome::Failed(_) => "failed",
            Outcome::Released => "released",
            Outcome::Deferred(_) => "deferred",
            Outcome::Lost(_) => "lost",
        }
    }

    /// The error class or why the job was lost; empty for done and released.
    pub fn class(&self) -> &str {
        match self {
            Outcome::Done | Outcome::Released => "",
            Outcome::Retry(c) | Outcome::Failed(c) | Outcome::Deferred(c) => c.as_str(),
            Outcome::Lost(why) => why.as_str(),
        }
    }
}

/// Why an attempt was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostReason {
    /// Redis refused a command on the job (heartbeat, final update).
    Refused(Refusal),
    /// The release on shutdown did not land.
    ReleaseFailed,
    /// Redis stayed unreachable through the shutdown's last deadline.
    Unreachable,
}

impl LostReason {
    pub fn as_str(&self) -> &str {
        match self {
            LostReason::Refused(r) => r.as_str(),
            LostReason::ReleaseFailed => "release",
            LostReason::Unreachable => "unreachable",
        }
    }
}

/// An error reply to a command on a held job, by its code word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    LeaseLost,
    Canceled,
    NotFound,
    BadState,
    TooBig,
    /// Any other code, lowercased (`err`, `noperm`...).
    Other(String),
}

impl Refusal {
    pub fn from_code(code: &str) -> Refusal {
        match code {
            "LEASELOST" => Refusal::LeaseLost,
            "CANCELED" => Refusal::Canceled,
            "NOTFOUND" => Refusal::NotFound,
            "BADSTATE" => Refusal::BadState,
            "TOOBIG" => Refusal::TooBig,
            other => Refusal::Other(other.to_ascii_lowercase()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Refusal::LeaseLost => "leaselost",
            Refusal::Canceled => "canceled",
            Refusal::NotFound => "notfound",
            Refusal::BadState => "badstate",
            Refusal::TooBig => "toobig",
            Refusal::Other(code) => code,
        }
    }

    /// The job is no longer this worker's to finish: its call is dropped.
    pub fn ends_the_hold(&self) -> bool {
        matches!(self, Refusal::LeaseLost | Refusal::Canceled | Refusal::NotFound | Refusal::BadState)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_of_each_outcome() {
        let cases = [
            (Outcome::Done, "done", ""),
            (Outcome::Released, "released", ""),
            (Outcome::Deferred(ErrorClass::Cooldown), "deferred", "cooldown"),
            (Outcome::Retry(ErrorClass::Timeout), "retry", "timeout"),
            (Outcome::Failed(ErrorClass::Payload), "failed", "payload"),
            (Outcome::Lost(LostReason::Refused(Refusal::Canceled)), "lost", "canceled"),
            (Outcome::Lost(LostReason::ReleaseFailed), "lost", "release"),
            (Outcome::Lost(LostReason::Unreachable), "lost", "unreachable"),
            (Outcome::Lost(LostReason::Refused(Refusal::from_code("NOPERM"))), "lost", "noperm"),
        ];
        for (o, outcome, class) in cases {
            assert_eq!((o.as_str(), o.class()), (outcome, class), "{o:?}");
        }
    }

    #[test]
    fn refusals_that_end_the_hold() {
        for code in ["LEASELOST", "CANCELED", "NOTFOUND", "BADSTATE"] {
            assert!(Refusal::from_code(code).ends_the_hold(), "{code}");
        }
        assert!(!Refusal::from_code("TOOBIG").ends_the_hold());
        assert!(!Refusal::from_code("ERR").ends_the_hold());
        assert_eq!(Refusal::from_code("LEASELOST").as_str(), "leaselost");
    }
}
