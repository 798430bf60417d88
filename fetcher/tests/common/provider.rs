//! A real local HTTP/1.1 server that speaks the Gemini and OpenAI request/response formats,
//! records every request it gets (with headers), and answers by a script written in the
//! prompt itself, so each test programs it through the jobs it creates.
//!
//! The prompt (gemini: contents[0].parts[0].text; openai chat: the last message's content;
//! openai images: prompt; other paths: the request's `text`) is a comma-separated list of
//! steps; the n-th request carrying that prompt plays step n (the last step repeats):
//! - `ok` (or any other word): 200 with a provider-shaped body, text `echo: <prompt>`;
//! - `200`, `400`, `500`, ...: that status (errors carry `{"error": {"message": ...}}`);
//! - `429/ra=N`: 429 with `Retry-After: N`; `429/date=N`: Retry-After as an HTTP date N s ahead;
//! - `slow=MS`: 200 after MS milliseconds;
//! - `echokey`: 400 whose error message repeats the request's key headers (a leaky provider);
//! - `okkey`: 200 whose text repeats them;
//! - `usage=N ...` (anything after the number is ignored): 200 whose usage adds up to N
//!   tokens (input N/2, output the rest), e.g. more or less than the job's COST estimate.
//!
//!
//! Streamed requests (gemini `:streamGenerateContent?alt=sse`, openai chat with `"stream":
//! true`) are answered with server-sent events carrying [`streamed_text`] in pieces of 5
//! bytes, each event written in two TCP writes some ms apart (an event split across reads)
//! with a `: keepalive` comment every 4 pieces; openai ends with the usage chunk when
//! `stream_options.include_usage` asks for it, then `data: [DONE]`; gemini's last event has
//! its finishReason and usage. Steps: `gap=MS` (MS between pieces, 20 by default);
//! `cut=K` (K pieces, then the connection drops mid-stream); `usage=N` as above; `json`
//! (a server that does not stream: the plain JSON answer); a status or `429/...` answers
//! before any event, as above.
//!
//! Usage in every other 200: gemini promptTokenCount 11, candidatesTokenCount 7; openai chat
//! prompt_tokens 13, completion_tokens 5; images input_tokens 3, output_tokens 100. Each
//! request's log entry keeps the tokens its answer reported (`tokens`): the provider's own
//! account of what it served.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: Instant,
    /// The same instant as ms since the epoch (to compare with the module's timestamps).
    pub unix_ms: u64,
    /// The prompt the script was read from.
    pub prompt: String,
    /// The tokens the answer reported as used (input + output), 0 for an error.
    pub tokens: u64,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    seen: HashMap<String, usize>,
}

pub struct MockProvider {
    pub port: u16,
    state: Arc<Mutex<State>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

impl MockProvider {
    pub fn start() -> MockProvider {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the mock provider");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let (s, i, m) = (state.clone(), in_flight.clone(), max_in_flight.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (s, i, m) = (s.clone(), i.clone(), m.clone());
                thread::spawn(move || {
                    let _ = serve(conn, s, i, m);
                });
            }
        });
        MockProvider { port, state, in_flight, max_in_flight }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    /// Requests whose prompt is `prompt`.
    pub fn calls(&self, prompt: &str) -> usize {
        self.state.lock().unwrap().requests.iter().filter(|r| r.prompt == prompt).count()
    }

    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

fn serve(
    conn: TcpStream,
    state: Arc<Mutex<State>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let path = words.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).into_owned();
    let req_json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let prompt = prompt_of(&path, &req_json);
    let n = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    max_in_flight.fetch_max(n, Ordering::SeqCst);
    let req = Request {
        method,
        path: path.clone(),
        headers,
        body,
        at: Instant::now(),
        unix_ms: SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64,
        prompt: prompt.clone(),
        tokens: 0,
    };
    let (nth, index) = {
        let mut st = state.lock().unwrap();
        st.requests.push(req.clone());
        let index = st.requests.len() - 1;
        let c = st.seen.entry(prompt.clone()).or_insert(0);
        *c += 1;
        (*c, index)
    };
    let steps: Vec<&str> = prompt.split(',').map(str::trim).collect();
    let step = steps[(nth - 1).min(steps.len() - 1)];
    let streams = step != "json" && !step.starts_with("429/") && step.parse::<u16>().is_err();
    if is_stream(&path, &req_json) && streams {
        let tokens = stream_usage(step, &path);
        state.lock().unwrap().requests[index].tokens = tokens.0 + tokens.1;
        let r = serve_stream(conn, step, &path, &prompt, &req_json, tokens);
        in_flight.fetch_sub(1, Ordering::SeqCst);
        return r;
    }
    let (status, extra_headers, body, delay) = answer(step, &path, &prompt, &req);
    if status == 200 {
        state.lock().unwrap().requests[index].tokens = tokens_of(&body);
    }
    if !delay.is_zero() {
        thread::sleep(delay);
    }
    let mut out = conn;
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let r = out.write_all(head.as_bytes()).and_then(|_| out.write_all(body.as_bytes())).and_then(|_| out.flush());
    in_flight.fetch_sub(1, Ordering::SeqCst);
    r
}

fn is_stream(path: &str, v: &Value) -> bool {
    path.ends_with(":streamGenerateContent?alt=sse")
        || (path == "/v1/chat/completions" && v.get("stream").and_then(Value::as_bool) == Some(true))
}

/// The text a streamed answer to `prompt` carries, whole.
pub fn streamed_text(prompt: &str) -> String {
    let words: String = (1..=24).map(|i| format!(" w{i}")).collect();
    format!("echo: {prompt}{words}")
}

/// The pieces of [`streamed_text`], 5 bytes each (the last shorter).
pub fn streamed_pieces(prompt: &str) -> Vec<String> {
    let text = streamed_text(prompt);
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        cur.push(c);
        if cur.len() >= 5 {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// (input, output) tokens a streamed answer reports.
fn stream_usage(step: &str, path: &str) -> (u64, u64) {
    if let Some(rest) = step.strip_prefix("usage=") {
        let n: u64 = rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0);
        return (n / 2, n - n / 2);
    }
    if path.contains(":streamGenerateContent") {
        (11, 7)
    } else {
        (13, 5)
    }
}

/// Writes `data` as one chunk of a chunked body.
fn chunk(out: &mut TcpStream, data: &str) -> std::io::Result<()> {
    write!(out, "{:x}\r\n{data}\r\n", data.len())?;
    out.flush()
}

fn serve_stream(
    mut out: TcpStream,
    step: &str,
    path: &str,
    prompt: &str,
    req: &Value,
    (input, output): (u64, u64),
) -> std::io::Result<()> {
    let gap = step.strip_prefix("gap=").and_then(|g| g.parse().ok()).unwrap_or(20);
    let gap = Duration::from_millis(gap);
    let cut: Option<usize> = step.strip_prefix("cut=").and_then(|k| k.parse().ok());
    let gemini = path.contains(":streamGenerateContent");
    let nl = if gemini { "\r\n" } else { "\n" };
    out.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )?;
    let event = |v: Value| format!("data: {v}{nl}{nl}");
    let pieces = streamed_pieces(prompt);
    let last = pieces.len() - 1;
    if !gemini {
        let first = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "mock-gpt",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]});
        chunk(&mut out, &event(first))?;
    }
    for (i, piece) in pieces.iter().enumerate() {
        if cut == Some(i) {
            // the link breaks: no last chunk of the body, the socket just closes
            return out.shutdown(std::net::Shutdown::Both);
        }
        thread::sleep(gap);
        let e = if gemini {
            let mut c = json!({"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0});
            if i == last {
                c["finishReason"] = json!("STOP");
            }
            let done = if i == last { output } else { i as u64 };
            event(json!({"candidates": [c], "modelVersion": "mock-gemini",
                "usageMetadata": {"promptTokenCount": input, "candidatesTokenCount": done, "totalTokenCount": input + done}}))
        } else {
            event(json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "mock-gpt",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]}))
        };
        let (a, b) = e.split_at(e.len() / 2);
        chunk(&mut out, a)?;
        thread::sleep(Duration::from_millis(2));
        chunk(&mut out, b)?;
        if i % 4 == 3 {
            chunk(&mut out, &format!(": keepalive{nl}{nl}"))?;
        }
    }
    if !gemini {
        let stop = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "mock-gpt",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
        chunk(&mut out, &event(stop))?;
        if req.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true) {
            let usage = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "mock-gpt", "choices": [],
                "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output}});
            chunk(&mut out, &event(usage))?;
        }
        chunk(&mut out, &format!("data: [DONE]{nl}{nl}"))?;
    }
    out.write_all(b"0\r\n\r\n")?;
    out.flush()
}

fn prompt_of(path: &str, v: &Value) -> String {
    let s = if path.ends_with(":generateContent") || path.ends_with(":streamGenerateContent?alt=sse") {
        v.pointer("/contents/0/parts/0/text")
    } else if path == "/v1/chat/completions" {
        v.get("messages").and_then(|m| m.as_array()).and_then(|m| m.last()).and_then(|m| m.get("content"))
    } else if path == "/v1/images/generations" {
        v.get("prompt")
    } else {
        v.get("text")
    };
    s.and_then(Value::as_str).unwrap_or("").to_string()
}

fn http_date(unix: u64) -> String {
    let days = unix / 86400;
    let secs = unix % 86400;
    let (y, m, d) = aijob_core::cron::civil_from_days(days as i64);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let mon = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][(m - 1) as usize];
    format!("{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} GMT", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// The tokens an answer body reports (any of the three formats).
fn tokens_of(body: &str) -> u64 {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    n("/usageMetadata/promptTokenCount")
        + n("/usageMetadata/candidatesTokenCount")
        + n("/usage/prompt_tokens")
        + n("/usage/completion_tokens")
        + n("/usage/input_tokens")
        + n("/usage/output_tokens")
}

fn ok_body(path: &str, prompt: &str) -> String {
    ok_body_with(path, prompt, None)
}

/// A 200 body; `usage` (input, output) replaces the fixed counts.
fn ok_body_with(path: &str, prompt: &str, usage: Option<(u64, u64)>) -> String {
    let text = format!("echo: {prompt}");
    if path.ends_with(":generateContent") {
        let (i, o) = usage.unwrap_or((11, 7));
        json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": i, "candidatesTokenCount": o, "totalTokenCount": i + o},
            "modelVersion": "mock-gemini"
        })
        .to_string()
    } else if path == "/v1/chat/completions" {
        let (i, o) = usage.unwrap_or((13, 5));
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "mock-gpt",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o}
        })
        .to_string()
    } else if path == "/v1/images/generations" {
        let (i, o) = usage.unwrap_or((3, 100));
        json!({"created": 1, "data": [{"b64_json": "iVBORw0KGgo="}], "usage": {"input_tokens": i, "output_tokens": o}})
            .to_string()
    } else {
        let (i, o) = usage.unwrap_or((2, 3));
        json!({"text": text, "usage": {"input_tokens": i, "output_tokens": o}}).to_string()
    }
}

type Answer = (u16, Vec<(String, String)>, String, Duration);

fn answer(step: &str, path: &str, prompt: &str, req: &Request) -> Answer {
    let err = |status: u16, msg: &str| json!({"error": {"code": status, "message": msg, "status": "MOCK"}}).to_string();
    if let Some(rest) = step.strip_prefix("usage=") {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let n: u64 = digits.parse().unwrap_or(0);
        return (200, vec![], ok_body_with(path, prompt, Some((n / 2, n - n / 2))), Duration::ZERO);
    }
    if let Some(ms) = step.strip_prefix("slow=") {
        let ms: u64 = ms.parse().unwrap_or(1000);
        return (200, vec![], ok_body(path, prompt), Duration::from_millis(ms));
    }
    if let Some(rest) = step.strip_prefix("429/") {
        let header = if let Some(n) = rest.strip_prefix("ra=") {
            n.to_string()
        } else if let Some(n) = rest.strip_prefix("date=") {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
            http_date(now + n.parse::<u64>().unwrap_or(1))
        } else {
            "1".to_string()
        };
        return (429, vec![("Retry-After".into(), header)], err(429, "Resource exhausted"), Duration::ZERO);
    }
    if step == "echokey" {
        let leaked = format!(
            "API key not valid: x-goog-api-key={} authorization={}",
            req.header("x-goog-api-key").unwrap_or(""),
            req.header("authorization").unwrap_or("")
        );
        return (400, vec![], err(400, &leaked), Duration::ZERO);
    }
    if step == "okkey" {
        let leaked = format!(
            "key={} auth={}",
            req.header("x-goog-api-key").unwrap_or(""),
            req.header("authorization").unwrap_or("")
        );
        return (200, vec![], ok_body(path, &leaked), Duration::ZERO);
    }
    if let Ok(status) = step.parse::<u16>() {
        if status == 200 {
            return (200, vec![], ok_body(path, prompt), Duration::ZERO);
        }
        return (status, vec![], err(status, &format!("mock status {status}")), Duration::ZERO);
    }
    (200, vec![], ok_body(path, prompt), Duration::ZERO)
}
