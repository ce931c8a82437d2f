//! Waking on the database's changes, from any process. Every store rings a **bell** after
//! each commit: it writes one byte to a small file beside the database, and inotify
//! reports the write to every watcher. A waiter makes its watch before it looks, so a
//! commit between its look and its wait still wakes it.
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
use std::time::{Duration, Instant};

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

/// A watch on one database's bell.
pub(super) struct Watch {
    fd: Option<OwnedFd>,
    /// The bell's file name.
    name: OsString,
}

impl Watch {
    /// Watches the folder that holds `database` for writes to its files. Without inotify
    /// (the process's or the user's watch limit reached), waits become short sleeps.
    pub(super) fn new(database: &Path) -> Watch {
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
        Watch { fd, name }
    }

    /// Waits until the bell rings, or `timeout` passes; returns whether it rang. Rings
    /// since the watch was made count.
    pub(super) fn wait(&self, timeout: Duration) -> bool {
        let Some(fd) = &self.fd else {
            std::thread::sleep(timeout.min(WITHOUT_INOTIFY));
            return true;
        };
        let deadline = Instant::now() + timeout;
        loop {
            if self.drain(fd) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let limit = Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            });
            let mut fds = [PollFd::new(fd, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&limit)) {
                Ok(_) | Err(Errno::INTR) => {}
                // Should poll itself fail, a short sleep keeps the caller's loop sane.
                Err(_) => std::thread::sleep(left.min(WITHOUT_INOTIFY)),
            }
        }
    }

    /// Reads every pending event; whether one was the bell's.
    fn drain(&self, fd: &OwnedFd) -> bool {
        let mut buffer = [MaybeUninit::uninit(); 4096];
        let mut reader = inotify::Reader::new(fd, &mut buffer);
        let mut ours = false;
        loop {
            match reader.next() {
                Ok(event) => {
                    let about_us = event
                        .file_name()
                        .is_none_or(|file| file.to_bytes() == self.name.as_bytes());
                    // An overflowed queue lost events: count it as ours.
                    ours |= about_us || event.events().contains(inotify::ReadFlags::QUEUE_OVERFLOW);
                }
                Err(Errno::WOULDBLOCK | Errno::INTR) => return ours,
                Err(_) => return true,
            }
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
        let watch = Watch::new(&database);
        assert!(!watch.wait(Duration::from_millis(10)), "nothing rang");
        std::fs::write(folder.join("queue.db-wal"), b"x").unwrap();
        assert!(
            !watch.wait(Duration::from_millis(10)),
            "the log's writes are not the bell"
        );
        bell.ring();
        assert!(watch.wait(Duration::from_secs(5)), "the bell wakes it");
        assert!(
            !watch.wait(Duration::from_millis(10)),
            "one ring wakes once"
        );
        std::fs::remove_dir_all(&folder).unwrap();
    }
}
