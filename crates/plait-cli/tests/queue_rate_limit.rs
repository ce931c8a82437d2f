//! A rate limit holds across workers: two `plait worker` processes, in folders of their
//! own, on one Redis, with `--rate-limit sh=4/s`, start the `sh` tasks no faster than the
//! one token bucket they share allows; the rest wait in the queue, uncharged.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{folder, forget_redis_namespace, plait_in, redis_url};
use plait_queue::{NewTask, Payload, RedisStore, State, Store};

fn worker(dir: &Path, namespace: &str) -> Child {
    plait_in(dir, Some((&redis_url(), namespace)))
        .args(["worker", "--concurrency", "4", "--rate-limit", "sh=4/s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn two_workers_share_one_rate_limit() {
    if !common::redis_answers() {
        return;
    }
    const TASKS: usize = 12;
    let namespace = format!("plait-test-rate-{}", std::process::id());
    let base = folder("rate-limit");
    let starts = base.join("starts");
    let store = RedisStore::builder(redis_url())
        .namespace(namespace.clone())
        .build()
        .unwrap_or_else(|e| panic!("the Redis tests need a server: {e}"));
    let line = format!("date +%s%N >> '{}'", starts.display());
    let batch: Vec<NewTask> = (0..TASKS)
        .map(|_| NewTask::new(Payload::command(["sh", "-c", &line]).encode()))
        .collect();
    let ids: Vec<_> = store
        .enqueue_all(&batch)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let workers: Vec<Child> = ["a", "b"]
        .iter()
        .map(|host| {
            let dir = base.join(host);
            std::fs::create_dir_all(&dir).unwrap();
            worker(&dir, &namespace)
        })
        .collect();
    let done = store.wait_all(&ids, Duration::from_secs(60)).unwrap();
    assert!(done.iter().all(|t| t.state == State::Succeeded), "{done:?}");
    assert!(
        done.iter().all(|t| t.failures == 0 && t.crashes == 0),
        "waiting for a token is not charged: {done:?}"
    );
    let mut at: Vec<u64> = std::fs::read_to_string(&starts)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    at.sort_unstable();
    assert_eq!(at.len(), TASKS);
    // A bucket of 4 that gains 4 a second: the (n+1)th start comes no sooner than
    // (n + 1 - 4) / 4 s after the first (less a little for the clocks' grain).
    for (n, started) in at.iter().enumerate().skip(4) {
        let after = Duration::from_nanos(started - at[0]);
        let earliest = Duration::from_millis(250 * (n as u64 + 1 - 4));
        assert!(
            after + Duration::from_millis(60) >= earliest,
            "start {} came {after:?} after the first, before {earliest:?}",
            n + 1
        );
    }
    let mut deferred = 0;
    for worker in workers {
        let pid = i32::try_from(worker.id()).unwrap();
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let said = String::from_utf8_lossy(&worker.wait_with_output().unwrap().stderr).into_owned();
        deferred += said
            .split(" deferred by rate limits")
            .next()
            .and_then(|head| head.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{said}"));
    }
    assert!(deferred > 0, "some tasks waited for a token");
    forget_redis_namespace(&namespace);
}
