//! Scoped tasks that borrow from the caller.

mod common;

use std::panic::{self, AssertUnwindSafe};

#[test]
fn scoped_tasks_borrow_and_mutate_the_callers_data() {
    let rt = common::runtime(2);
    let mut chunks = vec![vec![1u32; 1000]; 8];
    let sums: Vec<u32> = rt.scope(|s| {
        let handles: Vec<_> = chunks
            .iter_mut()
            .map(|chunk| {
                s.spawn(move || {
                    chunk.iter_mut().for_each(|x| *x += 1);
                    chunk.iter().sum::<u32>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(sums, vec![2000; 8]);
    assert!(chunks.iter().flatten().all(|&x| x == 2));
}

#[test]
fn the_scope_waits_for_tasks_whose_handles_were_dropped() {
    let rt = common::runtime(2);
    let mut done = [false; 16];
    rt.scope(|s| {
        for slot in &mut done {
            drop(s.spawn(move || *slot = true));
        }
    });
    assert!(done.iter().all(|&d| d));
}

#[test]
fn a_joined_panic_is_an_error_not_a_scope_panic() {
    let rt = common::runtime(2);
    let message = rt.scope(|s| {
        let bad = s.spawn(|| -> u8 { panic!("scoped boom") });
        bad.join().unwrap_err().to_string()
    });
    assert_eq!(message, "task panicked: scoped boom");
}

#[test]
fn an_unjoined_panic_is_raised_when_the_scope_ends() {
    let rt = common::runtime(2);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        rt.scope(|s| {
            drop(s.spawn(|| panic!("nobody joined me")));
        });
    }));
    let payload = outcome.unwrap_err();
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    assert!(message.contains("nobody joined me"), "{message}");
}

#[test]
fn a_handle_dropped_after_its_task_panicked_still_raises() {
    let rt = common::runtime(2);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        rt.scope(|s| {
            let h = s.spawn(|| panic!("finished, then dropped"));
            while !h.is_finished() {
                std::thread::yield_now();
            }
            drop(h);
        });
    }));
    assert!(outcome.is_err());
}

#[test]
fn scopes_nest_inside_tasks() {
    let rt = common::runtime(2);
    let rt2 = rt.clone();
    let outer = rt.spawn(move || {
        let data = [1u64, 2, 3, 4];
        rt2.scope(|s| {
            let (a, b) = data.split_at(2);
            let x = s.spawn(|| a.iter().sum::<u64>());
            let y = s.spawn(|| b.iter().sum::<u64>());
            x.join().unwrap() * y.join().unwrap()
        })
    });
    assert_eq!(outer.join().unwrap(), 21);
}

#[test]
fn spawning_after_the_previous_tasks_finished_still_waits_for_the_new_ones() {
    // Each round: one task is joined (the scope's count drops to nothing but the owner's
    // share), then another is spawned that writes to the stack. The scope must wait for it.
    let rt = common::runtime(2);
    for round in 0..2_000u32 {
        let mut slot = 0u32;
        rt.scope(|s| {
            s.spawn(|| round).join().unwrap();
            let slot = &mut slot;
            drop(s.spawn(move || {
                std::thread::yield_now();
                *slot = round + 1;
            }));
        });
        assert_eq!(
            slot,
            round + 1,
            "the scope returned before its last task ran"
        );
    }
}

#[test]
fn spawns_from_several_threads_inside_the_scope_are_all_waited_for() {
    let rt = common::runtime(2);
    let done = std::sync::atomic::AtomicUsize::new(0);
    rt.scope(|s| {
        std::thread::scope(|threads| {
            for _ in 0..4 {
                threads.spawn(|| {
                    for _ in 0..250 {
                        drop(s.spawn(|| {
                            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }));
                    }
                });
            }
        });
    });
    assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 1000);
}
