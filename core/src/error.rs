//! The error codes (docs/operations.md#error-codes) as one type. The first word of a message is the code
//! Redis shows in `INFO errorstats`, so every variant renders as `CODE message`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Syntax, arity or a bad value: the message names the argument.
    Err,
    NotFound,
    /// The job's status forbids this step: the message names both.
    BadState,
    /// The token does not match the current lease.
    LeaseLost,
    /// The running job was canceled.
    Canceled,
    /// Over a configured size limit.
    TooBig,
    Exists,
    /// A key holds a value of another type than the module expects.
    WrongType,
    /// Used memory is over `maxmemory`: new work waits (`crate::oom`).
    Oom,
    /// New work refused: the server's maxmemory-policy may evict aijob's keys.
    Eviction,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Err => "ERR",
            Code::NotFound => "NOTFOUND",
            Code::BadState => "BADSTATE",
            Code::LeaseLost => "LEASELOST",
            Code::Canceled => "CANCELED",
            Code::TooBig => "TOOBIG",
            Code::Exists => "EXISTS",
            Code::WrongType => "WRONGTYPE",
            Code::Oom => "OOM",
            Code::Eviction => "EVICTION",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiError {
    pub code: Code,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, AiError>;

impl AiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        AiError { code, message: message.into() }
    }

    /// `ERR` for a bad argument; `arg` is the argument's name as the user typed it.
    pub fn arg(arg: &str, problem: impl fmt::Display) -> Self {
        AiError::new(Code::Err, format!("{arg} {problem}"))
    }

    pub fn syntax(problem: impl Into<String>) -> Self {
        AiError::new(Code::Err, problem)
    }

    pub fn wrong_arity(command: &str) -> Self {
        AiError::new(Code::Err, format!("wrong number of arguments for '{}' command", command.to_ascii_lowercase()))
    }

    pub fn wrong_type() -> Self {
        AiError::new(Code::WrongType, "Operation against a key holding the wrong kind of value")
    }

    /// A value the module wrote itself no longer parses: somebody edited the key by hand.
    pub fn corrupt(what: &str) -> Self {
        AiError::new(Code::Err, format!("corrupt {what}: the key was changed outside aijob"))
    }

    pub fn not_found(what: impl fmt::Display) -> Self {
        AiError::new(Code::NotFound, format!("{what}"))
    }

    pub fn too_big(arg: &str, len: usize, limit: i64) -> Self {
        AiError::new(Code::TooBig, format!("{arg} is {len} bytes, over max-payload-bytes {limit}"))
    }
}

impl fmt::Display for AiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for AiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_code_first() {
        let e = AiError::arg("PRIORITY", "must be high, normal or low");
        assert_eq!(e.to_string(), "ERR PRIORITY must be high, normal or low");
        assert_eq!(AiError::wrong_type().to_string().split(' ').next(), Some("WRONGTYPE"));
        assert!(AiError::wrong_arity("JOB.GET").to_string().contains("'job.get'"));
    }
}
