//! The Redis store on a Redis Cluster of three nodes (started by the tests) passes the
//! conformance suite: a queue's keys share a hash tag, so each script runs on one node,
//! and nothing the store does needs two queues' keys in one command.

mod common;
mod conformance;

use std::sync::Arc;
use std::time::Duration;

use common::{RedisCluster, RedisNamespace};
use conformance::{Fixture, conformance_suite};
use plait_queue::{ManualClock, RedisStore, Store};

/// Whether a cluster can be started here (see `common::needs`).
fn cluster_here() -> bool {
    common::program_here("redis-server") && common::program_here("redis-cli")
}

fn fixture() -> Option<Fixture> {
    if !cluster_here() {
        return None;
    }
    let cluster = RedisCluster::shared();
    let namespace = RedisNamespace::new("cluster");
    let name = namespace.0.clone();
    let clock = ManualClock::new(1_700_000_000_000);
    let opener = clock.clone();
    let url = cluster.url();
    Some(Fixture::new(
        clock,
        move || -> Arc<dyn Store> {
            Arc::new(
                RedisStore::builder(url.clone())
                    .namespace(name.clone())
                    .clock(opener.clone())
                    .look_every(Duration::from_secs(3600))
                    .build()
                    .unwrap_or_else(|e| panic!("the cluster tests need redis-server: {e}")),
            )
        },
        namespace,
    ))
}

conformance_suite!(fixture);

#[test]
fn the_queues_of_one_store_are_spread_over_the_nodes() {
    if !cluster_here() {
        return;
    }
    let cluster = RedisCluster::shared();
    let namespace = RedisNamespace::new("spread");
    let store = RedisStore::builder(cluster.url())
        .namespace(namespace.0.clone())
        .build()
        .unwrap();
    let queues: Vec<String> = (0..12).map(|i| format!("q{i}")).collect();
    let batch: Vec<_> = queues
        .iter()
        .map(|q| plait_queue::NewTask::new(b"x".to_vec()).queue(q.clone()))
        .collect();
    store.enqueue_all(&batch).unwrap();
    // Which node holds each queue's counts.
    let mut nodes = std::collections::HashSet::new();
    for queue in &queues {
        for port in cluster.ports {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
            let mut conn = client.get_connection().unwrap();
            let here: bool = redis::cmd("EXISTS")
                .arg(format!("{}:{{{queue}}}:counts", namespace.0))
                .query(&mut conn)
                .unwrap_or(false);
            if here {
                nodes.insert(port);
            }
        }
    }
    assert!(nodes.len() > 1, "12 queues on one node: {nodes:?}");
    let stats = store.queues().unwrap();
    assert_eq!(stats.len(), 12);
    assert!(stats.iter().all(|q| q.ready == 1));
}
