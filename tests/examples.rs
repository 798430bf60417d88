//! The examples in examples/ run end to end: a real redis-server with the module, a worker
//! (aijob-fetcher with the echo provider), and each example run with REDIS_URL pointing at
//! them. The examples print one JSON line per step; the tests parse those and check the
//! server's state too. A language whose runtime is missing is skipped, with a line that says
//! so; under `CI=true` (`.ci/run` installs all four) it fails instead.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;
use serde_json::{json, Value as Json};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Says why a test did nothing, past the test harness's output capture, and passes; on CI,
/// where every runtime is installed, a missing one is a failure, not a silent pass.
fn skip(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and a runtime is missing: {why}");
    }
    let _ = writeln!(std::io::stderr(), "skipped: {why}");
}

fn works(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// The fetcher binary: `AIJOB_FETCHER`, else the workspace's debug build, when it is the real
/// worker (its --help names --redis-url; before the fetcher landed the binary was a stub).
pub fn fetcher_binary() -> Option<PathBuf> {
    let path = std::env::var_os("AIJOB_FETCHER")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/debug/aijob-fetcher"));
    let out = Command::new(&path).arg("--help").output().ok()?;
    let help = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    help.contains("--redis-url").then_some(path)
}

/// What works the examples' jobs: the fetcher, or, where it is not built, a stand-in thread
/// that does what its echo provider does (claim, heartbeat with progress, finish with the
/// request as the output).
pub struct Worker {
    child: Option<Child>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn start(srv: &Server, queues: &[&str]) -> Worker {
        let stop = Arc::new(AtomicBool::new(false));
        if let Some(bin) = fetcher_binary() {
            let log = std::fs::File::create(srv.dir.join("fetcher.log")).expect("fetcher log");
            let child = Command::new(bin)
                .env("REDIS_URL", srv.url())
                .env("AIJOB_QUEUES", queues.join(","))
                .arg("--lease")
                .arg("900") // heartbeats (progress events) every 300 ms
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start the fetcher");
            return Worker { child: Some(child), stop, thread: None };
        }
        let (url, queues, flag) = (srv.url(), queues.iter().map(|q| q.to_string()).collect::<Vec<_>>(), stop.clone());
        let thread = std::thread::spawn(move || echo_worker(&url, &queues, &flag));
        Worker { child: None, stop, thread: Some(thread) }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The stand-in for the fetcher's echo provider.
fn echo_worker(url: &str, queues: &[String], stop: &AtomicBool) {
    let Ok(mut c) = redis::Client::open(url).and_then(|cl| cl.get_connection()) else { return };
    while !stop.load(Ordering::Relaxed) {
        for q in queues {
            let Ok(got) = cmd(&mut c, &["JOB.CLAIM", q, "WORKER", "echo-stand-in", "LEASE", "5000", "BLOCK", "50"])
            else {
                continue;
            };
            for rec in array(&got) {
                let (id, token) = (fs(&rec, "id"), fs(&rec, "token"));
                let payload: Json = serde_json::from_str(&fs(&rec, "payload")).unwrap_or(Json::Null);
                let request = payload.get("request").cloned().unwrap_or(json!({}));
                let delay = request.get("delay_ms").and_then(Json::as_u64).unwrap_or(0).min(5000);
                for step in 1..=3 {
                    std::thread::sleep(Duration::from_millis(delay / 3));
                    let pct = (step * 33).to_string();
                    let _ = cmd(
                        &mut c,
                        &["JOB.UPDATE", q, &id, "TOKEN", &token, "PROGRESS", "calling echo", "PERCENT", &pct],
                    );
                }
                let text = request.get("text").cloned().unwrap_or(Json::Null);
                let result = json!({"provider": "echo", "model": payload.get("model"), "output": request, "text": text,
                    "usage": {"input_tokens": 1, "output_tokens": 1}});
                let _ = cmd(
                    &mut c,
                    &["JOB.UPDATE", q, &id, "TOKEN", &token, "STATUS", "done", "RESULT", &result.to_string()],
                );
            }
        }
    }
}

/// Runs an example to its end (at most `timeout`); its JSON lines. Panics with its output
/// when it fails or prints something that is not JSON.
fn run_example(mut cmd: Command, srv: &Server, timeout: Duration) -> Vec<Json> {
    cmd.env("REDIS_URL", srv.url()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    let pid = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let end = std::time::Instant::now() + timeout;
            while !done.load(Ordering::Relaxed) && std::time::Instant::now() < end {
                std::thread::sleep(Duration::from_millis(50));
            }
            if !done.load(Ordering::Relaxed) {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
        })
    };
    let out = child.wait_with_output().expect("wait for the example");
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let context = || {
        let fetcher_log = std::fs::read_to_string(srv.dir.join("fetcher.log")).unwrap_or_default();
        format!("{cmd:?}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}\nfetcher log:\n{fetcher_log}", out.status)
    };
    assert!(out.status.success(), "the example failed: {}", context());
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\n{}", context())))
        .collect()
}

/// The first line whose `step` is `name`.
fn step<'a>(lines: &'a [Json], name: &str) -> &'a Json {
    lines.iter().find(|l| l["step"] == name).unwrap_or_else(|| panic!("no step {name} in {lines:#?}"))
}

fn steps<'a>(lines: &'a [Json], name: &str) -> Vec<&'a Json> {
    lines.iter().filter(|l| l["step"] == name).collect()
}

/// A Python with redis-py: `AIJOB_PYTHON`, `python3`, or Debian's `/usr/bin/python3`
/// (apt's python3-redis installs there, beside a pyenv python3 that may lack it).
fn python() -> Option<String> {
    let candidates = [std::env::var("AIJOB_PYTHON").ok(), Some("python3".into()), Some("/usr/bin/python3".into())];
    candidates.into_iter().flatten().find(|p| works(Command::new(p).args(["-c", "import redis"])))
}

#[test]
fn python_analyze_artifact_cache_or_enqueue() {
    let Some(py) = python() else {
        return skip("python3/redis-py not installed (python3-redis, or pip install redis)");
    };
    let srv = Server::start();
    let _worker = Worker::start(&srv, &["analyze"]);
    let mut cmd = Command::new(py);
    cmd.arg(root().join("examples/python/analyze.py")).args(["--content", "service: checkout\nreplicas: 1"]);
    let lines = run_example(cmd, &srv, Duration::from_secs(60));

    let first = step(&lines, "submit");
    assert_eq!(first["outcome"], "queued", "a new artifact is a miss: {lines:#?}");
    let id = first["job_id"].as_str().expect("job id").to_string();
    let again = step(&lines, "submit-again");
    assert_eq!((again["outcome"].as_str(), again["job_id"].as_str()), (Some("pending"), Some(id.as_str())));
    let polled: Vec<&str> = steps(&lines, "poll").iter().filter_map(|l| l["status"].as_str()).collect();
    assert_eq!(polled.last(), Some(&"done"), "{polled:?}");
    let finished = step(&lines, "finished");
    let result = &finished["result"];
    assert_eq!(result["provider"], "echo");
    assert!(result["text"].as_str().unwrap_or("").contains("replicas: 1"), "{result}");
    let after = step(&lines, "submit-after");
    assert_eq!(after["outcome"], "hit");
    assert_eq!(&after["result"], result, "the hit answers the stored result");
    let listed = &step(&lines, "list")["jobs"];
    assert_eq!(listed[0]["job_id"], id.as_str());

    let mut c = srv.conn();
    let rec = ok(&mut c, &["JOB.GET", "analyze", &id]);
    assert_eq!(fs(&rec, "status"), "done");
    assert_eq!(serde_json::from_str::<Json>(&fs(&rec, "result")).unwrap(), *result);
    for (stat_name, want) in [("created", 1), ("completed", 1), ("coalesced", 1), ("hits", 1)] {
        assert_eq!(stat(&mut c, "analyze", stat_name), want, "{stat_name}");
    }
}

#[test]
fn python_generator_api_per_client_rate_limits() {
    let Some(py) = python() else {
        return skip("python3/redis-py not installed (python3-redis, or pip install redis)");
    };
    let srv = Server::start();
    let mut cmd = Command::new(py);
    cmd.arg(root().join("examples/python/ratelimit.py")).args(["--client", "alice", "--requests", "63"]);
    let lines = run_example(cmd, &srv, Duration::from_secs(60));

    let alice: Vec<&Json> = lines.iter().filter(|l| l["client"] == "alice").collect();
    assert_eq!(alice.len(), 63);
    let statuses: Vec<i64> = alice.iter().map(|l| l["status"].as_i64().unwrap()).collect();
    assert!(statuses[..60].iter().all(|s| *s == 200), "the first 60 in the minute pass: {statuses:?}");
    assert!(statuses[60..].iter().all(|s| *s == 429), "then 429: {statuses:?}");
    assert_eq!(alice[59]["headers"]["X-RateLimit-Remaining"], "0");
    let retry: i64 = alice[60]["headers"]["Retry-After"].as_str().unwrap().parse().unwrap();
    assert!((1..=61).contains(&retry), "Retry-After {retry}");
    let bob = lines.iter().find(|l| l["client"] == "alice-other").expect("the other client");
    assert_eq!(bob["status"], 200, "another client has its own budget");

    let mut c = srv.conn();
    let window = ["LIMIT", "60", "PERIOD", "60000", "LIMIT", "1000", "PERIOD", "3600000"];
    let mut w = vec!["RATELIMIT.PEEK", "rl:{alice}:generate"];
    w.extend(window);
    let peek = array(&ok(&mut c, &w));
    assert_eq!((int(&peek[0]), int(&peek[1])), (0, 0), "alice is out of requests for the minute");
    assert!(int(&peek[2]) > 0);
    let mut w = vec!["RATELIMIT.PEEK", "rl:{alice-other}:generate"];
    w.extend(window);
    assert_eq!(int(&array(&ok(&mut c, &w))[1]), 59);
}

#[test]
fn python_stream_follows_a_job_and_resumes_after_a_disconnect() {
    let Some(py) = python() else {
        return skip("python3/redis-py not installed (python3-redis, or pip install redis)");
    };
    let srv = Server::start();
    let mut cmd = Command::new(py);
    cmd.arg(root().join("examples/python/stream.py"));
    let lines = run_example(cmd, &srv, Duration::from_secs(60));

    let id = step(&lines, "submit")["job_id"].as_str().expect("job id").to_string();
    let produced = step(&lines, "produced")["text"].as_str().unwrap().to_string();
    let seq = |l: &Json| -> u64 { l["offset"].as_str().unwrap().split_once('-').unwrap().1.parse().unwrap() };
    let chunks = steps(&lines, "chunk");
    // a chunk's offset counts the bytes up to and including it: every byte once, in order
    let mut total = 0;
    for l in &chunks {
        total += l["data"].as_str().unwrap().len() as u64;
        assert_eq!(seq(l), total, "{lines:#?}");
    }
    let text: String = chunks.iter().map(|l| l["data"].as_str().unwrap()).collect();
    assert_eq!(text, produced, "printed as it arrived, nothing lost, nothing twice");

    // the reader's connection was killed halfway, and it resumed from its offset
    let at = |name: &str| lines.iter().position(|l| l["step"] == name).unwrap_or_else(|| panic!("no {name}"));
    let (gone, back) = (at("disconnected"), at("resumed"));
    assert_eq!(lines[gone]["after"], lines[back]["after"]);
    assert!(lines[..gone].iter().any(|l| l["step"] == "chunk") && lines[back..].iter().any(|l| l["step"] == "chunk"));
    let next = lines[back..].iter().find(|l| l["step"] == "chunk").unwrap();
    let after: u64 = lines[back]["after"].as_str().unwrap().split_once('-').unwrap().1.parse().unwrap();
    let len = next["data"].as_str().unwrap().len() as u64;
    assert_eq!(seq(next), after + len, "the first chunk after the resume follows the offset kept");
    let finished = step(&lines, "finished");
    assert_eq!((finished["status"].as_str(), finished["text"].as_str()), (Some("done"), Some(produced.as_str())));
    assert_eq!(step(&lines, "end")["status"], "done");

    let mut c = srv.conn();
    let rec = ok(&mut c, &["JOB.GET", "stream_demo", &id]);
    assert_eq!(fs(&rec, "status"), "done");
    let out = format!("aijob:{{stream_demo}}:out:{id}");
    assert_eq!(int(&ok(&mut c, &["XLEN", &out])) as usize, chunks.len() + 2, "attempt, chunks, end");
}

#[test]
fn python_flow_runs_a_graph_and_each_step_gets_its_inputs() {
    let Some(py) = python() else {
        return skip("python3/redis-py not installed (python3-redis, or pip install redis)");
    };
    let srv = Server::start();
    let mut cmd = Command::new(py);
    cmd.arg(root().join("examples/python/flow.py"));
    let lines = run_example(cmd, &srv, Duration::from_secs(60));

    let created = step(&lines, "created");
    assert_eq!((created["merge_status"].as_str(), created["merge_waiting_on"].as_i64()), (Some("waiting"), Some(3)));
    let claims = steps(&lines, "claimed");
    assert_eq!(claims.len(), 5, "transcribe, three summaries, merge: {lines:#?}");
    assert!(claims[0]["inputs"].as_array().unwrap().is_empty());
    let merge = claims.last().unwrap();
    let inputs = merge["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 3);
    assert!(inputs.iter().all(|i| i["status"] == "done"));
    let finished = step(&lines, "finished");
    assert_eq!(finished["result"]["merged"], "PART 0 OF THE TALK / PART 1 OF THE TALK / PART 2 OF THE TALK");
    let cascade = step(&lines, "cascade");
    assert_eq!((cascade["status"].as_str(), cascade["error_class"].as_str()), (Some("error"), Some("dependency")));

    let mut c = srv.conn();
    assert_eq!(stat(&mut c, "flow_demo", "waiting"), 0);
    assert_eq!(stat(&mut c, "flow_demo", "done"), 5);
}

/// examples/node with ioredis installed (from the committed lockfile) when it is missing.
fn node_ready() -> Result<(), String> {
    if !works(Command::new("node").arg("--version")) {
        return Err("node not installed (apt-get install nodejs npm)".into());
    }
    let dir = root().join("examples/node");
    if dir.join("node_modules/ioredis/package.json").exists() {
        return Ok(());
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .output()
        .map_err(|e| format!("npm not installed ({e}); apt-get install npm"))?;
    if !out.status.success() || !dir.join("node_modules/ioredis/package.json").exists() {
        return Err(format!("ioredis could not be installed by npm ci: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

#[test]
fn node_improve_sketch_with_progress_over_pubsub() {
    if let Err(why) = node_ready() {
        return skip(&why);
    }
    let srv = Server::start();
    let _worker = Worker::start(&srv, &["improve_sketch"]);
    let mut cmd = Command::new("node");
    cmd.arg(root().join("examples/node/improve-sketch.js"))
        .env("SKETCH_HINTS", "make it cleaner")
        .env("SKETCH_DELAY_MS", "1500");
    let lines = run_example(cmd, &srv, Duration::from_secs(60));

    let first = step(&lines, "submit");
    assert_eq!(first["kind"], "queued", "{lines:#?}");
    let id = first["id"].as_str().unwrap().to_string();
    // Every change of the job, from its creation on: the fetcher's (created, running, done),
    // plus progress where the worker reports it (the stand-in does).
    let events: Vec<&str> = steps(&lines, "event").iter().filter_map(|e| e["type"].as_str()).collect();
    let statuses: Vec<&str> = events.iter().copied().filter(|t| *t != "progress").collect();
    assert_eq!(statuses, ["created", "running", "done"], "{events:?}");
    let finished = step(&lines, "finished");
    assert_eq!(finished["status"], "done");
    assert!(finished["result"]["text"].as_str().unwrap_or("").contains("make it cleaner"), "{finished}");
    let after = step(&lines, "submit-after");
    assert_eq!((after["kind"].as_str(), &after["result"]), (Some("hit"), &finished["result"]));

    let mut c = srv.conn();
    assert_eq!(fs(&ok(&mut c, &["JOB.GET", "improve_sketch", &id]), "status"), "done");
    assert_eq!(stat(&mut c, "improve_sketch", "created"), 1, "the hit made no job");
}

#[test]
fn ruby_rails_cache_or_enqueue_and_status_polling() {
    if !works(Command::new("ruby").args(["-e", "require 'redis'"])) {
        return skip("ruby/redis-rb not installed (apt-get install ruby ruby-redis)");
    }
    let srv = Server::start();
    let _worker = Worker::start(&srv, &["improve_sketch"]);
    let mut cmd = Command::new("ruby");
    cmd.arg(root().join("examples/ruby/improve_sketch.rb")).env("SKETCH_HINTS", "bolder lines");
    let lines = run_example(cmd, &srv, Duration::from_secs(60));

    let mutation = step(&lines, "mutation");
    assert!(mutation["result"].is_null(), "a miss answers a request id: {mutation}");
    let id = mutation["request_id"].as_str().expect("request_id").to_string();
    let statuses: Vec<&str> = steps(&lines, "status").iter().filter_map(|l| l["status"].as_str()).collect();
    assert_eq!(statuses.last(), Some(&"done"), "{statuses:?}");
    let finished = step(&lines, "finished");
    assert!(finished["result"]["text"].as_str().unwrap_or("").contains("bolder lines"), "{finished}");
    let again = step(&lines, "mutation-again");
    assert!(again["request_id"].is_null(), "a hit answers the result at once: {again}");
    assert_eq!(again["result"], finished["result"]);

    let mut c = srv.conn();
    let rec = ok(&mut c, &["JOB.GET", "improve_sketch", &id]);
    assert_eq!(fs(&rec, "status"), "done");
    assert_eq!(stat(&mut c, "improve_sketch", "hits"), 1);
}

/// The Go example's binary, built offline against Debian's redigo.
fn go_build(out: &Path) -> Result<(), String> {
    let gopath = std::env::var("AIJOB_GOPATH").unwrap_or_else(|_| "/usr/share/gocode".into());
    if !works(Command::new("go").arg("version")) {
        return Err("go not installed (apt-get install golang-go golang-github-gomodule-redigo-dev)".into());
    }
    if !Path::new(&gopath).join("src/github.com/gomodule/redigo/redis").exists() {
        return Err(format!("redigo not found under {gopath} (apt-get install golang-github-gomodule-redigo-dev)"));
    }
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(out)
        .arg(".")
        .current_dir(root().join("examples/go"))
        .env("GO111MODULE", "off")
        .env("GOPATH", &gopath)
        .output()
        .map_err(|e| e.to_string())?;
    if !built.status.success() {
        panic!("the Go example does not build: {}", String::from_utf8_lossy(&built.stderr));
    }
    Ok(())
}

#[test]
fn go_asynq_style_worker_and_schedules() {
    let tmp = TempDir::new("goex");
    let bin = tmp.0.join("aijob-go-example");
    if let Err(why) = go_build(&bin) {
        return skip(&why);
    }
    let srv = Server::start();
    let mut cmd = Command::new(&bin);
    cmd.args(["-demo", "-timeout", "60s"]);
    let lines = run_example(cmd, &srv, Duration::from_secs(90));

    assert_eq!(lines.last().map(|l| l["step"].clone()), Some(json!("finished")), "{lines:#?}");
    let enqueued: Vec<(String, String)> = steps(&lines, "enqueue")
        .iter()
        .map(|l| (l["task"].as_str().unwrap().to_string(), l["id"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(enqueued.len(), 3);
    let handled = steps(&lines, "handled");
    let of = |id: &str| -> Vec<(String, String)> {
        handled
            .iter()
            .filter(|l| l["id"] == id)
            .map(|l| (l["attempt"].as_str().unwrap().to_string(), l["outcome"].as_str().unwrap().to_string()))
            .collect()
    };
    let mut c = srv.conn();
    for (task, id) in &enqueued {
        let rec = ok(&mut c, &["JOB.GET", "mirai", id]);
        assert_eq!(fs(&rec, "status"), "done", "{task}");
        if task == "stripe:provision" {
            assert_eq!(of(id), [("1".into(), "error".into()), ("2".into(), "done".into())], "retried once");
            assert_eq!(fi(&rec, "attempts"), 2);
        } else {
            assert_eq!(of(id), [("1".to_string(), "done".to_string())]);
        }
    }
    let scheduled: Vec<&&Json> = handled.iter().filter(|l| l["schedule"] == "cleanup:expired").collect();
    assert!(!scheduled.is_empty(), "the schedule ran and its job was handled: {lines:#?}");
    let sched = ok(&mut c, &["SCHEDULE.GET", "mirai", "cleanup:expired"]);
    assert!(fi(&sched, "runs") >= 1);
    assert_eq!(fi(&sched, "every"), 3_600_000, "the demo puts the hourly schedule back");
    assert_eq!(fs(&ok(&mut c, &["SCHEDULE.GET", "mirai", "stripe:reconcile"]), "cron"), "*/15 * * * *");
    assert_eq!(stat(&mut c, "mirai", "error"), 0);
}

/// `make demo` (scripts/demo.sh) against a server with its worker, as after `make run`.
#[test]
fn demo_walks_through_the_flows() {
    if !works(Command::new("redis-cli").arg("--version")) {
        return skip("redis-cli not installed (apt-get install redis-tools)");
    }
    let srv = Server::start();
    let _worker = Worker::start(&srv, &["improve_sketch"]);
    let out = Command::new("bash")
        .arg(root().join("scripts/demo.sh"))
        .env("PORT", srv.port.to_string())
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the demo failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "1) \"queued\"",
        "1) \"pending\"",
        "1) \"hit\"",
        "{\"type\":\"done\"",
        "\"progress\":\"Running heuristics...\",\"percent\":50",
        "HTTP 429 Too Many Requests, Retry-After: ",
        "(error) LEASELOST",
    ] {
        assert!(text.contains(want), "the demo shows {want:?}:\n{text}");
    }
    assert!(!text.contains("the demo plays the worker"), "the worker did the job:\n{text}");

    let mut c = srv.conn();
    assert_eq!((stat(&mut c, "improve_sketch", "completed"), stat(&mut c, "improve_sketch", "hits")), (1, 1));
    assert_eq!((stat(&mut c, "demo_analyze", "completed"), stat(&mut c, "demo_analyze", "hits")), (1, 1));
    let page = array(&ok(&mut c, &["JOB.LIST", "demo_crash"]));
    let jobs = array(&page[1]);
    assert_eq!(jobs.len(), 1);
    assert_eq!((fs(&jobs[0], "status"), fi(&jobs[0], "attempts")), ("done".to_string(), 2), "recovered on attempt 2");
    assert_eq!(fs(&jobs[0], "worker"), "worker-b");
    assert_eq!(fs(&jobs[0], "result"), r#"{"provisioned":true}"#, "the stale worker's result was refused");
    assert!(keys(&mut c).iter().all(|k| !k.starts_with("rl:")), "the demo resets its rate limits");
}
