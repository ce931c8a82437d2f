//! The local executor: the scheduler's work on this runtime's threads, coroutines and
//! worker processes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::executor::{Call, CoroutineCall, Done, Executor, Output, Work};
use crate::runtime::auto::Router;
use crate::{CancelHandle, Error, Handle, Result, Runtime, Strand};

/// The local executor: threads, coroutines and worker processes of this runtime.
impl Executor for Runtime {
    fn execute(&self, work: Work) -> Option<CancelHandle> {
        let limit = work.timeout;
        let placement = work.placement;
        let (call, mut done) = work.into_parts();
        // A run that stopped while this work was on its way starts nothing more (no
        // process, no command): the node ends cancelled.
        if done.is_stopping() {
            drop(call);
            done.finish(Output::failed(Error::Cancelled));
            return None;
        }
        match call {
            Call::Thread(call) => match (limit, placement) {
                (None, Strand::Thread) => {
                    let run = inline::Run { call, done };
                    if let Err(run) = inline::offer(run) {
                        drop(self.spawn(move || run.run()));
                    }
                    // Cancellation reaches a running thread node through its run's stop
                    // flag (see `task::is_cancelled`), so there is no handle to keep.
                    None
                }
                (None, Strand::Coroutine | Strand::Auto) => {
                    let (key, name) = (call.key)();
                    let (strand, measure) = if placement == Strand::Auto {
                        let observed = done.shared.observed();
                        // Graph nodes do not join one another: a burst goes to the
                        // blocking-I/O threads wherever it is dispatched from.
                        let (strand, measure, reason) =
                            Router::route(&self.shared.auto, key, name, observed, false);
                        if let Some(reason) = reason {
                            done.shared.routed(done.node, done.attempt, strand, &reason);
                        }
                        (strand, measure)
                    } else {
                        (Strand::Coroutine, None)
                    };
                    let run = inline::Run { call, done };
                    if strand == Strand::Coroutine {
                        Some(
                            self.spawn_blocking_io(move || run.run_once(measure))
                                .cancel_handle(),
                        )
                    } else {
                        drop(self.spawn(move || run.run_once(measure)));
                        None
                    }
                }
                (_, Strand::Process) => {
                    drop(call);
                    done.finish(Output::failed(crate::runtime::auto::closure_in_process()));
                    None
                }
                (Some(limit), _) => {
                    done.start();
                    let handle = self.task().timeout(limit).spawn(move || call.run());
                    Some(self.watch(handle, done, |ran| ran.unwrap_or_else(Output::failed)))
                }
            },
            Call::Coroutine(call) => {
                let handle = self.spawn_async(CoroutineRun {
                    stage: Stage::Call(call, limit),
                    done: Some(done),
                });
                Some(handle.cancel_handle())
            }
            Call::Process(mut call) => {
                let args = match call.encode_args() {
                    Ok(args) => args,
                    Err(error) => {
                        done.finish(Output::failed(error));
                        return None;
                    }
                };
                done.start();
                let handle = self.spawn_process_by_name_with(call.task(), args, limit);
                Some(self.watch(handle, done, move |answer| call.output(answer)))
            }
            Call::Command(mut call) => {
                let mut command = match call.command() {
                    Ok(command) => command,
                    Err(error) => {
                        done.finish(Output::failed(error));
                        return None;
                    }
                };
                if let Some(limit) = limit {
                    command.timeout = Some(command.timeout.map_or(limit, |own| own.min(limit)));
                }
                super::commands::execute(self, command, call, done)
            }
        }
    }

    fn capacity(&self, strand: Strand) -> usize {
        match strand {
            // Enough to keep every thread busy while finished nodes hand over their
            // successors; few enough that priorities decide what runs next. (The
            // scheduler asks only for the strands that run work, not `Auto`.)
            Strand::Thread | Strand::Auto => self.threads() * 4,
            // Waits cost a coroutine little; the bound is the strand's own.
            Strand::Coroutine => 4096,
            Strand::Process => self.process_workers() * 2,
        }
    }
}

impl Runtime {
    /// Reports `handle`'s end to `done`, from a coroutine; returns the handle's canceller.
    fn watch<T: Send + 'static>(
        &self,
        handle: Handle<T>,
        done: Done,
        output: impl FnOnce(Result<T>) -> Output + Send + 'static,
    ) -> CancelHandle {
        let cancel = handle.cancel_handle();
        drop(self.spawn_async(async move { done.finish(output(handle.await)) }));
        cancel
    }
}

/// A coroutine node's run. The stage comes before `done` so that, when the run is dropped
/// (cancelled), the inputs the future holds are gone before `done` reports the end: whoever
/// sees the run end sees its inputs released.
struct CoroutineRun {
    stage: Stage,
    done: Option<Done>,
}

enum Stage {
    /// Not polled yet: the future is made on the first poll, inside the runtime, as making
    /// it may need the runtime's timers.
    Call(CoroutineCall, Option<Duration>),
    Running(BoxFuture<'static, Output>),
    Ended,
}

impl Future for CoroutineRun {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if let Stage::Call(..) = this.stage {
            let Stage::Call(call, limit) = std::mem::replace(&mut this.stage, Stage::Ended) else {
                unreachable!("matched just above")
            };
            // The run stopped while this waited for its first poll: it never starts.
            if this.done.as_ref().is_some_and(Done::is_stopping) {
                drop(call);
                if let Some(done) = this.done.take() {
                    done.finish(Output::failed(Error::Cancelled));
                }
                return Poll::Ready(());
            }
            let future = call.into_future();
            let future = match limit {
                None => future,
                Some(limit) => async move {
                    tokio::time::timeout(limit, future)
                        .await
                        .unwrap_or_else(|_| Output::failed(Error::TimedOut))
                }
                .boxed(),
            };
            if let Some(done) = &mut this.done {
                done.start();
            }
            this.stage = Stage::Running(future);
        }
        let Stage::Running(future) = &mut this.stage else {
            return Poll::Ready(());
        };
        let output = std::task::ready!(future.as_mut().poll(cx));
        this.stage = Stage::Ended;
        if let Some(done) = this.done.take() {
            done.finish(output);
        }
        Poll::Ready(())
    }
}

/// Thread nodes run back to back on one pool thread: when a node finishing here makes
/// another thread node ready, the first such node runs next on this thread, as a loop
/// rather than a trip through the pool's queues (tokio's LIFO slot, for graphs). The others
/// go to the pool, where idle threads steal them.
pub(super) mod inline {
    use std::cell::{Cell, RefCell};

    use super::super::executor::{Done, Output, ThreadCall};
    use crate::Error;
    use crate::runtime::auto::Measurement;
    use crate::task::current;

    /// A thread node's run. The call comes before `done` so that, when a run is dropped
    /// unrun, its inputs are gone before `done` reports the end.
    pub(super) struct Run {
        pub(super) call: ThreadCall,
        pub(super) done: Done,
    }

    thread_local! {
        /// Whether a node run by this loop is finishing now: the work its end makes ready
        /// may be kept for this thread. Not while a node's body runs: a body that starts
        /// and joins another graph must see that graph's work go to the pool.
        static FINISHING: Cell<bool> = const { Cell::new(false) };
        static NEXT: RefCell<Option<Run>> = const { RefCell::new(None) };
    }

    /// This thread's inline slot, suspended while code that is not part of its loop runs
    /// (see [`suspend_loop`](super::super::suspend_loop)); resumed when dropped.
    pub(in super::super) struct SuspendedInline {
        /// The slot's run, if a node of this thread's loop was finishing.
        next: Option<Option<Run>>,
    }

    impl SuspendedInline {
        pub(in super::super) fn is_empty(&self) -> bool {
            self.next.is_none()
        }
    }

    pub(in super::super) fn suspend_inline() -> SuspendedInline {
        let finishing = FINISHING.with(|finishing| finishing.replace(false));
        SuspendedInline {
            next: finishing.then(|| NEXT.with(|next| next.borrow_mut().take())),
        }
    }

    impl Drop for SuspendedInline {
        fn drop(&mut self) {
            if let Some(next) = self.next.take() {
                // Whatever sits there now is dropped after the borrow ends: its drop may
                // finish a node, which comes back here.
                let left = NEXT.with(|mine| std::mem::replace(&mut *mine.borrow_mut(), next));
                FINISHING.with(|finishing| finishing.set(true));
                drop(left);
            }
        }
    }

    /// Keeps `run` for this thread to do next, if a node of this thread's loop is
    /// finishing and has not kept one already; otherwise hands it back.
    pub(super) fn offer(run: Run) -> Result<(), Run> {
        if !FINISHING.with(Cell::get) {
            return Err(run);
        }
        NEXT.with(|next| {
            let mut next = next.borrow_mut();
            if next.is_some() {
                Err(run)
            } else {
                *next = Some(run);
                Ok(())
            }
        })
    }

    impl Run {
        /// Runs this node alone: on a thread that is not the thread strand's (the blocking-
        /// I/O threads), whose end keeps nothing for it to run next. With `measure`, the
        /// closure's run (and only it) is measured and reported to its route before the
        /// node's end is.
        pub(in super::super) fn run_once(self, measure: Option<Measurement>) {
            let Run { call, mut done } = self;
            let output = output(call, &mut done, measure);
            done.finish(output);
        }

        /// Runs this node, then whatever its end kept for this thread, and so on.
        pub(super) fn run(self) {
            let mut next = Some(self);
            while let Some(Run { call, mut done }) = next {
                let output = output(call, &mut done, None);
                {
                    let was = FINISHING.with(|finishing| finishing.replace(true));
                    let _restore = Restore(was);
                    done.finish(output);
                }
                next = NEXT.with(|next| next.borrow_mut().take());
            }
        }
    }

    /// Runs `call`, unless its run is stopping; what it returns while its run stops is
    /// discarded, as for any thread task that sees `is_cancelled`.
    fn output(call: ThreadCall, done: &mut Done, measure: Option<Measurement>) -> Output {
        if done.is_stopping() {
            drop(call);
            return Output::failed(Error::Cancelled);
        }
        done.start();
        let output = {
            let _graph = current::enter_graph(&done.shared.stopping);
            match measure {
                None => call.run(),
                Some(measurement) => measurement.run(|| call.run()),
            }
        };
        if done.is_stopping() {
            Output::failed(Error::Cancelled)
        } else {
            output
        }
    }

    struct Restore(bool);

    impl Drop for Restore {
        fn drop(&mut self) {
            FINISHING.with(|finishing| finishing.set(self.0));
        }
    }
}
