//! A flag that tasks can wait for, from both strands.

use tokio::sync::watch;

use crate::task::wait;

/// A flag that tasks wait to see set (Python's `threading.Event` and `asyncio.Event` in
/// one): a thin wrapper over a tokio `watch` channel.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// let rt = plait::Runtime::new()?;
/// let ready = Arc::new(plait::sync::Event::new());
/// let waiter = {
///     let ready = ready.clone();
///     rt.spawn_async(async move { ready.wait_async().await; "go" })
/// };
/// ready.set();
/// assert_eq!(waiter.join()?, "go");
/// # Ok::<(), plait::Error>(())
/// ```
#[derive(Debug)]
pub struct Event {
    flag: watch::Sender<bool>,
}

impl Default for Event {
    fn default() -> Self {
        Event::new()
    }
}

impl Event {
    /// A new event, not set.
    #[must_use]
    pub fn new() -> Self {
        Event {
            flag: watch::Sender::new(false),
        }
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.flag.send_replace(true);
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.flag.send_replace(false);
    }

    /// Whether the flag is set.
    #[must_use]
    pub fn is_set(&self) -> bool {
        *self.flag.borrow()
    }

    /// Waits until the flag is set, in a coroutine.
    pub async fn wait_async(&self) {
        let mut seen = self.flag.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = seen.wait_for(|set| *set).await;
    }

    /// Waits until the flag is set, blocking the current thread.
    pub fn wait(&self) {
        wait::blocking_region(|| wait::block_on(self.wait_async(), None));
    }
}
