//! SIGINT and SIGTERM for the queue's long-running commands (`plait worker`, `plait beat`):
//! caught from before the command says it runs, the first asks it to stop in order, a
//! second to stop now.

/// The two signals, caught; [`watch`](Signals::watch) waits for them on its own thread.
pub(crate) struct Signals {
    runtime: tokio::runtime::Runtime,
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Catches SIGINT and SIGTERM from now on (their default, ending the process, no longer
    /// applies).
    ///
    /// # Errors
    ///
    /// If the signal handling cannot start.
    pub(crate) fn install() -> Result<Signals, String> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the signal handling: {e}"))?;
        let caught = runtime.block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ))
        });
        let (interrupt, terminate) =
            caught.map_err(|e| format!("cannot catch SIGINT and SIGTERM: {e}"))?;
        Ok(Signals {
            runtime,
            interrupt,
            terminate,
        })
    }

    /// Waits for the first signal; returns its name.
    pub(crate) fn wait(mut self) -> &'static str {
        self.runtime
            .block_on(next(&mut self.interrupt, &mut self.terminate))
    }

    /// Waits: calls `first` with the first signal's name, then `second` at the next one.
    pub(crate) fn watch(mut self, first: impl FnOnce(&str), second: impl FnOnce()) {
        let (interrupt, terminate) = (&mut self.interrupt, &mut self.terminate);
        self.runtime.block_on(async {
            first(next(interrupt, terminate).await);
            next(interrupt, terminate).await;
            second();
        });
    }
}

/// The next of the two signals to arrive: its name.
async fn next(
    interrupt: &mut tokio::signal::unix::Signal,
    terminate: &mut tokio::signal::unix::Signal,
) -> &'static str {
    tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}
