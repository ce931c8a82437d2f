//! `Map::collect_vec`: the eager map that writes each result in place. Order, failures,
//! and that every value made is dropped exactly once, whatever fails and whatever the input
//! says about its length.

mod common;

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use proptest::prelude::*;

/// A value that counts how many of its kind are alive.
struct Token {
    value: u64,
    live: Arc<AtomicIsize>,
}

impl Token {
    fn new(value: u64, live: &Arc<AtomicIsize>) -> Token {
        live.fetch_add(1, Ordering::SeqCst);
        Token {
            value,
            live: Arc::clone(live),
        }
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

fn mix(x: u64) -> u64 {
    x.wrapping_mul(2_654_435_761) ^ (x >> 7)
}

#[test]
fn results_are_in_input_order_for_every_kind_of_input() {
    let rt = common::runtime(2);
    let expected: Vec<u64> = (0..200_000u64).map(mix).collect();
    let from_range = rt.map(0..200_000u64, mix).collect_vec().unwrap();
    assert_eq!(from_range, expected);
    let from_vec = rt
        .map((0..200_000u64).collect::<Vec<_>>(), mix)
        .collect_vec()
        .unwrap();
    assert_eq!(from_vec, expected);
    // A filter does not know its length: the output grows round by round.
    let unknown = rt
        .map((0..200_000u64).filter(|_| true), mix)
        .collect_vec()
        .unwrap();
    assert_eq!(unknown, expected);
}

#[test]
fn empty_and_single_inputs() {
    let rt = common::runtime(2);
    assert!(rt.map(0..0u8, |x| x).collect_vec().unwrap().is_empty());
    assert!(
        rt.map(std::iter::empty::<u8>(), |x| x)
            .collect_vec()
            .unwrap()
            .is_empty()
    );
    assert_eq!(rt.map(Some(41u8), |x| x + 1).collect_vec().unwrap(), [42]);
}

#[test]
fn what_was_already_iterated_is_not_repeated_and_the_rest_follows_in_order() {
    let rt = common::runtime(2);
    let mut map = rt.map(0..50_000u64, mix);
    let firsts: Vec<u64> = map.by_ref().take(3).map(Result::unwrap).collect();
    let rest = map.collect_vec().unwrap();
    assert_eq!(firsts, (0..3).map(mix).collect::<Vec<_>>());
    assert_eq!(rest, (3..50_000).map(mix).collect::<Vec<_>>());
}

#[test]
fn every_value_is_dropped_once_on_success() {
    let rt = common::runtime(2);
    let live = Arc::new(AtomicIsize::new(0));
    let tokens = {
        let live = Arc::clone(&live);
        rt.map(0..100_000u64, move |x| Token::new(x, &live))
            .collect_vec()
            .unwrap()
    };
    assert_eq!(live.load(Ordering::SeqCst), 100_000);
    assert!(tokens.iter().enumerate().all(|(i, t)| t.value == i as u64));
    drop(tokens);
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

#[test]
fn a_panicking_item_fails_the_collection_and_nothing_made_is_leaked_or_dropped_twice() {
    let rt = common::runtime(2);
    for poison in [0u64, 1, 4_095, 50_000, 99_999] {
        let live = Arc::new(AtomicIsize::new(0));
        let outcome = {
            let live = Arc::clone(&live);
            rt.map(0..100_000u64, move |x| {
                assert!(x != poison, "item {x} is poison");
                Token::new(x, &live)
            })
            .collect_vec()
        };
        let err = outcome.err().expect("the poison item fails the collection");
        assert!(err.is_panic(), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("item {poison} is poison")),
            "{err}"
        );
        assert_eq!(live.load(Ordering::SeqCst), 0, "poison at {poison}");
    }
}

#[test]
fn no_new_work_starts_after_a_failure() {
    let rt = common::runtime(2);
    let calls = Arc::new(AtomicUsize::new(0));
    let err = {
        let calls = Arc::clone(&calls);
        rt.map(0..1_000_000u64, move |x| {
            calls.fetch_add(1, Ordering::Relaxed);
            assert!(x != 0, "the first item fails");
            x
        })
        .collect_vec()
        .unwrap_err()
    };
    assert!(err.is_panic());
    // Runs already taken finish; no others start. A run is at most 4,096 items.
    let calls = calls.load(Ordering::Relaxed);
    assert!(
        calls < 100_000,
        "{calls} items ran after the first one failed"
    );
}

#[test]
fn a_panicking_input_panics_the_caller_and_drops_what_was_made() {
    let rt = common::runtime(2);
    let live = Arc::new(AtomicIsize::new(0));
    let input = (0..100_000u64).inspect(|&x| {
        assert!(x != 60_000, "the input broke at {x}");
    });
    let outcome = {
        let live = Arc::clone(&live);
        let map = rt.map(input, move |x| Token::new(x, &live));
        panic::catch_unwind(AssertUnwindSafe(|| map.collect_vec()))
    };
    let payload = outcome.err().expect("the input's panic reaches the caller");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("the input broke at 60000"), "{message}");
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

/// An iterator whose size hint claims an exact length it does not have.
struct Liar {
    next: u64,
    end: u64,
    claimed: usize,
}

impl Iterator for Liar {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        (self.next < self.end).then(|| {
            self.next += 1;
            self.claimed = self.claimed.saturating_sub(1);
            self.next - 1
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.claimed, Some(self.claimed))
    }
}

#[test]
fn an_input_that_lies_about_its_length_still_gives_every_result_once() {
    let rt = common::runtime(2);
    for (end, claimed) in [(10_000, 100), (100, 10_000), (5_000, 0), (0, 7)] {
        let out = rt
            .map(
                Liar {
                    next: 0,
                    end,
                    claimed,
                },
                mix,
            )
            .collect_vec()
            .unwrap();
        assert_eq!(
            out,
            (0..end).map(mix).collect::<Vec<_>>(),
            "{end} items, {claimed} claimed"
        );
    }
}

#[test]
fn collections_from_many_threads_and_from_inside_tasks_at_once() {
    let rt = common::runtime(2);
    let expected: Vec<u64> = (0..30_000u64).map(mix).collect();
    let inside: Vec<_> = (0..4)
        .map(|_| {
            let rt2 = rt.clone();
            rt.spawn(move || rt2.map(0..30_000u64, mix).collect_vec())
        })
        .collect();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..5 {
                    assert_eq!(rt.map(0..30_000u64, mix).collect_vec().unwrap(), expected);
                }
            });
        }
    });
    for handle in inside {
        assert_eq!(handle.join().unwrap().unwrap(), expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any input, any length hint, any item that fails: the result is the sequential one,
    /// or the error of the first failing item; nothing leaks.
    #[test]
    fn collect_vec_agrees_with_a_sequential_collect(
        items in proptest::collection::vec(any::<u32>(), 0..3_000),
        poison in proptest::option::of(any::<u32>()),
        known_length in any::<bool>(),
        spin in 0u32..64,
    ) {
        let rt = common::runtime(2);
        let live = Arc::new(AtomicIsize::new(0));
        let f = {
            let live = Arc::clone(&live);
            move |x: u32| {
                // Items of different costs, so runs finish out of order.
                for _ in 0..(x % spin.max(1)) {
                    std::hint::black_box(x);
                }
                assert!(Some(x) != poison, "poison");
                Token::new(u64::from(x), &live)
            }
        };
        let outcome = if known_length {
            rt.map(items.clone(), f).collect_vec()
        } else {
            rt.map(items.clone().into_iter().filter(|_| true), f).collect_vec()
        };
        match outcome {
            Ok(tokens) => {
                prop_assert!(poison.is_none_or(|p| !items.contains(&p)));
                let values: Vec<u64> = tokens.iter().map(|t| t.value).collect();
                prop_assert_eq!(values, items.iter().map(|&x| u64::from(x)).collect::<Vec<_>>());
            }
            Err(err) => {
                prop_assert!(err.is_panic());
                prop_assert!(poison.is_some_and(|p| items.contains(&p)));
            }
        }
        prop_assert_eq!(live.load(Ordering::SeqCst), 0);
    }
}
