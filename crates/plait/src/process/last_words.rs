//! What a worker wrote to standard error while it was on one request: the lost task's own
//! last words when the worker dies, rather than whatever the worker printed over its life.
//!
//! The runtime reads the worker's standard error a chunk at a time, and after each read it
//! looks at the worker's slot (see `slot.rs`) for the request the worker is on. A chunk read
//! after the worker moved on to a new request starts that request's words. A request's
//! output is written after the worker marked it, so it is read after, and all of it lands
//! in its own words; a slow read may add the end of the request before, never drop any.
//!
//! The words keep their first and last [`KEEP`] bytes. They also note, line by line as they
//! stream past, whether Rust's allocator reported a failed allocation, which is how a task
//! that runs into the memory cap dies (see `supervisor::settle`).

use std::fmt::Write as _;

/// How many bytes of the start, and of the end, of a request's words are kept.
pub(crate) const KEEP: usize = 2048;

/// How much of the end of each line the allocator check keeps (its words are about 50
/// bytes).
const LINE: usize = 96;

/// What Rust's default allocation-error handler prints before it aborts.
const ALLOC_FAILED: (&str, &str) = ("memory allocation of ", " bytes failed");

#[derive(Debug, Default)]
pub(crate) struct LastWords {
    /// The request they were written during (0: before the first).
    pub(crate) request: u64,
    head: Vec<u8>,
    tail: Vec<u8>,
    /// Every byte written, kept or not.
    total: u64,
    /// The end of the current line, [`LINE`] bytes of it or more.
    line: Vec<u8>,
    alloc_failed: bool,
}

impl LastWords {
    pub(crate) fn new(request: u64) -> LastWords {
        LastWords {
            request,
            ..LastWords::default()
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        let room = KEEP.saturating_sub(self.head.len());
        let (head, rest) = chunk.split_at(room.min(chunk.len()));
        self.head.extend_from_slice(head);
        if !rest.is_empty() {
            self.tail.extend_from_slice(rest);
            if self.tail.len() > 2 * KEEP {
                let excess = self.tail.len() - KEEP;
                self.tail.drain(..excess);
            }
        }
        // A carriage return ends a line too: a progress bar redraws its line without one.
        for &byte in chunk {
            if byte == b'\n' || byte == b'\r' {
                self.alloc_failed |= ends_with_alloc_failure(&self.line);
                self.line.clear();
            } else {
                self.line.push(byte);
                if self.line.len() > 2 * LINE {
                    self.line.drain(..LINE);
                }
            }
        }
    }

    /// Whether Rust's allocator reported a failed allocation in these words.
    pub(crate) fn alloc_failed(&self) -> bool {
        self.alloc_failed || ends_with_alloc_failure(&self.line)
    }

    /// The words as text: all of them, or their start and end with what was left out
    /// between.
    pub(crate) fn text(&self) -> String {
        let tail = &self.tail[self.tail.len().saturating_sub(KEEP)..];
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        let kept = (self.head.len() + tail.len()) as u64;
        if kept < self.total {
            let _ = write!(text, " [… {} bytes …] ", self.total - kept);
        }
        text.push_str(&String::from_utf8_lossy(tail));
        text.trim().to_owned()
    }
}

/// Whether `line` ends with Rust's "memory allocation of N bytes failed" (what came before
/// it on the line, a progress bar's text say, is left alone: the report always ends its
/// line).
fn ends_with_alloc_failure(line: &[u8]) -> bool {
    let line = line.trim_ascii_end();
    let Some(rest) = line.strip_suffix(ALLOC_FAILED.1.as_bytes()) else {
        return false;
    };
    let digits = rest.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && rest[..rest.len() - digits].ends_with(ALLOC_FAILED.0.as_bytes())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn short_words_are_kept_whole() {
        let mut words = LastWords::new(1);
        words.push(b"first line\nsecond");
        words.push(b" line\n");
        assert_eq!(words.text(), "first line\nsecond line");
        assert!(!words.alloc_failed());
    }

    #[test]
    fn long_words_keep_their_start_and_end_and_say_how_much_is_left_out() {
        let mut words = LastWords::new(1);
        words.push(&[b'a'; KEEP]);
        words.push(&[b'b'; 10 * KEEP]);
        words.push(b"the end");
        let text = words.text();
        assert!(text.starts_with(&"a".repeat(KEEP)), "{text}");
        assert!(text.ends_with("the end"), "{text}");
        let left_out = 11 * KEEP + 7 - 2 * KEEP;
        assert!(text.contains(&format!("[… {left_out} bytes …]")), "{text}");
    }

    #[test]
    fn the_allocator_report_is_found_wherever_it_falls_and_only_at_the_end_of_a_line() {
        let report = "memory allocation of 2147483648 bytes failed\n";
        let mut words = LastWords::new(1);
        words.push(&vec![b'x'; 1 << 20]);
        words.push(b"\n");
        for piece in report.as_bytes().chunks(7) {
            words.push(piece);
        }
        words.push(&vec![b'y'; 1 << 16]); // a backtrace, say
        assert!(words.alloc_failed());

        for line in [
            "memory allocation of lots bytes failed\n",
            "memory allocation of 5 bytes failed, said the task, and went on\n",
            "Cannot allocate memory\n",
        ] {
            let mut words = LastWords::new(1);
            words.push(line.as_bytes());
            assert!(!words.alloc_failed(), "{line}");
        }
    }

    #[test]
    fn the_allocator_report_is_found_after_a_progress_bar_on_the_same_line() {
        let mut words = LastWords::new(1);
        for percent in 0..46 {
            let bar = "=".repeat(percent * 2);
            words.push(format!("\r[{bar:<100}] {percent}%").as_bytes());
        }
        words.push(b"memory allocation of 1073741824 bytes failed\n");
        assert!(words.alloc_failed());
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_words(
            text in prop::collection::vec(any::<u8>(), 0..6000),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut whole = LastWords::new(1);
            whole.push(&text);
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(text.len() + 1)).collect();
            cuts.sort_unstable();
            let mut pieces = LastWords::new(1);
            let mut from = 0;
            for cut in cuts.into_iter().chain([text.len()]) {
                pieces.push(&text[from..cut]);
                from = cut;
            }
            prop_assert_eq!(pieces.text(), whole.text());
            prop_assert_eq!(pieces.alloc_failed(), whole.alloc_failed());
        }
    }
}
