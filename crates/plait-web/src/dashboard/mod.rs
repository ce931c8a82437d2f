//! plait's face on the web: a live dashboard, a JSON API for the queue, and Prometheus
//! metrics, as one [`axum::Router`] to serve with [`serve`](crate::serve) (what
//! `plait serve` and `plait run --serve` do) or to nest in an application of your own.
//!
//! | path | what |
//! |---|---|
//! | `/` | the dashboard: a page (its assets are in the binary) that updates itself |
//! | `/api/events` | server-sent events: a snapshot of the queue and the run when either changes |
//! | `/api/...` | the queue's HTTP API: see `docs/web.md` |
//! | `/metrics` | Prometheus metrics, in the text exposition format |
//!
//! # Security
//!
//! With a [`token`](DashboardBuilder::token), every request but the page's static shell
//! (which holds no data) must carry `Authorization: Bearer TOKEN`, or is answered 401;
//! the page asks for the token and keeps it in the tab's session storage. Without one,
//! only requests whose `Host` is a loopback name are answered, so a web page elsewhere
//! cannot reach the dashboard through a DNS name that points to 127.0.0.1. Requests that
//! change state must send JSON and, from a browser, come from the dashboard's own origin
//! with the page's CSRF token: another site's page cannot post to it.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use plait_queue::SqliteStore;
//! use plait_web::dashboard::Dashboard;
//!
//! let rt = plait::Runtime::new()?;
//! let folder = std::env::temp_dir().join(format!("plait-dashboard-doc-{}", std::process::id()));
//! let store = Arc::new(SqliteStore::open(folder.join("queue.db"))?);
//! let app = Dashboard::builder().queue(store).runtime(rt.clone()).build();
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let serving = plait_web::serve(&rt, listener, app)?;
//! println!("the dashboard is on http://{}", serving.local_addr());
//! serving.stop()?;
//! # std::fs::remove_dir_all(folder).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod api;
mod guard;
mod live;
mod metrics;
mod run;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use plait::Runtime;
use plait_queue::Store;

pub use run::{NodeState, RunBoard};

/// The largest request body the API reads; a larger one is answered 413.
pub const BODY_LIMIT: usize = 256 * 1024;

/// Builds a dashboard: [`Dashboard::builder`].
#[derive(Default)]
#[must_use = "a builder does nothing until build() is called"]
pub struct DashboardBuilder {
    store: Option<Arc<dyn Store>>,
    run: Option<RunBoard>,
    runtime: Option<Runtime>,
    token: Option<String>,
    hosts: Vec<String>,
    poll: Option<Duration>,
    body_timeout: Option<Duration>,
    default_queue: Option<String>,
}

/// The dashboard, its API and its metrics.
pub struct Dashboard;

impl Dashboard {
    /// A builder for a dashboard that shows nothing yet: add a queue, a run, or both.
    pub fn builder() -> DashboardBuilder {
        DashboardBuilder::default()
    }
}

impl DashboardBuilder {
    /// Shows this queue, and answers the queue API on it.
    pub fn queue(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Shows this run: its graph and its task stream.
    pub fn run(mut self, run: RunBoard) -> Self {
        self.run = Some(run);
        self
    }

    /// Reports this runtime's load, strand by strand, in `/metrics`.
    pub fn runtime(mut self, rt: Runtime) -> Self {
        self.runtime = Some(rt);
        self
    }

    /// Answers only requests that carry `Authorization: Bearer TOKEN`; needed, and taken
    /// as given, when it is served beyond the loopback interface.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Answers requests for this `Host` name too (without a port), besides the loopback
    /// names: a name that reaches this machine's loopback, or where a token guards it.
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.hosts.push(host.into());
        self
    }

    /// How often the live view looks at the queue (default 500 ms).
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll = Some(every);
        self
    }

    /// How long a client may take to send a request's body before it is answered 408
    /// (default 30 s).
    pub fn body_timeout(mut self, within: Duration) -> Self {
        self.body_timeout = Some(within);
        self
    }

    /// The queue a task submitted without one goes to (default `default`): what
    /// `plait serve` takes from plait.toml's `default_queue`, as `plait submit` does.
    pub fn default_queue(mut self, queue: impl Into<String>) -> Self {
        self.default_queue = Some(queue.into());
        self
    }

    /// The router: mount it with [`serve`](crate::serve) or nest it. Its live view's
    /// poller starts with the first page that listens, on the runtime that serves it.
    pub fn build(self) -> Router {
        let board = Arc::new(Board {
            store: self.store,
            run: self.run,
            runtime: self.runtime,
            live: live::Live::new(self.poll.unwrap_or(Duration::from_millis(500))),
            guard: guard::Guard::new(self.token, self.hosts),
            body_timeout: self.body_timeout.unwrap_or(Duration::from_secs(30)),
            default_queue: self.default_queue.unwrap_or_else(|| "default".to_owned()),
        });
        Router::new()
            .route("/", get(guard::page))
            .route("/assets/dashboard.js", get(guard::script))
            .route("/assets/dashboard.css", get(guard::style))
            .route("/api/events", get(live::events))
            .route("/api/snapshot", get(live::snapshot))
            .route("/api/queues", get(api::queues))
            .route("/api/workers", get(api::workers))
            .route("/api/running", get(api::running))
            .route("/api/retrying", get(api::retrying))
            .route("/api/tasks", post(api::submit))
            .route("/api/tasks/{id}", get(api::status))
            .route("/api/tasks/{id}/result", get(api::result))
            .route("/api/tasks/{id}/cancel", post(api::cancel))
            .route("/api/dead", get(api::dead))
            .route("/api/dead/requeue", post(api::requeue))
            .route("/api/purge", post(api::purge))
            .route("/api/run", get(api::run))
            .route("/metrics", get(metrics::metrics))
            .fallback(api::not_found)
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .layer(axum::middleware::from_fn_with_state(
                board.clone(),
                guard::check,
            ))
            .with_state(board)
    }
}

/// What every handler shares.
pub(crate) struct Board {
    store: Option<Arc<dyn Store>>,
    run: Option<RunBoard>,
    runtime: Option<Runtime>,
    live: live::Live,
    guard: guard::Guard,
    body_timeout: Duration,
    default_queue: String,
}

type Shared = Arc<Board>;
