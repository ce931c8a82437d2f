//! How a worker process comes to be: started from a thread that outlives it, handed its
//! `Init`, and heard to say `Hello`.

use std::io;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::oneshot;

use super::WorkerExit;
use super::codec::{self, Kind};
use super::pool::Pool;
use super::worker::{PARENT_ENV, PROTOCOL, WORKER_ENV, WORKER_TEST_NAME};
use crate::Error;

/// How much of a worker's standard error is kept to explain its death.
const STDERR_TAIL: usize = 4096;
/// How much a worker may print before `plait::init` takes its standard output.
const MAX_PREAMBLE: usize = 1 << 20;

type SpawnRequest = (tokio::process::Command, oneshot::Sender<io::Result<Child>>);

/// Starts worker processes from one thread that lives as long as the pool.
///
/// A worker asks the kernel to kill it when its parent dies (`PR_SET_PDEATHSIG`), and "its
/// parent" is, to the kernel, the *thread* that forked it. Tokio's threads come and go (a
/// blocking section hands a worker thread's place to a new one), so a worker forked from
/// one could be killed while the runtime is alive and well.
pub(crate) struct Spawner {
    requests: mpsc::Sender<SpawnRequest>,
}

impl Spawner {
    pub(crate) fn start(handle: tokio::runtime::Handle) -> io::Result<Spawner> {
        let (requests, incoming) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("plait-spawn".to_owned())
            .spawn(move || {
                // Tokio registers each child with the runtime that reaps it.
                let _runtime = handle.enter();
                while let Ok((mut command, reply)) = incoming.recv() {
                    let _ = reply.send(command.spawn());
                }
            })?;
        Ok(Spawner { requests })
    }

    async fn spawn(&self, command: tokio::process::Command) -> io::Result<Child> {
        let (reply, child) = oneshot::channel();
        self.requests
            .send((command, reply))
            .map_err(|_| io::Error::other("the thread that starts workers has stopped"))?;
        child
            .await
            .map_err(|_| io::Error::other("the thread that starts workers has stopped"))?
    }
}

pub(crate) enum StartError {
    /// The OS could not start the process: may pass.
    Spawn(Error),
    /// The process started but did not become a worker: will not pass.
    Handshake(Error),
}

/// A worker process that has said `Hello`.
pub(crate) struct Worker {
    pub(crate) child: Child,
    /// Taken by the feeder once the worker serves.
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) stdout: ChildStdout,
    /// What has been read from `stdout` and not yet handled.
    pub(crate) buf: BytesMut,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_done: tokio::task::JoinHandle<()>,
}

impl Worker {
    /// Kills the worker's process group: the worker leads it (see [`start`](Self::start)),
    /// so what its tasks started goes too, unless it left the group. Only while the worker
    /// is not reaped (it has an id): then the group's id is still the worker's and cannot
    /// name anyone else's group.
    pub(crate) fn kill_group(&self) {
        if let Some(group) = self
            .child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(i32::try_from(id).ok()?))
        {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }

    pub(crate) async fn start(pool: &Pool) -> Result<Worker, StartError> {
        let exe = std::env::current_exe().map_err(|error| {
            StartError::Spawn(Error::WorkerStart {
                reason: format!(
                    "cannot find the current executable to run it as a worker: {error}"
                ),
            })
        })?;
        let mut command = tokio::process::Command::new(&exe);
        command
            // Read by a test harness as a filter for the test `plait::test_worker!` defines;
            // never seen by a program that calls `plait::init` first.
            .args([WORKER_TEST_NAME, "--nocapture", "--test-threads=1", "-q"])
            .env(WORKER_ENV, PROTOCOL)
            .env(PARENT_ENV, std::process::id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own: the terminal's Ctrl-C goes to the program, which may shut
            // down gracefully, not straight to its workers (they still die with it); and a
            // worker killed for a time limit takes the processes its task started along.
            .process_group(0)
            .kill_on_drop(true);
        if pool.options.memory_limit.is_some() && std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // The cap counts address space, and glibc reserves 64 MiB of it for each thread
            // that allocates (an arena each): a worker's few threads share two instead.
            command.env("MALLOC_ARENA_MAX", "2");
        }
        let mut child = pool.spawner.spawn(command).await.map_err(|error| {
            StartError::Spawn(Error::WorkerStart {
                reason: format!("cannot start {} as a worker: {error}", exe.display()),
            })
        })?;
        pool.started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable!("all three were piped");
        };
        let tail = Arc::new(Mutex::new(Vec::new()));
        let stderr_done = tokio::spawn(forward_stderr(stderr, Arc::clone(&tail)));
        let mut worker = Worker {
            child,
            stdin: Some(stdin),
            stdout,
            buf: BytesMut::with_capacity(64 * 1024),
            stderr: tail,
            stderr_done,
        };
        let limit = pool.options.start_timeout;
        match tokio::time::timeout(limit, worker.handshake(pool)).await {
            Ok(Ok(())) => Ok(worker),
            Ok(Err(reason)) => Err(StartError::Handshake(
                worker
                    .refused(reason, pool.options.memory_limit, None)
                    .await,
            )),
            // Not retried on a slot that never served: a program without `plait::init`
            // would run its `main` again each time. The error says how to give it longer.
            Err(_) => Err(StartError::Handshake(
                worker
                    .refused(
                        format!("it did not answer within {limit:?}"),
                        pool.options.memory_limit,
                        Some(limit),
                    )
                    .await,
            )),
        }
    }

    /// Sends `Init`, skips what the program printed before `plait::init`, reads `Hello`.
    async fn handshake(&mut self, pool: &Pool) -> Result<(), String> {
        let init = codec::Init {
            frame_limit: pool.frame_limit() as u64,
            payload_limit: pool.options.payload_limit as u64,
            memory_limit: pool.options.memory_limit,
            initializer: pool
                .options
                .initializer
                .as_ref()
                .map(|(name, args)| ((*name).to_owned(), args.clone())),
        };
        let body = postcard::to_allocvec(&init).map_err(|error| error.to_string())?;
        let frame = codec::frame(Kind::Init, 0, &body);
        // A worker that exits at once closes the pipe: its exit status explains it better.
        if let Some(stdin) = &mut self.stdin {
            let _ = stdin.write_all(&frame).await;
        }
        let mut searched = 0;
        loop {
            if let Some(at) = find(&self.buf, codec::MAGIC, searched) {
                let _ = self.buf.split_to(at + codec::MAGIC.len());
                break;
            }
            // The magic may straddle the next read: search again from just before the end.
            searched = self.buf.len().saturating_sub(codec::MAGIC.len());
            if self.buf.len() > MAX_PREAMBLE {
                return Err(format!(
                    "it printed {} bytes without answering",
                    self.buf.len()
                ));
            }
            if self.read().await? == 0 {
                return Err("it exited without answering".to_owned());
            }
        }
        let limit = pool.frame_limit();
        loop {
            if let Some((frame, len)) =
                codec::decode(&self.buf, limit).map_err(|error| error.to_string())?
            {
                let answer = hello(frame, init.initializer.as_ref().map(|(name, _)| name));
                self.buf.advance(len);
                return answer;
            }
            if self.read().await? == 0 {
                return Err("it exited during the handshake".to_owned());
            }
        }
    }

    /// The error for a worker that did not start: what it said, how it ended, and the likely
    /// way out.
    /// Kills a worker that did not become one and says why; `slow`: it did not answer
    /// within that time limit.
    async fn refused(
        mut self,
        reason: String,
        memory_limit: Option<u64>,
        slow: Option<Duration>,
    ) -> Error {
        // The group goes too: what an initializer (or a `main` without `init`) started.
        if let Some(group) = self
            .child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(i32::try_from(id).ok()?))
        {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.child.start_kill();
        let status = self.child.wait().await.ok();
        let stderr = self.stderr_tail().await;
        let status = status.map_or_else(String::new, |s| {
            format!(" (it ended with {})", WorkerExit::from(s))
        });
        let way_out = match (slow, memory_limit) {
            (Some(limit), _) => format!(
                "If it starts slowly (a heavy initializer, a busy machine), raise \
                 ProcessOptions::start_timeout (now {limit:?}); if it never answers, call \
                 plait::init() first thing in main"
            ),
            (None, Some(cap)) if out_of_memory(&stderr) => format!(
                "The memory cap of {cap} bytes is too small for a worker to start: raise \
                 ProcessOptions::memory_limit (a worker takes about 75 MiB of address space \
                 before its tasks)"
            ),
            _ => "Call plait::init() first thing in main (or invoke plait::test_worker!() \
                  once in a test binary)"
                .to_owned(),
        };
        let last_words = if stderr.is_empty() {
            String::new()
        } else {
            format!("; its last words: {stderr}")
        };
        Error::WorkerStart {
            reason: format!(
                "a worker process was started but {reason}{status}. {way_out}{last_words}"
            ),
        }
    }

    async fn read(&mut self) -> Result<usize, String> {
        self.stdout
            .read_buf(&mut self.buf)
            .await
            .map_err(|error| format!("reading its output failed: {error}"))
    }

    /// Waits (briefly) for the rest of the worker's standard error, and returns its tail.
    pub(crate) async fn stderr_tail(&mut self) -> String {
        let _ = tokio::time::timeout(Duration::from_millis(200), &mut self.stderr_done).await;
        let tail = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&tail).trim().to_owned()
    }
}

/// What the worker's first frame says: `Hello`, or its initializer's failure.
fn hello(frame: codec::Frame<'_>, initializer: Option<&String>) -> Result<(), String> {
    match frame.kind {
        Kind::Hello => Ok(()),
        Kind::Done => {
            let outcome = codec::parse_done(frame.body).map_err(|e| e.to_string())?;
            let name = initializer.map_or("", String::as_str);
            Err(match outcome {
                Err(failure) => format!(
                    "its initializer {name} failed: {}",
                    failure.into_error(name)
                ),
                Ok(_) => "it answered the handshake with a result".to_owned(),
            })
        }
        other => Err(format!("it answered the handshake with {other:?}")),
    }
}

/// Whether a worker's last words say it ran out of memory (its cap, most likely).
pub(crate) fn out_of_memory(stderr: &str) -> bool {
    stderr.contains("memory allocation of") || stderr.contains("Cannot allocate memory")
}

/// Copies a worker's standard error to ours, keeping its tail to explain a death.
async fn forward_stderr(mut stderr: ChildStderr, tail: Arc<Mutex<Vec<u8>>>) {
    let mut chunk = vec![0; 8192];
    while let Ok(n) = stderr.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        let _ = io::Write::write_all(&mut io::stderr(), &chunk[..n]);
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > STDERR_TAIL {
            let excess = tail.len() - STDERR_TAIL;
            tail.drain(..excess);
        }
    }
}

/// Where `needle` starts in `haystack`, searching from `from`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| at + from)
}
