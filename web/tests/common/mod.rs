//! aijob-web's test harness: the module's own (tests/common: a real redis-server with the
//! module on a free port), plus the built aijob-web and aijob-fetcher as child processes,
//! and a headless chromium through chromedriver.

#![allow(dead_code)]

#[path = "../../../tests/common/mod.rs"]
mod base;

pub use base::*;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed on drop, its output in a log file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    _tmp: TempDir,
}

impl Proc {
    pub fn spawn(tag: &str, program: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let tmp = TempDir::new(tag);
        let log = tmp.0.join(format!("{tag}.log"));
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(program);
        cmd.args(args).stdout(Stdio::from(out)).stderr(Stdio::from(err));
        // nothing of the test's environment reaches the child but what the test gives
        for k in
            ["REDIS_URL", "AIJOB_WEB_LISTEN", "AIJOB_WEB_TOKEN", "AIJOB_WEB_READ_ONLY", "AIJOB_QUEUES", "AIJOB_LISTEN"]
        {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        Proc { child, log, _tmp: tmp }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The dashboard under test, serving `redis` on a free loopback port.
pub struct Web {
    pub proc: Proc,
    pub port: u16,
}

impl Web {
    pub fn start(redis: &Server, extra: &[&str], env: &[(&str, &str)]) -> Web {
        Web::start_url(&redis.url(), extra, env)
    }

    /// The dashboard against any Redis URL (`redis+cluster://...` for a cluster).
    pub fn start_url(url: &str, extra: &[&str], env: &[(&str, &str)]) -> Web {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["--listen", listen.as_str(), "--redis-url", url];
        args.extend_from_slice(extra);
        let mut proc = Proc::spawn("web", env!("CARGO_BIN_EXE_aijob-web"), &args, env);
        wait_until(Duration::from_secs(15), "aijob-web to answer /healthz", || {
            assert!(proc.is_alive(), "aijob-web exited: {}", proc.log_text());
            std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        Web { proc, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// The fetcher, built beside this test binary (`cargo build` builds it; `make test` does).
pub fn fetcher_path() -> PathBuf {
    let p = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("aijob-fetcher")))
        .expect("the test binary's directory");
    assert!(p.exists(), "{} is missing: run `cargo build --workspace` first (make test does)", p.display());
    p
}

/// The fetcher serving `queues` of `redis` with the echo provider.
pub fn start_fetcher(redis: &Server, queues: &str) -> Proc {
    let path = fetcher_path();
    let url = redis.url();
    let args = ["--redis-url", url.as_str(), "--queues", queues, "--listen", "127.0.0.1:0"];
    Proc::spawn("fetcher", path.to_str().expect("utf-8 path"), &args, &[("AIJOB_LOG", "info")])
}

/// Whether the browser tests must run: they may skip only outside CI when chromium or
/// chromedriver is missing.
pub fn browser_available() -> bool {
    let found = |b: &str| which(b).is_some();
    let ok = found("chromedriver") && (found("chromium") || found("chromium-browser") || found("google-chrome"));
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if !ok && ci {
        panic!("CI=true: the browser tests need chromium and chromedriver (apt-get install chromium chromium-driver)");
    }
    if !ok {
        eprintln!("skipping: chromium or chromedriver is not installed (CI=true makes this a failure)");
    }
    ok
}

pub fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join(bin)).find(|p| p.is_file())
}

/// Where the tests put their screenshots: target/web-screenshots/.
pub fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    // target/debug/deps/<test> -> target/web-screenshots
    let target = exe.parent().and_then(|d| d.parent()).and_then(|d| d.parent()).expect("target dir");
    let dir = target.join("web-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}
