//! Waking on the database's changes, from any process. Every store rings a **bell** after
//! each commit: it writes one byte to a small file beside the database, and inotify
//! reports the write to a listening thread, which counts the rings. A waiter reads the
//! count before it looks, and waits for the count to move, so a commit between its look
//! and its wait still wakes it.
//!
//! Why a bell rather than the log's own writes: SQLite writes a transaction's pages to the
//! log before the commit becomes visible to readers, so a reader woken by the log's write
//! can still read the state from before the commit, and then sleep through it. The bell
//! rings only after the commit returned.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify;
use rustix::io::Errno;

/// How long a wait without inotify (its limits reached) sleeps between looks.
const WITHOUT_INOTIFY: Duration = Duration::from_millis(20);

/// The bell's file, for the database at `database`.
pub(super) fn bell_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-bell");
    PathBuf::from(name)
}

/// Rings after each commit of one store handle.
pub(super) struct Bell(Option<File>);

impl Bell {
    /// Opens (or makes) the bell of the database at `database`. Without it (a read-only
    /// folder, say), waiters still see changes at their periodic look.
    pub(super) fn open(database: &Path) -> Bell {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(bell_path(database))
            .ok();
        Bell(file)
    }

    /// Rings: wakes every waiter on the database. Best effort: a waiter that misses it
    /// sees the change at its next periodic look.
    pub(super) fn ring(&self) {
        if let Some(file) = &self.0 {
            // One byte, always at offset 0: the file never grows, so a full disk cannot
            // refuse it.
            let _ = file.write_at(&[1], 0);
        }
    }
}

/// Hears one database's bell for every waiter of a store: one inotify watch and one thread,
/// made on the first wait, rather than a watch per wait (closing an inotify instance waits
/// for a kernel grace period: milliseconds, which a watch per wait paid per task).
pub(super) struct Listener {
    heard: Arc<Heard>,
    /// Whether a thread listens (without one, waiters sleep briefly between looks).
    listening: bool,
}

struct Heard {
    /// How often the bell has rung since the listener started.
    rings: Mutex<u64>,
    rang: Condvar,
}

impl Listener {
    /// Starts listening to the bell of the database at `database`. Without inotify (the
    /// process's or the user's watch limit reached), waits become short sleeps.
    pub(super) fn start(database: &Path) -> Listener {
        let name = bell_path(database)
            .file_name()
            .unwrap_or_default()
            .to_owned();
        let folder = match database.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)
            .ok()
            .filter(|fd| {
                inotify::add_watch(
                    fd,
                    folder,
                    inotify::WatchFlags::MODIFY
                        | inotify::WatchFlags::CREATE
                        | inotify::WatchFlags::MOVED_TO,
                )
                .is_ok()
            });
        let heard = Arc::new(Heard {
            rings: Mutex::new(0),
            rang: Condvar::new(),
        });
        let listening = fd.is_some_and(|fd| {
            let listener = Arc::clone(&heard);
            std::thread::Builder::new()
                .name("plait-queue-bell".to_owned())
                .spawn(move || listen(&fd, &name, &listener))
                .is_ok()
        });
        Listener { heard, listening }
    }

    /// How often the bell has rung: read it before a look, and wait for it to move.
    pub(super) fn rings(&self) -> u64 {
        *self
            .heard
            .rings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the bell has rung more than `seen` times, or `timeout` passes; returns
    /// whether it rang.
    pub(super) fn wait(&self, seen: u64, timeout: Duration) -> bool {
        if !self.listening {
            std::thread::sleep(timeout.min(WITHOUT_INOTIFY));
            return true;
        }
        let rings = self
            .heard
            .rings
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (rings, _) = self
            .heard
            .rang
            .wait_timeout_while(rings, timeout, |rings| *rings == seen)
            .unwrap_or_else(PoisonError::into_inner);
        *rings != seen
    }
}

/// The listening thread: counts the bell's rings until no listener holds it.
fn listen(fd: &OwnedFd, name: &OsString, heard: &Arc<Heard>) {
    // Looks at least this often whether the store (and so its listener) is gone.
    let limit = Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    loop {
        if Arc::strong_count(heard) == 1 {
            return;
        }
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&limit)) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => std::thread::sleep(WITHOUT_INOTIFY),
        }
        if rang(fd, name) {
            *heard.rings.lock().unwrap_or_else(PoisonError::into_inner) += 1;
            heard.rang.notify_all();
        }
    }
}

/// Reads every pending event; whether one was the bell's.
fn rang(fd: &OwnedFd, name: &OsString) -> bool {
    let mut buffer = [MaybeUninit::uninit(); 4096];
    let mut reader = inotify::Reader::new(fd, &mut buffer);
    let mut ours = false;
    loop {
        match reader.next() {
            Ok(event) => {
                let about_us = event
                    .file_name()
                    .is_none_or(|file| file.to_bytes() == name.as_bytes());
                // An overflowed queue lost events: count it as ours.
                ours |= about_us || event.events().contains(inotify::ReadFlags::QUEUE_OVERFLOW);
            }
            Err(Errno::WOULDBLOCK | Errno::INTR) => return ours,
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bell_wakes_a_waiter_and_other_writes_do_not() {
        let folder = std::env::temp_dir().join(format!("plait-watch-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        let database = folder.join("queue.db");
        let bell = Bell::open(&database);
        let listener = Listener::start(&database);
        let seen = listener.rings();
        assert!(
            !listener.wait(seen, Duration::from_millis(20)),
            "nothing rang"
        );
        std::fs::write(folder.join("queue.db-wal"), b"x").unwrap();
        assert!(
            !listener.wait(seen, Duration::from_millis(20)),
            "the log's writes are not the bell"
        );
        bell.ring();
        assert!(
            listener.wait(seen, Duration::from_secs(5)),
            "the bell wakes it"
        );
        let seen = listener.rings();
        assert!(
            !listener.wait(seen, Duration::from_millis(20)),
            "one ring wakes once"
        );
        std::fs::remove_dir_all(&folder).unwrap();
    }
}
