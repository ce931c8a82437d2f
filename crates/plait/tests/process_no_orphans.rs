//! Worker processes end with their runtime: dropped or shut down, nothing is left behind,
//! not even a zombie. (One test in this file: it counts this process's children.)

mod common;

use std::time::Duration;

use common::children_of;
use plait::Runtime;
use plait::process::ProcessOptions;

plait::test_worker!();

#[plait::task]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn runtime() -> Runtime {
    common::process_runtime(ProcessOptions::new().workers(3))
}

#[test]
fn dropping_or_shutting_down_the_runtime_leaves_no_worker_behind() {
    let _busy = common::BusyLoops::start(2);
    let me = std::process::id();
    assert_eq!(children_of(me), [], "children before the test");

    // Dropped with a task still running: killed and reaped by the time drop returns.
    let rt = runtime();
    rt.start_processes().unwrap();
    assert_eq!(children_of(me).len(), 3);
    let running = rt.spawn_process(nap::task(), 60_000);
    drop(rt);
    assert_eq!(children_of(me), [], "workers left after drop");
    assert!(running.join().unwrap_err().is_cancelled());

    // Shut down idle: workers retire cleanly.
    let rt = runtime();
    assert_eq!(rt.spawn_process(nap::task(), 1).join().unwrap(), 1);
    let report = rt.shutdown(Duration::from_secs(5));
    assert!(report.is_clean(), "{report}");
    assert_eq!(children_of(me), [], "workers left after shutdown");

    // Shut down with a task that outlasts the timeout: cancelled, counted, reaped.
    let rt = runtime();
    let stuck = rt.spawn_process(nap::task(), 60_000);
    let quick = rt.spawn_process(nap::task(), 1);
    rt.start_processes().unwrap();
    assert_eq!(quick.join().unwrap(), 1);
    let report = rt.shutdown(Duration::from_millis(100));
    assert_eq!(report.processes.cancelled, 1, "{report}");
    assert!(stuck.join().unwrap_err().is_cancelled());
    assert_eq!(children_of(me), [], "workers left after a forced shutdown");

    // Dropped while a command runs: the command is killed and reaped by the time drop
    // returns, runtime or no runtime to reap it later.
    let rt = runtime();
    let started = std::env::temp_dir().join(format!("plait-no-orphans-{me}"));
    let _ = std::fs::remove_file(&started);
    let command = rt.spawn_command(plait::process::Command::shell(format!(
        "touch {}; exec sleep 600",
        started.display()
    )));
    while !started.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = std::fs::remove_file(&started);
    drop(rt);
    assert_eq!(
        children_of(me),
        [],
        "a command, or its zombie, left after drop"
    );
    assert!(command.join().unwrap_err().is_cancelled());
}
