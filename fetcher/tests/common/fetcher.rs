//! The built `aijob-fetcher` binary as a child process, its stderr in a log file, killed
//! on drop.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, wait_until, Server, TempDir};

/// Variables of the fetcher that the test environment must not leak into a test.
const ENV: [&str; 29] = [
    "REDIS_URL",
    "AIJOB_CLUSTER",
    "AIJOB_DISCOVER_MS",
    "AIJOB_QUEUE_PROVIDERS",
    "AIJOB_RL_SCOPE",
    "AIJOB_LOG",
    "AIJOB_LOG_FORMAT",
    "AIJOB_QUEUES",
    "AIJOB_CONCURRENCY",
    "AIJOB_LEASE_MS",
    "AIJOB_GRACE",
    "AIJOB_TIMEOUT",
    "AIJOB_RPM",
    "AIJOB_TPM",
    "AIJOB_RL_PREFIX",
    "AIJOB_RL_PERIOD_MS",
    "AIJOB_FALLBACK",
    "AIJOB_FALLBACK_429_WAIT_MS",
    "AIJOB_COOLDOWN_MS",
    "AIJOB_COOLDOWN_FAILURES",
    "AIJOB_COOLDOWN_WINDOW_MS",
    "AIJOB_LISTEN",
    "GEMINI_API_KEY",
    "GEMINI_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "AIJOB_HTTP_ENDPOINTS",
    "AIJOB_WORKER",
    "AIJOB_CLAIM_BLOCK_MS",
];

pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_aijob-fetcher")
}

pub struct Fetcher {
    pub child: Child,
    pub log: PathBuf,
    /// The /healthz and /metrics port.
    pub listen_port: u16,
    _tmp: TempDir,
}

impl Fetcher {
    /// Starts the fetcher against `redis` with `args` (after `--redis-url` and `--listen`)
    /// and `env` (nothing else of the test's environment reaches it).
    pub fn start(redis: &Server, args: &[&str], env: &[(&str, &str)]) -> Fetcher {
        Fetcher::start_url(&redis.url(), args, env)
    }

    pub fn start_url(url: &str, args: &[&str], env: &[(&str, &str)]) -> Fetcher {
        let tmp = TempDir::new("fetcher");
        let log = tmp.0.join("fetcher.log");
        let listen_port = free_port();
        let mut cmd = Command::new(exe());
        for v in ENV {
            cmd.env_remove(v);
        }
        cmd.env_remove("RUST_LOG");
        cmd.arg("--redis-url").arg(url).arg("--listen").arg(format!("127.0.0.1:{listen_port}"));
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = File::create(&log).expect("fetcher log");
        let err = out.try_clone().expect("fetcher log");
        let child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn().expect("spawn aijob-fetcher");
        Fetcher { child, log, listen_port, _tmp: tmp }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().expect("kill");
        assert!(st.success(), "kill -{sig} failed");
    }

    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// SIGKILL, and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            if Instant::now() > deadline {
                panic!("the fetcher did not exit within {timeout:?}; log:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET on the fetcher's own HTTP server: (status, body), or None when nothing listens.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.listen_port, path)
    }

    /// Waits until the metrics server answers (the fetcher is up).
    pub fn wait_ready(&self) {
        wait_until(Duration::from_secs(10), "the fetcher's /metrics", || self.get("/metrics").map(|_| ()));
    }

    pub fn metrics(&self) -> String {
        self.get("/metrics").map(|(_, b)| b).unwrap_or_default()
    }

    /// The value of one sample of /metrics (`name{labels}` exactly as printed), 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        metric_value(&self.metrics(), sample)
    }
}

pub fn metric_value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.trim().parse().unwrap_or(0.0))
        })
        .unwrap_or(0.0)
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- fetcher log ({}) ----\n{}", self.log.display(), self.logs());
        }
    }
}

pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}
