//! Waking on the database's changes, from any process: every commit writes the file's
//! write-ahead log, and inotify reports the write. A waiter makes its watch before it
//! looks, so a change between its look and its wait still wakes it.

use std::ffi::OsString;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify;
use rustix::io::Errno;

/// How long a wait without inotify (its limits reached) sleeps between looks.
const WITHOUT_INOTIFY: Duration = Duration::from_millis(20);

/// A watch on one database's files.
pub(super) struct Watch {
    fd: Option<OwnedFd>,
    /// The database's file name: its log and the file itself start with it.
    name: OsString,
}

impl Watch {
    /// Watches the folder that holds `database` for writes to its files. Without inotify
    /// (the process's or the user's watch limit reached), waits become short sleeps.
    pub(super) fn new(database: &Path) -> Watch {
        let name = database.file_name().unwrap_or_default().to_owned();
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

    /// Waits until one of the database's files is written, or `timeout` passes; returns
    /// whether a write was seen. Writes made since the watch was made count.
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

    /// Reads every pending event; whether one was about the database's files.
    fn drain(&self, fd: &OwnedFd) -> bool {
        let mut buffer = [MaybeUninit::uninit(); 4096];
        let mut reader = inotify::Reader::new(fd, &mut buffer);
        let mut ours = false;
        loop {
            match reader.next() {
                Ok(event) => {
                    let about_us = event
                        .file_name()
                        .is_none_or(|file| file.to_bytes().starts_with(self.name.as_bytes()));
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
    fn a_write_to_the_log_wakes_a_waiter_and_a_quiet_file_does_not() {
        let folder = std::env::temp_dir().join(format!("plait-watch-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        let database = folder.join("queue.db");
        let watch = Watch::new(&database);
        assert!(
            !watch.wait(Duration::from_millis(10)),
            "nothing was written"
        );
        std::fs::write(folder.join("other.txt"), b"x").unwrap();
        assert!(
            !watch.wait(Duration::from_millis(10)),
            "another file is not ours"
        );
        std::fs::write(folder.join("queue.db-wal"), b"x").unwrap();
        assert!(
            watch.wait(Duration::from_secs(5)),
            "the log's write wakes it"
        );
        std::fs::remove_dir_all(&folder).unwrap();
    }
}
