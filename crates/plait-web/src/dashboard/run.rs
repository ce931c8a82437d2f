//! A `plait run` as the dashboard draws it: the job's tasks with what each needs, the
//! state each is in, and when each ran on which slot (a lane of the task stream).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::Serialize;

/// Where one task of a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NodeState {
    /// Not started: waiting for what it needs, or for a free slot.
    Waiting,
    /// Running now.
    Running,
    /// Finished with success.
    Succeeded,
    /// Failed (out of retries).
    Failed,
    /// Not run: something it needs failed, or the run was stopped first.
    Skipped,
    /// Stopped while it ran.
    Cancelled,
    /// Not run: its outputs are newer than its inputs.
    UpToDate,
}

/// A run the dashboard shows, fed by whoever runs it: add the tasks, then report each
/// start and end. Cloning it gives another handle on the same run.
///
/// # Examples
///
/// ```
/// use plait_web::dashboard::{NodeState, RunBoard};
///
/// let board = RunBoard::new("build");
/// board.add_task("fetch", "process", &[]);
/// board.add_task("sum", "thread", &["fetch".to_owned()]);
/// board.started("fetch");
/// board.finished("fetch", NodeState::Succeeded);
/// let snapshot = board.snapshot();
/// assert_eq!(snapshot["tasks"][0]["state"], "succeeded");
/// assert_eq!(snapshot["tasks"][1]["needs"][0], "fetch");
/// ```
#[derive(Clone)]
pub struct RunBoard {
    inner: Arc<Mutex<Run>>,
    changed: Arc<tokio::sync::Notify>,
}

#[derive(Serialize)]
struct Run {
    job: String,
    #[serde(skip)]
    epoch: Instant,
    /// Slots in use now: a task takes the lowest free one, so lanes stay few and full.
    #[serde(skip)]
    busy: Vec<bool>,
    finished: bool,
    tasks: Vec<Node>,
}

#[derive(Serialize)]
struct Node {
    name: String,
    strand: String,
    needs: Vec<String>,
    state: NodeState,
    /// Milliseconds since the run began.
    started_ms: Option<u64>,
    ended_ms: Option<u64>,
    slot: Option<usize>,
}

impl RunBoard {
    /// A board for a run of the job named `job`, with no tasks yet.
    #[must_use]
    pub fn new(job: impl Into<String>) -> RunBoard {
        RunBoard {
            inner: Arc::new(Mutex::new(Run {
                job: job.into(),
                epoch: Instant::now(),
                busy: Vec::new(),
                finished: false,
                tasks: Vec::new(),
            })),
            changed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Adds a task, waiting, that runs on `strand` and needs the tasks named in `needs`.
    pub fn add_task(&self, name: &str, strand: &str, needs: &[String]) {
        self.with(|run| {
            run.tasks.push(Node {
                name: name.to_owned(),
                strand: strand.to_owned(),
                needs: needs.to_vec(),
                state: NodeState::Waiting,
                started_ms: None,
                ended_ms: None,
                slot: None,
            });
        });
    }

    /// Marks the task named `name` as running from now, on the lowest free slot. A name
    /// the board does not hold is ignored.
    pub fn started(&self, name: &str) {
        self.with(|run| {
            let now = run.millis();
            let slot = run.busy.iter().position(|busy| !busy).unwrap_or_else(|| {
                run.busy.push(false);
                run.busy.len() - 1
            });
            if let Some(node) = run.tasks.iter_mut().find(|n| n.name == name) {
                run.busy[slot] = true;
                node.state = NodeState::Running;
                node.started_ms = Some(now);
                node.ended_ms = None;
                node.slot = Some(slot);
            }
        });
    }

    /// Marks the task named `name` as ended, in `state`, now; frees its slot.
    pub fn finished(&self, name: &str, state: NodeState) {
        self.with(|run| {
            let now = run.millis();
            let Some(node) = run.tasks.iter_mut().find(|n| n.name == name) else {
                return;
            };
            node.state = state;
            if node.started_ms.is_some() {
                node.ended_ms = Some(now);
            }
            if let Some(slot) = node.slot {
                run.busy[slot] = false;
            }
        });
    }

    /// Marks the run as over: nothing more will start.
    pub fn run_finished(&self) {
        self.with(|run| run.finished = true);
    }

    /// The run as JSON: `job`, `finished`, `elapsed_ms`, and `tasks`, each with its
    /// `name`, `strand`, `needs`, `state`, `started_ms`, `ended_ms` and `slot`.
    #[must_use]
    pub fn snapshot(&self) -> serde_json::Value {
        self.look(|run| {
            let mut value = serde_json::to_value(run).unwrap_or_default();
            if let Some(fields) = value.as_object_mut() {
                fields.insert("elapsed_ms".to_owned(), run.millis().into());
            }
            value
        })
    }

    /// Counts of the run's tasks by state, for `/metrics`.
    pub(crate) fn counts(&self) -> Vec<(NodeState, u64)> {
        self.look(|run| {
            let mut counts: Vec<(NodeState, u64)> = Vec::new();
            for node in &run.tasks {
                match counts.iter_mut().find(|(state, _)| *state == node.state) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((node.state, 1)),
                }
            }
            counts
        })
    }

    /// Changes the run, and wakes the dashboard's poller to show it.
    fn with<T>(&self, f: impl FnOnce(&mut Run) -> T) -> T {
        // A panic elsewhere while the lock was held leaves a board still worth drawing.
        let value = f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner));
        self.changed.notify_waiters();
        value
    }

    fn look<T>(&self, f: impl FnOnce(&Run) -> T) -> T {
        f(&self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Returns at the next change.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }
}

impl Run {
    fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_takes_the_lowest_free_slot() {
        let board = RunBoard::new("job");
        for name in ["a", "b", "c"] {
            board.add_task(name, "thread", &[]);
        }
        board.started("a");
        board.started("b");
        board.finished("a", NodeState::Succeeded);
        board.started("c");
        let snapshot = board.snapshot();
        let slots: Vec<_> = snapshot["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["slot"].as_u64())
            .collect();
        assert_eq!(slots, [Some(0), Some(1), Some(0)]);
        assert_eq!(snapshot["tasks"][0]["state"], "succeeded");
        assert!(snapshot["tasks"][0]["ended_ms"].is_u64());
    }

    #[test]
    fn a_skipped_task_has_no_times_and_unknown_names_are_ignored() {
        let board = RunBoard::new("job");
        board.add_task("a", "process", &[]);
        board.started("nope");
        board.finished("a", NodeState::Skipped);
        let snapshot = board.snapshot();
        assert_eq!(snapshot["tasks"][0]["state"], "skipped");
        assert!(snapshot["tasks"][0]["ended_ms"].is_null());
        assert_eq!(board.counts(), [(NodeState::Skipped, 1)]);
    }
}
