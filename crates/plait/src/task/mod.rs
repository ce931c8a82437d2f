//! Tasks and their handles: what every strand shares.
//!
//! * [`Handle`]: one task's result; [`CancelHandle`]: its cancellation, from elsewhere.
//! * [`TaskGroup`](crate::TaskGroup): tasks that succeed or fail together, cancelled when
//!   dropped (from [`Runtime::group`](crate::Runtime::group)).
//! * [`as_completed`]: results of many handles in the order they finish.
//! * [`TaskBuilder`](crate::TaskBuilder): a task with options (a time limit), from
//!   [`Runtime::task`](crate::Runtime::task).
//! * [`is_cancelled`] / [`check_cancelled`]: how a running thread task learns it should stop.

pub(crate) mod as_completed;
pub(crate) mod core;
pub(crate) mod current;
pub(crate) mod handle;
pub(crate) mod raw;
pub(crate) mod state;
pub(crate) mod wait;

#[cfg(all(test, plait_loom))]
mod loom_test;

pub use crate::id::TaskId;
pub use as_completed::{AsCompleted, as_completed};
pub use current::{check_cancelled, is_cancelled};
pub use handle::{CancelHandle, Handle};
