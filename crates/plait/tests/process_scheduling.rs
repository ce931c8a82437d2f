//! How the process strand spreads requests over its workers: a burst of long tasks after
//! many tiny ones is shared between the workers, not piled onto the first (service times
//! are learnt per task, and an unknown task counts as slow).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use plait::process::ProcessOptions;
use plait_testtasks::add;

plait::test_worker!();

#[plait::task]
fn nap_then_pid(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

#[test]
fn a_burst_of_long_tasks_after_tiny_ones_is_shared_between_workers() {
    let rt = common::process_runtime(ProcessOptions::new().workers(2));
    rt.start_processes().unwrap();
    // Teach both workers that requests are quick.
    let tiny: Vec<_> = (0..2_000)
        .map(|i| rt.spawn_process(add::task(), (i, 1)))
        .collect();
    for handle in tiny {
        handle.join().unwrap();
    }
    let naps: Vec<_> = (0..4)
        .map(|_| rt.spawn_process(nap_then_pid::task(), 100))
        .collect();
    let mut per_worker: HashMap<u32, usize> = HashMap::new();
    for nap in naps {
        *per_worker.entry(nap.join().unwrap()).or_default() += 1;
    }
    let mut counts: Vec<usize> = per_worker.into_values().collect();
    counts.sort_unstable();
    assert_eq!(counts, [2, 2], "each worker takes half the burst");
}
