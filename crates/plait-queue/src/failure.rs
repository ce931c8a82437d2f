//! [`Failure`]: why an attempt did not succeed, in a form that travels (serde, JSON).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an attempt at a task did not succeed: stored with the task, shown by `plait status`,
/// sent between machines. Plain data (its kind and a message), so that any build, or
/// another language, can read it.
///
/// # Examples
///
/// ```
/// use plait_queue::{Failure, FailureKind};
///
/// let failure = Failure::new(FailureKind::TimedOut, "ran past its limit of 30 s");
/// let json = serde_json::to_string(&failure)?;
/// assert_eq!(json, r#"{"kind":"timed_out","message":"ran past its limit of 30 s"}"#);
/// assert_eq!(serde_json::from_str::<Failure>(&json)?, failure);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// What happened, for a person.
    pub message: String,
}

impl Failure {
    /// A failure of `kind`, saying `message`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

/// The kinds of [`Failure`]. New kinds may be added; a reader that does not know one sees
/// [`FailureKind::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The task ran and returned an error of its own.
    Failed,
    /// The task panicked.
    Panicked,
    /// The task ran past its time limit and was stopped.
    TimedOut,
    /// The task was cancelled.
    Cancelled,
    /// The process running the task died under it (a crash, a kill, the OOM killer).
    WorkerLost,
    /// The task allocated past its memory cap.
    MemoryLimit,
    /// The worker that held the task stopped renewing its lease (it died, or hung).
    LeaseExpired,
    /// A command exited with a failure status.
    CommandFailed,
    /// The payload could not be read: another format, or a newer one.
    BadPayload,
    /// No task of that name is registered in the worker.
    UnknownTask,
    /// The task is registered, but in another version than asked for.
    VersionMismatch,
    /// It succeeded, but its result is over the store's result limit, so it was not kept.
    ResultTooLarge,
    /// A kind this build does not know.
    #[serde(other)]
    Other,
}

impl FailureKind {
    /// The kind's name as it travels: `failed`, `timed_out`, ...
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Failed => "failed",
            FailureKind::Panicked => "panicked",
            FailureKind::TimedOut => "timed_out",
            FailureKind::Cancelled => "cancelled",
            FailureKind::WorkerLost => "worker_lost",
            FailureKind::MemoryLimit => "memory_limit",
            FailureKind::LeaseExpired => "lease_expired",
            FailureKind::CommandFailed => "command_failed",
            FailureKind::BadPayload => "bad_payload",
            FailureKind::UnknownTask => "unknown_task",
            FailureKind::VersionMismatch => "version_mismatch",
            FailureKind::ResultTooLarge => "result_too_large",
            FailureKind::Other => "other",
        }
    }
}

/// `once`, or `N times`: how often something happened, as a reason says it.
pub(crate) fn times(n: u32) -> String {
    if n == 1 {
        "once".to_owned()
    } else {
        format!("{n} times")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_is_said_once() {
        assert_eq!(times(1), "once");
        assert_eq!(times(3), "3 times");
    }

    #[test]
    fn a_kind_from_a_newer_build_reads_as_other() {
        let failure: Failure =
            serde_json::from_str(r#"{"kind":"quantum_decoherence","message":"m"}"#).unwrap();
        assert_eq!(failure.kind, FailureKind::Other);
    }

    #[test]
    fn every_kind_travels_under_its_own_name() {
        use FailureKind::*;
        for kind in [
            Failed,
            Panicked,
            TimedOut,
            Cancelled,
            WorkerLost,
            MemoryLimit,
            LeaseExpired,
            CommandFailed,
            BadPayload,
            UnknownTask,
            VersionMismatch,
            ResultTooLarge,
        ] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<FailureKind>(&json).unwrap(), kind);
        }
    }
}
