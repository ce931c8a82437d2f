//! The thread strand's lazy parallel map: order, laziness, bounded memory, cancellation.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use plait::Runtime;
use proptest::prelude::*;

#[test]
fn results_come_in_input_order() {
    let rt = common::runtime(2);
    let out: Vec<u64> = rt
        .map(0..100_000u64, |x| x.wrapping_mul(2_654_435_761))
        .map(Result::unwrap)
        .collect();
    let expected: Vec<u64> = (0..100_000u64)
        .map(|x| x.wrapping_mul(2_654_435_761))
        .collect();
    assert_eq!(out, expected);
}

#[test]
fn a_ten_million_item_input_never_has_more_than_the_bound_in_flight() {
    const BOUND: usize = 10_000;
    let rt = Runtime::builder()
        .threads(2)
        .queue_bound(BOUND)
        .build()
        .unwrap();
    let pulled = Arc::new(AtomicUsize::new(0));
    let source = {
        let pulled = pulled.clone();
        (0..10_000_000u64).inspect(move |_| {
            pulled.fetch_add(1, Ordering::Relaxed);
        })
    };
    let mut consumed = 0usize;
    let mut peak = 0usize;
    let mut sum = 0u64;
    for result in rt.map(source, |x| x & 1) {
        sum += result.unwrap();
        consumed += 1;
        peak = peak.max(pulled.load(Ordering::Relaxed) - consumed);
    }
    assert_eq!(consumed, 10_000_000);
    assert_eq!(sum, 5_000_000);
    assert!(peak <= BOUND, "{peak} items in flight, bound {BOUND}");
}

#[test]
fn max_in_flight_bounds_a_single_map() {
    let rt = common::runtime(2);
    let pulled = Arc::new(AtomicUsize::new(0));
    let source = {
        let pulled = pulled.clone();
        (0..50_000u32).inspect(move |_| {
            pulled.fetch_add(1, Ordering::Relaxed);
        })
    };
    let mut consumed = 0;
    for result in rt.map(source, |x| x).max_in_flight(100) {
        result.unwrap();
        consumed += 1;
        assert!(pulled.load(Ordering::Relaxed) - consumed <= 100);
    }
}

#[test]
fn the_map_is_lazy_and_works_on_endless_input() {
    let rt = common::runtime(2);
    let calls = Arc::new(AtomicUsize::new(0));
    let map = {
        let calls = calls.clone();
        rt.map(0u64.., move |x| {
            calls.fetch_add(1, Ordering::SeqCst);
            x * 10
        })
    };
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "nothing runs before the first next()"
    );
    let first: Vec<u64> = map.take(3).map(Result::unwrap).collect();
    assert_eq!(first, [0, 10, 20]);
}

#[test]
fn a_trillion_item_range_is_mapped_in_bounded_memory_and_stopped_early() {
    const BOUND: usize = 50_000;
    let rt = common::runtime(2);
    let pulled = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let source = {
        let pulled = pulled.clone();
        (0..1_000_000_000_000u64).inspect(move |_| {
            pulled.fetch_add(1, Ordering::Relaxed);
        })
    };
    let map = {
        let calls = calls.clone();
        rt.map(source, move |x| {
            calls.fetch_add(1, Ordering::Relaxed);
            x ^ 1
        })
        .max_in_flight(BOUND)
    };
    // The size hint is the whole trillion, and nothing has been pulled for it.
    assert_eq!(map.size_hint().0, 1_000_000_000_000);
    let taken: Vec<u64> = map.take(300_000).map(Result::unwrap).collect();
    assert_eq!(taken.len(), 300_000);
    assert_eq!(taken[299_999], 299_998);
    // Dropped after the take: what was pulled is what was taken and at most the bound more.
    let pulled = pulled.load(Ordering::Relaxed);
    assert!(
        pulled <= 300_000 + BOUND,
        "{pulled} items pulled for 300,000 taken"
    );
    assert!(calls.load(Ordering::Relaxed) <= pulled);
}

#[test]
fn a_panicking_item_fails_alone_and_the_rest_go_on() {
    let rt = common::runtime(2);
    let results: Vec<_> = rt
        .map(0..1000u32, |x| {
            assert!(x % 100 != 7, "poison item {x}");
            x
        })
        .collect();
    assert_eq!(results.len(), 1000);
    for (i, r) in results.iter().enumerate() {
        if i % 100 == 7 {
            assert!(r.as_ref().unwrap_err().to_string().contains("poison item"));
        } else {
            assert_eq!(*r.as_ref().unwrap() as usize, i);
        }
    }
}

#[test]
fn dropping_the_map_stops_the_work_not_yet_done() {
    // One pool thread; item 1 blocks until the map is dropped, with more chunks queued
    // behind it. Dropped, the map must cancel those: only items 0 and 1 ever run (item 1
    // only if its chunk had started by the drop: if not, it was cancelled too, and its
    // closure with the gate dropped).
    let rt = Runtime::builder().threads(1).build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = std::sync::Mutex::new(gate);
    {
        let calls = calls.clone();
        let mut map = rt.map(0..1_000u32, move |x| {
            calls.fetch_add(1, Ordering::SeqCst);
            if x == 1 {
                gate.lock().unwrap().recv().unwrap();
            }
            x
        });
        assert_eq!(map.next().unwrap().unwrap(), 0);
        // Item 1's chunk is running (blocked) and later chunks are queued behind it.
    }
    let _ = release.send(());
    let report = rt.shutdown(Duration::from_secs(10));
    assert_eq!(report.threads.unfinished, 0, "{report}");
    let calls = calls.load(Ordering::SeqCst);
    assert!(
        calls <= 2,
        "queued chunks ran after the drop: {calls} calls"
    );
}

#[test]
fn slow_items_still_spread_over_every_thread() {
    // Items 0 and 1 wait for each other (up to a generous deadline): they can only both
    // arrive if two threads run them at once.
    let rt = common::runtime(2);
    let arrived = Arc::new(AtomicUsize::new(0));
    let threads = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let (arrived2, threads2) = (arrived.clone(), threads.clone());
    let met: Vec<bool> = rt
        .map(0..2, move |_| {
            threads2.lock().unwrap().insert(std::thread::current().id());
            arrived2.fetch_add(1, Ordering::SeqCst);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while arrived2.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
                std::thread::yield_now();
            }
            arrived2.load(Ordering::SeqCst) == 2
        })
        .map(Result::unwrap)
        .collect();
    assert_eq!(met, [true, true]);
    assert_eq!(threads.lock().unwrap().len(), 2);
}

#[test]
fn map_unordered_yields_every_index_once() {
    let rt = common::runtime(2);
    let mut seen: Vec<(usize, u32)> = rt
        .map_unordered(0..10_000u32, |x| x + 1)
        .map(|(i, r)| (i, r.unwrap()))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen.len(), 10_000);
    for (i, (index, value)) in seen.into_iter().enumerate() {
        assert_eq!((index, value), (i, i as u32 + 1));
    }
}

#[test]
fn map_unordered_does_not_wait_for_a_slow_first_item() {
    // Item 0 blocks until the first result has been yielded: an ordered map would hang.
    let rt = common::runtime(2);
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = std::sync::Mutex::new(gate);
    let mut results = rt.map_unordered(0..8u32, move |x| {
        if x == 0 {
            gate.lock().unwrap().recv().unwrap();
        }
        x
    });
    let (first, _) = results.next().unwrap();
    assert_ne!(first, 0);
    release.send(()).unwrap();
    assert_eq!(results.count(), 7);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn map_preserves_order_for_any_input_cost_and_window(
        items in proptest::collection::vec(any::<u32>(), 0..2_000),
        window in 1usize..300,
        spin in 0u32..200,
    ) {
        let rt = common::runtime(2);
        let f = move |x: u32| {
            for _ in 0..(x % (spin + 1)) {
                std::hint::spin_loop();
            }
            x.rotate_left(7) ^ 0x5bd1_e995
        };
        let expected: Vec<u32> = items.iter().map(|&x| f(x)).collect();
        let got: Vec<u32> = rt.map(items.clone(), f).max_in_flight(window).map(Result::unwrap).collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn map_unordered_is_a_permutation_with_the_right_indices(
        items in proptest::collection::vec(any::<u16>(), 0..2_000),
        window in 1usize..300,
    ) {
        let rt = common::runtime(2);
        let mut got: Vec<(usize, u32)> = rt
            .map_unordered(items.clone(), |x| u32::from(x) * 3)
            .max_in_flight(window)
            .map(|(i, r)| (i, r.unwrap()))
            .collect();
        got.sort_unstable();
        let expected: Vec<(usize, u32)> = items.iter().map(|&x| u32::from(x) * 3).enumerate().collect();
        prop_assert_eq!(got, expected);
    }
}
