//! The job queue logic, generic over `Store`: the module runs it against Redis keys,
//! the unit tests against `mem::MemStore`.

pub mod admin;
pub mod cache;
pub mod charge;
pub mod claim;
pub mod clock;
pub mod create;
pub mod fence;
pub mod flow;
pub mod next;
pub mod overlay;
pub mod pending;
pub mod read;
pub mod repair;
pub mod schedule;
pub mod stream;
pub mod tx;
pub mod update;

#[cfg(test)]
mod flow_tests;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;
