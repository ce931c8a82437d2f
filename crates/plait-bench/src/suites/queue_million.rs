//! One million queued tasks in the embedded store: how long they take to enqueue, how
//! long `plait status` then takes to answer, and how much memory a `plait worker` on that
//! queue holds (its prefetch is bounded, so a long queue should cost it nothing).
//!
//! `plait status` and `plait worker` are the CLI binary beside this one
//! (`cargo build --release -p plait-cli -p plait-bench`); without it those rows are left
//! out, with a message.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plait_queue::{NewTask, Payload, SqliteStore, Store};

use crate::context::Context;
use crate::report::Row;

/// Tasks per enqueue transaction: a bulk producer's batch.
const BATCH: usize = 1_000;

/// How long the worker runs on the long queue before its memory is read.
const WORKER_RUN: Duration = Duration::from_secs(5);

pub(crate) fn run(ctx: &Context) -> Vec<Row> {
    let n = ctx.n(1_000_000);
    let folder = std::env::temp_dir().join(format!("plait-bench-million-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    let path = folder.join("queue.db");
    let store = SqliteStore::open(&path).expect("a temporary folder takes a queue");
    let mut rows = Vec::new();

    let payload = Payload::command(["true"]).encode();
    let started = Instant::now();
    let mut left = n;
    while left > 0 {
        let batch = usize::try_from(left).unwrap_or(BATCH).min(BATCH);
        let tasks = vec![NewTask::new(payload.clone()); batch];
        store.enqueue_all(&tasks).expect("the batch is stored");
        left -= batch as u64;
    }
    let enqueue = started.elapsed();
    let size = std::fs::metadata(&path).map_or(0, |m| m.len())
        + std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len());
    rows.push(
        Row::timed(
            "queue-million",
            "enqueue",
            "plait queue, SQLite (default durability)",
            n,
            &[enqueue],
        )
        .note(format!(
            "batches of {BATCH} per transaction; the file then holds {:.0} MiB",
            size as f64 / 1048576.0
        )),
    );

    let in_process = ctx.measure(|| {
        let fresh = SqliteStore::open(&path).expect("the queue opens");
        let started = Instant::now();
        let queues = fresh.queues().expect("the counts are read");
        assert_eq!(queues.iter().map(|q| q.ready).sum::<u64>(), n);
        started.elapsed()
    });
    rows.push(
        Row::timed(
            "queue-million",
            "count every queue's tasks by state",
            "plait queue, SQLite: Store::queues on a fresh handle",
            1,
            &in_process,
        )
        .note(format!("{n} tasks queued")),
    );

    match cli() {
        Some(plait) => {
            let status = ctx.measure(|| {
                let started = Instant::now();
                let out = Command::new(&plait)
                    .arg("status")
                    .env("PLAIT_QUEUE_PATH", &path)
                    .output()
                    .expect("plait runs");
                assert!(out.status.success(), "{out:?}");
                started.elapsed()
            });
            rows.push(
                Row::timed(
                    "queue-million",
                    "plait status",
                    "plait CLI, whole command",
                    1,
                    &status,
                )
                .note(format!("{n} tasks queued; a new process each run")),
            );
            if let Some(row) = worker_memory(&plait, &path, n) {
                rows.push(row);
            }
        }
        None => eprintln!(
            "plait-bench: no plait binary beside this one; `cargo build --release -p plait-cli` \
             for the `plait status` and worker-memory rows"
        ),
    }
    let _ = std::fs::remove_dir_all(&folder);
    rows
}

/// The `plait` binary beside this one.
fn cli() -> Option<PathBuf> {
    let plait = std::env::current_exe().ok()?.with_file_name("plait");
    plait.is_file().then_some(plait)
}

/// Runs `plait worker` on the long queue for [`WORKER_RUN`], then reads its peak resident
/// memory and stops it.
fn worker_memory(plait: &Path, path: &Path, n: u64) -> Option<Row> {
    let mut worker = Command::new(plait)
        .args(["worker", "--concurrency", "2"])
        .env("PLAIT_QUEUE_PATH", path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(WORKER_RUN);
    let status = std::fs::read_to_string(format!("/proc/{}/status", worker.id())).ok();
    let kib = |key: &str| -> Option<f64> {
        status
            .as_deref()?
            .lines()
            .find_map(|line| line.strip_prefix(key))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let (peak, now) = (kib("VmHWM:"), kib("VmRSS:"));
    let _ = Command::new("kill").arg(worker.id().to_string()).status();
    let _ = worker.wait();
    let done = SqliteStore::open(path)
        .and_then(|store| store.queues())
        .map_or(0, |queues| queues.iter().map(|q| q.succeeded).sum::<u64>());
    let mut row = Row::timed(
        "queue-million",
        "worker memory with the queue long",
        "plait worker --concurrency 2 (its own process)",
        1,
        &[WORKER_RUN],
    );
    row.bytes_per_task = peak.map(|kib| kib * 1024.0);
    Some(row.note(format!(
        "peak RSS {:.1} MiB, RSS {:.1} MiB after {:?}; it ran {done} of the {n} `true` commands",
        peak.unwrap_or(0.0) / 1024.0,
        now.unwrap_or(0.0) / 1024.0,
        WORKER_RUN
    )))
}
