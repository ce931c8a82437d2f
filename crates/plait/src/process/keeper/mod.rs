//! The keeper: a small process that outlives the program just long enough to kill what the
//! program started.
//!
//! Every process plait starts (a worker, a command) leads a process group of its own, and
//! plait kills that group when the process ends, when it is cancelled or timed out, and
//! when the runtime goes (see `child.rs`). All of that needs the program alive. If the
//! program dies outright (SIGKILL, the OOM killer), nothing in it runs, so the killing falls
//! to the keeper: a process started the first time the program starts a group, whose input
//! is a socket whose other end the program holds. The program tells it each group as the
//! group starts and ends. When the program dies, the kernel closes the program's end; the
//! keeper reads the end of the stream, kills every group still listed, and exits.
//!
//! Most of the telling wakes nobody: a group is written into a row of a table, a small
//! file in memory that the keeper holds as its standard output and reads only at the end,
//! and its row is cleared when it ends. (A message on the socket for each start and each
//! end woke the keeper twice for every command, which a machine busy with short commands
//! felt.) The socket carries what the table cannot hold: more groups at once than it has
//! rows, or everything once a write to the table has failed.
//!
//! The keeper is this program's own executable, run afresh (`/proc/self/exe`, started the
//! way `std` starts any program, without copying the program's memory), and caught by a
//! constructor before `main` ([`become_keeper`]): so it works in any program, whether or
//! not it calls `plait::init` (commands do not need it), and holds none of the program's
//! memory. It leads a process group of its own and ignores the terminal's signals, so that
//! Ctrl-C, or a `kill` of the program's group, leaves it to do its work. It says hello on
//! the socket first: a copy that does not (a constructor the linker dropped, if one ever
//! did) is killed at once, and the program goes on without a keeper, saying so.
//!
//! A process's group id is known only once it has started, so its row is taken before:
//! it holds the launch's number, negated, until the id is written over it; and the process
//! carries this program's token and that number in its environment ([`LAUNCH_ENV`]) from
//! its first instruction. A program killed between the two leaves a row that names no
//! group, and the keeper looks for the process by its environment instead (`hunt`).
//!
//! If no keeper can be started, processes still start: only the guarantee for a program
//! killed outright is lost, and a warning says so.

mod hunt;
mod keep;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::net::SendFlags;
use rustix::process::{Pid, Signal, WaitOptions};

/// Set in the keeper's environment, to this program's token: that copy of the program
/// keeps instead of running.
const KEEPER_ENV: &str = "PLAIT_KEEPER";

/// Set in the environment of every process the program starts: `TOKEN-NUMBER`, this
/// program's token and the launch's number.
pub(crate) const LAUNCH_ENV: &str = "PLAIT_LAUNCH";

/// What the keeper says first, on its input socket.
const HELLO: u8 = b'K';

/// How long a starting keeper has to say hello.
const HELLO_WITHIN: Duration = Duration::from_secs(5);

/// After a keeper failed to start, how long before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Rows in the table of groups: one 4-byte group id each (0: free).
const ROWS: u32 = 4096;

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
        KEEPER.state().forget(self.group);
    }
}

/// Starts the keeper if none runs (and none failed to start a moment ago), so that a group
/// started next is watched from its first moment.
pub(crate) fn ensure() {
    let mut state = KEEPER.state();
    if state.process.as_ref().is_none_or(Process::has_ended) {
        state.restart();
    }
}

/// A process about to start: its row of the table is taken (holding the launch's number,
/// negated) before the process exists, and [`Launch::started`] writes its group over it.
/// Dropped unstarted (the process could not start), it gives the row back.
#[must_use = "a launch is watched only once `started`"]
#[derive(Debug)]
pub(crate) struct Launch {
    number: i32,
    row: Option<u32>,
}

/// Takes a row for a process about to start. Starts the keeper if none runs; if none can
/// start, or the table is full, the process's group is only noted once it has started (a
/// new keeper, started later, is told of it).
pub(crate) fn launch() -> Launch {
    static LAUNCHES: AtomicU32 = AtomicU32::new(0);
    // From 1 to i32::MAX, then again: rows in flight at once are far fewer.
    let number = (LAUNCHES.fetch_add(1, Ordering::Relaxed) % i32::MAX as u32) as i32 + 1;
    let row = KEEPER
        .state()
        .table
        .as_mut()
        .and_then(|table| table.take_row(-number));
    Launch { number, row }
}

impl Launch {
    /// The value of [`LAUNCH_ENV`] for the process: how the keeper knows it if the program
    /// dies before [`started`](Launch::started).
    pub(crate) fn mark(&self) -> String {
        format!("{}-{}", token(), self.number)
    }

    /// Has the keeper kill `group` (the started process's) if this program dies before
    /// the returned guard is dropped.
    pub(crate) fn started(mut self, group: Pid) -> Watched {
        let group = group.as_raw_nonzero().get();
        KEEPER.state().watch(group, self.row.take());
        Watched { group }
    }
}

impl Drop for Launch {
    fn drop(&mut self) {
        if let Some(row) = self.row.take() {
            KEEPER.state().release(row);
        }
    }
}

/// This program's token: its id and the time it first asked, unique among the programs on
/// the machine.
fn token() -> &'static str {
    static TOKEN: LazyLock<String> = LazyLock::new(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        format!("{:x}.{nanos:x}", std::process::id())
    });
    &TOKEN
}

/// In builds with debug assertions, waits `PLAIT_DEBUG_PAUSE_BEFORE_WATCH_MS` milliseconds
/// (if set) between a process's start and its watching: so that a test can kill the program
/// in that window, which is otherwise microseconds wide.
pub(crate) fn pause_before_watch() {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("PLAIT_DEBUG_PAUSE_BEFORE_WATCH_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

static KEEPER: LazyLock<Keeper> = LazyLock::new(|| Keeper {
    state: Mutex::new(State {
        process: None,
        table: Table::create().ok(),
        groups: HashMap::new(),
        failed_at: None,
    }),
});

struct Keeper {
    state: Mutex<State>,
}

impl Keeper {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct State {
    process: Option<Process>,
    /// Where the keeper finds the groups at the end, without being woken for each.
    table: Option<Table>,
    /// The groups watched now, and how the keeper knows of each: a keeper started in
    /// place of one that died is handed the table and told the rest again.
    groups: HashMap<i32, Known>,
    /// When a keeper last failed to start.
    failed_at: Option<Instant>,
}

struct Process {
    pid: Pid,
    socket: UnixStream,
}

/// How the keeper knows of a group.
#[derive(Clone, Copy, Debug)]
enum Known {
    /// In this row of the table.
    Row(u32),
    /// Told on the socket.
    Told,
}

impl State {
    /// Watches `group`, in `row` if its launch took one.
    fn watch(&mut self, group: i32, row: Option<u32>) {
        let row = self.table.as_mut().and_then(|table| match row {
            Some(row) => table.fill_row(row, group),
            None => table.take_row(group),
        });
        if let Some(row) = row {
            self.groups.insert(group, Known::Row(row));
            if self.process.is_none() {
                self.restart();
            }
            return;
        }
        // No row: the table is full (the socket takes the overflow) or a write to it
        // failed (then the socket takes everything, from a new keeper).
        if self.table.as_ref().is_some_and(|table| table.broken) {
            self.drop_table();
        }
        self.groups.insert(group, Known::Told);
        let sent = match &self.process {
            Some(process) => process.send(&[group]).is_ok(),
            None => false,
        };
        if !sent {
            // None yet, or it died (someone killed it): a new one, told every group.
            self.restart();
        }
    }

    fn forget(&mut self, group: i32) {
        let sent = match self.groups.remove(&group) {
            None => true,
            // A keeper that died is replaced when a group ends, as it was when an end was
            // a message it could not take.
            Some(Known::Row(row)) => {
                self.table
                    .as_mut()
                    .is_some_and(|table| table.free_row(row).is_ok())
                    && self
                        .process
                        .as_ref()
                        .is_none_or(|process| !process.has_ended())
            }
            Some(Known::Told) => self
                .process
                .as_ref()
                .is_none_or(|process| process.send(&[-group]).is_ok()),
        };
        if !sent {
            // A keeper that cannot be told of the groups that end would kill their ids if
            // the program died later, when another group might have them: start afresh
            // (without the table, if it was the table that failed).
            if self.table.as_ref().is_some_and(|table| table.broken) {
                self.drop_table();
            }
            self.restart();
        }
    }

    /// Gives back the row of a launch that did not start a process. (A row that cannot be
    /// cleared breaks the table, which the next watch gives up.)
    fn release(&mut self, row: u32) {
        if let Some(table) = &mut self.table {
            let _ = table.free_row(row);
        }
    }

    /// Gives up the table: its groups are told on the socket from now on (by the restart
    /// that must follow: the running keeper still reads the table at its end).
    fn drop_table(&mut self) {
        self.table = None;
        for known in self.groups.values_mut() {
            *known = Known::Told;
        }
        if let Some(old) = self.process.take() {
            old.end();
        }
    }

    /// Replaces a dead (or missing) keeper with a new one that knows every watched group.
    fn restart(&mut self) {
        if let Some(old) = self.process.take() {
            old.end();
        }
        if self.failed_at.is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return;
        }
        let told: Vec<i32> = self
            .groups
            .iter()
            .filter(|(_, known)| matches!(known, Known::Told))
            .map(|(&group, _)| group)
            .collect();
        let table = self.table.as_ref().map(|table| &table.file);
        let started = Process::start(table).and_then(|process| match process.send(&told) {
            Ok(()) => Ok(process),
            Err(error) => {
                process.end();
                Err(error)
            }
        });
        match started {
            Ok(process) => {
                self.process = Some(process);
                self.failed_at = None;
            }
            Err(error) => {
                self.failed_at = Some(Instant::now());
                tracing::warn!(
                    %error,
                    "plait cannot start its keeper process: what plait starts will not be \
                     killed if this program is killed outright (SIGKILL)"
                );
            }
        }
    }
}

impl Process {
    /// Starts the keeper, holding `table` as its standard output, and waits for its hello.
    fn start(table: Option<&File>) -> io::Result<Process> {
        let (ours, theirs) = UnixStream::pair()?;
        let table = match table {
            Some(file) => Stdio::from(file.try_clone()?),
            None => Stdio::null(),
        };
        let mut command = std::process::Command::new("/proc/self/exe");
        command
            .arg0("plait-keeper")
            .env(KEEPER_ENV, token())
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(table)
            .stderr(Stdio::null())
            .process_group(0);
        let child = command.spawn()?;
        let process = Process {
            pid: Pid::from_child(&child),
            socket: ours,
        };
        // Not waited for through `std`: `end` reaps it, or nobody while the program lives.
        drop(child);
        if let Err(error) = process.hello() {
            process.end();
            return Err(error);
        }
        Ok(process)
    }

    fn hello(&self) -> io::Result<()> {
        self.socket.set_read_timeout(Some(HELLO_WITHIN))?;
        let mut byte = [0_u8];
        let said = (&self.socket).read_exact(&mut byte);
        self.socket.set_read_timeout(None)?;
        match said {
            Ok(()) if byte[0] == HELLO => Ok(()),
            Ok(()) => Err(io::Error::other("the keeper answered with something else")),
            Err(error) => Err(io::Error::new(
                error.kind(),
                format!("the keeper did not say hello within {HELLO_WITHIN:?}: {error}"),
            )),
        }
    }

    /// Whether the keeper has died (killed by someone: it never exits while the program
    /// lives). Leaves it to be reaped by `end`.
    fn has_ended(&self) -> bool {
        use rustix::process::{WaitId, WaitIdOptions};
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        rustix::process::waitid(WaitId::Pid(self.pid), options)
            .map_or(true, |status| status.is_some())
    }

    /// Tells the keeper of groups that start (positive ids) and end (negative ids).
    fn send(&self, records: &[i32]) -> io::Result<()> {
        let bytes: Vec<u8> = records
            .iter()
            .flat_map(|record| record.to_le_bytes())
            .collect();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            // Not a plain write: a keeper that died must be an error here, not a SIGPIPE.
            match rustix::net::send(self.socket.as_fd(), rest, SendFlags::NOSIGNAL) {
                Ok(n) => rest = &rest[n..],
                Err(rustix::io::Errno::INTR) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// Ends a keeper that is not to be trusted with the groups any more: killed and reaped
    /// before its socket closes, so that it cannot take the end of its input for the
    /// program's death and kill every group.
    fn end(self) {
        let _ = rustix::process::kill_process(self.pid, Signal::KILL);
        let _ = rustix::process::waitpid(Some(self.pid), WaitOptions::empty());
        drop(self.socket);
    }
}

/// The table of groups: a file in memory, written in place (`pwrite`: no wake-up for the
/// keeper), read by the keeper once the program is gone.
struct Table {
    file: File,
    /// Rows given back, to be used again.
    free: Vec<u32>,
    /// Rows never used yet start here.
    unused: u32,
    /// A write failed: its rows cannot be trusted.
    broken: bool,
}

impl Table {
    fn create() -> io::Result<Table> {
        let fd = rustix::fs::memfd_create(c"plait-keeper-groups", rustix::fs::MemfdFlags::CLOEXEC)?;
        let file = File::from(fd);
        // Written whole now, so that writing a row later needs no new memory.
        file.write_all_at(&vec![0; ROWS as usize * 4], 0)?;
        Ok(Table {
            file,
            free: Vec::new(),
            unused: 0,
            broken: false,
        })
    }

    /// Writes `group` (or a launch's number, negated) into a free row; `None` if none is
    /// free or the write failed.
    fn take_row(&mut self, group: i32) -> Option<u32> {
        if self.broken {
            return None;
        }
        let row = self.free.pop().or_else(|| {
            (self.unused < ROWS).then(|| {
                self.unused += 1;
                self.unused - 1
            })
        })?;
        self.fill_row(row, group)
    }

    /// Writes `group` into `row`, taken before; `None` if the write failed.
    fn fill_row(&mut self, row: u32, group: i32) -> Option<u32> {
        if self.broken {
            return None;
        }
        match self.write(row, group) {
            Ok(()) => Some(row),
            Err(_) => {
                self.broken = true;
                None
            }
        }
    }

    fn free_row(&mut self, row: u32) -> io::Result<()> {
        self.write(row, 0).inspect_err(|_| self.broken = true)?;
        self.free.push(row);
        Ok(())
    }

    fn write(&self, row: u32, group: i32) -> io::Result<()> {
        self.file
            .write_all_at(&group.to_le_bytes(), u64::from(row) * 4)
    }
}

/// Runs before `main` in every program that links plait: in a copy started as a keeper,
/// keeps (and never returns); anywhere else, returns at once.
extern "C" fn become_keeper() {
    if let Some(token) = std::env::var_os(KEEPER_ENV) {
        keep::keep(token.as_encoded_bytes());
    }
}

// Before `main` (as `inventory`, which registers tasks, does): a keeper must not run the
// program. It stays in this file, beside what every process start calls, so that the
// linker, taking this object for those, takes the constructor with it.
#[used]
#[unsafe(link_section = ".init_array")]
static BECOME_KEEPER: extern "C" fn() = become_keeper;

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(table: &Table) -> Vec<i32> {
        let mut bytes = vec![0; ROWS as usize * 4];
        table.file.read_exact_at(&mut bytes, 0).unwrap();
        bytes
            .chunks_exact(4)
            .map(|row| i32::from_le_bytes([row[0], row[1], row[2], row[3]]))
            .collect()
    }

    #[test]
    fn a_group_is_in_the_table_until_it_is_forgotten_and_its_row_is_used_again() {
        let mut table = Table::create().unwrap();
        let a = table.take_row(101).unwrap();
        let b = table.take_row(202).unwrap();
        assert_eq!(&rows(&table)[..2], [101, 202]);
        table.free_row(a).unwrap();
        assert_eq!(&rows(&table)[..2], [0, 202]);
        assert_eq!(table.take_row(303), Some(a));
        assert_eq!(&rows(&table)[..2], [303, 202]);
        assert_ne!(a, b);
    }

    #[test]
    fn a_launch_holds_its_row_with_its_number_until_its_group_is_known() {
        let read = |row: u32| {
            let state = KEEPER.state();
            let mut bytes = [0; 4];
            let table = state.table.as_ref().expect("a table");
            table
                .file
                .read_exact_at(&mut bytes, u64::from(row) * 4)
                .unwrap();
            i32::from_le_bytes(bytes)
        };
        let started = launch();
        let (row, number) = (started.row.expect("a row"), started.number);
        assert_eq!(read(row), -number);
        assert_eq!(started.mark(), format!("{}-{number}", token()));
        // A group id above any pid the kernel gives.
        let watched = started.started(Pid::from_raw(2_000_000_000).unwrap());
        assert_eq!(read(row), 2_000_000_000);
        drop(watched);
        assert_eq!(read(row), 0);

        let unstarted = launch();
        let row = unstarted.row.expect("a row");
        assert!(unstarted.number != number);
        drop(unstarted);
        assert_eq!(read(row), 0, "given back");
    }

    #[test]
    fn a_full_table_takes_no_row_until_one_is_freed() {
        let mut table = Table::create().unwrap();
        for group in 1..=ROWS as i32 {
            assert!(table.take_row(group).is_some());
        }
        assert_eq!(table.take_row(ROWS as i32 + 1), None);
        assert!(!table.broken, "full is not broken");
        table.free_row(7).unwrap();
        assert_eq!(table.take_row(ROWS as i32 + 1), Some(7));
    }
}
