//! Each worker leads a process group of its own: the terminal's Ctrl-C reaches the program,
//! not its workers, and a worker killed for a time limit takes what its task started along.
//! What a task starts is not a worker, though it inherits a worker's environment.

mod common;

use std::time::Duration;

use plait::Error;
use plait::process::ProcessOptions;

plait::test_worker!();

#[plait::task]
fn leads_own_group() -> bool {
    rustix::process::getpgrp() == rustix::process::getpid()
}

/// Starts `sleep 600`, writes its pid to `pid_file`, then waits past any time limit.
#[plait::task]
// Left unwaited on purpose: the worker's death is what must end it.
#[allow(clippy::zombie_processes)]
fn starts_a_sleeper(pid_file: String) {
    let sleeper = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    std::fs::write(&pid_file, sleeper.id().to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

/// Fails the test with `failure` unless process `pid` ends within 10 s (killed with its
/// group, then reaped by its new parent).
fn assert_ends(pid: u32, failure: &str) {
    if let Err(alive) = common::time_to_end(&[pid], Duration::from_secs(10)) {
        panic!("{failure} (pid {alive:?})");
    }
}

#[test]
fn a_worker_leads_a_process_group_of_its_own() {
    let rt = common::process_runtime(ProcessOptions::new().workers(1));
    assert!(
        rt.spawn_process(leads_own_group::task(), ())
            .join()
            .unwrap()
    );
}

#[test]
fn a_time_limit_kills_what_the_task_started() {
    let _busy = common::BusyLoops::start(2);
    let rt = common::process_runtime(ProcessOptions::new().workers(1));
    let pid_file = std::env::temp_dir().join(format!("plait-sleeper-{}", std::process::id()));
    let _ = std::fs::remove_file(&pid_file);
    let outcome = rt
        .task()
        .timeout(Duration::from_secs(2))
        .spawn_process(
            starts_a_sleeper::task(),
            pid_file.to_string_lossy().into_owned(),
        )
        .join();
    assert!(matches!(outcome, Err(Error::TimedOut)), "{outcome:?}");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("the task started its sleeper within its time limit")
        .parse()
        .unwrap();
    let _ = std::fs::remove_file(&pid_file);
    assert_ends(pid, "the task's `sleep` outlived its worker");
}

/// Starts `sleep 600` in the background and returns its pid at once.
#[plait::task]
// Left unwaited on purpose: it is what the runtime's end must take along.
#[allow(clippy::zombie_processes)]
fn leaves_a_sleeper_behind() -> u32 {
    std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap()
        .id()
}

#[test]
fn dropping_the_runtime_kills_what_a_finished_task_left_running() {
    let _busy = common::BusyLoops::start(2);
    let rt = common::process_runtime(ProcessOptions::new().workers(1));
    let pid = rt
        .spawn_process(leaves_a_sleeper_behind::task(), ())
        .join()
        .unwrap();
    assert!(
        !common::ended(pid),
        "the sleeper runs while its worker lives"
    );
    // The worker is idle, its task done; only the runtime's end can take the sleeper along.
    drop(rt);
    assert_ends(pid, "the `sleep` a task left running outlived the runtime");
}

/// Runs this test binary's worker test, as a program a task starts would: with the
/// worker's environment inherited. Returns its exit code.
#[plait::task]
fn starts_this_program() -> Option<i32> {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([plait::process::WORKER_TEST_NAME, "--exact", "-q"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .output()
        .unwrap()
        .status
        .code()
}

#[test]
fn programs_a_task_starts_are_not_workers() {
    let rt = common::process_runtime(ProcessOptions::new().workers(1));
    // Started as a child of the worker, with its environment: it runs as itself.
    assert_eq!(
        rt.spawn_process(starts_this_program::task(), ())
            .join()
            .unwrap(),
        Some(0)
    );
    // A command started through plait does not even see the variables.
    let echo = plait::process::Command::shell("echo ${PLAIT_WORKER:-unset}");
    let output = rt
        .spawn_process(plait::process::command::run_command::task(), echo)
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "unset");
}
