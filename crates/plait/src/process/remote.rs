//! A process task as its [`Handle`](crate::Handle) sees it: a task core completed by the
//! supervisor that reads the worker's answer, with no coroutine or channel in between.
//!
//! The core is the thread strand's (the same completion protocol, the same joins and
//! cancellation); only the body never runs here. The supervisor decodes the result straight
//! from its read buffer into the core, and the joiner wakes.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::pool::{Complete, Control, Pool, Ticket};
use super::{Task, decode_output};
use crate::error::report_unobserved;
use crate::error::take_panic;
use crate::task::core::{CancelTask, Core, Task as TaskCore};
use crate::task::state::{Header, Reason};
use crate::{Error, Result, TaskId};

/// The core's body, never run: the output comes from a worker.
type WorkerBody<O> = fn() -> O;

fn runs_in_worker<O>() -> O {
    unreachable!("a process task's output comes from its worker")
}

pub(crate) struct Remote<T: Task> {
    core: Core<WorkerBody<T::Output>, T::Output>,
    id: TaskId,
    ticket: Ticket,
    pool: Arc<Pool>,
}

impl<T: Task> Remote<T> {
    pub(crate) fn new(id: TaskId, pool: Arc<Pool>) -> Self {
        Remote {
            core: Core::new(id, runs_in_worker::<T::Output> as WorkerBody<T::Output>),
            id,
            ticket: Ticket::default(),
            pool,
        }
    }
}

impl<T: Task> Complete for Remote<T> {
    fn complete(&self, outcome: Result<&[u8]>) {
        // A result's `Deserialize` is user code: a panic there is the task's, not the
        // supervisor's that runs this.
        let output = outcome.and_then(|bytes| {
            catch_unwind(AssertUnwindSafe(|| decode_output::<T>(bytes))).unwrap_or_else(|payload| {
                Err(Error::Codec {
                    task: T::NAME.to_owned(),
                    reason: format!("decoding the result panicked: {}", take_panic(payload)),
                })
            })
        });
        // Stopped by the pool (a shutdown) rather than through the handle: still a
        // cancellation in the tally.
        let stopped = matches!(output, Err(Error::Cancelled));
        let ran = self.core.complete_with(output);
        if let Some(error) = &ran.unobserved_panic {
            report_unobserved(self.id, error);
        }
        self.pool.strand.finish(ran.cancelled || stopped);
    }

    fn ticket(&self) -> &Ticket {
        &self.ticket
    }
}

impl<T: Task> CancelTask for Remote<T> {
    fn cancel(&self, reason: Reason) -> bool {
        let took_effect = self.core.cancel(reason);
        // Queued: it will be dropped unsent. Sent: its worker is stopped if running it.
        if let Some(slot) = self.ticket.cancel() {
            let _ = self.pool.controls[slot].send(Control::Cancel);
        }
        took_effect
    }
}

impl<T: Task> TaskCore<T::Output> for Remote<T> {
    fn header(&self) -> &Header {
        self.core.header()
    }

    unsafe fn take_output(&self) -> Option<Result<T::Output>> {
        // SAFETY: forwarded under the caller's contract.
        unsafe { self.core.take_output() }
    }

    fn run_here(&self) {
        // Nothing to run here: the worker runs it.
    }

    unsafe fn take_unobserved_panic(&self) -> Option<Error> {
        // SAFETY: forwarded under the caller's contract.
        unsafe { self.core.take_unobserved_panic() }
    }
}
