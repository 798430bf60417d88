//! Replies in the shape docs/operations.md#replies-in-resp2-and-resp3 fixes: maps stay maps in RESP3 (flat arrays in RESP2),
//! in our field order, with integers as integers.

use aijob_core::record::{Reply, Value};
use redis_module::raw;

use crate::ffi;

/// A reply tree, emitted with the raw reply API once the command succeeded.
#[derive(Debug, PartialEq)]
pub enum Out {
    Int(i64),
    Bytes(Vec<u8>),
    /// A bulk string known at compile time (no allocation).
    Static(&'static [u8]),
    Str(&'static str),
    Null,
    NullArray,
    /// A module string replied without a copy.
    ModuleString(ffi::RStr),
    /// The client was blocked: reply later, from the blocked-client callbacks.
    Blocked,
    Array(Vec<Out>),
    /// Field names are the core's constants (no allocation per field).
    Map(Vec<(&'static str, Out)>),
}

impl Out {
    pub fn bytes(b: impl Into<Vec<u8>>) -> Out {
        Out::Bytes(b.into())
    }

    /// (field, value) pairs of the core (a record, a schedule) as a map.
    pub fn fields(r: Vec<(&'static str, Value)>) -> Out {
        Out::Map(r.into_iter().map(|(k, v)| (k, Out::value(v))).collect())
    }

    /// One value of a record: arrays stay arrays, maps stay maps (flat in RESP2).
    fn value(v: Value) -> Out {
        match v {
            Value::Int(n) => Out::Int(n),
            Value::Bytes(b) => Out::Bytes(b),
            Value::List(items) => Out::Array(items.into_iter().map(Out::value).collect()),
            Value::Map(pairs) => Out::fields(pairs),
        }
    }

    /// A record as a map.
    pub fn record(r: Reply) -> Out {
        Out::fields(r)
    }

    pub fn emit(&self, ctx: *mut raw::RedisModuleCtx) {
        match self {
            Out::Int(n) => ffi::reply_int(ctx, *n),
            Out::Bytes(b) => ffi::reply_bulk(ctx, b),
            Out::Static(b) => ffi::reply_bulk(ctx, b),
            Out::Str(s) => ffi::reply_simple(ctx, s),
            Out::Null => ffi::reply_null(ctx),
            Out::Blocked => {}
            Out::ModuleString(r) => ffi::reply_string(ctx, r),
            Out::NullArray => ffi::reply_null_array(ctx),
            Out::Array(items) => {
                ffi::reply_array(ctx, items.len());
                for i in items {
                    i.emit(ctx);
                }
            }
            Out::Map(pairs) => {
                if !ffi::reply_map(ctx, pairs.len()) {
                    return;
                }
                for (k, v) in pairs {
                    ffi::reply_bulk(ctx, k.as_bytes());
                    v.emit(ctx);
                }
            }
        }
    }
}
