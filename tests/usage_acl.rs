//! JOB.UPDATE's USAGE writes only keys the command declares (issue 18, finding 4): the
//! rate-limit keys it settles are named with CHARGE, found by the getkeys callback, so ACL
//! key patterns and cluster slots apply to them; USAGE is bounded by `aijob.max-usage`; a
//! `_charges` field naming any other key is ignored, counted and logged, never written.

mod common;

use std::time::Duration;

use common::*;

const LIMIT: &str = "1000";
const PERIOD: &str = "60000";

/// A job of `cost` claimed by `c` with a COST charge on `key`: (id, token).
fn claim_charged(c: &mut Connection, q: &str, key: &str, cost: &str) -> (String, String) {
    create(c, q, &["COST", cost]);
    claim(c, q, &["CHARGE", key, "COST", "LIMIT", LIMIT, "PERIOD", PERIOD]).expect("a job admitted by the charge")
}

/// What the window of `key` still admits.
fn remaining(c: &mut Connection, key: &str) -> i64 {
    int(&array(&ok(c, &["RATELIMIT.PEEK", key, "LIMIT", LIMIT, "PERIOD", PERIOD]))[1])
}

fn info_stat(c: &mut Connection, name: &str) -> i64 {
    let info = s(&ok(c, &["INFO", "aijob"]));
    let prefix = format!("aijob_{name}:");
    info.lines().find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok()).unwrap_or_else(|| panic!("no {name}"))
}

fn done_with(id: &str, token: &str, extra: &[&str]) -> Vec<String> {
    let mut w: Vec<String> = ["JOB.UPDATE", "q", id, "TOKEN", token, "STATUS", "done", "RESULT", "{}"]
        .iter()
        .map(|x| x.to_string())
        .collect();
    w.extend(extra.iter().map(|x| x.to_string()));
    w
}

fn words(w: &[String]) -> Vec<&str> {
    w.iter().map(String::as_str).collect()
}

fn login(srv: &Server, user: &str) -> Connection {
    let url = format!("redis://{user}:pw@127.0.0.1:{}/", srv.port);
    redis::Client::open(url).expect("client").get_connection().expect("login")
}

#[test]
fn a_user_allowed_only_q_cannot_move_a_shared_limiter_through_usage() {
    let srv = Server::start();
    let mut admin = srv.conn();
    ok(&mut admin, &["ACL", "SETUSER", "wq", "on", ">pw", "~q", "+@all"]);
    let mut wq = login(&srv, "wq");
    assert!(err(&mut wq, &["GET", "tpm:{shared}"]).starts_with("NOPERM"), "the user may not touch the limiter");

    let (id, token) = claim_charged(&mut admin, "q", "tpm:{shared}", "10");
    assert_eq!(remaining(&mut admin, "tpm:{shared}"), 990);
    let state = s(&ok(&mut admin, &["GET", "tpm:{shared}"]));

    // The issue's own command: refused (above max-usage), the limiter as it was.
    let attack = done_with(&id, &token, &["USAGE", "999999999"]);
    assert!(cmd(&mut wq, &words(&attack)).is_err(), "USAGE 999999999 is refused");
    // Naming the key: Redis refuses it by the user's key patterns.
    let named = done_with(&id, &token, &["USAGE", "999", "CHARGE", "tpm:{shared}"]);
    let e = err(&mut wq, &words(&named));
    assert!(e.starts_with("NOPERM"), "{e}");
    assert_eq!(fs(&ok(&mut admin, &["JOB.GET", "q", &id]), "status"), "running", "a refused update changes nothing");
    // Without CHARGE the job finishes, its usage is kept, and the limiter is not touched.
    let unnamed = done_with(&id, &token, &["USAGE", "999"]);
    assert_eq!(s(&ok(&mut wq, &words(&unnamed))), "done");
    assert_eq!(fi(&ok(&mut admin, &["JOB.GET", "q", &id]), "usage"), 999);
    assert_eq!(s(&ok(&mut admin, &["GET", "tpm:{shared}"])), state, "the shared limiter did not move");
    assert_eq!(remaining(&mut admin, "tpm:{shared}"), 990);
    assert_eq!((info_stat(&mut admin, "usage_settled"), info_stat(&mut admin, "usage_unsettled")), (0, 1));

    // A user allowed the key settles it: the refusal above was the ACL's.
    let (id, token) = claim_charged(&mut admin, "q", "tpm:{shared}", "10");
    assert_eq!(remaining(&mut admin, "tpm:{shared}"), 980);
    let settle = done_with(&id, &token, &["USAGE", "500", "CHARGE", "tpm:{shared}"]);
    assert_eq!(s(&ok(&mut admin, &words(&settle))), "done");
    assert_eq!(remaining(&mut admin, "tpm:{shared}"), 490);
    assert_eq!(info_stat(&mut admin, "usage_settled"), 1);
}

#[test]
fn command_getkeys_on_job_update_lists_the_charge_keys() {
    let srv = Server::start();
    let mut c = srv.conn();
    let getkeys = |c: &mut Connection, w: &[&str]| -> Vec<String> {
        array(&ok(c, &[&["COMMAND", "GETKEYS", "JOB.UPDATE"][..], w].concat())).iter().map(s).collect()
    };
    let settle = ["q", "j", "TOKEN", "t", "STATUS", "done", "RESULT", "{}", "USAGE", "5"];
    assert_eq!(
        getkeys(&mut c, &[&settle[..], &["CHARGE", "tpm:{q}", "charge", "rpm:{q}"]].concat()),
        ["q", "tpm:{q}", "rpm:{q}"]
    );
    assert_eq!(getkeys(&mut c, &settle), ["q"]);
    // a value that reads like CHARGE is a value, for Redis as for the parser
    let tricky =
        ["q", "j", "PROGRESS", "CHARGE", "STATUS", "error", "ERROR", "CHARGE", "USAGE", "1", "CHARGE", "k:{q}"];
    assert_eq!(getkeys(&mut c, &tricky), ["q", "k:{q}"]);
    let info = array(&array(&ok(&mut c, &["COMMAND", "INFO", "job.update"]))[0]);
    let flags: Vec<String> = array(&info[2]).iter().map(s).collect();
    assert!(flags.contains(&"movablekeys".to_string()), "{flags:?}");
}

#[test]
fn usage_over_the_bound_is_refused_and_changes_nothing() {
    let srv = Server::start();
    let mut c = srv.conn();
    let (id, token) = claim_charged(&mut c, "q", "tpm:{q}", "10");
    wait_quiet(&mut c);
    let before = digest(&mut c);
    for usage in ["100000001", "999999999", "9223372036854775807"] {
        for extra in [&["USAGE", usage][..], &["USAGE", usage, "CHARGE", "tpm:{q}"]] {
            let e = err(&mut c, &words(&done_with(&id, &token, extra)));
            assert!(e.starts_with("ERR USAGE") && e.contains("max-usage 100000000"), "{e}");
        }
    }
    assert_eq!(digest(&mut c), before, "a refused USAGE writes nothing");
    assert_eq!(fs(&ok(&mut c, &["JOB.GET", "q", &id]), "status"), "running");

    // The bound is the config, and the bound itself is accepted.
    ok(&mut c, &["CONFIG", "SET", "aijob.max-usage", "500"]);
    let e = err(&mut c, &words(&done_with(&id, &token, &["USAGE", "501", "CHARGE", "tpm:{q}"])));
    assert!(e.contains("max-usage 500"), "{e}");
    assert_eq!(digest(&mut c), before);
    assert_eq!(s(&ok(&mut c, &words(&done_with(&id, &token, &["USAGE", "500", "CHARGE", "tpm:{q}"])))), "done");
    assert_eq!(remaining(&mut c, "tpm:{q}"), 500);
}

#[test]
fn a_forged_charge_field_creates_no_key() {
    let srv = Server::start();
    let mut c = srv.conn();
    let now = s(&array(&ok(&mut c, &["TIME"]))[0]).parse::<i64>().unwrap() * 1000;
    // a charge written by hand on a key outside the queue ("evil", in hex)
    let forged = format!("c {now} 1 60000 6576696c\n");

    // A record that names only the forged key, and an update that names none.
    let (id, token) = claim_charged(&mut c, "q", "tpm:{q}", "10");
    ok(&mut c, &["HSET", &format!("aijob:{{q}}:job:{id}"), "_charges", &forged]);
    assert_eq!(s(&ok(&mut c, &words(&done_with(&id, &token, &["USAGE", "100"])))), "done");
    assert_eq!(int(&ok(&mut c, &["EXISTS", "evil"])), 0, "the forged charge's key was not created");
    assert_eq!(info_stat(&mut c, "usage_unsettled"), 1);
    wait_until(Duration::from_secs(5), "the warning in the log", || {
        srv.log_tail().contains("USAGE left 1 COST charge(s) as taken").then_some(())
    });

    // The claim's own charge and the forged one, with the claim's key named: only it moves.
    let (id, token) = claim_charged(&mut c, "q", "tpm:{q}", "10");
    let record = format!("aijob:{{q}}:job:{id}");
    let claimed = s(&ok(&mut c, &["HGET", &record, "_charges"]));
    ok(&mut c, &["HSET", &record, "_charges", &format!("{claimed}{forged}")]);
    let before = remaining(&mut c, "tpm:{q}");
    let settle = done_with(&id, &token, &["USAGE", "100", "CHARGE", "tpm:{q}"]);
    assert_eq!(s(&ok(&mut c, &words(&settle))), "done");
    assert_eq!(int(&ok(&mut c, &["EXISTS", "evil"])), 0);
    let outside: Vec<String> =
        keys(&mut c).into_iter().filter(|k| !k.starts_with("aijob:{q}:") && k != "tpm:{q}").collect();
    assert!(outside.is_empty(), "no key outside the queue and its declared CHARGE key: {outside:?}");
    assert_eq!(remaining(&mut c, "tpm:{q}"), before - 90, "the declared charge settled, 10 up to 100");
    assert_eq!((info_stat(&mut c, "usage_settled"), info_stat(&mut c, "usage_unsettled")), (1, 2));
}

/// Redis Cluster holds declared keys to one slot: a single node serving every slot is
/// enough to see Redis refuse a CHARGE key of another slot before the module runs.
#[test]
fn on_a_cluster_a_charge_key_of_another_slot_is_crossslot() {
    let opts = Opts::default().with("cluster-enabled", "yes").with("cluster-config-file", "nodes.conf");
    let srv = Server::start_with(opts);
    let mut c = srv.conn();
    ok(&mut c, &["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
    wait_until(Duration::from_secs(10), "cluster_state:ok", || {
        s(&ok(&mut c, &["CLUSTER", "INFO"])).contains("cluster_state:ok").then_some(())
    });
    create(&mut c, "gen", &["COST", "10"]);
    let (id, token) =
        claim(&mut c, "gen", &["CHARGE", "tpm:{gen}", "COST", "LIMIT", LIMIT, "PERIOD", PERIOD]).expect("a job");
    let update = |key: &str| -> Vec<String> {
        ["JOB.UPDATE", "gen", &id, "TOKEN", &token, "STATUS", "done", "RESULT", "{}", "USAGE", "100", "CHARGE", key]
            .iter()
            .map(|x| x.to_string())
            .collect()
    };
    let e = err(&mut c, &words(&update("tpm:{other}")));
    assert!(e.starts_with("CROSSSLOT"), "{e}");
    assert_eq!(fs(&ok(&mut c, &["JOB.GET", "gen", &id]), "status"), "running");
    assert_eq!(int(&ok(&mut c, &["EXISTS", "tpm:{other}"])), 0);
    assert_eq!(s(&ok(&mut c, &words(&update("tpm:{gen}")))), "done");
    assert_eq!(remaining(&mut c, "tpm:{gen}"), 900);
}
