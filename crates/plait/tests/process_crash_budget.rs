//! Exact crash accounting: a task is charged a crash only if its worker died while running
//! it, so a poison task runs exactly `crash_retries + 1` times, under load and with other
//! tasks queued behind it on the same worker. Healthy tasks are never charged; one that
//! finished but whose answer died with its worker runs again (counted here, and bounded).

mod common;

use std::collections::HashMap;
use std::io::Write;

use common::BusyLoops;
use plait::Error;
use plait::process::ProcessOptions;

plait::test_worker!();

/// Notes the run in `log`, then aborts its worker if `poison`.
#[plait::task]
fn logged(x: u32, poison: bool, log: String) -> u32 {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    // One short append: whole lines, whichever worker writes.
    file.write_all(format!("{x}\n").as_bytes()).unwrap();
    drop(file);
    if poison {
        std::process::abort();
    }
    x
}

const TASKS: u32 = 1000;
/// Every 20th task is poison: 50 of them.
fn poison(x: u32) -> bool {
    x % 20 == 7
}

/// How many times each task ran, from the log.
fn runs(log: &std::path::Path) -> HashMap<u32, usize> {
    let mut runs = HashMap::new();
    for line in std::fs::read_to_string(log).unwrap().lines() {
        *runs.entry(line.parse().unwrap()).or_insert(0) += 1;
    }
    runs
}

fn log_file(name: &str) -> std::path::PathBuf {
    let log = std::env::temp_dir().join(format!("plait-budget-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    log
}

/// Checks the runs against the budget; returns how many healthy tasks ran twice.
fn check(runs: &HashMap<u32, usize>, retries: u32, results: &[plait::Result<u32>]) -> usize {
    let mut again = 0;
    for x in 0..TASKS {
        let ran = runs.get(&x).copied().unwrap_or(0);
        if poison(x) {
            assert_eq!(
                ran,
                retries as usize + 1,
                "poison task {x}, crash_retries {retries}"
            );
            assert!(
                matches!(results[x as usize], Err(Error::WorkerLost { .. })),
                "{:?}",
                results[x as usize]
            );
        } else {
            assert_eq!(results[x as usize].as_ref().ok(), Some(&x), "task {x}");
            assert!(ran >= 1, "task {x} never ran");
            again += ran - 1;
        }
    }
    again
}

#[test]
fn a_poison_task_runs_exactly_crash_retries_plus_one_times_under_load() {
    let _busy = BusyLoops::start(2);
    for retries in 0..=2 {
        let log = log_file(&format!("spawn-{retries}"));
        let path = log.to_string_lossy().into_owned();
        let rt = common::process_runtime(ProcessOptions::new().workers(2).crash_retries(retries));
        let handles: Vec<_> = (0..TASKS)
            .map(|x| rt.spawn_process(logged::task(), (x, poison(x), path.clone())))
            .collect();
        let results: Vec<_> = handles.into_iter().map(plait::Handle::join).collect();
        let again = check(&runs(&log), retries, &results);
        let crashes = 50 * (retries as usize + 1);
        eprintln!(
            "spawn_process, crash_retries {retries}: {again} of {} healthy tasks ran twice \
             around {crashes} crashes",
            TASKS - 50
        );
        // A crash loses at most the answers its worker had not sent: no more than it held.
        assert!(
            again <= crashes * 32,
            "{again} reruns around {crashes} crashes"
        );
        let _ = std::fs::remove_file(&log);
    }
}

#[test]
fn a_poison_item_of_a_map_runs_exactly_crash_retries_plus_one_times_under_load() {
    let _busy = BusyLoops::start(2);
    for retries in 0..=2 {
        let log = log_file(&format!("map-{retries}"));
        let path = log.to_string_lossy().into_owned();
        let rt = common::process_runtime(ProcessOptions::new().workers(2).crash_retries(retries));
        let results: Vec<_> = rt
            .map_process(
                logged::task(),
                (0..TASKS).map(|x| (x, poison(x), path.clone())),
            )
            .collect();
        let again = check(&runs(&log), retries, &results);
        eprintln!(
            "map_process, crash_retries {retries}: {again} of {} healthy items ran twice \
             around {} crashes",
            TASKS - 50,
            50 * (retries + 1)
        );
        let _ = std::fs::remove_file(&log);
    }
}
