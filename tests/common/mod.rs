//! The integration-test harness: a real `redis-server --loadmodule` on a free port per
//! test, a real client, and waits that poll instead of sleeping a fixed time.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use redis::{Connection, Value};

/// The module under test: `AIJOB_MODULE`, else `libaijob.so` of the target directory this
/// test binary was built into (`target/debug/deps/<test>` -> `target/debug/libaijob.so`,
/// whatever CARGO_TARGET_DIR is), else the workspace's `target/debug`. `cargo test` does
/// not build it: run `cargo build` first (`make test` does).
pub fn module_path() -> PathBuf {
    if let Ok(p) = std::env::var("AIJOB_MODULE") {
        return PathBuf::from(p);
    }
    let built_beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("libaijob.so")))
        .filter(|p| p.exists());
    let p = built_beside.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/libaijob.so"));
    assert!(p.exists(), "the module {} is missing: run `cargo build` at the workspace root first", p.display());
    p
}

/// The server binary: `AIJOB_SERVER` (e.g. valkey-server), else redis-server.
pub fn server_binary() -> String {
    std::env::var("AIJOB_SERVER").unwrap_or_else(|_| "redis-server".to_string())
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let p = std::env::temp_dir().join(format!("aijob-test-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How to start a server.
#[derive(Clone, Default)]
pub struct Opts {
    /// Extra `--name value` configuration.
    pub config: Vec<(String, String)>,
    /// Module arguments (`--loadmodule path args...`).
    pub module_args: Vec<String>,
    /// Start without the module.
    pub no_module: bool,
    /// Reuse this data directory (for restarts).
    pub dir: Option<PathBuf>,
    pub port: Option<u16>,
}

impl Opts {
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.config.push((name.to_string(), value.to_string()));
        self
    }

    pub fn aof_always(self) -> Self {
        self.with("appendonly", "yes").with("appendfsync", "always")
    }
}

/// A running redis-server, killed on drop.
pub struct Server {
    pub port: u16,
    pub child: Child,
    pub dir: PathBuf,
    _tmp: Option<TempDir>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(Opts::default())
    }

    pub fn start_with(opts: Opts) -> Server {
        let mut last_err = String::new();
        for _ in 0..5 {
            match Server::try_start(opts.clone()) {
                Ok(s) => return s,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start a server: {last_err}");
    }

    pub fn try_start(opts: Opts) -> Result<Server, String> {
        let port = opts.port.unwrap_or_else(free_port);
        let (dir, tmp) = match &opts.dir {
            Some(d) => (d.clone(), None),
            None => {
                let t = TempDir::new("srv");
                (t.0.clone(), Some(t))
            }
        };
        let mut cmd = Command::new(server_binary());
        cmd.arg("--port").arg(port.to_string());
        cmd.arg("--bind").arg("127.0.0.1");
        cmd.arg("--dir").arg(&dir);
        cmd.arg("--save").arg("");
        cmd.arg("--enable-debug-command").arg("yes");
        cmd.arg("--logfile").arg(dir.join("server.log"));
        if !opts.no_module {
            cmd.arg("--loadmodule").arg(module_path());
            for a in &opts.module_args {
                cmd.arg(a);
            }
        }
        for (k, v) in &opts.config {
            cmd.arg(format!("--{k}")).arg(v);
        }
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().map_err(|e| format!("spawn: {e}"))?;
        let mut server = Server { port, child, dir, _tmp: tmp };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("server exited: {status}; log: {}", server.log_tail()));
            }
            if let Ok(mut c) = server.try_connect() {
                let pong: redis::RedisResult<String> = redis::cmd("PING").query(&mut c);
                if pong.is_ok() {
                    return Ok(server);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("server did not answer PING; log: {}", server.log_tail()))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn try_connect(&self) -> redis::RedisResult<Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))
    }

    pub fn conn(&self) -> Connection {
        self.try_connect().expect("connect")
    }

    /// A RESP3 connection.
    pub fn conn3(&self) -> Connection {
        let url = format!("redis://127.0.0.1:{}/?protocol=resp3", self.port);
        redis::Client::open(url).expect("client").get_connection().expect("connect resp3")
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Kills the server with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` until it returns Some, or panics after `timeout` with `what`.
///
/// The timeout is stretched by `AIJOB_TEST_TIMEOUT_SCALE` (default 3): a wait ends as soon
/// as its condition holds, so a long timeout costs a passing test nothing, while a starved
/// machine (a shared CI runner, parallel builds) stretches every tick and every reply.
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let timeout = timeout * timeout_scale();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How much longer than written every wait may take (`AIJOB_TEST_TIMEOUT_SCALE`, default 3).
pub fn timeout_scale() -> u32 {
    std::env::var("AIJOB_TEST_TIMEOUT_SCALE").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(3)
}

/// Runs a command given as words.
pub fn cmd(c: &mut Connection, words: &[&str]) -> redis::RedisResult<Value> {
    let mut command = redis::cmd(words[0]);
    for w in &words[1..] {
        command.arg(*w);
    }
    command.query(c)
}

/// Runs a command that must succeed.
pub fn ok(c: &mut Connection, words: &[&str]) -> Value {
    cmd(c, words).unwrap_or_else(|e| panic!("{words:?} failed: {e}"))
}

/// Runs a command that must fail; returns the error text (code first).
pub fn err(c: &mut Connection, words: &[&str]) -> String {
    match cmd(c, words) {
        Ok(v) => panic!("{words:?} should fail, got {v:?}"),
        Err(e) => error_text(&e),
    }
}

pub fn error_text(e: &redis::RedisError) -> String {
    match e.code() {
        Some(code) => format!("{code} {}", e.detail().unwrap_or("")),
        None => e.to_string(),
    }
}

pub fn s(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        Value::VerbatimString { text, .. } => text.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

pub fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        Value::BulkString(b) => String::from_utf8_lossy(b).parse().expect("integer string"),
        other => panic!("not an integer: {other:?}"),
    }
}

/// A map reply (RESP3 map or RESP2 flat array) as (field, value) pairs.
pub fn pairs(v: &Value) -> Vec<(String, Value)> {
    match v {
        Value::Map(m) => m.iter().map(|(k, v)| (s(k), v.clone())).collect(),
        Value::Array(a) => a.chunks(2).map(|p| (s(&p[0]), p[1].clone())).collect(),
        other => panic!("not a map: {other:?}"),
    }
}

pub fn field(v: &Value, name: &str) -> Option<Value> {
    pairs(v).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

pub fn fs(v: &Value, name: &str) -> String {
    s(&field(v, name).unwrap_or_else(|| panic!("no field {name} in {v:?}")))
}

pub fn fi(v: &Value, name: &str) -> i64 {
    int(&field(v, name).unwrap_or_else(|| panic!("no field {name} in {v:?}")))
}

pub fn array(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Nil => vec![],
        other => panic!("not an array: {other:?}"),
    }
}

pub fn digest(c: &mut Connection) -> String {
    s(&ok(c, &["DEBUG", "DIGEST"]))
}

/// Every key name, sorted.
pub fn keys(c: &mut Connection) -> Vec<String> {
    let mut k: Vec<String> = array(&ok(c, &["KEYS", "*"])).iter().map(s).collect();
    k.sort();
    k
}

/// A queue stat from QUEUE.STATS.
pub fn stat(c: &mut Connection, q: &str, name: &str) -> i64 {
    fi(&ok(c, &["QUEUE.STATS", q]), name)
}

/// Creates a job and returns its id.
pub fn create(c: &mut Connection, q: &str, extra: &[&str]) -> String {
    let mut w = vec!["JOB.CREATE", q, "PAYLOAD", "{\"n\":1}"];
    w.extend_from_slice(extra);
    s(&ok(c, &w))
}

/// Claims one job: (id, token), or None.
pub fn claim(c: &mut Connection, q: &str, extra: &[&str]) -> Option<(String, String)> {
    let mut w = vec!["JOB.CLAIM", q];
    w.extend_from_slice(extra);
    let got = array(&ok(c, &w));
    got.first().map(|r| (fs(r, "id"), fs(r, "token")))
}

/// Makes `replica` a replica of `master` and waits until it is in sync.
pub fn replicate(master: &Server, replica: &Server) {
    let mut r = replica.conn();
    ok(&mut r, &["REPLICAOF", "127.0.0.1", &master.port.to_string()]);
    wait_until(Duration::from_secs(20), "replica link up", || {
        let info = s(&ok(&mut r, &["INFO", "replication"]));
        info.contains("master_link_status:up").then_some(())
    });
}

/// Waits until the replica has processed everything the master sent so far.
pub fn wait_synced(master: &Server, replica: &Server) {
    let mut m = master.conn();
    let mut r = replica.conn();
    wait_until(Duration::from_secs(20), "replica offset to catch up", || {
        let mo = offset(&s(&ok(&mut m, &["INFO", "replication"])), "master_repl_offset");
        let ro = offset(&s(&ok(&mut r, &["INFO", "replication"])), "slave_repl_offset")
            .or_else(|| offset(&s(&ok(&mut r, &["INFO", "replication"])), "master_repl_offset"));
        (mo.is_some() && mo == ro).then_some(())
    });
}

fn offset(info: &str, name: &str) -> Option<i64> {
    info.lines().find_map(|l| l.strip_prefix(&format!("{name}:"))?.trim().parse().ok())
}
pub mod cluster;

/// Runs `commands` in one MULTI/EXEC and returns their replies: reads that must agree with
/// each other see one state, with no timer tick between them.
pub fn atomically(c: &mut Connection, commands: &[&[&str]]) -> Vec<Value> {
    let mut p = redis::pipe();
    p.atomic();
    for words in commands {
        let mut command = redis::cmd(words[0]);
        for w in &words[1..] {
            command.arg(*w);
        }
        p.add_command(command);
    }
    p.query(c).unwrap_or_else(|e| panic!("{commands:?} failed: {e}"))
}

/// The module timer's tick count (`INFO aijob`).
pub fn timer_ticks(c: &mut Connection) -> i64 {
    let info = s(&ok(c, &["INFO", "aijob"]));
    offset(&info, "aijob_timer_ticks").expect("INFO aijob shows aijob_timer_ticks")
}

/// Waits until the module timer has ticked `n` more times: the point by which anything it
/// would have done (a due schedule, an expired lease) is done, without guessing a sleep.
pub fn wait_ticks(c: &mut Connection, n: i64) {
    let start = timer_ticks(c);
    wait_until(Duration::from_secs(10), "timer ticks", || (timer_ticks(c) >= start + n).then_some(()));
}

/// Waits until the data stops changing: the same digest before and after three ticks.
pub fn wait_quiet(c: &mut Connection) {
    wait_until(Duration::from_secs(10), "the data to settle", || {
        let before = digest(c);
        wait_ticks(c, 3);
        (digest(c) == before).then_some(())
    });
}

/// An integer field of one `INFO` section, None when the section has no such field.
pub fn info_int(c: &mut Connection, section: &str, name: &str) -> Option<i64> {
    offset(&s(&ok(c, &["INFO", section])), name)
}

/// The replication offset and DEBUG DIGEST of one server, read in one MULTI so no write
/// (a command, the timer, the replication stream) falls between them.
fn offset_and_digest(c: &mut Connection, offset_field: &str) -> (i64, String) {
    let got = atomically(c, &[&["INFO", "replication"], &["DEBUG", "DIGEST"]]);
    let at = offset(&s(&got[0]), offset_field).unwrap_or_else(|| panic!("INFO replication has no {offset_field}"));
    (at, s(&got[1]))
}

/// The DEBUG DIGEST of the master and of its replica at one replication offset: the
/// replica's once it has applied all the master had sent, then the master's, kept only if
/// the master wrote nothing meanwhile (else tried again: the module's timer writes on its
/// own). The master is read last because a digest of a large dataset holds its event loop,
/// and the timer catches up with a write right after.
pub fn digests_at_one_offset(master: &Server, replica: &Server) -> (String, String) {
    let mut m = master.conn();
    let mut r = replica.conn();
    wait_until(Duration::from_secs(120), "a moment the master writes nothing while both digests are read", || {
        let at = offset(&s(&ok(&mut m, &["INFO", "replication"])), "master_repl_offset")?;
        wait_until(Duration::from_secs(20), "the replica offset to catch up", || {
            (offset(&s(&ok(&mut r, &["INFO", "replication"])), "slave_repl_offset")? >= at).then_some(())
        });
        let (replica_at, replica_digest) = offset_and_digest(&mut r, "slave_repl_offset");
        let (master_at, master_digest) = offset_and_digest(&mut m, "master_repl_offset");
        (replica_at == at && master_at == at).then_some((master_digest, replica_digest))
    })
}

/// Writes `marker` into the server's log (DEBUG LOG), a point to read warnings after.
pub fn mark_log(c: &mut Connection, marker: &str) {
    ok(c, &["DEBUG", "LOG", marker]);
}

/// The warning-level lines (`#`) a server logged after the line holding `marker` (see
/// `mark_log`; that line is a warning itself). Startup and a replica's first sync log known
/// warnings (memory overcommit, a diskless transfer's end); after the mark, one means
/// something went wrong.
pub fn warnings_after(srv: &Server, marker: &str) -> Vec<String> {
    let log = std::fs::read_to_string(srv.dir.join("server.log")).unwrap_or_default();
    assert!(log.contains(marker), "the mark {marker:?} is not in the log:\n{log}");
    log.lines()
        .skip_while(|l| !l.contains(marker))
        .skip(1)
        .filter(|l| l.split_whitespace().nth(5) == Some("#"))
        .map(str::to_string)
        .collect()
}
