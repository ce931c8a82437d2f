//! A command's output streams, read in the command's own future: kept up to a limit,
//! counted past it, and cut into lines for a [`LineSink`](super::LineSink) as they come.
//!
//! Reading in place rather than in tasks of their own saves each command two spawns and
//! the wake-ups between them, which were a visible share of a short command's cost.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest line handed to a [`LineSink`](super::LineSink) in one call: output without
/// newlines (a progress bar's `\r`s) comes in pieces of this size rather than held without
/// bound.
pub const LONGEST_LINE: usize = 64 * 1024;

/// What a stream's lines go to, one call a line (the command's sink, told the stream).
pub(super) type Say = Box<dyn Fn(&[u8]) + Send>;

/// How much one read takes at most.
const CHUNK: usize = 16 * 1024;

/// One stream's output as read so far.
pub(super) struct Kept {
    limit: usize,
    /// The first `limit` bytes.
    pub(super) bytes: Vec<u8>,
    /// Bytes read past the limit and dropped.
    pub(super) dropped: u64,
    lines: Option<Lines>,
}

impl Kept {
    pub(super) fn new(limit: usize, say: Option<Say>) -> Kept {
        Kept {
            limit,
            bytes: Vec::new(),
            dropped: 0,
            lines: say.map(Lines::new),
        }
    }

    pub(super) fn take_in(&mut self, chunk: &[u8]) {
        if let Some(lines) = &mut self.lines {
            lines.feed(chunk);
        }
        let keep = chunk.len().min(self.limit - self.bytes.len());
        self.bytes.extend_from_slice(&chunk[..keep]);
        self.dropped += (chunk.len() - keep) as u64;
    }

    /// Hands the sink the last line if it had no newline.
    pub(super) fn finish(&mut self) {
        if let Some(lines) = &mut self.lines {
            lines.finish();
        }
    }
}

/// Reads `stream` to its end into `kept`. A read error ends it as the end would.
async fn drain(stream: Option<impl AsyncRead + Unpin>, kept: &mut Kept) {
    let Some(mut stream) = stream else {
        return;
    };
    // Not zeroed: `read_buf` writes only into its spare capacity.
    let mut chunk = Vec::with_capacity(CHUNK);
    loop {
        chunk.clear();
        match stream.read_buf(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(_) => kept.take_in(&chunk),
        }
    }
}

/// Reads both streams while `ended` runs; once it has, reads on for at most `grace`
/// (processes the command left outside its group may hold the pipes), then stops. Returns
/// what `ended` returned; the streams' output is in `out` and `err`.
pub(super) async fn read_while<T>(
    ended: impl Future<Output = T>,
    (stdout, out): (Option<impl AsyncRead + Unpin>, &mut Kept),
    (stderr, err): (Option<impl AsyncRead + Unpin>, &mut Kept),
    grace: Duration,
) -> T {
    let value = {
        let reading = async {
            tokio::join!(drain(stdout, &mut *out), drain(stderr, &mut *err));
        };
        tokio::pin!(reading, ended);
        let mut read = false;
        let value = loop {
            tokio::select! {
                // The streams first: they end as the process does, so a command seen
                // ended usually needs no grace.
                biased;
                () = &mut reading, if !read => read = true,
                value = &mut ended => break value,
            }
        };
        if !read {
            let _ = tokio::time::timeout(grace, &mut reading).await;
        }
        value
    };
    out.finish();
    err.finish();
    value
}

/// Cuts a stream into lines for a [`LineSink`](super::LineSink).
struct Lines {
    say: Say,
    /// The start of a line whose end has not come yet.
    pending: Vec<u8>,
}

impl Lines {
    fn new(say: Say) -> Lines {
        Lines {
            say,
            pending: Vec::new(),
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            if self.pending.is_empty() {
                self.say(&bytes[..end]);
            } else {
                self.pending.extend_from_slice(&bytes[..end]);
                let line = std::mem::take(&mut self.pending);
                self.say(&line);
            }
            bytes = &bytes[end + 1..];
        }
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= LONGEST_LINE {
            let rest = self.pending.split_off(LONGEST_LINE);
            let piece = std::mem::replace(&mut self.pending, rest);
            self.say(&piece);
        }
    }

    fn finish(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.say(&line);
        }
    }

    fn say(&self, line: &[u8]) {
        // A sink that panics loses that line, not the command's output.
        if let Err(message) = crate::error::catch_panic(|| (self.say)(line)) {
            tracing::warn!(%message, "a command's line sink panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::{Arc, Mutex};

    /// The lines a splitter hands its sink for `input` fed in pieces of `cuts` sizes.
    fn split(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&seen);
        let mut lines = Lines::new(Box::new(move |line: &[u8]| {
            keep.lock().unwrap().push(line.to_vec());
        }));
        let mut rest = input;
        for &cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, after) = rest.split_at(cut.clamp(1, rest.len()));
            lines.feed(piece);
            rest = after;
        }
        lines.finish();
        drop(lines);
        Arc::try_unwrap(seen).unwrap().into_inner().unwrap()
    }

    proptest! {
        #[test]
        fn lines_are_the_input_cut_at_newlines_however_it_arrives(
            input in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'\n'), any::<u8>()], 0..3000),
            cuts in proptest::collection::vec(1..600_usize, 1..8),
        ) {
            let lines = split(&input, &cuts);
            let mut expected: Vec<Vec<u8>> =
                input.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
            // A trailing newline ends the last line; it starts no empty one.
            if input.last() == Some(&b'\n') || input.is_empty() {
                expected.pop();
            }
            prop_assert_eq!(lines, expected);
        }
    }

    #[test]
    fn a_line_longer_than_the_longest_comes_in_pieces() {
        let input = vec![b'x'; LONGEST_LINE * 2 + 10];
        let lines = split(&input, &[4096]);
        let sizes: Vec<usize> = lines.iter().map(Vec::len).collect();
        assert_eq!(sizes, [LONGEST_LINE, LONGEST_LINE, 10]);
    }
}
