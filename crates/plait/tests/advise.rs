//! Measuring work to advise a strand: a closure that computes is CPU-bound, one that
//! sleeps is I/O-bound; a command's CPU time includes its children's.
//!
//! One test, cases in turn: CPU time against wall time is distorted by other tests running
//! at once.

use std::time::{Duration, Instant};

use plait::Strand;
use plait::advise::{Bound, profile, profile_command};

fn spin(for_how_long: Duration) -> u64 {
    let end = Instant::now() + for_how_long;
    let mut n = 0u64;
    while Instant::now() < end {
        n = n.wrapping_add(1);
        std::hint::black_box(n);
    }
    n
}

#[test]
fn what_bounds_work_is_measured() {
    let (_, computing) = profile(|| spin(Duration::from_millis(300)));
    assert_eq!(computing.bound(), Bound::Cpu, "{computing:?}");
    assert_eq!(computing.advice(2).strand, Strand::Thread);

    let ((), sleeping) = profile(|| std::thread::sleep(Duration::from_millis(300)));
    assert_eq!(sleeping.bound(), Bound::Io, "{sleeping:?}");
    assert!(sleeping.voluntary_switches >= 1, "{sleeping:?}");
    assert_eq!(sleeping.advice(2).strand, Strand::Coroutine);

    // The loop runs in a grandchild (the outer shell must fork: it has work after it): its
    // CPU time counts, as the shell waited for it.
    let mut nested = std::process::Command::new("sh");
    nested.args([
        "-c",
        "sh -c 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done'; :",
    ]);
    let (status, measured) = profile_command(&mut nested).unwrap();
    assert!(status.success());
    assert!(measured.cpu() >= Duration::from_millis(50), "{measured:?}");
    // Commands have no run-queue figure: on a busy machine a loop may read as mixed, but
    // never as waiting.
    assert_ne!(measured.bound(), Bound::Io, "{measured:?}");
}

#[plait::task]
fn naps(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn a_registered_task_is_measured_with_a_sample_argument() {
    let (slept, measured) = plait::advise::profile_task(naps::task(), 200);
    assert_eq!(slept, 200);
    assert_eq!(measured.bound(), Bound::Io, "{measured:?}");
    assert_eq!(measured.advice(2).strand, Strand::Coroutine);
}

#[test]
fn a_command_that_cannot_start_is_named() {
    let mut missing = std::process::Command::new("plait-no-such-program");
    let error = profile_command(&mut missing).unwrap_err().to_string();
    assert!(
        error.contains("cannot run `plait-no-such-program`"),
        "{error}"
    );
}

#[test]
fn a_closure_too_short_to_time_is_not_taken_for_parallel_work() {
    for _ in 0..100 {
        let (_, tiny) = profile(|| std::hint::black_box(1 + 1));
        assert!(
            tiny.cpu_share() <= 1.0,
            "one thread, one core at most: {tiny:?}"
        );
        assert_eq!(tiny.advice(4).concurrency, 4, "{tiny:?}");
    }
}
