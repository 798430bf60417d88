//! The fetcher's streaming mode against real processes: redis-server with the module, the
//! fetcher binary, and a local HTTP server that streams OpenAI and Gemini server-sent events
//! slowly, each event cut across two TCP writes (tests/common/provider.rs). Readers follow
//! the job's output stream with JOB.READ ... BLOCK on their own connections.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::fetcher::Fetcher;
use common::provider::{streamed_pieces, streamed_text, MockProvider};
use common::*;
use serde_json::{json, Value as Json};

const T: Duration = Duration::from_secs(20);

/// A fetcher whose gemini and openai are both the mock.
fn fetcher(srv: &Server, mock: &MockProvider, extra: &[&str]) -> Fetcher {
    mock_fetcher(srv, mock, "stream", extra)
}

/// An OpenAI chat job that asks for a stream the OpenAI way.
fn openai_stream(prompt: &str) -> Json {
    let mut p = openai(prompt);
    p["request"]["stream"] = json!(true);
    p
}

/// A Gemini job that asks for a stream with the payload's flag.
fn gemini_stream(prompt: &str) -> Json {
    let mut p = gemini(prompt);
    p["stream"] = json!(true);
    p
}

/// One JOB.READ reply.
#[derive(Debug, Clone)]
struct Read {
    /// (offset, kind, data)
    entries: Vec<(String, String, String)>,
    next: String,
    ended: bool,
    status: String,
}

fn read(c: &mut Connection, q: &str, id: &str, after: &str, block_ms: u64) -> Read {
    let v = ok(c, &["JOB.READ", q, id, "AFTER", after, "BLOCK", &block_ms.to_string()]);
    let entries = array(&field(&v, "entries").expect("entries"))
        .iter()
        .map(|e| {
            let e = array(e);
            (s(&e[0]), s(&e[1]), s(&e[2]))
        })
        .collect();
    Read { entries, next: fs(&v, "next"), ended: fi(&v, "ended") == 1, status: fs(&v, "status") }
}

/// Follows the job's stream from `after` on a connection of its own, until `stop` says so
/// (given every reply so far) or the stream ends. Returns every reply.
fn follow(c: &mut Connection, q: &str, id: &str, after: &str, stop: impl Fn(&[Read]) -> bool) -> Vec<Read> {
    let deadline = Instant::now() + T;
    let mut after = after.to_string();
    let mut replies: Vec<Read> = Vec::new();
    while Instant::now() < deadline {
        let r = read(c, q, id, &after, 5000);
        after = r.next.clone();
        let ended = r.ended;
        if !r.entries.is_empty() || ended {
            replies.push(r);
        }
        if ended || stop(&replies) {
            return replies;
        }
    }
    panic!("the stream of {id} did not end in {T:?}: {replies:?}");
}

/// A reader thread following the job from the start to its end.
fn follow_in_thread(url: &str, q: &str, id: &str) -> thread::JoinHandle<Vec<Read>> {
    let (url, q, id) = (url.to_string(), q.to_string(), id.to_string());
    thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        follow(&mut c, &q, &id, "0", |_| false)
    })
}

fn entries(replies: &[Read]) -> Vec<(String, String, String)> {
    replies.iter().flat_map(|r| r.entries.clone()).collect()
}

/// The chunks' text, in order.
fn text(entries: &[(String, String, String)]) -> String {
    entries.iter().filter(|e| e.1 == "chunk").map(|e| e.2.as_str()).collect()
}

fn chunk_count(entries: &[(String, String, String)]) -> usize {
    entries.iter().filter(|e| e.1 == "chunk").count()
}

fn result_of(c: &mut Connection, q: &str, id: &str) -> Json {
    job_json(c, q, id)["result"].clone()
}

#[test]
fn a_reader_follows_an_openai_stream_live_and_the_result_holds_the_text_and_usage() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let _f = fetcher(&srv, &mock, &[]);
    let mut c = srv.conn();
    let prompt = "gap=30";
    let id = create_job(&mut c, "default", &openai_stream(prompt), &[]);
    let replies = follow_in_thread(&srv.url(), "default", &id).join().unwrap();
    let all = entries(&replies);

    assert_eq!(all[0], ("1-0".to_string(), "attempt".to_string(), "1".to_string()));
    assert_eq!(text(&all), streamed_text(prompt), "the exact text, nothing lost, nothing twice");
    let last = all.last().unwrap();
    assert_eq!((last.1.as_str(), last.2.as_str()), ("end", "done"));
    let live = replies.iter().filter(|r| r.status == "running" && r.entries.iter().any(|e| e.1 == "chunk")).count();
    assert!(live >= 3, "the reader got the text in pieces while the call ran: {replies:?}");
    let pieces = streamed_pieces(prompt).len();
    assert!(chunk_count(&all) < pieces, "appends are batched: {} chunks for {pieces} pieces", chunk_count(&all));
    assert_eq!(all.iter().filter(|e| e.1 == "attempt").count(), 1);

    let r = wait_finished(&mut c, "default", &id, T);
    assert_eq!(fi(&r, "usage"), 18, "USAGE from the stream's last chunk (13 + 5)");
    let res = result_of(&mut c, "default", &id);
    assert_eq!(res["text"], json!(streamed_text(prompt)));
    assert_eq!((res["provider"].as_str(), res["model"].as_str()), (Some("openai"), Some("gpt-4o-mini")));
    assert_eq!(res["usage"], json!({"input_tokens": 13, "output_tokens": 5}));
    assert_eq!(res["output"]["usage"]["total_tokens"], 18, "output: the provider's final chunk");
    let sent = mock.requests().pop().unwrap().json();
    assert_eq!((&sent["stream"], &sent["stream_options"]), (&json!(true), &json!({"include_usage": true})));

    // A server that answers one JSON to a streamed request: taken whole, one chunk.
    let id = create_job(&mut c, "default", &openai_stream("json"), &[]);
    let all = entries(&follow_in_thread(&srv.url(), "default", &id).join().unwrap());
    assert_eq!((chunk_count(&all), text(&all)), (1, "echo: json".to_string()));
    assert_eq!(result_of(&mut c, "default", &id)["usage"], json!({"input_tokens": 13, "output_tokens": 5}));

    // Fast pieces: many tokens per append.
    let fast = "gap=2";
    let id = create_job(&mut c, "default", &openai_stream(fast), &[]);
    let all = entries(&follow_in_thread(&srv.url(), "default", &id).join().unwrap());
    assert_eq!(text(&all), streamed_text(fast));
    let pieces = streamed_pieces(fast).len();
    assert!(chunk_count(&all) * 3 <= pieces, "{} appends for {pieces} pieces", chunk_count(&all));
}

#[test]
fn a_gemini_stream_is_read_from_stream_generate_content() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let _f = fetcher(&srv, &mock, &[]);
    let mut c = srv.conn();
    let prompt = "gemini gap=25";
    let id = create_job(&mut c, "default", &gemini_stream(prompt), &[]);
    let replies = follow_in_thread(&srv.url(), "default", &id).join().unwrap();
    let all = entries(&replies);
    assert_eq!(text(&all), streamed_text(prompt));
    assert!(replies.iter().filter(|r| r.status == "running").count() >= 3, "followed live: {replies:?}");
    let r = wait_finished(&mut c, "default", &id, T);
    assert_eq!(fi(&r, "usage"), 18, "usageMetadata of the last event (11 + 7)");
    let res = result_of(&mut c, "default", &id);
    assert_eq!(res["text"], json!(streamed_text(prompt)));
    assert_eq!(res["usage"], json!({"input_tokens": 11, "output_tokens": 7}));
    assert_eq!(res["output"]["candidates"][0]["finishReason"], "STOP");
    let req = mock.requests().pop().unwrap();
    assert_eq!(req.path, "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse");
    assert_eq!(req.header("x-goog-api-key"), Some("gk-stream-123456"));

    // A job that does not ask for a stream is called as before, and has no stream.
    let plain = create_job(&mut c, "default", &gemini("plain"), &[]);
    wait_finished(&mut c, "default", &plain, T);
    assert!(mock.requests().pop().unwrap().path.ends_with(":generateContent"));
    assert_eq!(ok(&mut c, &["EXISTS", &format!("aijob:{{default}}:out:{plain}")]), Value::Int(0));
}

#[test]
fn the_usage_of_the_streams_last_event_settles_a_charged_budget() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let args = ["--queues", "bound", "--queue-provider", "bound=openai", "--tpm", "1000", "--rl-period", "60000"];
    let _f = fetcher(&srv, &mock, &args);
    let mut c = srv.conn();
    let id = create_job(&mut c, "bound", &openai_stream("usage=40"), &["COST", "500"]);
    let r = wait_finished(&mut c, "bound", &id, T);
    assert_eq!((fs(&r, "status"), fi(&r, "usage")), ("done".into(), 40));
    let peek = ok(&mut c, &["RATELIMIT.PEEK", "aijob-rl:{openai}:tpm", "LIMIT", "1000", "PERIOD", "60000"]);
    assert_eq!(int(&array(&peek)[1]), 960, "the claim charged 500, the stream's usage settled it to 40");
}

#[test]
fn a_fallback_mid_stream_starts_behind_a_boundary_and_never_mixes_two_models() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let f = fetcher(&srv, &mock, &["--fallback", "openai=gemini:gemini-2.0-flash"]);
    let mut c = srv.conn();

    // gemini breaks off after 6 pieces (the link drops); openai answers.
    let (g, o) = ("cut=6", "openai after the cut");
    let mut p = gemini_stream(g);
    p["fallback"] = json!([openai(o)]);
    let id = create_job(&mut c, "default", &p, &[]);
    let all = entries(&follow_in_thread(&srv.url(), "default", &id).join().unwrap());
    let boundaries: Vec<usize> = all.iter().enumerate().filter(|(_, e)| e.1 == "attempt").map(|(i, _)| i).collect();
    assert_eq!(boundaries.len(), 2, "the attempt's start, then the fallback's: {all:?}");
    let (before, after) = all.split_at(boundaries[1]);
    let partial = text(before);
    assert!(!partial.is_empty() && streamed_text(g).starts_with(&partial), "gemini's partial text: {partial:?}");
    assert!(partial.len() <= streamed_pieces(g)[..6].concat().len());
    assert_eq!(after[0].2, "1", "the boundary carries the attempt's number");
    assert_eq!(text(after), streamed_text(o), "after the boundary, openai's text alone");
    let res = result_of(&mut c, "default", &id);
    assert_eq!((res["provider"].as_str(), res["text"].clone()), (Some("openai"), json!(streamed_text(o))));
    assert_eq!(
        (res["tried"][0]["provider"].as_str(), res["tried"][0]["class"].as_str()),
        (Some("gemini"), Some("network"))
    );
    // A reader that starts now sees only the answer that counts.
    let fresh = entries(&follow(&mut c, "default", &id, "0", |_| false));
    assert_eq!(fresh.iter().filter(|e| e.1 == "attempt").count(), 1);
    assert_eq!(text(&fresh), streamed_text(o));
    let appends = |provider: &str, kind: &str| {
        f.metric(&format!("aijob_fetcher_stream_appends_total{{provider=\"{provider}\",kind=\"{kind}\"}}"))
    };
    assert_eq!(appends("openai", "restart"), 1.0, "{}", f.metrics());
    assert!(appends("gemini", "chunk") >= 1.0 && appends("openai", "chunk") >= 1.0, "{}", f.metrics());
    assert_eq!(appends("gemini", "restart"), 0.0);

    // A 503 before any output: the fallback's text is the stream's first, no boundary needed.
    let mut p = gemini_stream("503");
    p["fallback"] = json!([openai("openai after a 503")]);
    let id = create_job(&mut c, "default", &p, &[]);
    let all = entries(&follow_in_thread(&srv.url(), "default", &id).join().unwrap());
    assert_eq!(all.iter().filter(|e| e.1 == "attempt").count(), 1, "{all:?}");
    assert_eq!(text(&all), streamed_text("openai after a 503"));
    assert_eq!(result_of(&mut c, "default", &id)["tried"][0]["class"], "503");

    // --fallback's rule: the OpenAI request that streams is rewritten for gemini, which
    // streams too, behind the boundary.
    let id = create_job(&mut c, "default", &openai_stream("cut=4,ok"), &[]);
    let all = entries(&follow_in_thread(&srv.url(), "default", &id).join().unwrap());
    let boundaries: Vec<usize> = all.iter().enumerate().filter(|(_, e)| e.1 == "attempt").map(|(i, _)| i).collect();
    assert_eq!(boundaries.len(), 2, "{all:?}");
    assert_eq!(text(&all[boundaries[1]..]), streamed_text("cut=4,ok"));
    let res = result_of(&mut c, "default", &id);
    assert_eq!((res["provider"].as_str(), res["tried"][0]["class"].as_str()), (Some("gemini"), Some("network")));
    let to_gemini = mock.requests().into_iter().find(|r| r.path.contains(":stream") && r.prompt == "cut=4,ok").unwrap();
    assert_eq!(to_gemini.json(), json!({"contents": [{"role": "user", "parts": [{"text": "cut=4,ok"}]}]}));
}

#[test]
fn a_canceled_job_stops_its_stream_at_the_next_append() {
    let srv = start_redis();
    let mock = MockProvider::start();
    // A long lease: the heartbeat (every 10 s) cannot be what notices the cancel.
    let f = fetcher(&srv, &mock, &["--lease", "30000"]);
    let mut c = srv.conn();
    // Slow pieces (about 9 s in all): the cancel lands mid-stream even on a loaded machine,
    // where the reader may see its first chunks seconds late.
    let id = create_job(&mut c, "default", &openai_stream("gap=400"), &[]);
    follow(&mut c, "default", &id, "0", |r| chunk_count(&entries(r)) >= 2);
    assert_eq!(s(&ok(&mut c, &["JOB.CANCEL", "default", &id])), "1");
    let lost = "aijob_fetcher_jobs_total{queue=\"default\",provider=\"openai\",outcome=\"lost\",class=\"canceled\"}";
    wait_until(Duration::from_secs(3), "the append refused CANCELED to drop the call", || {
        (f.metric(lost) == 1.0).then_some(())
    });
    let all = entries(&follow(&mut c, "default", &id, "0", |_| false));
    assert_eq!(all.last().map(|e| (e.1.as_str(), e.2.as_str())), Some(("end", "canceled")), "nothing after the end");
}

#[test]
fn after_a_sigkill_mid_stream_the_next_fetchers_output_comes_behind_the_attempt_boundary() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let mut a = fetcher(&srv, &mock, &["--lease", "1000"]);
    let mut c = srv.conn();
    // The first attempt's pieces are slow (about 9 s in all): the kill lands mid-stream even
    // on a loaded machine, where the reader may see its first chunks seconds late.
    let prompt = "gap=400,gap=10";
    let id = create_job(&mut c, "default", &gemini_stream(prompt), &["MAXATTEMPTS", "3"]);

    // A reader follows until it has some of the first attempt's text, and drops off.
    let first = follow(&mut c, "default", &id, "0", |r| chunk_count(&entries(r)) >= 3);
    let seen = entries(&first);
    let offset = first.last().unwrap().next.clone();
    assert!(streamed_text(prompt).starts_with(&text(&seen)));
    a.kill();
    let r = ok(&mut c, &["JOB.GET", "default", &id]);
    assert_eq!(fs(&r, "status"), "running", "the kill landed mid-stream");

    // Another fetcher takes the job once the lease runs out (the first one's stays dead).
    let _b = fetcher(&srv, &mock, &["--lease", "1000"]);
    let mut reader = redis::Client::open(srv.url()).unwrap().get_connection().unwrap();
    let rest = entries(&follow(&mut reader, "default", &id, &offset, |_| false));
    assert_eq!(rest[0], ("2-0".to_string(), "attempt".to_string(), "2".to_string()), "the boundary first: {rest:?}");
    assert_eq!(text(&rest[1..]), streamed_text(prompt), "then the new attempt's whole text, once");
    let at = |o: &str| o.split_once('-').map(|(e, b)| (e.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()));
    assert!(rest.iter().all(|e| at(&e.0) > at(&offset)), "nothing the reader had comes again");
    assert_eq!(rest.last().map(|e| e.1.as_str()), Some("end"));
    let r = wait_finished(&mut c, "default", &id, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("done".into(), 2));
    assert_eq!(result_of(&mut c, "default", &id)["text"], json!(streamed_text(prompt)));
}

#[test]
fn an_echo_job_streams_word_by_word() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let _f = fetcher(&srv, &mock, &[]);
    let mut c = srv.conn();
    let said = "The answer is forty-two, said the echo.";
    let p = json!({"provider": "echo", "stream": true, "delay_ms": 400, "request": {"text": said}});
    let id = create_job(&mut c, "default", &p, &[]);
    let replies = follow_in_thread(&srv.url(), "default", &id).join().unwrap();
    let all = entries(&replies);
    assert_eq!(text(&all), said);
    assert!(chunk_count(&all) >= 3, "word by word over 400 ms: {all:?}");
    assert_eq!(result_of(&mut c, "default", &id)["text"], said);
    assert_eq!(mock.count(), 0);
}

/// A python3 with redis-py (AIJOB_PYTHON, python3 or /usr/bin/python3), as tests/examples.rs
/// finds it.
fn python() -> Option<String> {
    let works =
        |p: &str| std::process::Command::new(p).args(["-c", "import redis"]).output().is_ok_and(|o| o.status.success());
    [std::env::var("AIJOB_PYTHON").ok(), Some("python3".into()), Some("/usr/bin/python3".into())]
        .into_iter()
        .flatten()
        .find(|p| works(p))
}

/// The README's streaming demo: the real fetcher streams an echo job, and
/// examples/python/stream.py --fetcher prints it as it arrives and resumes after killing its
/// own connection.
#[test]
fn the_python_example_follows_the_fetchers_stream_through_a_disconnect() {
    let Some(py) = python() else {
        eprintln!("skipped: python3/redis-py not installed (python3-redis, or pip install redis)");
        return;
    };
    let srv = start_redis();
    let mock = MockProvider::start();
    let _f = fetcher(&srv, &mock, &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/python/stream.py");
    let mut child = std::process::Command::new(py)
        .arg(script)
        .arg("--fetcher")
        .env("REDIS_URL", srv.url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start stream.py");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "stream.py did not finish");
        thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "stream.py failed:\n{stdout}\n{stderr}");
    let lines: Vec<Json> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let steps: Vec<&str> = lines.iter().map(|l| l["step"].as_str().unwrap()).collect();
    let at = |name: &str| steps.iter().position(|s| *s == name).unwrap_or_else(|| panic!("no {name}: {stdout}"));
    let (gone, back) = (at("disconnected"), at("resumed"));
    assert_eq!(lines[gone]["after"], lines[back]["after"]);
    assert!(steps[..gone].contains(&"chunk") && steps[back..].contains(&"chunk"), "{stdout}");
    let printed: String = lines.iter().filter(|l| l["step"] == "chunk").map(|l| l["data"].as_str().unwrap()).collect();
    let result = &lines[at("result")];
    assert_eq!((result["provider"].as_str(), result["text"].as_str()), (Some("echo"), Some(printed.as_str())));
    assert!(printed.starts_with("Streams keep the output"), "{printed}");
    assert_eq!(lines[at("finished")]["status"], "done");
}

#[test]
fn past_the_streams_cap_the_appends_stop_and_the_result_keeps_the_whole_text() {
    let srv = start_redis();
    ok(&mut srv.conn(), &["CONFIG", "SET", "aijob.stream-max-bytes", "40"]);
    let mock = MockProvider::start();
    let f = fetcher(&srv, &mock, &[]);
    let mut c = srv.conn();
    let prompt = "capped gap=15";
    let id = create_job(&mut c, "default", &openai_stream(prompt), &[]);
    let r = wait_finished(&mut c, "default", &id, T);
    assert_eq!(fs(&r, "status"), "done");
    let all = entries(&follow(&mut c, "default", &id, "0", |_| false));
    let streamed = text(&all);
    assert!(!streamed.is_empty() && streamed.len() <= 40, "{streamed:?}");
    assert!(streamed_text(prompt).starts_with(&streamed), "the stream holds the text up to the cap: {streamed:?}");
    assert_eq!(result_of(&mut c, "default", &id)["text"], json!(streamed_text(prompt)));
    assert!(f.logs().contains("reached the module's caps"), "{}", f.logs());
}

#[test]
fn a_key_the_provider_streams_back_is_redacted_even_cut_across_pieces() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let _f = fetcher(&srv, &mock, &[]);
    let mut c = srv.conn();
    // The mock streams the prompt back 5 bytes at a time: the key is cut across pieces.
    let prompt = "leak sk-stream-654321 and gk-stream-123456 now";
    let id = create_job(&mut c, "default", &openai_stream(prompt), &[]);
    let all = entries(&follow_in_thread(&srv.url(), "default", &id).join().unwrap());
    let want =
        streamed_text(prompt).replace("sk-stream-654321", "[redacted]").replace("gk-stream-123456", "[redacted]");
    assert_eq!(text(&all), want);
    assert!(chunk_count(&all) >= 2, "{all:?}");
    assert_eq!(result_of(&mut c, "default", &id)["text"], json!(want));
}

#[test]
fn redis_restarting_mid_stream_costs_readers_a_boundary_never_a_piece_twice() {
    let dir = TempDir::new("stream-restart");
    let port = free_port();
    let opts = Opts { dir: Some(dir.0.clone()), port: Some(port), ..Default::default() }.aof_always();
    let mut srv = Server::start_with(opts.clone());
    let mock = MockProvider::start();
    let f = fetcher(&srv, &mock, &["--lease", "30000"]);
    let mut c = srv.conn();
    let prompt = "gap=100";
    let id = create_job(&mut c, "default", &openai_stream(prompt), &[]);
    let first = follow(&mut c, "default", &id, "0", |r| chunk_count(&entries(r)) >= 2);
    let offset = first.last().unwrap().next.clone();
    srv.kill();
    wait_until(T, "an append to fail", || f.logs().contains("the next one restarts the output").then_some(()));
    let srv2 = Server::start_with(opts);
    let mut c = srv2.conn();
    // The reader comes back with its offset: a boundary, then the text whole from its start.
    let rest = entries(&follow(&mut c, "default", &id, &offset, |_| false));
    let boundary = rest.iter().rposition(|e| e.1 == "attempt").expect("a boundary after the restart");
    assert_eq!(rest[boundary].2, "1", "the same attempt, started over: {rest:?}");
    assert_eq!(text(&rest[boundary..]), streamed_text(prompt), "{rest:?}");
    let r = wait_finished(&mut c, "default", &id, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("done".into(), 1));
    assert_eq!(result_of(&mut c, "default", &id)["text"], json!(streamed_text(prompt)));
    assert_eq!(mock.calls(prompt), 1, "one call: the stream went on through the restart");
}
