//! A local Redis Cluster for tests: 3 masters and 3 replicas on loopback, each with the
//! module, on ports whose bus port (port + 10000) is free too.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::*;

pub struct Cluster {
    pub nodes: Vec<Server>,
    /// One cluster at a time per test binary: six nodes with AOF each, five clusters at once
    /// on two cores flapped (node timeouts) and never reached `cluster_state:ok`. Declared
    /// after `nodes`, so the nodes are stopped before the next cluster starts.
    _turn: MutexGuard<'static, ()>,
}

static CLUSTER_TURN: Mutex<()> = Mutex::new(());

fn port_pair_free(p: u16) -> bool {
    TcpListener::bind(("127.0.0.1", p)).is_ok() && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok()
}

/// A port at most 55535 whose bus port (port + 10000) is free as well.
fn cluster_port() -> u16 {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64
        ^ (std::process::id() as u64).wrapping_mul(2654435761);
    let mut p = 20_000 + (seed % 35_000) as u16;
    loop {
        p = if p >= 55_000 { 20_000 } else { p + 1 };
        if port_pair_free(p) {
            return p;
        }
    }
}

impl Cluster {
    /// One cluster-enabled node; a port taken between the check and the start (by a test
    /// running beside this one) is replaced by another.
    fn start_node() -> Server {
        let mut last = String::new();
        for _ in 0..10 {
            let opts = Opts { port: Some(cluster_port()), ..Default::default() }
                .with("cluster-enabled", "yes")
                .with("cluster-config-file", "nodes.conf")
                .with("cluster-node-timeout", "1500")
                .with("repl-diskless-sync-delay", "0")
                .with("appendonly", "yes");
            match Server::try_start(opts) {
                Ok(s) => return s,
                Err(e) => last = e,
            }
        }
        panic!("could not start a cluster node: {last}");
    }

    pub fn start() -> Cluster {
        Cluster::start_with(3, 1)
    }

    pub fn start_with(masters: usize, replicas_per_master: usize) -> Cluster {
        // a test that failed while holding the turn leaves the lock poisoned, not unusable
        let turn = CLUSTER_TURN.lock().unwrap_or_else(|e| e.into_inner());
        let total = masters * (1 + replicas_per_master);
        let nodes: Vec<Server> = (0..total).map(|_| Cluster::start_node()).collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create").args(&addrs);
        create.arg("--cluster-replicas").arg(replicas_per_master.to_string()).arg("--cluster-yes");
        let out = create.output().expect("redis-cli --cluster create");
        assert!(out.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        let cluster = Cluster { nodes, _turn: turn };
        cluster.wait_ok();
        cluster.wait_replicas_synced();
        cluster
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }

    /// `redis+cluster://` with every node as a seed (the fetcher's form).
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// A cluster client (follows MOVED/ASK).
    pub fn client(&self) -> redis::cluster::ClusterConnection {
        let client = redis::cluster::ClusterClientBuilder::new(self.urls())
            .retries(20)
            .connection_timeout(Duration::from_secs(2))
            .build()
            .expect("cluster client");
        client.get_connection().expect("cluster connection")
    }

    /// Waits until every node says the cluster is ok and knows every node.
    pub fn wait_ok(&self) {
        let known = format!("cluster_known_nodes:{}", self.nodes.len());
        for n in &self.nodes {
            let mut c = n.conn();
            wait_until(Duration::from_secs(30), "cluster_state:ok", || {
                let info = s(&ok(&mut c, &["CLUSTER", "INFO"]));
                (info.contains("cluster_state:ok") && info.contains(&known)).then_some(())
            });
        }
    }

    /// Waits until every replica has its master link up (a replica that never synced
    /// cannot take over).
    pub fn wait_replicas_synced(&self) {
        for n in &self.nodes {
            let mut c = n.conn();
            wait_until(Duration::from_secs(30), "replicas in sync", || {
                let info = s(&ok(&mut c, &["INFO", "replication"]));
                (info.contains("role:master") || info.contains("master_link_status:up")).then_some(())
            });
        }
    }

    /// The node serving `key`'s slot as master.
    pub fn master_of(&mut self, key: &str) -> usize {
        let mut c = self.nodes.iter_mut().find_map(|n| n.is_alive().then(|| n.conn())).expect("a live node");
        let slot = int(&ok(&mut c, &["CLUSTER", "KEYSLOT", key]));
        let slots = array(&ok(&mut c, &["CLUSTER", "SLOTS"]));
        for range in slots {
            let r = array(&range);
            if int(&r[0]) <= slot && slot <= int(&r[1]) {
                let port = int(&array(&r[2])[1]) as u16;
                return self.nodes.iter().position(|n| n.port == port).expect("a known node");
            }
        }
        panic!("no master for slot {slot}");
    }

    /// Indexes of the nodes that are masters now.
    pub fn masters(&mut self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].is_alive() && {
                    let mut c = self.nodes[i].conn();
                    array(&ok(&mut c, &["ROLE"])).first().map(s).as_deref() == Some("master")
                }
            })
            .collect()
    }
}

/// Runs a command through the cluster client.
pub fn ccmd(c: &mut redis::cluster::ClusterConnection, words: &[&str]) -> redis::RedisResult<Value> {
    let mut command = redis::cmd(words[0]);
    for w in &words[1..] {
        command.arg(*w);
    }
    command.query(c)
}

pub fn cok(c: &mut redis::cluster::ClusterConnection, words: &[&str]) -> Value {
    ccmd(c, words).unwrap_or_else(|e| panic!("{words:?} failed: {e}"))
}
