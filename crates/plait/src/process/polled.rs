//! Commands run on the calling thread: it starts the command, waits on its pipes and its
//! end together with one `poll(2)`, and reaps it.
//!
//! The graph's command nodes run this way, each on a thread of its own (see
//! `graph::commands`). For many short commands it is cheaper than the I/O runtime's way
//! (`command::run`): no registration of each pipe and pidfd with epoll, no switch to
//! non-blocking mode, no wake-up of a runtime thread that then wakes the task. Measured on `plait run`'s job of
//! 2,000 `true` commands: 0.78-0.82x the runtime's way, and 0.86-1.00x make's time
//! (BENCHMARKS.md).
//!
//! What a run promises is the runtime's: the command leads a process group of its own,
//! watched by the keeper; a time limit kills the group; when the command ends, what it
//! left in its group is killed before it is reaped; a [`Stop`] from another thread kills
//! it at once.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::OFlags;
use rustix::io::Errno;
use rustix::process::Pid;

use super::capture::Kept;
use super::child::{self, Child};
use super::command::{
    self, Command, CommandError, CommandOutput, OUTPUT_GRACE, cannot_start, cannot_wait,
};

/// How much one read takes at most.
const CHUNK: usize = 16 * 1024;

/// Where the kernel has no pidfds, how often a command's end is looked for while its
/// pipes are quiet.
const LOOK_AGAIN: Duration = Duration::from_millis(10);

/// Stops a command run by [`run`] from another thread: kills its process group at once,
/// or, before it starts, keeps it from starting.
#[derive(Default)]
pub(crate) struct Stop {
    state: Mutex<Stopping>,
}

#[derive(Default)]
struct Stopping {
    /// The command's process, while it may be killed: from its start until it is reaped
    /// (after which its id may name a stranger).
    running: Option<Pid>,
    stopped: bool,
    /// About to be reaped, or reaped: too late to stop.
    ended: bool,
}

impl Stop {
    pub(crate) fn new() -> Stop {
        Stop::default()
    }

    /// Stops the command: kills its process group if it runs, keeps it from starting if
    /// it has not. Returns whether this stop took effect: not stopped before, not ended.
    pub(crate) fn stop(&self) -> bool {
        let mut state = self.lock();
        if let Some(pid) = state.running {
            child::kill_group(pid);
        }
        let took_effect = !state.stopped && !state.ended;
        state.stopped = true;
        took_effect
    }

    /// Whether [`stop`](Stop::stop) was called.
    pub(crate) fn is_stopped(&self) -> bool {
        self.lock().stopped
    }

    /// Notes the command's process; returns `false` if it was stopped already (the caller
    /// kills it).
    fn started(&self, pid: Pid) -> bool {
        let mut state = self.lock();
        state.running = Some(pid);
        !state.stopped
    }

    /// The process is about to be reaped: its id must not be killed after this.
    fn reaping(&self) {
        let mut state = self.lock();
        state.running = None;
        state.ended = true;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stopping> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The commands running on threads of their own, which a shutdown stops.
#[derive(Default)]
pub(crate) struct Running {
    stops: Mutex<List>,
    /// Told when the list empties.
    emptied: Condvar,
}

#[derive(Default)]
struct List {
    next: u64,
    stops: HashMap<u64, Arc<Stop>>,
}

impl Running {
    /// Notes `stop`'s command as running until the returned guard drops.
    pub(crate) fn add(&self, stop: Arc<Stop>) -> Listed<'_> {
        let mut list = self.lock();
        let key = list.next;
        list.next += 1;
        list.stops.insert(key, stop);
        Listed { running: self, key }
    }

    /// Stops every command running now.
    pub(crate) fn stop_all(&self) {
        for stop in self.lock().stops.values() {
            stop.stop();
        }
    }

    /// Waits until no command is listed (each is reaped before it leaves the list) or
    /// `deadline` passes; returns whether none is.
    pub(crate) fn wait_none(&self, deadline: Instant) -> bool {
        let mut list = self.lock();
        while !list.stops.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            list = self
                .emptied
                .wait_timeout(list, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, List> {
        self.stops.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A command's place in [`Running`], given up on drop.
pub(crate) struct Listed<'a> {
    running: &'a Running,
    key: u64,
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        let mut list = self.running.lock();
        list.stops.remove(&self.key);
        if list.stops.is_empty() {
            self.running.emptied.notify_all();
        }
    }
}

/// Runs `command` to its end (or its time limit, or `stop`) on this thread.
///
/// # Errors
///
/// [`CommandError`] if the command cannot start (an empty `argv`, a program that does not
/// exist or cannot be run, a working directory that does not exist, a stop before it
/// started) or cannot be waited for. A command stopped while it ran ends killed by
/// `SIGKILL`: look at [`Stop::is_stopped`] to tell that from a kill by someone else.
pub(crate) fn run(command: Command, stop: &Stop) -> Result<CommandOutput, CommandError> {
    let (program, mut process) = command::prepare(&command)?;
    if stop.is_stopped() {
        return Err(CommandError::new(format!(
            "`{program}` was stopped before it started"
        )));
    }
    let started = Instant::now();
    let (mut child, pipes) = Child::spawn_polled(&mut process)
        .map_err(|error| cannot_start(&command, &program, &error))?;
    #[cfg(test)]
    if tests::NO_PIDFD.get() {
        child.forget_pidfd();
    }
    if !stop.started(child.pid()) {
        child.kill();
    }
    let (out, err) = command::kept(&command);
    let mut streams = Streams {
        output: [
            Reading::new(pipes.stdout, out),
            Reading::new(pipes.stderr, err),
        ],
        input: pipes
            .stdin
            .map(|pipe| Feed::new(File::from(OwnedFd::from(pipe)), command.stdin)),
    };
    let deadline = command.timeout.and_then(|limit| started.checked_add(limit));
    let waited = streams.wait(&mut child, deadline);
    // From here on the process may be reaped (below, or by `child`'s drop on an error).
    stop.reaping();
    let timed_out = waited.map_err(|error| cannot_wait(&program, &error))?;
    let status = child
        .wait_blocking()
        .map_err(|error| cannot_wait(&program, &error))?;
    let elapsed = started.elapsed();
    Ok(command::output(
        status,
        timed_out,
        streams.finish(),
        elapsed,
    ))
}

/// A command's pipes while it runs.
struct Streams {
    /// Standard output and standard error.
    output: [Reading; 2],
    input: Option<Feed>,
}

impl Streams {
    /// Reads the output and feeds the input until the command has ended and its output
    /// pipes are closed, or for [`OUTPUT_GRACE`] after its end at most (processes it left
    /// outside its group may hold them). Kills its group at `deadline`. Returns whether
    /// the deadline killed it.
    fn wait(&mut self, child: &mut Child, deadline: Option<Instant>) -> io::Result<bool> {
        let mut buffer = vec![0; CHUNK];
        let mut timed_out = false;
        let mut ended_at: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if ended_at.is_none() && child.pidfd().is_none() && child.has_ended()? {
                ended_at = Some(now);
            }
            if let Some(ended) = ended_at {
                // Gone: nobody to feed (a leftover that holds the input does not count).
                self.input = None;
                let open = self.output.iter().any(|reading| reading.pipe.is_some());
                if !open || now >= ended + OUTPUT_GRACE {
                    return Ok(timed_out);
                }
            }
            if let Some(deadline) = deadline
                && !timed_out
                && ended_at.is_none()
                && now >= deadline
            {
                child.kill();
                timed_out = true;
            }
            let wake = match ended_at {
                Some(ended) => Some(ended + OUTPUT_GRACE),
                None if child.pidfd().is_none() => Some(now + LOOK_AGAIN),
                None => deadline.filter(|_| !timed_out),
            };
            let ready = self.poll(child, ended_at.is_none(), wake)?;
            for (reading, ready) in self.output.iter_mut().zip(ready.output) {
                if ready {
                    reading.read(&mut buffer);
                }
            }
            if ready.input
                && let Some(feed) = &mut self.input
                && feed.write()
            {
                self.input = None;
            }
            if ready.ended && child.has_ended()? {
                ended_at = Some(Instant::now());
            }
        }
    }

    /// Waits until a pipe is ready, the command ends (if `watch_end`), or `wake`.
    fn poll(&self, child: &Child, watch_end: bool, wake: Option<Instant>) -> io::Result<Ready> {
        let mut fds = Vec::with_capacity(4);
        let mut ready = Ready::default();
        for reading in &self.output {
            if let Some(pipe) = &reading.pipe {
                fds.push(PollFd::new(pipe, PollFlags::IN));
            }
        }
        if let Some(pipe) = self.input.as_ref().and_then(|feed| feed.pipe.as_ref()) {
            fds.push(PollFd::new(pipe, PollFlags::OUT));
        }
        let pidfd = child.pidfd().filter(|_| watch_end);
        if let Some(pidfd) = &pidfd {
            fds.push(PollFd::from_borrowed_fd(pidfd.as_fd(), PollFlags::IN));
        }
        let timeout = wake.map(|wake| {
            let left = wake.saturating_duration_since(Instant::now());
            Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(left.subsec_nanos()),
            }
        });
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
        // The same order as above: each present pipe took the next entry.
        let mut events = fds.iter().map(|fd| !fd.revents().is_empty());
        for (reading, ready) in self.output.iter().zip(&mut ready.output) {
            if reading.pipe.is_some() {
                *ready = events.next().unwrap_or(false);
            }
        }
        if self.input.as_ref().is_some_and(|feed| feed.pipe.is_some()) {
            ready.input = events.next().unwrap_or(false);
        }
        if pidfd.is_some() {
            ready.ended = events.next().unwrap_or(false);
        }
        Ok(ready)
    }

    /// What was read, its last unfinished line handed to the sink.
    fn finish(self) -> (Kept, Kept) {
        let [mut out, mut err] = self.output.map(|reading| reading.kept);
        out.finish();
        err.finish();
        (out, err)
    }
}

/// Which of a poll's pipes are ready.
#[derive(Default)]
struct Ready {
    output: [bool; 2],
    input: bool,
    ended: bool,
}

/// An output stream: its pipe until it closes, and what was read from it.
struct Reading {
    pipe: Option<File>,
    kept: Kept,
}

impl Reading {
    fn new(pipe: Option<impl Into<OwnedFd>>, kept: Kept) -> Reading {
        Reading {
            pipe: pipe.map(|pipe| File::from(pipe.into())),
            kept,
        }
    }

    /// Reads what is there (the poll said something is), or closes the pipe at its end. A
    /// read error ends it as the end would.
    fn read(&mut self, buffer: &mut [u8]) {
        let Some(pipe) = &mut self.pipe else {
            return;
        };
        match pipe.read(buffer) {
            Ok(0) => self.pipe = None,
            Ok(read) => self.kept.take_in(&buffer[..read]),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => self.pipe = None,
        }
    }
}

/// A command's input, written as the pipe takes it.
struct Feed {
    pipe: Option<File>,
    input: Vec<u8>,
    written: usize,
}

impl Feed {
    fn new(pipe: File, input: Vec<u8>) -> Feed {
        // Written only when the poll says there is room, but a write larger than the room
        // would block: non-blocking, it writes what fits.
        let pipe = rustix::fs::fcntl_getfl(&pipe)
            .and_then(|flags| rustix::fs::fcntl_setfl(&pipe, flags | OFlags::NONBLOCK))
            .is_ok()
            .then_some(pipe);
        Feed {
            pipe,
            input,
            written: 0,
        }
    }

    /// Writes what the pipe takes now; returns whether the feed is over (all written, or
    /// the command closed its input: not an error).
    fn write(&mut self) -> bool {
        let Some(pipe) = &mut self.pipe else {
            return true;
        };
        while self.written < self.input.len() {
            match pipe.write(&self.input[self.written..]) {
                Ok(written) => self.written += written,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) if error.kind() == ErrorKind::WouldBlock => return false,
                Err(_) => return true,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::mpsc;

    use super::*;
    use crate::process::Stream;

    thread_local! {
        /// Runs on this thread look for their command's end as on a kernel without pidfds.
        pub(super) static NO_PIDFD: Cell<bool> = const { Cell::new(false) };
    }

    /// Runs `command` with and without pidfds; both must give the same.
    fn both_ways(command: &Command) -> [CommandOutput; 2] {
        [false, true].map(|no_pidfd| {
            NO_PIDFD.set(no_pidfd);
            let output = run(command.clone(), &Stop::new());
            NO_PIDFD.set(false);
            output.unwrap_or_else(|error| panic!("no pidfd: {no_pidfd}: {error}"))
        })
    }

    /// Whether `pid` is gone, or a zombie of a parent that is not this process, within ten
    /// seconds: a process killed (not reaped by us) dies when the kernel gets to it, and
    /// nothing tells us.
    fn gone(pid: u32) -> bool {
        let dead = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dead() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        dead()
    }

    #[test]
    fn output_status_and_lines_as_the_command_wrote_them() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&lines);
        let command = Command::shell("echo one; echo two >&2; printf three; exit 4")
            .on_line(move |stream, line| seen.lock().unwrap().push((stream, line.to_vec())));
        for output in both_ways(&command) {
            assert_eq!(output.code, Some(4));
            assert_eq!(output.signal, None);
            assert!(!output.timed_out);
            assert_eq!(output.stdout, b"one\nthree");
            assert_eq!(output.stderr, b"two\n");
        }
        let mut lines = lines.lock().unwrap().clone();
        lines.sort();
        // Twice each: one run with pidfds, one without.
        let twice = |stream, line: &[u8]| [(stream, line.to_vec()), (stream, line.to_vec())];
        let expected = [
            twice(Stream::Stdout, b"one"),
            twice(Stream::Stdout, b"three"),
            twice(Stream::Stderr, b"two"),
        ]
        .concat();
        assert_eq!(lines, expected);
    }

    #[test]
    fn input_larger_than_a_pipe_goes_through_and_output_past_the_limit_is_counted() {
        let input: Vec<u8> = (0..3_000_000_u32).map(|i| (i % 251) as u8).collect();
        let command = Command::new("cat")
            .stdin(input.clone())
            .output_limit(1 << 20);
        for output in both_ways(&command) {
            assert_eq!(output.code, Some(0));
            assert_eq!(output.stdout, input[..1 << 20]);
            assert_eq!(output.stdout_dropped, (input.len() - (1 << 20)) as u64);
        }
        // A command that never reads its input is not held up by it.
        let ignores = Command::new("true").stdin(input);
        for output in both_ways(&ignores) {
            assert_eq!(output.code, Some(0));
        }
    }

    #[test]
    fn a_time_limit_kills_the_group_and_says_so() {
        let command =
            Command::shell("sleep 600 & echo $!; sleep 600").timeout(Duration::from_millis(200));
        for output in both_ways(&command) {
            assert!(output.timed_out);
            assert_eq!(output.signal, Some(9));
            assert!(
                output.elapsed < Duration::from_secs(30),
                "{:?}",
                output.elapsed
            );
            let leftover: u32 = String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse()
                .unwrap();
            assert!(gone(leftover), "the group's other sleep {leftover} lives");
        }
    }

    #[test]
    fn what_a_command_leaves_in_its_group_ends_with_it() {
        // The leftover's output goes elsewhere, so the pipes close when the shell exits.
        let command = Command::shell("sleep 600 >/dev/null 2>&1 & echo $!");
        for output in both_ways(&command) {
            assert_eq!(output.code, Some(0));
            let leftover: u32 = String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse()
                .unwrap();
            assert!(gone(leftover), "the leftover sleep {leftover} lives");
        }
    }

    #[test]
    fn a_leftover_outside_the_group_holding_the_pipes_costs_the_grace_only() {
        // `setsid` puts the sleep out of the group's reach; it holds stdout open. (Its
        // stderr goes elsewhere, so that its pid is the whole of stdout.)
        let command = Command::shell("setsid sleep 120 2>/dev/null & echo $!");
        for output in both_ways(&command) {
            let leftover: u32 = String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse()
                .unwrap();
            let _ = rustix::process::kill_process(
                Pid::from_raw(leftover.cast_signed()).unwrap(),
                rustix::process::Signal::KILL,
            );
            assert_eq!(output.code, Some(0));
            // Far under the leftover's two minutes: the grace, and under valgrind the
            // seconds the keeper takes to fail to start.
            assert!(
                output.elapsed < Duration::from_secs(60),
                "waited for the leftover: {:?}",
                output.elapsed
            );
        }
    }

    #[test]
    fn a_stop_from_another_thread_kills_the_command_at_once() {
        for no_pidfd in [false, true] {
            let stop = Arc::new(Stop::new());
            let (tell, told) = mpsc::channel();
            let command = Command::shell("echo $$; exec sleep 600").on_line(move |_, line| {
                let _ = tell.send(String::from_utf8_lossy(line).into_owned());
            });
            let running = {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    NO_PIDFD.set(no_pidfd);
                    run(command, &stop)
                })
            };
            let pid: u32 = told.recv().unwrap().parse().unwrap();
            assert!(stop.stop(), "the first stop takes effect");
            assert!(!stop.stop(), "a second does not");
            let output = running.join().unwrap().unwrap();
            assert_eq!(output.signal, Some(9));
            assert!(stop.is_stopped());
            assert!(gone(pid));
            // Ended: a stop now does nothing.
            assert!(!Stop::stop(&stop));
        }
    }

    #[test]
    fn a_command_stopped_before_it_starts_never_runs() {
        let dir = std::env::temp_dir().join(format!("plait-polled-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("ran");
        let stop = Stop::new();
        assert!(stop.stop());
        let error = run(Command::new("touch").arg(marker.to_string_lossy()), &stop).unwrap_err();
        assert!(
            error.to_string().contains("stopped before it started"),
            "{error}"
        );
        assert!(!marker.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_program_that_does_not_exist_is_named() {
        // Valgrind runs the child of a `vfork` as a fork's, which cannot tell its parent
        // that its `exec` failed: it exits with 127 instead.
        if std::env::var_os("PLAIT_UNDER_MEMCHECK").is_some() {
            return;
        }
        let error = run(Command::new("plait-no-such-program"), &Stop::new()).unwrap_err();
        assert!(
            error.to_string().contains("plait-no-such-program"),
            "{error}"
        );
        let error = run(
            Command::new("true").cwd("/plait/no/such/folder"),
            &Stop::new(),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("/plait/no/such/folder"),
            "{error}"
        );
    }

    #[test]
    fn running_lists_commands_until_they_are_reaped_and_stops_them_all() {
        let running = Arc::new(Running::default());
        let (tell, told) = mpsc::channel();
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let running = Arc::clone(&running);
                let tell = tell.clone();
                std::thread::spawn(move || {
                    let stop = Arc::new(Stop::new());
                    let _listed = running.add(Arc::clone(&stop));
                    let command = Command::shell("echo up; exec sleep 600").on_line(move |_, _| {
                        let _ = tell.send(());
                    });
                    run(command, &stop)
                })
            })
            .collect();
        for _ in 0..3 {
            told.recv().unwrap();
        }
        assert!(!running.wait_none(Instant::now() + Duration::from_millis(20)));
        running.stop_all();
        assert!(running.wait_none(Instant::now() + Duration::from_secs(30)));
        for thread in threads {
            assert_eq!(thread.join().unwrap().unwrap().signal, Some(9));
        }
    }
}
