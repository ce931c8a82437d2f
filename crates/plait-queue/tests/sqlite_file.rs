//! The embedded store and its file: what it refuses to open, what it says when the file
//! is locked or the disk is full, and what survives kill -9 of every process writing it.
//!
//! Some checks run a child: this test binary again, in a role named by `PLAIT_QUEUE_ROLE`
//! (the `child_role` test below is the child's entry point and does nothing otherwise).

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TempFolder;
use plait_queue::{ErrorKind, NewTask, Payload, QueueError, SqliteStore, State, Store, TaskId};

const ROLE: &str = "PLAIT_QUEUE_ROLE";
const FILE: &str = "PLAIT_QUEUE_FILE";

fn task(n: usize) -> NewTask {
    NewTask::new(Payload::command(["echo", &n.to_string()]).encode())
}

#[test]
fn another_programs_database_is_refused_by_name() {
    let folder = TempFolder::new("foreign");
    let path = folder.path().join("app.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('ada');")
        .unwrap();
    let error = SqliteStore::open(&path).err().unwrap();
    assert_eq!(error.kind(), ErrorKind::Unreadable);
    let said = error.to_string();
    assert!(said.contains(&path.display().to_string()), "{said}");
    assert!(said.contains("another program's SQLite database"), "{said}");
    // And it was left as it was.
    let users: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM users", [], |row| row.get(0))
        .unwrap();
    assert_eq!(users, 1);
}

#[test]
fn a_queue_written_by_a_newer_plait_is_refused_with_both_versions() {
    let folder = TempFolder::new("newer");
    let path = folder.path().join("queue.db");
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99;")
        .unwrap();
    let error = SqliteStore::open(&path).err().unwrap();
    assert!(
        matches!(
            error,
            QueueError::SchemaTooNew {
                found: 99,
                supported: 4,
                ..
            }
        ),
        "{error}"
    );
}

/// A queue of the first layout (before the worker registry and the rate limits) is brought
/// up to date when it is opened, its tasks kept.
#[test]
fn a_queue_of_the_first_layout_is_upgraded_in_place() {
    let folder = TempFolder::new("upgrade");
    let path = folder.path().join("queue.db");
    let id = {
        let store = SqliteStore::open(&path).unwrap();
        store
            .enqueue(&NewTask::new(Payload::command(["true"]).encode()))
            .unwrap()
            .id
    };
    // Back to version 1's layout, as the first plait wrote it.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "DROP TABLE workers; DROP TABLE counts; DROP INDEX tasks_delayed;
             DROP TABLE limits; PRAGMA user_version = 1;",
        )
        .unwrap();
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.get(id).unwrap().unwrap().state, State::Queued);
    let queues = store.queues().unwrap();
    assert_eq!(queues.len(), 1, "the counts are made from the tasks");
    assert_eq!(queues[0].ready, 1);
    assert!(store.workers().unwrap().is_empty(), "the registry is there");
    let limit = plait_queue::RateLimit::per_second(1.0);
    assert_eq!(
        store.take_token("t", limit).unwrap(),
        None,
        "the limits are there"
    );
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 4);
}

/// A worker registered by layout 3 (before the histograms of durations) is kept when the
/// file is brought up to date, with none recorded.
#[test]
fn a_worker_of_layout_three_is_kept_with_no_durations() {
    let folder = TempFolder::new("layout-three");
    let path = folder.path().join("queue.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        let mut worker = plait_queue::WorkerInfo::new(
            "w1",
            vec!["default".into()],
            2,
            std::time::Duration::from_secs(30),
        );
        worker.succeeded = 4;
        store.worker_seen(&worker).unwrap();
    }
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("ALTER TABLE workers DROP COLUMN durations; PRAGMA user_version = 3;")
        .unwrap();
    let store = SqliteStore::open(&path).unwrap();
    let workers = store.workers().unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!((workers[0].succeeded, workers[0].durations.count()), (4, 0));
}

#[test]
fn a_file_that_is_not_a_database_is_named_and_left_alone() {
    let folder = TempFolder::new("garbage");
    let path = folder.path().join("queue.db");
    let garbage = vec![0xA5_u8; 8192];
    std::fs::write(&path, &garbage).unwrap();
    let error = SqliteStore::open(&path).err().unwrap();
    assert_eq!(error.kind(), ErrorKind::Unreadable, "{error}");
    assert!(error.to_string().contains(&path.display().to_string()));
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn a_file_locked_past_the_busy_timeout_is_named_and_nothing_is_lost() {
    let folder = TempFolder::new("locked");
    let path = folder.path().join("queue.db");
    let store = SqliteStore::builder(&path)
        .busy_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let kept = store.enqueue(&task(1)).unwrap().id;
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE;").unwrap();
    let error = store.enqueue(&task(2)).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Busy, "{error}");
    let said = error.to_string();
    assert!(
        said.contains(&path.display().to_string()) && said.contains("locked"),
        "{said}"
    );
    holder.execute_batch("COMMIT;").unwrap();
    let after = store.enqueue(&task(3)).unwrap().id;
    assert!(store.get(kept).unwrap().is_some());
    assert!(store.get(after).unwrap().is_some());
    assert_eq!(
        store.queues().unwrap()[0].ready,
        2,
        "the refused enqueue stored nothing"
    );
}

/// The child's side of the checks below; a no-op in a normal run.
#[test]
fn child_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let path = std::env::var(FILE).unwrap();
    match role.as_str() {
        "enqueue-forever" => enqueue_forever(Path::new(&path)),
        "fill-the-disk" => fill_the_disk(Path::new(&path)),
        other => panic!("unknown role {other}"),
    }
}

/// Enqueues one task after another, in batches of 1 to 8, and prints each batch's
/// acknowledged ids (`acked 4 5 6`) once its enqueue has returned; beside it, a worker's
/// loop reserves and completes what was enqueued; runs until killed.
fn enqueue_forever(path: &Path) {
    let worker = SqliteStore::open(path).unwrap();
    std::thread::spawn(move || {
        loop {
            let leases = worker
                .reserve("w", &["default"], 4, Duration::from_secs(60))
                .unwrap();
            let ended: Vec<_> = leases
                .iter()
                .map(|l| (l.id, l.attempt, plait_queue::Outcome::Succeeded(vec![1])))
                .collect();
            worker.complete(&ended).unwrap();
        }
    });
    let store = SqliteStore::open(path).unwrap();
    let mut n = 0_usize;
    loop {
        let batch: Vec<NewTask> = (0..1 + n % 8).map(|i| task(n + i)).collect();
        n += batch.len();
        let done = store.enqueue_all(&batch).unwrap();
        let ids: Vec<String> = done.iter().map(|e| e.id.to_string()).collect();
        println!("acked {}", ids.join(" "));
    }
}

/// Enqueues 4 KiB tasks until the disk is full; checks the error names the file and that
/// everything acknowledged reads back from a fresh connection; prints the count.
fn fill_the_disk(path: &Path) {
    let store = SqliteStore::open(path).unwrap();
    let mut acknowledged = Vec::new();
    let error = loop {
        let payload = vec![b'x'; 4096];
        match store.enqueue(&NewTask::new(payload)) {
            Ok(done) => acknowledged.push(done.id),
            Err(error) => break error,
        }
        assert!(acknowledged.len() < 100_000, "the disk never filled");
    };
    assert_eq!(error.kind(), ErrorKind::DiskFull, "{error}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
    drop(store);
    let reopened = SqliteStore::open(path).unwrap();
    for id in &acknowledged {
        assert!(reopened.get(*id).unwrap().is_some(), "task {id} was lost");
    }
    println!("acknowledged {} before: {error}", acknowledged.len());
}

fn child(role: &str, path: &Path) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(FILE, path);
    command
}

#[test]
fn every_acknowledged_enqueue_survives_kill_9_of_every_writer_again_and_again() {
    const KILLS: usize = 50;
    let folder = TempFolder::new("kill9");
    let path = folder.path().join("queue.db");
    let mut acknowledged: HashSet<TaskId> = HashSet::new();
    for round in 0..KILLS {
        let mut writer = child("enqueue-forever", &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill it at a different point of its run each round.
        let mut output = BufReader::new(writer.stdout.take().unwrap());
        let started = Instant::now();
        let wanted = 5 + (round * 37) % 60;
        let mut batches = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if output.read_line(&mut line).unwrap() == 0 {
                break;
            }
            // Only whole lines count: the kill may cut the last one short.
            if let Some(ids) = line
                .strip_prefix("acked ")
                .and_then(|l| l.strip_suffix('\n'))
            {
                acknowledged.extend(ids.split(' ').map(|id| id.parse::<TaskId>().unwrap()));
                batches += 1;
                if batches == wanted {
                    writer.kill().unwrap();
                }
            }
        }
        writer.wait().unwrap();
        assert!(started.elapsed() < Duration::from_secs(60));
        let store = SqliteStore::open(&path).unwrap();
        let stats = store.queues().unwrap();
        let total: u64 = stats
            .iter()
            .map(|q| q.ready + q.running + q.succeeded)
            .sum();
        assert!(total >= acknowledged.len() as u64, "{stats:?}");
        for id in &acknowledged {
            assert!(
                store.get(*id).unwrap().is_some(),
                "round {round}: task {id} was lost"
            );
        }
    }
    assert!(acknowledged.len() > KILLS * 5);
}

#[test]
fn a_full_disk_is_named_and_nothing_acknowledged_is_lost() {
    // A small tmpfs of our own, in a user and mount namespace (no root needed, and
    // nothing is left mounted): the child fills it, then checks what it was told.
    let folder = TempFolder::new("full");
    let mount = folder.path().join("small");
    std::fs::create_dir_all(&mount).unwrap();
    let test = std::env::current_exe().unwrap();
    let output = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(
            "mount -t tmpfs -o size=1m plait-queue-test \"$1\" && \
             exec \"$2\" --exact child_role --nocapture --test-threads=1",
        )
        .arg("sh")
        .arg(&mount)
        .arg(&test)
        .env(ROLE, "fill-the-disk")
        .env(FILE, mount.join("queue.db"))
        .output()
        .expect("unshare(1) runs: util-linux is installed");
    let mut said = String::from_utf8_lossy(&output.stdout).into_owned();
    (&output.stderr[..]).read_to_string(&mut said).unwrap();
    assert!(
        output.status.success(),
        "the child failed (it needs user namespaces to mount a small tmpfs): {said}"
    );
    assert!(
        said.contains("acknowledged") && said.contains("disk is full"),
        "{said}"
    );
}

/// Workers started together on a new file race to set it up; every one of them opens it.
#[test]
fn many_handles_opening_a_new_file_at_once_all_open_it() {
    for round in 0..20 {
        let folder = TempFolder::new(&format!("race-{round}"));
        let path = folder.path().join("queue.db");
        let start = std::sync::Arc::new(std::sync::Barrier::new(8));
        let openers: Vec<_> = (0..8)
            .map(|_| {
                let (path, start) = (path.clone(), std::sync::Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    SqliteStore::open(&path).map(|_| ())
                })
            })
            .collect();
        for opener in openers {
            if let Err(error) = opener.join().unwrap() {
                panic!("round {round}: {error}");
            }
        }
    }
}
