//! JOB.* commands.

use aijob_core::grammar;
use aijob_core::keys::QueueKeys;
use aijob_core::queue::charge::ChargeGate;
use aijob_core::queue::claim::{self, ClaimArgs};
use aijob_core::queue::create::JobSpec;
use aijob_core::queue::next::finish_and_claim;
use aijob_core::queue::read::ListArgs;
use aijob_core::queue::stream::{self, AppendArgs, ReadArgs};
use aijob_core::queue::update::{ReleaseArgs, UpdateArgs};
use aijob_core::queue::{admin, create, read, update};
use aijob_core::Result;
use aijob_core::{oom, record};

use crate::command::arg::*;
use crate::command::key;
use crate::command::{Arg, Call, Command, Info, Keys};
use crate::commands::claim_ready::claim_now;
use crate::offload::Offloaded;
use crate::reply::Out;

/// JOB.CREATE Q PAYLOAD json [ID id] [PRIORITY high|normal|low] [DELAY ms | AT unix_ms]
/// [MAXATTEMPTS n] [RETENTION ms] [DEADLINE ms] [HASH hex] [META json] [GROUP g] [COST n]
/// [AFTER id [id ...]] [ONPARENTFAIL fail|run]
///
/// Offloaded: a large PAYLOAD or META is validated on a worker thread, the job made on the
/// main thread.
pub const CREATE: Offloaded<(QueueKeys, JobSpec)> = Offloaded(Command {
    info: Info {
        name: "job.create",
        flags: "write deny-oom",
        arity: -4,
        summary: "Creates a job, queued (or delayed), and returns its id.",
        complexity: "O(log N) with N the jobs of the queue",
        keys: Keys::Queue(key::RW | key::INSERT),
        args: &[
            Q,
            PAYLOAD,
            ts("ID", "id").opt(),
            PRIORITY,
            oneof("start", &[ti("DELAY", "ms"), tt("AT", "unix_ms")]).opt(),
            MAXATTEMPTS,
            RETENTION,
            DEADLINE,
            HASH,
            META,
            GROUP,
            COST,
            ts("AFTER", "id").opt().multi(),
            oneof("onparentfail", &[pure("fail", "fail"), pure("run", "run")]).token("ONPARENTFAIL").opt(),
        ],
    },
    parse: |words, config| grammar::job::create(words, config.json_limits(), config.flow_max_parents),
    handle: create,
});

fn create(c: &mut Call, (q, spec): (QueueKeys, JobSpec)) -> Result<Out> {
    let id = c.with(&q, |s, env| create::create(s, &q, env, &spec))?;
    Ok(Out::bytes(id))
}

/// JOB.GET Q id [JSON]
pub const GET: Command<(QueueKeys, Vec<u8>, bool)> = Command {
    info: Info {
        name: "job.get",
        flags: "readonly",
        arity: -3,
        summary: "The job's record as a map (or one JSON document), nil when there is none.",
        complexity: "O(1)",
        keys: Keys::Queue(key::RO | key::ACCESS),
        args: &[Q, ID, pure("JSON", "json").opt()],
    },
    parse: |words, _| grammar::job::get(words),
    handle: get,
};

fn get(c: &mut Call, (q, id, as_json): (QueueKeys, Vec<u8>, bool)) -> Result<Out> {
    let rec = read::get(&mut c.store, &q, c.now, &id, vec![])?;
    Ok(match (rec, as_json) {
        (None, _) => Out::Null,
        (Some(r), true) => Out::bytes(record::to_json(&r)),
        (Some(r), false) => Out::record(r),
    })
}

const CHARGE: Arg =
    block("charge", &[s("key"), oneof("by", &[pure("REQUESTS", "requests"), pure("COST", "cost")]), WINDOW])
        .token("CHARGE")
        .opt()
        .multi_token();

/// JOB.CLAIM's options after Q, which JOB.UPDATE takes after NEXT.
const CLAIM_OPTIONS: &[Arg] =
    &[ts("WORKER", "name").opt(), ti("LEASE", "ms").opt(), ti("BLOCK", "ms").opt(), COUNT, CHARGE];

/// JOB.CLAIM Q [WORKER name] [LEASE ms] [BLOCK ms] [COUNT n] [CHARGE key REQUESTS|COST LIMIT n PERIOD ms ...]
pub const CLAIM: Command<(QueueKeys, ClaimArgs)> = Command {
    info: Info {
        name: "job.claim",
        flags: "write deny-oom",
        arity: -2,
        summary: "Takes up to COUNT ready jobs under a lease with a fencing token; BLOCK waits for one.",
        complexity: "O(log N) per job claimed, N the jobs of the queue",
        keys: Keys::QueueAndFound(key::RW | key::ACCESS | key::UPDATE, grammar::job::claim_key_positions),
        args: &[Q, ts("WORKER", "name").opt(), ti("LEASE", "ms").opt(), ti("BLOCK", "ms").opt(), COUNT, CHARGE],
    },
    parse: |words, _| grammar::job::claim(words),
    handle: claim,
};

fn claim(c: &mut Call, (q, a): (QueueKeys, ClaimArgs)) -> Result<Out> {
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

/// JOB.UPDATE Q id [TOKEN t] [STATUS running|done|error] [PROGRESS text] [PERCENT n]
/// [RESULT json] [ERROR text] [CLASS name] [NORETRY] [LEASE ms] [META json]
/// [USAGE n [CHARGE key] ...] [DELAY ms]
/// [NEXT [WORKER name] [LEASE ms] [BLOCK ms] [COUNT n] [CHARGE key ...]]
///
/// Offloaded: a large RESULT or META is validated on a worker thread, the update (and its
/// lease check) applied on the main thread.
pub const UPDATE: Offloaded<(QueueKeys, Vec<u8>, UpdateArgs, Option<ClaimArgs>)> = Offloaded(Command {
    info: Info {
        name: "job.update",
        flags: "write",
        arity: -3,
        summary: "Moves a job forward: progress and heartbeat, or STATUS running, done or error; NEXT claims the next job in the same step.",
        complexity: "O(log N) with N the jobs of the queue (and JOB.CLAIM's with NEXT)",
        keys: Keys::QueueAndFound(key::RW | key::UPDATE, grammar::job::update_key_positions),
        args: &[
            Q,
            ID,
            ts("TOKEN", "t").opt(),
            oneof("status", &[pure("running", "running"), pure("done", "done"), pure("error", "error")])
                .token("STATUS")
                .opt(),
            ts("PROGRESS", "text").opt(),
            ti("PERCENT", "n").opt(),
            ts("RESULT", "json").opt(),
            ts("ERROR", "text").opt(),
            ts("CLASS", "name").opt(),
            pure("NORETRY", "noretry").opt(),
            ti("LEASE", "ms").opt(),
            META,
            block("usage", &[ti("USAGE", "n"), ts("CHARGE", "key").opt().multi_token()]).opt(),
            ti("DELAY", "ms").opt(),
            block("next", CLAIM_OPTIONS).token("NEXT").opt(),
        ],
    },
    parse: |words, config| grammar::job::update(words, config.json_limits(), config.max_usage),
    handle: update,
});

/// Runs when used memory is over `maxmemory` (no `deny-oom`): a worker can always report,
/// within the bounds of `oom::admit_update`; NEXT then claims nothing (a claim would start
/// new work).
fn update(c: &mut Call, (q, id, a, next): (QueueKeys, Vec<u8>, UpdateArgs, Option<ClaimArgs>)) -> Result<Out> {
    crate::command::when_memory_full(c.ctx, || oom::admit_update(&a))?;
    let left_before = c.tally.usage_unsettled;
    let out = match next {
        Some(next) if !crate::ffi::memory_full(c.ctx) => update_next(c, &q, &id, &a, &next)?,
        Some(_) => {
            let status = c.with(&q, |s, env| update::update(s, &q, env, &id, &a))?;
            crate::blocking::next_reply(status.as_str(), Out::Array(Vec::new()))
        }
        None => Out::bytes(c.with(&q, |s, env| update::update(s, &q, env, &id, &a))?.as_str()),
    };
    let left = c.tally.usage_unsettled - left_before;
    if left > 0 {
        crate::logging::warn(c.ctx, "usage-unsettled", || {
            format!(
                "JOB.UPDATE on queue {}: USAGE left {left} COST charge(s) as taken, their keys not named with CHARGE",
                String::from_utf8_lossy(q.name())
            )
        });
    }
    Ok(out)
}

/// JOB.UPDATE ... NEXT: the finish and the claim in one step; blocks like JOB.CLAIM when
/// nothing is ready and BLOCK says so (not when run after an offloaded parse: that client
/// was blocked once already and is answered now).
fn update_next(c: &mut Call, q: &QueueKeys, id: &[u8], a: &UpdateArgs, next: &ClaimArgs) -> Result<Out> {
    let (status, claimed) = c.with(q, |s, env| {
        let r = if next.charges.is_empty() {
            finish_and_claim(s, q, env, id, a, next, &mut claim::Open)?
        } else {
            finish_and_claim(s, q, env, id, a, next, &mut ChargeGate { charges: &next.charges })?
        };
        let tally = r.1.tally;
        Ok((r, tally))
    })?;
    let status = status.as_str();
    let from_client = !c.raw_args.is_empty();
    if claimed.jobs.is_empty() && from_client {
        if let Some(timeout) = next.block_ms.filter(|_| crate::blocking::may_block(c.ctx)) {
            crate::blocking::block_next(c.ctx, q, timeout, status)?;
            if let Some(wait) = claimed.denied_for_ms {
                crate::blocking::wake_later(c.ctx, q, c.now, wait);
            }
            return Ok(Out::Blocked);
        }
    }
    let jobs = claimed.jobs.into_iter().map(|job| Out::record(job.record)).collect();
    Ok(crate::blocking::next_reply(status, Out::Array(jobs)))
}

/// JOB.RELEASE Q id TOKEN t [DELAY ms]
pub const RELEASE: Command<(QueueKeys, Vec<u8>, ReleaseArgs)> = Command {
    info: Info {
        name: "job.release",
        flags: "write",
        arity: -5,
        summary: "Gives a claimed job back to the queue; the attempt does not count.",
        complexity: "O(log N) with N the jobs of the queue",
        keys: Keys::Queue(key::RW | key::UPDATE),
        args: &[Q, ID, ts("TOKEN", "t"), ti("DELAY", "ms").opt()],
    },
    parse: |words, _| grammar::job::release(words),
    handle: release,
};

fn release(c: &mut Call, (q, id, a): (QueueKeys, Vec<u8>, ReleaseArgs)) -> Result<Out> {
    let status = c.with(&q, |s, env| update::release(s, &q, env, &id, &a.token, a.delay_ms))?;
    Ok(Out::bytes(status.as_str()))
}

/// JOB.CANCEL Q id
pub const CANCEL: Command<(QueueKeys, Vec<u8>)> = Command {
    info: Info {
        name: "job.cancel",
        flags: "write",
        arity: -3,
        summary: "Cancels a live job: 1, or 0 when it had already finished.",
        complexity: "O(log N) with N the jobs of the queue",
        keys: Keys::Queue(key::RW | key::UPDATE),
        args: &[Q, ID],
    },
    parse: |words, _| grammar::job::id_only(words),
    handle: |c, (q, id)| Ok(Out::Int(c.with(&q, |s, env| admin::cancel(s, &q, env, &id))?)),
};

/// JOB.RETRY Q id
pub const RETRY: Command<(QueueKeys, Vec<u8>)> = Command {
    info: Info {
        name: "job.retry",
        flags: "write deny-oom",
        arity: -3,
        summary: "Queues a failed or canceled job again with its attempts reset.",
        complexity: "O(log N) with N the jobs of the queue",
        keys: Keys::Queue(key::RW | key::UPDATE),
        args: &[Q, ID],
    },
    parse: |words, _| grammar::job::id_only(words),
    handle: |c, (q, id)| Ok(Out::Int(c.with(&q, |s, env| admin::retry(s, &q, env, &id))?)),
};

/// JOB.DELETE Q id
pub const DELETE: Command<(QueueKeys, Vec<u8>)> = Command {
    info: Info {
        name: "job.delete",
        flags: "write",
        arity: -3,
        summary: "Removes a job's record and every index entry: 1, or 0 when there is none.",
        complexity: "O(log N) with N the jobs of the queue",
        keys: Keys::Queue(key::RW | key::DELETE),
        args: &[Q, ID],
    },
    parse: |words, _| grammar::job::id_only(words),
    handle: |c, (q, id)| Ok(Out::Int(c.with(&q, |s, env| admin::delete(s, &q, env, &id))?)),
};

/// JOB.LIST Q [STATUS s] [CURSOR c] [COUNT n]
pub const LIST: Command<(QueueKeys, ListArgs)> = Command {
    info: Info {
        name: "job.list",
        flags: "readonly",
        arity: -2,
        summary: "Pages through a queue's jobs, newest first, like SCAN.",
        complexity: "O(log N + COUNT)",
        keys: Keys::Queue(key::RO | key::ACCESS),
        args: &[Q, STATUS_ANY, CURSOR, COUNT],
    },
    parse: |words, _| grammar::job::list(words),
    handle: list,
};

fn list(c: &mut Call, (q, a): (QueueKeys, ListArgs)) -> Result<Out> {
    let (next, page) = read::list(&mut c.store, &q, c.now, &a)?;
    Ok(Out::Array(vec![Out::bytes(next.to_string()), Out::Array(page.into_iter().map(Out::record).collect())]))
}

/// JOB.APPEND Q id [TOKEN t] [RESTART] DATA chunk [DATA chunk ...]
pub const APPEND: Command<(QueueKeys, Vec<u8>, AppendArgs)> = Command {
    info: Info {
        name: "job.append",
        flags: "write deny-oom",
        arity: -5,
        summary: "Appends output chunks to a running job's stream, fenced by its token; the offset of the last.",
        complexity: "O(N) with N the chunks appended",
        keys: Keys::Queue(key::RW | key::INSERT),
        args: &[Q, ID, ts("TOKEN", "t").opt(), pure("RESTART", "restart").opt(), ts("DATA", "chunk").multi_token()],
    },
    parse: |words, _| grammar::job::append(words),
    handle: append,
};

fn append(c: &mut Call, (q, id, a): (QueueKeys, Vec<u8>, AppendArgs)) -> Result<Out> {
    let last = c.with(&q, |s, env| stream::append(s, &q, env, &id, &a))?;
    Ok(Out::bytes(last.to_string()))
}

/// JOB.READ Q id [AFTER offset] [COUNT n] [BLOCK ms]
pub const READ: Command<(QueueKeys, Vec<u8>, ReadArgs)> = Command {
    info: Info {
        name: "job.read",
        flags: "readonly",
        arity: -3,
        summary: "Reads a job's output stream after an offset; BLOCK waits for more or for the end.",
        complexity: "O(log N + COUNT) with N the entries of the stream",
        keys: Keys::Queue(key::RO | key::ACCESS),
        args: &[Q, ID, ts("AFTER", "offset").opt(), COUNT, ti("BLOCK", "ms").opt()],
    },
    parse: |words, _| grammar::job::read(words),
    handle: read_stream,
};

fn read_stream(c: &mut Call, (q, id, a): (QueueKeys, Vec<u8>, ReadArgs)) -> Result<Out> {
    let r = stream::read(&mut c.store, &q, &id, &a)?;
    match a.block_ms {
        Some(timeout) if r.is_empty() && crate::blocking::may_block(c.ctx) => {
            crate::readers::block(c.ctx, &q, &id, timeout)?;
            Ok(Out::Blocked)
        }
        _ => Ok(crate::readers::reply(r)),
    }
}
