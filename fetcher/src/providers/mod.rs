//! Providers: one trait ([`Provider`]), one file per provider. A provider turns a job's
//! request into one HTTP call (or none, for echo) and classifies the outcome into a
//! [`Success`] or a [`Failure`] that says whether the module should retry it.
//!
//! The files import each other directly; this one only re-exports for the rest of the crate.

mod call;
mod client;
pub mod echo;
mod failure;
pub mod gemini;
pub mod http;
mod name;
pub mod openai;
mod plan;
mod registry;
mod sse;
mod translate;

pub use call::{result_json, wants_stream, Call, Provider, Success, Usage};
pub use failure::{ErrorClass, Failure};
pub use name::ProviderName;
pub use plan::{parse_plan, FallbackRules, Plan, Target, MAX_FALLBACKS};
pub use registry::{ProviderSettings, Providers};
