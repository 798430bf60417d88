//! What one step changed about the jobs of a flow, which its later reads must see: a
//! step's writes reach the store only at commit, and a cascade (docs/flows.md) reads jobs
//! it has already moved, e.g. the last child of a diamond ended by both of its parents.

use std::collections::{BTreeMap, BTreeSet};

use crate::job::Status;

#[derive(Debug, Default, Clone)]
pub struct Overlay {
    /// Jobs this step moved: their status now.
    status: BTreeMap<Vec<u8>, Status>,
    /// Parents whose `dependents` count this step changed: the count now.
    dependents: BTreeMap<Vec<u8>, i64>,
    /// Waiting jobs whose `waiting_on` this step changed: the count now.
    waiting_on: BTreeMap<Vec<u8>, i64>,
    /// Jobs this step removed.
    removed: BTreeSet<Vec<u8>>,
    /// Jobs ended in this step whose place in `expiry` is set once their cascade is done.
    ending: BTreeSet<Vec<u8>>,
}

impl Overlay {
    pub fn status(&self, id: &[u8]) -> Option<Status> {
        self.status.get(id).copied()
    }

    pub fn set_status(&mut self, id: &[u8], to: Status) {
        self.status.insert(id.to_vec(), to);
    }

    pub fn dependents(&self, id: &[u8]) -> Option<i64> {
        self.dependents.get(id).copied()
    }

    pub fn set_dependents(&mut self, id: &[u8], n: i64) {
        self.dependents.insert(id.to_vec(), n);
    }

    pub fn waiting_on(&self, id: &[u8]) -> Option<i64> {
        self.waiting_on.get(id).copied()
    }

    pub fn set_waiting_on(&mut self, id: &[u8], n: i64) {
        self.waiting_on.insert(id.to_vec(), n);
    }

    pub fn is_removed(&self, id: &[u8]) -> bool {
        self.removed.contains(id)
    }

    pub fn set_removed(&mut self, id: &[u8]) {
        self.removed.insert(id.to_vec());
    }

    pub fn is_ending(&self, id: &[u8]) -> bool {
        self.ending.contains(id)
    }

    pub fn set_ending(&mut self, id: &[u8]) {
        self.ending.insert(id.to_vec());
    }

    /// Whether this step moved or removed `id`.
    pub fn touched(&self, id: &[u8]) -> bool {
        self.status.contains_key(id) || self.removed.contains(id)
    }
}
