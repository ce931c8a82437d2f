//! Command nodes on the local executor: each command is started, read and reaped by a
//! thread of its own that polls its pipes (see `process::polled`), and counts on the
//! process strand, whose shutdown stops it.
//!
//! When a command's end makes another command node ready, the thread that ran it runs that
//! one next, as thread nodes do (see `local::inline`): a chain of commands, or a job of
//! many commands `--jobs` at a time as `plait run` runs them, passes no work between
//! threads once it has started.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use super::executor::{CommandCall, Done, Output};
use crate::process::Command;
use crate::process::ProcessStrand;
use crate::process::polled::{self, Stop};
use crate::{CancelHandle, Error, Runtime, TaskId};

/// A command node's run.
struct Run {
    command: Command,
    call: CommandCall,
    stop: Arc<Stop>,
    admitted: Admitted,
    /// Reports the end; last, so that everything else is dropped before it reports.
    done: Done,
}

/// A run's place on the process strand, from its admission to its end: given back on
/// drop, as a cancellation unless the run [`completed`](Admitted::completed).
struct Admitted {
    strand: Arc<ProcessStrand>,
    cancelled: bool,
}

impl Admitted {
    fn completed(mut self, cancelled: bool) {
        self.cancelled = cancelled;
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.strand.state.finish(self.cancelled);
    }
}

thread_local! {
    /// Whether a command run by this thread's loop is finishing now: a command its end
    /// makes ready may be kept for this thread.
    static FINISHING: Cell<bool> = const { Cell::new(false) };
    static NEXT: RefCell<Option<Run>> = const { RefCell::new(None) };
}

/// Runs `command` for `done`'s node; returns what cancels it.
pub(super) fn execute(
    runtime: &Runtime,
    command: Command,
    call: CommandCall,
    done: Done,
) -> Option<CancelHandle> {
    let strand = Arc::clone(&runtime.shared.processes);
    if let Err(error) = strand.state.admit() {
        done.finish(Output::failed(error));
        return None;
    }
    let stop = Arc::new(Stop::new());
    let cancel = {
        let stop = Arc::clone(&stop);
        CancelHandle::from_fn(TaskId::next(), move || stop.stop())
    };
    let run = Run {
        command,
        call,
        stop,
        admitted: Admitted {
            strand,
            cancelled: true,
        },
        done,
    };
    if let Some(run) = offer(run) {
        let started = std::thread::Builder::new()
            .name("plait-command".to_owned())
            .spawn(move || run.run());
        // The run, dropped with the closure, reports the error as its node's end.
        if let Err(error) = started {
            tracing::warn!(%error, "cannot start a thread to run a command");
        }
    }
    Some(cancel)
}

/// Keeps `run` for this thread to do next, if a command of this thread's loop is
/// finishing and has not kept one already; otherwise hands it back.
fn offer(run: Run) -> Option<Run> {
    if !FINISHING.with(Cell::get) {
        return Some(run);
    }
    NEXT.with(|next| {
        let mut next = next.borrow_mut();
        if next.is_some() {
            Some(run)
        } else {
            *next = Some(run);
            None
        }
    })
}

impl Run {
    /// Runs this command, then whatever its end kept for this thread, and so on.
    fn run(self) {
        let mut next = Some(self);
        while let Some(run) = next {
            run.run_one();
            next = NEXT.with(|next| next.borrow_mut().take());
        }
    }

    fn run_one(self) {
        let Run {
            command,
            call,
            stop,
            admitted,
            mut done,
        } = self;
        let strand = &admitted.strand;
        let output = {
            // Listed before the shutdown's flag is read: a shutdown either finds it listed
            // and stops it, or has set the flag this sees.
            let _listed = strand.commands.add(Arc::clone(&stop));
            if done.is_stopping() || strand.state.is_cancelling() {
                drop(command);
                Output::failed(Error::Cancelled)
            } else {
                done.start();
                let ended = polled::run(command, &stop);
                if stop.is_stopped() {
                    Output::failed(Error::Cancelled)
                } else {
                    call.output(ended.map_err(Error::failed))
                }
            }
        };
        drop(call);
        // Given back before the end is reported: the next command may need the room.
        admitted.completed(stop.is_stopped());
        let was = FINISHING.with(|finishing| finishing.replace(true));
        done.finish(output);
        FINISHING.with(|finishing| finishing.set(was));
    }
}
