//! Hand-written: `redis+cluster://h1,h2` is this project's own URL form (the redis crate reads
//! one node per URL).
//!
//! `--redis-url` read without connecting: the seed URLs of a `redis+cluster://` URL, the
//! form safe to log, and the passwords the redactor must know.

use percent_encoding::percent_decode_str;

use crate::secret::Secret;

/// What `--redis-url` names.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// As given (it may hold a password: log [`RedisUrl::redacted`] instead).
    pub text: String,
    /// The URLs to connect to (the seed nodes of a cluster).
    pub seeds: Vec<String>,
    /// The URL asks for cluster mode (`redis+cluster://`).
    pub cluster: bool,
}

impl RedisUrl {
    /// `redis+cluster://[auth@]h1:p1,h2:p2[/...]` gives the seeds `redis://[auth@]h1:p1[/...]`
    /// and `redis://[auth@]h2:p2[/...]`; any other URL is its own single seed. The error never
    /// repeats the URL (it may hold a password).
    pub fn parse(url: &str) -> Result<RedisUrl, String> {
        let text = url.trim().to_string();
        let Some(rest) = text.strip_prefix("redis+cluster://") else {
            return Ok(RedisUrl { seeds: vec![text.clone()], text, cluster: false });
        };
        let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let (auth, hosts) = match authority.rsplit_once('@') {
            Some((a, h)) => (format!("{a}@"), h),
            None => (String::new(), authority),
        };
        let seeds: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| format!("redis://{auth}{h}{tail}"))
            .collect();
        if seeds.is_empty() {
            return Err("redis+cluster:// names no host".into());
        }
        Ok(RedisUrl { text, seeds, cluster: true })
    }

    /// The URL without its password (`redis://user:pw@host` -> `redis://user:[redacted]@host`).
    pub fn redacted(&self) -> String {
        redact(&self.text)
    }

    /// The passwords of the seeds, as written and percent-decoded, for the redactor.
    pub fn passwords(&self) -> Vec<Secret> {
        let mut out = Vec::new();
        for seed in &self.seeds {
            let Some(pw) = reqwest::Url::parse(seed).ok().and_then(|u| u.password().map(str::to_string)) else {
                continue;
            };
            if let Ok(decoded) = percent_decode_str(&pw).decode_utf8() {
                if decoded != pw {
                    out.push(Secret::new(&decoded));
                }
            }
            out.push(Secret::new(&pw));
        }
        out
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => {
            let user = authority[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:[redacted]@{}", &rest[at + 1..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_give_seeds() {
        let u = RedisUrl::parse("redis+cluster://:pw@h1:1,h2:2/?protocol=resp2").unwrap();
        assert!(u.cluster);
        assert_eq!(u.seeds, vec!["redis://:pw@h1:1/?protocol=resp2", "redis://:pw@h2:2/?protocol=resp2"]);
        let single = RedisUrl::parse(" redis://h:1 ").unwrap();
        assert_eq!((single.seeds, single.cluster), (vec!["redis://h:1".to_string()], false));
        assert!(RedisUrl::parse("redis+cluster://").is_err());
        let u = RedisUrl::parse("redis+cluster://u:pw@h1:1,h2:2").unwrap();
        assert_eq!(u.redacted(), "redis+cluster://u:[redacted]@h1:1,h2:2");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://:[redacted]@h:1/0");
        assert_eq!(redact("redis://u:pw@h"), "redis://u:[redacted]@h");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        let u = RedisUrl::parse("redis://:secret-pw@h:1").unwrap();
        assert_eq!(format!("{u:?}"), "\"redis://:[redacted]@h:1\"");
    }

    #[test]
    fn passwords_reach_the_redactor_decoded_too() {
        let u = RedisUrl::parse("redis+cluster://u:p%40ss@h1:1,h2:2").unwrap();
        let pws: Vec<String> = u.passwords().iter().map(|s| s.expose().to_string()).collect();
        assert!(pws.contains(&"p%40ss".to_string()) && pws.contains(&"p@ss".to_string()), "{pws:?}");
    }
}
