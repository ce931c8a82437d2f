//! `map_process`: batched, ordered (or not), lazy, and a crash inside a batch fails only the
//! item that caused it.

mod common;

use std::collections::HashSet;

use plait::process::ProcessOptions;
use plait::{Error, Runtime};
use proptest::prelude::*;

plait::test_worker!();

#[plait::task]
fn triple(x: u64) -> u64 {
    x * 3
}

#[plait::task]
fn poison(x: u32) -> u32 {
    if x == 500 {
        std::process::abort();
    }
    if x == 700 {
        panic!("seven hundred");
    }
    x
}

#[plait::task]
fn identity(data: Vec<u8>) -> usize {
    data.len()
}

fn runtime(workers: usize) -> Runtime {
    common::process_runtime(ProcessOptions::new().workers(workers))
}

#[test]
fn results_come_back_in_input_order() {
    let rt = runtime(2);
    let out: Vec<u64> = rt
        .map_process(triple::task(), 0..100_000u64)
        .collect::<plait::Result<_>>()
        .unwrap();
    assert_eq!(out.len(), 100_000);
    assert!(out.iter().enumerate().all(|(i, &v)| v == i as u64 * 3));
    // Batched: far fewer worker round trips than items (none was replaced either).
    assert_eq!(rt.process_workers_started(), 2);
}

#[test]
fn unordered_results_carry_their_indices() {
    let rt = runtime(2);
    let mut seen = HashSet::new();
    for (index, result) in rt.map_process_unordered(triple::task(), 0..10_000u64) {
        assert_eq!(result.unwrap(), index as u64 * 3);
        assert!(seen.insert(index), "index {index} twice");
    }
    assert_eq!(seen.len(), 10_000);
}

#[test]
fn a_crash_inside_a_batch_fails_that_item_alone() {
    let rt = runtime(2);
    let results: Vec<_> = rt.map_process(poison::task(), 0..1000u32).collect();
    for (x, result) in results.iter().enumerate() {
        match x {
            500 => assert!(
                matches!(result, Err(Error::WorkerLost { .. })),
                "{result:?}"
            ),
            700 => assert!(result.as_ref().is_err_and(Error::is_panic), "{result:?}"),
            _ => assert_eq!(result.as_ref().ok(), Some(&(x as u32))),
        }
    }
}

/// Notes each run of `x` in the file `log`, then behaves as `poison` for 500.
#[plait::task]
fn logged_poison(x: u32, log: String) -> u32 {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    writeln!(file, "{x}").unwrap();
    drop(file);
    if x == 500 {
        std::process::abort();
    }
    x
}

#[test]
fn crash_retries_are_spent_per_item_not_per_batch() {
    // The worker's slot names the item a batch was running when its worker died, so 500
    // alone is charged, each time: one run and two retries, three runs of 500. (Charging a
    // dead batch's items by running them one by one gave four; retrying it whole, six.)
    let log = std::env::temp_dir().join(format!("plait-retries-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let path = log.to_string_lossy().into_owned();
    let rt = common::process_runtime(
        ProcessOptions::new()
            .workers(1)
            .max_tasks_per_worker(1)
            .crash_retries(2),
    );
    let results: Vec<_> = rt
        .map_process(
            logged_poison::task(),
            (0..1000u32).map(|x| (x, path.clone())),
        )
        .collect();
    assert!(
        matches!(results[500], Err(Error::WorkerLost { .. })),
        "{:?}",
        results[500]
    );
    assert!(results[..500].iter().all(Result::is_ok));
    let runs = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert_eq!(runs.lines().filter(|line| *line == "500").count(), 3);
}

#[test]
fn an_over_limit_item_yields_its_error_in_place() {
    let rt = Runtime::builder()
        .processes(ProcessOptions::new().workers(1).payload_limit(1000))
        .build()
        .unwrap();
    let items = vec![vec![0u8; 10], vec![0u8; 5000], vec![0u8; 20]];
    let results: Vec<_> = rt.map_process(identity::task(), items).collect();
    assert_eq!(results[0].as_ref().ok(), Some(&10));
    assert!(
        matches!(results[1], Err(Error::PayloadTooLarge { .. })),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2].as_ref().ok(), Some(&20));
}

#[test]
fn the_map_is_lazy_on_an_endless_input() {
    let rt = runtime(1);
    let first: Vec<u64> = rt
        .map_process(triple::task(), 0u64..)
        .take(5)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first, [0, 3, 6, 9, 12]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn any_input_maps_in_order(items in prop::collection::vec(any::<u64>(), 0..3000)) {
        let rt = runtime(2);
        let out: Vec<u64> = rt
            .map_process(triple::task(), items.iter().map(|x| x % 1_000_000))
            .collect::<plait::Result<_>>()
            .unwrap();
        let expected: Vec<u64> = items.iter().map(|x| (x % 1_000_000) * 3).collect();
        prop_assert_eq!(out, expected);
    }
}

#[test]
fn chunks_stay_within_a_small_payload_limit() {
    // 20 KiB arguments under a 64 KiB limit: a chunk of many would not fit one frame.
    let rt = common::process_runtime(ProcessOptions::new().workers(1).payload_limit(64 << 10));
    let items = (0..40).map(|i| vec![i as u8; 20 << 10]);
    let lens: Vec<usize> = rt
        .map_process(identity::task(), items)
        .collect::<plait::Result<_>>()
        .unwrap();
    assert_eq!(lens, vec![20 << 10; 40]);
    assert_eq!(
        rt.process_workers_started(),
        1,
        "no worker was lost to a frame too large"
    );
}

/// Arguments whose decoding panics for one value: user serde code misbehaving.
#[derive(serde::Serialize)]
struct Touchy(u32);

impl<'de> serde::Deserialize<'de> for Touchy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u32::deserialize(deserializer)?;
        assert!(value != 13, "thirteen does not decode");
        Ok(Touchy(value))
    }
}

#[plait::task]
fn touchy(x: Touchy) -> u32 {
    x.0
}

#[test]
fn a_panic_while_decoding_an_item_fails_that_item_alone() {
    let rt = runtime(1);
    let results: Vec<_> = rt
        .map_process(touchy::task(), (0..40).map(Touchy))
        .collect();
    for (x, result) in results.iter().enumerate() {
        if x == 13 {
            let err = result.as_ref().unwrap_err();
            assert!(
                err.is_panic() && err.to_string().contains("thirteen"),
                "{err}"
            );
        } else {
            assert_eq!(result.as_ref().ok(), Some(&(x as u32)));
        }
    }
}
