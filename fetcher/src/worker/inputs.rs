//! Parents' results the claim left out: a claim's `inputs` carry results up to
//! `aijob.max-payload-bytes` in all, and an entry past that carries `result_bytes` instead
//! (docs/flows.md). The parent's record is kept until its dependents end, so the result is
//! read with JOB.GET, only for the parents whose `.text` or `.result` the request uses.

use tracing::{debug, warn};

use crate::placeholders::{self, Input};
use crate::providers::Plan;
use crate::providers::{ErrorClass, Failure};
use crate::rconn::{self, Record};

use super::commands;
use super::job::Job;
use super::shared::Shared;

/// Reads, for each parent of `job` that `plan` names and whose result the claim left out,
/// its result. A parent whose record has no result stays left out: its placeholder fails,
/// class `input`. A JOB.GET that Redis does not answer is a retryable failure of the
/// attempt (the job comes back by its backoff), not the job's end.
pub async fn read_left_out(sh: &Shared, job: &mut Job, plan: &Plan) -> Result<(), Failure> {
    if !job.inputs.iter().any(left_out) {
        return Ok(());
    }
    for i in placeholders::results_named(plan, &job.inputs) {
        let Some(input) = job.inputs.get_mut(i).filter(|input| left_out(input)) else { continue };
        match sh.redis.query(&commands::get(&job.queue, &input.id)).await {
            Ok(v) => input.result = Record::from_value(&v).and_then(|r| r.bytes("result")),
            Err(e) => {
                let error = rconn::describe(&e);
                warn!(queue = %job.queue, id = %job.id, parent = %input.id, %error, "parent's result not read");
                let m = format!("parent {i} ({})'s result could not be read with JOB.GET: {error}", input.id);
                return Err(Failure::retry(ErrorClass::Input, m));
            }
        }
        debug!(queue = %job.queue, id = %job.id, parent = %input.id, read = input.result.is_some(), "parent's result read with JOB.GET");
    }
    Ok(())
}

/// A parent whose result the claim did not carry, for its length.
fn left_out(input: &Input) -> bool {
    input.result.is_none() && input.result_bytes.is_some()
}
