//! aijob-web over plain HTTP (no browser), against a real redis-server with the module:
//! auth, the refusal to listen beyond loopback without a credential, CSRF, the CSP and
//! other headers, read-only mode, escaping, no secret shown, one events reader per queue.

mod common;

use std::time::Duration;

use common::*;
use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// The CSRF cookie a first GET hands out, and the token its page's forms carry.
async fn session(web: &Web, path: &str) -> (String, String) {
    let r = http().get(web.url(path)).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    let cookie = cookie_of(r.headers()).expect("a CSRF cookie on the first visit");
    let body = r.text().await.expect("body");
    let token = body.split("name=\"csrf\" value=\"").nth(1).and_then(|t| t.split('"').next()).unwrap_or("").to_string();
    (cookie, token)
}

fn cookie_of(h: &HeaderMap) -> Option<String> {
    h.get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("aijob_csrf="))
        .map(|v| v.split(';').next().unwrap_or("").to_string())
}

async fn post(web: &Web, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> reqwest::Response {
    let mut rq = http().post(web.url(path)).form(form);
    if let Some(c) = cookie {
        rq = rq.header(COOKIE, c);
    }
    rq.send().await.expect("POST")
}

fn paused(c: &mut Connection, q: &str) -> i64 {
    stat(c, q, "paused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_is_required_when_set() {
    let srv = Server::start();
    let token = "a-very-secret-token-42";
    let web = Web::start(&srv, &[], &[("AIJOB_WEB_TOKEN", token)]);
    let c = http();
    for path in ["/", "/static/app.css", "/q/x", "/live/x"] {
        let r = c.get(web.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    }
    let r = c.get(web.url("/")).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    assert!(!body.contains(token), "the token is never shown");
    let r = c.get(web.url("/")).basic_auth("anyone", Some(token)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c.get(web.url("/")).bearer_auth("a-very-secret-token-43").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // a POST without the credential is refused before anything else, and changes nothing
    let mut rc = srv.conn();
    create(&mut rc, "q", &[]);
    let r = post(&web, "/q/q/pause", None, &[("csrf", "x")]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(paused(&mut rc, "q"), 0);

    let basic = Web::start(&srv, &["--token", "ops:pa55word"], &[]);
    let r = c.get(basic.url("/")).basic_auth("ops", Some("pa55word")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c.get(basic.url("/")).basic_auth("dev", Some("pa55word")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn listening_beyond_loopback_without_a_credential_is_refused_at_startup() {
    let srv = Server::start();
    let port = free_port().to_string();
    let listen = format!("0.0.0.0:{port}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aijob-web"))
        .args(["--listen", &listen, "--redis-url", &srv.url()])
        .env_remove("AIJOB_WEB_TOKEN")
        .output()
        .expect("run aijob-web");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to listen on 0.0.0.0") && err.contains("AIJOB_WEB_TOKEN"), "{err}");
    // the same through the environment, and with a credential it starts
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aijob-web"))
        .env("AIJOB_WEB_LISTEN", &listen)
        .env_remove("AIJOB_WEB_TOKEN")
        .output()
        .expect("run aijob-web");
    assert_eq!(out.status.code(), Some(2));
    let mut p = Proc::spawn(
        "web",
        env!("CARGO_BIN_EXE_aijob-web"),
        &["--listen", &listen, "--redis-url", &srv.url()],
        &[("AIJOB_WEB_TOKEN", "another-long-token")],
    );
    wait_until(Duration::from_secs(10), "aijob-web to listen", || {
        assert!(p.is_alive(), "{}", p.log_text());
        std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).ok()
    });
    assert!(!p.log_text().contains("another-long-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_has_the_csp_and_no_inline_script() {
    let srv = Server::start();
    let mut rc = srv.conn();
    let id = create(&mut rc, "q", &["GROUP", "g1"]);
    ok(&mut rc, &["SCHEDULE.SET", "q", "tick", "EVERY", "60000", "PAYLOAD", "{}"]);
    let web = Web::start(&srv, &[], &[]);
    let pages = [
        "/".to_string(),
        "/q/q".into(),
        format!("/q/q/job/{id}"),
        "/q/q/schedules".into(),
        "/q/q/groups".into(),
        "/q/q/purge".into(),
        "/ratelimits".into(),
        "/q/q?status=error".into(),
    ];
    for p in &pages {
        let r = http().get(web.url(p)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{p}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
        assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"), "{p}: {csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{p}: {csp}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        let body = r.text().await.unwrap();
        for tag in body.split("<script").skip(1) {
            assert!(
                tag.trim_start().starts_with("src=\"/static/"),
                "{p}: an inline script: <script{}",
                &tag[..tag.len().min(60)]
            );
        }
        assert!(!body.contains(" style=\"") && !body.contains(" onclick="), "{p}: inline style or handler");
        assert!(!body.contains("https://") && !body.contains("http://"), "{p}: every asset from the binary, no CDN");
    }
    let js = http().get(web.url("/static/app.js")).send().await.unwrap();
    assert_eq!(js.status(), StatusCode::OK);
    assert!(js.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    // without a credential, a name other than loopback's is refused (DNS rebinding)
    let r = http().get(web.url("/")).header("host", "evil.example").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http().get(web.url("/")).header("host", format!("localhost:{}", web.port)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http().get(web.url("/q/bad%20name")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = http().get(web.url("/q/q/job/nope")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http().get(web.url(&format!("/q/q/find?id=+{id}+"))).send().await.unwrap();
    assert_eq!(r.headers()[LOCATION].to_str().unwrap(), format!("/q/q/job/{id}"));
    let r = http().get(web.url("/q/q/find?id=%3Cb%3E")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_needs_the_csrf_token_of_its_cookie() {
    let srv = Server::start();
    let mut rc = srv.conn();
    create(&mut rc, "q", &[]);
    let web = Web::start(&srv, &[], &[]);
    let (cookie, token) = session(&web, "/q/q").await;
    assert_eq!(token.len(), 32, "the page's forms carry the token");
    assert_eq!(format!("aijob_csrf={token}"), cookie, "the first page carries the token of the cookie it sets");
    // no cookie, no token, a wrong token, another session's token: refused, nothing changes
    let (other_cookie, other_token) = session(&web, "/").await;
    assert_ne!(other_token, token);
    type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)]);
    let cases: [Case; 4] = [
        (None, &[("csrf", token.as_str())]),
        (Some(cookie.as_str()), &[]),
        (Some(cookie.as_str()), &[("csrf", "00000000000000000000000000000000")]),
        (Some(other_cookie.as_str()), &[("csrf", token.as_str())]),
    ];
    for (ck, form) in cases {
        let r = post(&web, "/q/q/pause", ck, form).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{ck:?} {form:?}");
        assert!(r.text().await.unwrap().contains("CSRF"));
        assert_eq!(paused(&mut rc, "q"), 0);
    }
    // a GET never changes anything
    let r = http().get(web.url("/q/q/pause")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(paused(&mut rc, "q"), 0);
    let r = post(&web, "/q/q/pause", Some(&cookie), &[("csrf", &token), ("next", "/q/q")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.headers()[LOCATION].to_str().unwrap().starts_with("/q/q?msg="));
    assert_eq!(paused(&mut rc, "q"), 1);
    // `next` goes nowhere but this site
    for evil in ["//evil.example/x", "/\t/evil.example", "/\\evil.example", "https://evil.example"] {
        let r = post(&web, "/q/q/resume", Some(&cookie), &[("csrf", &token), ("next", evil)]).await;
        assert!(r.headers()[LOCATION].to_str().unwrap().starts_with("/q/q?"), "{evil}: {:?}", r.headers()[LOCATION]);
    }
    assert_eq!(paused(&mut rc, "q"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_hides_actions_and_refuses_them() {
    let srv = Server::start();
    let mut rc = srv.conn();
    let id = create(&mut rc, "q", &[]);
    ok(&mut rc, &["JOB.CANCEL", "q", &id]);
    let web = Web::start(&srv, &["--read-only"], &[]);
    for p in ["/".to_string(), "/q/q".into(), format!("/q/q/job/{id}"), "/q/q/schedules".into(), "/q/q/groups".into()] {
        let body = http().get(web.url(&p)).send().await.unwrap().text().await.unwrap();
        assert!(!body.contains("method=\"post\""), "{p}: no form that changes anything");
        assert!(body.contains("read-only"), "{p}: says it is read-only");
    }
    let (cookie, _) = session(&web, "/q/q").await;
    let token = cookie.trim_start_matches("aijob_csrf=").to_string();
    for (path, form) in [
        ("/q/q/pause", vec![("csrf", token.as_str())]),
        ("/q/q/jobs", vec![("csrf", token.as_str()), ("one", &*format!("retry {id}"))]),
        ("/q/q/purge", vec![("csrf", token.as_str()), ("status", "canceled"), ("confirm", "q")]),
        ("/q/q/retry-failed", vec![("csrf", token.as_str())]),
    ] {
        let r = post(&web, path, Some(&cookie), &form).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(r.text().await.unwrap().contains("read-only"));
    }
    assert_eq!(paused(&mut rc, "q"), 0);
    assert_eq!(stat(&mut rc, "q", "canceled"), 1, "the canceled job is still there, not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_shown_is_escaped_and_no_secret_is_shown() {
    let srv = Server::start();
    let mut rc = srv.conn();
    let evil = r#"{"text":"<script>alert(1)</script>","x":"\"><img src=x onerror=alert(2)>"}"#;
    let id = s(&ok(&mut rc, &["JOB.CREATE", "q", "PAYLOAD", evil, "META", r#"{"note":"</pre><b>bold</b>"}"#]));
    let (cid, tok) = claim(&mut rc, "q", &[]).unwrap();
    assert_eq!(cid, id);
    ok(&mut rc, &["JOB.UPDATE", "q", &id, "TOKEN", &tok, "PROGRESS", "<i>step</i>", "PERCENT", "40"]);
    ok(
        &mut rc,
        &[
            "JOB.UPDATE",
            "q",
            &id,
            "TOKEN",
            &tok,
            "STATUS",
            "error",
            "ERROR",
            "<script>alert(3)</script>",
            "CLASS",
            "x<y",
            "NORETRY",
        ],
    );
    ok(&mut rc, &["CONFIG", "SET", "requirepass", "hunter2-redis-pw"]);
    let url = format!("redis://:hunter2-redis-pw@127.0.0.1:{}/", srv.port);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut p = Proc::spawn("web", env!("CARGO_BIN_EXE_aijob-web"), &["--listen", &listen], &[("REDIS_URL", &url)]);
    wait_until(Duration::from_secs(10), "aijob-web to listen", || {
        assert!(p.is_alive(), "{}", p.log_text());
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let get = |path: String| async move {
        let r = http().get(format!("http://127.0.0.1:{port}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.text().await.unwrap()
    };
    let job = get(format!("/q/q/job/{id}")).await;
    let list = get("/q/q?status=error".into()).await;
    for body in [&job, &list] {
        assert!(!body.contains("<script>alert"), "a payload's script is escaped");
        assert!(!body.contains("<img src=x"), "a payload's tag is escaped");
        assert!(!body.contains("<b>bold") && !body.contains("<i>step"), "markup in meta and progress is escaped");
        assert!(!body.contains("hunter2"), "no secret of any config");
    }
    assert!(job.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the payload is shown, as text");
    assert!(job.contains("&lt;script&gt;alert(3)&lt;/script&gt;"), "the error is shown, as text");
    assert!(list.contains("&lt;script&gt;alert(3)"), "the list shows the error as text");
    assert!(!p.log_text().contains("hunter2"), "nor in the log: {}", p.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_share_one_events_reader_per_queue() {
    let srv = Server::start();
    let mut rc = srv.conn();
    create(&mut rc, "q", &[]);
    let web = Web::start(&srv, &[], &[]);
    http().get(web.url("/")).send().await.unwrap();
    let clients = |c: &mut Connection| s(&ok(c, &["CLIENT", "LIST"])).lines().count();
    let before = clients(&mut rc);
    let mut streams = Vec::new();
    for _ in 0..5 {
        let r = http().get(web.url("/live/q")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        streams.push(r);
    }
    let id = create(&mut rc, "q", &[]);
    // every browser gets the event
    for r in streams.iter_mut() {
        let mut seen = String::new();
        while !seen.contains(&id) {
            let chunk =
                tokio::time::timeout(Duration::from_secs(10), r.chunk()).await.expect("an event").unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(seen.contains("event: job") && seen.contains("\"type\":\"created\""), "{seen}");
    }
    // five browsers cost one connection: the queue's reader
    assert_eq!(clients(&mut rc), before + 1, "{}", s(&ok(&mut rc, &["CLIENT", "LIST"])));
    drop(streams);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_without_javascript_retry_all_failed_and_purge_with_confirmation() {
    let srv = Server::start();
    let mut rc = srv.conn();
    let mut ids = Vec::new();
    for _ in 0..250 {
        let id = create(&mut rc, "q", &["MAXATTEMPTS", "1"]);
        ok(&mut rc, &["JOB.UPDATE", "q", &id, "STATUS", "running"]);
        ok(&mut rc, &["JOB.UPDATE", "q", &id, "STATUS", "error", "ERROR", "boom"]);
        ids.push(id);
    }
    assert_eq!(stat(&mut rc, "q", "error"), 250);
    let web = Web::start(&srv, &[], &[]);
    let (cookie, token) = session(&web, "/q/q").await;
    let r = post(&web, "/q/q/retry-failed", Some(&cookie), &[("csrf", &token)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    wait_until(Duration::from_secs(20), "every failed job retried", || {
        (stat(&mut rc, "q", "error") == 0).then_some(())
    });
    assert_eq!(stat(&mut rc, "q", "queued"), 250);
    let page = http().get(web.url("/q/q")).header(COOKIE, &cookie).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("finished: 250 retried"), "the progress shows the end");
    // a selection: cancel two, delete one
    let r = post(
        &web,
        "/q/q/jobs",
        Some(&cookie),
        &[("csrf", &token), ("action", "cancel"), ("id", &ids[0]), ("id", &ids[1])],
    )
    .await;
    assert!(r.headers()[LOCATION].to_str().unwrap().contains("2+of+2+jobs+canceled"), "{:?}", r.headers()[LOCATION]);
    post(&web, "/q/q/jobs", Some(&cookie), &[("csrf", &token), ("one", &format!("delete {}", ids[2]))]).await;
    assert_eq!(stat(&mut rc, "q", "canceled"), 2);
    assert_eq!(stat(&mut rc, "q", "queued"), 247);
    // purge needs the queue's name typed
    let r =
        post(&web, "/q/q/purge", Some(&cookie), &[("csrf", &token), ("status", "queued"), ("confirm", "nope")]).await;
    assert!(r.headers()[LOCATION].to_str().unwrap().starts_with("/q/q/purge?status=queued&err="));
    assert_eq!(stat(&mut rc, "q", "queued"), 247);
    let confirm = http()
        .get(web.url("/q/q/purge?status=queued"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(confirm.contains("This removes <strong>247</strong> queued jobs"));
    post(&web, "/q/q/purge", Some(&cookie), &[("csrf", &token), ("status", "queued"), ("confirm", "q")]).await;
    assert_eq!(stat(&mut rc, "q", "queued"), 0);
    assert_eq!(stat(&mut rc, "q", "canceled"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_page_finds_the_job_s_events_in_a_busy_queue() {
    let srv = Server::start();
    let mut rc = srv.conn();
    let id = create(&mut rc, "busy", &[]);
    let mut pipe = redis::pipe();
    for _ in 0..1500 {
        pipe.cmd("JOB.CREATE").arg("busy").arg("PAYLOAD").arg("{}").ignore();
    }
    pipe.query::<()>(&mut rc).unwrap();
    ok(&mut rc, &["JOB.UPDATE", "busy", &id, "STATUS", "running"]);
    pipe.query::<()>(&mut rc).unwrap();
    ok(&mut rc, &["JOB.UPDATE", "busy", &id, "STATUS", "done", "RESULT", "{}"]);
    pipe.query::<()>(&mut rc).unwrap();
    let web = Web::start(&srv, &[], &[]);
    let page = http().get(web.url(&format!("/q/busy/job/{id}"))).send().await.unwrap().text().await.unwrap();
    for kind in ["created", "running", "done"] {
        assert!(page.contains(&format!("<span class=\"evt\">{kind}</span>")), "the {kind} event among 4500 others");
    }
    let looked = page.split(" entries looked at").next().unwrap().rsplit('(').next().unwrap().parse::<usize>().unwrap();
    assert!(looked <= 1000, "bounded: {looked} entries read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_jobs_are_counted_and_listed() {
    let srv = Server::start();
    let web = Web::start(&srv, &[], &[]);
    let mut rc = srv.conn();
    let parent = create(&mut rc, "flow", &[]);
    let child = create(&mut rc, "flow", &["AFTER", &parent]);
    assert_eq!(stat(&mut rc, "flow", "waiting"), 1);
    // the overview lists the queues QUEUE.LIST knows, which the module's timer learns within a tick
    let deadline = std::time::Instant::now() + Duration::from_secs(10) * timeout_scale();
    loop {
        let overview = http().get(web.url("/")).send().await.unwrap().text().await.unwrap();
        if overview.contains("/q/flow?status=waiting") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the overview never linked the waiting count:\n{overview}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = http().get(web.url("/q/flow?status=waiting")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains(&child), "the waiting job is listed");
    assert!(!page.contains(&format!("/q/flow/job/{parent}")), "only waiting jobs are listed");
    let job = http().get(web.url(&format!("/q/flow/job/{child}"))).send().await.unwrap().text().await.unwrap();
    assert!(job.contains(&format!("/q/flow/job/{parent}")), "the job page links its parent");
    assert!(job.contains("waiting on 1"), "and says how many parents it waits on");
}
