//! The providers a payload, a flag or a metric label names.

use std::fmt;
use std::str::FromStr;

/// The providers a payload may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProviderName {
    Gemini,
    OpenAi,
    Http,
    Echo,
}

impl ProviderName {
    pub const ALL: [ProviderName; 4] =
        [ProviderName::Gemini, ProviderName::OpenAi, ProviderName::Http, ProviderName::Echo];

    /// As in payloads, flags, keys and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderName::Gemini => "gemini",
            ProviderName::OpenAi => "openai",
            ProviderName::Http => "http",
            ProviderName::Echo => "echo",
        }
    }

    /// The metric label of a job's provider: `unknown` when its payload named none we know.
    pub fn label(p: Option<ProviderName>) -> &'static str {
        p.map_or("unknown", ProviderName::as_str)
    }
}

impl FromStr for ProviderName {
    type Err = String;

    fn from_str(s: &str) -> Result<ProviderName, String> {
        ProviderName::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = ProviderName::ALL.iter().map(|p| p.as_str()).collect();
            format!("unknown provider (one of {})", names.join(", "))
        })
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in ProviderName::ALL {
            assert_eq!(p.as_str().parse::<ProviderName>(), Ok(p));
        }
        assert_eq!(
            "Gemini".parse::<ProviderName>(),
            Err("unknown provider (one of gemini, openai, http, echo)".into())
        );
        assert_eq!(ProviderName::label(None), "unknown");
    }
}
