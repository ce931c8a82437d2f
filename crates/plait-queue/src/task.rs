//! What a store holds and hands out: tasks as submitted ([`NewTask`]), as stored
//! ([`TaskInfo`]), as reserved by a worker ([`Lease`]), and how an attempt ended
//! ([`Outcome`]).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::failure::Failure;

/// A task's id: unique in its store, and never reused (a worker that comes back after its
/// task was given to another can never mistake a new task for its old one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(u64);

impl TaskId {
    /// The id numbered `n`.
    #[must_use]
    pub const fn new(n: u64) -> Self {
        TaskId(n)
    }

    /// Its number.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TaskId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(TaskId).map_err(|_| {
            format!("{s:?} is not a task id: ids are the numbers `plait submit` prints")
        })
    }
}

/// How often an attempt that fails is retried, and how long to wait between.
///
/// Two budgets, counted apart: **retries** for attempts that ran and failed (an error, a
/// panic, a time limit), with exponential backoff; and **crashes** for attempts whose
/// worker died under them (a segfault, the OOM killer, a lost lease). A task over either
/// budget goes to the dead letters with its reason. The crash budget is what keeps a task
/// that kills every worker it touches from being handed out forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Failed attempts retried, at most (0: never retried).
    pub max_retries: u32,
    /// The wait before the first retry; each further retry waits up to twice as long,
    /// less a random part of up to half (equal jitter), so that failures do not retry in
    /// lockstep.
    pub backoff: Duration,
    /// The longest wait between retries.
    pub max_backoff: Duration,
    /// Attempts whose worker died under them that make the task dead: a task that kills
    /// every worker it touches runs this many times, then goes to the dead letters (0
    /// counts as 1).
    pub crash_budget: u32,
}

impl Default for RetryPolicy {
    /// 3 retries from 1 s up to 10 min apart; a crash budget of 3.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            crash_budget: 3,
        }
    }
}

impl RetryPolicy {
    /// No retries, and the task is dead at its first crash. (A worker that dies before it
    /// reports can still leave a task that ran once, so this is "at most one retry of an
    /// attempt that may have run", not exactly once; make tasks idempotent.)
    #[must_use]
    pub fn never() -> Self {
        RetryPolicy {
            max_retries: 0,
            backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
            crash_budget: 1,
        }
    }

    /// The wait before retry number `retry` (1 for the first) of task `id`: a random point
    /// (fixed by the id and the retry, so that every store computes the same) between half
    /// the exponential bound and the bound.
    #[must_use]
    pub fn backoff_before(&self, id: TaskId, retry: u32) -> Duration {
        let bound = self
            .backoff
            .saturating_mul(
                1_u32
                    .checked_shl(retry.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max_backoff);
        let bound_ms = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
        if bound_ms == 0 {
            return Duration::ZERO;
        }
        // Equal jitter (AWS's "exponential backoff and jitter"): never less than half the
        // bound, so a retry storm still thins out. From a hash rather than a random source:
        // the same task's same retry always waits the same.
        let half = bound_ms / 2;
        let spread = splitmix64(id.get() ^ (u64::from(retry) << 48)) % (bound_ms - half + 1);
        Duration::from_millis(half + spread)
    }
}

/// A well-mixed 64-bit hash of `x` (splitmix64's finaliser).
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// When a task may first run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// As soon as a worker is free.
    Now,
    /// Not before this time (an ETA).
    At(SystemTime),
    /// Not before this long after it is enqueued (a countdown).
    After(Duration),
}

/// A task to enqueue: its payload, and how it is to be run.
///
/// The payload is opaque to the store: the bytes the worker will read (see
/// [`Payload`](crate::Payload) for the format plait's workers read).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use plait_queue::{NewTask, Payload};
///
/// let task = NewTask::new(Payload::command(["echo", "hello"]).encode())
///     .queue("mail")
///     .priority(5)
///     .countdown(Duration::from_secs(60))
///     .key("welcome-mail-for-user-42");
/// assert_eq!(task.queue_name(), "mail");
/// ```
#[derive(Clone, Debug)]
pub struct NewTask {
    pub(crate) queue: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) priority: i32,
    pub(crate) start: Start,
    pub(crate) key: Option<String>,
    pub(crate) retry: RetryPolicy,
    pub(crate) time_limit: Option<Duration>,
    pub(crate) result_ttl: Duration,
}

/// How long a finished task's result is kept by default: a day.
pub const DEFAULT_RESULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

impl NewTask {
    /// A task carrying `payload`, on the queue `default`, priority 0, to start now, with
    /// the default [`RetryPolicy`], no time limit, and its result kept for a day.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        NewTask {
            queue: "default".to_owned(),
            payload: payload.into(),
            priority: 0,
            start: Start::Now,
            key: None,
            retry: RetryPolicy::default(),
            time_limit: None,
            result_ttl: DEFAULT_RESULT_TTL,
        }
    }

    /// The queue to put it on (checked at enqueue: letters, digits, `-`, `_`, `.`).
    #[must_use]
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.queue = name.into();
        self
    }

    /// Its priority: of the tasks ready on a queue, higher ones are handed out first.
    #[must_use]
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Not to run before `at`. However far off, it runs once: a task waiting for its time
    /// holds no lease that could expire.
    #[must_use]
    pub fn eta(mut self, at: SystemTime) -> Self {
        self.start = Start::At(at);
        self
    }

    /// Not to run before `delay` has passed since it was enqueued.
    #[must_use]
    pub fn countdown(mut self, delay: Duration) -> Self {
        self.start = Start::After(delay);
        self
    }

    /// An idempotency key: enqueueing again with a key the store still holds (while the
    /// task, or its result, is kept) returns the first task's id and stores nothing. The
    /// embedded store holds keys across all its queues; the Redis store, per queue (a
    /// queue's keys live on one node of a cluster), so give one key one queue.
    #[must_use]
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// How failures are retried.
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// A hard limit on each attempt's run: past it the worker kills the attempt, which
    /// fails with `TimedOut` (and is retried as any failure is).
    #[must_use]
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// How long the result (or the last error) is kept once the task has finished.
    #[must_use]
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl = ttl;
        self
    }

    /// The queue it goes to.
    #[must_use]
    pub fn queue_name(&self) -> &str {
        &self.queue
    }

    /// The instant it may first run, given the time it is enqueued.
    pub(crate) fn ready_at(&self, now: Millis) -> Millis {
        match self.start {
            Start::Now => now,
            Start::At(at) => at
                .duration_since(UNIX_EPOCH)
                .map_or(0, crate::clock::millis),
            Start::After(delay) => now.saturating_add(crate::clock::millis(delay)),
        }
    }
}

/// Where a task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for a worker (perhaps for its start time, or for a retry's backoff).
    Queued,
    /// Held by a worker under a lease.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Failed for good: out of retries or crashes, or unreadable. In the dead letters.
    Dead,
    /// Cancelled before it finished.
    Cancelled,
}

impl State {
    /// Whether the task will not run again (unless a dead one is requeued).
    #[must_use]
    pub fn is_finished(self) -> bool {
        matches!(self, State::Succeeded | State::Dead | State::Cancelled)
    }

    /// The state's name: `queued`, `running`, `succeeded`, `dead` or `cancelled`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Succeeded => "succeeded",
            State::Dead => "dead",
            State::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskInfo {
    /// Its id.
    pub id: TaskId,
    /// Its queue.
    pub queue: String,
    /// Where it stands.
    pub state: State,
    /// Its priority.
    pub priority: i32,
    /// Attempts handed out so far (the number of the latest attempt).
    pub attempts: u32,
    /// Attempts that failed (charged to the retries).
    pub failures: u32,
    /// Attempts whose worker died under them (charged to the crash budget).
    pub crashes: u32,
    /// When it was enqueued.
    pub enqueued_at: Millis,
    /// When it may run next (its ETA, or the end of a retry's backoff).
    pub ready_at: Millis,
    /// When its latest attempt started.
    pub started_at: Option<Millis>,
    /// When it finished.
    pub finished_at: Option<Millis>,
    /// When its result will be purged.
    pub expires_at: Option<Millis>,
    /// The worker that holds it (while running), or held it last.
    pub worker: Option<String>,
    /// Until when the running attempt's lease holds.
    pub lease_until: Option<Millis>,
    /// A cancellation was asked for while it ran; the worker stops it at its next
    /// heartbeat.
    pub cancel_requested: bool,
    /// The payload, as enqueued.
    pub payload: Vec<u8>,
    /// The result, once it succeeded.
    pub result: Option<Vec<u8>>,
    /// The latest failure.
    pub error: Option<Failure>,
    /// Why it is dead, or was cancelled.
    pub reason: Option<String>,
}

impl TaskInfo {
    /// What it runs, in a few words: the command line, or the task's name and version.
    #[must_use]
    pub fn describe(&self) -> String {
        use crate::payload::Payload;
        match Payload::decode(&self.payload) {
            Ok(Payload::Command { argv, .. }) => argv.join(" "),
            Ok(Payload::Task { name, version, .. } | Payload::Encoded { name, version, .. }) => {
                format!("{name} v{version}")
            }
            Err(_) => "(an unreadable payload)".to_owned(),
        }
    }

    /// The task as JSON for people and tools (`plait status --json`, the HTTP API): the
    /// stored fields, with the payload decoded and the result as JSON (or as text, if it
    /// is not JSON).
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        let as_json = |bytes: &[u8]| {
            serde_json::from_slice(bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())
            })
        };
        let mut view = serde_json::to_value(self).unwrap_or_default();
        if let Some(fields) = view.as_object_mut() {
            fields.insert("payload".to_owned(), as_json(&self.payload));
            fields.insert(
                "result".to_owned(),
                self.result
                    .as_deref()
                    .map_or(serde_json::Value::Null, as_json),
            );
        }
        view
    }
}

/// A task reserved by a worker: its attempt, under a lease the worker renews with
/// heartbeats and ends with a completion.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The task.
    pub id: TaskId,
    /// The attempt's number: the token that fences its heartbeats and its completion (a
    /// store refuses them once the task has been handed to a later attempt).
    pub attempt: u32,
    /// The task's queue.
    pub queue: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// The attempt's hard time limit.
    pub time_limit: Option<Duration>,
    /// Until when the lease holds, unless renewed.
    pub lease_until: Millis,
    /// Failed attempts before this one.
    pub failures: u32,
    /// Crashed attempts before this one.
    pub crashes: u32,
}

/// How an attempt ended, as its worker reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// It succeeded with this result.
    Succeeded(Vec<u8>),
    /// It ran and failed: retried after a backoff while retries are left (and `retry`
    /// says it may be), dead after.
    Failed {
        /// What went wrong.
        failure: Failure,
        /// Whether a retry may help (`false` for a failure that will recur: the task is
        /// dead at once).
        retry: bool,
    },
    /// The process that ran it died under it: charged to the crash budget, requeued while
    /// the budget lasts, dead after.
    Crashed(Failure),
    /// It cannot run on any worker (an unreadable payload, an unknown task, another
    /// version): dead at once, with the failure as the reason.
    Rejected(Failure),
    /// It did not run to its end and is handed back uncharged: its worker is shutting
    /// down.
    Released,
    /// It did not start, and is handed back uncharged to wait this long: its rate limit
    /// had no token for it.
    Deferred(std::time::Duration),
    /// It stopped because it was cancelled.
    Cancelled,
}

/// What a store did with a completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Recorded; the task is now in this state (`Queued` for a retry).
    Recorded(State),
    /// Refused: the attempt is no longer the task's current one (its lease expired and the
    /// task was handed out again, or it was finished some other way). A zombie's late
    /// completion lands here and changes nothing.
    Fenced,
}

/// What a store says to a heartbeat for one lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Beat {
    /// The lease is renewed.
    Renewed,
    /// The lease is renewed, and a cancellation was asked for: stop the attempt and
    /// complete it as [`Outcome::Cancelled`].
    CancelRequested,
    /// The lease is lost (it expired and the task was reclaimed, or the task finished):
    /// stop the attempt; its completion would be refused.
    Lost,
}

/// What [`Store::enqueue`](crate::Store::enqueue) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enqueued {
    /// The task's id.
    pub id: TaskId,
    /// `false` when the idempotency key was already held: `id` is the first task's, and
    /// nothing was stored.
    pub created: bool,
}

/// What [`Store::cancel`](crate::Store::cancel) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cancel {
    /// It was waiting, and is now cancelled: it will never run.
    Cancelled,
    /// It is running; its worker will stop it at its next heartbeat.
    Requested,
    /// It had already finished, in this state; nothing changed.
    AlreadyFinished(State),
}

/// One queue's tasks by state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QueueStats {
    /// The queue.
    pub queue: String,
    /// Waiting, and ready to run now.
    pub ready: u64,
    /// Waiting for a start time or a retry's backoff.
    pub scheduled: u64,
    /// Held by workers.
    pub running: u64,
    /// Succeeded, with their results still kept.
    pub succeeded: u64,
    /// In the dead letters.
    pub dead: u64,
    /// Cancelled, still kept.
    pub cancelled: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_stops_at_the_cap() {
        let policy = RetryPolicy {
            max_retries: 20,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            crash_budget: 3,
        };
        for id in 0..200 {
            let id = TaskId::new(id);
            for retry in 1..=20 {
                let bound = Duration::from_secs(1 << (retry - 1).min(6)).min(policy.max_backoff);
                let wait = policy.backoff_before(id, retry);
                assert!(wait <= bound, "retry {retry} waits {wait:?} > {bound:?}");
                assert!(
                    wait >= bound / 2,
                    "retry {retry} waits {wait:?} < half {bound:?}"
                );
            }
        }
        assert_eq!(
            policy.backoff_before(TaskId::new(7), 3),
            policy.backoff_before(TaskId::new(7), 3),
            "the same task's same retry waits the same"
        );
    }

    #[test]
    fn a_task_id_parses_back_and_a_bad_one_says_what_ids_are() {
        assert_eq!("42".parse::<TaskId>().unwrap(), TaskId::new(42));
        let error = "forty-two".parse::<TaskId>().unwrap_err();
        assert!(error.contains("\"forty-two\" is not a task id"), "{error}");
    }
}
