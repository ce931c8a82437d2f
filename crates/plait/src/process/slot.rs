//! What a worker is doing, in a page of memory it shares with the runtime: the request it is
//! on (receiving, running, or done with) and, in a batch, the item.
//!
//! A worker's answers travel in batches, so when a worker dies the runtime cannot tell from
//! the answers alone which of the requests it held was running. The worker says so here
//! instead, with one store before each request and one after (a nanosecond each), and the
//! runtime reads it once the worker has died: the request that was running is charged with
//! the crash, those after it never started and go again uncharged, and those before it
//! finished (their answers lost with the worker) and go again uncharged too.
//!
//! The page is a `memfd` mapped by both sides: the worker creates it (sealed at its size)
//! and names its descriptor in its `Hello`, and the runtime opens it through
//! `/proc/PID/fd` (its own child's, of the same user). Handing a descriptor to the child at
//! its start instead would cost a `fork` of the whole program per worker where a
//! `vfork`-style spawn does now (a millisecond or more for a large program). Where the
//! slot cannot be made or opened (no memfd, no `/proc`, a worker made undumpable), the
//! worker serves without one and is sent one request at a time, so that the one it holds
//! is the one it runs.

use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::mm::{MapFlags, ProtFlags};

const LEN: usize = 4096;

/// The request a worker is on is in the upper bits of the first word; these say how far.
const ON: u64 = 1;
const DONE: u64 = 2;
const STATE: u64 = 3;

/// What the slot said when it was read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    /// The request the worker was last on (0: none yet).
    pub(crate) request: u64,
    /// Whether it was done with it (its answer handed to the writer); if not, it was
    /// receiving or running it.
    pub(crate) done: bool,
    /// In a batch, the item it was on.
    pub(crate) item: u32,
}

/// One worker's slot, mapped into this process.
pub(crate) struct Slot {
    words: NonNull<AtomicU64>,
}

// SAFETY: the mapping is plain memory read and written only through atomics; the pointer
// stays valid until `drop`, which needs `&mut self`.
unsafe impl Send for Slot {}
// SAFETY: as above: every access is atomic.
unsafe impl Sync for Slot {}

impl Slot {
    /// Makes this worker's slot: the mapping, and the descriptor its runtime opens.
    ///
    /// # Errors
    ///
    /// If the kernel refuses a `memfd` or the mapping.
    pub(crate) fn create() -> io::Result<(Slot, OwnedFd)> {
        use rustix::fs::{MemfdFlags, SealFlags};
        let fd = rustix::fs::memfd_create(
            "plait-slot",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        rustix::fs::ftruncate(&fd, LEN as u64)?;
        // Its size fixed for good: a task that truncated it would make the runtime's
        // mapping fault (SIGBUS) on its next read.
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        let slot = Slot::map(&fd)?;
        Ok((slot, fd))
    }

    /// Maps the slot that worker `pid` made, on its descriptor `fd`.
    ///
    /// # Errors
    ///
    /// If the worker's descriptor cannot be opened (a worker that made itself
    /// undumpable) or mapped.
    pub(crate) fn open(pid: u32, fd: RawFd) -> io::Result<Slot> {
        let path = format!("/proc/{pid}/fd/{fd}");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|error| io::Error::new(error.kind(), format!("{path}: {error}")))?;
        // Mapped only whole and sealed: anything else could shrink under the mapping.
        let seals = rustix::fs::fcntl_get_seals(&file)?;
        let size = file.metadata()?.len();
        if !seals.contains(rustix::fs::SealFlags::SHRINK) || size < LEN as u64 {
            return Err(io::Error::other(format!(
                "{path} is {size} bytes, sealed {seals:?}: not a worker's slot"
            )));
        }
        Slot::map(&file)
    }

    fn map(fd: &impl AsFd) -> io::Result<Slot> {
        // SAFETY: a new shared mapping of a file at least `LEN` bytes long, at an address
        // the kernel picks: no existing memory is touched.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                LEN,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )?
        };
        let words = NonNull::new(ptr.cast::<AtomicU64>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Slot { words })
    }

    #[inline]
    fn word(&self, index: usize) -> &AtomicU64 {
        debug_assert!(index < LEN / 8);
        // SAFETY: the mapping is `LEN` bytes, page-aligned, and lives as long as `self`;
        // every access to it is atomic, from either process.
        unsafe { &*self.words.as_ptr().add(index) }
    }

    /// The worker starts on `request` (receiving its frame, then running it).
    pub(crate) fn on(&self, request: u64) {
        self.word(1).store(0, Ordering::Relaxed);
        self.word(0).store(request << 2 | ON, Ordering::Release);
    }

    /// The worker has handed `request`'s answer to its writer.
    pub(crate) fn done(&self, request: u64) {
        self.word(0).store(request << 2 | DONE, Ordering::Release);
    }

    /// The worker starts item `index` of the batch it is on.
    #[inline]
    pub(crate) fn item(&self, index: u32) {
        self.word(1).store(u64::from(index), Ordering::Relaxed);
    }

    /// What the worker last said.
    pub(crate) fn read(&self) -> Facts {
        let word = self.word(0).load(Ordering::Acquire);
        Facts {
            request: word >> 2,
            done: word & STATE == DONE,
            item: u32::try_from(self.word(1).load(Ordering::Relaxed)).unwrap_or(u32::MAX),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, of `LEN` bytes; `&mut self` means no reference
        // from `word` is alive.
        let _ = unsafe { rustix::mm::munmap(self.words.as_ptr().cast(), LEN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_reads_back_what_was_stored_through_a_second_mapping() {
        use std::os::fd::AsRawFd;
        let (slot, fd) = Slot::create().unwrap();
        let other = Slot::open(std::process::id(), fd.as_raw_fd()).unwrap();
        assert_eq!(other.read(), Facts::default());
        slot.on(7);
        assert_eq!(
            other.read(),
            Facts {
                request: 7,
                done: false,
                item: 0
            }
        );
        slot.item(3);
        assert_eq!(other.read().item, 3);
        slot.done(7);
        assert!(other.read().done);
        slot.on(8);
        assert_eq!(
            other.read(),
            Facts {
                request: 8,
                done: false,
                item: 0
            }
        );
    }
}
