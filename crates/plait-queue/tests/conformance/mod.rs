//! The conformance suite: what every [`Store`] backend must do, written once. A backend's
//! test file makes a [`Fixture`] and invokes [`conformance_suite!`] with it, which makes one
//! `#[test]` per check below.
//!
//! Time is a [`ManualClock`]: leases run out, delays pass and results expire when a check
//! moves the clock, so no check waits for real time to pass.

#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use plait_queue::{
    Beat, Cancel, Completion, ErrorKind, Failure, FailureKind, ManualClock, NewTask, Outcome,
    Payload, QueueError, RateLimit, RetryPolicy, State, Store, TaskId, WorkerInfo, WorkerState,
};

/// One store for a check: its clock, and a way to open more handles on the same storage
/// (as other processes would).
pub(crate) struct Fixture {
    pub(crate) clock: ManualClock,
    open: Box<dyn Fn() -> Arc<dyn Store> + Send + Sync>,
    /// Kept alive for the check's length (a temporary folder, a server).
    _guard: Box<dyn Send + Sync>,
}

impl Fixture {
    pub(crate) fn new(
        clock: ManualClock,
        open: impl Fn() -> Arc<dyn Store> + Send + Sync + 'static,
        guard: impl Send + Sync + 'static,
    ) -> Fixture {
        Fixture {
            clock,
            open: Box::new(open),
            _guard: Box::new(guard),
        }
    }

    /// A new handle on the fixture's storage.
    pub(crate) fn store(&self) -> Arc<dyn Store> {
        (self.open)()
    }
}

/// One `#[test]` per check, each on a fresh fixture from `$fixture()` (an `Option`).
macro_rules! conformance_suite {
    ($fixture:path) => {
        conformance_suite!(@each $fixture;
            a_task_is_handed_out_once_and_its_result_kept,
            higher_priority_then_older_tasks_go_first,
            queues_are_kept_apart,
            a_delayed_task_waits_without_a_lease_and_runs_once_however_long_the_wait,
            an_idempotency_key_returns_the_first_task,
            an_expired_lease_is_reclaimed_as_a_crash_and_the_old_attempt_is_fenced,
            heartbeats_keep_a_lease,
            failures_are_retried_with_backoff_then_dead_with_the_reason,
            a_failure_that_is_not_retried_is_dead_at_once,
            crashes_are_counted_apart_from_retries,
            a_rejected_task_is_dead_at_its_first_attempt,
            a_released_task_is_handed_out_again_uncharged,
            cancelling_a_waiting_task_means_it_never_runs,
            cancelling_a_running_task_reaches_its_worker_at_the_heartbeat,
            a_second_completion_is_fenced,
            a_result_over_the_limit_fails_its_task_saying_so,
            results_expire_after_their_ttl,
            requeued_dead_tasks_get_fresh_budgets,
            purge_deletes_waiting_tasks_only,
            bad_input_is_refused_and_nothing_is_stored,
            a_waiter_for_a_result_is_woken_by_another_handle,
            waiting_for_many_returns_each_in_order,
            an_idle_worker_is_woken_by_an_enqueue_from_another_handle,
            queues_are_counted_by_state,
            concurrent_workers_never_share_a_task,
            ids_are_never_reused,
            workers_are_registered_renewed_and_stopped,
            workers_gone_for_a_day_are_forgotten,
            a_rate_limits_tokens_are_shared_by_every_handle,
            a_deferred_task_waits_uncharged,
            a_released_task_waits_no_backoff_beside_a_retried_one,
            running_and_retrying_tasks_are_listed,
            completing_and_reserving_in_one_call_does_both_in_order,
        );
    };
    (@each $fixture:path; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                // A fixture is `None` where what it needs is missing (and the test may skip).
                if let Some(fixture) = $fixture() {
                    conformance::$check(&fixture);
                }
            }
        )*
    };
}
pub(crate) use conformance_suite;

const LEASE: Duration = Duration::from_secs(30);

fn command(word: &str) -> NewTask {
    NewTask::new(Payload::command(["echo", word]).encode())
}

fn ok(bytes: &str) -> Outcome {
    Outcome::Succeeded(bytes.as_bytes().to_vec())
}

fn failed(message: &str) -> Outcome {
    Outcome::Failed {
        failure: Failure::new(FailureKind::Failed, message),
        retry: true,
    }
}

fn crashed() -> Outcome {
    Outcome::Crashed(Failure::new(FailureKind::WorkerLost, "killed by signal 9"))
}

fn state_of(store: &dyn Store, id: TaskId) -> State {
    store.get(id).unwrap().expect("the task is kept").state
}

pub(crate) fn a_task_is_handed_out_once_and_its_result_kept(f: &Fixture) {
    let store = f.store();
    let id = store.enqueue(&command("hi")).unwrap().id;
    assert_eq!(state_of(&*store, id), State::Queued);
    let leases = store.reserve("w1", &["default"], 10, LEASE).unwrap();
    assert_eq!(leases.len(), 1);
    let lease = &leases[0];
    assert_eq!((lease.id, lease.attempt), (id, 1));
    assert_eq!(
        Payload::decode(&lease.payload).unwrap(),
        Payload::command(["echo", "hi"])
    );
    assert!(
        store
            .reserve("w2", &["default"], 10, LEASE)
            .unwrap()
            .is_empty()
    );
    let task = store.get(id).unwrap().unwrap();
    assert_eq!(task.state, State::Running);
    assert_eq!(task.worker.as_deref(), Some("w1"));
    assert_eq!(
        store.complete(&[(id, 1, ok("hi\n"))]).unwrap(),
        [Completion::Recorded(State::Succeeded)]
    );
    let task = store.get(id).unwrap().unwrap();
    assert_eq!(task.state, State::Succeeded);
    assert_eq!(task.result.as_deref(), Some(&b"hi\n"[..]));
    assert_eq!((task.attempts, task.failures, task.crashes), (1, 0, 0));
    assert!(
        store
            .reserve("w2", &["default"], 10, LEASE)
            .unwrap()
            .is_empty()
    );
}

pub(crate) fn higher_priority_then_older_tasks_go_first(f: &Fixture) {
    let store = f.store();
    let a = store.enqueue(&command("a")).unwrap().id;
    f.clock.advance(Duration::from_millis(1));
    let b = store.enqueue(&command("b").priority(5)).unwrap().id;
    f.clock.advance(Duration::from_millis(1));
    let c = store.enqueue(&command("c")).unwrap().id;
    f.clock.advance(Duration::from_millis(1));
    let d = store.enqueue(&command("d").priority(5)).unwrap().id;
    let first: Vec<TaskId> = store
        .reserve("w", &["default"], 3, LEASE)
        .unwrap()
        .iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(first, [b, d, a]);
    let rest: Vec<TaskId> = store
        .reserve("w", &["default"], 3, LEASE)
        .unwrap()
        .iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(rest, [c]);
}

pub(crate) fn queues_are_kept_apart(f: &Fixture) {
    let store = f.store();
    let mail = store.enqueue(&command("m").queue("mail")).unwrap().id;
    let _video = store.enqueue(&command("v").queue("video")).unwrap().id;
    let leases = store.reserve("w", &["mail", "other"], 10, LEASE).unwrap();
    assert_eq!(leases.iter().map(|l| l.id).collect::<Vec<_>>(), [mail]);
    assert_eq!(leases[0].queue, "mail");
    assert_eq!(store.reserve("w", &["video"], 10, LEASE).unwrap().len(), 1);
}

pub(crate) fn a_delayed_task_waits_without_a_lease_and_runs_once_however_long_the_wait(
    f: &Fixture,
) {
    let store = f.store();
    let ten_days = Duration::from_secs(10 * 24 * 3600);
    let id = store
        .enqueue(&command("later").countdown(ten_days))
        .unwrap()
        .id;
    assert!(
        store
            .reserve("w", &["default"], 10, LEASE)
            .unwrap()
            .is_empty()
    );
    f.clock.advance(ten_days - Duration::from_secs(1));
    assert!(
        store
            .reserve("w", &["default"], 10, LEASE)
            .unwrap()
            .is_empty()
    );
    assert_eq!(state_of(&*store, id), State::Queued);
    f.clock.advance(Duration::from_secs(1));
    let leases = store.reserve("w", &["default"], 10, LEASE).unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].attempt, 1, "the wait cost no attempt");
    store.complete(&[(id, 1, ok(""))]).unwrap();
    f.clock.advance(ten_days);
    assert!(
        store
            .reserve("w", &["default"], 10, LEASE)
            .unwrap()
            .is_empty()
    );
    assert_eq!(state_of(&*store, id), State::Succeeded);
}

pub(crate) fn an_idempotency_key_returns_the_first_task(f: &Fixture) {
    let store = f.store();
    let first = store.enqueue(&command("a").key("order-17")).unwrap();
    let again = store.enqueue(&command("b").key("order-17")).unwrap();
    assert!(first.created);
    assert!(!again.created);
    assert_eq!(first.id, again.id);
    let other = store.enqueue(&command("c").key("order-18")).unwrap();
    assert!(other.created);
    assert_ne!(other.id, first.id);
    let leases = store.reserve("w", &["default"], 10, LEASE).unwrap();
    assert_eq!(leases.len(), 2, "one task per key");
    let kept = leases.iter().find(|l| l.id == first.id).unwrap();
    assert_eq!(
        Payload::decode(&kept.payload).unwrap(),
        Payload::command(["echo", "a"])
    );
}

pub(crate) fn an_expired_lease_is_reclaimed_as_a_crash_and_the_old_attempt_is_fenced(f: &Fixture) {
    let store = f.store();
    let id = store.enqueue(&command("x")).unwrap().id;
    let old = store
        .reserve("w1", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    f.clock.advance(LEASE + Duration::from_secs(1));
    let new = store
        .reserve("w2", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    assert_eq!((new.id, new.attempt, new.crashes), (id, 2, 1));
    let task = store.get(id).unwrap().unwrap();
    assert_eq!(
        task.error.as_ref().map(|e| e.kind),
        Some(FailureKind::LeaseExpired)
    );
    assert!(task.error.unwrap().message.contains("w1"));
    // The first worker comes back: its heartbeat and its completion change nothing.
    assert_eq!(
        store.heartbeat(&[(id, old.attempt)], LEASE).unwrap(),
        [Beat::Lost]
    );
    assert_eq!(
        store.complete(&[(id, old.attempt, ok("stale"))]).unwrap(),
        [Completion::Fenced]
    );
    assert_eq!(state_of(&*store, id), State::Running);
    assert_eq!(
        store.complete(&[(id, new.attempt, ok("fresh"))]).unwrap(),
        [Completion::Recorded(State::Succeeded)]
    );
    let task = store.get(id).unwrap().unwrap();
    assert_eq!(task.result.as_deref(), Some(&b"fresh"[..]));
    assert_eq!(task.worker.as_deref(), Some("w2"));
}

pub(crate) fn heartbeats_keep_a_lease(f: &Fixture) {
    let store = f.store();
    let id = store.enqueue(&command("long")).unwrap().id;
    let lease = store
        .reserve("w1", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    for _ in 0..10 {
        f.clock.advance(LEASE * 2 / 3);
        assert_eq!(
            store.heartbeat(&[(id, lease.attempt)], LEASE).unwrap(),
            [Beat::Renewed]
        );
        assert!(
            store
                .reserve("w2", &["default"], 1, LEASE)
                .unwrap()
                .is_empty()
        );
    }
    assert_eq!(store.reclaim_expired().unwrap(), 0);
    let done = store.complete(&[(id, lease.attempt, ok(""))]).unwrap();
    assert_eq!(done, [Completion::Recorded(State::Succeeded)]);
    assert_eq!(store.get(id).unwrap().unwrap().crashes, 0);
}

pub(crate) fn failures_are_retried_with_backoff_then_dead_with_the_reason(f: &Fixture) {
    let store = f.store();
    let policy = RetryPolicy {
        max_retries: 2,
        backoff: Duration::from_secs(10),
        max_backoff: Duration::from_secs(60),
        crash_budget: 3,
    };
    let id = store.enqueue(&command("flaky").retry(policy)).unwrap().id;
    for retry in 1..=2 {
        let lease = store
            .reserve("w", &["default"], 1, LEASE)
            .unwrap()
            .remove(0);
        assert_eq!(lease.attempt, retry);
        let done = store
            .complete(&[(id, lease.attempt, failed("boom"))])
            .unwrap();
        assert_eq!(done, [Completion::Recorded(State::Queued)]);
        let wait = policy.backoff_before(id, retry);
        assert!(wait >= Duration::from_secs(5), "{wait:?}");
        f.clock.advance(wait - Duration::from_millis(1));
        assert!(
            store
                .reserve("w", &["default"], 1, LEASE)
                .unwrap()
                .is_empty(),
            "in backoff"
        );
        f.clock.advance(Duration::from_millis(1));
    }
    let lease = store
        .reserve("w", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    assert_eq!(lease.attempt, 3);
    assert_eq!(
        store.complete(&[(id, 3, failed("boom again"))]).unwrap(),
        [Completion::Recorded(State::Dead)]
    );
    let task = store.get(id).unwrap().unwrap();
    assert_eq!(
        (task.state, task.failures, task.crashes),
        (State::Dead, 3, 0)
    );
    let reason = task.reason.unwrap();
    assert!(
        reason.contains("failed 3 times") && reason.contains("boom again"),
        "{reason}"
    );
    let dead = store.dead(None, 10).unwrap();
    assert_eq!(dead.iter().map(|t| t.id).collect::<Vec<_>>(), [id]);
}

pub(crate) fn a_failure_that_is_not_retried_is_dead_at_once(f: &Fixture) {
    let store = f.store();
    let id = store.enqueue(&command("x")).unwrap().id;
    let lease = store
        .reserve("w", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    let outcome = Outcome::Failed {
        failure: Failure::new(FailureKind::Failed, "invalid input"),
        retry: false,
    };
    assert_eq!(
        store.complete(&[(id, lease.attempt, outcome)]).unwrap(),
        [Completion::Recorded(State::Dead)]
    );
    let reason = store.get(id).unwrap().unwrap().reason.unwrap();
    assert!(
        reason.contains("not retried") && reason.contains("invalid input"),
        "{reason}"
    );
}

pub(crate) fn crashes_are_counted_apart_from_retries(f: &Fixture) {
    let store = f.store();
    let policy = RetryPolicy {
        max_retries: 5,
        backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(1),
        crash_budget: 2,
    };
    let id = store.enqueue(&command("x").retry(policy)).unwrap().id;
    let first = store
        .reserve("w", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    assert_eq!(
        store.complete(&[(id, first.attempt, crashed())]).unwrap(),
        [Completion::Recorded(State::Queued)]
    );
    // A crash is requeued at once, without a backoff.
    let second = store
        .reserve("w", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    assert_eq!((second.failures, second.crashes), (0, 1));
    store
        .complete(&[(id, second.attempt, failed("boom"))])
        .unwrap();
    f.clock.advance(Duration::from_secs(1));
    let third = store
        .reserve("w", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    assert_eq!((third.failures, third.crashes), (1, 1));
    assert_eq!(
        store.complete(&[(id, third.attempt, crashed())]).unwrap(),
        [Completion::Recorded(State::Dead)]
    );
    let task = store.get(id).unwrap().unwrap();
    assert_eq!((task.failures, task.crashes), (1, 2));
    let reason = task.reason.unwrap();
    assert!(
        reason.contains("crash budget 2") && reason.contains("signal 9"),
        "{reason}"
    );
}

pub(crate) fn a_rejected_task_is_dead_at_its_first_attempt(f: &Fixture) {
    let store = f.store();
    let id = store
        .enqueue(&NewTask::new(b"\x00not json".to_vec()))
        .unwrap()
        .id;
    let lease = store
        .reserve("w", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    let failure = Payload::decode(&lease.payload).unwrap_err();
    assert_eq!(
        store
            .complete(&[(id, lease.attempt, Outcome::Rejected(failure))])
            .unwrap(),
        [Completion::Recorded(State::Dead)]
    );
    let task = store.get(id).unwrap().unwrap();
    assert_eq!(task.attempts, 1);
    assert_eq!(task.error.map(|e| e.kind), Some(FailureKind::BadPayload));
    assert!(task.reason.unwrap().contains("not JSON"));
    assert_eq!(
        task.payload, b"\x00not json",
        "the payload is kept for a look"
    );
}

pub(crate) fn a_released_task_is_handed_out_again_uncharged(f: &Fixture) {
    let store = f.store();
    let id = store.enqueue(&command("x")).unwrap().id;
    let lease = store
        .reserve("w1", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    assert_eq!(
        store
            .complete(&[(id, lease.attempt, Outcome::Released)])
            .unwrap(),
        [Completion::Recorded(State::Queued)]
    );
    let again = store
        .reserve("w2", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    assert_eq!((again.attempt, again.failures, again.crashes), (2, 0, 0));
}

pub(crate) fn cancelling_a_waiting_task_means_it_never_runs(f: &Fixture) {
    let store = f.store();
    let id = store
        .enqueue(&command("x").countdown(Duration::from_secs(60)))
        .unwrap()
        .id;
    assert_eq!(store.cancel(id).unwrap(), Cancel::Cancelled);
    f.clock.advance(Duration::from_secs(120));
    assert!(
        store
            .reserve("w", &["default"], 10, LEASE)
            .unwrap()
            .is_empty()
    );
    let task = store.get(id).unwrap().unwrap();
    assert_eq!(task.state, State::Cancelled);
    assert_eq!(task.error.map(|e| e.kind), Some(FailureKind::Cancelled));
    assert_eq!(
        store.cancel(id).unwrap(),
        Cancel::AlreadyFinished(State::Cancelled)
    );
    let missing = store.cancel(TaskId::new(u64::from(u32::MAX))).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
}

pub(crate) fn cancelling_a_running_task_reaches_its_worker_at_the_heartbeat(f: &Fixture) {
    let store = f.store();
    let id = store.enqueue(&command("x")).unwrap().id;
    let lease = store
        .reserve("w", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    assert_eq!(store.cancel(id).unwrap(), Cancel::Requested);
    assert!(store.get(id).unwrap().unwrap().cancel_requested);
    assert_eq!(
        store.heartbeat(&[(id, lease.attempt)], LEASE).unwrap(),
        [Beat::CancelRequested]
    );
    assert_eq!(
        store
            .complete(&[(id, lease.attempt, Outcome::Cancelled)])
            .unwrap(),
        [Completion::Recorded(State::Cancelled)]
    );
    assert_eq!(state_of(&*store, id), State::Cancelled);
}

pub(crate) fn a_second_completion_is_fenced(f: &Fixture) {
    let store = f.store();
    let id = store.enqueue(&command("x")).unwrap().id;
    let lease = store
        .reserve("w", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    let first = store.complete(&[(id, lease.attempt, ok("one"))]).unwrap();
    assert_eq!(first, [Completion::Recorded(State::Succeeded)]);
    let second = store
        .complete(&[(id, lease.attempt, failed("two"))])
        .unwrap();
    assert_eq!(second, [Completion::Fenced]);
    let task = store.get(id).unwrap().unwrap();
    assert_eq!(
        (task.state, task.result.as_deref()),
        (State::Succeeded, Some(&b"one"[..]))
    );
}

pub(crate) fn completing_and_reserving_in_one_call_does_both_in_order(f: &Fixture) {
    let store = f.store();
    let ids: Vec<TaskId> = (0..4)
        .map(|i| store.enqueue(&command(&i.to_string())).unwrap().id)
        .collect();
    let other = store.enqueue(&command("other").queue("other")).unwrap().id;
    let held = store.reserve("w", &["default"], 2, LEASE).unwrap();
    assert_eq!(held.len(), 2);
    let ended = [
        (held[0].id, held[0].attempt, ok("done")),
        // Not the current attempt: fenced, and nothing else changes.
        (held[1].id, held[1].attempt + 1, ok("late")),
    ];
    // Room for four: the rest of `default` (two), then `other` (one).
    let (done, leases) = store
        .complete_and_reserve(&ended, "w", &["default", "other"], 4, LEASE)
        .unwrap();
    assert_eq!(
        done,
        [Completion::Recorded(State::Succeeded), Completion::Fenced]
    );
    let handed: Vec<TaskId> = leases.unwrap().iter().map(|lease| lease.id).collect();
    assert_eq!(handed, [ids[2], ids[3], other]);
    let task = store.get(held[0].id).unwrap().unwrap();
    assert_eq!(task.result.as_deref(), Some(&b"done"[..]));
    assert_eq!(state_of(&*store, held[1].id), State::Running);

    // A failure that is retried (its wait is worked out from the failures so far), with
    // nothing left to hand out.
    let (done, leases) = store
        .complete_and_reserve(
            &[(ids[2], 1, failed("again"))],
            "w",
            &["default", "other"],
            4,
            LEASE,
        )
        .unwrap();
    assert_eq!(done, [Completion::Recorded(State::Queued)]);
    assert_eq!(leases.unwrap(), []);
    assert_eq!(state_of(&*store, ids[2]), State::Queued);
}

pub(crate) fn a_result_over_the_limit_fails_its_task_saying_so(f: &Fixture) {
    let store = f.store();
    let id = store.enqueue(&command("big")).unwrap().id;
    let lease = store
        .reserve("w", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    let big = Outcome::Succeeded(vec![b'x'; plait_queue::DEFAULT_RESULT_LIMIT + 1]);
    assert_eq!(
        store.complete(&[(id, lease.attempt, big)]).unwrap(),
        [Completion::Recorded(State::Dead)],
        "not retried: the next attempt would make the same result"
    );
    let task = store.get(id).unwrap().unwrap();
    assert_eq!(task.result, None);
    assert_eq!(
        task.error.as_ref().map(|e| e.kind),
        Some(FailureKind::ResultTooLarge)
    );
    let reason = task.reason.unwrap();
    assert!(
        reason.contains(&format!("{} bytes", plait_queue::DEFAULT_RESULT_LIMIT + 1))
            && reason.contains("result_limit"),
        "{reason}"
    );
}

pub(crate) fn results_expire_after_their_ttl(f: &Fixture) {
    let store = f.store();
    let ttl = Duration::from_secs(3600);
    let id = store
        .enqueue(&command("x").key("k").result_ttl(ttl))
        .unwrap()
        .id;
    let lease = store
        .reserve("w", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    store.complete(&[(id, lease.attempt, ok("r"))]).unwrap();
    f.clock.advance(ttl - Duration::from_secs(1));
    assert_eq!(store.expire_results().unwrap(), 0);
    assert!(store.get(id).unwrap().is_some());
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(store.expire_results().unwrap(), 1);
    assert!(store.get(id).unwrap().is_none());
    assert_eq!(
        store.wait_finished(id, Duration::ZERO).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // The key went with the task.
    assert!(store.enqueue(&command("y").key("k")).unwrap().created);
}

pub(crate) fn requeued_dead_tasks_get_fresh_budgets(f: &Fixture) {
    let store = f.store();
    let policy = RetryPolicy {
        crash_budget: 1,
        ..RetryPolicy::default()
    };
    let id = store.enqueue(&command("x").retry(policy)).unwrap().id;
    let lease = store
        .reserve("w", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    store.complete(&[(id, lease.attempt, crashed())]).unwrap();
    assert_eq!(state_of(&*store, id), State::Dead);
    assert_eq!(
        store
            .requeue_dead(Some(&[id, TaskId::new(999_999)]))
            .unwrap(),
        1
    );
    let again = store
        .reserve("w", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    assert_eq!((again.id, again.attempt, again.crashes), (id, 2, 0));
    store.complete(&[(id, again.attempt, ok(""))]).unwrap();
    assert_eq!(state_of(&*store, id), State::Succeeded);
    assert_eq!(store.requeue_dead(None).unwrap(), 0);
}

pub(crate) fn purge_deletes_waiting_tasks_only(f: &Fixture) {
    let store = f.store();
    let running = store.enqueue(&command("r")).unwrap().id;
    store.reserve("w", &["default"], 1, LEASE).unwrap();
    let waiting = store.enqueue(&command("w")).unwrap().id;
    let elsewhere = store.enqueue(&command("e").queue("other")).unwrap().id;
    assert_eq!(store.purge(Some("default")).unwrap(), 1);
    assert!(store.get(waiting).unwrap().is_none());
    assert_eq!(state_of(&*store, running), State::Running);
    assert_eq!(state_of(&*store, elsewhere), State::Queued);
    assert_eq!(store.purge(None).unwrap(), 1);
    assert!(store.get(elsewhere).unwrap().is_none());
}

pub(crate) fn bad_input_is_refused_and_nothing_is_stored(f: &Fixture) {
    let store = f.store();
    let bad_name = store.enqueue(&command("x").queue("no spaces")).unwrap_err();
    assert!(
        matches!(bad_name, QueueError::InvalidQueueName { .. }),
        "{bad_name}"
    );
    assert!(bad_name.to_string().contains("\"no spaces\""));
    let big = store
        .enqueue(&NewTask::new(vec![
            b'x';
            plait_queue::DEFAULT_PAYLOAD_LIMIT + 1
        ]))
        .unwrap_err();
    assert!(matches!(big, QueueError::PayloadTooLarge { .. }), "{big}");
    assert!(big.to_string().contains("payload_limit"));
    let key = store.enqueue(&command("x").key("")).unwrap_err();
    assert_eq!(key.kind(), ErrorKind::BadInput);
    // All or none: one bad task in a batch stores none of it.
    let batch = [command("a"), command("b").queue(""), command("c")];
    assert!(store.enqueue_all(&batch).is_err());
    assert!(store.queues().unwrap().is_empty(), "nothing was stored");
}

pub(crate) fn a_waiter_for_a_result_is_woken_by_another_handle(f: &Fixture) {
    let store = f.store();
    let id = store.enqueue(&command("x")).unwrap().id;
    // Not finished: the wait returns the task as it stands when the timeout passes.
    let waited = store.wait_finished(id, Duration::from_millis(20)).unwrap();
    assert_eq!(waited.state, State::Queued);
    let waiter = {
        let store = f.store();
        std::thread::spawn(move || {
            let started = Instant::now();
            let task = store.wait_finished(id, Duration::from_secs(60)).unwrap();
            (task, started.elapsed())
        })
    };
    let worker = f.store();
    let lease = worker
        .reserve("w", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    worker.complete(&[(id, lease.attempt, ok("done"))]).unwrap();
    let (task, took) = waiter.join().unwrap();
    assert_eq!(task.state, State::Succeeded);
    assert!(
        took < Duration::from_secs(10),
        "woken, not timed out: {took:?}"
    );
}

pub(crate) fn waiting_for_many_returns_each_in_order(f: &Fixture) {
    let store = f.store();
    let ids: Vec<TaskId> = (0..3)
        .map(|i| store.enqueue(&command(&i.to_string())).unwrap().id)
        .collect();
    let leases = store.reserve("w", &["default"], 2, LEASE).unwrap();
    for lease in &leases {
        store
            .complete(&[(lease.id, lease.attempt, ok(&lease.id.to_string()))])
            .unwrap();
    }
    // Not all finished: each as it stands when the time is up.
    let now: Vec<State> = store
        .wait_all(&ids, Duration::from_millis(20))
        .unwrap()
        .iter()
        .map(|t| t.state)
        .collect();
    assert_eq!(now, [State::Succeeded, State::Succeeded, State::Queued]);
    let last = ids[2];
    let finisher = {
        let store = f.store();
        std::thread::spawn(move || {
            let lease = store
                .reserve("w", &["default"], 1, LEASE)
                .unwrap()
                .remove(0);
            store
                .complete(&[(last, lease.attempt, ok("last"))])
                .unwrap();
        })
    };
    let all = store.wait_all(&ids, Duration::from_secs(60)).unwrap();
    finisher.join().unwrap();
    assert_eq!(all.iter().map(|t| t.id).collect::<Vec<_>>(), ids);
    assert!(all.iter().all(|t| t.state == State::Succeeded), "{all:?}");
    assert_eq!(all[2].result.as_deref(), Some(&b"last"[..]));
    // One id asked for twice is answered twice.
    let twice = store.wait_all(&[ids[1], ids[1]], Duration::ZERO).unwrap();
    assert_eq!((twice[0].id, twice[1].id), (ids[1], ids[1]));
    let missing = store
        .wait_all(&[ids[0], TaskId::new(u64::from(u32::MAX))], Duration::ZERO)
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
}

pub(crate) fn an_idle_worker_is_woken_by_an_enqueue_from_another_handle(f: &Fixture) {
    let store = f.store();
    let ready = Arc::new(Barrier::new(2));
    let idle = {
        let (store, ready) = (f.store(), Arc::clone(&ready));
        std::thread::spawn(move || {
            ready.wait();
            let started = Instant::now();
            store
                .wait_for_work(&["jobs"], Duration::from_secs(60))
                .unwrap();
            (
                started.elapsed(),
                store.reserve("w", &["jobs"], 1, LEASE).unwrap(),
            )
        })
    };
    ready.wait();
    store.enqueue(&command("x").queue("jobs")).unwrap();
    let (took, leases) = idle.join().unwrap();
    assert!(
        took < Duration::from_secs(10),
        "woken, not timed out: {took:?}"
    );
    assert_eq!(leases.len(), 1);
}

pub(crate) fn queues_are_counted_by_state(f: &Fixture) {
    let store = f.store();
    let ids: Vec<TaskId> = (0..6)
        .map(|i| store.enqueue(&command(&i.to_string())).unwrap().id)
        .collect();
    store
        .enqueue(&command("later").countdown(Duration::from_secs(60)))
        .unwrap();
    store.enqueue(&command("mail").queue("mail")).unwrap();
    let leases = store.reserve("w", &["default"], 4, LEASE).unwrap();
    store.complete(&[(leases[0].id, 1, ok(""))]).unwrap();
    store
        .complete(&[(
            leases[1].id,
            1,
            Outcome::Rejected(Failure::new(FailureKind::UnknownTask, "x")),
        )])
        .unwrap();
    store.cancel(ids[5]).unwrap();
    let stats = store.queues().unwrap();
    assert_eq!(
        stats.iter().map(|q| q.queue.as_str()).collect::<Vec<_>>(),
        ["default", "mail"]
    );
    let default = &stats[0];
    assert_eq!(
        (
            default.ready,
            default.scheduled,
            default.running,
            default.succeeded,
            default.dead,
            default.cancelled
        ),
        (1, 1, 2, 1, 1, 1)
    );
    assert_eq!(stats[1].ready, 1);
}

pub(crate) fn concurrent_workers_never_share_a_task(f: &Fixture) {
    const TASKS: usize = 2_000;
    const WORKERS: usize = 4;
    let store = f.store();
    let batch: Vec<NewTask> = (0..TASKS).map(|i| command(&i.to_string())).collect();
    let enqueued: HashSet<TaskId> = store
        .enqueue_all(&batch)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(enqueued.len(), TASKS);
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let store = f.store();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let leases = store
                        .reserve(&format!("w{w}"), &["default"], 7, LEASE)
                        .unwrap();
                    if leases.is_empty() {
                        return mine;
                    }
                    let ended: Vec<_> = leases.iter().map(|l| (l.id, l.attempt, ok(""))).collect();
                    let done = store.complete(&ended).unwrap();
                    assert!(
                        done.iter()
                            .all(|c| *c == Completion::Recorded(State::Succeeded))
                    );
                    mine.extend(leases.iter().map(|l| l.id));
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for worker in workers {
        for id in worker.join().unwrap() {
            assert!(seen.insert(id), "task {id} was handed out twice");
        }
    }
    assert_eq!(seen, enqueued, "every task ran once");
}

pub(crate) fn ids_are_never_reused(f: &Fixture) {
    let store = f.store();
    let first = store
        .enqueue(&command("x").result_ttl(Duration::ZERO))
        .unwrap()
        .id;
    let lease = store
        .reserve("w", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    store.complete(&[(first, lease.attempt, ok(""))]).unwrap();
    assert_eq!(store.expire_results().unwrap(), 1);
    let second = store.enqueue(&command("y")).unwrap().id;
    assert!(second > first, "{second} after {first}");
}

fn worker(name: &str) -> WorkerInfo {
    WorkerInfo::new(name, vec!["default".into(), "mail".into()], 4, LEASE)
}

pub(crate) fn workers_are_registered_renewed_and_stopped(f: &Fixture) {
    let store = f.store();
    assert!(store.workers().unwrap().is_empty());
    let started = store.now();
    store.worker_seen(&worker("w1")).unwrap();
    f.clock.advance(Duration::from_secs(10));
    let mut busy = worker("w1");
    busy.running = 3;
    busy.succeeded = 5;
    busy.failed = 1;
    busy.durations.record(Duration::from_millis(7));
    busy.durations.record(Duration::from_secs(3));
    store.worker_seen(&busy).unwrap();
    f.clock.advance(Duration::from_secs(1));
    store.worker_seen(&worker("w2")).unwrap();

    let workers = f.store().workers().unwrap();
    let names: Vec<_> = workers.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["w2", "w1"], "the latest started first");
    let w1 = &workers[1];
    assert_eq!(
        (
            w1.started_at,
            w1.seen_at,
            w1.running,
            w1.succeeded,
            w1.failed
        ),
        (started, started + 10_000, 3, 5, 1)
    );
    assert_eq!(w1.queues, ["default", "mail"]);
    assert_eq!(
        w1.durations, busy.durations,
        "the histogram is kept as sent"
    );
    assert_eq!((w1.concurrency, w1.pid), (4, std::process::id()));
    assert_eq!(w1.state(store.now()), WorkerState::Active);

    // Unheard for longer than its lease: lost.
    f.clock.advance(LEASE);
    store.worker_seen(&worker("w2")).unwrap();
    let workers = store.workers().unwrap();
    let state = |name: &str| {
        workers
            .iter()
            .find(|w| w.name == name)
            .unwrap()
            .state(store.now())
    };
    assert_eq!(state("w1"), WorkerState::Lost);
    assert_eq!(state("w2"), WorkerState::Active);

    let mut done = worker("w2");
    done.succeeded = 9;
    done.durations.record(Duration::from_millis(40));
    store.worker_stopped(&done).unwrap();
    let w2 = store.workers().unwrap().remove(0);
    assert_eq!(
        (w2.state(store.now()), w2.running, w2.succeeded),
        (WorkerState::Stopped, 0, 9)
    );
    assert_eq!(w2.durations.count(), 1, "its final histogram");
}

pub(crate) fn workers_gone_for_a_day_are_forgotten(f: &Fixture) {
    let store = f.store();
    store.worker_seen(&worker("stopped")).unwrap();
    store.worker_stopped(&worker("stopped")).unwrap();
    store.worker_seen(&worker("lost")).unwrap();
    f.clock.advance(Duration::from_secs(23 * 3600));
    store.worker_seen(&worker("alive")).unwrap();
    assert_eq!(store.workers().unwrap().len(), 3, "kept for a day");
    f.clock.advance(Duration::from_secs(2 * 3600));
    store.worker_seen(&worker("alive")).unwrap();
    let names: Vec<_> = store
        .workers()
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(names, ["alive"]);
}

pub(crate) fn a_rate_limits_tokens_are_shared_by_every_handle(f: &Fixture) {
    let (one, two) = (f.store(), f.store());
    let limit = RateLimit::per_second(4.0).burst(2);
    // Full at first: a burst of two, from either handle.
    assert_eq!(one.take_token("resize", limit).unwrap(), None);
    assert_eq!(two.take_token("resize", limit).unwrap(), None);
    let wait = one
        .take_token("resize", limit)
        .unwrap()
        .expect("the bucket is empty");
    assert_eq!(
        wait,
        Duration::from_millis(250),
        "one token a quarter second"
    );
    // Another name has a bucket of its own.
    assert_eq!(two.take_token("other", limit).unwrap(), None);
    f.clock.advance(Duration::from_millis(250));
    assert_eq!(two.take_token("resize", limit).unwrap(), None);
    assert!(one.take_token("resize", limit).unwrap().is_some());
    // Refilled no further than the burst, however long the quiet spell.
    f.clock.advance(Duration::from_secs(3600));
    let taken = (0..5)
        .filter(|_| one.take_token("resize", limit).unwrap().is_none())
        .count();
    assert_eq!(taken, 2);
}

pub(crate) fn a_deferred_task_waits_uncharged(f: &Fixture) {
    let store = f.store();
    let id = store.enqueue(&command("limited")).unwrap().id;
    let lease = store
        .reserve("w", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    let wait = Duration::from_secs(10);
    assert_eq!(
        store
            .complete(&[(id, lease.attempt, Outcome::Deferred(wait))])
            .unwrap(),
        [Completion::Recorded(State::Queued)]
    );
    f.clock.advance(wait - Duration::from_millis(1));
    assert!(
        store
            .reserve("w", &["default"], 1, LEASE)
            .unwrap()
            .is_empty(),
        "it waits for its token"
    );
    f.clock.advance(Duration::from_millis(1));
    let again = store
        .reserve("w", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    assert_eq!((again.id, again.failures, again.crashes), (id, 0, 0));
}

pub(crate) fn a_released_task_waits_no_backoff_beside_a_retried_one(f: &Fixture) {
    let store = f.store();
    let policy = RetryPolicy {
        backoff: Duration::from_secs(60),
        ..RetryPolicy::default()
    };
    let released = store.enqueue(&command("r").retry(policy)).unwrap().id;
    let failing = store.enqueue(&command("f").retry(policy)).unwrap().id;
    let leases = store.reserve("w", &["default"], 2, LEASE).unwrap();
    let attempt = |id| leases.iter().find(|l| l.id == id).unwrap().attempt;
    // One batch, as a draining worker reports it.
    store
        .complete(&[
            (released, attempt(released), Outcome::Released),
            (failing, attempt(failing), failed("boom")),
        ])
        .unwrap();
    let again: Vec<TaskId> = store
        .reserve("w", &["default"], 2, LEASE)
        .unwrap()
        .iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(
        again,
        [released],
        "handed back at once; the failure backs off"
    );
}

pub(crate) fn running_and_retrying_tasks_are_listed(f: &Fixture) {
    let store = f.store();
    let policy = RetryPolicy {
        max_retries: 3,
        backoff: Duration::from_secs(10),
        max_backoff: Duration::from_secs(60),
        crash_budget: 3,
    };
    let flaky = store.enqueue(&command("flaky").retry(policy)).unwrap().id;
    let lease = store
        .reserve("w1", &["default"], 1, LEASE)
        .unwrap()
        .remove(0);
    store
        .complete(&[(flaky, lease.attempt, failed("boom"))])
        .unwrap();
    // Scheduled for later, never failed: not retrying.
    store
        .enqueue(&command("later").countdown(Duration::from_secs(3600)))
        .unwrap();
    let first = store.enqueue(&command("one")).unwrap().id;
    let second = store.enqueue(&command("two").queue("mail")).unwrap().id;
    store.reserve("w1", &["default"], 1, LEASE).unwrap();
    f.clock.advance(Duration::from_millis(5));
    store.reserve("w2", &["mail"], 1, LEASE).unwrap();

    let running = f.store().running(None, 10).unwrap();
    let held: Vec<_> = running
        .iter()
        .map(|t| (t.id, t.worker.as_deref().unwrap_or("?")))
        .collect();
    assert_eq!(
        held,
        [(first, "w1"), (second, "w2")],
        "started first, first"
    );
    assert_eq!(store.running(Some("mail"), 10).unwrap().len(), 1);
    assert_eq!(store.running(None, 1).unwrap().len(), 1, "the limit holds");

    let retrying = f.store().retrying(None, 10).unwrap();
    assert_eq!(retrying.len(), 1, "{retrying:?}");
    let task = &retrying[0];
    assert_eq!(
        (task.id, task.state, task.failures),
        (flaky, State::Queued, 1)
    );
    assert!(
        task.error
            .as_ref()
            .is_some_and(|e| e.to_string().contains("boom")),
        "{:?}",
        task.error
    );
    assert!(store.retrying(Some("mail"), 10).unwrap().is_empty());
}
