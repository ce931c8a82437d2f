//! Crash isolation: whatever a task does to its worker process, only that task fails, and
//! the pool replaces the worker and goes on.

mod common;

use std::time::{Duration, Instant};

use plait::process::{ProcessOptions, WorkerExit};
use plait::{Error, Runtime};
use rustix::process::{Signal, getpid, kill_process};

plait::test_worker!();

#[plait::task]
fn abort() -> u32 {
    std::process::abort()
}

#[plait::task]
fn segfault() -> u32 {
    // The signal a wild pointer brings, without the undefined behaviour of making one. Rust's
    // runtime handles the first SIGSEGV (it looks for stack overflows) and, finding none,
    // restores the default action, so the second one kills.
    loop {
        kill_process(getpid(), Signal::SEGV).unwrap();
    }
}

#[plait::task]
fn exit(code: i32) -> u32 {
    std::process::exit(code)
}

#[plait::task]
fn oom_killed() -> u32 {
    // What the kernel's OOM killer sends.
    kill_process(getpid(), Signal::KILL).unwrap();
    unreachable!("SIGKILL kills the process")
}

#[plait::task]
fn crash_if(x: u32, crash: bool) -> u32 {
    if crash {
        std::process::abort();
    }
    x * 2
}

#[plait::task]
fn allocate(bytes: usize) -> usize {
    let block = vec![1u8; bytes];
    block.iter().map(|&b| usize::from(b)).sum()
}

#[plait::task]
fn pid() -> u32 {
    std::process::id()
}

fn runtime(options: ProcessOptions) -> Runtime {
    common::process_runtime(options)
}

fn lost(err: &Error) -> WorkerExit {
    match err {
        Error::WorkerLost { exit, .. } => *exit,
        other => panic!("expected WorkerLost, got {other}"),
    }
}

#[test]
fn each_crash_kind_fails_its_task_only_and_the_worker_is_replaced() {
    let rt = runtime(ProcessOptions::new().workers(1));
    let first = rt.spawn_process(pid::task(), ()).join().unwrap();

    let err = rt.spawn_process(abort::task(), ()).join().unwrap_err();
    assert_eq!(lost(&err), WorkerExit::Signal(6), "{err}");
    assert!(err.to_string().contains("SIGABRT"), "{err}");

    let err = rt.spawn_process(segfault::task(), ()).join().unwrap_err();
    assert_eq!(lost(&err), WorkerExit::Signal(11), "{err}");

    let err = rt.spawn_process(exit::task(), 7).join().unwrap_err();
    assert_eq!(lost(&err), WorkerExit::Code(7), "{err}");

    let err = rt.spawn_process(oom_killed::task(), ()).join().unwrap_err();
    assert_eq!(lost(&err), WorkerExit::Signal(9), "{err}");
    assert!(
        err.to_string().contains("plait_worker") || err.to_string().contains("died"),
        "{err}"
    );

    let last = rt.spawn_process(pid::task(), ()).join().unwrap();
    assert_ne!(first, last, "the crashed worker was replaced");
    assert_eq!(rt.process_workers_started(), 5);
}

#[test]
fn tasks_queued_behind_a_crash_run_elsewhere_unharmed() {
    let rt = runtime(ProcessOptions::new().workers(1));
    // All sent before the crash: the ones behind it sit in the dead worker's pipe.
    let before: Vec<_> = (0..20)
        .map(|x| rt.spawn_process(crash_if::task(), (x, false)))
        .collect();
    let crash = rt.spawn_process(crash_if::task(), (0, true));
    let after: Vec<_> = (0..20)
        .map(|x| rt.spawn_process(crash_if::task(), (x, false)))
        .collect();
    for (x, handle) in before.into_iter().chain(after).enumerate() {
        assert_eq!(handle.join().unwrap(), (x as u32 % 20) * 2);
    }
    assert!(matches!(crash.join(), Err(Error::WorkerLost { .. })));
}

#[test]
fn a_thousand_tasks_with_a_tenth_crashing_give_900_results_and_100_errors() {
    let rt = runtime(ProcessOptions::new().workers(2));
    let handles: Vec<_> = (0..1000u32)
        .map(|x| rt.spawn_process(crash_if::task(), (x, x % 10 == 3)))
        .collect();
    let (mut values, mut lost) = (0, 0);
    for (x, handle) in handles.into_iter().enumerate() {
        match handle.join() {
            Ok(value) => {
                assert_eq!(value, x as u32 * 2);
                values += 1;
            }
            Err(Error::WorkerLost { .. }) => {
                assert_eq!(x % 10, 3, "task {x} failed but did not crash");
                lost += 1;
            }
            Err(other) => panic!("task {x}: {other}"),
        }
    }
    assert_eq!((values, lost), (900, 100));
    // Still healthy: a fresh batch all succeeds.
    let healthy: Vec<u32> = rt
        .map_process(crash_if::task(), (0..100).map(|x| (x, false)))
        .collect::<plait::Result<_>>()
        .unwrap();
    assert_eq!(healthy.len(), 100);
}

#[test]
fn the_crash_budget_retries_then_gives_up() {
    let rt = runtime(ProcessOptions::new().workers(1).crash_retries(2));
    let err = rt.spawn_process(abort::task(), ()).join().unwrap_err();
    assert!(matches!(err, Error::WorkerLost { .. }), "{err}");
    // One start, then one replacement per attempt: three attempts in all.
    rt.spawn_process(pid::task(), ()).join().unwrap();
    assert_eq!(rt.process_workers_started(), 4);
}

#[test]
fn a_hard_time_limit_kills_the_worker_and_reports_timed_out() {
    let rt = runtime(ProcessOptions::new().workers(1));
    let first = rt.spawn_process(pid::task(), ()).join().unwrap();
    let started = Instant::now();
    let err = rt
        .task()
        .timeout(Duration::from_millis(200))
        .spawn_process(sleep_ms::task(), 60_000)
        .join()
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let next = rt.spawn_process(pid::task(), ()).join().unwrap();
    assert_ne!(first, next, "the hung worker was replaced");
}

#[plait::task]
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn cancelling_a_running_task_kills_its_worker_and_the_pool_goes_on() {
    let rt = runtime(ProcessOptions::new().workers(1));
    rt.start_processes().unwrap();
    let hung = rt.spawn_process(sleep_ms::task(), 60_000);
    let queued = rt.spawn_process(pid::task(), ());
    // The queued task waits behind the hung one; cancelling the hung one frees the pool.
    assert!(hung.cancel());
    assert!(hung.join().unwrap_err().is_cancelled());
    queued.join().unwrap();
}

#[test]
fn a_task_over_the_memory_cap_reports_memory_limit() {
    let cap = 512 << 20;
    let rt = runtime(ProcessOptions::new().workers(1).memory_limit(cap));
    assert_eq!(
        rt.spawn_process(allocate::task(), 8 << 20).join().unwrap(),
        8 << 20
    );
    let err = rt
        .spawn_process(allocate::task(), 2 << 30)
        .join()
        .unwrap_err();
    assert!(
        matches!(err, Error::MemoryLimit { limit, .. } if limit == cap),
        "{err}"
    );
    assert!(err.to_string().contains("memory cap"), "{err}");
    assert_eq!(
        rt.spawn_process(allocate::task(), 1 << 20).join().unwrap(),
        1 << 20
    );
}

#[test]
fn cancelling_a_task_queued_in_a_busy_workers_pipe_frees_the_tasks_behind_it() {
    let rt = runtime(ProcessOptions::new().workers(1));
    rt.start_processes().unwrap();
    // Quick tasks first, so that the worker is sent several at a time; a hung one among
    // them, cancelled at once, wherever it is by then (queued, in the pipe, or running).
    let before: Vec<_> = (0..200)
        .map(|x| rt.spawn_process(crash_if::task(), (x, false)))
        .collect();
    let hung = rt.spawn_process(sleep_ms::task(), 60_000);
    let after: Vec<_> = (0..200)
        .map(|x| rt.spawn_process(crash_if::task(), (x, false)))
        .collect();
    assert!(hung.cancel());
    let started = Instant::now();
    for (x, handle) in before.into_iter().chain(after).enumerate() {
        assert_eq!(handle.join().unwrap(), (x as u32 % 200) * 2);
    }
    assert!(hung.join().unwrap_err().is_cancelled());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the tasks behind the cancelled one waited for it: {:?}",
        started.elapsed()
    );
}

#[plait::task]
fn refuse_to_start() {
    panic!("this worker will not serve");
}

#[test]
fn a_pool_whose_workers_cannot_start_fails_its_tasks_with_the_reason() {
    let rt = runtime(
        ProcessOptions::new()
            .workers(3)
            .initializer(refuse_to_start::task(), ())
            .unwrap(),
    );
    let err = rt.start_processes().unwrap_err();
    assert!(matches!(err, Error::WorkerStart { .. }), "{err}");
    assert!(err.to_string().contains("will not serve"), "{err}");
    let err = rt.spawn_process(pid::task(), ()).join().unwrap_err();
    assert!(matches!(err, Error::WorkerStart { .. }), "{err}");
    let started = rt.process_workers_started();
    assert!(started <= 3, "{started} workers started for 3 slots");
}

/// Takes longer to start than the pool allows.
#[plait::task]
fn slow_start() {
    std::thread::sleep(Duration::from_secs(5));
}

#[test]
fn a_worker_slower_than_its_start_timeout_names_the_option() {
    let rt = runtime(
        ProcessOptions::new()
            .workers(1)
            .start_timeout(Duration::from_millis(300))
            .initializer(slow_start::task(), ())
            .unwrap(),
    );
    let err = rt.spawn_process(pid::task(), ()).join().unwrap_err();
    assert!(matches!(err, Error::WorkerStart { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("did not answer within 300ms"), "{message}");
    assert!(
        message.contains("raise ProcessOptions::start_timeout"),
        "{message}"
    );
}

#[plait::task]
fn load_model(bytes: usize) {
    std::hint::black_box(vec![1u8; bytes]);
}

#[test]
fn an_initializer_over_the_memory_cap_is_a_start_error_naming_the_cap() {
    let options = ProcessOptions::new()
        .workers(1)
        .memory_limit(256 << 20)
        .initializer(load_model::task(), 1 << 30)
        .unwrap();
    let err = runtime(options).start_processes().unwrap_err();
    assert!(matches!(err, Error::WorkerStart { .. }), "{err}");
    assert!(
        err.to_string().contains("ProcessOptions::memory_limit"),
        "{err}"
    );
}
