//! The web strand: an HTTP server on plait's coroutine strand, where a handler awaits work
//! on the other strands as naturally as a database call.
//!
//! Python's web servers (aiohttp, sanic, tornado) run every handler on one event loop, so
//! one CPU-heavy handler stalls every other request until it returns; the cure,
//! `run_in_executor` to a process pool, is left to each handler. Here the server is an
//! [axum](https://docs.rs/axum) router served on the runtime's coroutine strand, and a
//! handler sends CPU work to the thread strand (`rt.spawn(..).await`), crash-prone work to
//! a worker process (`rt.spawn_process(..).await`), and waits as a coroutine: a slow
//! handler never holds up the others.
//!
//! [`serve`] starts a server; [`Serving::stop`] or the runtime's own
//! [`shutdown`](plait::Runtime::shutdown) stops it in order: it takes no new connection and
//! lets the requests in flight finish.
//!
//! ```no_run
//! use axum::{Router, extract::State, routing::get};
//! use plait::Runtime;
//!
//! fn fib(n: u64) -> u64 {
//!     if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
//! }
//!
//! let rt = Runtime::new()?;
//! let app = Router::new()
//!     .route("/hello", get(|| async { "hello" }))
//!     // CPU work goes to the thread strand; the loop goes on serving meanwhile.
//!     .route("/fib", get(|State(rt): State<Runtime>| async move {
//!         rt.spawn(|| fib(32)).await.map(|n| n.to_string()).unwrap_or_default()
//!     }))
//!     .with_state(rt.clone());
//! let listener = std::net::TcpListener::bind("127.0.0.1:8080")?;
//! let server = plait_web::serve(&rt, listener, app)?;
//! println!("serving on http://{}", server.local_addr());
//! server.join()?; // until stopped, or until rt.shutdown(..)
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod dashboard;

use std::net::SocketAddr;

use plait::{Handle, Runtime};
use tokio::sync::oneshot;

/// Why a server could not start or stopped on an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// The listener could not be used (its address unknown, or not made non-blocking).
    #[error("the listener cannot serve: {0}")]
    Listener(#[source] std::io::Error),
    /// The server stopped on an I/O error.
    #[error("the server stopped on an error: {0}")]
    Serve(#[source] std::io::Error),
    /// The runtime refused the server's coroutine (it is shutting down).
    #[error("the runtime refused the server: {0}")]
    Runtime(#[source] plait::Error),
}

/// A server started by [`serve`].
#[must_use = "dropping a Serving leaves the server running until the runtime shuts down; call stop or join"]
pub struct Serving {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: Handle<Result<(), std::io::Error>>,
}

/// Serves `app` on `listener` (bound already: `127.0.0.1:0` picks a free port) on `rt`'s
/// coroutine strand, until [`Serving::stop`] or `rt.shutdown(..)`. Either stops it in
/// order: no new connection is taken, and the requests in flight are answered (within the
/// shutdown's timeout, for a shutdown).
///
/// # Errors
///
/// [`WebError::Listener`] if the listener's address cannot be read or it cannot be made
/// non-blocking.
pub fn serve(
    rt: &Runtime,
    listener: std::net::TcpListener,
    app: axum::Router,
) -> Result<Serving, WebError> {
    let addr = listener.local_addr().map_err(WebError::Listener)?;
    listener.set_nonblocking(true).map_err(WebError::Listener)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let closing = rt.closing();
    let served = rt.spawn_async(async move {
        // Made here: a tokio listener belongs to the runtime it is made in.
        let listener = tokio::net::TcpListener::from_std(listener)?;
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = stopped => {}
                    () = closing => {}
                }
            })
            .await
    });
    Ok(Serving {
        addr,
        stop: Some(stop),
        served,
    })
}

impl Serving {
    /// Where it listens.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops taking connections, answers the requests in flight, and returns once they are.
    ///
    /// # Errors
    ///
    /// As [`join`](Serving::join).
    pub fn stop(mut self) -> Result<(), WebError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join()
    }

    /// Waits until the server has stopped (by [`stop`](Serving::stop) from a clone of
    /// nothing: by the runtime's shutdown).
    ///
    /// # Errors
    ///
    /// [`WebError::Serve`] if it stopped on an I/O error; [`WebError::Runtime`] if its
    /// coroutine was cancelled (a shutdown's timeout ran out with requests still in
    /// flight) or refused.
    pub fn join(self) -> Result<(), WebError> {
        match self.served.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(WebError::Serve(error)),
            Err(error) => Err(WebError::Runtime(error)),
        }
    }
}
