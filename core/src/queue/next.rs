//! JOB.UPDATE ... NEXT (docs/jobs.md#one-round-trip-per-job): a worker finishes its job and
//! claims its next one in one command. The finish is JOB.UPDATE's, fenced by the old token;
//! the claim is JOB.CLAIM's, with every one of its rules (pause, priorities, groups, caps,
//! CHARGE). The finish and the first claim share one step, so the queue's counters and the
//! group's running count are written once, and not at all when they end where they began.

use crate::error::Result;
use crate::job::Status;
use crate::keys::QueueKeys;
use crate::queue::claim::{self, ClaimArgs, ClaimResult, Gate};
use crate::queue::tx::{Env, Tx};
use crate::queue::update::{self, UpdateArgs};
use crate::store::Store;

/// Finishes job `id` as `finish` says, then claims as `next` says. A refused finish (a lost
/// lease, a canceled job, a bad move) changes nothing and claims nothing. Returns the
/// finished job's new status and what the claim gave.
pub fn finish_and_claim<S: Store, G: Gate<S>>(
    s: &mut S,
    q: &QueueKeys,
    env: &mut Env,
    id: &[u8],
    finish: &UpdateArgs,
    next: &ClaimArgs,
    gate: &mut G,
) -> Result<(Status, ClaimResult)> {
    let mut out = ClaimResult::default();
    let mut tx = Tx::new(s, q, env.now, env.config);
    let status = update::update_in(&mut tx, env, id, finish)?;
    let mut more = !claim::is_paused(tx.s, q)?;
    // The claim's search reads the turns, the queued jobs and the CHARGE limiters from the
    // store: it may share the step unless the finish changed them (a group unparked below
    // its cap, a USAGE settled).
    if more && !tx.claim_inputs_changed() {
        more = claim::claim_into(&mut tx, env, next, gate, &mut out)?;
    }
    out.tally.add(&tx.commit()?);
    if more {
        claim::claim_more(s, q, env, next, gate, &mut out)?;
    }
    Ok((status, out))
}
