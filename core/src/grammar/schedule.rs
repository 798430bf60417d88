//! The grammar of the SCHEDULE.* commands.

use crate::args::{once, positive, queue, unknown, Cursor};
use crate::error::{AiError, Result};
use crate::grammar::{job_option, refuse_after};
use crate::json::Limits;
use crate::keys::QueueKeys;
use crate::names;
use crate::queue::create::JobSpec;
use crate::queue::schedule::{ScheduleSpec, Timetable};

/// SCHEDULE.SET Q name (EVERY ms | CRON expr) PAYLOAD json [PRIORITY p] [MAXATTEMPTS n]
/// [RETENTION ms] [DEADLINE ms] [META json] [OVERLAP skip|allow] [START unix_ms] [GROUP g] [COST n]
pub fn set(args: &[&[u8]], limits: Limits) -> Result<(QueueKeys, ScheduleSpec)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let name = c.next().ok_or_else(|| AiError::arg("name", "is missing"))?;
    names::validate("name", name)?;
    let mut job = JobSpec::new(Vec::new());
    let (mut has_payload, mut timing) = (false, Timing::default());
    while let Some(kw) = c.keyword() {
        has_payload |= kw == "PAYLOAD";
        if !job_option(&mut job, &kw, &mut c, limits)? && !timing_option(&mut timing, &kw, &mut c)? {
            let why = "a schedule makes a new job on each run, and fixed parent ids would name \
                       the same parents every time; create the flow from the scheduled job's worker";
            refuse_after(&kw, "SCHEDULE.SET", why)?;
            return Err(unknown(&kw));
        }
    }
    if !has_payload {
        return Err(AiError::arg("PAYLOAD", "is required"));
    }
    let timetable = timing.timetable.ok_or_else(|| AiError::syntax("EVERY ms or CRON expr is required"))?;
    let overlap_allow = timing.overlap_allow.unwrap_or(false);
    let spec = ScheduleSpec { name: name.to_vec(), timetable, start: timing.start, overlap_allow, job };
    Ok((q, spec))
}

/// When a schedule runs: EVERY or CRON, START, OVERLAP.
#[derive(Default)]
struct Timing {
    timetable: Option<Timetable>,
    start: Option<i64>,
    overlap_allow: Option<bool>,
}

/// Parses one timing option at `kw`; Ok(false) when `kw` is not one.
fn timing_option(t: &mut Timing, kw: &str, c: &mut Cursor) -> Result<bool> {
    match kw {
        "EVERY" => {
            let e = positive("EVERY", c.value("EVERY")?)?;
            once(&mut t.timetable, "EVERY/CRON", Timetable::Every(e))?
        }
        "CRON" => {
            let text = String::from_utf8_lossy(c.value("CRON")?).into_owned();
            crate::cron::parse(&text)?;
            once(&mut t.timetable, "EVERY/CRON", Timetable::Cron(text))?
        }
        "START" => {
            let v = c.count("START")?;
            once(&mut t.start, "START", v)?
        }
        "OVERLAP" => {
            let allow = match c.keyword().as_deref() {
                Some("SKIP") => false,
                Some("ALLOW") => true,
                _ => return Err(AiError::arg("OVERLAP", "must be skip or allow")),
            };
            once(&mut t.overlap_allow, "OVERLAP", allow)?
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// SCHEDULE.GET / DEL / RUN / PAUSE / RESUME Q name
pub fn name(args: &[&[u8]]) -> Result<(QueueKeys, Vec<u8>)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let name = c.next().ok_or_else(|| AiError::arg("name", "is missing"))?;
    names::validate("name", name)?;
    if let Some(kw) = c.keyword() {
        return Err(unknown(&kw));
    }
    Ok((q, name.to_vec()))
}
