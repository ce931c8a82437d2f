//! What a thread of the thread strand knows about its strand, and the wrapper every
//! admitted task runs in.
//!
//! The strand's state lives in a thread-local set when each pool thread starts, so a task
//! need not carry a reference-counted pointer to it: cloning one per task would bounce its
//! count between the spawning and the running core.

use std::cell::OnceCell;
use std::sync::Arc;

use crate::TaskId;
use crate::runtime::strand::StrandState;
use crate::task::core::{Core, Ran};
use crate::task::handle::report_unobserved;

thread_local! {
    static STRAND: OnceCell<Arc<StrandState>> = const { OnceCell::new() };
}

/// Called on each pool thread as it starts.
pub(crate) fn install(state: Arc<StrandState>) {
    STRAND.with(|strand| {
        // A thread starts once, so the cell is empty; a second set would be ignored.
        let _ = strand.set(state);
    });
}

/// Whether this thread's strand is cancelling everything (the runtime is shutting down).
pub(crate) fn strand_cancelling() -> bool {
    STRAND.with(|strand| strand.get().is_some_and(|state| state.is_cancelling()))
}

/// Runs an admitted task on this pool thread and books it as finished.
pub(crate) fn run_admitted<F, T>(id: TaskId, core: &Core<F, T>)
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    STRAND.with(|strand| {
        let state = strand.get();
        let ran = core.run(|| state.is_some_and(|state| state.is_cancelling()));
        account(id, ran, state.map(Arc::as_ref));
    });
}

fn account(id: TaskId, ran: Ran, state: Option<&StrandState>) {
    if let Some(error) = &ran.unobserved_panic {
        report_unobserved(id, error);
    }
    if let Some(state) = state {
        state.finish(ran.cancelled);
    }
}
