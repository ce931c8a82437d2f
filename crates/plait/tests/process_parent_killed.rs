//! Killing the program with SIGKILL (no destructor runs) still ends every worker within a
//! second: the kernel's parent-death signal, and the end of the workers' input pipe.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{alive, children_of};
use plait::Runtime;
use plait::process::ProcessOptions;

plait::test_worker!();

/// Set for the copy of this test binary that plays the parent to be killed.
const ROLE: &str = "PLAIT_TEST_DOOMED_PARENT";

/// In the doomed parent: start workers, print their pids, wait to be killed. A no-op in a
/// normal test run.
#[test]
fn doomed_parent() {
    if std::env::var_os(ROLE).is_none() {
        return;
    }
    let rt = Runtime::builder()
        .processes(ProcessOptions::new().workers(3))
        .build()
        .unwrap();
    rt.start_processes().unwrap();
    let pids: Vec<String> = children_of(std::process::id())
        .iter()
        .map(|(pid, _)| pid.to_string())
        .collect();
    println!("workers {}", pids.join(" "));
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn killing_the_parent_with_sigkill_ends_every_worker_within_a_second() {
    let _busy = common::BusyLoops::start(2);
    let mut parent = Command::new(std::env::current_exe().unwrap())
        .args([
            "doomed_parent",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(parent.stdout.take().unwrap()).lines();
    let workers: Vec<u32> = loop {
        let line = lines
            .next()
            .expect("the parent printed its workers")
            .unwrap();
        // The harness may have begun the line ("test doomed_parent ... ").
        if let Some((_, pids)) = line.split_once("workers ") {
            break pids.split(' ').map(|pid| pid.parse().unwrap()).collect();
        }
    };
    assert_eq!(workers.len(), 3);
    assert!(workers.iter().all(|&pid| alive(pid)));

    parent.kill().unwrap(); // SIGKILL
    parent.wait().unwrap();
    let killed = Instant::now();
    while workers.iter().any(|&pid| alive(pid)) {
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "workers still alive a second after the parent died: {:?}",
            workers
                .iter()
                .filter(|&&pid| alive(pid))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
