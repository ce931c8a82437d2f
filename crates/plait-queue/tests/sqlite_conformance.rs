//! The embedded SQLite store passes the conformance suite, each check on a file of its own
//! and with handles opened as separate connections (as separate processes would).

mod common;
mod conformance;

use std::sync::Arc;
use std::time::Duration;

use common::TempFolder;
use conformance::{Fixture, conformance_suite};
use plait_queue::{ManualClock, SqliteStore, Store};

fn fixture() -> Option<Fixture> {
    let folder = TempFolder::new("conformance");
    let path = folder.path().join("queue.db");
    let clock = ManualClock::new(1_700_000_000_000);
    let opener = clock.clone();
    Some(Fixture::new(
        clock,
        move || -> Arc<dyn Store> {
            Arc::new(
                SqliteStore::builder(&path)
                    .clock(opener.clone())
                    // Waiters here must be woken: no periodic look may hide a missed one.
                    .look_every(Duration::from_secs(3600))
                    .build()
                    .unwrap(),
            )
        },
        folder,
    ))
}

conformance_suite!(fixture);
