//! The process strand's basic path: registered tasks run in worker processes and come back
//! through the same Handle as the other strands.

mod common;

use std::time::Duration;

use plait::Runtime;
use plait::process::ProcessOptions;
use plait_testtasks::{Order, add, echo, total, worker_pid};
use serde_bytes::ByteBuf;

plait::test_worker!();

#[plait::task]
fn square(x: u64) -> u64 {
    x * x
}

#[plait::task]
fn fail(message: String) -> u32 {
    panic!("{message}")
}

#[plait::task]
fn length(data: ByteBuf) -> u64 {
    data.len() as u64
}

/// A process's resident memory, from /proc.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn a_worker_gives_back_the_memory_of_a_large_payload() {
    let rt = runtime(1);
    let pid = rt.spawn_process(worker_pid::task(), ()).join().unwrap();
    let big = ByteBuf::from(vec![7u8; 64 << 20]);
    assert_eq!(
        rt.spawn_process(length::task(), big).join().unwrap(),
        64 << 20
    );
    assert_small_after_a_frame(&rt, pid, "a large argument");
    let echoed = rt
        .spawn_process(echo::task(), ByteBuf::from(vec![7u8; 64 << 20]))
        .join()
        .unwrap();
    assert_eq!(echoed.len(), 64 << 20);
    drop(echoed);
    assert_small_after_a_frame(&rt, pid, "a large answer");
}

/// Sends the worker `pid` one more (small) frame, which it reads once the large one is
/// handled (then its buffers shrink), and checks its resident memory.
fn assert_small_after_a_frame(rt: &Runtime, pid: u32, after: &str) {
    assert_eq!(
        rt.spawn_process(worker_pid::task(), ()).join().unwrap(),
        pid
    );
    let resident = resident_bytes(pid);
    assert!(
        resident < 32 << 20,
        "the worker kept {} MiB after {after}",
        resident >> 20
    );
}

fn runtime(workers: usize) -> Runtime {
    common::process_runtime(ProcessOptions::new().workers(workers))
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
    let pattern: Vec<u8> = (0..=250).collect();
    let mut data = Vec::with_capacity(64 << 20);
    while data.len() < 64 << 20 {
        let take = pattern.len().min((64 << 20) - data.len());
        data.extend_from_slice(&pattern[..take]);
    }
    let data = ByteBuf::from(data);
    let back = rt.spawn_process(echo::task(), data.clone()).join().unwrap();
    assert_eq!(back.len(), 64 << 20);
    assert!(back == data, "the payload came back changed");
}

#[test]
fn an_over_limit_payload_is_refused_at_spawn_with_the_limit() {
    let rt = Runtime::builder()
        .processes(ProcessOptions::new().workers(1).payload_limit(1024))
        .build()
        .unwrap();
    let err = rt
        .spawn_process(echo::task(), ByteBuf::from(vec![0; 4096]))
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

#[test]
fn workers_are_recycled_after_max_tasks() {
    let rt = Runtime::builder()
        .processes(ProcessOptions::new().workers(1).max_tasks_per_worker(3))
        .build()
        .unwrap();
    let pids: Vec<u32> = (0..10)
        .map(|_| rt.spawn_process(worker_pid::task(), ()).join().unwrap())
        .collect();
    let mut runs = std::collections::HashMap::new();
    for pid in &pids {
        *runs.entry(pid).or_insert(0) += 1;
    }
    assert!(runs.values().all(|&n| n <= 3), "{pids:?}");
    assert_eq!(runs.len(), 4, "{pids:?}");
}

static GREETING: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[plait::task]
fn set_greeting(greeting: String) {
    assert!(!greeting.is_empty(), "an empty greeting");
    GREETING.set(greeting).unwrap();
}

#[plait::task]
fn greeting() -> Option<String> {
    GREETING.get().cloned()
}

#[test]
fn the_initializer_runs_in_every_worker_before_it_serves() {
    let options = ProcessOptions::new()
        .workers(2)
        .initializer(set_greeting::task(), "hello from init".into())
        .unwrap();
    let rt = Runtime::builder().processes(options).build().unwrap();
    for result in rt.map_process_unordered(greeting::task(), std::iter::repeat_n((), 50)) {
        assert_eq!(result.1.unwrap().as_deref(), Some("hello from init"));
    }
}

#[test]
fn a_failing_initializer_is_a_start_error_that_names_it() {
    let options = ProcessOptions::new()
        .workers(1)
        .initializer(set_greeting::task(), String::new())
        .unwrap();
    let rt = Runtime::builder().processes(options).build().unwrap();
    let err = rt.start_processes().unwrap_err();
    assert!(matches!(err, plait::Error::WorkerStart { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("the initializer process_spawn::set_greeting"),
        "{message}"
    );
    assert!(message.contains("an empty greeting"), "{message}");
    // The way out is the initializer, not `init` (which this program calls).
    assert!(message.contains("Fix the initializer"), "{message}");
    assert!(!message.contains("plait::init"), "{message}");
    // Tasks fail with the same reason rather than wait for a worker that will not come.
    let err = rt.spawn_process(square::task(), 2).join().unwrap_err();
    assert!(matches!(err, plait::Error::WorkerStart { .. }), "{err}");
}

#[test]
fn tasks_run_by_name_with_encoded_arguments() {
    let rt = runtime(1);
    let args = plait::process::EncodedArgs::encode(&(2i64, 3i64)).unwrap();
    let out = rt
        .spawn_process_by_name("plait_testtasks::add", args)
        .join()
        .unwrap();
    assert_eq!(postcard::from_bytes::<i64>(&out).unwrap(), 5);

    let err = rt
        .spawn_process_by_name(
            "plait_testtasks::ad",
            plait::process::EncodedArgs::from_parts("()", vec![]),
        )
        .join()
        .unwrap_err();
    assert!(
        matches!(&err, plait::Error::UnknownTask { name, close }
        if name == "plait_testtasks::ad" && close.first().map(String::as_str) == Some("plait_testtasks::add")),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("did you mean plait_testtasks::add"),
        "{err}"
    );
}

#[test]
fn arguments_of_the_wrong_type_are_refused_by_name_and_whole() {
    let rt = runtime(1);
    // The bytes of the String "hello" would decode as the u64 5, with five bytes to spare.
    let hello = plait::process::EncodedArgs::encode(&"hello".to_owned()).unwrap();
    let err = rt
        .spawn_process_by_name("process_spawn::square", hello.clone())
        .join()
        .unwrap_err();
    assert!(matches!(err, plait::Error::Codec { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("encoded as `alloc::string::String`, but the task takes `u64`"),
        "{message}"
    );
    // Named as the right type, the worker still finds the bytes left over.
    let forged = plait::process::EncodedArgs::from_parts("u64", hello.into_bytes());
    let err = rt
        .spawn_process_by_name("process_spawn::square", forged)
        .join()
        .unwrap_err();
    assert!(matches!(err, plait::Error::Codec { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("5 were left after decoding a `u64`"),
        "{err}"
    );
}

#[plait::task]
fn scribble_on_the_frames() -> u32 {
    let mut written = 0;
    // Foreign code writing where it should not: garbage on the worker's frame pipe, the
    // only write-only pipe it holds beyond standard error.
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let fd: u32 = entry.file_name().to_string_lossy().parse().unwrap();
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
        let write_only = info
            .lines()
            .find_map(|line| line.strip_prefix("flags:"))
            .is_some_and(|flags| flags.trim().ends_with('1'));
        let pipe = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("pipe:"));
        if fd > 2 && write_only && pipe {
            use std::io::Write;
            // Another pipe may have no reader left: only the frame pipe matters here.
            if let Ok(mut pipe) = std::fs::OpenOptions::new().write(true).open(entry.path())
                && pipe
                    .write_all(&[9, 0, 0, 0, 99, 0, 0, 0, 0, 0, 0, 0, 0])
                    .is_ok()
            {
                written += 1000 + fd;
            }
        } else {
            written += 1;
        }
    }
    written
}

#[test]
fn an_undecodable_frame_kills_the_worker_and_fails_the_task_with_a_codec_error() {
    let rt = runtime(1);
    let before = rt.spawn_process(worker_pid::task(), ()).join().unwrap();
    let err = rt
        .spawn_process(scribble_on_the_frames::task(), ())
        .join()
        .unwrap_err();
    assert!(
        matches!(&err, plait::Error::Codec { task, .. } if task.ends_with("scribble_on_the_frames")),
        "{err}"
    );
    assert!(err.to_string().contains("unknown frame kind 99"), "{err}");
    let after = rt.spawn_process(worker_pid::task(), ()).join().unwrap();
    assert_ne!(before, after, "the worker that sent garbage was replaced");
}
