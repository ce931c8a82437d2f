//! How a worker process comes to be: started from a thread that outlives it, handed its
//! `Init`, and heard to say `Hello`.

use std::io;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, mpsc};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::oneshot;

use super::WorkerExit;
use super::child::Child;
use super::codec::{self, Kind};
use super::last_words::LastWords;
use super::pool::Pool;
use super::slot::Slot;
use super::worker::{PARENT_ENV, PROTOCOL, WORKER_ENV, WORKER_TEST_NAME};
use crate::Error;

/// How much of a worker's standard error over its life is kept to explain a failed start.
const STDERR_TAIL: usize = 4096;
/// How much a worker may print before `plait::init` takes its standard output.
const MAX_PREAMBLE: usize = 1 << 20;

type SpawnRequest = (std::process::Command, oneshot::Sender<io::Result<Child>>);

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
                // A child's pipes and its wait belong to the runtime.
                let _runtime = handle.enter();
                while let Ok((mut command, reply)) = incoming.recv() {
                    let _ = reply.send(Child::spawn(&mut command));
                }
            })?;
        Ok(Spawner { requests })
    }

    async fn spawn(&self, command: std::process::Command) -> io::Result<Child> {
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
    /// The process, which leads its own group: killing it (or its ending) takes what its
    /// tasks started along, unless they left the group.
    pub(crate) child: Child,
    /// Taken by the feeder once the worker serves.
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) stdout: ChildStdout,
    /// What has been read from `stdout` and not yet handled.
    pub(crate) buf: BytesMut,
    /// What the worker says it is doing (see `slot.rs`); set by its `Hello`.
    pub(crate) slot: Arc<OnceLock<Slot>>,
    heard: Arc<Mutex<Heard>>,
    stderr_done: tokio::task::JoinHandle<()>,
}

/// What a worker has written to standard error: the end of all of it, and what it wrote
/// while on the request it was on last.
#[derive(Default)]
struct Heard {
    life: Vec<u8>,
    words: LastWords,
}

impl Worker {
    pub(crate) async fn start(pool: &Pool) -> Result<Worker, StartError> {
        let exe = std::env::current_exe().map_err(|error| {
            StartError::Spawn(Error::WorkerStart {
                reason: format!(
                    "cannot find the current executable to run it as a worker: {error}"
                ),
            })
        })?;
        let mut command = std::process::Command::new(&exe);
        // Read by a test harness as a filter for the test `plait::test_worker!` defines;
        // never seen by a program that calls `plait::init` first.
        command
            .args([WORKER_TEST_NAME, "--nocapture", "--test-threads=1", "-q"])
            .env(WORKER_ENV, PROTOCOL)
            .env(PARENT_ENV, std::process::id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // `Child::spawn` gives it a group of its own: the terminal's Ctrl-C goes to the
        // program, which may shut down gracefully, not straight to its workers (they still
        // die with it); and a worker killed for a time limit takes the processes its task
        // started along.
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
        let slot = Arc::new(OnceLock::new());
        let heard = Arc::new(Mutex::new(Heard::default()));
        let stderr_done = tokio::spawn(forward_stderr(
            stderr,
            Arc::clone(&heard),
            Arc::clone(&slot),
        ));
        let mut worker = Worker {
            child,
            stdin: Some(stdin),
            stdout,
            buf: BytesMut::with_capacity(64 * 1024),
            slot,
            heard,
            stderr_done,
        };
        let limit = pool.options.start_timeout;
        match tokio::time::timeout(limit, worker.handshake(pool)).await {
            Ok(Ok(())) => Ok(worker),
            Ok(Err(refusal)) => Err(StartError::Handshake(
                worker
                    .refused(refusal, pool.options.memory_limit, None)
                    .await,
            )),
            // Not retried on a slot that never served: a program without `plait::init`
            // would run its `main` again each time. The error says how to give it longer.
            Err(_) => Err(StartError::Handshake(
                worker
                    .refused(
                        Refusal::Silent(format!("it did not answer within {limit:?}")),
                        pool.options.memory_limit,
                        Some(limit),
                    )
                    .await,
            )),
        }
    }

    /// Sends `Init`, skips what the program printed before `plait::init`, reads `Hello`.
    async fn handshake(&mut self, pool: &Pool) -> Result<(), Refusal> {
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
                return Err(Refusal::Silent(format!(
                    "it printed {} bytes without answering",
                    self.buf.len()
                )));
            }
            if self.read().await? == 0 {
                return Err(Refusal::Silent("it exited without answering".to_owned()));
            }
        }
        let limit = pool.frame_limit();
        loop {
            if let Some((frame, len)) =
                codec::decode(&self.buf, limit).map_err(|error| error.to_string())?
            {
                let answer = hello(frame, init.initializer.as_ref().map(|(name, _)| name));
                self.buf.advance(len);
                if let Some(slot) = answer? {
                    let _ = self.slot.set(slot);
                }
                return Ok(());
            }
            if self.read().await? == 0 {
                return Err(Refusal::Silent("it exited during the handshake".to_owned()));
            }
        }
    }

    /// Kills a worker that did not become one and says why, how it ended, and the likely
    /// way out; `slow`: it did not answer within that time limit.
    async fn refused(
        mut self,
        refusal: Refusal,
        memory_limit: Option<u64>,
        slow: Option<Duration>,
    ) -> Error {
        // The group goes too: what an initializer (or a `main` without `init`) started.
        self.child.kill();
        let status = self.child.wait().await.ok();
        let stderr = self.stderr_tail().await;
        let status = status.map_or_else(String::new, |s| {
            format!(" (it ended with {})", WorkerExit::from(s))
        });
        let reason = match refusal {
            Refusal::Initializer { name, error } => {
                let last_words = if stderr.is_empty() {
                    String::new()
                } else {
                    format!("; the worker's last words: {stderr}")
                };
                return Error::WorkerStart {
                    reason: format!(
                        "the initializer {name} (ProcessOptions::initializer) failed in a new \
                         worker{status}: {error}. Fix the initializer, or leave it out{last_words}"
                    ),
                };
            }
            Refusal::Silent(reason) => reason,
        };
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

    async fn read(&mut self) -> Result<usize, Refusal> {
        self.stdout
            .read_buf(&mut self.buf)
            .await
            .map_err(|error| Refusal::Silent(format!("reading its output failed: {error}")))
    }

    /// Waits (briefly) for the rest of the worker's standard error, and returns the end of
    /// all it wrote.
    pub(crate) async fn stderr_tail(&mut self) -> String {
        self.stderr_end().await;
        let heard = self.heard.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&heard.life).trim().to_owned()
    }

    /// Waits (briefly) for the rest of the worker's standard error, and returns what it
    /// wrote while on the request it was on last.
    pub(crate) async fn last_words(&mut self) -> LastWords {
        self.stderr_end().await;
        let mut heard = self.heard.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut heard.words)
    }

    /// The end of the worker's standard error: at once once the worker and its group are
    /// dead, unless a process that left the group holds the pipe.
    async fn stderr_end(&mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(200), &mut self.stderr_done).await;
    }
}

/// Why a started process did not become a worker.
enum Refusal {
    /// It did not answer, or not as a worker does.
    Silent(String),
    /// It answered that its initializer failed.
    Initializer { name: String, error: Error },
}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Refusal::Silent(reason)
    }
}

/// What the worker's first frame says: `Hello` (and then its slot, mapped here, if it could
/// be), or its initializer's failure.
fn hello(frame: codec::Frame<'_>, initializer: Option<&String>) -> Result<Option<Slot>, Refusal> {
    match frame.kind {
        Kind::Hello => {
            let (Some(pid), Some(fd)) = (frame.body.get(..4), frame.body.get(4..8)) else {
                return Err(Refusal::Silent(format!(
                    "it said Hello in {} bytes, not 8",
                    frame.body.len()
                )));
            };
            let pid = u32::from_le_bytes(pid.try_into().expect("4 bytes"));
            let fd = i32::from_le_bytes(fd.try_into().expect("4 bytes"));
            // Without a slot the worker still serves, one request at a time (see `settle`).
            let slot = if fd < 0 {
                Err(io::Error::other("the worker could not make it"))
            } else {
                Slot::open(pid, fd)
            };
            Ok(slot
                .inspect_err(|error| {
                    tracing::warn!(
                        %error,
                        pid,
                        "a worker serves without the memory it shares with the runtime (a \
                         memfd opened through /proc): it is sent one task at a time"
                    );
                })
                .ok())
        }
        Kind::Done => {
            let outcome = codec::parse_done(frame.body).map_err(|e| e.to_string())?;
            let name = initializer.map_or("", String::as_str).to_owned();
            Err(match outcome {
                Err(failure) => {
                    let error = failure.into_error(&name);
                    Refusal::Initializer { name, error }
                }
                Ok(_) => Refusal::Silent("it answered the handshake with a result".to_owned()),
            })
        }
        other => Err(Refusal::Silent(format!(
            "it answered the handshake with {other:?}"
        ))),
    }
}

/// Whether a worker that failed to start ran out of memory (its cap, most likely), by what
/// it wrote: said only in a start error's way out, never decided from it.
fn out_of_memory(stderr: &str) -> bool {
    stderr.contains("memory allocation of") || stderr.contains("Cannot allocate memory")
}

/// Copies a worker's standard error to ours, keeping the end of it and, apart, what it
/// wrote during the request it is on (see `last_words.rs`).
async fn forward_stderr(
    mut stderr: ChildStderr,
    heard: Arc<Mutex<Heard>>,
    slot: Arc<OnceLock<Slot>>,
) {
    let mut chunk = vec![0; 8192];
    while let Ok(n) = stderr.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        let _ = io::Write::write_all(&mut io::stderr(), &chunk[..n]);
        // Read after the chunk: the worker marked the request before writing its words.
        let request = slot.get().map_or(0, |slot| slot.read().request);
        let mut heard = heard.lock().unwrap_or_else(PoisonError::into_inner);
        heard.life.extend_from_slice(&chunk[..n]);
        if heard.life.len() > STDERR_TAIL {
            let excess = heard.life.len() - STDERR_TAIL;
            heard.life.drain(..excess);
        }
        if heard.words.request != request {
            heard.words = LastWords::new(request);
        }
        heard.words.push(&chunk[..n]);
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
