//! SCHEDULE.* commands.

use aijob_core::grammar;
use aijob_core::keys::QueueKeys;
use aijob_core::queue::schedule::{self, ScheduleSpec};
use aijob_core::queue::tx::Tally;
use aijob_core::Result;

use crate::command::arg::*;
use crate::command::key;
use crate::command::{Call, Command, Info, Keys};
use crate::offload::Offloaded;
use crate::reply::Out;

/// SCHEDULE.SET Q name (EVERY ms | CRON expr) PAYLOAD json [PRIORITY p] [MAXATTEMPTS n]
/// [RETENTION ms] [DEADLINE ms] [META json] [GROUP g] [COST n] [OVERLAP skip|allow] [START unix_ms]
///
/// Offloaded: a large PAYLOAD or META is validated on a worker thread.
pub const SET: Offloaded<(QueueKeys, ScheduleSpec)> = Offloaded(Command {
    info: Info {
        name: "schedule.set",
        flags: "write deny-oom",
        arity: -5,
        summary: "Creates or replaces a periodic job (EVERY ms or CRON); replies its next run.",
        complexity: "O(log S) with S the schedules of the queue",
        keys: Keys::Queue(key::RW | key::UPDATE),
        args: &[
            Q,
            NAME,
            oneof("timetable", &[ti("EVERY", "ms"), ts("CRON", "expr")]),
            PAYLOAD,
            PRIORITY,
            MAXATTEMPTS,
            RETENTION,
            DEADLINE,
            META,
            GROUP,
            COST,
            oneof("overlap", &[pure("skip", "skip"), pure("allow", "allow")]).token("OVERLAP").opt(),
            tt("START", "unix_ms").opt(),
        ],
    },
    parse: |words, config| grammar::schedule::set(words, config.json_limits()),
    handle: |c, (q, spec)| Ok(Out::Int(c.with(&q, |s, env| schedule::set(s, &q, env, &spec))?)),
});

/// SCHEDULE.GET Q name
pub const GET: Command<(QueueKeys, Vec<u8>)> = Command {
    info: Info {
        name: "schedule.get",
        flags: "readonly",
        arity: -3,
        summary: "A schedule as a map, nil when absent.",
        complexity: "O(1)",
        keys: Keys::Queue(key::RO | key::ACCESS),
        args: &[Q, NAME],
    },
    parse: |words, _| grammar::schedule::name(words),
    handle: |c, (q, name)| Ok(schedule::get(&mut c.store, &q, &name)?.map_or(Out::Null, Out::fields)),
};

/// SCHEDULE.LIST Q
pub const LIST: Command<QueueKeys> = Command {
    info: Info {
        name: "schedule.list",
        flags: "readonly",
        arity: -2,
        summary: "Every schedule of the queue, by name.",
        complexity: "O(S) with S the schedules of the queue",
        keys: Keys::Queue(key::RO | key::ACCESS),
        args: &[Q],
    },
    parse: |words, _| grammar::queue::queue_only(words),
    handle: |c, q| Ok(Out::Array(schedule::list(&mut c.store, &q)?.into_iter().map(Out::fields).collect())),
};

/// SCHEDULE.DEL Q name
pub const DEL: Command<(QueueKeys, Vec<u8>)> = Command {
    info: Info {
        name: "schedule.del",
        flags: "write",
        arity: -3,
        summary: "Deletes a schedule: 1, or 0 when there was none.",
        complexity: "O(log S) with S the schedules of the queue",
        keys: Keys::Queue(key::RW | key::DELETE),
        args: &[Q, NAME],
    },
    parse: |words, _| grammar::schedule::name(words),
    handle: |c, (q, name)| Ok(Out::Int(c.with(&q, |s, _| Ok((schedule::del(s, &q, &name)?, Tally::default())))?)),
};

/// SCHEDULE.RUN Q name
pub const RUN: Command<(QueueKeys, Vec<u8>)> = Command {
    info: Info {
        name: "schedule.run",
        flags: "write deny-oom",
        arity: -3,
        summary: "Creates a run now, outside the timetable: the job id, or nil when OVERLAP skip holds it back.",
        complexity: "O(log N) with N the jobs of the queue",
        keys: Keys::Queue(key::RW | key::INSERT),
        args: &[Q, NAME],
    },
    parse: |words, _| grammar::schedule::name(words),
    handle: run,
};

fn run(c: &mut Call, (q, name): (QueueKeys, Vec<u8>)) -> Result<Out> {
    let id = c.with(&q, |s, env| schedule::run_now(s, &q, env, &name))?;
    Ok(id.map_or(Out::Null, Out::Bytes))
}

/// SCHEDULE.PAUSE Q name
pub const PAUSE: Command<(QueueKeys, Vec<u8>)> = Command {
    info: Info {
        name: "schedule.pause",
        flags: "write",
        arity: -3,
        summary: "Stops a schedule's ticks: 1, or 0 when there is no such schedule.",
        complexity: "O(log S) with S the schedules of the queue",
        keys: Keys::Queue(key::RW | key::UPDATE),
        args: &[Q, NAME],
    },
    parse: |words, _| grammar::schedule::name(words),
    handle: |c, (q, name)| set_paused(c, q, name, true),
};

/// SCHEDULE.RESUME Q name
pub const RESUME: Command<(QueueKeys, Vec<u8>)> = Command {
    info: Info {
        name: "schedule.resume",
        flags: "write",
        arity: -3,
        summary: "Restarts a schedule's ticks from now: 1, or 0 when there is no such schedule.",
        complexity: "O(log S) with S the schedules of the queue",
        keys: Keys::Queue(key::RW | key::UPDATE),
        args: &[Q, NAME],
    },
    parse: |words, _| grammar::schedule::name(words),
    handle: |c, (q, name)| set_paused(c, q, name, false),
};

fn set_paused(c: &mut Call, q: QueueKeys, name: Vec<u8>, paused: bool) -> Result<Out> {
    let done = c.with(&q, |s, env| Ok((schedule::set_paused(s, &q, env, &name, paused)?, Tally::default())))?;
    Ok(Out::Int(done))
}
