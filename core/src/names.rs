//! Name rules shared by queues, job ids, schedule names and groups.

use crate::error::{AiError, Result};

/// Longest queue name, job id, schedule name or group name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-')
}

/// 1 to 128 bytes of `[A-Za-z0-9_.:-]`. `what` names the argument in the error.
pub fn validate(what: &str, name: &[u8]) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(AiError::arg(what, format!("must be 1 to {MAX_NAME_LEN} bytes")));
    }
    if let Some(bad) = name.iter().find(|b| !allowed(**b)) {
        return Err(AiError::arg(what, format!("has a character outside [A-Za-z0-9_.:-] (byte 0x{bad:02x})")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(validate("Q", b"sketch-0.v1:improve_x").is_ok());
        assert!(validate("Q", &[b'a'; 128]).is_ok());
    }

    #[test]
    fn refuses_empty_long_and_braces() {
        assert!(validate("Q", b"").is_err());
        assert!(validate("Q", &[b'a'; 129]).is_err());
        let e = validate("Q", b"a{b}").unwrap_err();
        assert!(e.message.starts_with("Q "), "{}", e.message);
        assert!(validate("ID", b"a b").is_err());
        assert!(validate("ID", "é".as_bytes()).is_err());
    }
}
