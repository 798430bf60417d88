//! The grammar of the JOB.* commands.

use crate::args::{check_size, job_id, limit_period, once, positive, queue, status, unknown, Cursor, Kw};
use crate::error::{AiError, Result};
use crate::grammar::{job_option, start_option};
use crate::hash;
use crate::job::Status;
use crate::json::Limits;
use crate::keys::QueueKeys;
use crate::queue::claim::{Charge, ClaimArgs};
use crate::queue::create::JobSpec;
use crate::queue::flow::{After, OnParentFail};
use crate::queue::read::ListArgs;
use crate::queue::stream::{AppendArgs, ReadArgs, READ_COUNT_MAX};
use crate::queue::update::{ReleaseArgs, UpdateArgs, UpdateStatus};
use crate::ratelimit;
use crate::store::StreamId;

/// JOB.CREATE Q PAYLOAD json [ID id] [PRIORITY p] [DELAY ms | AT unix_ms] [MAXATTEMPTS n]
/// [RETENTION ms] [DEADLINE ms] [HASH hex] [META json] [GROUP g] [COST n]
/// [AFTER id [id ...]] [ONPARENTFAIL fail|run]
///
/// AFTER names at most `max_parents` (the config `flow-max-parents`) distinct ids.
pub fn create(args: &[&[u8]], limits: Limits, max_parents: i64) -> Result<(QueueKeys, JobSpec)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let mut spec = JobSpec::new(Vec::new());
    let mut has_payload = false;
    let (mut parents, mut on_fail) = (None, None);
    while let Some(kw) = c.keyword() {
        if kw == "PAYLOAD" {
            has_payload = true;
        }
        if job_option(&mut spec, &kw, &mut c, limits)? || start_option(&mut spec, &kw, &mut c)? {
            continue;
        }
        match kw.as_str() {
            "ID" => {
                let id = c.name("ID")?.to_vec();
                once(&mut spec.id, "ID", id)?
            }
            "HASH" => {
                let h = hash::parse_hex("HASH", c.value("HASH")?)?;
                once(&mut spec.hash, "HASH", h)?
            }
            "AFTER" => {
                let ids = after_ids(&mut c, max_parents)?;
                once(&mut parents, "AFTER", ids)?
            }
            "ONPARENTFAIL" => {
                let v = c.value("ONPARENTFAIL")?;
                let p = OnParentFail::parse(v).ok_or_else(|| AiError::arg("ONPARENTFAIL", "must be fail or run"))?;
                once(&mut on_fail, "ONPARENTFAIL", p)?
            }
            _ => return Err(unknown(&kw)),
        }
    }
    if !has_payload {
        return Err(AiError::arg("PAYLOAD", "is required"));
    }
    spec.after = match (parents, on_fail) {
        (None, Some(_)) => return Err(AiError::arg("ONPARENTFAIL", "needs AFTER")),
        (None, None) => None,
        (Some(parents), p) => Some(After { parents, on_fail: p.unwrap_or(OnParentFail::Fail) }),
    };
    if let (Some(id), Some(after)) = (&spec.id, &spec.after) {
        if after.parents.contains(id) {
            return Err(AiError::arg("AFTER", format!("names the job {} itself", String::from_utf8_lossy(id))));
        }
    }
    Ok((q, spec))
}

/// The words of JOB.CREATE that end AFTER's list of ids.
const CREATE_KEYWORDS: [&str; 14] = [
    "PAYLOAD",
    "ID",
    "PRIORITY",
    "DELAY",
    "AT",
    "MAXATTEMPTS",
    "RETENTION",
    "DEADLINE",
    "HASH",
    "META",
    "GROUP",
    "COST",
    "AFTER",
    "ONPARENTFAIL",
];

/// AFTER's ids: the words up to the next JOB.CREATE keyword (in any case) or the end,
/// each a valid id, duplicates dropped (one parent), at most `max_parents` of them.
fn after_ids(c: &mut Cursor, max_parents: i64) -> Result<Vec<Vec<u8>>> {
    let mut ids: Vec<Vec<u8>> = Vec::new();
    while let Some(word) = c.peek() {
        if CREATE_KEYWORDS.contains(&Kw::new(word).as_str()) {
            break;
        }
        c.next();
        crate::names::validate("AFTER", word)?;
        if !ids.iter().any(|id| id.as_slice() == word) {
            ids.push(word.to_vec());
        }
    }
    if ids.is_empty() {
        return Err(AiError::arg("AFTER", "needs at least one id"));
    }
    if ids.len() as i64 > max_parents {
        return Err(AiError::arg(
            "AFTER",
            format!("names {} parents, the most aijob.flow-max-parents allows is {max_parents}", ids.len()),
        ));
    }
    Ok(ids)
}

/// JOB.GET Q id [JSON]
pub fn get(args: &[&[u8]]) -> Result<(QueueKeys, Vec<u8>, bool)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let id = job_id(&mut c)?.to_vec();
    let mut as_json = false;
    while let Some(kw) = c.keyword() {
        match kw.as_str() {
            "JSON" => as_json = true,
            _ => return Err(unknown(&kw)),
        }
    }
    Ok((q, id, as_json))
}

/// JOB.CANCEL / JOB.RETRY / JOB.DELETE Q id
pub fn id_only(args: &[&[u8]]) -> Result<(QueueKeys, Vec<u8>)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let id = job_id(&mut c)?.to_vec();
    if let Some(kw) = c.keyword() {
        return Err(unknown(&kw));
    }
    Ok((q, id))
}

/// JOB.CLAIM Q [WORKER name] [LEASE ms] [BLOCK ms] [COUNT n] [CHARGE key REQUESTS|COST LIMIT n PERIOD ms ...]
pub fn claim(args: &[&[u8]]) -> Result<(QueueKeys, ClaimArgs)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    Ok((q, claim_options(&mut c)?))
}

/// JOB.CLAIM's options, to the end of the words (also after JOB.UPDATE's NEXT).
fn claim_options(c: &mut Cursor) -> Result<ClaimArgs> {
    let mut a = ClaimArgs { count: 1, ..Default::default() };
    while let Some(kw) = c.keyword() {
        match kw.as_str() {
            "WORKER" => {
                let w = c.value("WORKER")?;
                if w.is_empty() || w.len() > 256 {
                    return Err(AiError::arg("WORKER", "must be 1 to 256 bytes"));
                }
                once(&mut a.worker, "WORKER", w.to_vec())?
            }
            "LEASE" => {
                let v = positive("LEASE", c.value("LEASE")?)?;
                once(&mut a.lease_ms, "LEASE", v)?
            }
            "BLOCK" => {
                let v = c.count("BLOCK")?;
                once(&mut a.block_ms, "BLOCK", v)?
            }
            "COUNT" => {
                a.count = positive("COUNT", c.value("COUNT")?)?;
                if a.count > 1000 {
                    return Err(AiError::arg("COUNT", "must be at most 1000"));
                }
            }
            "CHARGE" => a.charges.push(charge(c)?),
            _ => return Err(unknown(&kw)),
        }
    }
    Ok(a)
}

/// Where JOB.CLAIM's keys are, counted in the arguments after the command name: Q and
/// every CHARGE key (for COMMAND GETKEYS, ACL key checks and cluster routing).
pub fn claim_key_positions(args: &[&[u8]]) -> Vec<usize> {
    let mut positions = vec![0];
    let mut i = 1;
    while let Some(word) = args.get(i) {
        let kw = Kw::new(word);
        i += match kw.as_str() {
            "WORKER" | "LEASE" | "BLOCK" | "COUNT" => 2,
            "CHARGE" => {
                if i + 1 < args.len() {
                    positions.push(i + 1);
                }
                3
            }
            "LIMIT" => 4,
            _ => 1,
        };
    }
    positions
}

fn charge(c: &mut Cursor) -> Result<Charge> {
    let key = c.value("CHARGE")?.to_vec();
    let by_cost = match c.keyword().as_deref() {
        Some("REQUESTS") => false,
        Some("COST") => true,
        _ => return Err(AiError::arg("CHARGE", "needs REQUESTS or COST after the key")),
    };
    let mut windows = Vec::new();
    while c.peek().is_some_and(|k| k.eq_ignore_ascii_case(b"LIMIT")) {
        c.next();
        windows.push(limit_period(c)?);
    }
    if windows.is_empty() {
        return Err(AiError::arg("CHARGE", "needs at least one LIMIT n PERIOD ms"));
    }
    ratelimit::check_args(&windows, 0)?;
    Ok(Charge { key, by_cost, windows })
}

/// JOB.UPDATE Q id [TOKEN t] [STATUS running|done|error] [PROGRESS text] [PERCENT n]
/// [RESULT json] [ERROR text] [CLASS name] [NORETRY] [LEASE ms] [META json]
/// [USAGE n [CHARGE key] ...] [DELAY ms]
/// [NEXT [WORKER name] [LEASE ms] [BLOCK ms] [COUNT n] [CHARGE ...]]
///
/// USAGE is at most `max_usage` (the config `max-usage`). Everything after NEXT is the
/// claim that follows the finish (JOB.CLAIM's options).
pub fn update(
    args: &[&[u8]],
    limits: Limits,
    max_usage: i64,
) -> Result<(QueueKeys, Vec<u8>, UpdateArgs, Option<ClaimArgs>)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let id = job_id(&mut c)?.to_vec();
    let mut a = UpdateArgs::default();
    let mut charges_named = 0;
    let mut next = None;
    while let Some(kw) = c.keyword() {
        if kw == "NEXT" {
            next = Some(claim_options(&mut c)?);
            break;
        }
        if kw == "CHARGE" {
            c.value("CHARGE")?;
            charges_named += 1;
            continue;
        }
        let known = lease_option(&mut a, &kw, &mut c)?
            || report_option(&mut a, &kw, &mut c, limits)?
            || outcome_option(&mut a, &kw, &mut c, limits)?;
        if !known {
            return Err(unknown(&kw));
        }
    }
    a.charge_keys = declared_charge_keys(args, charges_named)?;
    check_update(&a, max_usage)?;
    if next.is_some() && !matches!(a.status, Some(UpdateStatus::Done | UpdateStatus::Error)) {
        return Err(AiError::arg("NEXT", "is only allowed with STATUS done or error"));
    }
    Ok((q, id, a, next))
}

/// The claim of JOB.UPDATE ... NEXT, with its queue: what a blocked JOB.UPDATE ... NEXT runs
/// again when it is woken. None without NEXT.
pub fn next_claim(args: &[&[u8]]) -> Result<Option<(QueueKeys, ClaimArgs)>> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let Some(rest) = usage_key_positions(args).1.and_then(|at| args.get(at + 1..)) else { return Ok(None) };
    Ok(Some((q, claim_options(&mut Cursor::new(rest))?)))
}

/// The CHARGE keys of JOB.UPDATE, taken from the very positions `update_key_positions`
/// declares: whatever the parse read, settling can write only a declared key.
fn declared_charge_keys(args: &[&[u8]], named: usize) -> Result<Vec<Vec<u8>>> {
    let keys: Vec<Vec<u8>> =
        usage_key_positions(args).0.into_iter().skip(1).filter_map(|p| args.get(p)).map(|k| k.to_vec()).collect();
    if keys.len() != named {
        return Err(AiError::arg("CHARGE", "could not be told apart from the other arguments"));
    }
    Ok(keys)
}

/// Where JOB.UPDATE's keys are, counted in the arguments after the command name: Q, the key
/// after every CHARGE of USAGE (the rate-limit keys it settles), and after NEXT every CHARGE
/// key of the claim.
pub fn update_key_positions(args: &[&[u8]]) -> Vec<usize> {
    let (mut positions, next) = usage_key_positions(args);
    // the claim's words as JOB.CLAIM's, with NEXT standing where Q stands
    if let Some(rest) = next.and_then(|at| Some((at, args.get(at..)?))) {
        positions.extend(claim_key_positions(rest.1).into_iter().skip(1).map(|p| p + rest.0));
    }
    positions
}

/// Q and the key after every CHARGE up to NEXT, and where NEXT is. Walks the words as
/// `update` parses them: every option but NORETRY takes one value.
fn usage_key_positions(args: &[&[u8]]) -> (Vec<usize>, Option<usize>) {
    let mut positions = vec![0];
    // Q and the id come first
    let mut i = 2;
    while let Some(word) = args.get(i) {
        let kw = Kw::new(word);
        i += match kw.as_str() {
            "NEXT" => return (positions, Some(i)),
            "NORETRY" => 1,
            "CHARGE" => {
                if i + 1 < args.len() {
                    positions.push(i + 1);
                }
                2
            }
            "TOKEN" | "STATUS" | "PROGRESS" | "PERCENT" | "RESULT" | "ERROR" | "CLASS" | "LEASE" | "META" | "USAGE"
            | "DELAY" => 2,
            // the parse refuses an unknown word: nothing is written
            _ => 1,
        };
    }
    (positions, None)
}

/// TOKEN, STATUS and LEASE: who moves the job, to where, for how long.
fn lease_option(a: &mut UpdateArgs, kw: &str, c: &mut Cursor) -> Result<bool> {
    match kw {
        "TOKEN" => {
            let t = c.value("TOKEN")?.to_vec();
            once(&mut a.token, "TOKEN", t)?
        }
        "STATUS" => {
            let s = update_status(c.value("STATUS")?)?;
            once(&mut a.status, "STATUS", s)?
        }
        "LEASE" => {
            let v = positive("LEASE", c.value("LEASE")?)?;
            once(&mut a.lease_ms, "LEASE", v)?
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn update_status(v: &[u8]) -> Result<UpdateStatus> {
    match status(v)? {
        Status::Running => Ok(UpdateStatus::Running),
        Status::Done => Ok(UpdateStatus::Done),
        Status::Error => Ok(UpdateStatus::Error),
        other => Err(AiError::arg("STATUS", format!("must be running, done or error, not {}", other.as_str()))),
    }
}

/// PROGRESS, PERCENT and META: what the job reports on its way, with any status.
fn report_option(a: &mut UpdateArgs, kw: &str, c: &mut Cursor, limits: Limits) -> Result<bool> {
    match kw {
        "PROGRESS" => {
            let p = c.value("PROGRESS")?;
            check_size("PROGRESS", p, limits.max_bytes)?;
            a.progress = Some(p.to_vec())
        }
        "PERCENT" => {
            let p = c.count("PERCENT")?;
            if p > 100 {
                return Err(AiError::arg("PERCENT", format!("must be 0 to 100, got {p}")));
            }
            a.percent = Some(p)
        }
        "META" => {
            let m = c.json_object("META", limits)?.to_vec();
            once(&mut a.meta, "META", m)?
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// RESULT, ERROR, CLASS, NORETRY, USAGE and DELAY: how the attempt ended.
fn outcome_option(a: &mut UpdateArgs, kw: &str, c: &mut Cursor, limits: Limits) -> Result<bool> {
    match kw {
        "RESULT" => {
            let r = c.json("RESULT", limits)?.to_vec();
            once(&mut a.result, "RESULT", r)?
        }
        "ERROR" => {
            let e = c.value("ERROR")?;
            check_size("ERROR", e, limits.max_bytes)?;
            once(&mut a.error, "ERROR", e.to_vec())?
        }
        "CLASS" => {
            let v = c.value("CLASS")?;
            if v.is_empty() || v.len() > 128 {
                return Err(AiError::arg("CLASS", "must be 1 to 128 bytes"));
            }
            once(&mut a.class, "CLASS", v.to_vec())?
        }
        "NORETRY" => a.noretry = true,
        "USAGE" => {
            let v = c.count("USAGE")?;
            once(&mut a.usage, "USAGE", v)?
        }
        "DELAY" => {
            let v = c.count("DELAY")?;
            once(&mut a.delay_ms, "DELAY", v)?
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The options of JOB.UPDATE that only make sense with one STATUS, and USAGE's bound.
fn check_update(a: &UpdateArgs, max_usage: i64) -> Result<()> {
    let st = a.status;
    let only = |given: bool, opt: &str, needs: UpdateStatus, name: &str| -> Result<()> {
        if given && st != Some(needs) {
            return Err(AiError::arg(opt, format!("is only allowed with STATUS {name}")));
        }
        Ok(())
    };
    only(a.result.is_some(), "RESULT", UpdateStatus::Done, "done")?;
    only(a.error.is_some(), "ERROR", UpdateStatus::Error, "error")?;
    only(a.class.is_some(), "CLASS", UpdateStatus::Error, "error")?;
    only(a.noretry, "NORETRY", UpdateStatus::Error, "error")?;
    only(a.delay_ms.is_some(), "DELAY", UpdateStatus::Error, "error")?;
    if a.usage.is_some() && !matches!(st, Some(UpdateStatus::Done | UpdateStatus::Error)) {
        return Err(AiError::arg("USAGE", "is only allowed with STATUS done or error"));
    }
    if let Some(u) = a.usage.filter(|&u| u > max_usage) {
        return Err(AiError::arg("USAGE", format!("must be at most max-usage {max_usage}, got {u}")));
    }
    if !a.charge_keys.is_empty() && a.usage.is_none() {
        return Err(AiError::arg("CHARGE", "is only allowed with USAGE"));
    }
    if st == Some(UpdateStatus::Done) && a.result.is_none() {
        return Err(AiError::arg("RESULT", "is required with STATUS done"));
    }
    if st == Some(UpdateStatus::Error) && a.error.is_none() {
        return Err(AiError::arg("ERROR", "is required with STATUS error"));
    }
    Ok(())
}

/// JOB.RELEASE Q id TOKEN t [DELAY ms]
pub fn release(args: &[&[u8]]) -> Result<(QueueKeys, Vec<u8>, ReleaseArgs)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let id = job_id(&mut c)?.to_vec();
    let (mut token, mut delay) = (None, None);
    while let Some(kw) = c.keyword() {
        match kw.as_str() {
            "TOKEN" => {
                let t = c.value("TOKEN")?.to_vec();
                once(&mut token, "TOKEN", t)?
            }
            "DELAY" => {
                let d = c.count("DELAY")?;
                once(&mut delay, "DELAY", d)?
            }
            _ => return Err(unknown(&kw)),
        }
    }
    let token = token.ok_or_else(|| AiError::arg("TOKEN", "is required"))?;
    Ok((q, id, ReleaseArgs { token, delay_ms: delay }))
}

/// JOB.LIST Q [STATUS s] [CURSOR c] [COUNT n]
pub fn list(args: &[&[u8]]) -> Result<(QueueKeys, ListArgs)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let mut a = ListArgs { status: None, cursor: 0, count: 10 };
    while let Some(kw) = c.keyword() {
        match kw.as_str() {
            "STATUS" => a.status = Some(status(c.value("STATUS")?)?),
            "CURSOR" => a.cursor = c.count("CURSOR")?,
            "COUNT" => {
                a.count = positive("COUNT", c.value("COUNT")?)?;
                if a.count > 10_000 {
                    return Err(AiError::arg("COUNT", "must be at most 10000"));
                }
            }
            _ => return Err(unknown(&kw)),
        }
    }
    Ok((q, a))
}

/// JOB.APPEND Q id [TOKEN t] [RESTART] DATA chunk [DATA chunk ...]
pub fn append(args: &[&[u8]]) -> Result<(QueueKeys, Vec<u8>, AppendArgs)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let id = job_id(&mut c)?.to_vec();
    let mut a = AppendArgs::default();
    while let Some(kw) = c.keyword() {
        match kw.as_str() {
            "TOKEN" => {
                let t = c.value("TOKEN")?.to_vec();
                once(&mut a.token, "TOKEN", t)?
            }
            "RESTART" => a.restart = true,
            "DATA" => {
                let chunk = c.value("DATA")?;
                if chunk.is_empty() {
                    return Err(AiError::arg("DATA", "must not be empty"));
                }
                a.chunks.push(chunk.to_vec());
            }
            _ => return Err(unknown(&kw)),
        }
    }
    if a.chunks.is_empty() {
        return Err(AiError::arg("DATA", "is required"));
    }
    Ok((q, id, a))
}

/// JOB.READ Q id [AFTER offset] [COUNT n] [BLOCK ms]
pub fn read(args: &[&[u8]]) -> Result<(QueueKeys, Vec<u8>, ReadArgs)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let id = job_id(&mut c)?.to_vec();
    let mut a = ReadArgs::default();
    let (mut after, mut count, mut block) = (None, None, None);
    while let Some(kw) = c.keyword() {
        match kw.as_str() {
            "AFTER" => {
                let v = c.value("AFTER")?;
                let offset = StreamId::parse(v).ok_or_else(|| {
                    AiError::arg(
                        "AFTER",
                        format!(
                            "must be an offset such as 1-0 (0 for the start), got '{}'",
                            String::from_utf8_lossy(v)
                        ),
                    )
                })?;
                once(&mut after, "AFTER", offset)?
            }
            "COUNT" => {
                let n = positive("COUNT", c.value("COUNT")?)?;
                if n > READ_COUNT_MAX as i64 {
                    return Err(AiError::arg("COUNT", format!("must be at most {READ_COUNT_MAX}")));
                }
                once(&mut count, "COUNT", n as usize)?
            }
            "BLOCK" => {
                let ms = c.count("BLOCK")?;
                once(&mut block, "BLOCK", ms)?
            }
            _ => return Err(unknown(&kw)),
        }
    }
    a.after = after.unwrap_or(a.after);
    a.count = count.unwrap_or(a.count);
    a.block_ms = block;
    Ok((q, id, a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::{a, refs};
    use crate::job::Priority;
    use crate::queue::create::Start;
    use crate::ratelimit::Window;

    #[test]
    fn create_parses_every_option() {
        let v = a(
            r#"q PAYLOAD {"a":1} ID j1 priority HIGH DELAY 5 MAXATTEMPTS 2 RETENTION 9 DEADLINE 7 META {} GROUP t COST 3"#,
        );
        let (q, s) = create(&refs(&v), crate::json::Limits::bytes(1 << 20), 100).unwrap();
        assert_eq!(q.name(), b"q");
        assert_eq!(s.payload, br#"{"a":1}"#);
        assert_eq!(s.id.as_deref(), Some(&b"j1"[..]));
        assert_eq!(s.priority, Priority::High);
        assert_eq!(s.start, Start::Delay(5));
        assert_eq!((s.max_attempts, s.retention_ms, s.deadline_ms), (Some(2), Some(9), Some(7)));
        assert_eq!(s.group.as_deref(), Some(&b"t"[..]));
        assert_eq!(s.cost, 3);
    }

    #[test]
    fn create_refuses_bad_input_naming_the_argument() {
        let cases = [
            ("q", "PAYLOAD"),
            ("q PAYLOAD {x", "PAYLOAD"),
            ("q PAYLOAD {} DELAY -1", "DELAY"),
            ("q PAYLOAD {} DELAY 1.5", "DELAY"),
            ("q PAYLOAD {} DELAY 1 AT 5", "DELAY"),
            ("q PAYLOAD {} PRIORITY urgent", "PRIORITY"),
            ("q PAYLOAD {} META [1]", "META"),
            ("q PAYLOAD {} HASH abc", "HASH"),
            ("q PAYLOAD {} ID a{b}", "ID"),
            ("q PAYLOAD {} BOGUS 1", "BOGUS"),
            ("q PAYLOAD {} MAXATTEMPTS 0", "MAXATTEMPTS"),
            ("q PAYLOAD {} DEADLINE 0", "DEADLINE"),
            ("q PAYLOAD {} COST", "COST"),
            ("a{b} PAYLOAD {}", "Q"),
        ];
        for (line, arg) in cases {
            let v = a(line);
            let e = create(&refs(&v), crate::json::Limits::bytes(1 << 20), 100).unwrap_err();
            assert!(e.message.contains(arg), "{line}: {}", e.message);
        }
        let v = a(r#"q PAYLOAD "0123456789""#);
        assert_eq!(create(&refs(&v), crate::json::Limits::bytes(5), 100).unwrap_err().code, crate::error::Code::TooBig);
    }

    #[test]
    fn after_takes_ids_up_to_the_next_keyword() {
        let v = a(r#"q PAYLOAD {} AFTER a b a priority high ONPARENTFAIL RUN"#);
        let (_, s) = create(&refs(&v), crate::json::Limits::bytes(1 << 20), 100).unwrap();
        let after = s.after.unwrap();
        assert_eq!(after.parents, [b"a".to_vec(), b"b".to_vec()], "a duplicated id is one parent");
        assert_eq!(after.on_fail, OnParentFail::Run);
        assert_eq!(s.priority, Priority::High);
        let v = a(r#"q PAYLOAD {} AFTER x"#);
        let (_, s) = create(&refs(&v), crate::json::Limits::bytes(1 << 20), 100).unwrap();
        assert_eq!(s.after.unwrap().on_fail, OnParentFail::Fail);
    }

    #[test]
    fn after_refuses_bad_input_naming_the_argument() {
        for (line, want) in [
            ("q PAYLOAD {} AFTER", "AFTER needs at least one id"),
            ("q PAYLOAD {} AFTER PRIORITY high", "AFTER needs at least one id"),
            ("q PAYLOAD {} AFTER a{b}", "AFTER has a character"),
            ("q PAYLOAD {} AFTER a b c", "AFTER names 3 parents, the most aijob.flow-max-parents allows is 2"),
            ("q PAYLOAD {} AFTER a AFTER b", "AFTER given twice"),
            ("q PAYLOAD {} ONPARENTFAIL run", "ONPARENTFAIL needs AFTER"),
            ("q PAYLOAD {} AFTER a ONPARENTFAIL maybe", "ONPARENTFAIL must be fail or run"),
            ("q PAYLOAD {} ID j AFTER a j", "AFTER names the job j itself"),
        ] {
            let v = a(line);
            let e = create(&refs(&v), crate::json::Limits::bytes(1 << 20), 2).unwrap_err();
            assert!(e.message.starts_with(want), "{line}: {}", e.message);
        }
    }

    #[test]
    fn update_options_need_their_status() {
        for (line, arg) in [
            ("q j STATUS done", "RESULT"),
            ("q j STATUS error", "ERROR"),
            ("q j RESULT {}", "RESULT"),
            ("q j STATUS done RESULT {} NORETRY", "NORETRY"),
            ("q j PERCENT 101", "PERCENT"),
            ("q j STATUS queued", "STATUS"),
            ("q j USAGE 5", "USAGE"),
            ("q j STATUS done RESULT {} USAGE 1001", "USAGE"),
            ("q j STATUS done RESULT {} CHARGE k", "CHARGE"),
            ("q j STATUS done RESULT {} USAGE 5 CHARGE", "CHARGE"),
        ] {
            let v = a(line);
            let e = update(&refs(&v), crate::json::Limits::bytes(1 << 20), MAX_USAGE).unwrap_err();
            assert!(e.message.contains(arg), "{line}: {}", e.message);
        }
        let v = a("q j STATUS error ERROR boom CLASS 429 DELAY 100 TOKEN t");
        let (_, id, u, next) = update(&refs(&v), crate::json::Limits::bytes(1 << 20), MAX_USAGE).unwrap();
        assert_eq!(id, b"j");
        assert_eq!(u.delay_ms, Some(100));
        assert_eq!(next, None);
    }

    #[test]
    fn update_next_takes_the_claims_options() {
        let line = "q j TOKEN t STATUS done RESULT {} LEASE 7 NEXT WORKER w LEASE 100 BLOCK 0 COUNT 2 CHARGE rl:{q} COST LIMIT 10 PERIOD 1000";
        let v = a(line);
        let (q, id, u, next) = update(&refs(&v), crate::json::Limits::bytes(1 << 20), MAX_USAGE).unwrap();
        assert_eq!((q.name(), id.as_slice(), u.lease_ms), (&b"q"[..], &b"j"[..], Some(7)));
        let next = next.unwrap();
        assert_eq!(
            (next.worker.as_deref(), next.lease_ms, next.block_ms, next.count),
            (Some(&b"w"[..]), Some(100), Some(0), 2)
        );
        assert_eq!(next.charges.len(), 1);
        // the claim's CHARGE key is declared, at its place after the command name
        assert_eq!(update_key_positions(&refs(&v)), vec![0, 20]);
        assert_eq!(v[20], b"rl:{q}");
        let (nq, nc) = next_claim(&refs(&v)).unwrap().unwrap();
        // USAGE's CHARGE keys come before NEXT, the claim's after: both declared, each its own
        let both =
            "q j TOKEN t STATUS done RESULT {} USAGE 5 CHARGE tpm:{q} NEXT CHARGE rpm:{q} REQUESTS LIMIT 1 PERIOD 10";
        let w = a(both);
        assert_eq!(update_key_positions(&refs(&w)), vec![0, 11, 14]);
        let (_, _, u, n) = update(&refs(&w), crate::json::Limits::bytes(1 << 20), MAX_USAGE).unwrap();
        assert_eq!(u.charge_keys, vec![b"tpm:{q}".to_vec()]);
        assert_eq!(n.unwrap().charges[0].key, b"rpm:{q}");
        assert_eq!((nq.name(), nc.count), (&b"q"[..], 2));
        // NEXT alone claims one job, with the claim's defaults
        let v = a("q j STATUS error ERROR e NEXT");
        let (_, _, _, next) = update(&refs(&v), crate::json::Limits::bytes(1 << 20), MAX_USAGE).unwrap();
        assert_eq!(next, Some(ClaimArgs { count: 1, ..Default::default() }));
        // a value that reads NEXT is still a value
        let v = a("q j PROGRESS NEXT STATUS done RESULT {}");
        let (_, _, u, next) = update(&refs(&v), crate::json::Limits::bytes(1 << 20), MAX_USAGE).unwrap();
        assert_eq!((u.progress.as_deref(), next), (Some(&b"NEXT"[..]), None));
        assert_eq!(update_key_positions(&refs(&v)), vec![0]);
        for (bad, arg) in [
            ("q j NEXT", "NEXT"),
            ("q j TOKEN t NEXT COUNT 1", "NEXT"),
            ("q j STATUS running NEXT", "NEXT"),
            ("q j STATUS done RESULT {} NEXT COUNT 0", "COUNT"),
            ("q j STATUS done RESULT {} NEXT RESULT {}", "RESULT"),
        ] {
            let v = a(bad);
            let e = update(&refs(&v), crate::json::Limits::bytes(1 << 20), MAX_USAGE).unwrap_err();
            assert!(e.message.contains(arg), "{bad}: {}", e.message);
        }
    }

    const MAX_USAGE: i64 = 1000;

    fn parse_update(line: &str) -> Result<UpdateArgs> {
        let v = a(line);
        update(&refs(&v), crate::json::Limits::bytes(1 << 20), MAX_USAGE).map(|(_, _, u, _)| u)
    }

    #[test]
    fn update_declares_its_charge_keys() {
        let v = a("q j TOKEN t STATUS done RESULT {} USAGE 1000 CHARGE tpm:{q} charge rpm:{q}");
        assert_eq!(update_key_positions(&refs(&v)), vec![0, 11, 13]);
        let u = parse_update("q j TOKEN t STATUS done RESULT {} USAGE 1000 CHARGE tpm:{q} charge rpm:{q}").unwrap();
        assert_eq!(u.usage, Some(1000));
        assert_eq!(u.charge_keys, vec![b"tpm:{q}".to_vec(), b"rpm:{q}".to_vec()]);
        let v = a("q j TOKEN t STATUS done RESULT {} USAGE 7");
        assert_eq!(update_key_positions(&refs(&v)), vec![0]);
    }

    #[test]
    fn update_key_positions_agree_with_the_parse() {
        // a value that reads like an option is still a value, to the parse and to the walk
        for line in [
            "q j PROGRESS CHARGE STATUS error ERROR CHARGE CLASS CHARGE USAGE 3 CHARGE k1",
            "q CHARGE NORETRY STATUS error ERROR e USAGE 0 CHARGE NORETRY CHARGE CHARGE",
            "q j META {} TOKEN CHARGE LEASE 5 PERCENT 5 STATUS done RESULT \"CHARGE\" USAGE 1 CHARGE x CHARGE y",
            "q j STATUS error ERROR x DELAY 5 NORETRY USAGE 2 CHARGE a:{q}",
        ] {
            let v = a(line);
            let words = refs(&v);
            let u = parse_update(line).unwrap_or_else(|e| panic!("{line}: {}", e.message));
            let at: Vec<Vec<u8>> = update_key_positions(&words).iter().skip(1).map(|&p| words[p].to_vec()).collect();
            assert_eq!(u.charge_keys, at, "{line}");
            assert!(!u.charge_keys.is_empty(), "{line}");
        }
    }

    #[test]
    fn claim_parses_charges() {
        let v = a("q WORKER w LEASE 100 BLOCK 0 COUNT 2 CHARGE rl:{q} COST LIMIT 10 PERIOD 1000 LIMIT 100 PERIOD 60000 CHARGE r2 REQUESTS LIMIT 5 PERIOD 10");
        let (_, c) = claim(&refs(&v)).unwrap();
        assert_eq!(c.block_ms, Some(0));
        assert_eq!(c.count, 2);
        assert_eq!(c.charges.len(), 2);
        assert!(c.charges[0].by_cost);
        assert_eq!(
            c.charges[0].windows,
            vec![Window { limit: 10, period: 1000 }, Window { limit: 100, period: 60000 }]
        );
        let refs_v = refs(&v);
        assert_eq!(claim_key_positions(&refs_v), vec![0, 10, 21]);
        for bad in ["q CHARGE k", "q CHARGE k COST", "q CHARGE k COST LIMIT 0 PERIOD 5", "q COUNT 0", "q BLOCK -1"] {
            let v = a(bad);
            assert!(claim(&refs(&v)).is_err(), "{bad}");
        }
    }

    #[test]
    fn append_takes_a_token_and_chunks_in_order() {
        let v = a("q j1 token t1 DATA hel DATA lo");
        let (q, id, ap) = append(&refs(&v)).unwrap();
        assert_eq!((q.name(), id.as_slice()), (&b"q"[..], &b"j1"[..]));
        assert_eq!(ap.token.as_deref(), Some(&b"t1"[..]));
        assert_eq!(ap.chunks, [b"hel".to_vec(), b"lo".to_vec()]);
        let v = a("q j1 DATA x");
        assert_eq!(append(&refs(&v)).unwrap().2.token, None);
        let v = a("q j1 restart DATA x");
        assert!(append(&refs(&v)).unwrap().2.restart);
    }

    #[test]
    fn append_refuses_bad_input_naming_the_argument() {
        for (line, arg) in [
            ("q j1", "DATA"),
            ("q j1 TOKEN t", "DATA"),
            ("q j1 DATA", "DATA"),
            ("q j1 TOKEN a TOKEN b DATA x", "TOKEN"),
            ("q j1 DATA x BOGUS", "BOGUS"),
            ("q", "id"),
            ("a{b} j1 DATA x", "Q"),
        ] {
            let v = a(line);
            let e = append(&refs(&v)).unwrap_err().to_string();
            assert!(e.starts_with("ERR") && e.contains(arg), "{line}: {e}");
        }
        let mut v = a("q j1 DATA x");
        v[3].clear();
        assert!(append(&refs(&v)).unwrap_err().to_string().contains("DATA must not be empty"));
    }

    #[test]
    fn read_parses_offsets_count_and_block() {
        let v = a("q j1 AFTER 3-17 COUNT 5 BLOCK 0");
        let (_, id, r) = read(&refs(&v)).unwrap();
        assert_eq!(id, b"j1");
        assert_eq!((r.after, r.count, r.block_ms), (StreamId::new(3, 17), 5, Some(0)));
        let v = a("q j1 after 2");
        assert_eq!(read(&refs(&v)).unwrap().2.after, StreamId::new(2, 0));
        let v = a("q j1");
        assert_eq!(read(&refs(&v)).unwrap().2, ReadArgs::default());
    }

    #[test]
    fn read_refuses_bad_offsets_and_counts() {
        for (line, arg) in [
            ("q j1 AFTER x", "AFTER"),
            ("q j1 AFTER 1-", "AFTER"),
            ("q j1 AFTER -1", "AFTER"),
            ("q j1 AFTER 1-2-3", "AFTER"),
            ("q j1 AFTER 18446744073709551616-0", "AFTER"),
            ("q j1 AFTER", "AFTER"),
            ("q j1 AFTER 1 AFTER 2", "AFTER"),
            ("q j1 COUNT 0", "COUNT"),
            ("q j1 COUNT 10001", "COUNT"),
            ("q j1 BLOCK -1", "BLOCK"),
            ("q j1 WAIT 1", "WAIT"),
        ] {
            let v = a(line);
            let e = read(&refs(&v)).unwrap_err().to_string();
            assert!(e.starts_with("ERR") && e.contains(arg), "{line}: {e}");
        }
    }
}
