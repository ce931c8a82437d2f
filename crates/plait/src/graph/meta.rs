//! [`Meta`]: what a run knows about its nodes that outlives it (names, options), shared by
//! the scheduler and the [`Results`](super::Results) it leaves.

use super::{NodeId, NodeOptions};
use crate::Error;

pub(crate) struct Meta {
    /// The graph's identity, to refuse nodes of other graphs.
    pub(crate) graph: u64,
    pub(crate) options: Vec<Option<Box<NodeOptions>>>,
}

impl Meta {
    pub(crate) fn name(&self, node: NodeId) -> Option<&str> {
        self.options.get(node.index())?.as_ref()?.name.as_deref()
    }

    /// The node's name, or `node #INDEX`.
    pub(crate) fn display_name(&self, node: NodeId) -> String {
        self.name(node)
            .map_or_else(|| node.to_string(), ToOwned::to_owned)
    }

    pub(crate) fn option<T>(
        &self,
        node: usize,
        get: impl FnOnce(&NodeOptions) -> T,
        default: T,
    ) -> T {
        self.options[node].as_deref().map_or(default, get)
    }

    /// The error a node skipped because `failed` failed reports.
    pub(crate) fn upstream_error(&self, node: usize, failed: u32) -> Error {
        Error::Upstream {
            node: self.display_name(NodeId(node as u32)),
            failed: self.display_name(NodeId(failed)),
        }
    }
}
