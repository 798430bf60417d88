//! Every aijob command, one file per family. Each command is one `Command` value declared
//! beside its handler: name, flags, arity, keys, argument tree, parser, handler.
//!
//! Adding a command: declare its `Command` in its family's file (the syntax line as the doc
//! comment, the parser in `aijob_core::grammar`), list it in `ALL` below, and give it a
//! `### NAME` entry with the same syntax line in the command reference; `tests/docs.rs`
//! fails until the three agree.

pub mod cache;
pub mod claim_ready;
pub mod job;
pub mod lock;
pub mod queue;
pub mod ratelimit;
pub mod schedule;

use crate::command::Registered;

/// Every command the module registers, in the order of the command reference.
pub const ALL: &[&dyn Registered] = &[
    &job::CREATE,
    &job::GET,
    &job::CLAIM,
    &job::UPDATE,
    &job::RELEASE,
    &job::CANCEL,
    &job::RETRY,
    &job::DELETE,
    &job::LIST,
    &job::APPEND,
    &job::READ,
    &queue::STATS,
    &queue::PAUSE,
    &queue::RESUME,
    &queue::PURGE,
    &queue::GROUPCAP,
    &queue::GROUPS,
    &queue::REPAIR,
    &queue::LIST,
    &cache::GET_OR_QUEUE,
    &cache::HASH_OF,
    &cache::GET,
    &cache::SET,
    &cache::DEL,
    &cache::CLEAR,
    &ratelimit::HIT,
    &ratelimit::PEEK,
    &ratelimit::RESET,
    &lock::ACQUIRE,
    &lock::RELEASE,
    &lock::EXTEND,
    &schedule::SET,
    &schedule::GET,
    &schedule::LIST,
    &schedule::DEL,
    &schedule::RUN,
    &schedule::PAUSE,
    &schedule::RESUME,
];
