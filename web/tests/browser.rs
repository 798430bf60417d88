//! aijob-web in a real headless chromium (chromedriver, driven with fantoccini), against a
//! real redis-server with the module and the real fetcher. Screenshots of every page go to
//! target/web-screenshots/. Outside CI these tests skip when chromium is missing; under
//! CI=true they fail instead.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, Locator};
use serde_json::json;

/// chromedriver on a free port, killed on drop.
struct Driver {
    _proc: Proc,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let arg = format!("--port={port}");
        let mut proc = Proc::spawn("chromedriver", "chromedriver", &[&arg], &[]);
        wait_until(Duration::from_secs(20), "chromedriver to listen", || {
            assert!(proc.is_alive(), "chromedriver exited: {}", proc.log_text());
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Driver { _proc: proc, port }
    }

    async fn browser(&self) -> Client {
        let binary =
            ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|b| which(b)).expect("a chromium");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": binary,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1360,1000", "--hide-scrollbars", "--force-device-scale-factor=1"]
            }),
        );
        // chromedriver is on loopback: plain HTTP, no TLS
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a browser session")
    }
}

/// Polls `f` until it gives Some, or panics with `what` after `timeout`.
async fn until<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let timeout = timeout * timeout_scale();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text_of(b: &Client, css: &str) -> Option<String> {
    b.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

async fn js(b: &Client, script: &str) -> serde_json::Value {
    b.execute(script, vec![]).await.expect("script")
}

async fn screenshot(b: &Client, name: &str) {
    // as tall as the page, so the picture shows all of it
    let h = js(b, "return Math.min(2400, Math.max(700, document.documentElement.scrollHeight));")
        .await
        .as_i64()
        .unwrap_or(1000);
    let _ = b.set_window_size(1360, h as u32 + 90).await;
    let png = b.screenshot().await.expect("screenshot");
    let path = screenshot_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write screenshot");
    let _ = b.set_window_size(1360, 1000).await;
}

/// Clicks the submit button whose text is `label` inside the element `scope` (again if a
/// live redraw replaced it between finding and clicking).
async fn click_button(b: &Client, scope: &str, label: &str) {
    for _ in 0..5 {
        let buttons = b.find_all(Locator::Css(&format!("{scope} button"))).await.expect("buttons");
        for btn in buttons {
            if btn.text().await.unwrap_or_default().trim() == label {
                if btn.click().await.is_ok() {
                    return;
                }
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no button '{label}' in {scope} could be clicked");
}

/// A job that failed for good, made by the test acting as the app's own worker.
fn failed_job(c: &mut Connection, q: &str, payload: &str, error: &str) -> String {
    let id = s(&ok(c, &["JOB.CREATE", q, "PAYLOAD", payload, "MAXATTEMPTS", "1"]));
    ok(c, &["JOB.UPDATE", q, &id, "STATUS", "running"]);
    ok(c, &["JOB.UPDATE", q, &id, "STATUS", "error", "ERROR", error, "CLASS", "upstream", "NORETRY"]);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_job_appears_its_progress_bar_moves_and_it_finishes() {
    if !browser_available() {
        return;
    }
    let srv = Server::start();
    let mut rc = srv.conn();
    let _fetcher = start_fetcher(&srv, "work");
    let web = Web::start(&srv, &[], &[]);
    let driver = Driver::start();
    let client = driver.browser().await;
    let b = &client;

    // the queue page, open before the job exists, shows it without a reload
    create(&mut rc, "manual", &["PRIORITY", "low"]);
    b.goto(&web.url("/q/manual")).await.unwrap();
    until(Duration::from_secs(10), "the page to follow the queue live", move || async move {
        (text_of(b, "#live-badge").await? == "live").then_some(())
    })
    .await;
    js(b, "window.__sameDocument = 1; return 1;").await;
    let payload = r#"{"provider":"echo","request":{"text":"summarize the quarterly report"},"model":"demo"}"#;
    let id = s(&ok(
        &mut rc,
        &[
            "JOB.CREATE",
            "manual",
            "PAYLOAD",
            payload,
            "PRIORITY",
            "high",
            "GROUP",
            "tenant-7",
            "META",
            r#"{"user":42}"#,
        ],
    ));
    let link = format!("a[href='/q/manual/job/{id}']");
    let link = link.as_str();
    until(Duration::from_secs(10), "the new job to appear on the open page", move || async move {
        b.find(Locator::Css(link)).await.ok()
    })
    .await;
    assert_eq!(js(b, "return window.__sameDocument;").await, json!(1), "it appeared live, without a reload");

    // the job page: the test is the worker; the bar follows each PERCENT live
    // the live table may be redrawn between finding the link and clicking it: try again
    until(Duration::from_secs(10), "a click on the job's link", move || async move {
        b.find(Locator::Css(link)).await.ok()?.click().await.ok()
    })
    .await;
    until(Duration::from_secs(10), "the job page, live", move || async move {
        (text_of(b, "#live-badge").await? == "live" && b.find(Locator::Css("#job-progress")).await.is_ok())
            .then_some(())
    })
    .await;
    js(b, "window.__sameDocument = 2; return 1;").await;
    let (cid, token) = claim(&mut rc, "manual", &["WORKER", "test-worker-1", "LEASE", "60000"]).expect("a claim");
    assert_eq!(cid, id, "high priority first");
    for (percent, step) in [(25, "reading the report"), (70, "writing the summary")] {
        ok(&mut rc, &["JOB.UPDATE", "manual", &id, "TOKEN", &token, "PERCENT", &percent.to_string(), "PROGRESS", step]);
        until(Duration::from_secs(10), &format!("the bar at {percent}"), move || async move {
            let v = b.execute("return document.getElementById('job-progress').value;", vec![]).await.ok()?;
            (v.as_f64()? == percent as f64
                && text_of(b, "#job-percent").await? == format!("{percent}%")
                && text_of(b, "#job-progress-text").await? == step)
                .then_some(())
        })
        .await;
    }
    assert_eq!(js(b, "return window.__sameDocument;").await, json!(2), "the bar moved without a reload");
    until(Duration::from_secs(10), "the page to show the worker", move || async move {
        let src = b.source().await.ok()?;
        src.contains("test-worker-1").then_some(())
    })
    .await;
    screenshot(b, "job-running").await;
    let result = r#"{"text":"Revenue grew 12%; costs flat.","usage":{"input_tokens":812,"output_tokens":64}}"#;
    ok(&mut rc, &["JOB.UPDATE", "manual", &id, "TOKEN", &token, "STATUS", "done", "RESULT", result, "USAGE", "876"]);
    until(Duration::from_secs(10), "the page to show the job done", move || async move {
        (text_of(b, "#job-status").await? == "done").then_some(())
    })
    .await;
    let page = b.source().await.unwrap();
    assert!(page.contains("Revenue grew 12%"), "the result is shown");
    assert!(page.contains("created") && page.contains("running") && page.contains("progress"), "the event history");
    screenshot(b, "job").await;

    // some traffic for the overview: echo jobs the fetcher runs, one failure, a paused queue
    for i in 0..6 {
        let p = json!({"provider": "echo", "request": {"text": format!("hello {i}"), "delay_ms": 50}}).to_string();
        ok(&mut rc, &["JOB.CREATE", "work", "PAYLOAD", &p, "GROUP", &format!("user-{}", i % 3)]);
    }
    failed_job(&mut rc, "ingest", r#"{"provider":"echo","request":{}}"#, "HTTP 503 from provider: overloaded");
    // a flow: a summary that waits for its transcription (delayed, in a paused queue)
    let transcribe = create(&mut rc, "ingest", &["DELAY", "600000"]);
    let summary = create(&mut rc, "ingest", &["AFTER", &transcribe]);
    ok(&mut rc, &["QUEUE.PAUSE", "ingest"]);
    ok(&mut rc, &["QUEUE.GROUPCAP", "manual", "tenant-7", "1"]);
    let (_, t2) = {
        let id2 = create(&mut rc, "manual", &["GROUP", "tenant-7"]);
        (id2, claim(&mut rc, "manual", &[]).expect("claim").1)
    };
    let _ = t2;
    for _ in 0..2 {
        ok(
            &mut rc,
            &["JOB.CREATE", "work", "PAYLOAD", r#"{"provider":"no-such-provider","request":{}}"#, "MAXATTEMPTS", "1"],
        );
    }
    let cached = json!({"provider": "echo", "request": {"text": "the same question"}}).to_string();
    let first = array(&ok(&mut rc, &["CACHE.GETORQUEUE", "work", "PAYLOAD", &cached]));
    let again = array(&ok(&mut rc, &["CACHE.GETORQUEUE", "work", "PAYLOAD", &cached]));
    assert_eq!((s(&first[0]), s(&again[0])), ("queued".to_string(), "pending".to_string()));
    wait_until(Duration::from_secs(20), "the fetcher to finish the echo jobs and fail the others", || {
        (stat(&mut rc, "work", "done") == 7 && stat(&mut rc, "work", "error") == 2).then_some(())
    });
    assert_eq!(s(&array(&ok(&mut rc, &["CACHE.GETORQUEUE", "work", "PAYLOAD", &cached]))[0]), "hit");
    b.goto(&web.url("/")).await.unwrap();
    // the page's first view starts the queues' history; its auto-refresh draws the bars
    until(Duration::from_secs(20), "the overview's chart to show the work done", move || async move {
        b.find(Locator::Css("tr:nth-child(3) svg.chart rect.ok")).await.ok()?;
        b.find(Locator::Css("svg.chart rect.fail")).await.ok()
    })
    .await;
    let overview = b.source().await.unwrap();
    for q in ["manual", "work", "ingest"] {
        assert!(overview.contains(&format!("href=\"/q/{q}\"")), "{q} on the overview");
    }
    assert!(overview.contains("paused"), "the paused queue is marked");
    assert!(overview.contains("tenant-7"), "the group at its cap is named");
    screenshot(b, "overview").await;
    b.goto(&web.url("/q/work")).await.unwrap();
    screenshot(b, "queue").await;
    b.goto(&web.url(&format!("/q/ingest/job/{summary}"))).await.unwrap();
    assert_eq!(text_of(b, "#job-status").await.as_deref(), Some("waiting"));
    let page = b.source().await.unwrap();
    assert!(page.contains(&format!("href=\"/q/ingest/job/{transcribe}\"")), "the waiting job links its parent");
    assert!(page.contains("waiting on 1"), "and says how many parents it waits on");
    screenshot(b, "job-waiting").await;
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_is_retried_from_the_page_and_pausing_stops_claims() {
    if !browser_available() {
        return;
    }
    let srv = Server::start();
    let mut rc = srv.conn();
    let payload = r#"{"provider":"echo","request":{"text":"try again"}}"#;
    // failed before any worker ran (the provider was down, say)
    let failed = failed_job(&mut rc, "work", payload, "HTTP 503 from provider");
    let fetcher = start_fetcher(&srv, "work,other");
    let web = Web::start(&srv, &[], &[]);
    let driver = Driver::start();
    let client = driver.browser().await;
    let b = &client;

    b.goto(&web.url(&format!("/q/work/job/{failed}"))).await.unwrap();
    assert_eq!(text_of(b, "#job-status").await.unwrap(), "error");
    // the live script may be swapping the record's parts in as the page settles
    until(Duration::from_secs(10), "the error box", move || async move {
        text_of(b, ".errorbox").await?.contains("HTTP 503 from provider").then_some(())
    })
    .await;
    screenshot(b, "job-failed").await;
    click_button(b, ".head .actions", "Retry").await;
    wait_until(Duration::from_secs(20), "the retried job to be done", || {
        (fs(&ok(&mut rc, &["JOB.GET", "work", &failed]), "status") == "done").then_some(())
    });
    until(Duration::from_secs(10), "the page to show it done", move || async move {
        (text_of(b, "#job-status").await? == "done").then_some(())
    })
    .await;
    assert!(text_of(b, ".flash").await.unwrap_or_default().contains("1 of 1 job retried"));

    // pause from the page: the fetcher claims nothing more from it
    b.goto(&web.url("/q/work")).await.unwrap();
    click_button(b, ".head .actions", "Pause").await;
    until(Duration::from_secs(10), "the page to show the queue paused", move || async move {
        text_of(b, "h1").await?.contains("paused").then_some(())
    })
    .await;
    assert_eq!(stat(&mut rc, "work", "paused"), 1);
    let held = s(&ok(&mut rc, &["JOB.CREATE", "work", "PAYLOAD", payload]));
    let probe = s(&ok(&mut rc, &["JOB.CREATE", "other", "PAYLOAD", payload]));
    // the fetcher is alive and claiming: the other queue's job is done ...
    wait_until(Duration::from_secs(20), "the other queue's job to be done", || {
        (fs(&ok(&mut rc, &["JOB.GET", "other", &probe]), "status") == "done").then_some(())
    });
    // ... while the paused queue's job, made before it, was never claimed
    let r = ok(&mut rc, &["JOB.GET", "work", &held]);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("queued".to_string(), 0));
    screenshot(b, "queue-paused").await;
    click_button(b, ".head .actions", "Resume").await;
    wait_until(Duration::from_secs(20), "the held job to run once resumed", || {
        (fs(&ok(&mut rc, &["JOB.GET", "work", &held]), "status") == "done").then_some(())
    });
    drop(fetcher);

    // the other pages, with something on them
    ok(&mut rc, &["SCHEDULE.SET", "work", "nightly-digest", "CRON", "0 3 * * *", "PAYLOAD", payload]);
    ok(&mut rc, &["SCHEDULE.SET", "work", "poll-provider", "EVERY", "5000", "PAYLOAD", payload, "PRIORITY", "high"]);
    ok(&mut rc, &["SCHEDULE.PAUSE", "work", "poll-provider"]);
    b.goto(&web.url("/q/work/schedules")).await.unwrap();
    click_button(b, "table", "Run now").await;
    until(Duration::from_secs(10), "the run-now message", move || async move {
        text_of(b, ".flash").await?.contains("ran now").then_some(())
    })
    .await;
    screenshot(b, "schedules").await;
    for (g, n) in [("acme", 3), ("globex", 0), ("initech", 12)] {
        for _ in 0..n {
            create(&mut rc, "tenants", &["GROUP", g]);
        }
    }
    ok(&mut rc, &["QUEUE.GROUPCAP", "tenants", "acme", "1"]);
    claim(&mut rc, "tenants", &[]);
    b.goto(&web.url("/q/tenants/groups")).await.unwrap();
    b.find(Locator::Css("input[name=group]")).await.unwrap().send_keys("initech").await.unwrap();
    b.find(Locator::Css("input[name=cap]")).await.unwrap().send_keys("4").await.unwrap();
    click_button(b, "form.filters", "Set cap").await;
    until(Duration::from_secs(10), "the cap to be set", move || async move {
        text_of(b, ".flash").await?.contains("Cap of initech set to 4").then_some(())
    })
    .await;
    screenshot(b, "groups").await;
    for _ in 0..7 {
        ok(&mut rc, &["RATELIMIT.HIT", "rl:{client42}", "LIMIT", "10", "PERIOD", "60000"]);
    }
    b.goto(&web.url("/ratelimits?keys=rl%3A%7Bclient42%7D+LIMIT+10+PERIOD+60000%0Arl%3A%7Bnew%7D+LIMIT+5+PERIOD+1000"))
        .await
        .unwrap();
    let remaining = text_of(b, "tbody tr:first-child td:nth-child(3)").await.unwrap();
    assert_eq!(remaining.trim(), "3", "7 of 10 used: 3 remain");
    screenshot(b, "ratelimits").await;
    b.goto(&web.url("/q/tenants/purge?status=queued")).await.unwrap();
    screenshot(b, "purge-confirm").await;
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_payload_stays_inert_and_posts_without_token_or_in_read_only_are_refused() {
    if !browser_available() {
        return;
    }
    let srv = Server::start();
    let mut rc = srv.conn();
    let evil = r#"{"text":"<script>window.__pwned=1</script>","img":"<img src=x onerror=\"window.__pwned=2\">"}"#;
    let id = failed_job(&mut rc, "q", evil, "<script>window.__pwned=3</script>");
    let web = Web::start(&srv, &[], &[]);
    let ro = Web::start(&srv, &["--read-only"], &[]);
    let driver = Driver::start();
    let client = driver.browser().await;
    let b = &client;

    for path in [format!("/q/q/job/{id}"), "/q/q".to_string(), "/q/q?status=error".to_string()] {
        b.goto(&web.url(&path)).await.unwrap();
        // give an injected handler every chance: wait for the page's own script to run
        until(Duration::from_secs(10), "the page's script to run", move || async move {
            (text_of(b, "#live-badge").await? == "live").then_some(())
        })
        .await;
        assert_eq!(js(b, "return typeof window.__pwned;").await, json!("undefined"), "{path}: nothing injected ran");
    }
    b.goto(&web.url(&format!("/q/q/job/{id}"))).await.unwrap();
    let shown = text_of(b, "pre.json").await.unwrap();
    assert!(shown.contains("<script>window.__pwned=1</script>"), "the payload is shown as text: {shown}");
    assert!(text_of(b, ".errorbox").await.unwrap().contains("<script>window.__pwned=3</script>"));
    screenshot(b, "job-escaped").await;

    // a POST from the page without the token is refused, and nothing changes
    let post = |path: &str, body: &str| {
        format!(
            "const done = arguments[arguments.length - 1]; \
             fetch('{path}', {{method: 'POST', headers: {{'Content-Type': 'application/x-www-form-urlencoded'}}, body: '{body}'}}) \
             .then(r => r.text().then(t => done([r.status, t])), e => done([0, String(e)]));"
        )
    };
    let r = b.execute_async(&post("/q/q/pause", "csrf=forged"), vec![]).await.unwrap();
    assert_eq!(r[0], json!(403), "{r}");
    let r = b.execute_async(&post("/q/q/pause", ""), vec![]).await.unwrap();
    assert_eq!(r[0], json!(403), "{r}");
    assert_eq!(stat(&mut rc, "q", "paused"), 0);

    // read-only: no action on any page, and the server refuses them anyway
    b.goto(&ro.url(&format!("/q/q/job/{id}"))).await.unwrap();
    assert!(b.find_all(Locator::Css("form[method=post], button")).await.unwrap().is_empty(), "no action shown");
    assert_eq!(text_of(b, "header .pill.warn").await.unwrap(), "read-only");
    screenshot(b, "job-read-only").await;
    b.goto(&ro.url("/q/q")).await.unwrap();
    assert!(b.find_all(Locator::Css("form[method=post]")).await.unwrap().is_empty());
    let r = b.execute_async(&post("/q/q/jobs", &format!("one=retry+{id}")), vec![]).await.unwrap();
    assert_eq!(r[0], json!(403), "{r}");
    assert!(r[1].as_str().unwrap().contains("read-only"));
    assert_eq!(stat(&mut rc, "q", "error"), 1, "the failed job was not retried");
    client.close().await.unwrap();
}
