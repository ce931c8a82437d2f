//! Helpers shared by the black-box tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use plait_queue::{SqliteStore, Stopper, Store, Worker};

/// A folder of its own for one test, removed when dropped.
pub(crate) struct TempFolder(PathBuf);

impl TempFolder {
    pub(crate) fn new(what: &str) -> TempFolder {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "plait-queue-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempFolder(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A store in a folder of its own, and a worker on it (concurrency 2) in a thread,
/// stopped at once on drop.
pub(crate) struct Serving {
    pub(crate) store: Arc<dyn Store>,
    stopper: Stopper,
    worker: Option<JoinHandle<()>>,
    pub(crate) folder: TempFolder,
}

impl Serving {
    pub(crate) fn start(what: &str, queues: &[&str]) -> Serving {
        let folder = TempFolder::new(what);
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(folder.path().join("q.db")).unwrap());
        Serving::start_on(store, folder, queues)
    }

    /// A worker on `store`, with `folder` for the test's files.
    pub(crate) fn start_on(store: Arc<dyn Store>, folder: TempFolder, queues: &[&str]) -> Serving {
        let worker = Worker::builder(Arc::clone(&store))
            .queues(queues.iter().copied())
            .concurrency(2)
            .build()
            .unwrap();
        let stopper = worker.stopper();
        let worker = std::thread::spawn(move || {
            worker.run().unwrap();
        });
        Serving {
            store,
            stopper,
            worker: Some(worker),
            folder,
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stopper.abort();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// The Redis server the tests use: `PLAIT_TEST_REDIS`, or the local one. A test that
/// needs it fails (never skips) when it cannot be reached.
pub(crate) fn redis_url() -> String {
    std::env::var("PLAIT_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A namespace of its own on the test server for one test, its keys deleted when dropped.
pub(crate) struct RedisNamespace(pub(crate) String);

impl RedisNamespace {
    pub(crate) fn new(what: &str) -> RedisNamespace {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        RedisNamespace(format!(
            "plait-test-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ))
    }
}

impl Drop for RedisNamespace {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(redis_url()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.0))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// A redis-server of a test's own on a port of its own, killed when dropped.
pub(crate) struct RedisServer {
    pub(crate) port: u16,
    args: Vec<String>,
    child: Option<std::process::Child>,
}

impl RedisServer {
    /// Starts one with `args` beside its port (`--requirepass`, TLS, ...), and waits until
    /// it listens.
    pub(crate) fn start(args: &[&str]) -> RedisServer {
        // A port that was free a moment ago.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = RedisServer {
            port,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
        };
        server.restart();
        server
    }

    pub(crate) fn restart(&mut self) {
        let tls = self.args.iter().any(|a| a == "--tls-cert-file");
        let port_flag = if tls { "--tls-port" } else { "--port" };
        let mut command = std::process::Command::new("redis-server");
        command
            .args([
                port_flag,
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(&self.args)
            .stdout(std::process::Stdio::null());
        if tls {
            command.args(["--port", "0"]);
        }
        self.child = Some(
            command
                .spawn()
                .expect("redis-server is installed (the Redis tests need it)"),
        );
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "redis-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three masters (no replicas) on ports of their own, started once per
/// test process and shared by its tests. Each node runs under a shell that kills it when
/// this process's end closes the shell's input, so no node outlives the tests.
pub(crate) struct RedisCluster {
    pub(crate) ports: [u16; 3],
    /// The shells, and their inputs: closed when this process ends.
    _keepers: Vec<(std::process::Child, std::process::ChildStdin)>,
}

impl RedisCluster {
    pub(crate) fn shared() -> &'static RedisCluster {
        static CLUSTER: std::sync::OnceLock<RedisCluster> = std::sync::OnceLock::new();
        CLUSTER.get_or_init(RedisCluster::start)
    }

    fn start() -> RedisCluster {
        let folder =
            std::env::temp_dir().join(format!("plait-redis-cluster-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).unwrap();
        // Three ports whose cluster-bus ports (port + 10000) are free too.
        let ports: [u16; 3] = std::array::from_fn(|_| {
            loop {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                if port < 55_000
                    && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
                {
                    break port;
                }
            }
        });
        let mut keepers = Vec::new();
        for port in ports {
            let dir = folder.join(port.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            let script = format!(
                "redis-server --port {port} --bind 127.0.0.1 --cluster-enabled yes \
                 --cluster-config-file nodes.conf --save '' --appendonly no --dir '{}' \
                 >/dev/null & server=$!; read _; kill $server; wait; rm -rf '{}'",
                dir.display(),
                dir.display()
            );
            let mut keeper = std::process::Command::new("sh")
                .args(["-c", &script])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("sh and redis-server are installed (the Redis tests need them)");
            let input = keeper.stdin.take().unwrap();
            keepers.push((keeper, input));
            let started = std::time::Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(started.elapsed() < std::time::Duration::from_secs(30));
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("redis-cli is installed");
        assert!(created.success(), "redis-cli --cluster create failed");
        // Every node agrees that all slots are served.
        let started = std::time::Instant::now();
        for port in ports {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
            loop {
                let info: String = client
                    .get_connection()
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query(&mut c))
                    .unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(60),
                    "the cluster did not come up: {info}"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        RedisCluster {
            ports,
            _keepers: keepers,
        }
    }

    /// The cluster's URL: every node.
    pub(crate) fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis://{}", nodes.join(","))
    }
}

/// Whether a test that needs `what` may run. Without it, the test fails under CI (`CI`
/// set: CI installs and starts what the tests need) and elsewhere (a fresh machine with
/// Rust alone) is skipped, saying so.
pub(crate) fn needs(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "this test needs {what}, which is not here (CI is set, so it fails rather than skip)"
    );
    eprintln!("skipped: this test needs {what}, which is not here (with CI set, it fails)");
    false
}

/// Whether the test Redis server answers (see [`needs`]).
pub(crate) fn redis_answers() -> bool {
    let answers = redis::Client::open(redis_url())
        .and_then(|client| client.get_connection_with_timeout(std::time::Duration::from_secs(2)))
        .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn))
        .is_ok();
    needs(&format!("a Redis server at {}", redis_url()), answers)
}

/// Whether `program` can be started (see [`needs`]).
pub(crate) fn program_here(program: &str) -> bool {
    let here = std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    needs(&format!("the `{program}` command"), here)
}
