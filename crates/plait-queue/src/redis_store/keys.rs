//! Where the Redis store keeps what: every key starts with the store's namespace, and a
//! queue's keys carry the queue's name as their hash tag, so that on a cluster each queue
//! lives on one node and a script over one queue is one command on one node.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `NS:ids` | string | the last task id handed out |
//! | `NS:queues` | set | every queue name ever used |
//! | `NS:workers` | hash | each worker's record, as JSON |
//! | `NS:limits:{NAME}` | hash | a rate limit's token bucket |
//! | `NS:{Q}:t:ID` | hash | a task |
//! | `NS:{Q}:ready:PRIO`, `NS:{Q}:prios` | sorted sets | ready tasks by priority level |
//! | `NS:{Q}:delayed`, `leases`, `dead`, `expiry` | sorted sets | by when |
//! | `NS:{Q}:counts`, `NS:{Q}:keys` | hashes | tasks by state; idempotency keys |
//! | `NS:{Q}:events` | stream | a line per change, for waiters |
//!
//! The scripts in `lua/` build a queue's keys from its prefix, as described in
//! `lua/common.lua`.

use crate::task::TaskId;

/// The keys of one store's namespace.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    namespace: String,
}

impl Keys {
    pub(super) fn new(namespace: &str) -> Keys {
        Keys {
            namespace: namespace.to_owned(),
        }
    }

    pub(super) fn ids(&self) -> String {
        format!("{}:ids", self.namespace)
    }

    pub(super) fn queues(&self) -> String {
        format!("{}:queues", self.namespace)
    }

    pub(super) fn workers(&self) -> String {
        format!("{}:workers", self.namespace)
    }

    /// A rate limit's token bucket (a key of its own, tagged by the limit's name).
    pub(super) fn limit(&self, name: &str) -> String {
        format!("{}:limits:{{{name}}}", self.namespace)
    }

    /// What every key of `queue` starts with.
    pub(super) fn prefix(&self, queue: &str) -> String {
        format!("{}:{{{queue}}}:", self.namespace)
    }

    /// The key that routes a script over `queue` (any key of the queue would do).
    pub(super) fn counts(&self, queue: &str) -> String {
        format!("{}counts", self.prefix(queue))
    }

    pub(super) fn events(&self, queue: &str) -> String {
        format!("{}events", self.prefix(queue))
    }

    pub(super) fn prios(&self, queue: &str) -> String {
        format!("{}prios", self.prefix(queue))
    }

    pub(super) fn delayed(&self, queue: &str) -> String {
        format!("{}delayed", self.prefix(queue))
    }

    pub(super) fn leases(&self, queue: &str) -> String {
        format!("{}leases", self.prefix(queue))
    }

    pub(super) fn dead(&self, queue: &str) -> String {
        format!("{}dead", self.prefix(queue))
    }

    pub(super) fn task(&self, queue: &str, id: TaskId) -> String {
        format!("{}t:{}", self.prefix(queue), padded(id))
    }
}

/// A task id as the keys and sorted sets hold it: 20 digits, so that text order is
/// number order.
pub(super) fn padded(id: TaskId) -> String {
    format!("{:020}", id.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queues_keys_share_its_hash_tag() {
        let keys = Keys::new("plait");
        assert_eq!(keys.prefix("mail"), "plait:{mail}:");
        assert_eq!(keys.counts("mail"), "plait:{mail}:counts");
        assert_eq!(
            keys.task("mail", TaskId::new(42)),
            "plait:{mail}:t:00000000000000000042"
        );
        assert!(padded(TaskId::new(9)) < padded(TaskId::new(10)));
        assert_eq!(padded(TaskId::new(u64::MAX)).len(), 20);
    }
}
