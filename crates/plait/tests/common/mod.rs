//! Helpers shared by the black-box tests (each test file uses some of them).
#![allow(dead_code)]

use std::sync::{Arc, mpsc};

use plait::sync::Event;
use plait::{Handle, Runtime};

/// A runtime with `threads` pool threads and as many coroutine workers.
pub(crate) fn runtime(threads: usize) -> Runtime {
    Runtime::builder()
        .threads(threads)
        .coroutine_workers(threads)
        .build()
        .unwrap()
}

/// Occupies one pool thread until the returned sender is used (or dropped); returns once
/// the blocking task has started.
pub(crate) fn block_a_thread(rt: &Runtime) -> (mpsc::Sender<()>, Handle<()>) {
    let (release, gate) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    let blocker = rt.spawn(move || {
        started_tx.send(()).unwrap();
        let _ = gate.recv();
    });
    started.recv().unwrap();
    (release, blocker)
}

/// Starts a thread task that spins until it is cancelled; returns once it runs.
pub(crate) fn spawn_until_cancelled(rt: &Runtime) -> Handle<()> {
    let started = Arc::new(Event::new());
    let task = {
        let started = started.clone();
        rt.spawn(move || {
            started.set();
            while !plait::task::is_cancelled() {
                std::hint::spin_loop();
            }
        })
    };
    started.wait();
    task
}
