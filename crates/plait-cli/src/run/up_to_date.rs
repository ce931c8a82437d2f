//! [`UpToDate`]: the journal's check as an executor wrapper. Before a task's node goes to
//! the executor that runs commands (this process's runtime, or the queue), the wrapper
//! fingerprints the task; a task that succeeded before with the same fingerprint, whose
//! needs did not run again, succeeds at once without running.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use plait::graph::{Call, Executor, Output, Work};
use plait::process::CommandOutput;
use plait::{CancelHandle, Error, Strand};

use super::Job;
use crate::job::inputs;
use crate::journal;

/// What the wrapper decided for one task: its fingerprint (its dependents build theirs on
/// it), and whether it runs in this run (a need that ran may have made something new, so
/// its dependents run too).
#[derive(Clone, Debug)]
pub(super) struct Mark {
    pub(super) fingerprint: String,
    pub(super) ran: bool,
}

/// The marks of a run, by task; a task's is set when its node is handed over, before it
/// runs, so its dependents (handed over only after it succeeded) always find it.
#[derive(Default)]
pub(super) struct Marks(Mutex<Vec<Option<Mark>>>);

impl Marks {
    pub(super) fn new(tasks: usize) -> Marks {
        Marks(Mutex::new(vec![None; tasks]))
    }

    pub(super) fn get(&self, task: usize) -> Option<Mark> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)[task].clone()
    }

    fn set(&self, task: usize, mark: Mark) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)[task] = Some(mark);
    }
}

/// Skips the tasks the journal says are up to date; hands the rest to `inner`.
///
/// The fingerprint (a hash of the task's declared inputs) is made on the thread that hands
/// the node over, before the command is started.
pub(super) struct UpToDate<E> {
    pub(super) inner: E,
    pub(super) job: std::sync::Arc<Job>,
}

impl<E: Executor> Executor for UpToDate<E> {
    fn execute(&self, work: Work) -> Option<CancelHandle> {
        let job = &self.job;
        let task = job.task_of_node[work.node().index()];
        let spec = &job.tasks[task];
        let needs: Vec<Mark> = job.needs[task]
            .iter()
            .filter_map(|&need| job.marks.get(need))
            .collect();
        let prints: Vec<&str> = needs.iter().map(|n| n.fingerprint.as_str()).collect();
        // Its declared inputs, and what the tasks it needs made.
        let mut patterns = spec.inputs.clone();
        for &need in &job.needs[task] {
            patterns.extend(job.tasks[need].outputs.iter().cloned());
        }
        let files = match inputs::expand(&spec.name, &job.base, &patterns) {
            Ok(files) => files,
            Err(message) => {
                work.into_parts()
                    .1
                    .finish(Output::failed(Error::failed(message)));
                return None;
            }
        };
        // The inputs are read (where their digests are not known) without the journal held.
        let fingerprint = journal::fingerprint(spec, &job.base, &prints, &files, &job.digests);
        let a_need_ran = needs.iter().any(|need| need.ran);
        let done_before = job
            .journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_done(spec, &fingerprint, &job.base);
        let skip = done_before && !a_need_ran && !job.forced[task];
        job.marks.set(
            task,
            Mark {
                fingerprint,
                ran: !skip,
            },
        );
        if !skip {
            return self.inner.execute(work);
        }
        let (call, done) = work.into_parts();
        match call {
            // Succeeds as a command that ran before and wrote nothing now.
            Call::Command(call) => done.finish(call.output(Ok(CommandOutput::exited(
                Some(0),
                Vec::new(),
                Vec::new(),
                Duration::ZERO,
            )))),
            other => done.finish(Output::failed(Error::failed(format!(
                "a job's tasks are commands, not {} nodes",
                other.strand()
            )))),
        }
        None
    }

    fn capacity(&self, strand: Strand) -> usize {
        self.inner.capacity(strand)
    }
}
