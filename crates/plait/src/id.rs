//! Task identifiers: unique in the process, cheap to hand out from many threads.

use std::cell::Cell;
use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};

/// Identifies one task for the life of the process, whichever strand runs it.
///
/// Ids are unique, never reused, and increase within each spawning thread; they are not
/// dense across threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(NonZeroU64);

impl TaskId {
    /// The id as a number, for logs and metrics.
    #[must_use]
    pub fn as_u64(self) -> u64 {
        self.0.get()
    }

    /// The id whose number is `n` (from a `Handle`'s packed word).
    pub(crate) fn from_u64(n: u64) -> TaskId {
        TaskId(NonZeroU64::new(n).unwrap_or(NonZeroU64::MIN))
    }

    /// Hands out the next id. Threads reserve ids in blocks so that spawning from many
    /// threads never contends on one counter.
    pub(crate) fn next() -> TaskId {
        const BLOCK: u64 = 1024;
        static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);
        thread_local! {
            static RANGE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
        }
        RANGE.with(|range| {
            let (mut next, mut end) = range.get();
            if next == end {
                next = NEXT_BLOCK.fetch_add(BLOCK, Ordering::Relaxed);
                end = next + BLOCK;
            }
            range.set((next + 1, end));
            TaskId(NonZeroU64::new(next).expect("task ids start at 1 and only grow"))
        })
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task-{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_across_threads() {
        let ids: Vec<TaskId> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..5_000).map(|_| TaskId::next()).collect::<Vec<_>>()))
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        let unique: HashSet<_> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len());
    }

    #[test]
    fn ids_grow_within_a_thread() {
        let a = TaskId::next();
        let b = TaskId::next();
        assert!(b > a);
        assert_eq!(format!("{a}"), format!("task-{}", a.as_u64()));
    }
}
