//! `plait demo`: real work on all three strands.
//!
//! * Thread strand: SHA-256 of every file in a folder (by default a generated data set),
//!   once on one thread and once with `Runtime::map` on every core.
//! * Coroutine strand, meanwhile: a local TCP server that answers each request after a
//!   simulated backend latency, and a client that sends it hundreds of requests with
//!   `Runtime::map_async`, all in flight at once.
//! * Process strand, then: the same files hashed again in worker processes with
//!   `Runtime::map_process`, beside a task that crashes its worker on purpose: the crash
//!   costs that one task, and the rest finish.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plait::coroutine::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Options of `plait demo`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Hash the files in this folder (not recursive) instead of a generated data set.
    #[arg(long, value_name = "DIR")]
    files: Option<PathBuf>,
    /// Size of the generated data set, in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    data_mib: usize,
    /// Requests the client sends to the local server.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// How many requests are in flight at once.
    #[arg(long, default_value_t = 500)]
    concurrency: usize,
    /// The server's simulated backend latency per request, in milliseconds.
    #[arg(long, default_value_t = 20, value_name = "MS")]
    latency_ms: u64,
}

/// One line of the final table.
struct Line {
    what: String,
    strand: &'static str,
    tasks: usize,
    wall: Duration,
    alone: Duration,
    ran_on: String,
}

pub(crate) fn run(args: &Args) -> Result<(), String> {
    let rt = plait::Runtime::new().map_err(|e| e.to_string())?;
    let scratch = TempDir::new()?;
    let folder = match &args.files {
        Some(dir) => dir.clone(),
        None => {
            generate(scratch.path(), args.data_mib)?;
            scratch.path().to_path_buf()
        }
    };
    let files = list_files(&folder)?;
    if files.is_empty() {
        return Err(format!(
            "{} holds no files to hash; pass --files with a folder of files",
            folder.display()
        ));
    }
    outln!(
        "plait demo: {} threads for computing, {} coroutine workers for waiting",
        rt.threads(),
        rt.coroutine_workers()
    );

    // The coroutine side runs in the background while the threads hash.
    let io = {
        let rt2 = rt.clone();
        let (requests, concurrency, latency) = (
            args.requests,
            args.concurrency.max(1),
            Duration::from_millis(args.latency_ms),
        );
        rt.spawn_async(async move { serve_and_fetch(&rt2, requests, concurrency, latency).await })
    };

    let (hashing, digests) = hash_on_threads(&rt, &files)?;
    let fetching = io.join().map_err(|e| e.to_string())??;
    let isolating = hash_in_processes(&rt, &files, &digests, hashing.alone)?;

    print_table(&[hashing, fetching, isolating]);
    let report = rt.shutdown(Duration::from_secs(5));
    outln!("\n{report}");
    Ok(())
}

/// Hashes every file once on this thread, then on every core; returns the table line and
/// the digests.
fn hash_on_threads(rt: &plait::Runtime, files: &[PathBuf]) -> Result<(Line, Vec<String>), String> {
    let started = Instant::now();
    let serial: Vec<String> = files
        .iter()
        .map(|f| sha256_file(f))
        .collect::<Result<_, _>>()?;
    let alone = started.elapsed();

    let started = Instant::now();
    let mut ran_on: BTreeMap<String, usize> = BTreeMap::new();
    let mut parallel = Vec::with_capacity(files.len());
    for result in rt.map(files.to_vec(), |path| {
        let thread = std::thread::current().name().unwrap_or("?").to_owned();
        sha256_file(&path).map(|digest| (digest, thread))
    }) {
        let (digest, thread) = result.map_err(|e| e.to_string())??;
        *ran_on.entry(thread).or_default() += 1;
        parallel.push(digest);
    }
    let wall = started.elapsed();
    if parallel != serial {
        return Err("the parallel hashes differ from the serial ones".to_owned());
    }
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let line = Line {
        what: format!("SHA-256 of {} files, {} MiB", files.len(), bytes >> 20),
        strand: "thread",
        tasks: files.len(),
        wall,
        alone,
        ran_on: describe(&ran_on),
    };
    Ok((line, serial))
}

/// Hashes a file in a worker process; returns the digest and the worker's process id.
#[plait::task]
fn hash_in_worker(path: PathBuf) -> Result<(String, u32), String> {
    sha256_file(&path).map(|digest| (digest, std::process::id()))
}

/// Takes its worker process down, as a bug in foreign code would.
#[plait::task]
fn crash_on_purpose() {
    std::process::abort();
}

/// Hashes the files again in worker processes while one task crashes its worker; returns
/// the table line.
fn hash_in_processes(
    rt: &plait::Runtime,
    files: &[PathBuf],
    digests: &[String],
    alone: Duration,
) -> Result<Line, String> {
    let started = Instant::now();
    let crash = rt.spawn_process(crash_on_purpose::task(), ());
    let mut ran_on: BTreeMap<String, usize> = BTreeMap::new();
    for (result, expected) in rt
        .map_process(hash_in_worker::task(), files.to_vec())
        .zip(digests)
    {
        let (digest, pid) = result.map_err(|e| e.to_string())??;
        if digest != *expected {
            return Err("a worker process computed a different hash".to_owned());
        }
        *ran_on.entry(format!("pid {pid}")).or_default() += 1;
    }
    let crashed = match crash.join() {
        Err(plait::Error::WorkerLost { exit, .. }) => exit.to_string(),
        other => {
            return Err(format!(
                "the crashing task did not crash its worker: {other:?}"
            ));
        }
    };
    Ok(Line {
        what: "the same files in worker processes, + 1 crash".to_owned(),
        strand: "process",
        tasks: files.len() + 1,
        wall: started.elapsed(),
        alone,
        ran_on: format!(
            "{}; 1 worker lost to {crashed}, replaced",
            describe(&ran_on)
        ),
    })
}

fn sha256_file(path: &Path) -> Result<String, String> {
    let data =
        std::fs::read(path).map_err(|e| format!("could not read {}: {e}", path.display()))?;
    let digest = Sha256::digest(&data);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    Ok(hex)
}

/// Starts the slow server, then sends it every request with at most `concurrency` in
/// flight; returns the table line.
async fn serve_and_fetch(
    rt: &plait::Runtime,
    requests: usize,
    concurrency: usize,
    latency: Duration,
) -> Result<Line, String> {
    let listener =
        listen().map_err(|e| format!("could not open a local port for the demo server: {e}"))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("could not read the demo server's address: {e}"))?;
    let server = rt.spawn_async(serve(rt.clone(), listener, latency));

    let threads = Arc::new(std::sync::Mutex::new(BTreeMap::<String, usize>::new()));
    let started = Instant::now();
    let mut answered = 0;
    let mut fetches = rt.map_async(0..requests, concurrency, |i| {
        let threads = threads.clone();
        async move {
            let answer = fetch(address, i).await;
            let thread = std::thread::current().name().unwrap_or("?").to_owned();
            if let Ok(mut threads) = threads.lock() {
                *threads.entry(thread).or_default() += 1;
            }
            answer
        }
    });
    while let Some(result) = fetches.next().await {
        let answer = result.map_err(|e| e.to_string())??;
        if answer != format!("item-{answered}") {
            return Err(format!(
                "request {answered} got the wrong answer: {answer:?}"
            ));
        }
        answered += 1;
    }
    let wall = started.elapsed();
    server.cancel();
    let ran_on = threads.lock().map(|t| describe(&t)).unwrap_or_default();
    Ok(Line {
        what: format!(
            "{requests} requests to a local server ({} ms each)",
            latency.as_millis()
        ),
        strand: "coroutine",
        tasks: requests,
        wall,
        alone: latency * u32::try_from(requests).unwrap_or(u32::MAX),
        ran_on,
    })
}

/// A listener on a free loopback port, with a backlog deep enough for every request to
/// connect at once (the default one drops connections past a few hundred, and a dropped
/// connection waits a second to retry).
fn listen() -> std::io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
    socket.listen(4096)
}

/// Answers `GET item-N` lines with `item-N` after `latency`, one coroutine per connection.
async fn serve(rt: plait::Runtime, listener: TcpListener, latency: Duration) {
    while let Ok((socket, _)) = listener.accept().await {
        drop(rt.spawn_async(async move {
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tokio::time::sleep(latency).await;
                let answer = line.strip_prefix("GET ").unwrap_or("?").to_owned();
                if write
                    .write_all(format!("{answer}\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }));
    }
}

async fn fetch(address: std::net::SocketAddr, i: usize) -> Result<String, String> {
    let socket = TcpStream::connect(address)
        .await
        .map_err(|e| format!("request {i}: could not connect: {e}"))?;
    let (read, mut write) = socket.into_split();
    write
        .write_all(format!("GET item-{i}\n").as_bytes())
        .await
        .map_err(|e| format!("request {i}: could not send: {e}"))?;
    let mut lines = BufReader::new(read).lines();
    match lines.next_line().await {
        Ok(Some(answer)) => Ok(answer),
        Ok(None) => Err(format!("request {i}: the server closed the connection")),
        Err(e) => Err(format!("request {i}: could not read the answer: {e}")),
    }
}

/// "plait-0 ×33, plait-1 ×31"
fn describe(counts: &BTreeMap<String, usize>) -> String {
    counts
        .iter()
        .map(|(thread, n)| format!("{thread} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_table(lines: &[Line]) {
    outln!();
    outln!(
        "{:<46} {:<9} {:>6} {:>10} {:>12} {:>8}  ran on",
        "work",
        "strand",
        "tasks",
        "wall",
        "one by one",
        "speedup"
    );
    for line in lines {
        outln!(
            "{:<46} {:<9} {:>6} {:>10} {:>12} {:>7.1}x  {}",
            line.what,
            line.strand,
            line.tasks,
            format!("{:.1?}", line.wall),
            format!("{:.1?}", line.alone),
            line.alone.as_secs_f64() / line.wall.as_secs_f64().max(1e-9),
            line.ran_on
        );
    }
}

/// Writes `mib` MiB of pseudo-random files into `dir` (deterministic, no network).
fn generate(dir: &Path, mib: usize) -> Result<(), String> {
    const FILE: usize = 1 << 20;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..mib.max(1) {
        let mut data = Vec::with_capacity(FILE);
        while data.len() < FILE {
            // xorshift64*: fast, and enough to give SHA-256 something to chew on.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            data.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        let path = dir.join(format!("part-{i:04}.bin"));
        std::fs::write(&path, &data)
            .map_err(|e| format!("could not write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn list_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "could not list {}: {e}; pass --files with a readable folder",
            dir.display()
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// A folder under the system's temporary folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        let path = std::env::temp_dir().join(format!("plait-demo-{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("could not create {}: {e}", path.display()))?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
