//! The coroutine strand: spawn_async, map_async, block_on, and blocking from inside it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use plait::Runtime;

#[test]
fn ten_thousand_waits_run_at_once() {
    let rt = common::runtime(2);
    let started = Instant::now();
    let handles: Vec<_> = (0..10_000u32)
        .map(|i| {
            rt.spawn_async(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                i
            })
        })
        .collect();
    let sum: u64 = handles
        .into_iter()
        .map(|h| u64::from(h.join().unwrap()))
        .sum();
    assert_eq!(sum, 49_995_000);
    // One after another they would take 500 s.
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_panicking_coroutine_becomes_an_error() {
    let rt = common::runtime(2);
    let bad = rt.spawn_async(async { panic!("async boom") });
    let err: plait::Error = bad.join().unwrap_err();
    assert_eq!(err.to_string(), "task panicked: async boom");
    assert_eq!(rt.spawn_async(async { 1 }).join().unwrap(), 1);
}

#[test]
fn handles_of_both_strands_can_be_awaited_together() {
    let rt = common::runtime(2);
    let total = rt.block_on(async {
        let a = rt.spawn(|| 40);
        let b = rt.spawn_async(async { 2 });
        a.await.unwrap() + b.await.unwrap()
    });
    assert_eq!(total, 42);
}

#[test]
fn blocking_join_inside_a_coroutine_is_safe() {
    // One coroutine worker: if join blocked it, the other coroutine could never run.
    let rt = common::runtime(1);
    let rt2 = rt.clone();
    let outer = rt.spawn_async(async move {
        let inner = rt2.spawn_async(async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            7
        });
        inner.join().unwrap()
    });
    assert_eq!(outer.join().unwrap(), 7);
}

#[test]
fn block_on_inside_a_coroutine_is_safe() {
    let rt = common::runtime(1);
    let rt2 = rt.clone();
    let outer = rt.spawn_async(async move {
        rt2.block_on(async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            5
        })
    });
    assert_eq!(outer.join().unwrap(), 5);
}

#[test]
fn map_async_keeps_order_and_the_concurrency_limit() {
    let rt = common::runtime(2);
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let out: Vec<u32> = rt
        .map_async(0..200u32, 8, {
            let (live, peak) = (live.clone(), peak.clone());
            move |i| {
                let (live, peak) = (live.clone(), peak.clone());
                async move {
                    let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    // Later items finish first: order must still hold.
                    tokio::time::sleep(Duration::from_micros(u64::from(200 - i) * 20)).await;
                    live.fetch_sub(1, Ordering::SeqCst);
                    i
                }
            }
        })
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(out, (0..200).collect::<Vec<_>>());
    assert!(
        peak.load(Ordering::SeqCst) <= 8,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
}

#[test]
fn map_async_is_a_stream_in_async_code() {
    let rt = common::runtime(2);
    let out: Vec<usize> = rt.block_on(async {
        rt.map_async(["a", "bb", "ccc"], 2, |s| async move { s.len() })
            .map(Result::unwrap)
            .collect()
            .await
    });
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn map_async_unordered_yields_fast_items_first() {
    let rt = common::runtime(2);
    let order: Vec<usize> = rt
        .map_async_unordered([300u64, 1, 1], 3, |ms| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        })
        .into_iter()
        .map(|(i, r)| {
            r.unwrap();
            i
        })
        .collect();
    assert_eq!(order.last(), Some(&0));
    assert_eq!(order.len(), 3);
}

#[test]
fn map_async_on_endless_input_is_lazy() {
    let rt = common::runtime(2);
    let first: Vec<u64> = rt
        .map_async(0u64.., 4, |i| async move { i * 2 })
        .into_iter()
        .take(5)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first, [0, 2, 4, 6, 8]);
}

#[test]
fn try_spawn_async_hands_the_future_back_when_full() {
    let rt = Runtime::builder().queue_bound(1).build().unwrap();
    let held = rt.spawn_async(std::future::pending::<()>());
    let refused = rt.try_spawn_async(async { 2 }).unwrap_err();
    assert!(matches!(refused.error(), plait::Error::QueueFull { .. }));
    held.cancel();
    let _ = held.join();
    let future = refused.into_task();
    assert_eq!(rt.block_on(future), 2);
}
