//! [`Event`]: what observers of a graph run learn about each node.

use std::any::Any;
use std::time::{Duration, Instant};

use super::NodeId;
use crate::{Error, Strand};

/// A step in the life of one node, as [`Runner::observe`](super::Runner::observe) reports
/// it.
///
/// Observers are called on the threads that run the graph, never under the scheduler's
/// lock: keep them short (count, record, send on a channel). Events of one node arrive in
/// order, with one known exception: a node's [`Queued`](EventKind::Queued) is told by the
/// thread whose work made it ready, and if that thread is held up before telling it (a
/// slow observer of an earlier event, the thread descheduled) while another thread starts
/// the node, the node's [`Started`](EventKind::Started) can come first. Events of
/// different nodes may interleave.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Event<'a> {
    /// The node.
    pub node: NodeId,
    /// Its name, if it was given one ([`NodeMut::name`](super::NodeMut::name)).
    pub name: Option<&'a str>,
    /// The strand it runs on.
    pub strand: Strand,
    /// Which run of the node this is: 1 for the first, more after retries (0 for a node
    /// that never ran).
    pub attempt: u32,
    /// When it happened.
    pub at: Instant,
    /// What happened.
    pub kind: EventKind<'a>,
}

/// What happened to a node; see [`Event`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum EventKind<'a> {
    /// All its inputs have succeeded: it waits for room in its strand's window.
    Queued,
    /// [`Strand::Auto`] chose where this run goes (see
    /// [`NodeMut::strand`](super::NodeMut::strand)).
    Routed {
        /// Where it runs.
        strand: Strand,
        /// Why, with the measured numbers.
        reason: &'a str,
    },
    /// Its executor started it.
    Started,
    /// It succeeded, after running for `elapsed`.
    Finished {
        /// How long this run took, from its start.
        elapsed: Duration,
        /// Its result, to be read with `downcast_ref::<T>()` for a `Node<T>` (a command
        /// node's is a [`CommandOutput`](crate::process::CommandOutput)).
        value: &'a (dyn Any + Send + Sync),
    },
    /// This run failed; `retrying` says whether the node will run again.
    Failed {
        /// Why.
        error: &'a Error,
        /// How long this run took, from its start.
        elapsed: Duration,
        /// Whether the node has retries left and will run again.
        retrying: bool,
    },
    /// It will not run: a node it needs failed ([`Error::Upstream`]) or the run was
    /// stopped ([`Error::Cancelled`]).
    Skipped {
        /// Why.
        error: &'a Error,
    },
}

/// Something that wants to hear about every event of a run.
pub(crate) type Observer = Box<dyn Fn(&Event<'_>) + Send + Sync>;
