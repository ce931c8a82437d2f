//! [`UpToDate`]: the journal's check as an executor wrapper. Before a task's node goes to
//! the executor that runs commands (this process's runtime, or the queue), the wrapper
//! fingerprints the task; a task that succeeded before with the same fingerprint, whose
//! needs did not run again, succeeds at once without running.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use plait::graph::{Call, Executor, Output, Work};
use plait::process::CommandOutput;
use plait::{CancelHandle, Error, Strand};

use super::Job;
use crate::job::inputs::{self, Input, Made, Outputs};
use crate::journal;

/// What the wrapper decided for one task: its fingerprint (its dependents build theirs on
/// it), whether it runs in this run (a need that ran may have made something new, so its
/// dependents run too), and, for one that did not run, its outputs as found (its
/// dependents take them as inputs without a `stat` of their own).
#[derive(Debug)]
pub(super) struct Mark {
    pub(super) fingerprint: String,
    pub(super) ran: bool,
    found: Option<Vec<Input>>,
}

/// The marks of a run, by task; a task's is set when its node is handed over, before it
/// runs, so its dependents (handed over only after it succeeded) always find it.
#[derive(Default)]
pub(super) struct Marks(Mutex<Vec<Option<Arc<Mark>>>>);

impl Marks {
    pub(super) fn new(tasks: usize) -> Marks {
        Marks(Mutex::new(vec![None; tasks]))
    }

    pub(super) fn get(&self, task: usize) -> Option<Arc<Mark>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)[task].clone()
    }

    fn set(&self, task: usize, mark: Mark) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)[task] = Some(Arc::new(mark));
    }
}

/// Skips the tasks the journal says are up to date; hands the rest to `inner`.
///
/// The fingerprint (a hash of the task's declared inputs) is made on the thread that hands
/// the node over, before the command is started.
pub(super) struct UpToDate<E> {
    pub(super) inner: E,
    pub(super) job: Arc<Job>,
}

impl<E: Executor> Executor for UpToDate<E> {
    fn execute(&self, work: Work) -> Option<CancelHandle> {
        let job = &self.job;
        let task = job.task_of_node[work.node().index()];
        let spec = &job.tasks[task];
        let needs: Vec<(usize, Arc<Mark>)> = job.needs[task]
            .iter()
            .filter_map(|&need| Some((need, job.marks.get(need)?)))
            .collect();
        let prints: Vec<&str> = needs.iter().map(|(_, n)| n.fingerprint.as_str()).collect();
        // Its declared inputs, and what the tasks it needs made.
        let made = needs.iter().map(|(need, mark)| Made {
            outputs: &job.tasks[*need].outputs,
            found: mark.found.as_deref().filter(|_| !mark.ran),
        });
        let files = match inputs::gather(&spec.name, &job.base, &spec.inputs, made) {
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
        let a_need_ran = needs.iter().any(|(_, need)| need.ran);
        let skip = !a_need_ran
            && !job.forced[task]
            && job
                .journal
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_done(&spec.name, &fingerprint);
        // Its outputs are looked for only when all else says it is up to date: one missing
        // makes it run.
        let outputs = if skip {
            Outputs::find(&job.base, &spec.outputs)
        } else {
            Outputs::default()
        };
        let skip = skip && outputs.missing.is_none();
        job.marks.set(
            task,
            Mark {
                fingerprint,
                ran: !skip,
                found: outputs.found,
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
