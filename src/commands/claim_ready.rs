//! The claim of what is ready now: shared by JOB.CLAIM and a blocked claim's wake-up
//! (`blocking.rs`), which is why it lives apart from both.

use aijob_core::keys::QueueKeys;
use aijob_core::queue::charge::ChargeGate;
use aijob_core::queue::claim::{self, ClaimArgs};
use aijob_core::{oom, Result};

use crate::command::Call;
use crate::reply::Out;

/// Claims what is ready now: the records replied (each with its token), and when a
/// CHARGE refused the next job, how long until it would admit it.
///
/// While used memory is over `maxmemory` no claim is admitted, so no lease starts that
/// would add a result to a full server (JOB.CLAIM is `deny-oom`; a blocked claim's
/// wake-up is not checked by Redis).
pub fn claim_now(c: &mut Call, q: &QueueKeys, a: &ClaimArgs) -> Result<(Vec<Out>, Option<i64>)> {
    crate::command::when_memory_full(c.ctx, || Err(oom::refused("a claim would start new work")))?;
    let result = c.with(q, |s, env| {
        let r = if a.charges.is_empty() {
            claim::claim(s, q, env, a, &mut claim::Open)?
        } else {
            claim::claim(s, q, env, a, &mut ChargeGate { charges: &a.charges })?
        };
        let tally = r.tally;
        Ok((r, tally))
    })?;
    let out = result.jobs.into_iter().map(|job| Out::record(job.record)).collect();
    Ok((out, result.denied_for_ms))
}
