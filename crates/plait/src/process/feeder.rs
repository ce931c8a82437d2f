//! Feeding a worker: which requests it gets from the pool's queue, and when.
//!
//! An idle worker takes the next request. A busy one takes more (it *pipelines*, so the pipe
//! never runs dry between answers) only while the queue holds more than the idle workers
//! will take and its recent requests *of that task* were quick: a request queued behind a
//! slow one waits for it even if another worker is free. Service times are kept per task, and
//! a task a worker has not answered yet counts as slow: a burst of long tasks after many
//! tiny ones spreads over the workers rather than piling onto the first.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::sync::{Notify, watch};

use super::codec::{self, Kind};
use super::pool::{Payload, Pool, Request, Stop};

/// Arguments at least this large are written straight from the caller's buffer.
const LARGE: usize = 256 * 1024;
/// How much work, by recent service times, a busy worker may hold beyond the one it runs.
const PIPELINE_BUDGET: Duration = Duration::from_millis(1);

/// The requests a worker holds, in the order it will answer them, and how fast it answers.
pub(crate) struct Line {
    held: Mutex<Held>,
    /// Signalled on every answer: the feeder may send more.
    pub(crate) answered: Notify,
}

pub(crate) struct Held {
    pub(crate) queue: VecDeque<Request>,
    /// When the worker last answered; with each request's send time, it gives the time the
    /// worker spent on a request.
    last_answer: Instant,
    /// A running average of that time, per task.
    service: HashMap<&'static str, Duration>,
}

impl Line {
    pub(crate) fn new() -> Line {
        Line {
            held: Mutex::new(Held {
                queue: VecDeque::new(),
                last_answer: Instant::now(),
                service: HashMap::new(),
            }),
            answered: Notify::new(),
        }
    }

    pub(crate) fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Held {
    /// How many requests of `task` the worker may hold: enough to cover a round trip when
    /// that task is quick, one at a time when each takes the whole budget or when the worker
    /// has not run it yet.
    fn depth(&self, task: &str, most: usize) -> usize {
        let service = self.service.get(task).copied().unwrap_or(PIPELINE_BUDGET);
        let quick = PIPELINE_BUDGET.as_nanos() / service.as_nanos().max(1);
        usize::try_from(quick)
            .unwrap_or(usize::MAX)
            .clamp(1, most.max(1))
    }

    /// The task of the request handed over last, which the next one most likely shares.
    fn last_task(&self) -> Option<&'static str> {
        self.queue.back().map(|request| request.task)
    }

    /// Takes the head, which the worker has answered, and learns how long it took.
    pub(crate) fn pop_answered(&mut self) -> Option<Request> {
        let request = self.queue.pop_front()?;
        let now = Instant::now();
        let began = request.sent.map_or(now, |sent| sent.max(self.last_answer));
        let took = now.saturating_duration_since(began);
        self.service
            .entry(request.task)
            .and_modify(|service| *service = (*service * 7 + took) / 8)
            .or_insert(took);
        self.last_answer = now;
        Some(request)
    }

    /// Whether the request at the head was cancelled (it must not keep its worker).
    pub(crate) fn head_cancelled(&self) -> bool {
        self.queue
            .front()
            .is_some_and(|head| head.ticket().is_cancelled())
    }
}

/// What ends a feeder: the pool stopping, or its worker dying.
pub(crate) struct Ended {
    pub(crate) stop: watch::Receiver<Stop>,
    pub(crate) dead: watch::Receiver<bool>,
}

impl Ended {
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.stop.wait_for(|stop| *stop != Stop::Run) => {}
            _ = self.dead.wait_for(|dead| *dead) => {}
        }
    }
}

/// Feeds slot `slot`'s worker, holding at most `most` requests in its pipe, until it has had its `max_tasks_per_worker`, the pool stops,
/// or the worker dies; then closes the worker's input (so that it retires once done). A
/// request in hand then goes back to the queue.
pub(crate) async fn feed(
    pool: Arc<Pool>,
    slot: usize,
    mut stdin: ChildStdin,
    line: Arc<Line>,
    mut ended: Ended,
    most: usize,
) {
    let budget = pool.options.max_tasks_per_worker.unwrap_or(u64::MAX);
    let mut sent = 0_u64;
    let mut out = Vec::with_capacity(64 * 1024);
    while sent < budget {
        let (holding, room) = {
            let held = line.held();
            let room = held.last_task().map_or(1, |task| held.depth(task, most));
            (held.queue.len(), room)
        };
        let request = if holding == 0 {
            pool.idle.fetch_add(1, Ordering::Relaxed);
            let request = tokio::select! {
                request = pool.requests.recv() => request.ok(),
                () = ended.wait() => None,
            };
            pool.idle.fetch_sub(1, Ordering::Relaxed);
            match request {
                Some(request) => request,
                None => return,
            }
        } else {
            let wanted = holding < room && deep_queue(&pool);
            match wanted.then(|| pool.requests.try_recv().ok()).flatten() {
                Some(request) => request,
                None => {
                    tokio::select! {
                        () = line.answered.notified() => continue,
                        () = ended.wait() => return,
                    }
                }
            }
        };
        let mut next = Some(request);
        while let Some(request) = next.take() {
            let task = request.task;
            let Some((tasks, large)) = hand_over(&line, slot, request, &mut out) else {
                continue; // cancelled while queued: never sent
            };
            sent += tasks;
            if let Some(args) = large {
                let written = tokio::select! {
                    written = async {
                        write(&mut stdin, &mut out).await?;
                        stdin.write_all(&args).await
                    } => written.is_ok(),
                    () = ended.wait() => false,
                };
                if !written {
                    return;
                }
            }
            // More at once while the queue is deep: one write for many requests.
            if sent < budget {
                let more = {
                    let held = line.held();
                    held.queue.len() < held.depth(task, most) && deep_queue(&pool)
                };
                if more && let Ok(request) = pool.requests.try_recv() {
                    next = Some(request);
                }
            }
        }
        let written = tokio::select! {
            written = write(&mut stdin, &mut out) => written.is_ok(),
            () = ended.wait() => false,
        };
        if !written {
            return;
        }
    }
}

/// Whether the queue holds more than the idle (or starting) workers will take.
fn deep_queue(pool: &Pool) -> bool {
    pool.requests.len() > pool.idle.load(Ordering::Relaxed)
}

/// Gives `request` to slot `slot`'s worker, unless it was cancelled: encodes it onto `out`
/// and puts it in the line, under the line's lock, so that a cancellation either comes
/// first (and the request is dropped here) or finds it in the line. Returns how many tasks
/// it counts as, and its arguments if they are to be written apart.
fn hand_over(
    line: &Line,
    slot: usize,
    mut request: Request,
    out: &mut Vec<u8>,
) -> Option<(u64, Option<Bytes>)> {
    let mut held = line.held();
    if !request.ticket().send_to(slot) {
        return None;
    }
    request.sent = Some(Instant::now());
    let large = encode(&request, out);
    let tasks = request.payload.tasks();
    held.queue.push_back(request);
    Some((tasks, large))
}

async fn write(stdin: &mut ChildStdin, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        stdin.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// Appends `request`'s frame to `out`; large arguments are returned to be written apart.
fn encode(request: &Request, out: &mut Vec<u8>) -> Option<Bytes> {
    let args = match &request.payload {
        Payload::One(args) => {
            let prefix = codec::call_prefix_len(request.task);
            codec::put_header(out, Kind::Call, request.id, prefix + args.len());
            let flags = if request.timeout.is_some() {
                codec::REPORT_START
            } else {
                0
            };
            codec::put_call_prefix(out, flags, request.task);
            args
        }
        Payload::Batch { items, count } => {
            let prefix = codec::batch_prefix_len(request.task);
            codec::put_header(out, Kind::Batch, request.id, prefix + items.len());
            codec::put_batch_prefix(out, request.task, *count);
            items
        }
    };
    if args.len() >= LARGE {
        return Some(args.clone());
    }
    out.extend_from_slice(args);
    None
}
