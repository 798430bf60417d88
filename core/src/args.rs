//! The shared tools of the command grammar (`grammar/`): keywords, the argument cursor,
//! strict integers, size checks, and the arguments many commands share (Q, id, PRIORITY,
//! STATUS, LIMIT n PERIOD ms).

use crate::error::{AiError, Result};
use crate::job::{Priority, Status};
use crate::json;
use crate::keys::QueueKeys;
use crate::names;
use crate::ratelimit::Window;

/// Longest keyword `Kw` upper-cases in place; every option name is shorter.
const KW_MAX: usize = 16;

/// An option keyword, upper-cased in a buffer on the stack: the parse runs on every call,
/// and an allocation inside Redis costs more than the parse itself. A longer word (no
/// option is that long) reads as its own text, so it matches nothing and the error
/// message still names it.
pub struct Kw<'a> {
    upper: [u8; KW_MAX],
    len: usize,
    raw: &'a [u8],
}

impl<'a> Kw<'a> {
    pub fn new(raw: &'a [u8]) -> Kw<'a> {
        let mut upper = [0u8; KW_MAX];
        let len = raw.len();
        if let Some(dst) = upper.get_mut(..len) {
            dst.copy_from_slice(raw);
            dst.make_ascii_uppercase();
        }
        Kw { upper, len, raw }
    }

    pub fn as_str(&self) -> &str {
        let bytes = self.upper.get(..self.len).unwrap_or(self.raw);
        std::str::from_utf8(bytes).unwrap_or("?")
    }
}

impl std::ops::Deref for Kw<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for Kw<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Kw<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Walks the arguments after the command name. Option keywords match in any case.
pub struct Cursor<'a> {
    args: &'a [&'a [u8]],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(args: &'a [&'a [u8]]) -> Self {
        Cursor { args, pos: 0 }
    }

    /// The next word. Not `Iterator::next`: as an iterator the cursor's own readers
    /// (`count`, `value`) would clash with the iterator's methods of the same names.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<&'a [u8]> {
        let a = self.args.get(self.pos).copied();
        if a.is_some() {
            self.pos += 1;
        }
        a
    }

    pub fn peek(&self) -> Option<&'a [u8]> {
        self.args.get(self.pos).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.args.len()
    }

    /// The next option keyword, upper-cased, or None at the end.
    pub fn keyword(&mut self) -> Option<Kw<'a>> {
        self.next().map(Kw::new)
    }

    /// The value after option `opt`.
    pub fn value(&mut self, opt: &str) -> Result<&'a [u8]> {
        self.next().ok_or_else(|| AiError::arg(opt, "needs a value"))
    }

    /// A non-negative integer after option `opt`.
    pub fn count(&mut self, opt: &str) -> Result<i64> {
        let v = self.value(opt)?;
        non_negative(opt, v)
    }

    /// A JSON value after option `opt`, at most `max_bytes` long.
    pub fn json(&mut self, opt: &str, max_bytes: i64) -> Result<&'a [u8]> {
        let v = self.value(opt)?;
        check_size(opt, v, max_bytes)?;
        json::validate(opt, v)?;
        Ok(v)
    }

    /// A JSON object after option `opt`.
    pub fn json_object(&mut self, opt: &str, max_bytes: i64) -> Result<&'a [u8]> {
        let v = self.value(opt)?;
        check_size(opt, v, max_bytes)?;
        json::validate_object(opt, v)?;
        Ok(v)
    }

    /// A name (id, group, schedule) after option `opt`.
    pub fn name(&mut self, opt: &str) -> Result<&'a [u8]> {
        let v = self.value(opt)?;
        names::validate(opt, v)?;
        Ok(v)
    }
}

pub fn check_size(arg: &str, v: &[u8], max_bytes: i64) -> Result<()> {
    if v.len() as i64 > max_bytes {
        return Err(AiError::too_big(arg, v.len(), max_bytes));
    }
    Ok(())
}

/// An integer as Redis parses them: optional '-', digits, no spaces, no '+'.
pub fn integer(arg: &str, v: &[u8]) -> Result<i64> {
    let text = std::str::from_utf8(v).map_err(|_| AiError::arg(arg, "must be an integer"))?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AiError::arg(arg, format!("must be an integer, got '{text}'")));
    }
    text.parse::<i64>().map_err(|_| AiError::arg(arg, "is out of range"))
}

pub fn non_negative(arg: &str, v: &[u8]) -> Result<i64> {
    let n = integer(arg, v)?;
    if n < 0 {
        return Err(AiError::arg(arg, format!("must not be negative, got {n}")));
    }
    Ok(n)
}

pub fn positive(arg: &str, v: &[u8]) -> Result<i64> {
    let n = integer(arg, v)?;
    if n <= 0 {
        return Err(AiError::arg(arg, format!("must be positive, got {n}")));
    }
    Ok(n)
}

/// The error of a word no option of the command matches.
pub fn unknown(option: &str) -> AiError {
    AiError::syntax(format!("unknown option '{option}'"))
}

/// Sets an option that may be given once.
pub fn once<T>(slot: &mut Option<T>, opt: &str, value: T) -> Result<()> {
    if slot.is_some() {
        return Err(AiError::arg(opt, "given twice"));
    }
    *slot = Some(value);
    Ok(())
}

/// The queue name, the first argument of most commands.
pub fn queue(c: &mut Cursor) -> Result<QueueKeys> {
    QueueKeys::new(c.next().ok_or_else(|| AiError::arg("Q", "is missing"))?)
}

pub fn job_id<'a>(c: &mut Cursor<'a>) -> Result<&'a [u8]> {
    let id = c.next().ok_or_else(|| AiError::arg("id", "is missing"))?;
    names::validate("id", id)?;
    Ok(id)
}

pub fn priority(v: &[u8]) -> Result<Priority> {
    Priority::parse(v).ok_or_else(|| AiError::arg("PRIORITY", "must be high, normal or low"))
}

pub fn status(v: &[u8]) -> Result<Status> {
    Status::parse(v).ok_or_else(|| {
        AiError::arg(
            "STATUS",
            format!("'{}' is not one of queued, delayed, running, done, error, canceled", String::from_utf8_lossy(v)),
        )
    })
}

/// `n PERIOD ms` after a LIMIT keyword.
pub fn limit_period(c: &mut Cursor) -> Result<Window> {
    let limit = positive("LIMIT", c.value("LIMIT")?)?;
    if !c.next().is_some_and(|k| k.eq_ignore_ascii_case(b"PERIOD")) {
        return Err(AiError::arg("LIMIT", "must be followed by PERIOD ms"));
    }
    let period = positive("PERIOD", c.value("PERIOD")?)?;
    Ok(Window { limit, period })
}

/// Splits a test line into words, as a client sends them.
#[cfg(test)]
pub(crate) mod testing {
    pub fn a(s: &str) -> Vec<Vec<u8>> {
        s.split(' ').map(|x| x.as_bytes().to_vec()).collect()
    }

    pub fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
        v.iter().map(|x| x.as_slice()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_strict() {
        assert_eq!(integer("N", b"-12").unwrap(), -12);
        for bad in ["+1", " 1", "1 ", "", "-", "1e3", "99999999999999999999"] {
            assert!(integer("N", bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
