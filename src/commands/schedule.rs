//! SCHEDULE.* commands.

use aijob_core::args;
use aijob_core::queue::schedule;
use aijob_core::queue::tx::Tally;
use aijob_core::Result;

use crate::command::Call;
use crate::reply::Out;

/// SCHEDULE.SET Q name (EVERY ms | CRON expr) PAYLOAD json [PRIORITY p] [MAXATTEMPTS n]
/// [RETENTION ms] [DEADLINE ms] [META json] [OVERLAP skip|allow] [START unix_ms] [GROUP g] [COST n]
pub fn set(c: &mut Call) -> Result<Out> {
    let (q, spec) = args::schedule_set(&c.args, c.config.json_limits())?;
    Ok(Out::Int(c.with(&q, |s, env| schedule::set(s, &q, env, &spec))?))
}

/// SCHEDULE.GET Q name
pub fn get(c: &mut Call) -> Result<Out> {
    let (q, name) = args::schedule_name(&c.args)?;
    Ok(schedule::get(&mut c.store, &q, &name)?.map_or(Out::Null, Out::fields))
}

/// SCHEDULE.LIST Q
pub fn list(c: &mut Call) -> Result<Out> {
    let q = args::queue_only(&c.args)?;
    Ok(Out::Array(schedule::list(&mut c.store, &q)?.into_iter().map(Out::fields).collect()))
}

/// SCHEDULE.DEL Q name
pub fn del(c: &mut Call) -> Result<Out> {
    let (q, name) = args::schedule_name(&c.args)?;
    Ok(Out::Int(c.with(&q, |s, _| Ok((schedule::del(s, &q, &name)?, Tally::default())))?))
}

/// SCHEDULE.RUN Q name
pub fn run(c: &mut Call) -> Result<Out> {
    let (q, name) = args::schedule_name(&c.args)?;
    let id = c.with(&q, |s, env| schedule::run_now(s, &q, env, &name))?;
    Ok(id.map_or(Out::Null, Out::Bytes))
}

/// SCHEDULE.PAUSE Q name
pub fn pause(c: &mut Call) -> Result<Out> {
    let (q, name) = args::schedule_name(&c.args)?;
    Ok(Out::Int(c.with(&q, |s, env| Ok((schedule::set_paused(s, &q, env, &name, true)?, Tally::default())))?))
}

/// SCHEDULE.RESUME Q name
pub fn resume(c: &mut Call) -> Result<Out> {
    let (q, name) = args::schedule_name(&c.args)?;
    Ok(Out::Int(c.with(&q, |s, env| Ok((schedule::set_paused(s, &q, env, &name, false)?, Tally::default())))?))
}
