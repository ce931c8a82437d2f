//! Measuring work: a command through `wait4` (its own and its waited-for children's CPU
//! time, context switches and peak memory) and this process's I/O counters; a closure
//! through its thread's CPU clock.

use std::io;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::Profile;
use crate::{Error, Result};

/// Runs `command` to its end and measures it: wall time, CPU time (user and kernel, of the
/// command and every child it waited for), context switches, peak resident memory, and the
/// bytes it read and wrote through any file descriptor. Its standard streams are as
/// `command` sets them (inherited by default: its output goes where this program's goes).
///
/// The byte counts come from this process's own I/O counters (`/proc/self/io`), which the
/// kernel adds a reaped child's to: I/O by other threads of this process while the command
/// runs counts too. The peak resident memory is the largest of the command's processes
/// (not their sum); as the kernel records it at `exec`, it is at least this program's own
/// resident size when it started the command. The time spent waiting for a core is the
/// whole process tree's, sampled every few milliseconds (a thread's waits after its last
/// sample are missed: at most a few milliseconds each). A piped standard input is closed
/// at once;
/// set standard output and error to inherit, null or a file (a pipe nobody reads fills up
/// and stops the command).
///
/// # Errors
///
/// [`Error::Failed`] naming the program if it cannot be started or waited for.
///
/// # Examples
///
/// ```
/// let mut sleep = std::process::Command::new("sleep");
/// sleep.arg("0.1");
/// let (status, measured) = plait::advise::profile_command(&mut sleep)?;
/// assert!(status.success());
/// assert_eq!(measured.bound(), plait::advise::Bound::Io);
/// # Ok::<(), plait::Error>(())
/// ```
pub fn profile_command(command: &mut std::process::Command) -> Result<(ExitStatus, Profile)> {
    let program = command.get_program().to_string_lossy().into_owned();
    let io_before = process_io();
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|error| Error::failed(format!("cannot run `{program}`: {error}")))?;
    // A piped input nobody writes would keep a reading command waiting forever.
    drop(child.stdin.take());
    // How long the whole tree waited for a core: sampled while it runs, and read once more
    // when the main process has ended but is not yet reaped.
    let waits = super::tree::TreeWaits::start(child.id());
    let exited = wait_exited(child.id());
    let run_queue = waits.stop();
    if let Err(error) = exited {
        return Err(Error::failed(format!(
            "cannot wait for `{program}`: {error}"
        )));
    }
    let (status, usage) = wait4(child.id()).map_err(|error| {
        let why = if error.raw_os_error() == Some(libc::ECHILD) {
            // The kernel reaps children itself, usage and all, where SIGCHLD is ignored.
            " (is SIGCHLD ignored in this process? Measuring a command needs it left at its default)"
        } else {
            ""
        };
        Error::failed(format!("cannot wait for `{program}`: {error}{why}"))
    })?;
    let wall = started.elapsed();
    // Reaped above; dropping a `Child` neither waits nor kills.
    drop(child);
    let io_after = process_io();
    let delta = |pick: fn(&(u64, u64)) -> u64| match (&io_before, &io_after) {
        (Some(before), Some(after)) => Some(pick(after).saturating_sub(pick(before))),
        _ => None,
    };
    Ok((
        status,
        Profile {
            wall,
            user: duration(usage.ru_utime),
            system: duration(usage.ru_stime),
            run_queue,
            voluntary_switches: usage.ru_nvcsw.max(0) as u64,
            involuntary_switches: usage.ru_nivcsw.max(0) as u64,
            // Kilobytes on Linux.
            peak_rss: Some(usage.ru_maxrss.max(0) as u64 * 1024),
            read_bytes: delta(|io| io.0),
            written_bytes: delta(|io| io.1),
        },
    ))
}

/// Runs `f` on the current thread and measures it: wall time, this thread's CPU time (all
/// of it counted as user time), the time it waited for a core, and its context switches.
///
/// Only this thread is measured: work `f` hands to other threads (spawned tasks) is not,
/// but work this thread runs for others while `f` waits is (a `join` on a pool thread runs
/// the joined task in place if it is still queued there).
pub fn profile<R>(f: impl FnOnce() -> R) -> (R, Profile) {
    // The slow reads (a /proc file, getrusage) stay outside the two clocks, which are read
    // back to back, so that a short `f` is not charged CPU time its wall time lacks.
    let reading = Instant::now();
    let before = ThreadCounters::now();
    let cpu_before = thread_cpu_time();
    let started = Instant::now();
    let output = f();
    let ended = Instant::now();
    let wall = ended - started;
    let cpu = thread_cpu_time();
    let after = ThreadCounters::now();
    // The run-queue counters span the reads too: what this thread waited while reading is
    // not part of the wall time, so at most that much comes off.
    let outside = (started - reading) + ended.elapsed();
    (
        output,
        Profile {
            wall,
            // One thread computes at most as long as it ran.
            user: cpu.saturating_sub(cpu_before).min(wall),
            system: Duration::ZERO,
            run_queue: after
                .run_queue
                .saturating_sub(before.run_queue)
                .saturating_sub(outside),
            voluntary_switches: after.voluntary.saturating_sub(before.voluntary),
            involuntary_switches: after.involuntary.saturating_sub(before.involuntary),
            peak_rss: None,
            read_bytes: None,
            written_bytes: None,
        },
    )
}

/// Runs the registered task `task` (see [`#[plait::task]`](macro@crate::task)) here, on the
/// current thread, with the sample `args`, and measures it as [`profile`] does: the same
/// advice as for the closure that calls it.
///
/// It runs in this process: a task that may crash the process is better measured in one
/// of its own, with [`profile_command`] on a program that runs it.
///
/// # Examples
///
/// ```
/// #[plait::task]
/// fn checksum(data: Vec<u8>) -> u64 {
///     data.iter().map(|&b| u64::from(b)).sum()
/// }
///
/// let (sum, measured) = plait::advise::profile_task(checksum::task(), vec![7u8; 1 << 20]);
/// assert_eq!(sum, 7 << 20);
/// println!("{}", measured.advice(4));
/// ```
pub fn profile_task<T: crate::process::Task>(_task: T, args: T::Args) -> (T::Output, Profile) {
    profile(|| T::run(args))
}

/// [`profile_task`] for a task known by name, with arguments as JSON (see
/// [`run_by_name_json`](crate::process::run_by_name_json)): its result as JSON, and how it
/// ran.
///
/// # Errors
///
/// As [`run_by_name_json`](crate::process::run_by_name_json): an unknown name (with close
/// names), arguments that are not JSON of the task's type, a panic.
pub fn profile_task_by_name(name: &str, args: &str) -> Result<(String, Profile)> {
    let (output, measured) = profile(|| crate::process::run_by_name_json(name, args));
    Ok((output?, measured))
}

/// The current thread's run-queue time and context switches.
#[derive(Clone, Copy, Debug, Default)]
struct ThreadCounters {
    /// Time spent ready to run but waiting for a core (the run queue), where the kernel
    /// reports it (`/proc/thread-self/schedstat`).
    run_queue: Duration,
    voluntary: u64,
    involuntary: u64,
}

/// The current thread's CPU time.
fn thread_cpu_time() -> Duration {
    let cpu = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(cpu.tv_sec.max(0) as u64, cpu.tv_nsec.max(0) as u32)
}

impl ThreadCounters {
    fn now() -> Self {
        // SAFETY: `rusage` is plain data, for which all zeroes is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is a valid, writable `rusage` for the call to fill.
        let ok = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } == 0;
        let run_queue = std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|stat| stat.split_whitespace().nth(1)?.parse().ok())
            .map_or(Duration::ZERO, Duration::from_nanos);
        ThreadCounters {
            run_queue,
            voluntary: if ok { usage.ru_nvcsw.max(0) as u64 } else { 0 },
            involuntary: if ok { usage.ru_nivcsw.max(0) as u64 } else { 0 },
        }
    }
}

/// Waits until the child `pid` has exited, without reaping it.
fn wait_exited(pid: u32) -> io::Result<()> {
    let id = libc::id_t::from(pid);
    loop {
        // SAFETY: `siginfo_t` is plain data, for which all zeroes is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is valid and writable for the call; `pid` is our own child, not
        // yet reaped (WNOWAIT leaves it so).
        let waited =
            unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if waited == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Waits for the child `pid` and returns its status and resource usage (its own and its
/// waited-for descendants').
fn wait4(pid: u32) -> io::Result<(ExitStatus, libc::rusage)> {
    use std::os::unix::process::ExitStatusExt;
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    let mut status = 0;
    // SAFETY: `rusage` is plain data, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid and writable for the call; `pid` is our
        // own child, not yet waited for.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            return Ok((ExitStatus::from_raw(status), usage));
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

fn duration(time: libc::timeval) -> Duration {
    Duration::from_secs(time.tv_sec.max(0) as u64)
        + Duration::from_micros(time.tv_usec.max(0) as u64)
}

/// This process's `rchar` and `wchar` (bytes read and written through any descriptor),
/// reaped children's included.
fn process_io() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/io").ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| value.trim().parse().ok())
    };
    Some((field("rchar:")?, field("wchar:")?))
}
