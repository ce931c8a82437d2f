//! What a strand is: [`Strand`], the three models of concurrency as values; and a strand's
//! state as the runtime keeps it (its admission bound, whether it takes tasks, its shutdown
//! tally), with the mark of which strand's slot the task running on each thread holds.
//!
//! The bottom of the runtime's bookkeeping: it counts and marks, and knows nothing of how
//! tasks run or wait.

pub(crate) mod admission;
mod slot;
mod state;

use std::fmt;

pub(crate) use self::slot::{
    HeldSlot, ReleasedSlot, hold_no_slot, mark_coroutine_thread, note_awaiting_task,
    on_coroutine_thread, release_slot_while_waiting, take_awaiting_task,
};
pub(crate) use self::state::StrandState;

/// One of the three models of concurrency a task can run on.
///
/// | strand | unit | memory | suspended by | for |
/// |---|---|---|---|---|
/// | [`Thread`](Strand::Thread) | OS thread | shared | the OS, preemptively | CPU-bound work |
/// | [`Coroutine`](Strand::Coroutine) | future on an event loop | shared | the task, at `.await` | I/O-bound waits |
/// | [`Process`](Strand::Process) | worker process | separate (IPC) | the OS, preemptively | isolation: crashes, leaks, hard limits |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Strand {
    /// The thread strand: a work-stealing pool with one thread per core.
    Thread,
    /// The coroutine strand: futures on `tokio`'s multi-threaded runtime.
    Coroutine,
    /// The process strand: worker processes, and commands in processes of their own.
    Process,
    /// Not a strand of its own: the one that fits, chosen by measuring the work (see
    /// [`Runtime::spawn_on`](crate::Runtime::spawn_on)).
    Auto,
}

impl Strand {
    /// Every strand that runs work, in a fixed order (not [`Auto`](Strand::Auto), which
    /// chooses among them).
    pub const ALL: [Strand; 3] = [Strand::Thread, Strand::Coroutine, Strand::Process];

    /// The strand's name in lower case: `thread`, `coroutine`, `process` or `auto`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Strand::Thread => "thread",
            Strand::Coroutine => "coroutine",
            Strand::Process => "process",
            Strand::Auto => "auto",
        }
    }

    /// Its position in [`Strand::ALL`], for tables indexed by strand. `Auto` is resolved to
    /// a strand before anything is indexed by it; should it not be, it counts as the thread
    /// strand, where it starts.
    pub(crate) fn index(self) -> usize {
        match self {
            Strand::Thread | Strand::Auto => 0,
            Strand::Coroutine => 1,
            Strand::Process => 2,
        }
    }
}

impl fmt::Display for Strand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
