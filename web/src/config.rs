//! aijob-web's settings: flags with environment fallbacks, checked once at startup.

use std::net::SocketAddr;

use clap::Parser;

#[derive(Parser, Clone)]
#[command(name = "aijob-web", version, about = "A dashboard for aijob: see and steer every queue from a browser")]
pub struct Args {
    /// Address to serve on. Beyond loopback a credential (--token) is required.
    #[arg(long, env = "AIJOB_WEB_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The Redis with the aijob module; `redis+cluster://h1:p1,h2:p2` for a cluster.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Show no actions and refuse every state change.
    #[arg(long, env = "AIJOB_WEB_READ_ONLY")]
    pub read_only: bool,
    /// The credential: a token (sent as `Authorization: Bearer <token>`, or as the password
    /// of HTTP basic auth with any user name), or `user:password` for basic auth only.
    #[arg(long, env = "AIJOB_WEB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// How requests prove who they are.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    None,
    /// A token: bearer, or the basic-auth password with any user.
    Token(String),
    /// Basic auth with this user and password.
    Basic {
        user: String,
        password: String,
    },
}

/// The checked settings.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub redis_url: String,
    pub read_only: bool,
    pub credential: Credential,
}

// Written by hand so that no credential, and no password in REDIS_URL, reaches a log.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("redis_url", &redact_url(&self.redis_url))
            .field("read_only", &self.read_only)
            .field("credential", &if self.credential == Credential::None { "none" } else { "[set]" })
            .finish()
    }
}

impl Config {
    pub fn from_args(a: Args) -> anyhow::Result<Config> {
        let credential = match a.token.as_deref().map(str::trim) {
            None | Some("") => Credential::None,
            Some(t) => match t.split_once(':') {
                Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                    Credential::Basic { user: user.to_string(), password: password.to_string() }
                }
                Some(_) => anyhow::bail!("AIJOB_WEB_TOKEN: 'user:password' needs both parts"),
                None => Credential::Token(t.to_string()),
            },
        };
        if let Credential::Token(t) = &credential {
            if t.len() < 12 {
                anyhow::bail!("AIJOB_WEB_TOKEN: a token needs at least 12 characters");
            }
        }
        if !a.listen.ip().is_loopback() && credential == Credential::None {
            anyhow::bail!(
                "refusing to listen on {} without a credential: anyone who reaches it could retry, \
                 cancel and delete jobs. Set AIJOB_WEB_TOKEN (a token, or user:password), or listen \
                 on 127.0.0.1",
                a.listen
            );
        }
        Ok(Config { listen: a.listen, redis_url: a.redis_url, read_only: a.read_only, credential })
    }
}

/// The URL with any password replaced by `[redacted]`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    match rest.rsplit_once('@') {
        Some((auth, host)) => {
            let user = auth.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:[redacted]@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(words: &[&str]) -> anyhow::Result<Config> {
        let mut argv = vec!["aijob-web"];
        argv.extend_from_slice(words);
        Config::from_args(Args::try_parse_from(argv)?)
    }

    #[test]
    fn loopback_needs_no_credential_elsewhere_one_is_required() {
        assert!(cfg(&["--listen", "127.0.0.1:9000"]).is_ok());
        assert!(cfg(&["--listen", "[::1]:9000"]).is_ok());
        let e = cfg(&["--listen", "0.0.0.0:9000"]).err().unwrap().to_string();
        assert!(e.contains("refusing to listen on 0.0.0.0:9000 without a credential"), "{e}");
        assert!(cfg(&["--listen", "0.0.0.0:9000", "--token", "a-long-enough-token"]).is_ok());
        assert!(cfg(&["--listen", "0.0.0.0:9000", "--token", "ops:pw"]).is_ok());
    }

    #[test]
    fn credentials_parse_and_never_show() {
        let c = cfg(&["--token", "ops:s3cret", "--redis-url", "redis://u:hunter2@h:1/0"]).unwrap();
        assert!(matches!(&c.credential, Credential::Basic { user, .. } if user == "ops"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("hunter2"), "{shown}");
        assert!(cfg(&["--token", "short"]).is_err());
        assert!(cfg(&["--token", ":pw"]).is_err());
    }
}
