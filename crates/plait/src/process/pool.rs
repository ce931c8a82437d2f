//! The runtime side of the process strand: one queue of requests, one supervisor per worker.
//!
//! Spawning a process task puts a [`Request`] on the pool's queue. Each worker slot has a
//! supervisor (a coroutine) that starts a worker process, feeds it requests from the queue
//! a few ahead (so that the pipe never runs dry), reads its answers, and when the process
//! dies (crash, time limit, cancellation, recycling) settles what it held and starts
//! another. See `supervisor.rs`.

use std::sync::atomic::{AtomicU64, AtomicUsize};

use crate::loom::sync::Ordering;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use super::options::ProcessOptions;
use super::spawn::Spawner;
use super::supervisor;
use crate::strand::StrandState;
use crate::{Error, Result};

/// What a request carries to the worker.
pub(crate) enum Payload {
    /// One call's encoded arguments.
    One(Bytes),
    /// A batch: `count` items' encoded arguments back to back, run one after another by
    /// one worker.
    Batch { items: Bytes, count: u32 },
}

impl Payload {
    /// How many tasks it counts as (for recycling).
    pub(crate) fn tasks(&self) -> u64 {
        match self {
            Payload::One(_) => 1,
            Payload::Batch { count, .. } => u64::from(*count),
        }
    }
}

/// The answer to a request sent through a channel: a call's encoded result, or a batch's
/// `BatchDone` body (the count, then each item's outcome).
pub(crate) enum Reply {
    One(Result<Bytes>),
    Batch(Result<Bytes>),
    /// The batch's worker died running item `item`: that item failed with `error`; those
    /// before it ran (their results lost with the worker), those after did not.
    BatchLost {
        item: u32,
        error: Error,
    },
}

/// Completes a request where it is answered, with no channel between: decodes the result
/// and hands it to the task's handle (see `super::remote`).
pub(crate) trait Complete: Send + Sync {
    /// The worker's answer (or the error that stands for it); called once.
    fn complete(&self, outcome: Result<&[u8]>);
    /// Where the request is, for cancelling it.
    fn ticket(&self) -> &Ticket;
}

/// Where a request's answer goes.
pub(crate) enum Replier {
    /// A channel, to a coroutine that awaits it (batches, calls by name).
    Channel {
        sender: oneshot::Sender<Reply>,
        ticket: Arc<Ticket>,
    },
    /// Straight to the task's handle.
    Direct(Arc<dyn Complete>),
}

impl Replier {
    pub(crate) fn ticket(&self) -> &Ticket {
        match self {
            Replier::Channel { ticket, .. } => ticket,
            Replier::Direct(complete) => complete.ticket(),
        }
    }
}

/// One task (or batch) on its way to a worker.
pub(crate) struct Request {
    pub(crate) id: u64,
    pub(crate) task: &'static str,
    pub(crate) payload: Payload,
    /// A hard time limit, counted from when the worker starts the task.
    pub(crate) timeout: Option<Duration>,
    /// Further attempts if the worker dies under it.
    pub(crate) retries_left: u32,
    /// How many times it ran to its end on a worker that then died before its answer came
    /// (see `supervisor::settle`).
    pub(crate) lost_answers: u8,
    /// Taken when the request is answered; a request dropped unanswered reports a
    /// cancellation.
    reply: Option<Replier>,
    /// When it was written to its worker.
    pub(crate) sent: Option<Instant>,
}

impl Request {
    pub(crate) fn new(
        id: u64,
        pool: &Pool,
        task: &'static str,
        payload: Payload,
        timeout: Option<Duration>,
        reply: Replier,
    ) -> Request {
        Request {
            id,
            task,
            payload,
            timeout,
            retries_left: pool.options.crash_retries,
            lost_answers: 0,
            reply: Some(reply),
            sent: None,
        }
    }

    pub(crate) fn ticket(&self) -> &Ticket {
        self.reply
            .as_ref()
            .expect("a request holds its replier until answered")
            .ticket()
    }

    /// Answers a call with its encoded result, or a batch with its `BatchDone` body.
    pub(crate) fn complete(mut self, outcome: Result<&[u8]>) {
        match self.reply.take() {
            Some(Replier::Direct(complete)) => complete.complete(outcome),
            Some(Replier::Channel { sender, .. }) => {
                let bytes = outcome.map(Bytes::copy_from_slice);
                let reply = match self.payload {
                    Payload::One(_) => Reply::One(bytes),
                    Payload::Batch { .. } => Reply::Batch(bytes),
                };
                // Nobody may be listening: a cancelled task's answer is dropped.
                let _ = sender.send(reply);
            }
            None => {}
        }
    }

    /// Fails the request.
    pub(crate) fn fail(self, error: Error) {
        self.complete(Err(error));
    }

    /// Fails a batch whose worker died on item `item`; a call fails with `error` alone.
    pub(crate) fn fail_on_item(mut self, item: u32, error: Error) {
        match (&self.payload, self.reply.take()) {
            (Payload::Batch { .. }, Some(Replier::Channel { sender, .. })) => {
                let _ = sender.send(Reply::BatchLost { item, error });
            }
            (_, reply) => {
                self.reply = reply;
                self.fail(error);
            }
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(Replier::Direct(complete)) = self.reply.take() {
            complete.complete(Err(Error::Cancelled));
        }
        // A channel's sender, dropped, tells its receiver the same.
    }
}

/// Where a request is, so that cancelling it can reach the worker that runs it.
///
/// `0` while queued, `slot + 1` once a worker holds it, [`Ticket::CANCELLED`] once
/// cancelled. Whichever of a feeder sending the request and a handle cancelling it comes
/// first decides: a request cancelled before it is sent is never sent, and one cancelled
/// after is known to the canceller by its slot (the loom model below checks both races).
pub(crate) struct Ticket(TicketState);

type TicketState = crate::loom::sync::AtomicU64;

impl Default for Ticket {
    fn default() -> Self {
        Ticket(TicketState::new(0))
    }
}

impl Ticket {
    const CANCELLED: u64 = u64::MAX;

    /// Hands the request to `slot`'s worker; `false` if it was cancelled (drop it unrun).
    pub(crate) fn send_to(&self, slot: usize) -> bool {
        self.0
            .compare_exchange(0, slot as u64 + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Puts the request back in the queue (its worker died before running it).
    pub(crate) fn requeue(&self) -> bool {
        let held = self.0.load(Ordering::Acquire);
        held != Self::CANCELLED
            && self
                .0
                .compare_exchange(held, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Cancels; returns the slot whose worker holds the request, if one does.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire) == Self::CANCELLED
    }

    pub(crate) fn cancel(&self) -> Option<usize> {
        match self.0.swap(Self::CANCELLED, Ordering::AcqRel) {
            0 | Self::CANCELLED => None,
            slot => Some(slot as usize - 1),
        }
    }
}

/// Messages to a slot's supervisor from elsewhere.
pub(crate) enum Control {
    /// A request this slot's worker holds was cancelled: if it is at the head (running), the
    /// worker is killed; if not yet, it will be when it gets there.
    Cancel,
}

/// Room in a frame beyond its payload: header, task name, a batch's count.
const FRAME_SLACK: usize = 64 * 1024 + 64;

/// Whether the pool runs, drains (workers finish what they hold and exit), or is killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stop {
    Run,
    Drain,
    Kill,
}

pub(crate) struct Pool {
    pub(crate) options: ProcessOptions,
    /// The strand's state: requests answered directly (not through a coroutine) are booked
    /// as finished there.
    pub(crate) strand: Arc<StrandState>,
    pub(crate) queue: async_channel::Sender<Request>,
    pub(crate) requests: async_channel::Receiver<Request>,
    pub(crate) controls: Vec<mpsc::UnboundedSender<Control>>,
    pub(crate) stop: watch::Sender<Stop>,
    /// Why the pool cannot serve, once it cannot: every request fails with it.
    broken: OnceLock<Error>,
    next_id: AtomicU64,
    /// Workers serving now; `start_processes` waits for it to reach the worker count.
    pub(crate) serving: watch::Sender<usize>,
    /// Supervisors still running, for a synchronous stop to wait on.
    supervisors: Mutex<usize>,
    supervisors_done: Condvar,
    /// Starts the worker processes (from a thread that outlives them).
    pub(crate) spawner: Spawner,
    /// Workers that would take a request at once: starting, or waiting with nothing in
    /// their pipe. A busy worker takes more only while the queue is longer than this.
    pub(crate) idle: AtomicUsize,
    /// Worker processes started so far, replacements included (for tests and metrics).
    pub(crate) started: AtomicUsize,
}

impl Pool {
    /// Starts a supervisor per worker on `handle`; workers start at once, in parallel.
    ///
    /// # Errors
    ///
    /// [`Error::WorkerStart`] if the thread that starts worker processes cannot start.
    pub(crate) fn start(
        options: ProcessOptions,
        strand: Arc<StrandState>,
        handle: &tokio::runtime::Handle,
    ) -> Result<Arc<Pool>> {
        let spawner = Spawner::start(handle.clone()).map_err(|error| Error::WorkerStart {
            reason: format!("cannot start the thread that starts workers: {error}"),
        })?;
        let workers = options.worker_count();
        let (queue, requests) = async_channel::unbounded();
        let (controls, receivers): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
        let pool = Arc::new(Pool {
            options,
            strand,
            spawner,
            queue,
            requests,
            controls,
            stop: watch::Sender::new(Stop::Run),
            broken: OnceLock::new(),
            next_id: AtomicU64::new(1),
            serving: watch::Sender::new(0),
            supervisors: Mutex::new(workers),
            supervisors_done: Condvar::new(),
            started: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
        });
        for (slot, control) in receivers.into_iter().enumerate() {
            // Counted out however the supervisor ends: returned, panicked, or dropped with
            // the runtime.
            let done = SupervisorDone(Arc::clone(&pool));
            handle.spawn(async move {
                supervisor::supervise(Arc::clone(&done.0), slot, control).await;
                drop(done);
            });
        }
        Ok(pool)
    }

    /// The largest frame either side sends: a payload and room for the frame around it (a
    /// batch's answer larger than this fails the batch, and its items run one by one).
    pub(crate) fn frame_limit(&self) -> usize {
        self.options.payload_limit.saturating_add(FRAME_SLACK)
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues a request, or fails it if the pool cannot serve.
    pub(crate) fn submit(&self, request: Request) {
        if let Some(error) = self.broken.get() {
            return request.fail(error.clone());
        }
        if let Err(
            async_channel::TrySendError::Full(request)
            | async_channel::TrySendError::Closed(request),
        ) = self.queue.try_send(request)
        {
            request.fail(self.broken.get().cloned().unwrap_or(Error::Shutdown));
        }
    }

    /// Puts a request back in the queue: its worker died before answering it.
    pub(crate) fn requeue(&self, request: Request) {
        if *self.stop.borrow() != Stop::Run {
            return request.fail(Error::Cancelled);
        }
        if request.ticket().requeue() {
            self.submit(request);
        }
    }

    /// Marks the pool unable to serve and fails every queued request with `error`.
    pub(crate) fn break_with(&self, error: Error) {
        let error = self.broken.get_or_init(|| error).clone();
        self.queue.close();
        // Wakes `wait_serving`, which checks for a break whenever the count changes.
        self.serving.send_modify(|_| {});
        while let Ok(request) = self.requests.try_recv() {
            request.fail(error.clone());
        }
    }

    pub(crate) fn broken(&self) -> Option<&Error> {
        self.broken.get()
    }

    /// Waits until every worker serves, or the pool breaks.
    pub(crate) async fn wait_serving(&self) -> Result<()> {
        let mut serving = self.serving.subscribe();
        let workers = self.options.worker_count();
        let mut stop = self.stop.subscribe();
        loop {
            if let Some(error) = self.broken() {
                return Err(error.clone());
            }
            if *serving.borrow_and_update() >= workers {
                return Ok(());
            }
            tokio::select! {
                changed = serving.changed() => if changed.is_err() { return Err(Error::Shutdown) },
                _ = stop.changed() => return Err(Error::Shutdown),
            }
        }
    }

    /// Stops the workers (`Drain`: they finish what they hold; `Kill`: at once) and waits,
    /// up to `limit`, for every supervisor to have reaped its process.
    pub(crate) fn stop(&self, how: Stop, limit: Duration) {
        self.stop.send_if_modified(|stop| {
            let raise = how > *stop;
            if raise {
                *stop = how;
            }
            raise
        });
        self.queue.close();
        while let Ok(request) = self.requests.try_recv() {
            request.fail(Error::Cancelled);
        }
        let deadline = Instant::now() + limit;
        let mut running = self
            .supervisors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while *running > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            running = self
                .supervisors_done
                .wait_timeout(running, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Counts a supervisor out when dropped.
struct SupervisorDone(Arc<Pool>);

impl Drop for SupervisorDone {
    fn drop(&mut self) {
        let pool = &self.0;
        let mut running = pool
            .supervisors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *running -= 1;
        pool.supervisors_done.notify_all();
    }
}

#[cfg(all(test, plait_loom))]
mod loom_test {
    //! Run with `RUSTFLAGS="--cfg plait_loom" cargo test -p plait --lib --release loom_test`.

    use loom::sync::Arc;

    use super::Ticket;

    #[test]
    fn a_request_is_sent_or_its_cancel_finds_where_it_went_never_neither() {
        loom::model(|| {
            let ticket = Arc::new(Ticket::default());
            let feeder = {
                let ticket = Arc::clone(&ticket);
                loom::thread::spawn(move || ticket.send_to(3))
            };
            let found = ticket.cancel();
            let sent = feeder.join().unwrap();
            // Sent: the canceller learns the slot (and kills the worker if it runs it).
            // Not sent: the feeder drops the request unrun.
            assert_eq!(sent, found == Some(3));
        });
    }

    #[test]
    fn a_cancel_racing_a_requeue_always_wins() {
        loom::model(|| {
            let ticket = Arc::new(Ticket::default());
            assert!(ticket.send_to(1));
            let supervisor = {
                let ticket = Arc::clone(&ticket);
                loom::thread::spawn(move || ticket.requeue())
            };
            let found = ticket.cancel();
            let requeued = supervisor.join().unwrap();
            // Put back before the cancel: the cancel finds it queued (no slot to stop).
            assert!(!(requeued && found.is_some()));
            // Either way it is never sent again.
            assert!(!ticket.send_to(2));
        });
    }
}
