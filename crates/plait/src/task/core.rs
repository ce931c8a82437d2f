//! One thread-strand task in one allocation: its body, then its output, behind a [`Header`].

use std::mem;
use std::panic::{self, AssertUnwindSafe};

use std::sync::Arc;

use super::current;
use super::state::{Cancel, Header, Reason};
use crate::loom::cell::UnsafeCell;
use crate::pool::job::{Job, Ran};
use crate::{Error, TaskId};

/// What a task's cell holds over its life.
enum Stage<F, T> {
    /// Spawned, not yet claimed.
    Pending(F),
    /// Claimed: the body is running, or being dropped by a canceller.
    Running,
    /// The output.
    Done(T),
    /// The error that replaced the output. Errors are rare, so they are boxed rather than
    /// widening every task.
    Failed(Box<Error>),
    /// The joiner took the output.
    Taken,
}

impl<F, T> Stage<F, T> {
    fn finished(output: crate::Result<T>) -> Self {
        match output {
            Ok(value) => Stage::Done(value),
            Err(error) => Stage::Failed(Box::new(error)),
        }
    }
}

/// The side of a task that its handle sees, with the body's type erased.
pub(crate) trait Task<T>: CancelTask {
    fn header(&self) -> &Header;

    /// Moves the output out; `None` if it was taken already.
    ///
    /// # Safety
    ///
    /// The caller observed `COMPLETE` through [`Header::is_complete`] (or a failed
    /// [`Header::register`]) and is the task's one joiner.
    unsafe fn take_output(&self) -> Option<crate::Result<T>>;

    /// Disposes of the output after the handle was dropped late; returns it if it is a
    /// panic, so the caller can report it.
    ///
    /// # Safety
    ///
    /// [`Header::detach`] returned `true` for the caller.
    unsafe fn take_unobserved_panic(&self) -> Option<Error>;

    /// Runs the task on the current thread unless someone claimed it already.
    fn run_here(&self);
}

/// Cancels a task; what a [`CancelHandle`](crate::CancelHandle) holds.
pub(crate) trait CancelTask: Send + Sync {
    /// Returns `true` if the task will report the cancellation.
    fn cancel(&self, reason: Reason) -> bool;
}

impl<C: CancelTask + ?Sized> CancelTask for Arc<C> {
    fn cancel(&self, reason: Reason) -> bool {
        (**self).cancel(reason)
    }
}

/// A task shared with another owner besides its handles (a process task, which the process
/// pool completes).
impl<T, C: Task<T> + ?Sized> Task<T> for Arc<C> {
    fn header(&self) -> &Header {
        (**self).header()
    }

    unsafe fn take_output(&self) -> Option<crate::Result<T>> {
        // SAFETY: forwarded under the caller's contract.
        unsafe { (**self).take_output() }
    }

    unsafe fn take_unobserved_panic(&self) -> Option<Error> {
        // SAFETY: forwarded under the caller's contract.
        unsafe { (**self).take_unobserved_panic() }
    }

    fn run_here(&self) {
        (**self).run_here();
    }
}

/// A task's header (with its id) and stage.
pub(crate) struct Core<F, T> {
    header: Header,
    stage: UnsafeCell<Stage<F, T>>,
}

// SAFETY: the stage is only touched by the party the header's protocol names (the claimer
// until COMPLETE, then the one joiner or the detacher), so sharing the core between threads
// moves `F` and `T` between threads but never aliases them: they must be `Send`.
unsafe impl<F: Send, T: Send> Sync for Core<F, T> {}
// SAFETY: as above.
unsafe impl<F: Send, T: Send> Send for Core<F, T> {}

impl<F, T> Core<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    pub(crate) fn new(id: TaskId, body: F) -> Self {
        Core {
            header: Header::new(id),
            stage: UnsafeCell::new(Stage::Pending(body)),
        }
    }

    /// A task that is complete from the start, with `output`.
    pub(crate) fn completed(id: TaskId, output: crate::Result<T>) -> Self {
        let core = Core {
            header: Header::new(id),
            stage: UnsafeCell::new(Stage::finished(output)),
        };
        let claimed = core.header.claim_to_run();
        debug_assert!(claimed, "a new header is unclaimed");
        core.header.complete(|_| {});
        core
    }

    /// Runs the body on the current thread, unless a canceller claimed it first.
    ///
    /// `strand_cancelled` says whether the whole strand is being cancelled (the runtime is
    /// shutting down): then a body not yet started is dropped unrun, and one that was running
    /// reports the cancellation, as if each had been cancelled through its handle.
    pub(crate) fn run(&self, strand_cancelled: &dyn Fn() -> bool) -> Ran {
        if !self.header.claim_to_run() {
            return Ran {
                cancelled: true,
                unobserved_panic: None,
            };
        }
        let body = self.take_body();
        if strand_cancelled() {
            drop_before_publishing(body);
            let ran = self.publish(Err(Error::Cancelled));
            return Ran {
                cancelled: true,
                ..ran
            };
        }
        let output = {
            let _current = current::enter(&self.header);
            panic::catch_unwind(AssertUnwindSafe(body)).map_err(Error::from_panic)
        };
        if strand_cancelled() {
            // The body may have returned early because it saw the strand's cancellation.
            self.header.cancel(Reason::Cancelled);
        }
        self.publish(output)
    }

    /// Completes the task with an output computed elsewhere (in a worker process), unless
    /// a canceller claimed it first; the body is dropped unrun.
    pub(crate) fn complete_with(&self, output: crate::Result<T>) -> Ran {
        if !self.header.claim_to_run() {
            return Ran {
                cancelled: true,
                unobserved_panic: None,
            };
        }
        drop_before_publishing(self.take_body());
        self.publish(output)
    }

    fn take_body(&self) -> F {
        // SAFETY: the caller set CLAIMED, which gives it the stage until it sets COMPLETE.
        let stage = self
            .stage
            .with_mut(|stage| unsafe { mem::replace(&mut *stage, Stage::Running) });
        match stage {
            Stage::Pending(body) => body,
            // CLAIMED is set exactly once, by the one party that takes the body.
            _ => unreachable!("a task body was claimed twice"),
        }
    }

    /// Stores `output`, publishes it (or the cancellation that came first) and wakes the
    /// joiner. The caller holds the claim.
    fn publish(&self, output: crate::Result<T>) -> Ran {
        // SAFETY: the caller holds the claim and COMPLETE is clear: the stage is ours.
        self.stage
            .with_mut(|stage| unsafe { *stage = Stage::finished(output) });
        let completion = self.header.complete(|reason| {
            // SAFETY: still ours: `complete` calls this before it sets COMPLETE.
            let displaced = self.stage.with_mut(|stage| unsafe {
                mem::replace(&mut *stage, Stage::Failed(Box::new(reason.into_error())))
            });
            drop_before_publishing(displaced);
        });
        let unobserved_panic = if completion.detached {
            // SAFETY: the handle detached before COMPLETE, so the output is ours alone.
            unsafe { self.take_unobserved_panic() }
        } else {
            None
        };
        Ran {
            cancelled: completion.cancelled,
            unobserved_panic,
        }
    }
}

/// Drops a body or output that will not be handed over, before the task completes: it may
/// borrow from the joiner's frame (a [`join`](crate::Runtime::join) or a scope), which the
/// joiner may leave as soon as it sees the task complete. A destructor that panics must not
/// keep the task from completing: its panic is reported and goes no further.
fn drop_before_publishing<V>(value: V) {
    if let Err(message) = crate::error::catch_panic(|| drop(value)) {
        tracing::error!(%message, "dropping a cancelled task's closure or output panicked");
    }
}

impl<F, T> Task<T> for Core<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn header(&self) -> &Header {
        &self.header
    }

    unsafe fn take_output(&self) -> Option<crate::Result<T>> {
        // SAFETY: the caller observed COMPLETE and is the one joiner (this fn's contract).
        let stage = self
            .stage
            .with_mut(|stage| unsafe { mem::replace(&mut *stage, Stage::Taken) });
        match stage {
            Stage::Done(value) => Some(Ok(value)),
            Stage::Failed(error) => Some(Err(*error)),
            _ => None,
        }
    }

    fn run_here(&self) {
        self.run(&crate::pool::strand_cancelling);
    }

    unsafe fn take_unobserved_panic(&self) -> Option<Error> {
        self.stage.with_mut(|stage| {
            // SAFETY: the caller owns the completed output (this fn's contract).
            let stage = unsafe { &mut *stage };
            if matches!(stage, Stage::Failed(error) if error.is_panic()) {
                match mem::replace(stage, Stage::Taken) {
                    Stage::Failed(error) => Some(*error),
                    _ => None,
                }
            } else {
                None
            }
        })
    }
}

impl<F, T> Job for Core<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn run(&self, strand_cancelled: &dyn Fn() -> bool) -> Ran {
        Core::run(self, strand_cancelled)
    }

    fn id(&self) -> TaskId {
        self.header.id()
    }

    fn is_claimed(&self) -> bool {
        self.header.is_claimed()
    }
}

impl<F, T> CancelTask for Core<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn cancel(&self, reason: Reason) -> bool {
        let outcome = self.header.cancel(reason);
        if outcome == Cancel::Claimed {
            drop_before_publishing(self.take_body());
            self.publish(Err(reason.into_error()));
        }
        outcome.took_effect()
    }
}

#[cfg(all(test, not(plait_loom)))]
mod tests {
    use super::*;

    /// The output of a completed task, as its one joiner takes it.
    fn output<T>(core: &impl Task<T>) -> crate::Result<T> {
        assert!(core.header().is_complete());
        // SAFETY: complete (checked above), and each test is its task's only joiner.
        unsafe { core.take_output() }.expect("the output is taken once")
    }

    /// The layout docs/architecture.md describes: a queued task is its header (the state
    /// word with the id in it, and the waiter slot) and its stage, behind the pool's head
    /// (a vtable pointer and a reference count: `pool/raw.rs`).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_core_is_five_words_for_a_one_word_closure() {
        assert_eq!(std::mem::size_of::<Header>(), 24);
        assert_eq!(std::mem::size_of::<Core<fn(), ()>>(), 40);
    }

    #[test]
    fn the_id_in_the_state_word_survives_every_step_of_the_protocol() {
        let id = TaskId::next();
        let core = Core::new(id, || 1);
        assert_eq!(core.header().id(), id);
        assert!(core.header().register(&crate::task::state::thread_waker()));
        assert_eq!(core.header().id(), id);
        assert!(core.cancel(Reason::Cancelled));
        assert_eq!(core.header().id(), id);
        assert!(core.header().detach());
        assert_eq!(core.header().id(), id);
        assert_eq!(Job::id(&core), id);
    }

    #[test]
    fn run_stores_the_output_for_the_joiner() {
        let core = Core::new(TaskId::next(), || 6 * 7);
        let ran = core.run(&|| false);
        assert!(!ran.cancelled);
        assert!(core.header().is_complete());
        assert_eq!(output(&core).unwrap(), 42);
    }

    #[test]
    fn a_panic_becomes_an_error() {
        let core = Core::new(TaskId::next(), || -> u8 { panic!("boom") });
        core.run(&|| false);
        let err = output(&core).unwrap_err();
        assert_eq!(err.to_string(), "task panicked: boom");
    }

    #[test]
    fn cancel_before_start_claims_and_the_body_never_runs() {
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        let core = Core::new(TaskId::next(), move || {
            flag.store(true, std::sync::atomic::Ordering::SeqCst)
        });
        assert!(core.cancel(Reason::Cancelled));
        assert!(
            core.header().is_complete(),
            "a claimed cancellation completes at once"
        );
        let second = core.run(&|| false);
        assert!(second.cancelled);
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
        assert!(output(&core).unwrap_err().is_cancelled());
    }

    #[test]
    fn cancel_after_completion_is_too_late() {
        let core = Core::new(TaskId::next(), || 1);
        core.run(&|| false);
        assert!(!core.cancel(Reason::Cancelled));
        assert_eq!(output(&core).unwrap(), 1);
    }

    #[test]
    fn cancel_while_running_replaces_the_output() {
        let core = Arc::new(Core::new(TaskId::next(), || 0));
        // Claim as the worker would, then cancel mid-run, then publish.
        assert!(core.header.claim_to_run());
        let body = core.take_body();
        assert!(core.cancel(Reason::TimedOut));
        let ran = core.publish(Ok(body()));
        assert!(ran.cancelled);
        assert!(output(&*core).unwrap_err().is_timeout());
    }

    /// Whether the watched task has completed, once `watch` has pointed it at the task.
    type Check = Arc<std::sync::Mutex<Option<Box<dyn Fn() -> bool + Send>>>>;

    /// Notes, when dropped, whether its task had completed by then (see `watch`).
    struct Probe {
        check: Check,
        complete_when_dropped: Arc<std::sync::Mutex<Option<bool>>>,
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            let check = self.check.lock().unwrap();
            *self.complete_when_dropped.lock().unwrap() = check.as_ref().map(|complete| complete());
        }
    }

    /// A probe, and what it will have seen.
    fn probe() -> (Probe, Arc<std::sync::Mutex<Option<bool>>>) {
        let seen = Arc::new(std::sync::Mutex::new(None));
        let probe = Probe {
            check: Arc::default(),
            complete_when_dropped: Arc::clone(&seen),
        };
        (probe, seen)
    }

    /// Points the probe's check at `core`.
    fn watch<F, T>(check: &Check, core: &Arc<Core<F, T>>)
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let core = Arc::downgrade(core);
        *check.lock().unwrap() = Some(Box::new(move || {
            core.upgrade()
                .is_none_or(|core| core.header().is_complete())
        }));
    }

    #[test]
    fn a_cancelled_body_is_dropped_before_the_joiner_can_see_the_end() {
        // The body may borrow from the joiner's frame (a `join`), gone once it sees COMPLETE.
        for strand_cancelled in [false, true] {
            let (probe, seen) = probe();
            let check = Arc::clone(&probe.check);
            let core = Arc::new(Core::new(TaskId::next(), move || drop(probe)));
            watch(&check, &core);
            if strand_cancelled {
                assert!(core.run(&|| true).cancelled);
            } else {
                assert!(core.cancel(Reason::Cancelled));
            }
            assert_eq!(
                *seen.lock().unwrap(),
                Some(false),
                "strand cancelled: {strand_cancelled}"
            );
        }
    }

    #[test]
    fn a_displaced_output_is_dropped_before_the_joiner_can_see_the_end() {
        let (probe, seen) = probe();
        let check = Arc::clone(&probe.check);
        let core = Arc::new(Core::new(TaskId::next(), move || probe));
        watch(&check, &core);
        assert!(core.header.claim_to_run());
        let body = core.take_body();
        assert!(core.cancel(Reason::TimedOut));
        assert!(core.publish(Ok(body())).cancelled);
        assert_eq!(*seen.lock().unwrap(), Some(false));
    }

    #[test]
    fn skip_reports_cancelled_without_running() {
        let core = Core::new(TaskId::next(), || -> u8 {
            unreachable!("skipped bodies never run")
        });
        let ran = core.run(&|| true);
        assert!(ran.cancelled);
        assert!(output(&core).unwrap_err().is_cancelled());
    }

    #[test]
    fn a_detached_panic_is_handed_back_for_reporting() {
        let core = Core::new(TaskId::next(), || -> u8 { panic!("nobody is listening") });
        assert!(!core.header().detach());
        let ran = core.run(&|| false);
        let err = ran.unobserved_panic.expect("the panic is reported");
        assert!(err.to_string().contains("nobody is listening"));
    }
}
