//! The process strand's basic path: registered tasks run in worker processes and come back
//! through the same Handle as the other strands.

use std::time::Duration;

use plait::Runtime;
use plait::process::ProcessOptions;
use plait_testtasks::{Order, add, echo, total, worker_pid};

plait::test_worker!();

#[plait::task]
fn square(x: u64) -> u64 {
    x * x
}

#[plait::task]
fn fail(message: String) -> u32 {
    panic!("{message}")
}

fn runtime(workers: usize) -> Runtime {
    Runtime::builder()
        .threads(2)
        .coroutine_workers(2)
        .processes(ProcessOptions::new().workers(workers))
        .build()
        .unwrap()
}

#[test]
fn tasks_run_in_other_processes_and_return_their_results() {
    let rt = runtime(2);
    assert_eq!(rt.spawn_process(square::task(), 12).join().unwrap(), 144);
    let pid = rt.spawn_process(worker_pid::task(), ()).join().unwrap();
    assert_ne!(pid, std::process::id(), "the task ran in this process");
}

#[test]
fn tasks_from_another_crate_are_registered() {
    let rt = runtime(1);
    assert_eq!(rt.spawn_process(add::task(), (40, 2)).join().unwrap(), 42);
    let order = Order {
        customer: "ada".into(),
        items: vec![1000, 2500],
        discount: Some(10),
    };
    assert_eq!(rt.spawn_process(total::task(), order).join().unwrap(), 3150);
    let names = plait::process::registered_tasks();
    assert!(names.contains(&"plait_testtasks::add"), "{names:?}");
}

#[test]
fn a_panic_is_an_error_and_the_worker_lives_on() {
    let rt = runtime(1);
    let before = rt.spawn_process(worker_pid::task(), ()).join().unwrap();
    let err = rt
        .spawn_process(fail::task(), "bad input: -1".into())
        .join()
        .unwrap_err();
    assert!(err.is_panic(), "{err}");
    assert_eq!(err.to_string(), "task panicked: bad input: -1");
    let after = rt.spawn_process(worker_pid::task(), ()).join().unwrap();
    assert_eq!(before, after, "a panic must not cost the worker");
}

#[test]
fn many_tasks_in_flight_all_come_back_in_their_handles() {
    let rt = runtime(2);
    let handles: Vec<_> = (0..2000u64)
        .map(|i| rt.spawn_process(square::task(), i))
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.join().unwrap(), (i * i) as u64);
    }
}

#[test]
fn payloads_of_64_mib_travel_both_ways() {
    let rt = runtime(1);
    let data: Vec<u8> = (0..64 << 20).map(|i: u32| (i % 251) as u8).collect();
    let back = rt.spawn_process(echo::task(), data.clone()).join().unwrap();
    assert!(back == data, "the payload came back changed");
}

#[test]
fn an_over_limit_payload_is_refused_at_spawn_with_the_limit() {
    let rt = Runtime::builder()
        .processes(ProcessOptions::new().workers(1).payload_limit(1024))
        .build()
        .unwrap();
    let err = rt
        .spawn_process(echo::task(), vec![0; 4096])
        .join()
        .unwrap_err();
    assert!(
        matches!(err, plait::Error::PayloadTooLarge { limit: 1024, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("payload limit of 1024 bytes"),
        "{err}"
    );
    assert_eq!(
        rt.process_workers_started(),
        0,
        "refused before any worker started"
    );
}

#[test]
fn handles_can_be_awaited_and_time_limited() {
    let rt = runtime(1);
    let value = rt.block_on(async { rt.spawn_process(square::task(), 9).await.unwrap() });
    assert_eq!(value, 81);
    let quick = rt
        .task()
        .timeout(Duration::from_secs(5))
        .spawn_process(square::task(), 3);
    assert_eq!(quick.join().unwrap(), 9);
}

#[test]
fn start_processes_waits_until_every_worker_serves() {
    let rt = runtime(2);
    rt.start_processes().unwrap();
    assert_eq!(rt.process_workers_started(), 2);
}
