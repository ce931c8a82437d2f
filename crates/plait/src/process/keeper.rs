//! The keeper: a small process that outlives the program just long enough to kill what the
//! program started.
//!
//! Every process plait starts (a worker, a command) leads a process group of its own, and
//! plait kills that group when the process ends, when it is cancelled or timed out, and
//! when the runtime goes (see `child.rs`). All of that needs the program alive. If the
//! program dies outright (SIGKILL, the OOM killer), nothing in it runs, so the killing falls
//! to the keeper: a process forked from the program the first time it starts a group, which
//! holds one end of a socket whose other end only the program holds. The program tells it
//! each group as the group starts and ends. When the program dies, the kernel closes the
//! program's end; the keeper reads the end of the stream, kills every group still listed,
//! and exits.
//!
//! The keeper is forked without `exec`, so that it works in any program (whether or not it
//! calls `plait::init`, which commands do not need). After a fork only the forking thread
//! exists in the child, and whatever lock another thread held stays locked there, so the
//! keeper's code makes system calls only: it allocates nothing and takes no lock, and its
//! table of groups is memory allocated before the fork. It leads a process group of its
//! own and ignores the terminal's signals, so that Ctrl-C or a `kill` of the program's
//! group does not take it along.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{LazyLock, Mutex, PoisonError};

use rustix::net::SendFlags;
use rustix::process::Pid;

/// How many groups the keeper can hold at once (a table of `i32`s, 256 KiB).
const CAPACITY: usize = 1 << 16;

/// The keeper's end of the socket, once its other descriptors are closed.
const KEEPER_FD: RawFd = 3;

/// A group the keeper kills if the program dies; dropping it tells the keeper the group is
/// gone (drop it before the group's leader is reaped, while its id cannot name another
/// group).
#[must_use = "dropping it unwatches the group at once"]
#[derive(Debug)]
pub(crate) struct Watched {
    group: i32,
}

impl Drop for Watched {
    fn drop(&mut self) {
        KEEPER.forget(self.group);
    }
}

/// Starts the keeper if it is not running, so that a group started next can be watched at
/// once.
///
/// # Errors
///
/// If the keeper cannot be forked (the system is out of processes or memory).
pub(crate) fn ensure() -> io::Result<()> {
    KEEPER.ensure()
}

/// Has the keeper kill `group` if this program dies before the returned guard is dropped.
///
/// # Errors
///
/// If no keeper runs and none can be started.
pub(crate) fn watch(group: Pid) -> io::Result<Watched> {
    let group = group.as_raw_nonzero().get();
    KEEPER.watch(group)?;
    Ok(Watched { group })
}

static KEEPER: LazyLock<Keeper> = LazyLock::new(|| Keeper {
    state: Mutex::new(State {
        process: None,
        groups: HashSet::new(),
    }),
});

struct Keeper {
    state: Mutex<State>,
}

struct State {
    process: Option<Process>,
    /// The groups watched now: sent again to a keeper started in place of one that died.
    groups: HashSet<i32>,
}

struct Process {
    pid: u32,
    socket: UnixStream,
}

impl Keeper {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ensure(&self) -> io::Result<()> {
        let mut state = self.state();
        if state.process.is_none() {
            let process = start()?;
            state.process = Some(process);
        }
        Ok(())
    }

    fn watch(&self, group: i32) -> io::Result<()> {
        let mut state = self.state();
        state.groups.insert(group);
        let sent = match &state.process {
            Some(process) => send(process, &[group]),
            None => Err(io::ErrorKind::NotConnected.into()),
        };
        if sent.is_err() {
            // The keeper died (someone killed it): a new one, told every group.
            if let Err(error) = state.restart() {
                state.groups.remove(&group);
                return Err(error);
            }
        }
        Ok(())
    }

    fn forget(&self, group: i32) {
        let mut state = self.state();
        state.groups.remove(&group);
        let sent = state
            .process
            .as_ref()
            .map_or(Ok(()), |process| send(process, &[-group]));
        if sent.is_err() {
            // A keeper that cannot be told of the groups that end would kill their ids if
            // the program died later, when another group might have them: start afresh.
            if let Err(error) = state.restart() {
                tracing::warn!(%error, "plait's keeper process died and cannot be started again");
            }
        }
    }
}

impl State {
    /// Replaces a dead keeper with a new one that knows every watched group.
    fn restart(&mut self) -> io::Result<()> {
        if let Some(old) = self.process.take() {
            reap(old);
        }
        let process = start()?;
        let groups: Vec<i32> = self.groups.iter().copied().collect();
        send(&process, &groups)?;
        self.process = Some(process);
        Ok(())
    }
}

/// Ends and reaps a keeper that stopped listening.
fn reap(old: Process) {
    drop(old.socket);
    if let Some(pid) = Pid::from_raw(old.pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
    }
}

/// Tells the keeper of groups that start (positive ids) and end (negative ids).
fn send(process: &Process, records: &[i32]) -> io::Result<()> {
    let bytes: Vec<u8> = records
        .iter()
        .flat_map(|record| record.to_le_bytes())
        .collect();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        // Not a plain write: a keeper that died must be an error here, not a SIGPIPE.
        match rustix::net::send(&process.socket, rest, SendFlags::NOSIGNAL) {
            Ok(n) => rest = &rest[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Forks the keeper.
fn start() -> io::Result<Process> {
    let (ours, theirs) = UnixStream::pair()?;
    // The keeper's table, allocated here: the keeper may not allocate.
    let mut table = vec![0_i32; CAPACITY];
    let table_ptr = table.as_mut_ptr();
    let their_fd = theirs.as_raw_fd();
    // SAFETY: in the child, only `keep` runs, and it never returns: it makes system calls
    // on memory that existed before the fork (its stack and `table`), allocates nothing and
    // takes no lock, so no lock another thread held at the fork, and no allocator state,
    // is touched there. In the parent, `fork` is an ordinary call.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        // SAFETY: see above; `their_fd` is open, and `table_ptr` points to `CAPACITY` `i32`s
        // in the child's copy of this process's memory.
        0 => unsafe { keep(their_fd, table_ptr, CAPACITY) },
        pid => {
            drop(theirs);
            drop(table);
            Ok(Process {
                pid: pid as u32,
                socket: ours,
            })
        }
    }
}

/// The keeper's life: listen for groups until the program's end of the socket closes, then
/// kill every group still listed and exit.
///
/// # Safety
///
/// Call only in a child just forked: it closes every descriptor but `socket` and exits
/// the process. `table` must point to `capacity` writable `i32`s.
unsafe fn keep(socket: RawFd, table: *mut i32, capacity: usize) -> ! {
    // SAFETY: each call below is a system call (or glibc's thin wrapper of one) that is
    // async-signal-safe, on this process's own descriptors, signal actions and memory; the
    // caller vouches for `socket` and `table`.
    unsafe {
        // Out of the program's group and deaf to the terminal: a Ctrl-C, or a `kill` of
        // the program's group, must leave the keeper to do its work.
        libc::setpgid(0, 0);
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        for signal in 1..32 {
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
        action.sa_sigaction = libc::SIG_IGN;
        for signal in [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGTERM,
            libc::SIGPIPE,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
            libc::SIGUSR1,
            libc::SIGUSR2,
        ] {
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        // What `ps` and `/proc/PID/comm` show.
        libc::prctl(libc::PR_SET_NAME, c"plait-keeper".as_ptr());

        // Nothing of the program's stays open here: a pipe end held by the keeper would
        // keep its reader from ever seeing the end (a worker's input, a command's output).
        if socket != KEEPER_FD {
            libc::dup2(socket, KEEPER_FD);
        }
        let first = (KEEPER_FD + 1) as libc::c_uint;
        if libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) != 0 {
            let mut limit: libc::rlimit = std::mem::zeroed();
            let most = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur.min(1 << 20) as RawFd
            } else {
                1 << 16
            };
            for fd in KEEPER_FD + 1..most {
                libc::close(fd);
            }
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }

        let mut listed = 0_usize;
        let mut buf = [0_u8; 4096];
        let mut held = 0_usize;
        loop {
            let n = libc::read(
                KEEPER_FD,
                buf.as_mut_ptr().add(held).cast(),
                buf.len() - held,
            );
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            if n <= 0 {
                break; // the program is gone (or so broken that it is as good as gone)
            }
            held += n as usize;
            let whole = held / 4 * 4;
            for record in buf[..whole].chunks_exact(4) {
                let record = i32::from_le_bytes([record[0], record[1], record[2], record[3]]);
                if record > 0 {
                    if listed < capacity {
                        *table.add(listed) = record;
                        listed += 1;
                    }
                } else if record < 0 {
                    let group = record.wrapping_neg();
                    let mut i = 0;
                    while i < listed && *table.add(i) != group {
                        i += 1;
                    }
                    if i < listed {
                        listed -= 1;
                        *table.add(i) = *table.add(listed);
                    }
                }
            }
            buf.copy_within(whole..held, 0);
            held -= whole;
        }
        for i in 0..listed {
            libc::kill(-*table.add(i), libc::SIGKILL);
        }
        libc::_exit(0)
    }
}
