//! The synchronisation primitives work from the strands they are documented for.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use plait::Runtime;
use plait::sync::{Event, Semaphore, channel};

#[test]
fn a_channel_carries_values_from_coroutines_to_threads() {
    let rt = common::runtime(2);
    let (tx, rx) = channel::bounded::<u32>(4);
    let producer = rt.spawn_async(async move {
        for i in 0..100 {
            tx.send(i).await.unwrap();
        }
    });
    let consumer = rt.spawn(move || {
        let mut sum = 0;
        while let Ok(x) = rx.recv_blocking() {
            sum += x;
        }
        sum
    });
    producer.join().unwrap();
    assert_eq!(consumer.join().unwrap(), 4950);
}

#[test]
fn a_semaphore_limits_thread_tasks_with_a_blocking_acquire() {
    let rt = Runtime::builder().threads(4).build().unwrap();
    let gate = Arc::new(Semaphore::new(2));
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..32)
        .map(|_| {
            let (gate, live, peak) = (gate.clone(), live.clone(), peak.clone());
            rt.spawn(move || {
                let _permit = gate.acquire_blocking();
                let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::yield_now();
                live.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(peak.load(Ordering::SeqCst) <= 2);
    assert_eq!(gate.available_permits(), 2);
}

#[test]
fn an_event_releases_waiters_on_both_strands() {
    let rt = common::runtime(2);
    let event = Arc::new(Event::new());
    let thread_waiter = {
        let event = event.clone();
        rt.spawn(move || {
            event.wait();
            "thread"
        })
    };
    let coroutine_waiter = {
        let event = event.clone();
        rt.spawn_async(async move {
            event.wait_async().await;
            "coroutine"
        })
    };
    assert!(!event.is_set());
    event.set();
    assert_eq!(thread_waiter.join().unwrap(), "thread");
    assert_eq!(coroutine_waiter.join().unwrap(), "coroutine");
    event.clear();
    assert!(!event.is_set());
}
