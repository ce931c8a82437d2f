//! The worker registry: which workers serve a store, what they hold, and when each was
//! last heard from. Workers write it with their heartbeats; `plait workers` reads it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// One worker as the store knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// Its name, unique among workers past and present (host, process id, start time by
    /// default).
    pub name: String,
    /// The machine it runs on.
    pub host: String,
    /// Its process id on that machine.
    pub pid: u32,
    /// The queues it takes tasks from.
    pub queues: Vec<String>,
    /// How many attempts it runs at once.
    pub concurrency: u32,
    /// Attempts it held when last heard from.
    pub running: u32,
    /// Attempts it has finished with success.
    pub succeeded: u64,
    /// Attempts it has finished otherwise (failed, crashed, refused).
    pub failed: u64,
    /// When it started.
    pub started_at: Millis,
    /// When it was last heard from.
    pub seen_at: Millis,
    /// When it stopped, if it stopped in order.
    pub stopped_at: Option<Millis>,
    /// Its lease: a worker not heard from for this long has lost its attempts.
    pub lease_ms: u64,
    /// How long its finished attempts took (those it reported, whatever their outcome).
    #[serde(default)]
    pub durations: Durations,
}

/// How long attempts took, as a histogram with fixed buckets (Prometheus's way: counts
/// that only grow, so a scraper can take rates and quantiles from them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durations {
    /// Attempts per bucket: `counts[i]` took at most [`BOUNDS_MS`](Durations::BOUNDS_MS)`[i]`
    /// and more than the bound before it; the last counts those over every bound. Empty
    /// when none was recorded.
    pub counts: Vec<u64>,
    /// Their durations added up, in milliseconds.
    pub sum_ms: u64,
}

impl Durations {
    /// The buckets' upper bounds, in milliseconds: from a few milliseconds (a trivial
    /// command) to ten minutes (a long job).
    pub const BOUNDS_MS: [u64; 14] = [
        5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 60_000, 300_000, 600_000,
    ];

    /// Counts one attempt that took `took`.
    pub fn record(&mut self, took: Duration) {
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        if self.counts.len() != Self::BOUNDS_MS.len() + 1 {
            self.counts = vec![0; Self::BOUNDS_MS.len() + 1];
        }
        let bucket = Self::BOUNDS_MS.partition_point(|&bound| bound < ms);
        self.counts[bucket] += 1;
        self.sum_ms = self.sum_ms.saturating_add(ms);
    }

    /// Adds `other`'s counts to these (one histogram for many workers).
    pub fn add(&mut self, other: &Durations) {
        if other.counts.is_empty() {
            return;
        }
        if self.counts.len() != other.counts.len() {
            self.counts = vec![0; other.counts.len()];
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.sum_ms = self.sum_ms.saturating_add(other.sum_ms);
    }

    /// How many attempts were counted.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Where a worker stands, as of a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Heard from within its lease.
    Active,
    /// Not heard from for longer than its lease, and not stopped in order: it died or
    /// hangs, and its attempts go to other workers.
    Lost,
    /// Stopped in order.
    Stopped,
}

impl WorkerState {
    /// The state's name: `active`, `lost`, `stopped`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Active => "active",
            WorkerState::Lost => "lost",
            WorkerState::Stopped => "stopped",
        }
    }
}

impl WorkerInfo {
    /// A worker of this process on this machine, named `name`, taking tasks from
    /// `queues`, `concurrency` at a time, under leases of `lease`; nothing run yet. Its
    /// times are the store's to stamp.
    pub fn new(
        name: impl Into<String>,
        queues: Vec<String>,
        concurrency: u32,
        lease: Duration,
    ) -> Self {
        WorkerInfo {
            name: name.into(),
            host: host_name(),
            pid: std::process::id(),
            queues,
            concurrency,
            running: 0,
            succeeded: 0,
            failed: 0,
            started_at: 0,
            seen_at: 0,
            stopped_at: None,
            lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
            durations: Durations::default(),
        }
    }

    /// Where it stands at `now`.
    #[must_use]
    pub fn state(&self, now: Millis) -> WorkerState {
        if self.stopped_at.is_some() {
            WorkerState::Stopped
        } else if now.saturating_sub(self.seen_at)
            > Millis::try_from(self.lease_ms).unwrap_or(Millis::MAX)
        {
            WorkerState::Lost
        } else {
            WorkerState::Active
        }
    }
}

/// This machine's name.
pub(crate) fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// How long the registry keeps a worker that stopped or was lost: a day.
pub(crate) const KEEP_GONE_MS: Millis = 24 * 60 * 60 * 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_lost_once_its_lease_has_passed_unheard() {
        let mut worker = WorkerInfo::new("w", vec!["default".into()], 2, Duration::from_secs(30));
        worker.seen_at = 5_000;
        assert_eq!(worker.state(35_000), WorkerState::Active);
        assert_eq!(worker.state(35_001), WorkerState::Lost);
        worker.stopped_at = Some(6_000);
        assert_eq!(worker.state(35_001), WorkerState::Stopped);
    }

    #[test]
    fn durations_fall_in_the_first_bucket_that_holds_them() {
        let mut durations = Durations::default();
        for ms in [0, 5, 6, 600_000, 600_001] {
            durations.record(Duration::from_millis(ms));
        }
        assert_eq!(durations.counts.len(), Durations::BOUNDS_MS.len() + 1);
        assert_eq!(durations.counts[0], 2, "0 and 5 ms are at most 5 ms");
        assert_eq!(durations.counts[1], 1, "6 ms");
        assert_eq!(durations.counts[Durations::BOUNDS_MS.len() - 1], 1);
        assert_eq!(durations.counts[Durations::BOUNDS_MS.len()], 1, "over all");
        assert_eq!(durations.sum_ms, 1_200_012);

        let mut all = Durations::default();
        all.add(&durations);
        all.add(&durations);
        assert_eq!((all.count(), all.sum_ms), (10, 2_400_024));
    }
}
