//! The worker side: a copy of the program, started by the runtime, that serves tasks.
//!
//! A worker is the current executable run again with [`WORKER_ENV`] set. [`init`], called
//! first thing in `main`, sees the variable and serves instead of returning. The worker
//! talks to the runtime over its standard input and output, which it takes for itself at
//! once: anything the program prints afterwards goes to standard error, and reads of
//! standard input see an empty file, so a task's `println!` cannot garble a frame.
//!
//! One task runs at a time, on the main thread. Frames the runtime sends ahead wait in the
//! pipe; answers go out through a writer thread (see `outbox.rs`), in batches under load and
//! at once when idle.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::process::{Resource, Rlimit, Signal};

use super::codec::{self, Frame, Kind};
use super::outbox::Outbox;
use super::registry::{self, Failure, Registration};
use super::slot::Slot;

/// Set in a worker's environment, to the protocol version.
pub(crate) const WORKER_ENV: &str = "PLAIT_WORKER";
/// Set in a worker's environment, to the runtime's process id.
pub(crate) const PARENT_ENV: &str = "PLAIT_PARENT_PID";
/// The protocol version a runtime and its workers must share.
pub(crate) const PROTOCOL: &str = "2";

/// The first argument a worker is started with. A program that calls [`init`] at the top of
/// `main` never sees it; a test binary reads it as a filter that selects the one test
/// [`test_worker!`](crate::test_worker) defines.
pub const WORKER_TEST_NAME: &str = "__plait_worker__";

/// Set once this process serves as a worker.
static SERVING: AtomicBool = AtomicBool::new(false);
/// Where this worker tells the runtime what it is doing (see `slot.rs`).
static SLOT: OnceLock<Slot> = OnceLock::new();
/// The slot's descriptor, open for the runtime to find (close-on-exec: the programs tasks
/// start do not inherit it).
static SLOT_FD: OnceLock<std::os::fd::OwnedFd> = OnceLock::new();
/// Set by [`init`] in a process that inherited a worker's environment without being one.
static INHERITED: AtomicBool = AtomicBool::new(false);

/// Makes this process a worker if the runtime started it as one; otherwise returns at once.
///
/// Call it first thing in `main` in any program that uses the process strand: the runtime
/// starts its worker processes by running the program again, and `init` is where a worker
/// stops being the program and starts serving tasks (it never returns in a worker). In a
/// test binary, where `main` belongs to the test harness, invoke
/// [`test_worker!`](crate::test_worker) once instead.
///
/// # Examples
///
/// ```
/// #[plait::task]
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() -> plait::Result<()> {
///     plait::init();
///     let rt = plait::Runtime::new()?;
///     assert_eq!(rt.spawn_process(square::task(), 12).join()?, 144);
///     Ok(())
/// }
/// ```
pub fn init() {
    let Ok(version) = std::env::var(WORKER_ENV) else {
        return;
    };
    if started_by_a_worker() {
        INHERITED.store(true, Ordering::Relaxed);
        return;
    }
    if version != PROTOCOL {
        eprintln!(
            "plait worker: this binary speaks protocol {PROTOCOL}, the runtime asked for \
             {version}; the runtime and its workers must be the same build"
        );
        std::process::exit(2);
    }
    SERVING.store(true, Ordering::Relaxed);
    let code = match serve() {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("plait worker {}: {error}", std::process::id());
            3
        }
    };
    std::process::exit(code);
}

/// Whether this process was started by a runtime as a worker; `true` also in a worker that
/// has not reached [`init`] (and then the process strand refuses to start more workers,
/// rather than have a program without `init` start itself without end).
pub(crate) fn started_as_worker() -> bool {
    std::env::var_os(WORKER_ENV).is_some() && !INHERITED.load(Ordering::Relaxed)
}

/// Whether this process descends from its runtime through a worker rather than directly:
/// a program a worker's task started, which inherited the worker's environment. Such a
/// program is no worker; it runs as the program it is.
///
/// A worker's parent is the runtime named in its environment; this process's parent is
/// not, but an ancestor further up is. (A worker orphaned before it got here has neither,
/// and is told so by `die_with_parent`.)
fn started_by_a_worker() -> bool {
    let Some(runtime) = std::env::var(PARENT_ENV)
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
    else {
        return false;
    };
    let mut ancestor = std::os::unix::process::parent_id();
    if ancestor == runtime {
        return false;
    }
    // Up the chain, a few generations at most; init (1) ends it.
    for _ in 0..32 {
        match parent_of(ancestor) {
            Some(parent) if parent == runtime => return true,
            Some(parent) if parent > 1 => ancestor = parent,
            _ => return false,
        }
    }
    false
}

/// The parent of process `pid`, from `/proc/PID/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: the name may hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether this process serves as a worker (it called [`init`]).
pub(crate) fn serving() -> bool {
    SERVING.load(Ordering::Relaxed)
}

fn serve() -> io::Result<()> {
    die_with_parent()?;
    // Without one (no memfd here), the runtime sends this worker one request at a time.
    if let Ok((slot, slot_fd)) = Slot::create() {
        let _ = SLOT.set(slot);
        let _ = SLOT_FD.set(slot_fd);
    }
    let (mut input, mut output) = take_stdio()?;
    output.write_all(codec::MAGIC)?;
    output.flush()?;

    let init: codec::Init = {
        let frame = input
            .frame(usize::MAX >> 1)?
            .ok_or_else(|| io::Error::other("the runtime closed the pipe before sending Init"))?;
        match frame.kind {
            Kind::Init => postcard::from_bytes(frame.body)
                .map_err(|error| io::Error::other(format!("an undecodable Init: {error}")))?,
            other => return Err(io::Error::other(format!("expected Init, got {other:?}"))),
        }
    };
    input.consume();
    let limit = usize::try_from(init.frame_limit).unwrap_or(usize::MAX);
    // The writer thread starts before the memory cap: its stack counts against the cap,
    // and a thread refused for it would look like a crash.
    let outbox = Outbox::start(output)?;
    let served = start_and_serve(&mut input, &outbox, &init, limit);
    // Whatever was answered goes out, even if serving failed.
    outbox.close();
    served
}

/// Applies the memory cap, runs the initializer, says `Hello`, and serves.
fn start_and_serve(
    input: &mut Input,
    outbox: &Outbox,
    init: &codec::Init,
    limit: usize,
) -> io::Result<()> {
    if let Some(bytes) = init.memory_limit {
        let cap = Rlimit {
            current: Some(bytes),
            maximum: Some(bytes),
        };
        rustix::process::setrlimit(Resource::As, cap)?;
    }
    let mut tasks = Tasks::default();
    let mut out = Vec::with_capacity(64 * 1024);
    if let Some((name, args)) = &init.initializer {
        let mut result = Vec::new();
        if let Err(failure) = tasks
            .find(name)
            .and_then(|task| (task.run)(args, &mut result))
        {
            write_done(&mut out, 0, &Err(failure));
            return outbox.post(&mut out, true);
        }
    }
    // Hello: this worker's pid, and the descriptor of its slot for the runtime to open.
    let slot_fd = SLOT_FD.get().map_or(-1, std::os::fd::AsRawFd::as_raw_fd);
    codec::put_header(&mut out, Kind::Hello, 0, 8);
    out.extend_from_slice(&std::process::id().to_le_bytes());
    out.extend_from_slice(&slot_fd.to_le_bytes());
    outbox.post(&mut out, true)?;
    let limits = Limits {
        frame: limit,
        payload: usize::try_from(init.payload_limit).unwrap_or(usize::MAX),
    };
    serve_frames(input, outbox, &mut tasks, limits)
}

/// Runs the requests that arrive until the runtime closes the pipe.
fn serve_frames(
    input: &mut Input,
    outbox: &Outbox,
    tasks: &mut Tasks,
    limits: Limits,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(64 * 1024);
    loop {
        let Some(frame) = input.frame(limits.frame)? else {
            return Ok(()); // the runtime closed the pipe: retire
        };
        let id = frame.id;
        match frame.kind {
            Kind::Call => {
                let call = codec::parse_call(frame.body).map_err(io::Error::other)?;
                if call.flags & codec::REPORT_START != 0 {
                    codec::put_header(&mut out, Kind::Started, frame.id, 0);
                    // Out now: the task may run long, and the runtime times it from here.
                    outbox.post(&mut out, true)?;
                }
                let start = out.len();
                codec::put_header(&mut out, Kind::Done, frame.id, 0);
                out.push(codec::OK);
                let ran = tasks
                    .find(call.name)
                    .and_then(|task| (task.run)(call.args, &mut out));
                if let Err(failure) = ran {
                    out.truncate(start);
                    write_done(&mut out, frame.id, &Err(failure));
                } else {
                    // The result alone (after the tag) is what the payload limit bounds.
                    let cap = limits.payload.saturating_add(1);
                    patch_len(&mut out, start, cap, "the result", call.name, frame.id);
                }
            }
            Kind::Batch => {
                let (name, count, items) =
                    codec::parse_batch(frame.body).map_err(io::Error::other)?;
                let start = out.len();
                codec::put_header(&mut out, Kind::BatchDone, frame.id, 0);
                out.extend_from_slice(&count.to_le_bytes());
                let ran = tasks
                    .find(name)
                    .and_then(|task| (task.run_batch)(items, count, &mut out, SLOT.get()));
                if let Err(failure) = ran {
                    out.truncate(start);
                    write_done(&mut out, frame.id, &Err(failure));
                } else {
                    let cap = limits.frame;
                    patch_len(&mut out, start, cap, "a batch's results", name, frame.id);
                }
            }
            other => {
                return Err(io::Error::other(format!("unexpected {other:?} frame")));
            }
        }
        input.consume();
        let idle = !input.has_frame();
        outbox.post(&mut out, idle)?;
        // Done once the answer is with the writer: a death while handing it over (out of
        // memory for a large result, say) is still this request's.
        if let Some(slot) = SLOT.get() {
            slot.done(id);
        }
    }
}

/// The registry, with the last task found kept at hand: a worker usually runs one task
/// over and over.
#[derive(Default)]
struct Tasks {
    last: Option<&'static Registration>,
}

impl Tasks {
    fn find(&mut self, name: &str) -> Result<&'static Registration, Failure> {
        if let Some(last) = self.last
            && last.name == name
        {
            return Ok(last);
        }
        let found = registry::lookup(name).ok_or_else(|| Failure::UnknownTask(name.to_owned()))?;
        self.last = Some(found);
        Ok(found)
    }
}

fn write_done(out: &mut Vec<u8>, id: u64, outcome: &codec::Outcome<'_>) {
    let start = out.len();
    codec::put_header(out, Kind::Done, id, 0);
    codec::put_outcome(out, outcome);
    let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// How large what a worker receives and sends may be.
#[derive(Clone, Copy)]
struct Limits {
    /// A whole frame's body.
    frame: usize,
    /// One call's result.
    payload: usize,
}

/// Writes the real length into the frame that starts at `start`; a body over `cap` becomes
/// a failure that says so instead (`what` names what was too large).
fn patch_len(out: &mut Vec<u8>, start: usize, cap: usize, what: &str, name: &str, id: u64) {
    let body = out.len() - start - codec::HEADER;
    if body > cap {
        out.truncate(start);
        let failure = Failure::Codec(format!(
            "{what} of {name} came to {body} bytes, over the limit of {cap} bytes \
             (raise it with ProcessOptions::payload_limit)"
        ));
        write_done(out, id, &Err(failure));
        return;
    }
    let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// How much input buffer a worker keeps between frames.
const KEEP_INPUT: usize = 1 << 20;

/// The frames' input: a pipe read a pipe-buffer at a time into `buf`, whose first `used`
/// bytes are frames already handled.
struct Input {
    file: File,
    scratch: Box<[u8]>,
    buf: Vec<u8>,
    used: usize,
    /// The length of the frame last returned, consumed by `consume`.
    current: usize,
}

impl Input {
    /// The next frame, reading as needed; `None` at the end of the input.
    fn frame(&mut self, limit: usize) -> io::Result<Option<Frame<'_>>> {
        loop {
            let pending = &self.buf[self.used..];
            note_receiving(pending);
            if codec::decode(pending, limit)
                .map_err(io::Error::other)?
                .is_some()
            {
                break;
            }
            // Handled frames go before reading more, so the buffer does not grow forever.
            self.buf.drain(..self.used);
            self.used = 0;
            // A large frame grew the buffer: once it is handled, the memory goes back,
            // rather than the worker keeping its largest frame's size for life.
            if self.buf.capacity() > KEEP_INPUT && self.buf.len() <= KEEP_INPUT {
                self.buf.shrink_to(KEEP_INPUT);
            }
            // Once a frame's length is in (and checked against the limit by `decode`
            // above), room for all of it at once, rather than doubling (and copying) up to
            // it.
            if let Some(total) = codec::frame_len(&self.buf) {
                self.buf.reserve(total.saturating_sub(self.buf.len()));
            }
            let n = loop {
                match self.file.read(&mut self.scratch) {
                    Ok(n) => break n,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                }
            };
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::Error::other("the runtime closed the pipe mid-frame"))
                };
            }
            self.buf.extend_from_slice(&self.scratch[..n]);
        }
        let (frame, len) = codec::decode(&self.buf[self.used..], limit)
            .map_err(io::Error::other)?
            .expect("checked above");
        self.current = len;
        Ok(Some(frame))
    }

    /// Marks the frame last returned as handled.
    fn consume(&mut self) {
        self.used += std::mem::take(&mut self.current);
    }

    /// Whether a whole frame is waiting already (more work to run at once).
    fn has_frame(&self) -> bool {
        let pending = &self.buf[self.used..];
        !pending.is_empty() && codec::missing(pending) == 0
    }
}

/// Tells the runtime which request this worker is on as soon as its frame's header is in:
/// a request whose arguments are too large to receive is charged with the death they cause.
fn note_receiving(pending: &[u8]) {
    let (Some(slot), Some(header)) = (SLOT.get(), pending.get(..codec::HEADER)) else {
        return;
    };
    if let [kind, id @ ..] = &header[4..]
        && (*kind == Kind::Call as u8 || *kind == Kind::Batch as u8)
    {
        let id: [u8; 8] = id.try_into().expect("a header holds a u64 id");
        slot.on(u64::from_le_bytes(id));
    }
}

/// Dies with the runtime: the kernel kills this process when its parent goes, even by
/// SIGKILL. (A closed pipe is the second line: the next read sees end of file.)
fn die_with_parent() -> io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    // The parent may have died before the line above: then we have been re-parented.
    let expected = std::env::var(PARENT_ENV).ok();
    let actual = std::os::unix::process::parent_id().to_string();
    if expected.as_deref() != Some(actual.as_str()) {
        return Err(io::Error::other(
            "the runtime that started this worker is gone",
        ));
    }
    Ok(())
}

/// Takes standard input and output for the frames; the program keeps standard error, and
/// its standard output goes there too.
fn take_stdio() -> io::Result<(Input, File)> {
    let input = Input {
        file: File::from(rustix::io::fcntl_dupfd_cloexec(io::stdin(), 3)?),
        scratch: vec![0; 64 * 1024].into_boxed_slice(),
        buf: Vec::with_capacity(64 * 1024),
        used: 0,
        current: 0,
    };
    // Close-on-exec: a process a task starts must not hold the frames' pipes open (the
    // runtime sees a worker's death as the end of its output).
    let output = File::from(rustix::io::fcntl_dupfd_cloexec(io::stdout(), 3)?);
    io::stdout().flush()?;
    rustix::stdio::dup2_stdout(io::stderr())?;
    let null = File::open("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    Ok((input, output))
}

/// Lets the process strand run in a test binary, whose `main` belongs to the test harness.
///
/// Invoke it once, at the top level of each integration-test file (or in the crate's unit
/// tests) that uses the process strand. It defines a test named
/// [`__plait_worker__`](WORKER_TEST_NAME) that does nothing in a normal test run; the
/// runtime starts its workers by running the test binary with that test's name as the
/// filter, and the test becomes a worker there (it calls [`init`]).
///
/// ```ignore
/// plait::test_worker!();
///
/// #[plait::task]
/// fn double(x: i32) -> i32 { x * 2 }
///
/// #[test]
/// fn doubles_in_a_worker() {
///     let rt = plait::Runtime::new().unwrap();
///     assert_eq!(rt.spawn_process(double::task(), 21).join().unwrap(), 42);
/// }
/// ```
#[macro_export]
macro_rules! test_worker {
    () => {
        #[test]
        fn __plait_worker__() {
            $crate::init();
        }
    };
}
