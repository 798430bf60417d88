//! aijob-web against a Redis Cluster (3 masters): every master's queues on the overview,
//! pages and actions routed to each queue's master, live events from each queue's node.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::cluster::*;
use common::*;

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_asks_every_master_and_acts_on_each_queue_where_it_lives() {
    let mut cl = Cluster::start_with(3, 0);
    let mut c = cl.client();
    let names: Vec<String> = (0..12).map(|i| format!("tenant-q{i}")).collect();
    let mut owners = BTreeSet::new();
    for q in &names {
        owners.insert(cl.master_of(q));
        cok(&mut c, &["JOB.CREATE", q, "PAYLOAD", "{}"]);
    }
    assert_eq!(owners.len(), 3, "the queues live on all three masters");
    let web = Web::start_url(&cl.url(), &[], &[]);

    let r = http().get(web.url("/")).send().await.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let token = cookie.trim_start_matches("aijob_csrf=").to_string();
    let page = r.text().await.unwrap();
    for q in &names {
        assert!(page.contains(&format!("href=\"/q/{q}\"")), "{q} is on the overview");
    }
    assert!(page.contains(">cluster<"), "the header says it is a cluster");

    // a queue page and an action, for a queue on each master
    let mut rx = Vec::new();
    for q in names.iter().take(6) {
        let body = http().get(web.url(&format!("/q/{q}"))).send().await.unwrap().text().await.unwrap();
        assert!(body.contains(&format!("<h1>{q}")), "{q}: {}", &body[..body.len().min(300)]);
        let r = http()
            .post(web.url(&format!("/q/{q}/pause")))
            .header("cookie", &cookie)
            .form(&[("csrf", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(fi(&cok(&mut c, &["QUEUE.STATS", q]), "paused"), 1, "{q} paused on its master");
        rx.push((q.clone(), http().get(web.url(&format!("/live/{q}"))).send().await.unwrap()));
    }
    // live events come from each queue's own node
    for (q, r) in rx.iter_mut() {
        let id = s(&cok(&mut c, &["JOB.CREATE", q, "PAYLOAD", "{}"]));
        let mut seen = String::new();
        while !seen.contains(&id) {
            let chunk =
                tokio::time::timeout(Duration::from_secs(10), r.chunk()).await.expect("an event").unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
