//! Everything at once on the process strand: crashes, panics, time limits and cancellations
//! from two submitting threads while ordinary tasks stream through. Every handle must end
//! with the outcome its task asked for, and the pool must come out healthy.

use std::time::Duration;

use plait::process::ProcessOptions;
use plait::{Error, Handle, Runtime};

plait::test_worker!();

/// What task `i` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Compute,
    Crash,
    Panic,
    Hang,
}

fn kind(i: u32) -> Kind {
    match i % 50 {
        7 => Kind::Crash,
        13 => Kind::Panic,
        21 if i % 200 == 21 => Kind::Hang,
        _ => Kind::Compute,
    }
}

#[plait::task]
fn work(i: u32) -> u64 {
    match kind(i) {
        Kind::Crash => std::process::abort(),
        Kind::Panic => panic!("task {i} panics"),
        Kind::Hang => std::thread::sleep(Duration::from_secs(60)),
        Kind::Compute => {}
    }
    (0..u64::from(i % 1000)).sum()
}

fn submit(rt: &Runtime, range: std::ops::Range<u32>) -> Vec<(u32, Handle<u64>, bool)> {
    range
        .map(|i| {
            let handle = if kind(i) == Kind::Hang {
                rt.task()
                    .timeout(Duration::from_millis(100))
                    .spawn_process(work::task(), i)
            } else {
                rt.spawn_process(work::task(), i)
            };
            // Every 37th task is cancelled at once, wherever it is by then.
            let cancelled = i % 37 == 5 && handle.cancel();
            (i, handle, cancelled)
        })
        .collect()
}

#[test]
fn crashes_panics_timeouts_and_cancels_at_once_leave_every_handle_answered() {
    let rt = Runtime::builder()
        .threads(2)
        .coroutine_workers(2)
        .processes(ProcessOptions::new().workers(3).crash_retries(1))
        .build()
        .unwrap();
    let submitters: Vec<_> = [0..1500, 1500..3000]
        .into_iter()
        .map(|range| {
            let rt = rt.clone();
            std::thread::spawn(move || submit(&rt, range))
        })
        .collect();
    let mut seen = [0usize; 5];
    for submitter in submitters {
        for (i, handle, cancelled) in submitter.join().unwrap() {
            let outcome = handle.join();
            if cancelled {
                assert!(matches!(outcome, Err(Error::Cancelled)), "{i}: {outcome:?}");
                seen[4] += 1;
                continue;
            }
            match (kind(i), outcome) {
                (Kind::Compute, Ok(sum)) => {
                    assert_eq!(sum, (0..u64::from(i % 1000)).sum::<u64>());
                    seen[0] += 1;
                }
                (Kind::Crash, Err(Error::WorkerLost { .. })) => seen[1] += 1,
                (Kind::Panic, Err(Error::Panicked { message })) => {
                    assert_eq!(message, format!("task {i} panics"));
                    seen[2] += 1;
                }
                (Kind::Hang, Err(Error::TimedOut)) => seen[3] += 1,
                (kind, outcome) => panic!("task {i} ({kind:?}) ended with {outcome:?}"),
            }
        }
    }
    assert_eq!(seen.iter().sum::<usize>(), 3000);
    assert!(seen.iter().all(|&n| n > 0), "{seen:?}");

    // Healthy afterwards: a batch all succeeds, and nothing is left in flight.
    let healthy: Vec<u64> = rt
        .map_process(work::task(), (0..500).map(|i| i * 50))
        .collect::<plait::Result<_>>()
        .unwrap();
    assert_eq!(healthy.len(), 500);
    let report = rt.shutdown(Duration::from_secs(10));
    assert!(report.is_clean(), "{report}");
}
