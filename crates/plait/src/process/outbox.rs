//! A worker's answers on their way out: written by a thread of their own.
//!
//! The worker's main thread runs tasks one after another; if it also wrote the answers, it
//! would either write after every task (a system call each, and a wake-up of the runtime's
//! reader each) or hold answers back to write them in batches, and then a quick task's
//! answer would wait for whatever slow task came after it. With a writer thread the main
//! thread only appends to a buffer: the writer takes whatever has piled up while it wrote
//! last, so answers go out in batches under load and at once when idle, and no answer
//! waits for the next task.
//!
//! Waking the writer costs a thread wake-up (tens of microseconds on a busy machine), so
//! when the main thread has nothing else waiting to run and the writer is idle, the main
//! thread writes the answer itself.

use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// Answers waiting beyond this much make the main thread wait for the writer (the runtime
/// is not reading).
const MAX_PENDING: usize = 8 << 20;

pub(crate) struct Outbox {
    shared: Arc<Shared>,
    output: Arc<File>,
    writer: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// The writer waits here for answers.
    posted: Condvar,
    /// The main thread waits here for room.
    written: Condvar,
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    writer_waiting: bool,
    closed: bool,
    /// Why the writer stopped, if it failed: the runtime is gone.
    failed: Option<io::ErrorKind>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Outbox {
    /// Starts the writer thread on `output`.
    pub(crate) fn start(output: File) -> io::Result<Outbox> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            posted: Condvar::new(),
            written: Condvar::new(),
        });
        let output = Arc::new(output);
        let writer = std::thread::Builder::new()
            .name("plait-worker-out".to_owned())
            .stack_size(64 * 1024)
            .spawn({
                let shared = Arc::clone(&shared);
                let output = Arc::clone(&output);
                move || write_out(&shared, &output)
            })?;
        // Wait until the writer runs (its start allocates: a memory cap set after this
        // must not find it half started).
        {
            let mut state = shared.state();
            while !state.writer_waiting {
                state = shared
                    .written
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        Ok(Outbox {
            shared,
            output,
            writer: Some(writer),
        })
    }

    /// Hands `out`'s bytes to the writer (leaving `out` empty); or, if `idle` (the worker
    /// has nothing more to run yet) and the writer has nothing in hand, writes them now.
    ///
    /// # Errors
    ///
    /// If the writer failed: the runtime closed its end.
    pub(crate) fn post(&self, out: &mut Vec<u8>, idle: bool) -> io::Result<()> {
        let mut state = self.shared.state();
        if idle && state.pending.is_empty() && state.writer_waiting && state.failed.is_none() {
            // The writer is parked and stays so (there is nothing to take): the pipe is ours.
            let written = (&*self.output).write_all(out);
            out.clear();
            trim(out);
            return written;
        }
        while state.pending.len() > MAX_PENDING && state.failed.is_none() {
            state = self
                .shared
                .written
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if let Some(kind) = state.failed {
            return Err(io::Error::new(kind, "the runtime stopped reading answers"));
        }
        if state.pending.is_empty() {
            // Swap rather than copy: the writer hands its emptied buffer back the same way.
            std::mem::swap(&mut state.pending, out);
        } else {
            state.pending.extend_from_slice(out);
            out.clear();
        }
        trim(out);
        if state.writer_waiting {
            self.shared.posted.notify_one();
        }
        Ok(())
    }

    /// Writes out everything posted and stops the writer.
    pub(crate) fn close(mut self) {
        self.shared.state().closed = true;
        self.shared.posted.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn write_out(shared: &Shared, mut output: &File) {
    let mut taken = Vec::new();
    loop {
        {
            let mut state = shared.state();
            while state.pending.is_empty() && !state.closed {
                state.writer_waiting = true;
                // Tells `start` the writer is up (and `post` that there is room).
                shared.written.notify_all();
                state = shared
                    .posted
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                state.writer_waiting = false;
            }
            if state.pending.is_empty() {
                return; // closed, and all written
            }
            std::mem::swap(&mut state.pending, &mut taken);
        }
        shared.written.notify_one();
        if let Err(error) = output.write_all(&taken) {
            shared.state().failed = Some(error.kind());
            shared.written.notify_one();
            return;
        }
        taken.clear();
        trim(&mut taken);
    }
}

/// How much answer buffer a worker keeps between answers.
const KEEP_OUTPUT: usize = 1 << 20;

/// Gives back the memory of an emptied buffer that a large answer grew, rather than keep
/// the largest answer's size for the worker's life.
fn trim(buf: &mut Vec<u8>) {
    if buf.is_empty() && buf.capacity() > KEEP_OUTPUT {
        buf.shrink_to(KEEP_OUTPUT);
    }
}
