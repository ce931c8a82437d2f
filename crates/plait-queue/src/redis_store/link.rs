//! The Redis store's connections, to one server or to a cluster (a URL that names several
//! nodes, `redis://HOST:PORT,HOST:PORT,...`): one for commands, shared under a lock, and
//! spares for the blocking reads that waiters make. A connection that fails is dropped and made
//! again on the next call; while the server cannot be reached, calls fail fast and new
//! connections are tried with a growing backoff (50 ms to 2 s), so that a worker retrying
//! in a loop neither hammers the server nor stops for good.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConnection};
use redis::{
    Client, Cmd, Connection, ConnectionLike, RedisError, RedisResult, TlsCertificates, Value,
};

use crate::error::{QueueError, Result};

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MOST_BACKOFF: Duration = Duration::from_secs(2);
/// How long a command may take before the connection is given up.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How many spare connections are kept for blocking reads.
const SPARES: usize = 4;

/// A connection to one server, or to a cluster (which routes each command to the node
/// that holds its key).
pub(super) enum Conn {
    One(Connection),
    /// Boxed: a cluster connection is much larger than one server's.
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> RedisResult<()> {
        match self {
            Conn::One(conn) => conn.set_read_timeout(timeout),
            Conn::Cluster(conn) => conn.set_read_timeout(timeout),
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            Conn::One(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Conn::One(conn) => conn.req_packed_commands(cmd, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Conn::One(conn) => conn.req_command(cmd),
            Conn::Cluster(conn) => conn.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::One(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Conn::One(conn) => conn.check_connection(),
            Conn::Cluster(conn) => conn.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Conn::One(conn) => conn.is_open(),
            Conn::Cluster(conn) => conn.is_open(),
        }
    }
}

enum Target {
    One(Client),
    Cluster(ClusterClient),
}

pub(super) struct Link {
    target: Target,
    /// The server's URL without its password, for messages.
    server: String,
    connect_within: Duration,
    conn: Mutex<Option<Conn>>,
    spares: Mutex<Vec<Conn>>,
    backoff: Mutex<Backoff>,
}

#[derive(Default)]
struct Backoff {
    next_try: Option<Instant>,
    wait: Duration,
    last_error: String,
}

impl Link {
    /// A link to the server at `url`; with `rediss://`, the server's certificate is
    /// checked against `ca` (PEM) if given, else against the system's roots.
    ///
    /// # Errors
    ///
    /// A URL that does not parse, or a CA that is not PEM; the error names the URL
    /// (without its password).
    pub(super) fn new(url: &str, ca: Option<&[u8]>, connect_within: Duration) -> Result<Link> {
        let server = redact(url);
        let refused = |detail: String| QueueError::Unreachable {
            server: server.clone(),
            detail,
        };
        if url.starts_with("rediss://") {
            // One crypto provider for the process; another part of the program may have
            // installed its own already, which serves as well. ring rather than
            // aws-lc-rs keeps the build free of a large C library; rustls marks it
            // deprecated only because it has no post-quantum key exchange.
            #[allow(deprecated)]
            let provider = rustls::crypto::ring::default_provider();
            let _ = provider.install_default();
        }
        let certificates = || TlsCertificates {
            client_tls: None,
            root_cert: ca.map(<[u8]>::to_vec),
        };
        let nodes = nodes(url);
        let target = if nodes.len() > 1 {
            let mut builder = ClusterClientBuilder::new(nodes)
                .connection_timeout(connect_within)
                .response_timeout(ANSWER_WITHIN);
            if ca.is_some() {
                builder = builder.certs(certificates());
            }
            builder.build().map(Target::Cluster)
        } else if ca.is_some() {
            Client::build_with_tls(url, certificates()).map(Target::One)
        } else {
            Client::open(url).map(Target::One)
        }
        .map_err(|error| refused(format!("not a Redis URL, or a bad CA certificate: {error}")))?;
        Ok(Link {
            target,
            server,
            connect_within,
            conn: Mutex::new(None),
            spares: Mutex::new(Vec::new()),
            backoff: Mutex::new(Backoff::default()),
        })
    }

    pub(super) fn server(&self) -> &str {
        &self.server
    }

    /// Whether the server is a cluster: then one command reaches one node, and keys of
    /// different queues never meet in one command.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// Runs `f` on the command connection. An `idempotent` call that fails because the
    /// connection broke (a server restarted since the last call) is tried once more on a
    /// new connection; any other is not, since it may have been done.
    pub(super) fn call<T>(
        &self,
        idempotent: bool,
        mut f: impl FnMut(&mut Conn) -> RedisResult<T>,
    ) -> Result<T> {
        let mut conn = lock(&self.conn);
        for last in [!idempotent, true] {
            let live = match conn.as_mut() {
                Some(live) => live,
                None => conn.insert(self.connect()?),
            };
            match f(live) {
                Ok(value) => return Ok(value),
                Err(error) if broken(&error) => {
                    *conn = None;
                    if last {
                        return Err(self.error(&error));
                    }
                }
                Err(error) => return Err(self.error(&error)),
            }
        }
        unreachable!("the second try returns")
    }

    /// Runs `f`, which may block for up to `block`, on a connection of its own.
    pub(super) fn blocking<T>(
        &self,
        block: Duration,
        mut f: impl FnMut(&mut Conn) -> RedisResult<T>,
    ) -> Result<T> {
        let spare = lock(&self.spares).pop();
        let kept = spare.is_some();
        let mut conn = match spare {
            Some(conn) => conn,
            None => self.connect()?,
        };
        conn.set_read_timeout(Some(block + ANSWER_WITHIN))
            .map_err(|e| self.error(&e))?;
        let mut answer = f(&mut conn);
        // A kept connection may have broken while it waited (a server restart): the reads
        // made here are safe to make again, once, on a new one.
        if kept && answer.as_ref().is_err_and(broken) {
            conn = self.connect()?;
            conn.set_read_timeout(Some(block + ANSWER_WITHIN))
                .map_err(|e| self.error(&e))?;
            answer = f(&mut conn);
        }
        match answer {
            Ok(value) => {
                let mut spares = lock(&self.spares);
                if spares.len() < SPARES {
                    spares.push(conn);
                }
                Ok(value)
            }
            Err(error) => Err(self.error(&error)),
        }
    }

    /// A new connection, unless the last try failed within its backoff.
    fn connect(&self) -> Result<Conn> {
        let mut backoff = lock(&self.backoff);
        if let Some(next) = backoff.next_try
            && Instant::now() < next
        {
            return Err(QueueError::Unreachable {
                server: self.server.clone(),
                detail: format!(
                    "{}; trying again in {} ms",
                    backoff.last_error,
                    next.saturating_duration_since(Instant::now()).as_millis()
                ),
            });
        }
        let made = match &self.target {
            Target::One(client) => client
                .get_connection_with_timeout(self.connect_within)
                .and_then(|conn| {
                    conn.set_read_timeout(Some(ANSWER_WITHIN))?;
                    conn.set_write_timeout(Some(ANSWER_WITHIN))?;
                    Ok(Conn::One(conn))
                }),
            Target::Cluster(client) => client
                .get_connection()
                .map(|conn| Conn::Cluster(Box::new(conn))),
        };
        match made {
            Ok(conn) => {
                *backoff = Backoff::default();
                Ok(conn)
            }
            Err(error) => {
                backoff.wait = (backoff.wait * 2).clamp(FIRST_BACKOFF, MOST_BACKOFF);
                backoff.next_try = Some(Instant::now() + backoff.wait);
                backoff.last_error = error.to_string();
                Err(self.error(&error))
            }
        }
    }

    pub(super) fn error(&self, error: &RedisError) -> QueueError {
        let server = self.server.clone();
        if broken(error) {
            QueueError::Unreachable {
                server,
                detail: error.to_string(),
            }
        } else {
            QueueError::Redis {
                server,
                detail: error.to_string(),
            }
        }
    }
}

/// Whether the connection, rather than the command, failed.
fn broken(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The node URLs of `url`: one, or for a cluster several (`redis://a:7000,b:7001`, each
/// after the first taking the first's scheme and credentials unless it has its own).
fn nodes(url: &str) -> Vec<String> {
    let mut parts = url.split(',');
    let first = parts.next().unwrap_or_default().to_owned();
    let (scheme, rest) = first.split_once("://").unwrap_or(("redis", &first));
    let credentials = rest.rsplit_once('@').map_or("", |(user_info, _)| user_info);
    let mut nodes = vec![first.clone()];
    for part in parts.filter(|part| !part.is_empty()) {
        nodes.push(if part.contains("://") {
            part.to_owned()
        } else if credentials.is_empty() {
            format!("{scheme}://{part}")
        } else {
            format!("{scheme}://{credentials}@{part}")
        });
    }
    nodes
}

/// `url` without its password: `redis://:****@host:6379/0` (each node's, for a cluster).
pub(super) fn redact(url: &str) -> String {
    if url.contains(',') {
        return url.split(',').map(redact).collect::<Vec<_>>().join(",");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let hidden = match user_info.split_once(':') {
                Some((user, _)) => format!("{user}:****"),
                None => "****".to_owned(),
            };
            format!("{scheme}://{hidden}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn a_password_never_shows() {
        assert_eq!(
            redact("redis://:hunter2@cache:6380/1"),
            "redis://:****@cache:6380/1"
        );
        assert_eq!(
            redact("rediss://app:s3cr@t@cache/0"),
            "rediss://app:****@cache/0"
        );
        assert_eq!(redact("redis://hunter2@cache"), "redis://****@cache");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("not a url"), "not a url");
        assert_eq!(
            redact("redis://:pw@a:7000,b:7001"),
            "redis://:****@a:7000,b:7001"
        );
    }

    #[test]
    fn a_cluster_url_names_each_node() {
        assert_eq!(super::nodes("redis://a:1"), ["redis://a:1"]);
        assert_eq!(
            super::nodes("rediss://:pw@a:1,b:2,redis://c:3"),
            ["rediss://:pw@a:1", "rediss://:pw@b:2", "redis://c:3"]
        );
    }
}
