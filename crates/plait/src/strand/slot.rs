//! Which strand's slot the task running on each thread holds, and how a task that waits for
//! other tasks releases it while it waits.

use std::cell::Cell;

use super::StrandState;

thread_local! {
    /// The strand whose slot the task running on this thread holds (null: none), set by
    /// [`StrandState::hold_slot`] for the length of the task's run (or of a coroutine's
    /// poll), and whether the task has released that slot while it waits.
    static HOLDING: Cell<(*const StrandState, bool)> =
        const { Cell::new((std::ptr::null(), false)) };
}

/// Marks the current thread as running a task that holds a slot of `strand` (null: none),
/// until the guard drops.
pub(super) fn mark_holding(strand: *const StrandState) -> HeldSlot {
    HeldSlot(HOLDING.with(|holding| holding.replace((strand, false))))
}

/// Marks the current thread as running a task that holds no slot (a scope's task, the
/// second closure of a join), until the guard drops.
pub(crate) fn hold_no_slot() -> HeldSlot {
    mark_holding(std::ptr::null())
}

/// The mark of the task running on this thread; restores the mark it replaced when dropped
/// (tasks run inside tasks: a join that runs one in place).
pub(crate) struct HeldSlot((*const StrandState, bool));

impl Drop for HeldSlot {
    fn drop(&mut self) {
        HOLDING.with(|holding| holding.set(self.0));
    }
}

/// Releases the slot of the task running on this thread, if it holds one, until the returned
/// guard drops: for a task about to block on other tasks (a join, a scope's end, room in a
/// full strand).
///
/// A task that waits for tasks does not count against its strand's bound: tasks that spawn
/// children and join them, as many as the bound, would otherwise hold every slot while
/// their children (or their children's children) wait for room that never comes. So a
/// strand holds, beyond its bound, at most one task per task blocked on tasks at that
/// moment.
///
/// A task releases its slot once however its waits nest (a join whose wait parks after its
/// spin, say); a task run in place inside the wait holds, and releases, a slot of its own.
pub(crate) fn release_slot_while_waiting() -> Option<ReleasedSlot> {
    let (state, released) = HOLDING.with(Cell::get);
    if released {
        return None;
    }
    // SAFETY: set by `hold` from a strand that outlives the task running here (its pool
    // thread, or its coroutine thread, keeps the strand's state alive), and cleared when
    // the run ends; the guard is dropped within the same run (see `ReleasedSlot`).
    let strand = unsafe { state.as_ref() }?;
    strand.admission.release_while_waiting();
    HOLDING.with(|holding| holding.set((state, true)));
    Some(ReleasedSlot(state))
}

thread_local! {
    /// Whether this thread is one of plait's coroutine threads, set as it starts.
    static COROUTINE_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as one of plait's coroutine threads (for its life).
pub(crate) fn mark_coroutine_thread() {
    COROUTINE_THREAD.with(|marked| marked.set(true));
}

/// Whether the current thread is one of plait's coroutine threads.
pub(crate) fn on_coroutine_thread() -> bool {
    COROUTINE_THREAD.with(Cell::get)
}

thread_local! {
    /// Set by a task handle that a future polls and finds unfinished: the coroutine being
    /// polled waits for a task (see `coroutine::tracked`).
    static AWAITS_TASK: Cell<bool> = const { Cell::new(false) };
}

/// Notes that the future being polled on this thread waits for a task.
pub(crate) fn note_awaiting_task() {
    AWAITS_TASK.with(|awaits| awaits.set(true));
}

/// Whether the future polled on this thread waited for a task since the last call; clears
/// the note.
pub(crate) fn take_awaiting_task() -> bool {
    AWAITS_TASK.with(|awaits| awaits.replace(false))
}

/// A slot released by a task that waits for tasks: taken back when dropped, which must happen
/// before the task's run (or poll) ends, and after the runs of the tasks it ran in place
/// meanwhile (guards drop in the order they were made).
pub(crate) struct ReleasedSlot(*const StrandState);

impl Drop for ReleasedSlot {
    fn drop(&mut self) {
        HOLDING.with(|holding| holding.set((self.0, false)));
        // SAFETY: as in `release_slot_while_waiting`: the strand outlives the run that made the guard,
        // and the guard does not outlive that run.
        unsafe { &*self.0 }.admission.take_back();
    }
}
