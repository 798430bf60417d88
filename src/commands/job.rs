//! JOB.* commands.

use aijob_core::args;
use aijob_core::queue::charge::ChargeGate;
use aijob_core::queue::{admin, claim, create, read, update};
use aijob_core::record;
use aijob_core::Result;
use redis_module::{raw, Context, RedisResult, RedisString, RedisValue};

use crate::command::Call;
use crate::reply::Out;

/// JOB.CREATE Q PAYLOAD json [ID id] [PRIORITY high|normal|low] [DELAY ms | AT unix_ms]
/// [MAXATTEMPTS n] [RETENTION ms] [DEADLINE ms] [HASH hex] [META json] [GROUP g] [COST n]
pub fn create(c: &mut Call) -> Result<Out> {
    let (q, spec) = args::job_create(&c.args, c.config.json_limits())?;
    let id = c.with(&q, |s, env| create::create(s, &q, env, &spec))?;
    Ok(Out::bytes(id))
}

/// JOB.GET Q id [JSON]
pub fn get(c: &mut Call) -> Result<Out> {
    let (q, id, as_json) = args::job_get(&c.args)?;
    let rec = read::get(&mut c.store, &q, c.now, &id, vec![])?;
    Ok(match (rec, as_json) {
        (None, _) => Out::Null,
        (Some(r), true) => Out::bytes(record::to_json(&r)),
        (Some(r), false) => Out::record(r),
    })
}

/// The entry of JOB.CLAIM: answers Redis's key-position requests (Q and every CHARGE
/// key, for COMMAND GETKEYS, ACL and cluster routing), else runs the command.
pub fn claim_entry(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if is_keys_position_request(ctx) {
        let words: Vec<&[u8]> = args.iter().skip(1).map(|a| a.as_slice()).collect();
        for pos in args::claim_key_positions(&words) {
            if let Some(f) = unsafe { raw::RedisModule_KeyAtPos } {
                unsafe { f(ctx.ctx, (pos + 1) as std::os::raw::c_int) };
            }
        }
        return Ok(RedisValue::NoReply);
    }
    crate::command::run(ctx, args, 2, claim)
}

fn is_keys_position_request(ctx: &Context) -> bool {
    match unsafe { raw::RedisModule_IsKeysPositionRequest } {
        Some(f) => unsafe { f(ctx.ctx) != 0 },
        None => false,
    }
}

/// JOB.CLAIM Q [WORKER name] [LEASE ms] [BLOCK ms] [COUNT n] [CHARGE key REQUESTS|COST LIMIT n PERIOD ms ...]
pub fn claim(c: &mut Call) -> Result<Out> {
    let (q, a) = args::job_claim(&c.args)?;
    let (got, denied_for) = claim_now(c, &q, &a)?;
    if !got.is_empty() {
        return Ok(Out::Array(got));
    }
    match a.block_ms {
        Some(timeout) if crate::blocking::may_block(c.ctx) => {
            crate::blocking::block(c.ctx, &q, timeout)?;
            if let Some(wait) = denied_for {
                crate::blocking::wake_later(c.ctx, &q, c.now, wait);
            }
            Ok(Out::Blocked)
        }
        _ => Ok(Out::Array(vec![])),
    }
}

/// Claims what is ready now: the records replied (each with its token), and when a
/// CHARGE refused the next job, how long until it would admit it.
pub fn claim_now(
    c: &mut Call,
    q: &aijob_core::keys::QueueKeys,
    a: &args::ClaimArgs,
) -> Result<(Vec<Out>, Option<i64>)> {
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

/// JOB.UPDATE Q id [TOKEN t] [STATUS running|done|error] [PROGRESS text] [PERCENT n]
/// [RESULT json] [ERROR text] [CLASS name] [NORETRY] [LEASE ms] [META json] [USAGE n] [DELAY ms]
pub fn update(c: &mut Call) -> Result<Out> {
    let (q, id, a) = args::job_update(&c.args, c.config.json_limits())?;
    let status = c.with(&q, |s, env| update::update(s, &q, env, &id, &a))?;
    Ok(Out::bytes(status.as_str()))
}

/// JOB.RELEASE Q id TOKEN t [DELAY ms]
pub fn release(c: &mut Call) -> Result<Out> {
    let (q, id, token, delay) = args::job_release(&c.args)?;
    let status = c.with(&q, |s, env| update::release(s, &q, env, &id, &token, delay))?;
    Ok(Out::bytes(status.as_str()))
}

/// JOB.CANCEL Q id
pub fn cancel(c: &mut Call) -> Result<Out> {
    let (q, id) = args::job_id_only(&c.args)?;
    Ok(Out::Int(c.with(&q, |s, env| admin::cancel(s, &q, env, &id))?))
}

/// JOB.RETRY Q id
pub fn retry(c: &mut Call) -> Result<Out> {
    let (q, id) = args::job_id_only(&c.args)?;
    Ok(Out::Int(c.with(&q, |s, env| admin::retry(s, &q, env, &id))?))
}

/// JOB.DELETE Q id
pub fn delete(c: &mut Call) -> Result<Out> {
    let (q, id) = args::job_id_only(&c.args)?;
    Ok(Out::Int(c.with(&q, |s, env| admin::delete(s, &q, env, &id))?))
}

/// JOB.LIST Q [STATUS s] [CURSOR c] [COUNT n]
pub fn list(c: &mut Call) -> Result<Out> {
    let (q, a) = args::job_list(&c.args)?;
    let (next, page) = read::list(&mut c.store, &q, c.now, &a)?;
    Ok(Out::Array(vec![Out::bytes(next.to_string()), Out::Array(page.into_iter().map(Out::record).collect())]))
}
