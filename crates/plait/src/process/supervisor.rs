//! One worker slot: start a process, feed it, read it, and when it dies settle what it held
//! and start another.
//!
//! A worker answers requests in the order it received them, one at a time, so the requests
//! it holds form a queue whose head is the one running. When the process dies, the head is
//! the task that killed it (or that was stopped: time limit, cancellation), and everything
//! behind it never started and goes back to the pool's queue for another worker.

use std::collections::VecDeque;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use super::WorkerExit;
use super::codec::{self, Frame, Kind};
use super::pool::{Control, Payload, Pool, Request, Stop};
use super::worker::{PARENT_ENV, PROTOCOL, WORKER_ENV, WORKER_TEST_NAME};
use crate::Error;

/// Arguments at least this large are written straight from the caller's buffer.
const LARGE: usize = 256 * 1024;
/// How much of a worker's standard error is kept to explain its death.
const STDERR_TAIL: usize = 4096;
/// How much a worker may print before `plait::init` takes its standard output.
const MAX_PREAMBLE: usize = 1 << 20;
/// How much work, by recent service times, a worker may hold beyond the request it runs.
const PIPELINE_BUDGET: Duration = Duration::from_millis(1);
/// The service time assumed of a new worker.
const INITIAL_SERVICE: Duration = Duration::from_micros(50);

/// Runs slot `slot` until the pool stops.
pub(crate) async fn supervise(
    pool: Arc<Pool>,
    slot: usize,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let mut stop = pool.stop.subscribe();
    let mut failures = 0_u32;
    let mut served = false;
    while *stop.borrow_and_update() == Stop::Run {
        // A starting worker counts as idle: work should wait for it rather than pile up
        // behind a busy one.
        pool.idle.fetch_add(1, Ordering::Relaxed);
        let started = Worker::start(&pool).await;
        pool.idle.fetch_sub(1, Ordering::Relaxed);
        match started {
            Ok(worker) => {
                served = true;
                failures = 0;
                pool.serving.send_modify(|n| *n += 1);
                worker.serve(&pool, slot, &mut control, &mut stop).await;
                pool.serving.send_modify(|n| *n -= 1);
            }
            // A worker that starts but does not answer will not answer next time either.
            Err(StartError::Handshake(error)) if !served => return pool.break_with(error),
            Err(StartError::Handshake(error) | StartError::Spawn(error)) => {
                failures += 1;
                if failures > 5 {
                    return pool.break_with(error);
                }
                tracing::warn!(%error, slot, "could not start a worker process; retrying");
                let backoff = Duration::from_millis(10 << failures);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}

enum StartError {
    /// The OS could not start the process: may pass.
    Spawn(Error),
    /// The process started but did not become a worker: will not pass.
    Handshake(Error),
}

/// Why the runtime killed a worker, which decides what its running task reports.
#[derive(Clone, Debug)]
enum Killed {
    TimedOut,
    Cancelled,
    Codec(String),
    Stopped,
}

/// The requests a worker holds, in the order it will answer them, and how fast it answers.
struct Line {
    held: Mutex<Held>,
    /// Signalled on every answer: the feeder may send more.
    answered: Notify,
}

struct Held {
    queue: VecDeque<Request>,
    /// When the worker last answered; with each request's send time, it gives the time the
    /// worker spent on a request.
    last_answer: std::time::Instant,
    /// A running average of that time.
    service: Duration,
}

impl Line {
    fn new() -> Line {
        Line {
            held: Mutex::new(Held {
                queue: VecDeque::new(),
                last_answer: std::time::Instant::now(),
                service: INITIAL_SERVICE,
            }),
            answered: Notify::new(),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Held {
    /// How many requests the worker may hold: enough to cover a round trip when its
    /// requests are quick, one at a time when they are slow (a request queued behind a slow
    /// one waits for it even if another worker is free).
    fn depth(&self, most: usize) -> usize {
        let quick = PIPELINE_BUDGET.as_nanos() / self.service.as_nanos().max(1);
        usize::try_from(quick)
            .unwrap_or(usize::MAX)
            .clamp(2, most.max(2))
    }
}

struct Worker {
    child: Child,
    /// Taken by the feeder once the worker serves.
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    buf: BytesMut,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_done: tokio::task::JoinHandle<()>,
}

impl Worker {
    async fn start(pool: &Pool) -> Result<Worker, StartError> {
        let exe = std::env::current_exe().map_err(|error| {
            StartError::Spawn(Error::WorkerStart {
                reason: format!(
                    "cannot find the current executable to run it as a worker: {error}"
                ),
            })
        })?;
        let mut child = tokio::process::Command::new(&exe)
            // Read by a test harness as a filter for the test `plait::test_worker!` defines;
            // never seen by a program that calls `plait::init` first.
            .args([WORKER_TEST_NAME, "--nocapture", "--test-threads=1", "-q"])
            .env(WORKER_ENV, PROTOCOL)
            .env(PARENT_ENV, std::process::id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                StartError::Spawn(Error::WorkerStart {
                    reason: format!("cannot start {} as a worker: {error}", exe.display()),
                })
            })?;
        pool.started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable!("all three were piped");
        };
        let tail = Arc::new(Mutex::new(Vec::new()));
        let stderr_done = tokio::spawn(forward_stderr(stderr, Arc::clone(&tail)));
        let mut worker = Worker {
            child,
            stdin: Some(stdin),
            stdout,
            buf: BytesMut::with_capacity(64 * 1024),
            stderr: tail,
            stderr_done,
        };
        let limit = pool.options.start_timeout;
        match tokio::time::timeout(limit, worker.handshake(pool)).await {
            Ok(Ok(())) => Ok(worker),
            Ok(Err(reason)) => Err(StartError::Handshake(worker.refused(reason).await)),
            Err(_) => {
                let reason = format!("it did not answer within {limit:?}");
                Err(StartError::Handshake(worker.refused(reason).await))
            }
        }
    }

    /// Sends `Init`, skips what the program printed before `plait::init`, reads `Hello`.
    async fn handshake(&mut self, pool: &Pool) -> Result<(), String> {
        let init = codec::Init {
            frame_limit: pool.options.payload_limit as u64,
            memory_limit: pool.options.memory_limit,
            initializer: pool
                .options
                .initializer
                .as_ref()
                .map(|(name, args)| ((*name).to_owned(), args.clone())),
        };
        let body = postcard::to_allocvec(&init).map_err(|error| error.to_string())?;
        let frame = codec::frame(Kind::Init, 0, &body);
        // A worker that exits at once closes the pipe: its exit status explains it better.
        if let Some(stdin) = &mut self.stdin {
            let _ = stdin.write_all(&frame).await;
        }
        loop {
            if let Some(at) = find(&self.buf, codec::MAGIC) {
                let _ = self.buf.split_to(at + codec::MAGIC.len());
                break;
            }
            if self.buf.len() > MAX_PREAMBLE {
                return Err(format!(
                    "it printed {} bytes without answering",
                    self.buf.len()
                ));
            }
            if self.read().await? == 0 {
                return Err("it exited without answering".to_owned());
            }
        }
        let limit = frame_limit(pool);
        let len = loop {
            if codec::decode(&self.buf, limit)
                .map_err(|error| error.to_string())?
                .is_some()
            {
                break codec::decode(&self.buf, limit)
                    .ok()
                    .flatten()
                    .map_or(0, |(_, len)| len);
            }
            if self.read().await? == 0 {
                return Err("it exited during the handshake".to_owned());
            }
        };
        let frame = self.buf.split_to(len);
        let (frame, _) = codec::decode(&frame, limit)
            .ok()
            .flatten()
            .ok_or("the handshake frame went away")?;
        match frame.kind {
            Kind::Hello => Ok(()),
            Kind::Done => {
                let failure = codec::parse_done(frame.body).map_err(|e| e.to_string())?;
                let name = init.initializer.map(|(name, _)| name).unwrap_or_default();
                Err(match failure {
                    Err(failure) => format!(
                        "its initializer {name} failed: {}",
                        failure.into_error(&name)
                    ),
                    Ok(_) => "it answered the handshake with a result".to_owned(),
                })
            }
            other => Err(format!("it answered the handshake with {other:?}")),
        }
    }

    /// The error for a worker that did not start: what it said and how it ended.
    async fn refused(mut self, reason: String) -> Error {
        let _ = self.child.start_kill();
        let status = self.child.wait().await.ok();
        let stderr = self.stderr_tail().await;
        let status = status.map_or_else(String::new, |s| {
            format!(" (it ended with {})", WorkerExit::from(s))
        });
        Error::WorkerStart {
            reason: format!(
                "a worker process was started but {reason}{status}. Call plait::init() first \
                 thing in main (or invoke plait::test_worker!() once in a test binary){}",
                if stderr.is_empty() {
                    String::new()
                } else {
                    format!("; its last words: {stderr}")
                }
            ),
        }
    }

    async fn read(&mut self) -> Result<usize, String> {
        self.stdout
            .read_buf(&mut self.buf)
            .await
            .map_err(|error| format!("reading its output failed: {error}"))
    }

    /// Waits (briefly) for the rest of the worker's standard error, and returns its tail.
    async fn stderr_tail(&mut self) -> String {
        let _ = tokio::time::timeout(Duration::from_millis(200), &mut self.stderr_done).await;
        let tail = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&tail).trim().to_owned()
    }

    /// Serves until the process ends; settles what it held.
    async fn serve(
        mut self,
        pool: &Arc<Pool>,
        slot: usize,
        control: &mut mpsc::UnboundedReceiver<Control>,
        stop: &mut watch::Receiver<Stop>,
    ) {
        let line = Arc::new(Line::new());
        let stdin = self.stdin.take().expect("a started worker has its input");
        let (dead, dead_rx) = watch::channel(false);
        let feeder = tokio::spawn(feed(
            Arc::clone(pool),
            slot,
            stdin,
            Arc::clone(&line),
            Ended {
                stop: stop.clone(),
                dead: dead_rx,
            },
        ));
        let mut killed: Option<Killed> = None;
        let mut deadline: Option<(u64, Instant)> = None;
        let limit = frame_limit(pool);
        loop {
            match codec::decode(&self.buf, limit) {
                Ok(Some((frame, len))) => {
                    if let Err(reason) = answer(&line, frame, &mut deadline) {
                        self.kill(&mut killed, Killed::Codec(reason));
                    }
                    self.buf.advance(len);
                    continue;
                }
                Ok(None) => self.buf.reserve(codec::missing(&self.buf)),
                Err(error) => {
                    self.kill(&mut killed, Killed::Codec(error.to_string()));
                    self.buf.clear();
                }
            }
            let due = deadline.map(|(_, at)| at);
            tokio::select! {
                read = self.stdout.read_buf(&mut self.buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                },
                Some(Control::Cancel(id)) = control.recv() => {
                    if line.held().queue.front().is_some_and(|head| head.id == id) {
                        self.kill(&mut killed, Killed::Cancelled);
                    }
                }
                () = sleep_until(due), if due.is_some() => {
                    deadline = None;
                    self.kill(&mut killed, Killed::TimedOut);
                }
                Ok(_) = stop.wait_for(|stop| *stop == Stop::Kill), if killed.is_none() => {
                    self.kill(&mut killed, Killed::Stopped);
                }
            }
        }
        // The feeder hands back what it holds rather than be aborted with it.
        let _ = dead.send(true);
        let _ = feeder.await;
        let status = self.child.wait().await;
        let stderr = self.stderr_tail().await;
        let held: Vec<Request> = line.held().queue.drain(..).collect();
        settle(pool, held, killed, status, &stderr);
    }

    fn kill(&mut self, killed: &mut Option<Killed>, why: Killed) {
        if killed.is_none() {
            *killed = Some(why);
        }
        let _ = self.child.start_kill();
    }
}

/// Settles the requests a dead worker held, in the order it would have answered them.
///
/// A worker flushes its answers only when it has no further request waiting, so when it
/// dies holding several, any of them may have run (their answers lost with it) and any may
/// be the one that killed it. Those all run again, each alone on a worker (`solo`), and are
/// charged nothing; a request that dies alone is known to be the culprit and is charged
/// with the crash. A time limit, by contrast, names its task exactly (the worker reported
/// the start), and the requests behind it never ran.
fn settle(
    pool: &Pool,
    held: Vec<Request>,
    killed: Option<Killed>,
    status: io::Result<ExitStatus>,
    stderr: &str,
) {
    let alone = held.len() == 1;
    let mut held = held.into_iter();
    let Some(mut head) = held.next() else {
        return;
    };
    let task = head.task.to_owned();
    let (error, rest_ran) = match killed {
        Some(Killed::TimedOut) => (Error::TimedOut, false),
        Some(Killed::Stopped) => (Error::Cancelled, false),
        Some(Killed::Cancelled) => (Error::Cancelled, true),
        Some(Killed::Codec(reason)) => (Error::Codec { task, reason }, true),
        None if !alone => {
            for request in std::iter::once(head).chain(held) {
                pool.requeue_solo(request);
            }
            return;
        }
        None => {
            let exit = status.map_or(WorkerExit::Unknown, WorkerExit::from);
            let allocation_failed = stderr.contains("memory allocation of");
            let error = match pool.options.memory_limit {
                Some(limit) if allocation_failed => Error::MemoryLimit { task, limit },
                _ if head.retries_left > 0 => {
                    head.retries_left -= 1;
                    tracing::warn!(task, %exit, "a worker died under a task; running it again");
                    return pool.requeue_solo(head);
                }
                _ => Error::WorkerLost {
                    task,
                    exit,
                    stderr: stderr.to_owned(),
                },
            };
            (error, false)
        }
    };
    head.fail(error);
    for request in held {
        if rest_ran {
            pool.requeue_solo(request);
        } else {
            pool.requeue(request);
        }
    }
}

/// The largest frame a worker may send: a batch's answer carries many results (each
/// checked against the payload limit by the worker).
fn frame_limit(pool: &Pool) -> usize {
    pool.options
        .payload_limit
        .saturating_mul(2)
        .saturating_add(1 << 20)
}

/// Handles one frame from a serving worker.
fn answer(
    line: &Line,
    frame: Frame<'_>,
    deadline: &mut Option<(u64, Instant)>,
) -> Result<(), String> {
    let mut held = line.held();
    let Some(head) = held.queue.front() else {
        return Err(format!(
            "an unexpected {:?} frame from an idle worker",
            frame.kind
        ));
    };
    if head.id != frame.id {
        return Err(format!(
            "a {:?} frame for request {} while {} runs",
            frame.kind, frame.id, head.id
        ));
    }
    match frame.kind {
        Kind::Started => {
            if let Some(limit) = head.timeout {
                *deadline = Some((head.id, Instant::now() + limit));
            }
            return Ok(());
        }
        Kind::Done | Kind::BatchDone => {}
        other => return Err(format!("an unexpected {other:?} frame")),
    }
    let request = held.queue.pop_front().expect("checked above");
    let now = std::time::Instant::now();
    let began = request.sent.map_or(now, |sent| sent.max(held.last_answer));
    held.service = (held.service * 7 + now.saturating_duration_since(began)) / 8;
    held.last_answer = now;
    drop(held);
    line.answered.notify_one();
    if deadline.is_some_and(|(id, _)| id == request.id) {
        *deadline = None;
    }
    let task = request.task;
    match (frame.kind, &request.payload) {
        (Kind::Done, _) => {
            // A failed batch is answered with `Done` too: the failure stands for every item.
            let outcome = codec::parse_done(frame.body).map_err(|e| e.to_string())?;
            request.answer(outcome.map_err(|failure| failure.into_error(task)));
        }
        (Kind::BatchDone, Payload::Batch { .. }) => request.answer(Ok(frame.body)),
        (kind, _) => return Err(format!("a {kind:?} answer to the wrong kind of request")),
    }
    Ok(())
}

/// What ends a feeder: the pool stopping, or its worker dying.
struct Ended {
    stop: watch::Receiver<Stop>,
    dead: watch::Receiver<bool>,
}

impl Ended {
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.stop.wait_for(|stop| *stop != Stop::Run) => {}
            _ = self.dead.wait_for(|dead| *dead) => {}
        }
    }
}

/// Feeds a worker requests from the pool's queue. An idle worker takes the next request;
/// a busy one takes more (up to its [depth](Held::depth)) only while the queue holds more
/// than the idle workers will take, so that work spreads before it piles up.
///
/// Ends (closing the worker's input, so that it retires once done) when the worker has had
/// its `max_tasks_per_worker`, when the pool stops, or when the worker dies; a request it
/// holds then goes back to the queue.
async fn feed(
    pool: Arc<Pool>,
    slot: usize,
    mut stdin: ChildStdin,
    line: Arc<Line>,
    mut ended: Ended,
) {
    let budget = pool.options.max_tasks_per_worker.unwrap_or(u64::MAX);
    let most = pool.options.pipeline_depth;
    let mut sent = 0_u64;
    let mut out = Vec::with_capacity(64 * 1024);
    while sent < budget {
        let (held, room, lone) = {
            let held = line.held();
            let lone = held.queue.front().is_some_and(|head| head.solo);
            (held.queue.len(), held.depth(most), lone)
        };
        let request = if held == 0 {
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
            let wanted =
                !lone && held < room && pool.requests.len() > pool.idle.load(Ordering::Relaxed);
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
        if request.solo && held > 0 {
            // Alone in the pipe: wait until the worker has answered everything else.
            loop {
                if line.held().queue.is_empty() {
                    break;
                }
                tokio::select! {
                    () = line.answered.notified() => {}
                    () = ended.wait() => return pool.requeue(request),
                }
            }
        }
        let mut next = Some(request);
        while let Some(mut request) = next.take() {
            let solo = request.solo;
            if request.ticket().send_to(slot) {
                sent += request.payload.tasks();
                request.sent = Some(std::time::Instant::now());
                let large = encode(&request, &mut out);
                line.held().queue.push_back(request);
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
            }
            // More at once while the queue is deep: one write for many requests.
            if !solo && sent < budget {
                let held = line.held();
                let more = held.queue.len() < held.depth(most)
                    && pool.requests.len() > pool.idle.load(Ordering::Relaxed);
                drop(held);
                if more && let Ok(request) = pool.requests.try_recv() {
                    if request.solo {
                        pool.requeue(request);
                    } else {
                        next = Some(request);
                    }
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

async fn write(stdin: &mut ChildStdin, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        stdin.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// Appends `request`'s frame to `out`; large arguments are returned to be written apart.
fn encode(request: &Request, out: &mut Vec<u8>) -> Option<Bytes> {
    let (args, prefix) = match &request.payload {
        Payload::One(args) => (args, codec::call_prefix_len(request.task)),
        Payload::Batch { items, .. } => (items, codec::batch_prefix_len(request.task)),
    };
    match &request.payload {
        Payload::One(_) => {
            codec::put_header(out, Kind::Call, request.id, prefix + args.len());
            let flags = if request.timeout.is_some() {
                codec::REPORT_START
            } else {
                0
            };
            codec::put_call_prefix(out, flags, request.task);
        }
        Payload::Batch { count, .. } => {
            codec::put_header(out, Kind::Batch, request.id, prefix + args.len());
            codec::put_batch_prefix(out, request.task, *count);
        }
    }
    if args.len() >= LARGE {
        return Some(args.clone());
    }
    out.extend_from_slice(args);
    None
}

/// Copies a worker's standard error to ours, keeping its tail to explain a death.
async fn forward_stderr(mut stderr: ChildStderr, tail: Arc<Mutex<Vec<u8>>>) {
    let mut chunk = vec![0; 8192];
    while let Ok(n) = stderr.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        let _ = io::Write::write_all(&mut io::stderr(), &chunk[..n]);
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > STDERR_TAIL {
            let excess = tail.len() - STDERR_TAIL;
            tail.drain(..excess);
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
