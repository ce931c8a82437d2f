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
//! lets the requests in flight finish. A handler that streams (server-sent events) or
//! long-polls ends early when told [`Stopping`]. [`Limits`] bound what clients may hold:
//! connections at once, and how long a client may take to send a request's head (a slow
//! or idle client is cut off).
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
mod server;

pub use server::{Limits, Serving, Stopping, serve, serve_with};

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
