//! The grammar of every command: one file per family, each parser turning the words after
//! the command name into the typed arguments the logic takes (the spec types live beside
//! the logic that uses them, in `queue/`). Everything is validated here, before the logic
//! reads or writes a key. The shared tools (keywords, integers, sizes) are in `args`.

pub mod cache;
pub mod job;
pub mod limits;
pub mod queue;
pub mod schedule;

use crate::args::{once, positive, priority, Cursor};
use crate::error::{AiError, Result};
use crate::json::Limits;
use crate::queue::create::{JobSpec, Start};

/// Parses one job option at `kw` if it is one; Ok(false) when `kw` is not a job option.
pub fn job_option(spec: &mut JobSpec, kw: &str, c: &mut Cursor, limits: Limits) -> Result<bool> {
    match kw {
        "PAYLOAD" => spec.payload = c.json("PAYLOAD", limits)?.to_vec(),
        "PRIORITY" => spec.priority = priority(c.value("PRIORITY")?)?,
        "MAXATTEMPTS" => {
            let n = c.count("MAXATTEMPTS")?;
            if n < 1 {
                return Err(AiError::arg("MAXATTEMPTS", "must be at least 1"));
            }
            once(&mut spec.max_attempts, "MAXATTEMPTS", n)?
        }
        "RETENTION" => {
            let v = c.count("RETENTION")?;
            once(&mut spec.retention_ms, "RETENTION", v)?
        }
        "DEADLINE" => {
            let v = positive("DEADLINE", c.value("DEADLINE")?)?;
            once(&mut spec.deadline_ms, "DEADLINE", v)?
        }
        "META" => {
            let v = c.json_object("META", limits)?.to_vec();
            once(&mut spec.meta, "META", v)?
        }
        "GROUP" => {
            let v = c.name("GROUP")?.to_vec();
            once(&mut spec.group, "GROUP", v)?
        }
        "COST" => spec.cost = c.count("COST")?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// AFTER and ONPARENTFAIL on a command that makes jobs without them (CACHE.GETORQUEUE,
/// SCHEDULE.SET): a clear refusal saying why, not "unknown option".
pub fn refuse_after(kw: &str, command: &str, why: &str) -> Result<()> {
    if matches!(kw, "AFTER" | "ONPARENTFAIL") {
        return Err(AiError::arg(kw, format!("is not allowed on {command}: {why}")));
    }
    Ok(())
}

/// DELAY or AT of JOB.CREATE; Ok(false) when `kw` is neither.
pub fn start_option(spec: &mut JobSpec, kw: &str, c: &mut Cursor) -> Result<bool> {
    let start = match kw {
        "DELAY" => Start::Delay(c.count("DELAY")?),
        "AT" => Start::At(c.count("AT")?),
        _ => return Ok(false),
    };
    if spec.start != Start::Now {
        return Err(AiError::syntax("DELAY and AT exclude each other and may be given once"));
    }
    spec.start = start;
    Ok(true)
}
