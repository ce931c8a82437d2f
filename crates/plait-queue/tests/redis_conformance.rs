//! The Redis store passes the conformance suite, each check in a namespace of its own on
//! the test server, with handles opened as separate connections (as separate processes
//! would).

mod common;
mod conformance;

use std::sync::Arc;
use std::time::Duration;

use common::{RedisNamespace, redis_url};
use conformance::{Fixture, conformance_suite};
use plait_queue::{ManualClock, RedisStore, Store};

fn fixture() -> Option<Fixture> {
    if !common::redis_answers() {
        return None;
    }
    let namespace = RedisNamespace::new("conformance");
    let name = namespace.0.clone();
    let clock = ManualClock::new(1_700_000_000_000);
    let opener = clock.clone();
    Some(Fixture::new(
        clock,
        move || -> Arc<dyn Store> {
            Arc::new(
                RedisStore::builder(redis_url())
                    .namespace(name.clone())
                    .clock(opener.clone())
                    // Waiters here must be woken: no periodic look may hide a missed one.
                    .look_every(Duration::from_secs(3600))
                    .build()
                    .unwrap_or_else(|e| panic!("the Redis tests need a server: {e}")),
            )
        },
        namespace,
    ))
}

conformance_suite!(fixture);
