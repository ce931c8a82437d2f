//! What a lost task's error says: its own standard error since it started, and whether it
//! ran into the memory cap, decided from facts (the cap, the worker's abort, the allocator's
//! report while that task ran) rather than from whatever text the worker printed last.

mod common;

use std::process::Command;

use plait::Error;
use plait::process::{ProcessOptions, WorkerExit};

plait::test_worker!();

/// Writes `bytes` bytes of chatter to standard error, a line at a time, and returns once
/// the runtime has read all of it: what a task writes is told apart from what the next one
/// writes by when the runtime reads it (see `last_words.rs`), and these tests check the
/// telling, not the race.
#[plait::task]
fn chatter(bytes: usize) {
    let line = "earlier chatter, nothing to do with what comes next\n";
    let mut written = 0;
    while written < bytes {
        eprint!("{line}");
        written += line.len();
    }
    while rustix::io::ioctl_fionread(std::io::stderr()).unwrap_or(0) > 0 {
        std::thread::yield_now();
    }
}

#[plait::task]
fn allocate(bytes: usize) -> usize {
    let block = std::hint::black_box(vec![1u8; bytes]);
    block.iter().map(|&b| usize::from(b)).sum()
}

/// Says what a failed allocation says, then dies otherwise.
#[plait::task]
fn claims_oom_then(death: String) {
    eprintln!("memory allocation of 5 bytes failed");
    eprintln!("Cannot allocate memory");
    match death.as_str() {
        "segfault" => loop {
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::SEGV)
                .unwrap();
        },
        _ => std::process::exit(1),
    }
}

#[plait::task]
fn last_words_then_abort(words: String) {
    eprintln!("{words}");
    std::process::abort();
}

/// Set for the copy of this test binary that runs the memory-cap scenario under a given
/// `RUST_BACKTRACE`.
const ROLE: &str = "PLAIT_TEST_MEMORY_CAP";

/// The scenario, in a copy of this binary (a no-op in a normal test run): after a task has
/// printed a megabyte, one that allocates past the cap reports `MemoryLimit`; tasks that
/// merely print the words and die another way report `WorkerLost`.
#[test]
fn memory_cap_scenario() {
    if std::env::var_os(ROLE).is_none() {
        return;
    }
    let cap = 512 << 20;
    let rt = common::process_runtime(ProcessOptions::new().workers(1).memory_limit(cap));
    rt.spawn_process(chatter::task(), 1 << 20).join().unwrap();
    let err = rt
        .spawn_process(allocate::task(), 2 << 30)
        .join()
        .unwrap_err();
    assert!(
        matches!(err, Error::MemoryLimit { limit, .. } if limit == cap),
        "{err}"
    );
    for (death, exit) in [
        ("segfault", WorkerExit::Signal(11)),
        ("exit", WorkerExit::Code(1)),
    ] {
        let err = rt
            .spawn_process(claims_oom_then::task(), death.to_owned())
            .join()
            .unwrap_err();
        assert!(
            matches!(&err, Error::WorkerLost { exit: lost, .. } if *lost == exit),
            "{death}: {err}"
        );
    }
    // The worker that replaced the dead one serves on.
    assert!(rt.spawn_process(allocate::task(), 1 << 20).join().is_ok());
}

fn memory_cap_under(backtrace: Option<&str>) {
    let mut scenario = Command::new(std::env::current_exe().unwrap());
    scenario
        .args(["memory_cap_scenario", "--exact", "--test-threads=1"])
        .env(ROLE, "1");
    match backtrace {
        Some(value) => scenario.env("RUST_BACKTRACE", value),
        None => scenario.env_remove("RUST_BACKTRACE"),
    };
    let out = scenario.output().unwrap();
    assert!(
        out.status.success(),
        "RUST_BACKTRACE={backtrace:?}:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_memory_cap_is_told_from_facts_without_rust_backtrace() {
    memory_cap_under(None);
}

#[test]
fn the_memory_cap_is_told_from_facts_with_rust_backtrace_1() {
    memory_cap_under(Some("1"));
}

#[test]
fn the_memory_cap_is_told_from_facts_with_rust_backtrace_full() {
    memory_cap_under(Some("full"));
}

#[test]
fn a_lost_task_carries_its_own_last_words_not_the_workers_earlier_output() {
    let rt = common::process_runtime(ProcessOptions::new().workers(1));
    rt.spawn_process(chatter::task(), 64 << 10).join().unwrap();
    let err = rt
        .spawn_process(last_words_then_abort::task(), "the dying words".to_owned())
        .join()
        .unwrap_err();
    let Error::WorkerLost { stderr, exit, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(*exit, WorkerExit::Signal(6));
    assert!(stderr.contains("the dying words"), "{stderr}");
    assert!(!stderr.contains("earlier chatter"), "{stderr}");
    assert!(
        err.to_string()
            .contains("what the task wrote to standard error: the dying words"),
        "{err}"
    );
}

#[plait::task]
fn silent_abort() {
    std::process::abort();
}

#[test]
fn a_lost_task_that_wrote_nothing_says_nothing_of_what_came_before() {
    let rt = common::process_runtime(ProcessOptions::new().workers(1));
    rt.spawn_process(chatter::task(), 1 << 10).join().unwrap();
    let err = rt
        .spawn_process(silent_abort::task(), ())
        .join()
        .unwrap_err();
    let Error::WorkerLost { stderr, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(stderr, "");
    assert!(!err.to_string().contains("standard error"), "{err}");
}
