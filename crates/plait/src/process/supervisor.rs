//! One worker slot: start a process, feed it, read it, and when it dies settle what it held
//! and start another.
//!
//! A worker answers requests in the order it received them, one at a time, so the requests
//! it holds form a queue (the *line*) whose head is the one running. When the process dies,
//! [`settle`] decides what each held request reports.

use std::collections::VecDeque;
use std::io;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Buf;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::WorkerExit;
use super::codec::{self, Frame, Kind};
use super::feeder::{Ended, Line, feed};
use super::last_words::LastWords;
use super::pool::{Control, Payload, Pool, Request, Stop};
use super::slot::{Facts, Slot};
use super::spawn::{StartError, Worker};
use crate::Error;

/// Runs slot `slot` until the pool stops (or breaks).
pub(crate) async fn supervise(
    pool: Arc<Pool>,
    slot: usize,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let mut stop = pool.stop.subscribe();
    let mut failures = 0_u32;
    let mut served = false;
    while *stop.borrow_and_update() == Stop::Run && pool.broken().is_none() {
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
                serve(worker, &pool, slot, &mut control, &mut stop).await;
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

/// Why the runtime killed a worker, which decides what the request at the head reports.
#[derive(Clone, Debug)]
enum Killed {
    TimedOut,
    Cancelled,
    Codec(String),
    Stopped,
}

/// Serves until the process ends; settles what it held.
async fn serve(
    mut worker: Worker,
    pool: &Arc<Pool>,
    slot: usize,
    control: &mut mpsc::UnboundedReceiver<Control>,
    stop: &mut watch::Receiver<Stop>,
) {
    let line = Arc::new(Line::new());
    let stdin = worker.stdin.take().expect("a started worker has its input");
    let (dead, dead_rx) = watch::channel(false);
    // A worker that cannot say which request it runs gets one at a time, so that the one
    // it holds is the one it runs.
    let depth = if worker.slot.get().is_some() {
        pool.options.pipeline_depth
    } else {
        1
    };
    let feeder = tokio::spawn(feed(
        Arc::clone(pool),
        slot,
        stdin,
        Arc::clone(&line),
        Ended {
            stop: stop.clone(),
            dead: dead_rx,
        },
        depth,
    ));
    let mut killed: Option<Killed> = None;
    let mut deadline: Option<Instant> = None;
    let limit = pool.frame_limit();
    loop {
        // Once killed, answers still in the pipe are not read: the request at the head when
        // the kill was decided is the one the kill was for.
        if killed.is_none() {
            match codec::decode(&worker.buf, limit) {
                Ok(Some((frame, len))) => {
                    match take_answer(&line, frame, &mut deadline) {
                        Ok(()) if line.held().head_cancelled() => {
                            kill(&mut worker, &mut killed, Killed::Cancelled);
                        }
                        Ok(()) => {}
                        Err(reason) => kill(&mut worker, &mut killed, Killed::Codec(reason)),
                    }
                    worker.buf.advance(len);
                    continue;
                }
                Ok(None) => worker.buf.reserve(codec::missing(&worker.buf)),
                Err(error) => kill(&mut worker, &mut killed, Killed::Codec(error.to_string())),
            }
        } else {
            worker.buf.clear();
        }
        tokio::select! {
            read = worker.stdout.read_buf(&mut worker.buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            Some(Control::Cancel) = control.recv(), if killed.is_none() => {
                if line.held().head_cancelled() {
                    kill(&mut worker, &mut killed, Killed::Cancelled);
                }
            }
            () = sleep_until(deadline), if deadline.is_some() && killed.is_none() => {
                kill(&mut worker, &mut killed, Killed::TimedOut);
            }
            Ok(_) = stop.wait_for(|stop| *stop == Stop::Kill), if killed.is_none() => {
                kill(&mut worker, &mut killed, Killed::Stopped);
            }
        }
    }
    // The feeder hands back what it holds rather than be aborted with it.
    let _ = dead.send(true);
    let _ = feeder.await;
    let status = worker.child.wait().await;
    let words = worker.last_words().await;
    let facts = worker.slot.get().map(Slot::read);
    let held = std::mem::take(&mut line.held().queue);
    settle(
        pool,
        held,
        killed,
        Death {
            status,
            facts,
            words,
        },
    );
}

fn kill(worker: &mut Worker, killed: &mut Option<Killed>, why: Killed) {
    if killed.is_none() {
        *killed = Some(why);
    }
    worker.child.kill();
}

/// What is known of a worker's death.
struct Death {
    status: io::Result<ExitStatus>,
    /// What the worker last said it was doing, if it has a slot to say it in.
    facts: Option<Facts>,
    /// What it wrote to standard error while on its last request.
    words: LastWords,
}

/// Settles the requests a dead worker held, in the order it would have answered them.
///
/// A kill by the runtime names the request at the head of the line (the time limit or the
/// cancellation was its). Otherwise the worker's slot names the request it was on: that
/// one alone is charged with the death, against its crash budget. The requests after it
/// never started, and go back to the queue uncharged. Those before it finished, but their
/// answers, still in the worker's writer, died with it: they go back uncharged too, and run
/// a second time. A worker that died between requests charges nobody, but the request it
/// finished last is counted: one after which its worker died [`LOST_ANSWERS`] times over
/// is charged the next. A worker without a slot (see `spawn.rs`) is sent one request at a
/// time, so the one it held is the one it was running.
fn settle(pool: &Pool, mut held: VecDeque<Request>, killed: Option<Killed>, death: Death) {
    let exit = death
        .status
        .as_ref()
        .map_or(WorkerExit::Unknown, |status| WorkerExit::from(*status));
    // Where the worker was in its line, and whether it was done with that request.
    let (on, done, item) = match death.facts {
        Some(facts) => (
            held.iter().position(|request| request.id == facts.request),
            facts.done,
            facts.item,
        ),
        None => ((!held.is_empty()).then_some(0), false, u32::MAX),
    };
    let culprit_at = match killed {
        Some(_) => (!held.is_empty()).then_some(0),
        None => on.filter(|_| !done),
    };
    // The request the worker finished last before dying between requests is the one to
    // keep an eye on: a task that leaves its worker to die just after it ends.
    if let (Some(at), true, None) = (on, done, killed.as_ref()) {
        held[at].lost_answers += 1;
    }
    let culprit = culprit_at.and_then(|at| held.remove(at));
    if let Some(culprit) = culprit {
        let task = culprit.task.to_owned();
        match killed {
            Some(Killed::TimedOut) => culprit.fail(Error::TimedOut),
            Some(Killed::Stopped | Killed::Cancelled) => culprit.fail(Error::Cancelled),
            Some(Killed::Codec(reason)) => culprit.fail(Error::Codec { task, reason }),
            None => {
                let words = (death.words.request == culprit.id).then_some(death.words);
                charge(pool, culprit, exit, words, item);
            }
        }
    }
    for request in held {
        if request.lost_answers > LOST_ANSWERS {
            // Finished again and again, its answer lost each time: it is the likelier
            // cause (a task that leaves its worker to die just after it).
            charge(pool, request, exit, None, u32::MAX);
        } else {
            pool.requeue(request);
        }
    }
}

/// How many times a request may run again uncharged because its worker died after it
/// finished, before it is charged with the death.
pub(crate) const LOST_ANSWERS: u8 = 3;

/// Charges `culprit` with its worker's death (`exit`): runs it again if its crash budget
/// allows, or fails it. `words`: what it wrote to standard error, if anything; `item`: the
/// item a batch was on.
fn charge(
    pool: &Pool,
    mut culprit: Request,
    exit: WorkerExit,
    words: Option<LastWords>,
    item: u32,
) {
    let task = culprit.task.to_owned();
    // Facts, not output alone: the cap was set, the worker aborted, and its allocator said
    // why while this request ran (see `last_words.rs`).
    let over_cap = exit == WorkerExit::Signal(libc::SIGABRT)
        && words.as_ref().is_some_and(LastWords::alloc_failed);
    let error = match pool.options.memory_limit {
        Some(limit) if over_cap => Error::MemoryLimit { task, limit },
        // A batch is not run again whole: its caller runs the item again with its own
        // budget, and the others uncharged (see `map`).
        _ if culprit.retries_left > 0 && matches!(culprit.payload, Payload::One(_)) => {
            culprit.retries_left -= 1;
            tracing::warn!(task, %exit, "a worker died under a task; running it again");
            return pool.requeue(culprit);
        }
        _ => Error::WorkerLost {
            task,
            exit,
            stderr: words.map(|words| words.text()).unwrap_or_default(),
        },
    };
    culprit.fail_on_item(item, error);
}

/// Handles one frame from a serving worker: checks it against the head of the line and
/// only then takes the head, so that a bad frame leaves the head to be settled.
fn take_answer(
    line: &Line,
    frame: Frame<'_>,
    deadline: &mut Option<Instant>,
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
    let outcome = match (frame.kind, &head.payload) {
        (Kind::Started, _) => {
            *deadline = head.timeout.map(|limit| Instant::now() + limit);
            return Ok(());
        }
        // A failed batch is answered with `Done` too: the failure stands for every item.
        (Kind::Done, _) => codec::parse_done(frame.body)
            .map_err(|error| error.to_string())?
            .map_err(|failure| failure.into_error(head.task)),
        (Kind::BatchDone, Payload::Batch { .. }) => Ok(frame.body),
        (kind, _) => return Err(format!("a {kind:?} answer to the wrong kind of request")),
    };
    let request = held.pop_answered().expect("the head was checked above");
    drop(held);
    *deadline = None;
    line.answered.notify_one();
    request.complete(outcome);
    Ok(())
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
