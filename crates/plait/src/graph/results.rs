//! [`Results`]: what a graph run leaves: each node's status, and the results kept.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::deps::Value;
use super::meta::Meta;
use super::scheduler::{Shared, Status};
use super::{Node, NodeId};
use crate::{Error, Result};

/// How a node ended; see [`Results::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NodeStatus {
    /// It ran and returned a result.
    Succeeded,
    /// It ran, and its last run failed (see [`Results::error`]).
    Failed,
    /// It did not run: a node it needs (directly or further up) failed.
    Skipped,
    /// It did not run, or was stopped while running: the run was cancelled, or failed fast
    /// at a node it does not need.
    Cancelled,
}

/// The end of a graph run: every node's status, the errors, and the results kept (sinks,
/// and nodes marked [`keep`](super::NodeMut::keep)).
pub struct Results {
    meta: Arc<Meta>,
    values: Vec<Option<Value>>,
    status: Vec<Status>,
    attempts: Vec<u32>,
    errors: HashMap<u32, Error>,
    upstream: HashMap<u32, u32>,
}

impl Results {
    pub(crate) fn new(shared: &Shared) -> Self {
        let mut state = shared.lock();
        let values = std::mem::take(&mut state.values);
        let status = std::mem::take(&mut state.status);
        let attempts = std::mem::take(&mut state.attempts);
        let errors = std::mem::take(&mut state.errors);
        let upstream = std::mem::take(&mut state.upstream);
        drop(state);
        Results {
            meta: Arc::clone(&shared.meta),
            values,
            status,
            attempts,
            errors,
            upstream,
        }
    }

    /// The number of nodes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.status.len()
    }

    /// Whether the graph had no nodes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.status.is_empty()
    }

    /// Takes the result of `node` out.
    ///
    /// # Errors
    ///
    /// The node's error if it failed; [`Error::Upstream`] if it was skipped;
    /// [`Error::Cancelled`] if it did not run because the run stopped;
    /// [`Error::Released`] if its result was released (it had consumers and was not marked
    /// [`keep`](super::NodeMut::keep)) or was taken already; [`Error::Failed`] if the
    /// result is still shared with a thread task that outlived its time limit (borrow it
    /// with [`get`](Results::get) instead).
    ///
    /// # Panics
    ///
    /// If `node` belongs to another graph.
    pub fn take<T: Send + Sync + 'static>(&mut self, node: Node<T>) -> Result<T> {
        let index = self.index(node);
        let value = self.value(index)?;
        let value = self.values[index].take().unwrap_or(value);
        let value = value
            .downcast::<T>()
            .unwrap_or_else(|_| unreachable!("a node's result has the type its Node<T> names"));
        Arc::try_unwrap(value).map_err(|shared| {
            self.values[index] = Some(shared);
            Error::failed(format!(
                "the result of {} is still shared with a run that outlived its time limit; borrow it with get",
                self.meta.display_name(node.id)
            ))
        })
    }

    /// Borrows the result of `node`.
    ///
    /// # Errors
    ///
    /// As [`take`](Results::take).
    ///
    /// # Panics
    ///
    /// If `node` belongs to another graph.
    pub fn get<T: Send + Sync + 'static>(&self, node: Node<T>) -> Result<&T> {
        let index = self.index(node);
        self.value(index)?;
        Ok(self.values[index]
            .as_deref()
            .and_then(|value| value.downcast_ref())
            .expect("a node's result has the type its Node<T> names"))
    }

    fn index<T>(&self, node: Node<T>) -> usize {
        assert_eq!(node.graph, self.meta.graph, "a node of another graph");
        node.id.index()
    }

    /// The kept value of node `index`, or why there is none.
    fn value(&self, index: usize) -> Result<Value> {
        match self.status[index] {
            Status::Succeeded => self.values[index].clone().ok_or_else(|| Error::Released {
                node: self.meta.display_name(NodeId(index as u32)),
            }),
            _ => Err(self.error(NodeId(index as u32)).unwrap_or(Error::Cancelled)),
        }
    }

    /// How `node` ended.
    ///
    /// # Panics
    ///
    /// If the graph has no such node.
    #[must_use]
    pub fn status(&self, node: NodeId) -> NodeStatus {
        match self.status[node.index()] {
            Status::Succeeded => NodeStatus::Succeeded,
            Status::Failed => NodeStatus::Failed,
            Status::Skipped => NodeStatus::Skipped,
            // A run only ends once every node has: the others were stopped.
            _ => NodeStatus::Cancelled,
        }
    }

    /// Why `node` has no result: its error if it failed, [`Error::Upstream`] if it was
    /// skipped, [`Error::Cancelled`] if the run stopped before it; `None` if it succeeded.
    ///
    /// # Panics
    ///
    /// If the graph has no such node.
    #[must_use]
    pub fn error(&self, node: NodeId) -> Option<Error> {
        match self.status[node.index()] {
            Status::Succeeded => None,
            Status::Failed => self.errors.get(&node.0).cloned(),
            Status::Skipped => {
                let failed = self.upstream.get(&node.0).copied().unwrap_or(node.0);
                Some(self.meta.upstream_error(node.index(), failed))
            }
            _ => Some(Error::Cancelled),
        }
    }

    /// How many times `node` ran (0 if it never did).
    ///
    /// # Panics
    ///
    /// If the graph has no such node.
    #[must_use]
    pub fn attempts(&self, node: NodeId) -> u32 {
        self.attempts[node.index()]
    }

    /// The nodes that failed, in the order they were added, with their errors: the root
    /// causes, not what was skipped or cancelled because of them.
    pub fn failures(&self) -> impl Iterator<Item = (NodeId, &Error)> {
        let mut failed: Vec<_> = self
            .errors
            .iter()
            .map(|(&node, error)| (NodeId(node), error))
            .collect();
        failed.sort_by_key(|&(node, _)| node);
        failed.into_iter()
    }

    /// How many nodes ended with `status`.
    #[must_use]
    pub fn count(&self, status: NodeStatus) -> usize {
        (0..self.len())
            .filter(|&node| self.status(NodeId(node as u32)) == status)
            .count()
    }

    /// Whether every node succeeded.
    #[must_use]
    pub fn is_success(&self) -> bool {
        self.status
            .iter()
            .all(|&status| status == Status::Succeeded)
    }

    /// `Ok` if every node succeeded.
    ///
    /// # Errors
    ///
    /// The error of the first node (in the order added) that failed, or
    /// [`Error::Cancelled`] if none failed but the run was cancelled.
    pub fn check(&self) -> Result<()> {
        if let Some((_, error)) = self.failures().next() {
            return Err(error.clone());
        }
        if self.is_success() {
            Ok(())
        } else {
            Err(Error::Cancelled)
        }
    }
}

impl fmt::Debug for Results {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Results")
            .field("succeeded", &self.count(NodeStatus::Succeeded))
            .field("failed", &self.count(NodeStatus::Failed))
            .field("skipped", &self.count(NodeStatus::Skipped))
            .field("cancelled", &self.count(NodeStatus::Cancelled))
            .finish()
    }
}
