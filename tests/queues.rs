//! QUEUE.LIST: the queues a node holds, from the module's in-memory registry, on a single
//! server, after a restart, on a replica and on a cluster.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::cluster::*;
use common::*;

fn names(v: &Value) -> Vec<String> {
    array(v).iter().map(s).collect()
}

/// QUEUE.LIST once the node knows its queues (a fresh master needs its first tick).
fn list(c: &mut Connection, words: &[&str]) -> Vec<String> {
    let mut w = vec!["QUEUE.LIST"];
    w.extend_from_slice(words);
    wait_until(Duration::from_secs(10), "QUEUE.LIST to answer", || cmd(c, &w).ok().map(|v| names(&v)))
}

#[test]
fn lists_the_queues_commands_made_in_name_order_with_match_and_paging() {
    let srv = Server::start();
    let mut c = srv.conn();
    assert!(list(&mut c, &[]).is_empty(), "a fresh server holds no queue");
    for q in ["sketch-2", "mail", "sketch-0", "ai", "sketch-1"] {
        create(&mut c, q, &[]);
    }
    ok(&mut c, &["SCHEDULE.SET", "cron", "tick", "EVERY", "60000", "PAYLOAD", "{}"]);
    ok(&mut c, &["QUEUE.GROUPCAP", "capped", "*", "3"]);
    assert_eq!(list(&mut c, &[]), ["ai", "capped", "cron", "mail", "sketch-0", "sketch-1", "sketch-2"]);
    assert_eq!(list(&mut c, &["MATCH", "sketch-*"]), ["sketch-0", "sketch-1", "sketch-2"]);
    assert_eq!(list(&mut c, &["match", "s?etch-[02]"]), ["sketch-0", "sketch-2"]);
    assert_eq!(list(&mut c, &["COUNT", "2"]), ["ai", "capped"]);
    assert_eq!(list(&mut c, &["COUNT", "2", "AFTER", "capped"]), ["cron", "mail"]);
    assert_eq!(list(&mut c, &["MATCH", "sketch-*", "AFTER", "sketch-1", "COUNT", "5"]), ["sketch-2"]);
    assert!(list(&mut c, &["AFTER", "sketch-2"]).is_empty());
    // a read of an unknown queue makes no queue; a refused write neither
    ok(&mut c, &["QUEUE.STATS", "nothing"]);
    err(&mut c, &["JOB.CANCEL", "ghost", "no-such-id"]);
    assert!(!list(&mut c, &[]).contains(&"nothing".to_string()));
    wait_until(Duration::from_secs(5), "the refused write's queue to be forgotten", || {
        (!list(&mut c, &[]).contains(&"ghost".to_string())).then_some(())
    });
    // each db has its own queues
    ok(&mut c, &["SELECT", "3"]);
    create(&mut c, "other-db", &[]);
    assert_eq!(list(&mut c, &[]), ["other-db"]);
    ok(&mut c, &["SELECT", "0"]);
    assert!(!list(&mut c, &[]).contains(&"other-db".to_string()));
}

#[test]
fn a_queue_whose_keys_are_gone_is_not_listed() {
    let srv = Server::start();
    let mut c = srv.conn();
    create(&mut c, "kept", &[]);
    create(&mut c, "flushed", &[]);
    assert_eq!(list(&mut c, &[]), ["flushed", "kept"]);
    // no command of the module ran: the registry still names it, the reply does not
    let keys: Vec<String> = keys(&mut c).into_iter().filter(|k| k.starts_with("aijob:{flushed}")).collect();
    let mut del = vec!["DEL"];
    del.extend(keys.iter().map(|k| k.as_str()));
    ok(&mut c, &del);
    assert_eq!(list(&mut c, &[]), ["kept"]);
    assert_eq!(list(&mut c, &["COUNT", "1"]), ["kept"], "a ghost does not shorten a page");
    ok(&mut c, &["FLUSHALL"]);
    assert!(list(&mut c, &[]).is_empty());
}

#[test]
fn bad_input_is_refused_naming_the_argument_and_changes_nothing() {
    let srv = Server::start();
    let mut c = srv.conn();
    create(&mut c, "q", &[]);
    list(&mut c, &[]);
    let before = digest(&mut c);
    let cases: &[(&[&str], &str)] = &[
        (&["COUNT"], "COUNT needs a value"),
        (&["COUNT", "0"], "COUNT must be positive"),
        (&["COUNT", "-1"], "COUNT must be positive"),
        (&["COUNT", "many"], "COUNT must be an integer"),
        (&["COUNT", "10001"], "COUNT must be at most 10000"),
        (&["MATCH"], "MATCH needs a value"),
        (&["MATCH", ""], "MATCH must be 1 to 256 bytes"),
        (&["AFTER", "a{b}"], "AFTER has a character"),
        (&["AFTER"], "AFTER needs a value"),
        (&["LIMIT", "3"], "unknown option 'LIMIT'"),
        (&["q"], "unknown option 'Q'"),
    ];
    for (args, want) in cases {
        let mut w = vec!["QUEUE.LIST"];
        w.extend_from_slice(args);
        let e = err(&mut c, &w);
        assert!(e.starts_with("ERR ") && e.contains(want), "{args:?}: {e}");
    }
    let e = err(&mut c, &["QUEUE.LIST", "MATCH", "caf\u{e9}"]);
    assert!(e.contains("MATCH must be printable ASCII") && e.is_ascii(), "{e}");
    assert_eq!(digest(&mut c), before, "a refused QUEUE.LIST changes nothing");
    // keyless: COMMAND GETKEYS finds no key, and it is read-only (allowed on replicas)
    let e = err(&mut c, &["COMMAND", "GETKEYS", "QUEUE.LIST", "MATCH", "x"]);
    assert!(e.contains("no key") || e.contains("Invalid"), "{e}");
    let info = array(&array(&ok(&mut c, &["COMMAND", "INFO", "queue.list"]))[0]);
    assert!(array(&info[2]).iter().any(|f| s(f) == "readonly"));
}

#[test]
fn a_restarted_master_finds_its_queues_and_a_replica_refuses() {
    let dir = TempDir::new("qlist");
    let opts = Opts { dir: Some(dir.0.clone()), ..Opts::default() }.with("appendonly", "yes");
    let mut srv = Server::start_with(opts.clone());
    let mut c = srv.conn();
    for i in 0..50 {
        create(&mut c, &format!("q{i:02}"), &[]);
    }
    srv.kill();
    let srv = Server::start_with(Opts { port: Some(srv.port), ..opts });
    let mut c = srv.conn();
    // discovery by the timer's SCAN: until it has finished the master says so
    let found = list(&mut c, &[]);
    let want: Vec<String> = (0..50).map(|i| format!("q{i:02}")).collect();
    assert_eq!(found, want);

    let replica = Server::start();
    replicate(&srv, &replica);
    wait_synced(&srv, &replica);
    let mut r = replica.conn();
    let e = err(&mut r, &["QUEUE.LIST"]);
    assert!(e.contains("answers on a master"), "{e}");
    // the replica holds the data: the master's answer is the one to use
    assert_eq!(int(&ok(&mut r, &["EXISTS", "aijob:{q07}:meta"])), 1);
}

#[test]
fn on_a_cluster_each_master_lists_its_own_queues() {
    let mut cl = Cluster::start_with(3, 1);
    let mut c = cl.client();
    let all: BTreeSet<String> = (0..30).map(|i| format!("q{i}")).collect();
    for q in &all {
        cok(&mut c, &["JOB.CREATE", q, "PAYLOAD", "{}"]);
    }
    cl.wait_replicas_synced();
    let mut union = BTreeSet::new();
    for m in cl.masters() {
        let mut node = cl.nodes[m].conn();
        let mine = list(&mut node, &[]);
        assert!(!mine.is_empty(), "node {m} holds some of the 30 queues");
        for q in &mine {
            assert_eq!(cl.master_of(q), m, "{q} is listed by the master of its slot only");
            assert!(union.insert(q.clone()), "{q} listed twice");
        }
    }
    assert_eq!(union, all);
    let replica = (0..cl.nodes.len()).find(|i| !cl.masters().contains(i)).expect("a replica");
    let e = err(&mut cl.nodes[replica].conn(), &["QUEUE.LIST"]);
    assert!(e.contains("answers on a master"), "{e}");
}
