//! aijob on Redis Cluster (3 masters, 3 replicas, the module on every node): queues spread
//! over the masters, claims, cache coalescing, rate limits, sharded events, CROSSSLOT,
//! and a master killed mid-workload.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;

fn queues(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("q{i}")).collect()
}

#[test]
fn queues_spread_over_the_masters_and_everything_works_there() {
    let mut cl = Cluster::start();
    let mut c = cl.client();
    let names = queues(24);
    let mut owners = HashSet::new();
    for q in &names {
        owners.insert(cl.master_of(q));
        for _ in 0..3 {
            cok(&mut c, &["JOB.CREATE", q, "PAYLOAD", "{}"]);
        }
        cok(&mut c, &["JOB.CREATE", q, "PAYLOAD", "{}", "DELAY", "200"]);
    }
    assert_eq!(owners.len(), 3, "24 queues land on all three masters");
    // every key of a queue lives on its master
    for q in &names {
        let m = cl.master_of(q);
        let mut node = cl.nodes[m].conn();
        let keys: Vec<String> = array(&ok(&mut node, &["KEYS", &format!("aijob:{{{q}}}:*")])).iter().map(s).collect();
        assert!(keys.iter().any(|k| k.ends_with(":meta")), "{q} on node {m}: {keys:?}");
    }
    // claims and finishes; the delayed ones come due on every master by its own timer
    for q in &names {
        let got = wait_until(Duration::from_secs(5), "the delayed job to come due", || {
            let n = int(&field(&cok(&mut c, &["QUEUE.STATS", q]), "queued").unwrap());
            (n == 4).then_some(n)
        });
        assert_eq!(got, 4);
        let jobs = array(&cok(&mut c, &["JOB.CLAIM", q, "COUNT", "10"]));
        assert_eq!(jobs.len(), 4);
        for j in jobs {
            cok(&mut c, &["JOB.UPDATE", q, &fs(&j, "id"), "TOKEN", &fs(&j, "token"), "STATUS", "done", "RESULT", "1"]);
        }
        assert_eq!(fi(&cok(&mut c, &["QUEUE.STATS", q]), "done"), 4);
    }
    // cache coalescing per queue
    for q in names.iter().take(6) {
        let first = array(&cok(&mut c, &["CACHE.GETORQUEUE", q, "PAYLOAD", "{\"p\":1}"]));
        let second = array(&cok(&mut c, &["CACHE.GETORQUEUE", q, "PAYLOAD", "{ \"p\" : 1 }"]));
        assert_eq!((s(&first[0]), s(&second[0])), ("queued".into(), "pending".into()));
        assert_eq!(s(&first[1]), s(&second[1]));
        let j = array(&cok(&mut c, &["JOB.CLAIM", q])).remove(0);
        cok(&mut c, &["JOB.UPDATE", q, &fs(&j, "id"), "TOKEN", &fs(&j, "token"), "STATUS", "done", "RESULT", "\"r\""]);
        let hit = array(&cok(&mut c, &["CACHE.GETORQUEUE", q, "PAYLOAD", "{\"p\":1}"]));
        assert_eq!((s(&hit[0]), s(&hit[2])), ("hit".into(), "\"r\"".into()));
    }
    // rate limits and locks on keys of every slot
    for i in 0..12 {
        let key = format!("rl:{{client{i}}}");
        for _ in 0..3 {
            cok(&mut c, &["RATELIMIT.HIT", &key, "LIMIT", "3", "PERIOD", "60000"]);
        }
        let denied = array(&cok(&mut c, &["RATELIMIT.HIT", &key, "LIMIT", "3", "PERIOD", "60000"]));
        assert_eq!(int(&denied[0]), 0);
        assert!(cok(&mut c, &["LOCK.ACQUIRE", &format!("lock:{{client{i}}}"), "TTL", "1000"]) != Value::Nil);
    }
}

#[test]
fn charge_keys_must_share_the_queue_slot() {
    let cl = Cluster::start();
    let mut c = cl.client();
    cok(&mut c, &["JOB.CREATE", "gen", "PAYLOAD", "{}", "COST", "10"]);
    let e = ccmd(&mut c, &["JOB.CLAIM", "gen", "CHARGE", "tpm:{other}", "COST", "LIMIT", "100", "PERIOD", "1000"])
        .unwrap_err();
    assert!(error_text(&e).contains("CROSSSLOT"), "{}", error_text(&e));
    let got =
        array(&cok(&mut c, &["JOB.CLAIM", "gen", "CHARGE", "tpm:{gen}", "COST", "LIMIT", "100", "PERIOD", "1000"]));
    assert_eq!(got.len(), 1);
}

#[test]
fn job_events_arrive_by_sharded_pubsub() {
    let mut cl = Cluster::start();
    let mut c = cl.client();
    let id = s(&cok(&mut c, &["JOB.CREATE", "events", "PAYLOAD", "{}", "ID", "e1"]));
    let owner = cl.master_of("events");
    let mut sub = cl.nodes[owner].conn();
    sub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let channel = format!("aijob:{{events}}:job:{id}");
    redis::cmd("SSUBSCRIBE").arg(&channel).exec(&mut sub).unwrap();
    cok(&mut c, &["JOB.UPDATE", "events", &id, "STATUS", "running"]);
    cok(&mut c, &["JOB.UPDATE", "events", &id, "PROGRESS", "half", "PERCENT", "50"]);
    let mut kinds = vec![];
    while kinds.len() < 2 {
        let msg = array(&sub.recv_response().unwrap());
        assert_eq!(s(&msg[0]), "smessage");
        assert_eq!(s(&msg[1]), channel);
        let e: serde_json::Value = serde_json::from_str(&s(&msg[2])).unwrap();
        kinds.push(e["type"].as_str().unwrap().to_string());
    }
    assert_eq!(kinds, ["running", "progress"]);
}

/// (id, token) of each job a JOB.CLAIM reply holds. While a failover is under way a client
/// can see other replies (an error in place of a record); those hold no job.
fn claimed(reply: &Value) -> Vec<(String, String)> {
    let Value::Array(items) = reply else { return vec![] };
    items
        .iter()
        .filter(|j| matches!(j, Value::Map(_) | Value::Array(_)))
        .filter_map(|j| {
            let get = |name: &str| {
                let pairs: Vec<(Value, Value)> = match j {
                    Value::Map(m) => m.clone(),
                    Value::Array(a) => {
                        a.chunks(2).filter(|p| p.len() == 2).map(|p| (p[0].clone(), p[1].clone())).collect()
                    }
                    _ => vec![],
                };
                pairs
                    .into_iter()
                    .find(|(k, _)| matches!(k, Value::BulkString(b) if b == name.as_bytes()))
                    .map(|(_, v)| v)
            };
            match (get("id"), get("token")) {
                (Some(Value::BulkString(id)), Some(Value::BulkString(tok))) => {
                    Some((String::from_utf8_lossy(&id).into_owned(), String::from_utf8_lossy(&tok).into_owned()))
                }
                _ => None,
            }
        })
        .collect()
}

/// A master is killed mid-workload; its replica takes over; workers keep going.
#[test]
fn a_master_killed_mid_workload_loses_only_what_replication_had_not_sent() {
    let mut cl = Cluster::start();
    let names = Arc::new(queues(20));
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, String, Instant)>>> = Arc::new(Mutex::new(vec![]));
    let dones: Arc<Mutex<HashMap<String, usize>>> = Arc::new(Mutex::new(HashMap::new()));
    let urls = cl.urls();
    let client = move || {
        redis::cluster::ClusterClientBuilder::new(urls.clone())
            .retries(30)
            .connection_timeout(Duration::from_secs(1))
            .build()
            .unwrap()
            .get_connection()
            .unwrap()
    };
    let producer = {
        let (names, stop, acked, mut c) = (names.clone(), stop.clone(), acked.clone(), client());
        thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let q = &names[i % names.len()];
                if let Ok(v) = ccmd(&mut c, &["JOB.CREATE", q, "PAYLOAD", "{}"]) {
                    acked.lock().unwrap().push((q.clone(), s(&v), Instant::now()));
                }
                i += 1;
                thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (names, stop, dones, mut c) = (names.clone(), stop.clone(), dones.clone(), client());
            thread::spawn(move || {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let q = &names[i % names.len()];
                    i += 1;
                    let Ok(got) = ccmd(&mut c, &["JOB.CLAIM", q, "LEASE", "1000", "COUNT", "5"]) else { continue };
                    for (id, tok) in claimed(&got) {
                        let done =
                            ccmd(&mut c, &["JOB.UPDATE", q, &id, "TOKEN", &tok, "STATUS", "done", "RESULT", "1"]);
                        if done.is_ok() {
                            *dones.lock().unwrap().entry(id).or_default() += 1;
                        }
                    }
                }
            })
        })
        .collect();
    // load on every master before the kill: a few hundred acknowledged jobs
    wait_until(Duration::from_secs(30), "load before the kill", || (acked.lock().unwrap().len() >= 300).then_some(()));
    let victim = cl.master_of("q0");
    // Every job acknowledged before `replicated` has reached the victim's replica: the
    // replica's acknowledged offset passed the master's offset read after that instant.
    // Asynchronous replication may lose only what came later.
    let replicated = Instant::now();
    let mut vc = cl.nodes[victim].conn();
    let offset_then = repl_field(&mut vc, "master_repl_offset:");
    wait_until(Duration::from_secs(10), "the replica to catch up", || {
        (replica_acked_offset(&mut vc) >= offset_then).then_some(())
    });
    let killed_at = Instant::now();
    cl.nodes[victim].kill();
    // the replica takes over (cluster-node-timeout 1500 ms)
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = cl.masters();
        if m.len() == 3 && !m.contains(&victim) {
            break;
        }
        if Instant::now() > deadline {
            let live = cl.nodes.iter_mut().position(|n| n.is_alive()).unwrap();
            let nodes = s(&ok(&mut cl.nodes[live].conn(), &["CLUSTER", "NODES"]));
            let logs: Vec<String> = cl.nodes.iter().map(|n| n.log_tail()).collect();
            panic!("no failover after 30 s: masters {m:?}, victim {victim}\n{nodes}\n{}", logs.join("\n----\n"));
        }
        thread::sleep(Duration::from_millis(100));
    }
    let failover = killed_at.elapsed();
    // and load on the promoted replica after it
    let at_failover = acked.lock().unwrap().len();
    wait_until(Duration::from_secs(30), "load after the failover", || {
        (acked.lock().unwrap().len() >= (at_failover + 300).max(600)).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    for w in workers {
        w.join().unwrap();
    }
    // drain what is left (leases of the dead master's workers expire and come back)
    let mut c = client();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut left = 0;
        for q in names.iter() {
            for (id, tok) in claimed(&ccmd(&mut c, &["JOB.CLAIM", q, "COUNT", "100"]).unwrap_or(Value::Nil)) {
                if ccmd(&mut c, &["JOB.UPDATE", q, &id, "TOKEN", &tok, "STATUS", "done", "RESULT", "1"]).is_ok() {
                    *dones.lock().unwrap().entry(id).or_default() += 1;
                }
            }
            let st = ccmd(&mut c, &["QUEUE.STATS", q]).unwrap();
            left += fi(&st, "queued") + fi(&st, "running") + fi(&st, "delayed");
        }
        if left == 0 || Instant::now() > deadline {
            assert_eq!(left, 0, "jobs left behind");
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    let acked = acked.lock().unwrap();
    let mut lost = vec![];
    for (q, id, at) in acked.iter() {
        if ccmd(&mut c, &["JOB.GET", q, id]).unwrap() == Value::Nil {
            lost.push(*at);
        }
    }
    let dones = dones.lock().unwrap();
    let twice = dones.values().filter(|n| **n > 1).count();
    eprintln!(
        "failover after {failover:?}: {} jobs acknowledged, {} lost, {} finished twice, {} finished",
        acked.len(),
        lost.len(),
        twice,
        dones.len()
    );
    // asynchronous replication can lose only what the dead master had not yet sent
    for at in &lost {
        assert!(*at > replicated, "a job acknowledged before its replica caught up was lost");
    }
    assert!(lost.len() <= 20, "{} lost", lost.len());
    assert!(twice <= lost.len().max(2), "{twice} finished twice");
    assert!(acked.len() > 500);
}

/// A number after `field` in INFO replication.
fn repl_field(c: &mut Connection, field: &str) -> i64 {
    let info = s(&ok(c, &["INFO", "replication"]));
    info.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.trim().parse().ok()).unwrap_or(-1)
}

/// The offset the first replica has acknowledged (`slave0:ip=...,offset=N,...`), or -1.
fn replica_acked_offset(c: &mut Connection) -> i64 {
    let info = s(&ok(c, &["INFO", "replication"]));
    let line = info.lines().find(|l| l.starts_with("slave0:")).unwrap_or("");
    line.split(',').find_map(|kv| kv.strip_prefix("offset=")).and_then(|v| v.trim().parse().ok()).unwrap_or(-1)
}

#[test]
fn a_flow_lives_in_one_queue_and_so_in_one_slot() {
    let mut cl = Cluster::start();
    let mut c = cl.client();
    cok(&mut c, &["JOB.CREATE", "draft", "PAYLOAD", "{}", "ID", "tr-1"]);
    cok(&mut c, &["JOB.CREATE", "draft", "PAYLOAD", "{}", "ID", "sum-1", "AFTER", "tr-1"]);
    // an id of another queue is no job there
    let e = ccmd(&mut c, &["JOB.CREATE", "media", "PAYLOAD", "{}", "AFTER", "tr-1"]).unwrap_err();
    assert!(error_text(&e).starts_with("NOTFOUND parent tr-1 is not a job of queue media"), "{}", error_text(&e));
    // a MULTI that mixes two queues' commands is refused by Redis itself: a queue on
    // another node answers MOVED as it is queued, one on the same node CROSSSLOT at EXEC
    let m = cl.master_of("draft");
    let other =
        (0..200).map(|i| format!("media{i}")).find(|q| cl.master_of(q) == m).expect("a queue on draft's master");
    let mut node = cl.nodes[m].conn();
    let slot = |n: &mut Connection, q: &str| int(&ok(n, &["CLUSTER", "KEYSLOT", q]));
    assert_ne!(slot(&mut node, "draft"), slot(&mut node, &other));
    ok(&mut node, &["MULTI"]);
    ok(&mut node, &["JOB.CREATE", "draft", "PAYLOAD", "{}", "AFTER", "tr-1"]);
    ok(&mut node, &["JOB.CREATE", &other, "PAYLOAD", "{}", "AFTER", "tr-1"]);
    let e = err(&mut node, &["EXEC"]);
    assert!(e.starts_with("CROSSSLOT"), "{e}");
    assert_eq!(fi(&cok(&mut c, &["QUEUE.STATS", "draft"]), "waiting"), 1, "nothing of the MULTI ran");
    // the flow runs on the queue's master
    let a = array(&cok(&mut c, &["JOB.CLAIM", "draft"]));
    assert_eq!(fs(&a[0], "id"), "tr-1");
    cok(&mut c, &["JOB.UPDATE", "draft", "tr-1", "TOKEN", &fs(&a[0], "token"), "STATUS", "done", "RESULT", "1"]);
    let b = array(&cok(&mut c, &["JOB.CLAIM", "draft"]));
    assert_eq!(fs(&b[0], "id"), "sum-1");
    let inputs = array(&field(&b[0], "inputs").unwrap());
    assert_eq!(
        (fs(&inputs[0], "id"), fs(&inputs[0], "status"), fs(&inputs[0], "result")),
        ("tr-1".into(), "done".into(), "1".into())
    );
}
