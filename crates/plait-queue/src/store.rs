//! [`Store`]: what the queue needs of its storage, written for two backends (an embedded
//! SQLite file, a Redis server) and checked by one conformance suite.

use std::time::Duration;

use crate::clock::Millis;
use crate::error::Result;
use crate::registry::WorkerInfo;
use crate::task::{
    Beat, Cancel, Completion, Enqueued, Lease, NewTask, Outcome, QueueStats, TaskId, TaskInfo,
};

/// The queue's storage: tasks in, leases out, completions back.
///
/// The promise every backend keeps, and `tests/conformance` checks:
///
/// * **Durable enqueue.** Once `enqueue` returns `Ok`, the task is stored: it survives the
///   death of every process that touched the store (and, where the backend says so, the
///   machine's).
/// * **At least once, under a lease.** `reserve` hands a task to one worker at a time,
///   with an attempt number and a lease. The worker renews the lease with `heartbeat` and
///   ends the attempt with `complete`. A lease that runs out (the worker died, or hung)
///   is reclaimed: the attempt is charged to the task's crash budget, and the task is
///   handed out again or, past the budget, dead.
/// * **Fenced.** A heartbeat or completion that names an attempt other than the task's
///   current one changes nothing ([`Completion::Fenced`], [`Beat::Lost`]): a worker
///   that comes back from a pause can never overwrite what a later attempt did.
/// * **Delays hold no lease.** A task waiting for its ETA or a retry's backoff is queued,
///   not leased, so however long the wait, it runs once.
/// * **Nothing is lost to bad input.** An unreadable task is completed as
///   [`Outcome::Rejected`] and kept, dead, with its reason.
///
/// Methods take slices where a worker batches (reserving several tasks, completing
/// several) so that a backend can do one round trip, or one transaction, for all.
pub trait Store: Send + Sync + 'static {
    /// Stores `task`.
    ///
    /// # Errors
    ///
    /// Bad input (queue name, key, payload over the limit) or a storage failure; either
    /// way nothing was stored.
    fn enqueue(&self, task: &NewTask) -> Result<Enqueued> {
        let mut done = self.enqueue_all(std::slice::from_ref(task))?;
        Ok(done.remove(0))
    }

    /// Stores `tasks`, all or none, in one transaction (or round trip).
    ///
    /// # Errors
    ///
    /// As [`enqueue`](Store::enqueue); on an error none of the tasks is stored.
    fn enqueue_all(&self, tasks: &[NewTask]) -> Result<Vec<Enqueued>>;

    /// Hands up to `max` tasks that are ready on `queues` to `worker`, each under a lease
    /// of `lease`: of the ready tasks, higher priority first, then older first. Leases
    /// that have run out are reclaimed first.
    ///
    /// # Errors
    ///
    /// A storage failure; then no task was handed out.
    fn reserve(
        &self,
        worker: &str,
        queues: &[&str],
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Lease>>;

    /// Renews the leases of these attempts by `lease` from now; one answer per attempt,
    /// in order.
    ///
    /// # Errors
    ///
    /// A storage failure; then no lease was renewed (the worker should retry before the
    /// leases run out, and stop the attempts if they do).
    fn heartbeat(&self, attempts: &[(TaskId, u32)], lease: Duration) -> Result<Vec<Beat>>;

    /// Records how these attempts ended; one answer per attempt, in order.
    ///
    /// # Errors
    ///
    /// A storage failure; then none was recorded (the attempts stay leased, and are
    /// reclaimed when the leases run out unless recorded meanwhile).
    fn complete(&self, ended: &[(TaskId, u32, Outcome)]) -> Result<Vec<Completion>>;

    /// Records `ended` as [`complete`](Store::complete) does, then hands out up to `max`
    /// tasks as [`reserve`](Store::reserve) does: what a worker does each time attempts
    /// end, in one round trip where the backend can (the default makes the two calls).
    ///
    /// # Errors
    ///
    /// The outer error is `complete`'s: then nothing was recorded, and nothing reserved.
    /// The inner one is `reserve`'s, after the completions were recorded.
    fn complete_and_reserve(
        &self,
        ended: &[(TaskId, u32, Outcome)],
        worker: &str,
        queues: &[&str],
        max: usize,
        lease: Duration,
    ) -> Result<(Vec<Completion>, Result<Vec<Lease>>)> {
        let done = self.complete(ended)?;
        Ok((done, self.reserve(worker, queues, max, lease)))
    }

    /// Reclaims every lease that has run out; returns how many. `reserve` does this too,
    /// so a store with busy workers needs no other sweeper.
    ///
    /// # Errors
    ///
    /// A storage failure.
    fn reclaim_expired(&self) -> Result<usize>;

    /// Cancels a task: at once if it waits, at its worker's next heartbeat if it runs.
    ///
    /// # Errors
    ///
    /// [`NotFound`](crate::QueueError::NotFound), or a storage failure.
    fn cancel(&self, id: TaskId) -> Result<Cancel>;

    /// The task, if the store still holds it.
    ///
    /// # Errors
    ///
    /// A storage failure.
    fn get(&self, id: TaskId) -> Result<Option<TaskInfo>>;

    /// Waits until the task has finished (or `timeout` passes) and returns it as it then
    /// stands. The wait is woken by the store's changes, not by polling in a tight loop.
    ///
    /// # Errors
    ///
    /// [`NotFound`](crate::QueueError::NotFound), or a storage failure.
    fn wait_finished(&self, id: TaskId, timeout: Duration) -> Result<TaskInfo>;

    /// Waits until every task of `ids` has finished (or `timeout` passes) and returns them
    /// as they then stand, in order: the gather of many results (`ray.get(list)`,
    /// `client.gather`). A backend may fetch many tasks per round trip.
    ///
    /// # Errors
    ///
    /// [`NotFound`](crate::QueueError::NotFound) for the first id not stored, or a storage
    /// failure.
    fn wait_all(&self, ids: &[TaskId], timeout: Duration) -> Result<Vec<TaskInfo>> {
        let deadline = std::time::Instant::now() + timeout;
        ids.iter()
            .map(|&id| {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                self.wait_finished(id, left)
            })
            .collect()
    }

    /// Waits until a task may be ready on `queues` (one was enqueued, requeued or became
    /// due), or `timeout` passes. It may return early; the caller then reserves.
    ///
    /// # Errors
    ///
    /// A storage failure.
    fn wait_for_work(&self, queues: &[&str], timeout: Duration) -> Result<()>;

    /// Every queue that holds tasks, with its tasks counted by state.
    ///
    /// # Errors
    ///
    /// A storage failure.
    fn queues(&self) -> Result<Vec<QueueStats>>;

    /// Dead tasks, oldest first, at most `limit`, of one queue or all.
    ///
    /// # Errors
    ///
    /// A storage failure.
    fn dead(&self, queue: Option<&str>, limit: usize) -> Result<Vec<TaskInfo>>;

    /// Running tasks, those started first first, at most `limit`, of one queue or all:
    /// what each worker holds now.
    ///
    /// # Errors
    ///
    /// A storage failure.
    fn running(&self, queue: Option<&str>, limit: usize) -> Result<Vec<TaskInfo>>;

    /// Tasks waiting for a retry (an attempt failed or crashed, and the task waits out
    /// its backoff), the next due first, at most `limit`, of one queue or all; each with
    /// the error of its last attempt.
    ///
    /// # Errors
    ///
    /// A storage failure.
    fn retrying(&self, queue: Option<&str>, limit: usize) -> Result<Vec<TaskInfo>>;

    /// Puts dead tasks back on their queues, with fresh budgets: those named, or all of
    /// them. Returns how many were requeued.
    ///
    /// # Errors
    ///
    /// A storage failure.
    fn requeue_dead(&self, ids: Option<&[TaskId]>) -> Result<usize>;

    /// Deletes the waiting tasks of one queue, or of all; returns how many. Running tasks
    /// and kept results are left alone.
    ///
    /// # Errors
    ///
    /// A storage failure.
    fn purge(&self, queue: Option<&str>) -> Result<usize>;

    /// Deletes finished tasks whose results have expired; returns how many.
    ///
    /// # Errors
    ///
    /// A storage failure.
    fn expire_results(&self) -> Result<usize>;

    /// Records that `worker` was heard from now: registers it on first sight, renews it
    /// after. The store stamps `seen_at` (and `started_at`, on first sight) with its own
    /// clock, the one its leases run on. Workers gone for a day are forgotten.
    ///
    /// # Errors
    ///
    /// A storage failure.
    fn worker_seen(&self, worker: &WorkerInfo) -> Result<()>;

    /// Records that `worker` stopped in order, with what it did in all.
    ///
    /// # Errors
    ///
    /// A storage failure.
    fn worker_stopped(&self, worker: &WorkerInfo) -> Result<()>;

    /// The workers registered, the latest started first: those running, and those that
    /// stopped or were lost within the last day.
    ///
    /// # Errors
    ///
    /// A storage failure.
    fn workers(&self) -> Result<Vec<WorkerInfo>>;

    /// Takes a token from the rate limit named `name` (a token bucket the store keeps,
    /// shared by every handle and worker on it, created full on first use): `None` if one
    /// was taken, so a task of that name may start now; else how long until one is there.
    ///
    /// # Errors
    ///
    /// A storage failure; then no token was taken.
    fn take_token(&self, name: &str, limit: crate::RateLimit) -> Result<Option<Duration>>;

    /// Now, by the clock the store keeps its times by (leases, delays, the registry's).
    fn now(&self) -> Millis;
}

/// Checks a queue name: 1 to 64 letters, digits, `-`, `_` or `.`.
///
/// # Errors
///
/// [`InvalidQueueName`](crate::QueueError::InvalidQueueName).
pub fn check_queue_name(name: &str) -> Result<()> {
    let fine = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if fine {
        Ok(())
    } else {
        Err(crate::QueueError::InvalidQueueName {
            name: name.to_owned(),
        })
    }
}

/// Checks an idempotency key: 1 to 256 bytes.
pub(crate) fn check_key(key: &str) -> Result<()> {
    if (1..=256).contains(&key.len()) {
        Ok(())
    } else {
        Err(crate::QueueError::InvalidKey {
            key: key.to_owned(),
        })
    }
}

/// Refuses bad input before anything is stored: nothing is stored if one task is bad.
pub(crate) fn check_new_tasks(tasks: &[NewTask], payload_limit: usize) -> Result<()> {
    for task in tasks {
        check_queue_name(&task.queue)?;
        if let Some(key) = &task.key {
            check_key(key)?;
        }
        if task.payload.len() > payload_limit {
            return Err(crate::QueueError::PayloadTooLarge {
                bytes: task.payload.len(),
                limit: payload_limit,
            });
        }
    }
    Ok(())
}

/// The largest result a store keeps unless told otherwise (8 MiB): a larger one fails its
/// task, not retried, with [`FailureKind::ResultTooLarge`](crate::FailureKind) and the
/// sizes, rather than being cut or filling the store.
pub const DEFAULT_RESULT_LIMIT: usize = 8 << 20;

/// The attempts as a store records them: a success whose result is over `limit` becomes a
/// failure that says so.
pub(crate) fn cap_results(
    ended: &[(TaskId, u32, Outcome)],
    limit: usize,
) -> Vec<(TaskId, u32, Outcome)> {
    ended
        .iter()
        .map(|(id, attempt, outcome)| {
            let outcome = match outcome {
                Outcome::Succeeded(result) if result.len() > limit => Outcome::Failed {
                    failure: crate::Failure::new(
                        crate::FailureKind::ResultTooLarge,
                        format!(
                            "its result is {} bytes, over the store's result limit of {limit} \
                             bytes (result_limit): return a path or a key to the data \
                             instead, or raise the limit",
                            result.len()
                        ),
                    ),
                    retry: false,
                },
                other => other.clone(),
            };
            (*id, *attempt, outcome)
        })
        .collect()
}
