//! [`Strand::Auto`]: closures routed to the strand that fits them, by measuring them.
//!
//! Each closure type is one route (a closure written once and spawned many times, in a
//! loop, is one type). Its first [`WARM_UP`] calls run on the thread strand, each measured
//! by its thread's CPU clock against the wall clock (less the time it waited for a core);
//! then the route decides: CPU-bound and mixed work stays on the thread strand, I/O-bound
//! work (a closure that blocks: a file read, a synchronous HTTP call, a sleep) goes to the
//! coroutine strand's threads for blocking I/O, where it holds no core. Calls made while
//! the first [`WARM_UP`] are still out go to those blocking-I/O threads too, unmeasured:
//! there an unknown burst neither stalls the cores (were it to wait) nor is refused (were it
//! to compute). Calls made from one of this runtime's thread-strand tasks stay on the
//! thread strand instead: recursive work that splits and joins must join where a join runs
//! the joined task in place or has a spare take its thread's place, or its first levels
//! would hold every blocking thread waiting for levels queued behind them; for the same
//! reason a call made from inside a call of the same route (recursion) stays on the thread
//! strand whatever the route decided. A measured call that panics, or is cancelled before
//! it runs, gives its place to another.
//! Every [`RECHECK`]th call after the decision is measured again; a route
//! moves to the blocking-I/O threads at a CPU share of [`IO_BOUND_SHARE`](super::IO_BOUND_SHARE) or less and back
//! only at [`LEAVE_IO_SHARE`] or more, so that work near the line does not flap.
//!
//! The routes themselves are the runtime's (`runtime/auto.rs`); this module says how they
//! decide, and what a decision says.
//!
//! Routed closures lose what only the thread strand gives: on the blocking-I/O threads
//! [`task::is_cancelled`](crate::task::is_cancelled) stays `false`, and a cancellation
//! cannot stop a closure that has started.

use std::fmt;

use super::Bound;
use crate::Strand;

/// Calls measured before a route decides.
pub const WARM_UP: usize = 3;
/// After deciding, one call in this many is measured again.
pub const RECHECK: u64 = 64;
/// A route on the blocking-I/O threads goes back to the thread strand at this CPU share or
/// more.
pub const LEAVE_IO_SHARE: f64 = 0.5;

/// Why a route sends its closure where it does; from [`Runtime::explain_auto`](crate::Runtime::explain_auto).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Decision {
    /// The closure's type, as the compiler names it (`crate::module::function::{{closure}}`),
    /// or the registered task's name.
    pub task: &'static str,
    /// Where its calls go now (the thread strand until it has decided).
    pub strand: Strand,
    /// What bounds it, once decided.
    pub bound: Option<Bound>,
    /// The median CPU share of the runs the decision rests on.
    pub cpu_share: f64,
    /// Calls so far, and how many of them were measured.
    pub calls: u64,
    /// Calls measured.
    pub measured: u64,
    /// Times the route changed strand after a re-check.
    pub changes: u64,
    /// The decision in words, with its numbers.
    pub reason: String,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}: {}", self.task, self.strand, self.reason)
    }
}
