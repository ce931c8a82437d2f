//! A process plait started: the leader of a process group of its own, watched by the
//! keeper, and reaped by plait itself whatever becomes of the runtime.
//!
//! Three rules make "nothing outlives plait" hold:
//!
//! * **The group goes with its leader.** When the leader ends, whatever it left running in
//!   its group is killed before the leader is reaped: while the leader is a zombie its id
//!   still names its group and no other, so the kill cannot reach a stranger.
//! * **Plait reaps its own children**, through a pidfd (or, on a kernel without pidfds, a
//!   thread that waits): no child is left to a runtime's orphan queue that may never run
//!   again. Dropping a [`Child`] kills its group and reaps it before returning (a process
//!   that takes longer than [`REAP`] to die is left to a thread that reaps it then).
//! * **The keeper** (see `keeper.rs`) kills the group if the program dies outright.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, WaitIdStatus};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::oneshot;

use super::keeper::{self, Watched};

/// How long dropping a child waits for it to die before leaving it to a reaper thread.
const REAP: Duration = Duration::from_secs(2);

/// A running (or ended, not yet waited for) process that leads its own group.
pub(crate) struct Child {
    pid: Pid,
    ended: Ended,
    watched: Option<Watched>,
    status: Option<ExitStatus>,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) stdout: Option<ChildStdout>,
    pub(crate) stderr: Option<ChildStderr>,
}

/// How a wait learns that the process ended.
enum Ended {
    /// Readable once it has ended.
    PidFd(AsyncFd<OwnedFd>),
    /// Told by a thread blocked in `waitid` (no pidfds here).
    Thread(Option<oneshot::Receiver<()>>),
    /// For a thread that polls: readable once it has ended, or `None` where there are no
    /// pidfds (the thread then looks with [`Child::has_ended`] from time to time).
    Polled(Option<OwnedFd>),
}

/// The pipes of a child started by [`Child::spawn_polled`], as blocking files.
pub(crate) struct Pipes {
    pub(crate) stdin: Option<std::process::ChildStdin>,
    pub(crate) stdout: Option<std::process::ChildStdout>,
    pub(crate) stderr: Option<std::process::ChildStderr>,
}

impl Child {
    /// Starts `command` as the leader of a new process group, watched by the keeper. Must
    /// run inside a tokio runtime, which its pipes and its wait then use.
    ///
    /// # Errors
    ///
    /// If the process cannot start.
    pub(crate) fn spawn(command: &mut std::process::Command) -> io::Result<Child> {
        let (mut child, mut started) = Child::start(command)?;
        // From here on, an error drops `child`, which kills and reaps the process.
        child.ended = Ended::watch(child.pid)?;
        child.stdin = started.stdin.take().map(ChildStdin::from_std).transpose()?;
        child.stdout = started
            .stdout
            .take()
            .map(ChildStdout::from_std)
            .transpose()?;
        child.stderr = started
            .stderr
            .take()
            .map(ChildStderr::from_std)
            .transpose()?;
        Ok(child)
    }

    /// Starts `command` as [`spawn`](Child::spawn) does, for a thread that polls its pipes
    /// and its end ([`pidfd`](Child::pidfd)) itself, outside any runtime.
    ///
    /// # Errors
    ///
    /// If the process cannot start.
    pub(crate) fn spawn_polled(command: &mut std::process::Command) -> io::Result<(Child, Pipes)> {
        let (mut child, started) = Child::start(command)?;
        child.ended =
            Ended::Polled(rustix::process::pidfd_open(child.pid, PidfdFlags::empty()).ok());
        let pipes = Pipes {
            stdin: started.stdin,
            stdout: started.stdout,
            stderr: started.stderr,
        };
        Ok((child, pipes))
    }

    /// Starts `command` in a process group of its own, watched by the keeper from its first
    /// instruction (see `keeper`: its launch is known before its id).
    fn start(command: &mut std::process::Command) -> io::Result<(Child, std::process::Child)> {
        keeper::ensure();
        let launch = keeper::launch();
        command
            .process_group(0)
            .env(keeper::LAUNCH_ENV, launch.mark());
        let started = command.spawn()?;
        keeper::pause_before_watch();
        let pid = Pid::from_child(&started);
        let child = Child {
            pid,
            ended: Ended::Thread(None),
            watched: Some(launch.started(pid)),
            status: None,
            stdin: None,
            stdout: None,
            stderr: None,
        };
        Ok((child, started))
    }

    /// The process's id; it names this process (and its group) until it is reaped.
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// What turns readable when a child of [`spawn_polled`](Child::spawn_polled) ends;
    /// `None` where the kernel has no pidfds.
    pub(crate) fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        match &self.ended {
            Ended::Polled(fd) => fd.as_ref().map(AsFd::as_fd),
            _ => None,
        }
    }

    /// Makes a polled child's end be looked for as on a kernel without pidfds.
    #[cfg(test)]
    pub(super) fn forget_pidfd(&mut self) {
        self.ended = Ended::Polled(None);
    }

    /// Whether the process has ended; it is left to be reaped.
    ///
    /// # Errors
    ///
    /// If it cannot be waited for.
    pub(crate) fn has_ended(&self) -> io::Result<bool> {
        if self.status.is_some() {
            return Ok(true);
        }
        has_ended(self.pid)
    }

    /// Waits on this thread for the process to end, kills what it left in its group, and
    /// reaps it.
    ///
    /// # Errors
    ///
    /// If it cannot be waited for.
    pub(crate) fn wait_blocking(&mut self) -> io::Result<ExitStatus> {
        match self.status {
            Some(status) => Ok(status),
            None => self.reap(),
        }
    }

    /// Kills the process and its group at once (unless it has been waited for).
    pub(crate) fn kill(&self) {
        if self.status.is_none() {
            kill_group(self.pid);
        }
    }

    /// Waits for the process to end, kills what it left in its group, and reaps it.
    ///
    /// # Errors
    ///
    /// If the wait itself fails (the runtime it was started in is gone, say).
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        match &mut self.ended {
            Ended::PidFd(fd) => loop {
                let mut ready = fd.readable().await?;
                if has_ended(self.pid)? {
                    break;
                }
                ready.clear_ready();
            },
            Ended::Polled(_) => {
                return Err(io::Error::other(
                    "a child started to be polled is not awaited",
                ));
            }
            Ended::Thread(told) => {
                // Awaited in place, so that a wait dropped half way leaves it to the next.
                if let Some(told) = told.as_mut() {
                    let _ = told.await;
                }
                *told = None;
            }
        }
        self.reap()
    }

    /// Kills the leftovers of an ended leader's group, unwatches it, and reaps the leader.
    fn reap(&mut self) -> io::Result<ExitStatus> {
        // The leader is a zombie: its id still names its group, and only its group.
        let _ = rustix::process::kill_process_group(self.pid, Signal::KILL);
        drop(self.watched.take());
        let status = rustix::process::waitid(WaitId::Pid(self.pid), WaitIdOptions::EXITED)?
            .map_or_else(|| ExitStatus::from_raw(0), exit_status);
        self.status = Some(status);
        Ok(status)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        kill_group(self.pid);
        let deadline = Instant::now() + REAP;
        let mut pause = Duration::from_micros(50);
        loop {
            match has_ended(self.pid) {
                Ok(true) => {
                    let _ = self.reap();
                    return;
                }
                Ok(false) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                // Stuck (in an uninterruptible wait, say): reaped when it does end.
                Ok(false) => break,
                Err(_) => return, // not our child any more: nothing to reap
            }
        }
        let pid = self.pid;
        let watched = self.watched.take();
        let reaper = std::thread::Builder::new()
            .name("plait-reaper".to_owned())
            .spawn(move || {
                let _ = rustix::process::waitid(
                    WaitId::Pid(pid),
                    WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
                );
                let _ = rustix::process::kill_process_group(pid, Signal::KILL);
                drop(watched);
                let _ = rustix::process::waitid(WaitId::Pid(pid), WaitIdOptions::EXITED);
            });
        if let Err(error) = reaper {
            tracing::warn!(%error, pid = pid.as_raw_nonzero().get(), "cannot start a thread to reap a process that will not die");
        }
    }
}

impl Ended {
    fn watch(pid: Pid) -> io::Result<Ended> {
        match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
            Ok(fd) => {
                // SAFETY: an `OwnedFd` keeps its descriptor open, and the same, for as long
                // as the `AsyncFd` owns it.
                let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? };
                Ok(Ended::PidFd(fd))
            }
            // An old kernel, or a sandbox that refuses pidfds: a thread waits instead.
            Err(_) => Ended::thread(pid),
        }
    }

    /// A thread blocked in `waitid` until `pid` ends, which it leaves to be reaped.
    fn thread(pid: Pid) -> io::Result<Ended> {
        let (tell, told) = oneshot::channel();
        std::thread::Builder::new()
            .name("plait-wait".to_owned())
            .spawn(move || {
                let _ = rustix::process::waitid(
                    WaitId::Pid(pid),
                    WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
                );
                let _ = tell.send(());
            })?;
        Ok(Ended::Thread(Some(told)))
    }
}

/// Kills `pid`'s group, and `pid` itself in case it left the group. Only for a process
/// not yet reaped, whose id cannot name anyone else.
pub(super) fn kill_group(pid: Pid) {
    let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    let _ = rustix::process::kill_process(pid, Signal::KILL);
}

/// Whether the (unreaped) child `pid` has ended; leaves it to be reaped.
fn has_ended(pid: Pid) -> io::Result<bool> {
    let status = rustix::process::waitid(
        WaitId::Pid(pid),
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
    )?;
    // Linux reports "nothing yet" as a status whose pid is zero; rustix as `None`.
    Ok(status.is_some_and(|status| status.exited() || status.killed() || status.dumped()))
}

/// The `ExitStatus` that `waitpid` would have given.
fn exit_status(status: WaitIdStatus) -> ExitStatus {
    if let Some(code) = status.exit_status() {
        ExitStatus::from_raw((code & 0xff) << 8)
    } else if let Some(signal) = status.terminating_signal() {
        ExitStatus::from_raw(signal | if status.dumped() { 0x80 } else { 0 })
    } else {
        ExitStatus::from_raw(0)
    }
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;

    use tokio::io::AsyncReadExt;

    use super::*;

    /// Whether `pid` has ended: gone, or a zombie for its (new) parent to reap.
    fn ended(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
        })
    }

    /// Runs `sh -c 'sleep 600 >/dev/null & echo $!; exit 3'`, waited for by a thread if
    /// `thread` (else through a pidfd), and returns the exit code and the leftover's pid.
    async fn run_and_leave_a_sleeper(thread: bool) -> (Option<i32>, u32) {
        let mut command = std::process::Command::new("sh");
        command
            .args(["-c", "sleep 600 >/dev/null & echo $!; exit 3"])
            .stdout(Stdio::piped());
        let mut child = Child::spawn(&mut command).unwrap();
        if thread {
            // As on a kernel without pidfds.
            child.ended = Ended::thread(child.pid).unwrap();
        }
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        let status = child.wait().await.unwrap();
        (status.code(), out.trim().parse().unwrap())
    }

    #[test]
    fn a_child_is_reaped_and_its_leftovers_killed_with_a_pidfd_or_a_waiting_thread() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for thread in [false, true] {
            let (code, sleeper) = rt.block_on(run_and_leave_a_sleeper(thread));
            assert_eq!(code, Some(3));
            // Killed before its leader was reaped; nothing signals its end to us: look.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !ended(sleeper) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            assert!(
                ended(sleeper),
                "the leftover sleep {sleeper} lives (thread: {thread})"
            );
        }
    }

    #[test]
    fn a_dropped_child_is_killed_and_reaped_before_drop_returns() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pid = rt.block_on(async {
            let child = Child::spawn(std::process::Command::new("sleep").arg("600")).unwrap();
            let pid = child.pid.as_raw_nonzero().get() as u32;
            drop(child);
            pid
        });
        // Reaped: not even a zombie is left.
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{pid} is still there"
        );
    }
}
