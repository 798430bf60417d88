//! The clients blocked in JOB.READ, by the job they wait for, so that the step deleting a
//! job can answer them: Redis 7.0 serves no waiter on a key that no longer exists
//! (`Store::apply` calls `key_gone` for a woken key it finds gone). Kept apart from
//! `readers.rs`, which runs reads, so the store, which calls this, uses nothing above it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::raw::c_int;

use redis_module::raw;

use crate::ffi::{self, Waiter};

/// A job's record key in its db.
pub type JobKey = (c_int, Vec<u8>);

struct Waiting {
    job: JobKey,
    waiter: Waiter,
    /// Released because the job was deleted: the timeout callback answers NOTFOUND.
    gone: bool,
}

/// Every blocked reader, by ticket, and the tickets of each job (the main thread's only).
#[derive(Default)]
struct Registry {
    by_ticket: HashMap<u64, Waiting>,
    by_job: HashMap<JobKey, Vec<u64>>,
}

impl Registry {
    fn insert(&mut self, ticket: u64, w: Waiting) {
        self.by_job.entry(w.job.clone()).or_default().push(ticket);
        self.by_ticket.insert(ticket, w);
    }

    fn remove(&mut self, ticket: u64) {
        let Some(w) = self.by_ticket.remove(&ticket) else { return };
        if let Some(tickets) = self.by_job.get_mut(&w.job) {
            tickets.retain(|t| *t != ticket);
            if tickets.is_empty() {
                self.by_job.remove(&w.job);
            }
        }
    }

    /// Marks the readers of `job` gone; their handles, to release.
    fn take_gone(&mut self, job: &JobKey) -> Vec<Waiter> {
        let mut released = Vec::new();
        for t in self.by_job.get(job).map(Vec::as_slice).unwrap_or_default() {
            if let Some(w) = self.by_ticket.get_mut(t).filter(|w| !w.gone) {
                w.gone = true;
                released.push(w.waiter);
            }
        }
        released
    }
}

thread_local! {
    static NEXT_TICKET: Cell<u64> = const { Cell::new(1) };
    static WAITING: RefCell<Registry> = RefCell::new(Registry::default());
}

/// A number for a new wait.
pub fn next_ticket() -> u64 {
    NEXT_TICKET.with(|n| {
        let t = n.get();
        n.set(t.wrapping_add(1));
        t
    })
}

/// Lists a blocked reader of `job`.
pub fn insert(ticket: u64, job: JobKey, waiter: Waiter) {
    WAITING.with(|w| {
        if let Ok(mut w) = w.try_borrow_mut() {
            w.insert(ticket, Waiting { job, waiter, gone: false });
        }
    });
}

/// The wait is over (Redis is about to free its handle).
pub fn remove(ticket: u64) {
    WAITING.with(|w| {
        if let Ok(mut w) = w.try_borrow_mut() {
            w.remove(ticket);
        }
    });
}

/// Whether the wait was ended because its job was deleted.
pub fn is_gone(ticket: u64) -> bool {
    WAITING.with(|w| w.try_borrow().is_ok_and(|w| w.by_ticket.get(&ticket).is_some_and(|r| r.gone)))
}

/// How many readers are blocked now (INFO aijob).
pub fn blocked() -> usize {
    WAITING.with(|w| w.try_borrow().map_or(0, |w| w.by_ticket.len()))
}

/// A step deleted the key `record` of the context's db: its readers are answered now.
pub fn key_gone(ctx: *mut raw::RedisModuleCtx, record: &[u8]) {
    let job = (ffi::selected_db(ctx), record.to_vec());
    let waiters = WAITING.with(|w| w.try_borrow_mut().map(|mut w| w.take_gone(&job)).unwrap_or_default());
    // outside the borrow: each release runs the reader's timeout callback right away
    for waiter in waiters {
        if let Err(e) = ffi::release_waiter(waiter) {
            crate::logging::warn(ctx, "reader release", || format!("a reader of a deleted job was not released: {e}"));
        }
    }
}
