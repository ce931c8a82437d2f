//! The accept loop: hyper's HTTP/1 connections on the coroutine strand, each under the
//! server's limits, all stopped in order together.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use plait::{Handle, Runtime};
use tokio::sync::{Semaphore, oneshot, watch};

use crate::WebError;

/// What a server lets its clients hold. The defaults suit a server on the open network.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Limits {
    /// Connections open at once; the next client waits in the listen backlog until one
    /// closes, so memory stays bounded however many clients come (default 16,384).
    pub max_connections: usize,
    /// How long a client may take to send a request's head, counted from when the server
    /// waits for it: a client that sends nothing, or dribbles its headers, is cut off
    /// (default 10 s).
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 16_384,
            header_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// At most `n` connections at once (at least one).
    #[must_use]
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Cut off a client that has not sent a request's head within `timeout`.
    #[must_use]
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }
}

/// Tells handlers that their server is stopping, so that a response that could go on
/// for long (a stream of events, a long poll) ends now and the stop is not held up.
/// Every request served by [`serve`] carries one: take it as
/// `Option<axum::Extension<Stopping>>` (absent where the router is served otherwise).
#[derive(Clone, Debug)]
pub struct Stopping(watch::Receiver<bool>);

impl Stopping {
    /// Whether the server has begun to stop.
    #[must_use]
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once the server begins to stop.
    pub async fn stopped(&self) {
        let mut told = self.0.clone();
        // An error means the server is gone: stopped as well.
        let _ = told.wait_for(|stopping| *stopping).await;
    }
}

/// A server started by [`serve`].
#[must_use = "dropping a Serving leaves the server running until the runtime shuts down; call stop or join"]
pub struct Serving {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: Handle<Result<(), std::io::Error>>,
}

/// Serves `app` on `listener` (bound already: `127.0.0.1:0` picks a free port) on `rt`'s
/// coroutine strand, under the default [`Limits`], until [`Serving::stop`] or
/// `rt.shutdown(..)`. Either stops it in order: no new connection is taken, handlers are
/// told [`Stopping`], and the requests in flight are answered (within the shutdown's
/// timeout, for a shutdown).
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
    serve_with(rt, listener, app, Limits::default())
}

/// As [`serve`], under `limits`.
///
/// # Errors
///
/// As [`serve`].
pub fn serve_with(
    rt: &Runtime,
    listener: std::net::TcpListener,
    app: axum::Router,
    limits: Limits,
) -> Result<Serving, WebError> {
    let addr = listener.local_addr().map_err(WebError::Listener)?;
    listener.set_nonblocking(true).map_err(WebError::Listener)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let closing = rt.closing();
    let served = rt.spawn_async(async move {
        // Made here: a tokio listener belongs to the runtime it is made in.
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let (tell, told) = watch::channel(false);
        let app = app.layer(axum::Extension(Stopping(told.clone())));
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let connections = GracefulShutdown::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        let mut stop = pin!(async move {
            tokio::select! {
                _ = stopped => {}
                () = closing => {}
            }
        });
        loop {
            let slot = tokio::select! {
                slot = Arc::clone(&slots).acquire_owned() => slot,
                () = &mut stop => break,
            };
            let Ok(slot) = slot else { break };
            let stream = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut stop => break,
            };
            let stream = match stream {
                Ok((stream, _)) => stream,
                // Out of file descriptors, or a connection reset before it was taken:
                // the server goes on (as axum's does), after a pause for the first.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (http, app, watcher) = (http.clone(), app.clone(), connections.watcher());
            let (stopping, header_timeout) = (Stopping(told.clone()), limits.header_timeout);
            tokio::spawn(async move {
                // An idle connection holds no buffers until its first bytes arrive (hyper
                // makes 8 KiB ones at once); one that sends nothing in time is closed.
                // `peek`, not `readable`: readiness may be reported before any byte is.
                let mut first = [0_u8; 1];
                let spoke = tokio::select! {
                    peeked = tokio::time::timeout(header_timeout, stream.peek(&mut first)) => {
                        matches!(peeked, Ok(Ok(n)) if n > 0)
                    }
                    () = stopping.stopped() => false,
                };
                if spoke {
                    let service = TowerToHyperService::new(app);
                    let connection = http.serve_connection(TokioIo::new(stream), service);
                    // Boxed: the task of an idle connection stays small. A client that
                    // went away is no error of the server's.
                    let _ = Box::pin(watcher.watch(connection)).await;
                }
                drop(slot);
            });
        }
        drop(listener);
        let _ = tell.send(true);
        connections.shutdown().await;
        Ok(())
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
