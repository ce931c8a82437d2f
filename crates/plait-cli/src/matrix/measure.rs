//! The matrix's measurements: each workload on each strand, on this machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use plait::process::ProcessOptions;
use plait::{Error, Handle, Runtime};
use serde_bytes::ByteBuf;

use super::tasks::{self, abort, checksum, inc, kernel, leak, resident, sleep_ms};

/// How much work each measurement does.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub(crate) struct Sizes {
    pub(crate) tiny: u64,
    pub(crate) tiny_process: u64,
    pub(crate) kernel_rounds: u64,
    pub(crate) waits: u64,
    pub(crate) payload_mib: usize,
    pub(crate) payloads: usize,
    pub(crate) idle: usize,
    pub(crate) leak_mib: u64,
}

impl Sizes {
    pub(crate) fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                tiny: 20_000,
                tiny_process: 5_000,
                // Long enough (about 15 ms here) that each worker gets its share.
                kernel_rounds: 15_000_000,
                waits: 100,
                payload_mib: 8,
                payloads: 4,
                idle: 20_000,
                leak_mib: 32,
            }
        } else {
            Sizes {
                tiny: 200_000,
                tiny_process: 50_000,
                kernel_rounds: 30_000_000,
                waits: 400,
                payload_mib: 32,
                payloads: 8,
                idle: 100_000,
                leak_mib: 64,
            }
        }
    }
}

/// The limit the hang measurement sets, and how long the hanging task would run.
pub(crate) const HANG_LIMIT: Duration = Duration::from_millis(50);
const HANG_FOR: Duration = Duration::from_millis(300);
/// The length of one wait.
pub(crate) const WAIT: Duration = Duration::from_millis(10);

/// What one strand measured.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Measured {
    /// Tiny tasks per second (submitted all, then joined).
    pub(crate) tiny_per_s: f64,
    /// CPU kernels on all cores: serial time over the strand's wall time.
    pub(crate) cpu_speedup: f64,
    /// Waits of 10 ms per second of wall time.
    pub(crate) waits_per_s: f64,
    /// Payload bytes through a task and back, MiB per second.
    pub(crate) payload_mib_per_s: f64,
    /// Starting one unit, median: an OS thread spawned and joined, a coroutine spawned and
    /// awaited, a worker process started until it serves.
    pub(crate) start_up_s: f64,
    /// Resident bytes per task: a task queued on the thread strand (it holds no thread until
    /// it runs), an idle coroutine, a worker process.
    pub(crate) memory_per_task_bytes: f64,
    /// A task that crashes: the time until its handle reports it (and, for a worker, until
    /// its replacement serves).
    pub(crate) crash_s: f64,
    /// A task that hangs past a time limit: how long its unit stays held after the limit
    /// (for a thread, until the handle can report the limit: when the body returns).
    pub(crate) hang_held_s: f64,
    /// A task that leaks: the bytes this program keeps afterwards.
    pub(crate) leak_kept_bytes: f64,
}

fn time(f: impl FnOnce()) -> Duration {
    let started = Instant::now();
    f();
    started.elapsed()
}

fn join_all<T>(handles: Vec<Handle<T>>) -> Result<Vec<T>, Error> {
    handles.into_iter().map(Handle::join).collect()
}

/// Runs `f` with panics not printed (the crash measurements panic on purpose).
fn quietly<R>(f: impl FnOnce() -> R) -> R {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let output = f();
    std::panic::set_hook(hook);
    output
}

/// The serial baseline: the kernels one after another on this thread.
pub(crate) fn serial_kernels(sizes: Sizes, count: u64) -> Duration {
    time(|| {
        for _ in 0..count {
            std::hint::black_box(tasks::kernel(sizes.kernel_rounds));
        }
    })
}

/// What a memory probe measures: one kind of idle task, alone in a fresh process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Probe {
    /// Tasks queued on the thread strand while every pool thread is held.
    Queued,
    /// Coroutines waiting on a timer.
    Idle,
}

/// Resident bytes per idle task of one kind, in a process that has measured nothing else:
/// memory freed by other measurements would be reused, and a program's resident size would
/// not grow for it (`plait matrix --probe-memory KIND`).
pub(crate) fn idle_memory(rt: &Runtime, sizes: Sizes, probe: Probe) -> f64 {
    match probe {
        Probe::Queued => queued_memory(rt, sizes.idle),
        Probe::Idle => idle_coroutine_memory(rt, sizes.idle),
    }
}

pub(crate) fn thread(
    rt: &Runtime,
    sizes: Sizes,
    kernels: u64,
    serial: Duration,
    memory: f64,
) -> Result<Measured, Error> {
    let tiny =
        time_result(|| join_all((0..sizes.tiny).map(|i| rt.spawn(move || i + 1)).collect()))?;
    let cpu = time_result(|| {
        join_all(
            (0..kernels)
                .map(|_| rt.spawn(move || tasks::kernel(sizes.kernel_rounds)))
                .collect(),
        )
    })?;
    let waits = time_result(|| {
        join_all(
            (0..sizes.waits)
                .map(|_| rt.spawn(|| std::thread::sleep(WAIT)))
                .collect(),
        )
    })?;
    let payload = payloads(sizes, |data| rt.spawn(move || tasks::sum(&data)).join())?;
    let start_up = median(
        (0..50)
            .map(|_| time(|| std::thread::spawn(|| ()).join().unwrap_or(())))
            .collect(),
    );
    let crash = quietly(|| {
        median(
            (0..5)
                .map(|_| time(|| drop(rt.spawn(|| -> u8 { panic!("a crash on purpose") }).join())))
                .collect(),
        )
    });
    // A thread cannot be killed: the limit is reported once the body returns.
    let hang_held = time(|| {
        let _ = rt
            .task()
            .timeout(HANG_LIMIT)
            .spawn(|| std::thread::sleep(HANG_FOR))
            .join();
    })
    .saturating_sub(HANG_LIMIT);
    let leak_kept = kept(|| {
        drop(rt.spawn(move || tasks::leak(sizes.leak_mib)).join());
    });
    Ok(Measured {
        tiny_per_s: sizes.tiny as f64 / tiny.as_secs_f64(),
        cpu_speedup: serial.as_secs_f64() / cpu.as_secs_f64(),
        waits_per_s: sizes.waits as f64 / waits.as_secs_f64(),
        payload_mib_per_s: payload,
        start_up_s: start_up.as_secs_f64(),
        memory_per_task_bytes: memory,
        crash_s: crash.as_secs_f64(),
        hang_held_s: hang_held.as_secs_f64(),
        leak_kept_bytes: leak_kept,
    })
}

pub(crate) fn coroutine(
    rt: &Runtime,
    sizes: Sizes,
    kernels: u64,
    serial: Duration,
    memory: f64,
) -> Result<Measured, Error> {
    let tiny = time_result(|| {
        join_all(
            (0..sizes.tiny)
                .map(|i| rt.spawn_async(async move { i + 1 }))
                .collect(),
        )
    })?;
    let cpu = time_result(|| {
        join_all(
            (0..kernels)
                .map(|_| rt.spawn_async(async move { tasks::kernel(sizes.kernel_rounds) }))
                .collect(),
        )
    })?;
    let waits = time_result(|| {
        join_all(
            (0..sizes.waits)
                .map(|_| rt.spawn_async(async { tokio::time::sleep(WAIT).await }))
                .collect(),
        )
    })?;
    let payload = payloads(sizes, |data| {
        rt.spawn_async(async move { tasks::sum(&data) }).join()
    })?;
    let start_up = median(
        (0..50)
            .map(|_| time(|| drop(rt.spawn_async(async {}).join())))
            .collect(),
    );
    let crash = quietly(|| {
        median(
            (0..5)
                .map(|_| {
                    time(|| {
                        drop(
                            rt.spawn_async(async { panic!("a crash on purpose") })
                                .join(),
                        )
                    })
                })
                .collect(),
        )
    });
    let hang_held = {
        let limited = rt
            .task()
            .timeout(HANG_LIMIT)
            .spawn_async(std::future::pending::<()>());
        let _ = limited.join();
        // Dropped at its await when the limit passed: nothing is held after it.
        let probe = Instant::now();
        rt.spawn_async(async {}).join()?;
        probe.elapsed()
    };
    let leak_kept = kept(|| {
        drop(
            rt.spawn_async(async move { tasks::leak(sizes.leak_mib) })
                .join(),
        );
    });
    Ok(Measured {
        tiny_per_s: sizes.tiny as f64 / tiny.as_secs_f64(),
        cpu_speedup: serial.as_secs_f64() / cpu.as_secs_f64(),
        waits_per_s: sizes.waits as f64 / waits.as_secs_f64(),
        payload_mib_per_s: payload,
        start_up_s: start_up.as_secs_f64(),
        memory_per_task_bytes: memory,
        crash_s: crash.as_secs_f64(),
        hang_held_s: hang_held.as_secs_f64(),
        leak_kept_bytes: leak_kept,
    })
}

pub(crate) fn process(
    rt: &Runtime,
    sizes: Sizes,
    kernels: u64,
    serial: Duration,
) -> Result<Measured, Error> {
    rt.start_processes()?;
    let tiny = time_result(|| {
        join_all(
            (0..sizes.tiny_process)
                .map(|i| rt.spawn_process(inc::task(), i))
                .collect(),
        )
    })?;
    let cpu = time_result(|| {
        join_all(
            (0..kernels)
                .map(|_| rt.spawn_process(kernel::task(), sizes.kernel_rounds))
                .collect(),
        )
    })?;
    let waits = time_result(|| {
        join_all(
            (0..sizes.waits)
                .map(|_| rt.spawn_process(sleep_ms::task(), WAIT.as_millis() as u64))
                .collect(),
        )
    })?;
    let payload = payloads(sizes, |data| {
        rt.spawn_process(checksum::task(), ByteBuf::from(data))
            .join()
    })?;
    // Start-up, memory, crash and hang on a runtime of its own with one worker: the probe
    // after a crash or a hang can only be served by the replacement, and the worker's
    // memory is a fresh worker's, not one grown by the payloads above.
    let solo = Runtime::builder()
        .threads(1)
        .coroutine_workers(1)
        .processes(ProcessOptions::new().workers(1))
        .build()?;
    let start_up = time_result(|| solo.start_processes())?;
    let memory = solo.spawn_process(resident::task(), ()).join()? as f64;
    let crash = time_result(|| {
        let _ = solo.spawn_process(abort::task(), ()).join();
        // Until the replacement serves.
        solo.spawn_process(inc::task(), 1).join().map(drop)
    })?;
    let hang_held = {
        let _ = solo
            .task()
            .timeout(HANG_LIMIT)
            .spawn_process(sleep_ms::task(), HANG_FOR.as_millis() as u64)
            .join();
        // The worker was killed at the limit; the probe waits for its replacement.
        let probe = Instant::now();
        solo.spawn_process(inc::task(), 1).join()?;
        probe.elapsed()
    };
    let _ = solo.shutdown(Duration::from_secs(5));
    let leak_kept = kept(|| {
        drop(rt.spawn_process(leak::task(), sizes.leak_mib).join());
    });
    Ok(Measured {
        tiny_per_s: sizes.tiny_process as f64 / tiny.as_secs_f64(),
        cpu_speedup: serial.as_secs_f64() / cpu.as_secs_f64(),
        waits_per_s: sizes.waits as f64 / waits.as_secs_f64(),
        payload_mib_per_s: payload,
        start_up_s: start_up.as_secs_f64(),
        memory_per_task_bytes: memory,
        crash_s: crash.as_secs_f64(),
        hang_held_s: hang_held.as_secs_f64(),
        leak_kept_bytes: leak_kept,
    })
}

fn time_result<T>(f: impl FnOnce() -> Result<T, Error>) -> Result<Duration, Error> {
    let started = Instant::now();
    f()?;
    Ok(started.elapsed())
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// Sends `sizes.payloads` payloads through `run` (which returns their checksum); MiB/s.
fn payloads(sizes: Sizes, run: impl Fn(Vec<u8>) -> Result<u64, Error>) -> Result<f64, Error> {
    let data: Vec<Vec<u8>> = (0..sizes.payloads)
        .map(|i| vec![(i % 251) as u8; sizes.payload_mib << 20])
        .collect();
    let took = time_result(|| {
        for payload in data {
            std::hint::black_box(run(payload)?);
        }
        Ok(())
    })?;
    Ok((sizes.payloads * sizes.payload_mib) as f64 / took.as_secs_f64())
}

/// Resident bytes per queued thread task: `n` tasks queued while every pool thread is held.
fn queued_memory(rt: &Runtime, n: usize) -> f64 {
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = Arc::new(std::sync::Mutex::new(gate));
    let (held, holding) = std::sync::mpsc::channel::<()>();
    let holders: Vec<_> = (0..rt.threads())
        .map(|_| {
            let (gate, held) = (Arc::clone(&gate), held.clone());
            rt.spawn(move || {
                let _ = held.send(());
                let _ = gate.lock().map(|gate| gate.recv());
            })
        })
        .collect();
    for _ in 0..rt.threads() {
        let _ = holding.recv();
    }
    let before = tasks::resident();
    let queued: Vec<_> = (0..n).map(|i| rt.spawn(move || i)).collect();
    let after = tasks::resident();
    for handle in &queued {
        handle.cancel();
    }
    drop(release);
    for holder in holders {
        let _ = holder.join();
    }
    after.saturating_sub(before) as f64 / n as f64
}

/// Resident bytes per idle coroutine: `n` coroutines each waiting on a long timer, measured
/// once every one has started.
fn idle_coroutine_memory(rt: &Runtime, n: usize) -> f64 {
    let started = Arc::new(AtomicUsize::new(0));
    let before = tasks::resident();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let started = Arc::clone(&started);
            rt.spawn_async(async move {
                started.fetch_add(1, Ordering::Release);
                tokio::time::sleep(Duration::from_secs(3600)).await;
            })
        })
        .collect();
    while started.load(Ordering::Acquire) < n {
        std::thread::yield_now();
    }
    let after = tasks::resident();
    for handle in &handles {
        handle.cancel();
    }
    after.saturating_sub(before) as f64 / n as f64
}

/// The resident bytes this program gains from `f` and keeps after it.
fn kept(f: impl FnOnce()) -> f64 {
    let before = tasks::resident();
    f();
    tasks::resident().saturating_sub(before) as f64
}

/// The medians of several samples of one strand, field by field, and each field's spread
/// (smallest, largest).
pub(crate) fn medians(
    samples: &[Measured],
) -> (Measured, std::collections::BTreeMap<String, [f64; 2]>) {
    let mut columns: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for sample in samples {
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(sample) {
            for (name, value) in fields {
                columns
                    .entry(name)
                    .or_default()
                    .push(value.as_f64().unwrap_or(0.0));
            }
        }
    }
    let mut middle = serde_json::Map::new();
    let mut spread = std::collections::BTreeMap::new();
    for (name, mut values) in columns {
        values.sort_by(f64::total_cmp);
        let mid = values.get(values.len() / 2).copied().unwrap_or(0.0);
        middle.insert(name.clone(), mid.into());
        let low = values.first().copied().unwrap_or(0.0);
        let high = values.last().copied().unwrap_or(0.0);
        spread.insert(name, [low, high]);
    }
    let measured = serde_json::from_value(serde_json::Value::Object(middle)).unwrap_or_default();
    (measured, spread)
}
