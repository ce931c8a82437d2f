//! One attempt at a task: from its payload to a running plait task, and from that task's
//! end to the [`Outcome`] the store records.

use std::time::Duration;

use crate::client::CommandResult;
use plait::process::{Command, CommandOutput};
use plait::{CancelHandle, Error, Handle, Runtime};

use crate::failure::{Failure, FailureKind};
use crate::payload::Payload;
use crate::task::{Lease, Outcome};

/// An attempt that started: its handle to await, and its cancel.
pub(super) struct Started {
    pub(super) cancel: CancelHandle,
    pub(super) run: Run,
}

/// The running task, by kind: what its end is turned into differs.
pub(super) enum Run {
    Command(Handle<CommandOutput>),
    Task(Handle<String>),
    Encoded(Handle<Vec<u8>>),
}

/// How a run ended, before the worker decides what a cancellation meant.
pub(super) enum Ended {
    Command(plait::Result<CommandOutput>),
    Task(plait::Result<String>),
    Encoded(plait::Result<Vec<u8>>),
}

impl Ended {
    /// Whether the run was stopped by a cancellation rather than ending on its own.
    pub(super) fn was_cancelled(&self) -> bool {
        matches!(
            self,
            Ended::Command(Err(Error::Cancelled))
                | Ended::Task(Err(Error::Cancelled))
                | Ended::Encoded(Err(Error::Cancelled))
        )
    }
}

impl Run {
    pub(super) async fn ended(self) -> Ended {
        match self {
            Run::Command(handle) => Ended::Command(handle.await),
            Run::Task(handle) => Ended::Task(handle.await),
            Run::Encoded(handle) => Ended::Encoded(handle.await),
        }
    }
}

/// Starts the attempt, or says at once why no worker can run it. A command sees its
/// task's id, its attempt's number and the worker's name in `PLAIT_TASK_ID`,
/// `PLAIT_ATTEMPT` and `PLAIT_WORKER` (say, to name its output, or to make a side effect
/// idempotent).
pub(super) fn start(rt: &Runtime, lease: &Lease, worker: &str) -> Result<Started, Outcome> {
    let payload = Payload::decode(&lease.payload).map_err(Outcome::Rejected)?;
    match payload {
        Payload::Command { argv, env, cwd } => {
            let mut command = Command::new(argv[0].clone())
                .args(argv[1..].iter().cloned())
                .env("PLAIT_TASK_ID", lease.id.to_string())
                .env("PLAIT_ATTEMPT", lease.attempt.to_string())
                .env("PLAIT_WORKER", worker);
            for (key, value) in env {
                command = command.env(key, value);
            }
            if let Some(cwd) = cwd {
                command = command.cwd(cwd);
            }
            if let Some(limit) = lease.time_limit {
                command = command.timeout(limit);
            }
            let handle = rt.spawn_command(command);
            Ok(Started {
                cancel: handle.cancel_handle(),
                run: Run::Command(handle),
            })
        }
        Payload::Task {
            name,
            version,
            args,
        } => {
            registered(&name, version)?;
            let args = args.to_string();
            let handle = match lease.time_limit {
                Some(limit) => rt.task().timeout(limit).spawn_process_json(&name, &args),
                None => rt.spawn_process_json(&name, &args),
            };
            Ok(Started {
                cancel: handle.cancel_handle(),
                run: Run::Task(handle),
            })
        }
        Payload::Encoded {
            name,
            version,
            args,
        } => {
            registered(&name, version)?;
            let handle = match lease.time_limit {
                Some(limit) => rt.task().timeout(limit).spawn_process_by_name(&name, args),
                None => rt.spawn_process_by_name(&name, args),
            };
            Ok(Started {
                cancel: handle.cancel_handle(),
                run: Run::Encoded(handle),
            })
        }
    }
}

/// Checks that task `name` is registered here in `version`; else the rejection that says
/// which tasks are.
fn registered(name: &str, version: u32) -> Result<(), Outcome> {
    let Some(here) = plait::process::task_version(name) else {
        let registered = plait::process::registered_tasks();
        return Err(Outcome::Rejected(Failure::new(
            FailureKind::UnknownTask,
            format!(
                "no task is registered as {name:?} in this worker (it has: {})",
                if registered.is_empty() {
                    "none".to_owned()
                } else {
                    registered.join(", ")
                }
            ),
        )));
    };
    if here != version {
        return Err(Outcome::Rejected(Failure::new(
            FailureKind::VersionMismatch,
            format!(
                "{name} is version {here} in this worker, and the task asks for version \
                 {version}; run a worker built with version {version}"
            ),
        )));
    }
    Ok(())
}

/// The name a rate limit knows a task by: a registered task's name, or a command's program
/// (its file name); `None` for a payload that does not read.
pub(super) fn task_name(payload: &[u8]) -> Option<String> {
    match Payload::decode(payload).ok()? {
        Payload::Command { argv, .. } => {
            let program = argv.first()?;
            Some(
                std::path::Path::new(program)
                    .file_name()
                    .map_or_else(|| program.clone(), |n| n.to_string_lossy().into_owned()),
            )
        }
        Payload::Task { name, .. } | Payload::Encoded { name, .. } => Some(name),
    }
}

/// The outcome of a run that was not cancelled by the worker.
pub(super) fn outcome(ended: Ended, time_limit: Option<Duration>) -> Outcome {
    match ended {
        Ended::Command(Ok(output)) => command_outcome(&output, time_limit),
        Ended::Command(Err(error)) => error_outcome(&error),
        Ended::Task(Ok(json)) => Outcome::Succeeded(json.into_bytes()),
        Ended::Encoded(Ok(bytes)) => Outcome::Succeeded(bytes),
        Ended::Task(Err(error)) | Ended::Encoded(Err(error)) => error_outcome(&error),
    }
}

fn command_outcome(output: &CommandOutput, time_limit: Option<Duration>) -> Outcome {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.success() {
        let result = CommandResult {
            code: output.code,
            signal: output.signal,
            stdout: stdout.into_owned(),
            stderr: stderr.into_owned(),
            elapsed_ms: u64::try_from(output.elapsed.as_millis()).unwrap_or(u64::MAX),
        };
        return Outcome::Succeeded(serde_json::to_vec(&result).unwrap_or_default());
    }
    let tail = last_lines(&stderr);
    if output.timed_out {
        let limit = time_limit.map_or_else(String::new, |limit| format!(" of {limit:?}"));
        return Outcome::Failed {
            failure: Failure::new(
                FailureKind::TimedOut,
                format!("the command ran past its time limit{limit} and was killed{tail}"),
            ),
            retry: true,
        };
    }
    match (output.code, output.signal) {
        // Killed by a signal: a crash (a segfault, the OOM killer), charged to the crash
        // budget so that a command that always crashes ends in the dead letters.
        (None, Some(signal)) => Outcome::Crashed(Failure::new(
            FailureKind::WorkerLost,
            format!("the command was killed by signal {signal}{tail}"),
        )),
        (code, _) => Outcome::Failed {
            failure: Failure::new(
                FailureKind::CommandFailed,
                format!(
                    "the command exited with status {}{tail}",
                    code.map_or_else(|| "unknown".to_owned(), |code| code.to_string())
                ),
            ),
            retry: true,
        },
    }
}

/// The end of a command's standard error, to say why it failed: its last 5 lines, at most
/// 1 KiB.
fn last_lines(stderr: &str) -> String {
    let trimmed = stderr.trim_end();
    if trimmed.is_empty() {
        return String::new();
    }
    let start = trimmed
        .char_indices()
        .rev()
        .filter(|&(_, c)| c == '\n')
        .nth(4)
        .map_or(0, |(i, _)| i + 1);
    let mut tail = &trimmed[start..];
    if tail.len() > 1024 {
        let mut cut = tail.len() - 1024;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = &tail[cut..];
    }
    format!("; its standard error ends: {tail}")
}

/// A plait error from a run, as an outcome: a crash of the process that ran it is charged
/// to the crash budget, a task that cannot be run here is rejected, the rest are failures.
pub(super) fn error_outcome(error: &Error) -> Outcome {
    let failed = |kind, retry| Outcome::Failed {
        failure: Failure::new(kind, error.to_string()),
        retry,
    };
    match error {
        Error::Panicked { .. } => failed(FailureKind::Panicked, true),
        Error::TimedOut => failed(FailureKind::TimedOut, true),
        Error::WorkerLost { .. } => {
            Outcome::Crashed(Failure::new(FailureKind::WorkerLost, error.to_string()))
        }
        Error::MemoryLimit { .. } => {
            Outcome::Crashed(Failure::new(FailureKind::MemoryLimit, error.to_string()))
        }
        Error::Codec { .. } | Error::PayloadTooLarge { .. } => {
            Outcome::Rejected(Failure::new(FailureKind::BadPayload, error.to_string()))
        }
        Error::UnknownTask { .. } => {
            Outcome::Rejected(Failure::new(FailureKind::UnknownTask, error.to_string()))
        }
        // A command that cannot start (no such program) will not start on a retry.
        Error::Failed(_) => failed(FailureKind::CommandFailed, false),
        // This worker cannot run it now (it is shutting down, or cannot start its
        // processes): another may.
        Error::Shutdown | Error::WorkerStart { .. } | Error::Cancelled => Outcome::Released,
        _ => failed(FailureKind::Other, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stderr_tail_keeps_the_last_five_lines() {
        let stderr = (1..=9)
            .map(|i| format!("line {i}"))
            .collect::<Vec<_>>()
            .join("\n");
        let tail = last_lines(&format!("{stderr}\n\n"));
        assert_eq!(
            tail,
            "; its standard error ends: line 5\nline 6\nline 7\nline 8\nline 9"
        );
        assert_eq!(last_lines("  \n"), "");
        let long = "é".repeat(2000);
        assert!(last_lines(&long).len() <= 1024 + 30);
    }

    #[test]
    fn a_crash_of_the_process_is_charged_to_the_crash_budget_and_a_bad_argument_is_rejected() {
        let lost = Error::WorkerLost {
            task: "t".into(),
            exit: plait::process::WorkerExit::Signal(11),
            stderr: String::new(),
        };
        assert!(
            matches!(error_outcome(&lost), Outcome::Crashed(f) if f.kind == FailureKind::WorkerLost)
        );
        let codec = Error::Codec {
            task: "t".into(),
            reason: "bad".into(),
        };
        assert!(
            matches!(error_outcome(&codec), Outcome::Rejected(f) if f.kind == FailureKind::BadPayload)
        );
        let panicked = Error::Panicked {
            message: "boom".into(),
        };
        assert!(matches!(
            error_outcome(&panicked),
            Outcome::Failed { retry: true, .. }
        ));
    }
}
