//! Replies in the shape the SPEC fixes: maps stay maps in RESP3 (flat arrays in RESP2),
//! in our field order, with integers as integers.

use std::os::raw::{c_char, c_long};

use aijob_core::record::{Reply, Value};
use redis_module::raw;

/// A reply tree, emitted with the raw reply API once the command succeeded.
#[derive(Debug, PartialEq)]
pub enum Out {
    Int(i64),
    Bytes(Vec<u8>),
    Str(&'static str),
    Null,
    NullArray,
    /// A module string replied without a copy.
    ModuleString(crate::store::api::RStr),
    /// The client was blocked: reply later, from the blocked-client callbacks.
    Blocked,
    Array(Vec<Out>),
    Map(Vec<(String, Out)>),
}

impl Out {
    pub fn bytes(b: impl Into<Vec<u8>>) -> Out {
        Out::Bytes(b.into())
    }

    /// (field, value) pairs of the core (a record, a schedule) as a map.
    pub fn fields(r: Vec<(&'static str, Value)>) -> Out {
        let pairs = r.into_iter().map(|(k, v)| {
            let v = match v {
                Value::Int(n) => Out::Int(n),
                Value::Bytes(b) => Out::Bytes(b),
            };
            (k.to_string(), v)
        });
        Out::Map(pairs.collect())
    }

    /// A record as a map.
    pub fn record(r: Reply) -> Out {
        Out::fields(r)
    }

    pub fn emit(&self, ctx: *mut raw::RedisModuleCtx) {
        unsafe {
            match self {
                Out::Int(n) => {
                    if let Some(f) = raw::RedisModule_ReplyWithLongLong {
                        f(ctx, *n);
                    }
                }
                Out::Bytes(b) => bulk(ctx, b),
                Out::Str(s) => {
                    if let Some(f) = raw::RedisModule_ReplyWithSimpleString {
                        let c = std::ffi::CString::new(*s).unwrap_or_default();
                        f(ctx, c.as_ptr());
                    }
                }
                Out::Null => {
                    if let Some(f) = raw::RedisModule_ReplyWithNull {
                        f(ctx);
                    }
                }
                Out::Blocked => {}
                Out::ModuleString(r) => {
                    if let Some(f) = raw::RedisModule_ReplyWithString {
                        f(ctx, r.ptr);
                    }
                }
                Out::NullArray => {
                    if let Some(f) = raw::RedisModule_ReplyWithNullArray {
                        f(ctx);
                    }
                }
                Out::Array(items) => {
                    if let Some(f) = raw::RedisModule_ReplyWithArray {
                        f(ctx, items.len() as c_long);
                    }
                    for i in items {
                        i.emit(ctx);
                    }
                }
                Out::Map(pairs) => {
                    match raw::RedisModule_ReplyWithMap {
                        Some(f) => f(ctx, pairs.len() as c_long),
                        None => match raw::RedisModule_ReplyWithArray {
                            Some(f) => f(ctx, (pairs.len() * 2) as c_long),
                            None => return,
                        },
                    };
                    for (k, v) in pairs {
                        bulk(ctx, k.as_bytes());
                        v.emit(ctx);
                    }
                }
            }
        }
    }
}

fn bulk(ctx: *mut raw::RedisModuleCtx, b: &[u8]) {
    if let Some(f) = unsafe { raw::RedisModule_ReplyWithStringBuffer } {
        unsafe { f(ctx, b.as_ptr() as *const c_char, b.len()) };
    }
}
