//! [`QueueError`]: what can go wrong between a caller and the queue's storage.

use std::path::PathBuf;

/// An error from the queue: bad input refused before anything is stored, or a storage
/// failure that names the file (or server) and the way out.
///
/// Nothing acknowledged is lost to one of these: an enqueue that returned `Ok` is stored,
/// and one that returned `Err` is not.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// A queue name that is empty, too long, or holds other characters than letters,
    /// digits, `-`, `_` and `.`.
    #[error(
        "{name:?} is not a queue name: use 1 to 64 letters, digits, '-', '_' or '.' (for example \"default\")"
    )]
    InvalidQueueName {
        /// The name given.
        name: String,
    },

    /// A task's payload over the store's limit; refused at enqueue.
    #[error(
        "the task's payload is {bytes} bytes, over the queue's limit of {limit} bytes; pass a \
         path or a key to the data instead, or raise the limit (payload_limit)"
    )]
    PayloadTooLarge {
        /// The payload's size.
        bytes: usize,
        /// The limit in force.
        limit: usize,
    },

    /// A Redis namespace with characters a key prefix cannot hold (a brace would break a
    /// cluster's hash tags).
    #[error(
        "{namespace:?} is not a namespace: use 1 to 64 letters, digits, '-', '_' or '.' (for \
         example \"plait\")"
    )]
    InvalidNamespace {
        /// The namespace given.
        namespace: String,
    },

    /// An idempotency key that is empty or longer than 256 bytes.
    #[error("{key:?} is not an idempotency key: use 1 to 256 bytes")]
    InvalidKey {
        /// The key given.
        key: String,
    },

    /// No task has this id (it never existed, or its result expired and was purged).
    #[error("no task {id} in the queue (it never existed, or its result expired)")]
    NotFound {
        /// The id asked for.
        id: u64,
    },

    /// The database file is locked by another process for longer than the store waits.
    #[error(
        "{path} stayed locked by another process for {waited_ms} ms; is a long transaction \
         open elsewhere (a `sqlite3` shell, a backup)? close it and retry"
    )]
    Locked {
        /// The database file.
        path: PathBuf,
        /// How long the store waited.
        waited_ms: u64,
    },

    /// The disk (or the file system's quota) is full: the write was not made.
    #[error("{path}: the disk is full, so the write was not made; free space and retry")]
    DiskFull {
        /// The database file.
        path: PathBuf,
    },

    /// The file is not a queue database, or is damaged.
    #[error(
        "{path} is not a readable queue database ({detail}); move it aside, and restore it \
         from a backup or start a new queue"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },

    /// The database was written by a newer plait, whose layout this build does not know.
    #[error(
        "{path} holds queue schema version {found}, newer than this plait's {supported}; use \
         the plait that wrote it, or a newer one"
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The newest version this build reads.
        supported: i64,
    },

    /// Any other storage failure, with the file and what the storage said.
    #[error("queue storage at {path}: {detail}")]
    Storage {
        /// The database file (or server address).
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },

    /// The Redis server cannot be reached: it refused or dropped the connection, or did
    /// not answer in time. Workers retry, with a backoff.
    #[error(
        "cannot reach the Redis server at {server} ({detail}); is it running, and is the \
         URL right (redis://[:PASSWORD@]HOST[:PORT][/DB], rediss:// for TLS)?"
    )]
    Unreachable {
        /// The server's URL, without its password.
        server: String,
        /// What went wrong.
        detail: String,
    },

    /// The Redis server answered with an error (out of memory, a wrong password, a key of
    /// another program's in plait's namespace).
    #[error("the Redis server at {server} refused: {detail}")]
    Redis {
        /// The server's URL, without its password.
        server: String,
        /// The server's error.
        detail: String,
    },
}

impl QueueError {
    /// What kind of error this is, for callers that branch on it.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueueError::InvalidQueueName { .. }
            | QueueError::PayloadTooLarge { .. }
            | QueueError::InvalidKey { .. }
            | QueueError::InvalidNamespace { .. } => ErrorKind::BadInput,
            QueueError::NotFound { .. } => ErrorKind::NotFound,
            QueueError::Locked { .. } => ErrorKind::Busy,
            QueueError::DiskFull { .. } => ErrorKind::DiskFull,
            QueueError::Corrupt { .. } | QueueError::SchemaTooNew { .. } => ErrorKind::Unreadable,
            QueueError::Storage { .. } | QueueError::Redis { .. } => ErrorKind::Storage,
            QueueError::Unreachable { .. } => ErrorKind::Unreachable,
        }
    }
}

/// The kinds of [`QueueError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller's input was refused; nothing was stored.
    BadInput,
    /// No such task.
    NotFound,
    /// The storage stayed busy; retrying later may work.
    Busy,
    /// The disk is full.
    DiskFull,
    /// The storage cannot be read by this build.
    Unreadable,
    /// Another storage failure.
    Storage,
    /// The storage's server cannot be reached (for now, perhaps).
    Unreachable,
}

/// A `Result` with [`QueueError`].
pub type Result<T> = std::result::Result<T, QueueError>;
