//! Argument grammar of every command, parsed once into typed structs. Everything is
//! validated here, before the logic reads or writes a key.

use crate::error::{AiError, Result};
use crate::hash;
use crate::job::{Priority, Status};
use crate::json::{self, Limits};
use crate::keys::QueueKeys;
use crate::names;
use crate::ratelimit::{self, Window};

/// Longest keyword `Kw` upper-cases in place; every option name is shorter.
const KW_MAX: usize = 16;

/// An option keyword, upper-cased in a buffer on the stack: the parse runs on every call,
/// and an allocation inside Redis costs more than the parse itself. A longer word (no
/// option is that long) reads as its own text, so it matches nothing and the error
/// message still names it.
pub struct Kw<'a> {
    upper: [u8; KW_MAX],
    len: usize,
    raw: &'a [u8],
}

impl<'a> Kw<'a> {
    pub fn new(raw: &'a [u8]) -> Kw<'a> {
        let mut upper = [0u8; KW_MAX];
        let len = raw.len();
        if let Some(dst) = upper.get_mut(..len) {
            dst.copy_from_slice(raw);
            dst.make_ascii_uppercase();
        }
        Kw { upper, len, raw }
    }

    pub fn as_str(&self) -> &str {
        let bytes = self.upper.get(..self.len).unwrap_or(self.raw);
        std::str::from_utf8(bytes).unwrap_or("?")
    }
}

impl std::ops::Deref for Kw<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for Kw<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Kw<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Walks the arguments after the command name. Option keywords match in any case.
pub struct Cursor<'a> {
    args: &'a [&'a [u8]],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(args: &'a [&'a [u8]]) -> Self {
        Cursor { args, pos: 0 }
    }

    pub fn next(&mut self) -> Option<&'a [u8]> {
        let a = self.args.get(self.pos).copied();
        if a.is_some() {
            self.pos += 1;
        }
        a
    }

    pub fn peek(&self) -> Option<&'a [u8]> {
        self.args.get(self.pos).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.args.len()
    }

    /// The next option keyword, upper-cased, or None at the end.
    pub fn keyword(&mut self) -> Option<Kw<'a>> {
        self.next().map(Kw::new)
    }

    /// The value after option `opt`.
    pub fn value(&mut self, opt: &str) -> Result<&'a [u8]> {
        self.next().ok_or_else(|| AiError::arg(opt, "needs a value"))
    }

    /// A non-negative integer after option `opt`.
    pub fn count(&mut self, opt: &str) -> Result<i64> {
        let v = self.value(opt)?;
        non_negative(opt, v)
    }

    /// A JSON value after option `opt`, within `limits` (see `json::validate`).
    pub fn json(&mut self, opt: &str, limits: Limits) -> Result<&'a [u8]> {
        let v = self.value(opt)?;
        json::validate(opt, v, limits)?;
        Ok(v)
    }

    /// A JSON object after option `opt`.
    pub fn json_object(&mut self, opt: &str, limits: Limits) -> Result<&'a [u8]> {
        let v = self.value(opt)?;
        json::validate_object(opt, v, limits)?;
        Ok(v)
    }

    /// A name (id, group, schedule) after option `opt`.
    pub fn name(&mut self, opt: &str) -> Result<&'a [u8]> {
        let v = self.value(opt)?;
        names::validate(opt, v)?;
        Ok(v)
    }
}

pub use crate::json::check_size;

/// An integer as Redis parses them: optional '-', digits, no spaces, no '+'.
pub fn integer(arg: &str, v: &[u8]) -> Result<i64> {
    let text = std::str::from_utf8(v).map_err(|_| AiError::arg(arg, "must be an integer"))?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AiError::arg(arg, format!("must be an integer, got '{text}'")));
    }
    text.parse::<i64>().map_err(|_| AiError::arg(arg, "is out of range"))
}

pub fn non_negative(arg: &str, v: &[u8]) -> Result<i64> {
    let n = integer(arg, v)?;
    if n < 0 {
        return Err(AiError::arg(arg, format!("must not be negative, got {n}")));
    }
    Ok(n)
}

pub fn positive(arg: &str, v: &[u8]) -> Result<i64> {
    let n = integer(arg, v)?;
    if n <= 0 {
        return Err(AiError::arg(arg, format!("must be positive, got {n}")));
    }
    Ok(n)
}

fn unknown(option: &str) -> AiError {
    AiError::syntax(format!("unknown option '{option}'"))
}

fn once<T>(slot: &mut Option<T>, opt: &str, value: T) -> Result<()> {
    if slot.is_some() {
        return Err(AiError::arg(opt, "given twice"));
    }
    *slot = Some(value);
    Ok(())
}

fn queue(c: &mut Cursor) -> Result<QueueKeys> {
    QueueKeys::new(c.next().ok_or_else(|| AiError::arg("Q", "is missing"))?)
}

fn job_id<'a>(c: &mut Cursor<'a>) -> Result<&'a [u8]> {
    let id = c.next().ok_or_else(|| AiError::arg("id", "is missing"))?;
    names::validate("id", id)?;
    Ok(id)
}

fn priority(v: &[u8]) -> Result<Priority> {
    Priority::parse(v).ok_or_else(|| AiError::arg("PRIORITY", "must be high, normal or low"))
}

fn status(v: &[u8]) -> Result<Status> {
    Status::parse(v).ok_or_else(|| {
        AiError::arg(
            "STATUS",
            format!("'{}' is not one of queued, delayed, running, done, error, canceled", String::from_utf8_lossy(v)),
        )
    })
}

/// When a new job first runs: now, after DELAY, or AT an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Now,
    Delay(i64),
    At(i64),
}

/// The options of a new job, shared by JOB.CREATE, CACHE.GETORQUEUE and SCHEDULE.SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub payload: Vec<u8>,
    pub id: Option<Vec<u8>>,
    pub priority: Priority,
    pub start: Start,
    pub max_attempts: Option<i64>,
    pub retention_ms: Option<i64>,
    pub deadline_ms: Option<i64>,
    pub hash: Option<String>,
    pub meta: Option<Vec<u8>>,
    pub group: Option<Vec<u8>>,
    pub cost: i64,
    pub cache_ttl_ms: Option<i64>,
    pub schedule: Option<Vec<u8>>,
}

impl JobSpec {
    pub fn new(payload: Vec<u8>) -> Self {
        JobSpec {
            payload,
            id: None,
            priority: Priority::Normal,
            start: Start::Now,
            max_attempts: None,
            retention_ms: None,
            deadline_ms: None,
            hash: None,
            meta: None,
            group: None,
            cost: 1,
            cache_ttl_ms: None,
            schedule: None,
        }
    }

    /// Parses one job option at `kw` if it is one; Ok(false) when `kw` is not a job option.
    pub fn option(&mut self, kw: &str, c: &mut Cursor, limits: Limits) -> Result<bool> {
        match kw {
            "PAYLOAD" => self.payload = c.json("PAYLOAD", limits)?.to_vec(),
            "PRIORITY" => self.priority = priority(c.value("PRIORITY")?)?,
            "MAXATTEMPTS" => {
                let n = c.count("MAXATTEMPTS")?;
                if n < 1 {
                    return Err(AiError::arg("MAXATTEMPTS", "must be at least 1"));
                }
                once(&mut self.max_attempts, "MAXATTEMPTS", n)?
            }
            "RETENTION" => {
                let v = c.count("RETENTION")?;
                once(&mut self.retention_ms, "RETENTION", v)?
            }
            "DEADLINE" => {
                let v = positive("DEADLINE", c.value("DEADLINE")?)?;
                once(&mut self.deadline_ms, "DEADLINE", v)?
            }
            "META" => {
                let v = c.json_object("META", limits)?.to_vec();
                once(&mut self.meta, "META", v)?
            }
            "GROUP" => {
                let v = c.name("GROUP")?.to_vec();
                once(&mut self.group, "GROUP", v)?
            }
            "COST" => self.cost = c.count("COST")?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn start_option(&mut self, kw: &str, c: &mut Cursor) -> Result<bool> {
        let start = match kw {
            "DELAY" => Start::Delay(c.count("DELAY")?),
            "AT" => Start::At(c.count("AT")?),
            _ => return Ok(false),
        };
        if self.start != Start::Now {
            return Err(AiError::syntax("DELAY and AT exclude each other and may be given once"));
        }
        self.start = start;
        Ok(true)
    }
}

/// JOB.CREATE Q PAYLOAD json [ID id] [PRIORITY p] [DELAY ms | AT unix_ms] [MAXATTEMPTS n]
/// [RETENTION ms] [DEADLINE ms] [HASH hex] [META json] [GROUP g] [COST n]
pub fn job_create(args: &[&[u8]], limits: Limits) -> Result<(QueueKeys, JobSpec)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let mut spec = JobSpec::new(Vec::new());
    let mut has_payload = false;
    while let Some(kw) = c.keyword() {
        if kw == "PAYLOAD" {
            has_payload = true;
        }
        if spec.option(&kw, &mut c, limits)? || spec.start_option(&kw, &mut c)? {
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
            _ => return Err(unknown(&kw)),
        }
    }
    if !has_payload {
        return Err(AiError::arg("PAYLOAD", "is required"));
    }
    Ok((q, spec))
}

/// JOB.GET Q id [JSON]
pub fn job_get(args: &[&[u8]]) -> Result<(QueueKeys, Vec<u8>, bool)> {
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
pub fn job_id_only(args: &[&[u8]]) -> Result<(QueueKeys, Vec<u8>)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let id = job_id(&mut c)?.to_vec();
    if let Some(kw) = c.keyword() {
        return Err(unknown(&kw));
    }
    Ok((q, id))
}

/// One `CHARGE key REQUESTS|COST LIMIT n PERIOD ms [LIMIT n PERIOD ms ...]` of JOB.CLAIM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub key: Vec<u8>,
    pub by_cost: bool,
    pub windows: Vec<Window>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClaimArgs {
    pub worker: Option<Vec<u8>>,
    pub lease_ms: Option<i64>,
    pub block_ms: Option<i64>,
    pub count: i64,
    pub charges: Vec<Charge>,
}

/// JOB.CLAIM Q [WORKER name] [LEASE ms] [BLOCK ms] [COUNT n] [CHARGE key REQUESTS|COST LIMIT n PERIOD ms ...]
pub fn job_claim(args: &[&[u8]]) -> Result<(QueueKeys, ClaimArgs)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
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
            "CHARGE" => a.charges.push(charge(&mut c)?),
            _ => return Err(unknown(&kw)),
        }
    }
    Ok((q, a))
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

/// The STATUS of JOB.UPDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateStatus {
    Running,
    Done,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpdateArgs {
    pub token: Option<Vec<u8>>,
    pub status: Option<UpdateStatus>,
    pub progress: Option<Vec<u8>>,
    pub percent: Option<i64>,
    pub result: Option<Vec<u8>>,
    pub error: Option<Vec<u8>>,
    pub class: Option<Vec<u8>>,
    pub noretry: bool,
    pub lease_ms: Option<i64>,
    pub meta: Option<Vec<u8>>,
    pub usage: Option<i64>,
    /// With STATUS error: wait exactly this long before the retry instead of the backoff.
    pub delay_ms: Option<i64>,
}

/// JOB.UPDATE Q id [TOKEN t] [STATUS running|done|error] [PROGRESS text] [PERCENT n]
/// [RESULT json] [ERROR text] [CLASS name] [NORETRY] [LEASE ms] [META json] [USAGE n] [DELAY ms]
pub fn job_update(args: &[&[u8]], limits: Limits) -> Result<(QueueKeys, Vec<u8>, UpdateArgs)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let id = job_id(&mut c)?.to_vec();
    let mut a = UpdateArgs::default();
    while let Some(kw) = c.keyword() {
        match kw.as_str() {
            "TOKEN" => {
                let t = c.value("TOKEN")?.to_vec();
                once(&mut a.token, "TOKEN", t)?
            }
            "STATUS" => {
                let s = match status(c.value("STATUS")?)? {
                    Status::Running => UpdateStatus::Running,
                    Status::Done => UpdateStatus::Done,
                    Status::Error => UpdateStatus::Error,
                    other => {
                        return Err(AiError::arg(
                            "STATUS",
                            format!("must be running, done or error, not {}", other.as_str()),
                        ))
                    }
                };
                once(&mut a.status, "STATUS", s)?
            }
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
            "LEASE" => {
                let v = positive("LEASE", c.value("LEASE")?)?;
                once(&mut a.lease_ms, "LEASE", v)?
            }
            "META" => {
                let m = c.json_object("META", limits)?.to_vec();
                once(&mut a.meta, "META", m)?
            }
            "USAGE" => {
                let v = c.count("USAGE")?;
                once(&mut a.usage, "USAGE", v)?
            }
            "DELAY" => {
                let v = c.count("DELAY")?;
                once(&mut a.delay_ms, "DELAY", v)?
            }
            _ => return Err(unknown(&kw)),
        }
    }
    check_update(&a)?;
    Ok((q, id, a))
}

/// The options of JOB.UPDATE that only make sense with one STATUS.
fn check_update(a: &UpdateArgs) -> Result<()> {
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
    if st == Some(UpdateStatus::Done) && a.result.is_none() {
        return Err(AiError::arg("RESULT", "is required with STATUS done"));
    }
    if st == Some(UpdateStatus::Error) && a.error.is_none() {
        return Err(AiError::arg("ERROR", "is required with STATUS error"));
    }
    Ok(())
}

/// JOB.RELEASE Q id TOKEN t [DELAY ms]
pub fn job_release(args: &[&[u8]]) -> Result<(QueueKeys, Vec<u8>, Vec<u8>, Option<i64>)> {
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
    Ok((q, id, token, delay))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListArgs {
    pub status: Option<Status>,
    pub cursor: i64,
    pub count: i64,
}

/// JOB.LIST Q [STATUS s] [CURSOR c] [COUNT n]
pub fn job_list(args: &[&[u8]]) -> Result<(QueueKeys, ListArgs)> {
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

/// QUEUE.STATS / QUEUE.PAUSE / QUEUE.RESUME / CACHE.CLEAR / SCHEDULE.LIST Q
pub fn queue_only(args: &[&[u8]]) -> Result<QueueKeys> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    if let Some(kw) = c.keyword() {
        return Err(unknown(&kw));
    }
    Ok(q)
}

/// QUEUE.PURGE Q [STATUS s] [PRIORITY p]
pub fn queue_purge(args: &[&[u8]]) -> Result<(QueueKeys, Status, Option<Priority>)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let (mut st, mut prio) = (Status::Queued, None);
    while let Some(kw) = c.keyword() {
        match kw.as_str() {
            "STATUS" => st = status(c.value("STATUS")?)?,
            "PRIORITY" => prio = Some(priority(c.value("PRIORITY")?)?),
            _ => return Err(unknown(&kw)),
        }
    }
    if prio.is_some() && st != Status::Queued {
        return Err(AiError::arg("PRIORITY", "is only allowed with STATUS queued"));
    }
    Ok((q, st, prio))
}

/// The parts after KEY (every argument to the end: KEY comes last), or the payload
/// (validated as it is canonicalized).
fn content_hash(key_parts: Option<&[&[u8]]>, payload: &[u8], limits: Limits) -> Result<String> {
    match key_parts {
        Some(parts) => Ok(hash::of_parts(parts)),
        None => hash::of_payload("PAYLOAD", payload, limits),
    }
}

/// CACHE.GETORQUEUE Q PAYLOAD json [HASH hex] [PRIORITY p] [MAXATTEMPTS n] [RETENTION ms]
/// [CACHETTL ms] [DEADLINE ms] [META json] [GROUP g] [COST n] [KEY part ...]
pub fn cache_get_or_queue(args: &[&[u8]], limits: Limits) -> Result<(QueueKeys, JobSpec)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let mut spec = JobSpec::new(Vec::new());
    let (mut has_payload, mut hash, mut parts) = (false, None, None);
    while let Some(kw) = c.keyword() {
        if kw == "PAYLOAD" {
            // Parsed only where it is used (hashing it, or making the job): a cache hit
            // with HASH or KEY answers without reading the payload.
            let v = c.value("PAYLOAD")?;
            check_size("PAYLOAD", v, limits.max_bytes)?;
            spec.payload = v.to_vec();
            has_payload = true;
            continue;
        }
        if spec.option(&kw, &mut c, limits)? {
            continue;
        }
        match kw.as_str() {
            "HASH" => {
                let h = hash::parse_hex("HASH", c.value("HASH")?)?;
                once(&mut hash, "HASH", h)?
            }
            "CACHETTL" => {
                let v = positive("CACHETTL", c.value("CACHETTL")?)?;
                once(&mut spec.cache_ttl_ms, "CACHETTL", v)?
            }
            "KEY" => parts = Some(key_parts(&mut c)?),
            _ => return Err(unknown(&kw)),
        }
    }
    if !has_payload {
        return Err(AiError::arg("PAYLOAD", "is required"));
    }
    if hash.is_some() && parts.is_some() {
        return Err(AiError::syntax("HASH and KEY exclude each other"));
    }
    spec.hash = Some(match hash {
        Some(h) => h,
        None => content_hash(parts.as_deref(), &spec.payload, limits)?,
    });
    Ok((q, spec))
}

/// Every argument after KEY is a part.
fn key_parts<'a>(c: &mut Cursor<'a>) -> Result<Vec<&'a [u8]>> {
    let mut parts = Vec::new();
    while let Some(p) = c.next() {
        parts.push(p);
    }
    if parts.is_empty() {
        return Err(AiError::arg("KEY", "needs at least one part"));
    }
    Ok(parts)
}

/// CACHE.HASH [KEY part ...] | [PAYLOAD json]
pub fn cache_hash(args: &[&[u8]], limits: Limits) -> Result<String> {
    let mut c = Cursor::new(args);
    match c.keyword().as_deref() {
        Some("KEY") => Ok(hash::of_parts(&key_parts(&mut c)?)),
        Some("PAYLOAD") => {
            let p = c.value("PAYLOAD")?;
            if let Some(kw) = c.keyword() {
                return Err(unknown(&kw));
            }
            hash::of_payload("PAYLOAD", p, limits)
        }
        Some(other) => Err(unknown(other)),
        None => Err(AiError::syntax("CACHE.HASH needs KEY part ... or PAYLOAD json")),
    }
}

/// CACHE.GET / CACHE.DEL Q hash [WITHETAG]: (queue, hash, WITHETAG given).
pub fn cache_key(args: &[&[u8]], allow_withetag: bool) -> Result<(QueueKeys, String, bool)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let h = hash::parse_hex("hash", c.next().ok_or_else(|| AiError::arg("hash", "is missing"))?)?;
    let mut withetag = false;
    while let Some(kw) = c.keyword() {
        match kw.as_str() {
            "WITHETAG" if allow_withetag => withetag = true,
            _ => return Err(unknown(&kw)),
        }
    }
    Ok((q, h, withetag))
}

/// CACHE.SET Q hash json [TTL ms] [IFMATCH etag | IFNONE]
pub fn cache_set(
    args: &[&[u8]],
    limits: Limits,
) -> Result<(QueueKeys, String, Vec<u8>, Option<i64>, crate::queue::cache::Condition)> {
    use crate::queue::cache::Condition;
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let h = hash::parse_hex("hash", c.next().ok_or_else(|| AiError::arg("hash", "is missing"))?)?;
    let v = c.next().ok_or_else(|| AiError::arg("json", "is missing"))?;
    json::validate("json", v, limits)?;
    let (mut ttl, mut cond) = (None, Condition::Always);
    while let Some(kw) = c.keyword() {
        let next = match kw.as_str() {
            "TTL" => {
                let t = positive("TTL", c.value("TTL")?)?;
                once(&mut ttl, "TTL", t)?;
                continue;
            }
            "IFMATCH" => Condition::IfMatch(c.value("IFMATCH")?.to_vec()),
            "IFNONE" => Condition::IfNone,
            _ => return Err(unknown(&kw)),
        };
        if cond != Condition::Always {
            return Err(AiError::syntax("IFMATCH and IFNONE exclude each other"));
        }
        cond = next;
    }
    Ok((q, h, v.to_vec(), ttl, cond))
}

/// SCHEDULE.SET Q name (EVERY ms | CRON expr) PAYLOAD json [PRIORITY p] [MAXATTEMPTS n]
/// [RETENTION ms] [DEADLINE ms] [META json] [OVERLAP skip|allow] [START unix_ms] [GROUP g] [COST n]
pub fn schedule_set(args: &[&[u8]], limits: Limits) -> Result<(QueueKeys, crate::queue::schedule::ScheduleSpec)> {
    use crate::queue::schedule::{ScheduleSpec, Timetable};
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let name = c.next().ok_or_else(|| AiError::arg("name", "is missing"))?;
    names::validate("name", name)?;
    let mut job = JobSpec::new(Vec::new());
    let (mut has_payload, mut timetable, mut start, mut overlap) = (false, None, None, None);
    while let Some(kw) = c.keyword() {
        if kw == "PAYLOAD" {
            has_payload = true;
        }
        if job.option(&kw, &mut c, limits)? {
            continue;
        }
        match kw.as_str() {
            "EVERY" => {
                let e = positive("EVERY", c.value("EVERY")?)?;
                once(&mut timetable, "EVERY/CRON", Timetable::Every(e))?
            }
            "CRON" => {
                let text = String::from_utf8_lossy(c.value("CRON")?).into_owned();
                crate::cron::parse(&text)?;
                once(&mut timetable, "EVERY/CRON", Timetable::Cron(text))?
            }
            "START" => {
                let v = c.count("START")?;
                once(&mut start, "START", v)?
            }
            "OVERLAP" => {
                let allow = match c.keyword().as_deref() {
                    Some("SKIP") => false,
                    Some("ALLOW") => true,
                    _ => return Err(AiError::arg("OVERLAP", "must be skip or allow")),
                };
                once(&mut overlap, "OVERLAP", allow)?
            }
            _ => return Err(unknown(&kw)),
        }
    }
    if !has_payload {
        return Err(AiError::arg("PAYLOAD", "is required"));
    }
    let timetable = timetable.ok_or_else(|| AiError::syntax("EVERY ms or CRON expr is required"))?;
    let spec = ScheduleSpec { name: name.to_vec(), timetable, start, overlap_allow: overlap.unwrap_or(false), job };
    Ok((q, spec))
}

/// SCHEDULE.GET / DEL / RUN / PAUSE / RESUME Q name
pub fn schedule_name(args: &[&[u8]]) -> Result<(QueueKeys, Vec<u8>)> {
    let mut c = Cursor::new(args);
    let q = queue(&mut c)?;
    let name = c.next().ok_or_else(|| AiError::arg("name", "is missing"))?;
    names::validate("name", name)?;
    if let Some(kw) = c.keyword() {
        return Err(unknown(&kw));
    }
    Ok((q, name.to_vec()))
}

/// RATELIMIT.HIT / RATELIMIT.PEEK key LIMIT n PERIOD ms [LIMIT n PERIOD ms ...] [COST c]
/// (COST defaults to 1). Keywords are compared in place: this runs on every hit.
pub fn ratelimit(args: &[&[u8]]) -> Result<(Vec<u8>, Vec<Window>, i64)> {
    let mut c = Cursor::new(args);
    let key = c.next().ok_or_else(|| AiError::arg("key", "is missing"))?.to_vec();
    let mut windows = Vec::with_capacity(2);
    let mut cost = None;
    while let Some(kw) = c.next() {
        if kw.eq_ignore_ascii_case(b"LIMIT") {
            if windows.len() >= ratelimit::MAX_WINDOWS {
                let most = ratelimit::MAX_WINDOWS;
                return Err(AiError::arg("LIMIT", format!("may be given at most {most} times")));
            }
            windows.push(limit_period(&mut c)?);
        } else if kw.eq_ignore_ascii_case(b"COST") {
            let v = c.count("COST")?;
            once(&mut cost, "COST", v)?
        } else {
            return Err(unknown(&String::from_utf8_lossy(kw)));
        }
    }
    let cost = cost.unwrap_or(1);
    ratelimit::check_args(&windows, cost)?;
    Ok((key, windows, cost))
}

/// `n PERIOD ms` after a LIMIT keyword.
fn limit_period(c: &mut Cursor) -> Result<Window> {
    let limit = positive("LIMIT", c.value("LIMIT")?)?;
    if !c.next().is_some_and(|k| k.eq_ignore_ascii_case(b"PERIOD")) {
        return Err(AiError::arg("LIMIT", "must be followed by PERIOD ms"));
    }
    let period = positive("PERIOD", c.value("PERIOD")?)?;
    Ok(Window { limit, period })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Vec<Vec<u8>> {
        s.split(' ').map(|x| x.as_bytes().to_vec()).collect()
    }

    fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
        v.iter().map(|x| x.as_slice()).collect()
    }

    #[test]
    fn create_parses_every_option() {
        let v = a(
            r#"q PAYLOAD {"a":1} ID j1 priority HIGH DELAY 5 MAXATTEMPTS 2 RETENTION 9 DEADLINE 7 META {} GROUP t COST 3"#,
        );
        let (q, s) = job_create(&refs(&v), crate::json::Limits { max_bytes: 1 << 20, ..Default::default() }).unwrap();
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
            let e = job_create(&refs(&v), crate::json::Limits { max_bytes: 1 << 20, ..Default::default() }).unwrap_err();
            assert!(e.message.contains(arg), "{line}: {}", e.message);
        }
        let v = a(r#"q PAYLOAD "0123456789""#);
        assert_eq!(job_create(&refs(&v), crate::json::Limits { max_bytes: 5, ..Default::default() }).unwrap_err().code, crate::error::Code::TooBig);
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
        ] {
            let v = a(line);
            let e = job_update(&refs(&v), crate::json::Limits { max_bytes: 1 << 20, ..Default::default() }).unwrap_err();
            assert!(e.message.contains(arg), "{line}: {}", e.message);
        }
        let v = a("q j STATUS error ERROR boom CLASS 429 DELAY 100 TOKEN t");
        let (_, id, u) = job_update(&refs(&v), crate::json::Limits { max_bytes: 1 << 20, ..Default::default() }).unwrap();
        assert_eq!(id, b"j");
        assert_eq!(u.delay_ms, Some(100));
    }

    #[test]
    fn claim_parses_charges() {
        let v = a("q WORKER w LEASE 100 BLOCK 0 COUNT 2 CHARGE rl:{q} COST LIMIT 10 PERIOD 1000 LIMIT 100 PERIOD 60000 CHARGE r2 REQUESTS LIMIT 5 PERIOD 10");
        let (_, c) = job_claim(&refs(&v)).unwrap();
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
            assert!(job_claim(&refs(&v)).is_err(), "{bad}");
        }
    }

    #[test]
    fn ratelimit_parses_windows_and_cost() {
        let v = a("rl:{c}:gen limit 10 period 1000 LIMIT 100 PERIOD 60000 COST 3");
        let (key, w, cost) = ratelimit(&refs(&v)).unwrap();
        assert_eq!(key, b"rl:{c}:gen");
        assert_eq!(w, vec![Window { limit: 10, period: 1000 }, Window { limit: 100, period: 60000 }]);
        assert_eq!(cost, 3);
        let v = a("k LIMIT 5 PERIOD 10");
        assert_eq!(ratelimit(&refs(&v)).unwrap().2, 1);
        let v = a("k COST 0 LIMIT 5 PERIOD 10");
        assert_eq!(ratelimit(&refs(&v)).unwrap().2, 0);
        let nine = format!("k{}", " LIMIT 1 PERIOD 1".repeat(9));
        for (line, arg) in [
            ("k", "LIMIT"),
            ("k COST 1", "LIMIT"),
            ("k LIMIT 0 PERIOD 5", "LIMIT"),
            ("k LIMIT -1 PERIOD 5", "LIMIT"),
            ("k LIMIT 1.5 PERIOD 5", "LIMIT"),
            ("k LIMIT 5", "LIMIT"),
            ("k LIMIT 5 COST 1", "LIMIT"),
            ("k LIMIT 5 PERIOD", "PERIOD"),
            ("k LIMIT 5 PERIOD 0", "PERIOD"),
            ("k LIMIT 5 PERIOD 1e3", "PERIOD"),
            ("k LIMIT 5 PERIOD 1000000000001", "PERIOD"),
            ("k LIMIT 5 PERIOD 10 LIMIT 6 PERIOD 10", "PERIOD"),
            ("k LIMIT 5 PERIOD 10 COST 6", "COST"),
            ("k LIMIT 5 PERIOD 10 COST -1", "COST"),
            ("k LIMIT 5 PERIOD 10 COST 1 COST 2", "COST"),
            ("k LIMIT 5 PERIOD 10 COST", "COST"),
            ("k LIMIT 5 PERIOD 10 BOGUS", "BOGUS"),
            (nine.as_str(), "LIMIT"),
        ] {
            let v = a(line);
            let e = ratelimit(&refs(&v)).unwrap_err();
            assert!(e.message.contains(arg), "{line}: {}", e.message);
        }
        assert!(ratelimit(&[]).unwrap_err().message.contains("key"));
    }

    #[test]
    fn integers_are_strict() {
        assert_eq!(integer("N", b"-12").unwrap(), -12);
        for bad in ["+1", " 1", "1 ", "", "-", "1e3", "99999999999999999999"] {
            assert!(integer("N", bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
