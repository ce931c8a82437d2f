//! Helpers shared by the black-box tests (each test file uses some of them).
#![allow(dead_code)]

use std::sync::{Arc, mpsc};

use plait::sync::Event;
use plait::{Handle, Runtime};

/// Runs `f` on a thread of its own and returns its result, or fails the test naming `what`
/// if a minute passes first: a test of something that used to hang fails instead.
pub(crate) fn within_a_minute<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (sent, received) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sent.send(f());
    });
    received
        .recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} within a minute"))
}

/// A runtime with `threads` pool threads and as many coroutine workers.
pub(crate) fn runtime(threads: usize) -> Runtime {
    Runtime::builder()
        .threads(threads)
        .coroutine_workers(threads)
        .build()
        .unwrap()
}

/// A runtime with two threads, two coroutine workers, and the process strand as `options`
/// say.
pub(crate) fn process_runtime(options: plait::process::ProcessOptions) -> Runtime {
    Runtime::builder()
        .threads(2)
        .coroutine_workers(2)
        .processes(options)
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

/// The processes whose parent is `parent`, with their state letter (`Z` for a zombie), read
/// from `/proc`.
pub(crate) fn children_of(parent: u32) -> Vec<(u32, char)> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // Gone between the listing and the read: not a child any more.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid …": comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if ppid == parent {
            children.push((pid, state));
        }
    }
    children
}

/// Whether process `pid` is alive (exists and is not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
