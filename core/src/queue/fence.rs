//! The lease token's rule: which worker may move a job, shared by every command a worker
//! sends (JOB.UPDATE, JOB.RELEASE, JOB.APPEND).

use crate::error::{AiError, Code, Result};
use crate::job::Status;
use crate::keys::QueueKeys;
use crate::queue::tx::load_job;
use crate::record::JobState;
use crate::store::Store;

/// Loads a job a worker is about to move: NOTFOUND, CANCELED and the token rule.
pub fn load_for_worker<S: Store>(s: &mut S, q: &QueueKeys, id: &[u8], token: Option<&[u8]>) -> Result<JobState> {
    let job = load_job(s, q, id)?.ok_or_else(|| missing(id))?;
    check(job.status, job.token.as_deref(), token)?;
    Ok(job)
}

pub fn missing(id: &[u8]) -> AiError {
    AiError::not_found(format!("no job {} in queue", String::from_utf8_lossy(id)))
}

/// A job in `status` holding the lease token `held` takes a worker's step that gives
/// `given`: CANCELED once canceled; LEASELOST when a leased job is not given its token, or
/// a token is given that the job does not hold.
pub fn check(status: Status, held: Option<&[u8]>, given: Option<&[u8]>) -> Result<()> {
    if status == Status::Canceled {
        return Err(AiError::new(Code::Canceled, "the job was canceled: stop working on it"));
    }
    let leased = status == Status::Running && held.is_some();
    let matches = given.is_some() && given == held;
    if (leased || given.is_some()) && !matches {
        return Err(AiError::new(Code::LeaseLost, "the token does not hold the job's current lease"));
    }
    Ok(())
}
