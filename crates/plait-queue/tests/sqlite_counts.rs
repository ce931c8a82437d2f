//! The embedded store counts its tasks by queue and state with triggers, so that
//! `plait status` answers at once however long the queues. Whatever happens to the tasks,
//! those counts must equal a count of the tasks themselves: checked here against a full
//! scan, after random sequences of everything a store does.

mod common;

use std::time::Duration;

use common::TempFolder;
use plait_queue::{
    Failure, FailureKind, Lease, ManualClock, NewTask, Outcome, Payload, QueueStats, RetryPolicy,
    SqliteStore, Store, TaskId,
};
use proptest::prelude::*;

const QUEUES: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Debug)]
enum Op {
    Enqueue {
        queue: usize,
        delay_s: Option<u8>,
        ttl_s: u8,
    },
    Reserve {
        queue: usize,
        max: usize,
    },
    Complete {
        pick: usize,
        how: u8,
    },
    Cancel {
        pick: usize,
    },
    Advance {
        s: u16,
    },
    Purge {
        queue: Option<usize>,
    },
    Expire,
    RequeueDead,
    Reclaim,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3_usize, proptest::option::of(1..100_u8), 0..50_u8)
            .prop_map(|(queue, delay_s, ttl_s)| Op::Enqueue { queue, delay_s, ttl_s }),
        3 => (0..3_usize, 1..4_usize).prop_map(|(queue, max)| Op::Reserve { queue, max }),
        3 => (any::<usize>(), 0..5_u8).prop_map(|(pick, how)| Op::Complete { pick, how }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        2 => (1..120_u16).prop_map(|s| Op::Advance { s }),
        1 => proptest::option::of(0..3_usize).prop_map(|queue| Op::Purge { queue }),
        1 => Just(Op::Expire),
        1 => Just(Op::RequeueDead),
        1 => Just(Op::Reclaim),
    ]
}

/// The counts by a full scan of the tasks, as the store once computed them.
fn scanned(path: &std::path::Path, now: i64) -> Vec<QueueStats> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut statement = conn
        .prepare(
            "SELECT queue,
                    sum(state = 0 AND ready_at <= ?1), sum(state = 0 AND ready_at > ?1),
                    sum(state = 1), sum(state = 2), sum(state = 3), sum(state = 4)
               FROM tasks GROUP BY queue ORDER BY queue",
        )
        .unwrap();
    statement
        .query_map([now], |row| {
            let mut stats = QueueStats::default();
            stats.queue = row.get(0)?;
            let count = |i| row.get::<_, i64>(i).map(|n| u64::try_from(n).unwrap());
            stats.ready = count(1)?;
            stats.scheduled = count(2)?;
            stats.running = count(3)?;
            stats.succeeded = count(4)?;
            stats.dead = count(5)?;
            stats.cancelled = count(6)?;
            Ok(stats)
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn outcome(how: u8) -> Outcome {
    let failure = |kind| Failure::new(kind, "from the test");
    match how {
        0 => Outcome::Succeeded(b"1".to_vec()),
        1 => Outcome::Failed {
            failure: failure(FailureKind::Failed),
            retry: true,
        },
        2 => Outcome::Crashed(failure(FailureKind::WorkerLost)),
        3 => Outcome::Rejected(failure(FailureKind::UnknownTask)),
        _ => Outcome::Released,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_kept_counts_equal_a_scan_of_the_tasks(ops in proptest::collection::vec(op(), 1..80)) {
        let folder = TempFolder::new("counts");
        let path = folder.path().join("q.db");
        let clock = ManualClock::new(1_700_000_000_000);
        let store = SqliteStore::builder(&path).clock(clock.clone()).build().unwrap();
        let mut leases: Vec<Lease> = Vec::new();
        let mut ids: Vec<TaskId> = Vec::new();
        for op in ops {
            match op {
                Op::Enqueue { queue, delay_s, ttl_s } => {
                    let mut task = NewTask::new(Payload::command(["true"]).encode())
                        .queue(QUEUES[queue])
                        .retry(RetryPolicy { max_retries: 1, crash_budget: 1, ..RetryPolicy::default() })
                        .result_ttl(Duration::from_secs(ttl_s.into()));
                    if let Some(delay) = delay_s {
                        task = task.countdown(Duration::from_secs(delay.into()));
                    }
                    ids.push(store.enqueue(&task).unwrap().id);
                }
                Op::Reserve { queue, max } => {
                    leases.extend(
                        store.reserve("w", &[QUEUES[queue]], max, Duration::from_secs(30)).unwrap(),
                    );
                }
                Op::Complete { pick, how } => {
                    if !leases.is_empty() {
                        let lease = leases.swap_remove(pick % leases.len());
                        store.complete(&[(lease.id, lease.attempt, outcome(how))]).unwrap();
                    }
                }
                Op::Cancel { pick } => {
                    if !ids.is_empty() {
                        let _ = store.cancel(ids[pick % ids.len()]);
                    }
                }
                Op::Advance { s } => clock.advance(Duration::from_secs(s.into())),
                Op::Purge { queue } => {
                    store.purge(queue.map(|q| QUEUES[q])).unwrap();
                }
                Op::Expire => {
                    store.expire_results().unwrap();
                }
                Op::RequeueDead => {
                    store.requeue_dead(None).unwrap();
                }
                Op::Reclaim => {
                    store.reclaim_expired().unwrap();
                }
            }
            let kept = store.queues().unwrap();
            let truth: Vec<_> = scanned(&path, store.now())
                .into_iter()
                // A queue whose tasks are all gone is not listed.
                .filter(|q| q.ready + q.scheduled + q.running + q.succeeded + q.dead + q.cancelled > 0)
                .collect();
            prop_assert_eq!(kept, truth);
        }
    }
}
