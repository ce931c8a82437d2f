//! [`Worker`]: takes tasks from a store and runs them on plait's strands, commands and
//! registered tasks alike, each in a process of its own.
//!
//! A worker reserves only as many tasks as it has free slots (its prefetch is its free
//! concurrency), so an idle worker is never starved by a busy one holding work it cannot
//! start. It renews its leases with one heartbeat for all its attempts, a third of the
//! lease apart, and reports completions in batches. Retries live in the queue alone: the
//! worker's runtime runs each attempt once (no crash retries in the process strand), and
//! the store decides what a failure or a crash leads to.

mod attempt;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use plait::{CancelHandle, Runtime};

use crate::error::Result;
use crate::rate::RateLimit;
use crate::registry::{Durations, WorkerInfo, host_name};
use crate::store::{Store, check_queue_name};
use crate::task::{Beat, Completion, Lease, Outcome, State, TaskId};
use attempt::Ended;

/// How long an idle worker waits for work before it looks again on its own (waits are
/// woken by enqueues; this bounds a missed wake-up).
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// How long a worker waits before it tries its store again after a storage error.
const STORAGE_RETRY: Duration = Duration::from_millis(500);

/// Builds a [`Worker`]: see [`Worker::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct WorkerBuilder {
    store: Arc<dyn Store>,
    runtime: Option<Runtime>,
    queues: Vec<String>,
    concurrency: usize,
    lease: Duration,
    grace: Duration,
    name: Option<String>,
    processes: Option<usize>,
    limits: HashMap<String, RateLimit>,
}

impl WorkerBuilder {
    /// The queues to take tasks from, in no particular order (default `["default"]`).
    pub fn queues<I, S>(mut self, queues: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// How many attempts run at once, commands and registered tasks together (default:
    /// the machine's cores). Each command runs in a process of its own.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Starts at most `limit` tasks named `name` (a registered task's name, or a
    /// command's program, `convert` for `/usr/bin/convert`), across every worker on the
    /// store that sets the same limit: they draw from one token bucket the store keeps. A
    /// task without a token goes back to its queue uncharged, to start once one is there.
    pub fn rate_limit(mut self, name: impl Into<String>, limit: RateLimit) -> Self {
        self.limits.insert(name.into(), limit);
        self
    }

    /// How many worker processes run registered tasks, of the attempts running at once
    /// (default: the machine's cores): the process strand's share of the concurrency.
    /// For the worker's own runtime; one given with [`runtime`](Self::runtime) keeps its
    /// [`ProcessOptions::workers`](plait::process::ProcessOptions::workers).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n.max(1));
        self
    }

    /// The lease on each attempt (default 30 s): a worker that stops renewing it (it died,
    /// or hung) loses the attempt that long after its last heartbeat.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a [drain](Stopper::drain) lets running attempts finish before it hands
    /// them back (default 30 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The worker's name in the store (default: host, process id and start time, which
    /// no other worker reuses).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The runtime whose strands run the attempts (default: a new one). Its process
    /// strand should keep `crash_retries` at 0, so that the queue alone retries.
    pub fn runtime(mut self, rt: Runtime) -> Self {
        self.runtime = Some(rt);
        self
    }

    /// Checks the settings and makes the worker.
    ///
    /// # Errors
    ///
    /// A queue name that is not one (see [`check_queue_name`]), no queue at all, or a
    /// runtime that cannot start.
    pub fn build(self) -> Result<Worker> {
        if self.queues.is_empty() {
            return Err(crate::QueueError::InvalidQueueName {
                name: String::new(),
            });
        }
        for queue in &self.queues {
            check_queue_name(queue)?;
        }
        let rt = match self.runtime {
            Some(rt) => rt,
            None => {
                let mut options = plait::process::ProcessOptions::new();
                if let Some(n) = self.processes {
                    options = options.workers(n);
                }
                Runtime::builder()
                    .processes(options)
                    .build()
                    .map_err(|error| crate::QueueError::Storage {
                        path: "(the worker's runtime)".into(),
                        detail: error.to_string(),
                    })?
            }
        };
        let name = self.name.unwrap_or_else(default_name);
        let (messages, inbox) = mpsc::channel();
        Ok(Worker {
            store: self.store,
            rt,
            queues: self.queues,
            concurrency: self.concurrency.max(1),
            lease: self.lease.max(Duration::from_millis(30)),
            grace: self.grace,
            name,
            limits: self.limits,
            messages,
            inbox,
        })
    }
}

/// `host-pid-start`: unique among workers past and present, so that no worker can be
/// mistaken for an earlier one of the same process id.
fn default_name() -> String {
    let host = host_name();
    let started = crate::clock::Clock::now(&crate::clock::SystemClock);
    format!("{host}-{}-{started:x}", std::process::id())
}

/// Takes tasks from a store's queues and runs them until stopped.
///
/// # Examples
///
/// ```no_run
/// use std::sync::Arc;
/// use plait_queue::{SqliteStore, Worker};
///
/// fn main() -> plait_queue::Result<()> {
///     plait::init(); // worker processes start here
///     let store = Arc::new(SqliteStore::open(".plait/queue.db")?);
///     let worker = Worker::builder(store).queues(["default", "mail"]).concurrency(4).build()?;
///     let stopper = worker.stopper(); // drain() from a signal handler, say
///     let report = worker.run()?;
///     println!("{report:?}");
///     Ok(())
/// }
/// ```
pub struct Worker {
    store: Arc<dyn Store>,
    rt: Runtime,
    queues: Vec<String>,
    concurrency: usize,
    lease: Duration,
    grace: Duration,
    name: String,
    limits: HashMap<String, RateLimit>,
    messages: Sender<Message>,
    inbox: Receiver<Message>,
}

/// Stops a [`Worker`] from another thread (a signal handler's, say).
#[derive(Clone, Debug)]
pub struct Stopper(Sender<Message>);

impl Stopper {
    /// Stops reserving, lets the running attempts finish for the grace period, then hands
    /// back those still running (uncharged: another worker takes them).
    pub fn drain(&self) {
        let _ = self.0.send(Message::Drain);
    }

    /// Stops at once: running attempts are stopped and handed back, uncharged.
    pub fn abort(&self) {
        let _ = self.0.send(Message::Abort);
    }
}

/// What a worker's run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerReport {
    /// Attempts that succeeded.
    pub succeeded: u64,
    /// Attempts that failed (retried later, or dead).
    pub failed: u64,
    /// Attempts whose process died under them.
    pub crashed: u64,
    /// Tasks no worker can run (dead at once).
    pub rejected: u64,
    /// Attempts handed back uncharged (the worker was stopping).
    pub released: u64,
    /// Tasks handed back to wait for their rate limit's next token.
    pub deferred: u64,
    /// Attempts stopped because they were cancelled.
    pub cancelled: u64,
    /// Completions the store refused: the lease had been lost meanwhile.
    pub fenced: u64,
}

#[derive(Debug)]
enum Message {
    Ended {
        id: TaskId,
        attempt: u32,
        ended: EndedBox,
    },
    MaybeWork,
    Drain,
    Abort,
}

/// An attempt's end, boxed so that the channel's messages stay small.
struct EndedBox(Box<Ended>);

impl std::fmt::Debug for EndedBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ended")
    }
}

/// Why the worker stopped an attempt.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// The worker is stopping: hand it back.
    Stopping,
    /// It was cancelled.
    Cancelled,
    /// Its lease was lost: nothing to report.
    LeaseLost,
}

struct Running {
    attempt: u32,
    /// When it started, for the registry's histogram of durations.
    started: Instant,
    cancel: CancelHandle,
    time_limit: Option<Duration>,
    stopped: Option<Stopped>,
}

impl Worker {
    /// A builder for a worker on `store`.
    pub fn builder(store: Arc<dyn Store>) -> WorkerBuilder {
        WorkerBuilder {
            store,
            runtime: None,
            queues: vec!["default".to_owned()],
            concurrency: std::thread::available_parallelism().map_or(2, usize::from),
            lease: Duration::from_secs(30),
            grace: Duration::from_secs(30),
            name: None,
            processes: None,
            limits: HashMap::new(),
        }
    }

    /// Its name in the store.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A handle that stops it.
    #[must_use]
    pub fn stopper(&self) -> Stopper {
        Stopper(self.messages.clone())
    }

    /// Runs until stopped (see [`Stopper`]); returns what it did.
    ///
    /// # Errors
    ///
    /// A storage error that retrying cannot cure (an unreadable file); passing ones (a
    /// locked file) are retried.
    pub fn run(self) -> Result<WorkerReport> {
        Loop::new(self).run()
    }
}

/// The worker's state while it runs.
struct Loop {
    worker: Worker,
    running: HashMap<TaskId, Running>,
    ended: Vec<(TaskId, u32, Outcome)>,
    report: WorkerReport,
    durations: Durations,
    /// A wait for work is under way (the waiter thread will say when).
    looking: bool,
    want_work: Sender<()>,
    drain_until: Option<Instant>,
    next_beat: Instant,
}

impl Loop {
    fn new(worker: Worker) -> Loop {
        let (want_work, wanted) = mpsc::channel::<()>();
        let store = Arc::clone(&worker.store);
        let queues = worker.queues.clone();
        let tell = worker.messages.clone();
        // Waits for work off the loop, so that heartbeats and completions go on meanwhile;
        // it ends when the loop drops its sender.
        let _ = std::thread::Builder::new()
            .name("plait-queue-look".to_owned())
            .spawn(move || {
                let queues: Vec<&str> = queues.iter().map(String::as_str).collect();
                while wanted.recv().is_ok() {
                    if store.wait_for_work(&queues, IDLE_LOOK).is_err() {
                        std::thread::sleep(STORAGE_RETRY);
                    }
                    if tell.send(Message::MaybeWork).is_err() {
                        return;
                    }
                }
            });
        let next_beat = Instant::now() + worker.lease / 3;
        Loop {
            worker,
            running: HashMap::new(),
            ended: Vec::new(),
            report: WorkerReport::default(),
            durations: Durations::default(),
            looking: false,
            want_work,
            drain_until: None,
            next_beat,
        }
    }

    fn run(mut self) -> Result<WorkerReport> {
        match self.worker.store.worker_seen(&self.registration()) {
            Err(error) if !passing(&error) => return Err(error),
            _ => {}
        }
        let report = self.serve();
        // A worker that stops in order says so; one that dies is found lost by its
        // silence.
        let _ = self.worker.store.worker_stopped(&self.registration());
        report
    }

    fn serve(&mut self) -> Result<WorkerReport> {
        loop {
            self.exchange()?;
            if self.drain_until.is_some() && self.running.is_empty() && self.ended.is_empty() {
                return Ok(self.report.clone());
            }
            let wait = self.next_beat.saturating_duration_since(Instant::now());
            match self.worker.inbox.recv_timeout(wait) {
                Ok(message) => self.take(message),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => unreachable!("the worker holds a sender"),
            }
            // Whatever else has arrived, in the same batch.
            while let Ok(message) = self.worker.inbox.try_recv() {
                self.take(message);
            }
            if Instant::now() >= self.next_beat {
                self.heartbeat();
            }
            if self
                .drain_until
                .is_some_and(|until| Instant::now() >= until)
            {
                self.stop_all(Stopped::Stopping);
            }
        }
    }

    fn take(&mut self, message: Message) {
        match message {
            Message::Ended { id, attempt, ended } => {
                let Some(running) = self.running.remove(&id) else {
                    return;
                };
                // An attempt that ended on its own before the stop took hold keeps its
                // outcome: a finished run is not thrown away.
                let outcome = match (running.stopped, ended.0.was_cancelled()) {
                    (Some(Stopped::Stopping), true) => Outcome::Released,
                    (Some(Stopped::Cancelled), true) => Outcome::Cancelled,
                    (Some(Stopped::LeaseLost), _) => {
                        self.report.fenced += 1;
                        return;
                    }
                    _ => attempt::outcome(*ended.0, running.time_limit),
                };
                self.durations.record(running.started.elapsed());
                self.ended.push((id, attempt, outcome));
            }
            Message::MaybeWork => self.looking = false,
            Message::Drain => {
                let until = Instant::now() + self.worker.grace;
                self.drain_until = Some(self.drain_until.map_or(until, |old| old.min(until)));
            }
            Message::Abort => {
                self.drain_until = Some(Instant::now());
                self.stop_all(Stopped::Stopping);
            }
        }
    }

    /// Reports the ended attempts and reserves as many tasks as there are free slots, in
    /// one call to the store when there are both.
    fn exchange(&mut self) -> Result<()> {
        let free = self.worker.concurrency.saturating_sub(self.running.len());
        let wanted = self.drain_until.is_none() && !self.looking && free > 0;
        if wanted && self.ended.is_empty() {
            self.reserve(free)?;
        } else if wanted {
            let queues: Vec<&str> = self.worker.queues.iter().map(String::as_str).collect();
            let exchanged = self.worker.store.complete_and_reserve(
                &self.ended,
                &self.worker.name,
                &queues,
                free,
                self.worker.lease,
            );
            match exchanged {
                Ok((done, reserved)) => {
                    self.tally(done);
                    self.start(reserved, free)?;
                }
                // Kept for the next round; the leases hold meanwhile.
                Err(error) if passing(&error) => {
                    std::thread::sleep(STORAGE_RETRY);
                    return Ok(());
                }
                Err(error) => return Err(error),
            }
        }
        // The ended attempts, and what the starts could not run (a rate limit's deferral, a
        // start that failed).
        self.flush()
    }

    /// Reserves up to `free` tasks, and starts them.
    fn reserve(&mut self, free: usize) -> Result<()> {
        let queues: Vec<&str> = self.worker.queues.iter().map(String::as_str).collect();
        let reserved =
            self.worker
                .store
                .reserve(&self.worker.name, &queues, free, self.worker.lease);
        self.start(reserved, free)
    }

    /// Starts what a reserve for `free` slots handed out.
    fn start(&mut self, reserved: Result<Vec<Lease>>, free: usize) -> Result<()> {
        let leases = match reserved {
            Ok(leases) => leases,
            Err(error) if passing(&error) => {
                std::thread::sleep(STORAGE_RETRY);
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        let mut started = 0;
        let reserved = leases.len();
        for lease in leases {
            if let Some(wait) = self.rate_limited(&lease) {
                self.ended
                    .push((lease.id, lease.attempt, Outcome::Deferred(wait)));
                continue;
            }
            started += 1;
            match attempt::start(&self.worker.rt, &lease, &self.worker.name) {
                Ok(started) => {
                    let tell = self.worker.messages.clone();
                    let (id, number) = (lease.id, lease.attempt);
                    let run = started.run;
                    // The end is awaited on the coroutine strand and sent here.
                    drop(self.worker.rt.spawn_async(async move {
                        let ended = EndedBox(Box::new(run.ended().await));
                        let _ = tell.send(Message::Ended {
                            id,
                            attempt: number,
                            ended,
                        });
                    }));
                    self.running.insert(
                        lease.id,
                        Running {
                            attempt: lease.attempt,
                            started: Instant::now(),
                            cancel: started.cancel,
                            time_limit: lease.time_limit,
                            stopped: None,
                        },
                    );
                }
                Err(outcome) => self.ended.push((lease.id, lease.attempt, outcome)),
            }
        }
        if reserved < free || started < reserved {
            // Nothing more for now, or tasks that wait for their rate limit: look again
            // when something is enqueued or becomes due.
            self.looking = true;
            let _ = self.want_work.send(());
        }
        Ok(())
    }

    /// How long the task must wait for its rate limit, if it has one and no token is
    /// there now. A store that cannot be asked defers it briefly: no limit is overrun.
    fn rate_limited(&self, lease: &Lease) -> Option<Duration> {
        if self.worker.limits.is_empty() {
            return None;
        }
        let name = attempt::task_name(&lease.payload)?;
        let limit = self.worker.limits.get(&name)?;
        match self.worker.store.take_token(&name, *limit) {
            Ok(wait) => wait,
            Err(_) => Some(STORAGE_RETRY),
        }
    }

    /// Reports the ended attempts in one batch.
    fn flush(&mut self) -> Result<()> {
        if self.ended.is_empty() {
            return Ok(());
        }
        let done = match self.worker.store.complete(&self.ended) {
            Ok(done) => done,
            // Kept for the next round; the leases hold meanwhile.
            Err(error) if passing(&error) => {
                std::thread::sleep(STORAGE_RETRY);
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        self.tally(done);
        Ok(())
    }

    /// Counts what the store answered for the ended attempts, and forgets them.
    fn tally(&mut self, done: Vec<Completion>) {
        for ((_, _, outcome), completion) in self.ended.drain(..).zip(done) {
            let tally = &mut self.report;
            match (completion, outcome) {
                (Completion::Fenced, _) => tally.fenced += 1,
                (Completion::Recorded(_), Outcome::Succeeded(_)) => tally.succeeded += 1,
                (Completion::Recorded(_), Outcome::Failed { .. }) => tally.failed += 1,
                (Completion::Recorded(_), Outcome::Crashed(_)) => tally.crashed += 1,
                (Completion::Recorded(_), Outcome::Rejected(_)) => tally.rejected += 1,
                (Completion::Recorded(_), Outcome::Released) => tally.released += 1,
                (Completion::Recorded(_), Outcome::Deferred(_)) => tally.deferred += 1,
                (Completion::Recorded(State::Cancelled), _) | (_, Outcome::Cancelled) => {
                    tally.cancelled += 1;
                }
            }
        }
    }

    /// The worker as the registry shows it.
    fn registration(&self) -> WorkerInfo {
        let report = &self.report;
        let mut me = WorkerInfo::new(
            self.worker.name.clone(),
            self.worker.queues.clone(),
            u32::try_from(self.worker.concurrency).unwrap_or(u32::MAX),
            self.worker.lease,
        );
        me.running = u32::try_from(self.running.len()).unwrap_or(u32::MAX);
        me.succeeded = report.succeeded;
        me.failed = report.failed + report.crashed + report.rejected;
        me.durations = self.durations.clone();
        me
    }

    /// Renews the registration and every running attempt's lease; stops the attempts
    /// whose lease was lost or that were cancelled.
    fn heartbeat(&mut self) {
        self.next_beat = Instant::now() + self.worker.lease / 3;
        // On an error the registration is renewed at the next beat.
        let _ = self.worker.store.worker_seen(&self.registration());
        if self.running.is_empty() {
            return;
        }
        let attempts: Vec<(TaskId, u32)> = self
            .running
            .iter()
            .map(|(id, running)| (*id, running.attempt))
            .collect();
        // On an error the leases are renewed at the next beat, or lost.
        let Ok(beats) = self.worker.store.heartbeat(&attempts, self.worker.lease) else {
            return;
        };
        for ((id, _), beat) in attempts.into_iter().zip(beats) {
            let why = match beat {
                Beat::Renewed => continue,
                Beat::CancelRequested => Stopped::Cancelled,
                Beat::Lost => Stopped::LeaseLost,
            };
            if let Some(running) = self.running.get_mut(&id)
                && running.stopped.is_none()
            {
                running.stopped = Some(why);
                running.cancel.cancel();
            }
        }
    }

    fn stop_all(&mut self, why: Stopped) {
        for running in self.running.values_mut() {
            if running.stopped.is_none() {
                running.stopped = Some(why);
                running.cancel.cancel();
            }
        }
    }
}

/// Whether a storage error may pass if retried (a lock held elsewhere, a full disk that
/// may be freed).
fn passing(error: &crate::QueueError) -> bool {
    matches!(
        error.kind(),
        crate::ErrorKind::Busy
            | crate::ErrorKind::DiskFull
            | crate::ErrorKind::Storage
            | crate::ErrorKind::Unreachable
    )
}
