//! The content digests of input files, each kept with what `stat` said of the file when it
//! was read, so that an input whose `stat` has not changed is not read again: an up-to-date
//! check costs a `stat` per input, as make's does, while a change is still told by content
//! (git's index works the same way, with the same guard against a change `stat` cannot see:
//! [`SETTLED_NS`]).
//!
//! Each digest is a line of the journal: `{"file", "len", "mtime_ns", "ctime_ns", "ino",
//! "dev", "seen_ns", "sha256"}`, the newest line for a file winning. A plait that predates
//! them skips the lines it cannot read, so the journal stays readable both ways.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A digest is trusted by `stat` alone only for a file whose last change (`mtime` and
/// `ctime`) was at least this long before the file was read. A file changed again within
/// the same tick of the file system's clock, with the same length, would keep its `stat`;
/// a change this long after the last one cannot, whatever the clock's tick.
const SETTLED_NS: i64 = 2_000_000_000;

/// What `stat` says of a file, as far as telling a change goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    len: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
}

impl Stat {
    fn of(meta: &Metadata) -> Stat {
        let ns = |secs: i64, nanos: i64| secs.saturating_mul(1_000_000_000).saturating_add(nanos);
        Stat {
            len: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }

    /// Whether the file had not changed for [`SETTLED_NS`] when it was read at `seen_ns`.
    fn settled_at(&self, seen_ns: i64) -> bool {
        self.mtime_ns.max(self.ctime_ns).saturating_add(SETTLED_NS) <= seen_ns
    }
}

/// One line of the journal. (Flat rather than a `Stat` flattened in: serde's `flatten`
/// buffers every field, and thousands of these lines are read at each run's start.)
#[derive(Serialize, Deserialize)]
struct Line {
    file: String,
    len: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
    seen_ns: i64,
    sha256: String,
}

impl Line {
    fn new(file: String, stat: Stat, seen_ns: i64, digest: &[u8; 32]) -> Line {
        Line {
            file,
            len: stat.len,
            mtime_ns: stat.mtime_ns,
            ctime_ns: stat.ctime_ns,
            ino: stat.ino,
            dev: stat.dev,
            seen_ns,
            sha256: to_hex(digest),
        }
    }

    fn stat(&self) -> Stat {
        Stat {
            len: self.len,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            ino: self.ino,
            dev: self.dev,
        }
    }
}

/// A file's digest, and what its `stat` was when it was read, and when.
struct Known {
    stat: Stat,
    seen_ns: i64,
    digest: [u8; 32],
}

/// The digests the journal holds, and those found since that are still to be written.
///
/// Shared by the tasks that fingerprint at once: each lock is held only to look up or keep
/// a digest, never while a file is read.
#[derive(Default)]
pub(crate) struct Digests {
    known: Mutex<HashMap<String, Known>>,
    /// Journal lines, each ending in a newline.
    unwritten: Mutex<String>,
}

impl Digests {
    /// Takes in a line of the journal (while it is read, before the digests are shared);
    /// returns whether it was a digest's.
    pub(super) fn load(&mut self, line: &[u8]) -> bool {
        let Ok(line) = serde_json::from_slice::<Line>(line) else {
            return false;
        };
        let Some(digest) = from_hex(&line.sha256) else {
            return false;
        };
        let stat = line.stat();
        if stat.settled_at(line.seen_ns) {
            let known = Known {
                stat,
                seen_ns: line.seen_ns,
                digest,
            };
            let known_ones = self.known.get_mut().unwrap_or_else(PoisonError::into_inner);
            known_ones.insert(line.file, known);
        }
        true
    }

    /// The SHA-256 of the content of the file at `path` (`name` in the journal), whose
    /// `stat` is `meta`: the one kept, if the `stat` is the same and the file had settled
    /// when it was read; otherwise read now (and kept, if it has settled). `None` if the
    /// file cannot be read.
    pub(crate) fn digest(&self, name: &Path, path: &Path, meta: &Metadata) -> Option<[u8; 32]> {
        self.digest_at(name, path, meta, now_ns)
    }

    /// As [`digest`](Self::digest), with the clock given (tests move it on).
    fn digest_at(
        &self,
        name: &Path,
        path: &Path,
        meta: &Metadata,
        now_ns: impl Fn() -> i64,
    ) -> Option<[u8; 32]> {
        let stat = Stat::of(meta);
        // A name that is not UTF-8 is not kept: its file is read every time.
        let name = name.to_str();
        if let Some(name) = name
            && let Some(known) = self.known().get(name)
            && known.stat == stat
        {
            return Some(known.digest);
        }
        let seen_ns = now_ns();
        // Streamed through the hash: an input of any size costs a buffer, not its size.
        let mut file = File::open(path).ok()?;
        let mut hash = Sha256::new();
        let mut buffer = vec![0; 64 * 1024];
        loop {
            match file.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => hash.update(&buffer[..n]),
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        let digest: [u8; 32] = hash.finalize().into();
        // Kept only if nothing changed between the `stat` and the read, and the file had
        // settled: otherwise a change now could leave the same `stat` behind.
        let unchanged = file.metadata().is_ok_and(|now| Stat::of(&now) == stat);
        if let Some(name) = name
            && unchanged
            && stat.settled_at(seen_ns)
        {
            let line = Line::new(name.to_owned(), stat, seen_ns, &digest);
            if let Ok(text) = serde_json::to_string(&line) {
                let mut unwritten = self
                    .unwritten
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                unwritten.push_str(&text);
                unwritten.push('\n');
            }
            let known = Known {
                stat,
                seen_ns,
                digest,
            };
            self.known().insert(name.to_owned(), known);
        }
        Some(digest)
    }

    fn known(&self) -> MutexGuard<'_, HashMap<String, Known>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many files' digests are kept.
    pub(super) fn len(&self) -> usize {
        self.known().len()
    }

    /// A journal line for every digest kept, for a journal written anew.
    pub(super) fn lines(&self) -> String {
        let mut out = String::new();
        for (name, known) in self.known().iter() {
            let line = Line::new(name.clone(), known.stat, known.seen_ns, &known.digest);
            if let Ok(text) = serde_json::to_string(&line) {
                out.push_str(&text);
                out.push('\n');
            }
        }
        out
    }

    /// The lines not yet written to the journal, taken.
    pub(super) fn take_unwritten(&self) -> String {
        std::mem::take(
            &mut *self
                .unwritten
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
        })
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn from_hex(text: &str) -> Option<[u8; 32]> {
    let mut digest = [0; 32];
    if text.len() != 64 {
        return None;
    }
    for (byte, pair) in digest.iter_mut().zip(text.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("plait-digests-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn digest_of(digests: &Digests, dir: &Path, name: &str) -> [u8; 32] {
        let path = dir.join(name);
        let meta = std::fs::metadata(&path).unwrap();
        digests.digest(Path::new(name), &path, &meta).unwrap()
    }

    #[test]
    fn a_digest_is_the_sha256_of_the_content() {
        let dir = folder("sha");
        std::fs::write(dir.join("a"), b"hello").unwrap();
        let expected: [u8; 32] = Sha256::digest(b"hello").into();
        assert_eq!(digest_of(&Digests::default(), &dir, "a"), expected);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_just_changed_is_not_kept_so_a_change_in_the_same_tick_is_seen() {
        let dir = folder("fresh");
        std::fs::write(dir.join("a"), b"one").unwrap();
        let digests = Digests::default();
        digest_of(&digests, &dir, "a");
        assert!(digests.take_unwritten().is_empty(), "not settled: not kept");
        assert_eq!(digests.len(), 0);
    }

    #[test]
    fn a_settled_file_is_kept_and_its_line_read_back() {
        let dir = folder("kept");
        std::fs::write(dir.join("a"), b"one").unwrap();
        let mut digests = Digests::default();
        // A `ctime` cannot be set back, so the file is read as if two seconds from now.
        let meta = std::fs::metadata(dir.join("a")).unwrap();
        let stat = Stat::of(&meta);
        assert!(!stat.settled_at(now_ns()));
        assert!(stat.settled_at(now_ns() + SETTLED_NS + 1_000_000));
        let line = Line::new("a".to_owned(), stat, stat.ctime_ns + SETTLED_NS, &[7; 32]);
        assert!(digests.load(serde_json::to_string(&line).unwrap().as_bytes()));
        // The `stat` matches: the kept digest is used, the file is not read.
        assert_eq!(digest_of(&digests, &dir, "a"), [7; 32]);
        // Changed (a new length: within one tick of the file system's clock, a change of
        // the same length may keep the `stat`, which is what settling guards against): read
        // again.
        std::fs::write(dir.join("a"), b"three").unwrap();
        let expected: [u8; 32] = Sha256::digest(b"three").into();
        assert_eq!(digest_of(&digests, &dir, "a"), expected);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_read_once_it_settled_is_kept_in_a_line_the_next_run_reads() {
        let dir = folder("line");
        std::fs::write(dir.join("a"), b"one").unwrap();
        let path = dir.join("a");
        let meta = std::fs::metadata(&path).unwrap();
        let digests = Digests::default();
        let later = || now_ns() + SETTLED_NS + 1_000_000_000;
        let digest = digests
            .digest_at(Path::new("a"), &path, &meta, later)
            .unwrap();
        let lines = digests.take_unwritten();
        assert_eq!(lines.lines().count(), 1, "{lines}");
        assert!(digests.take_unwritten().is_empty(), "taken once");
        let mut next = Digests::default();
        assert!(next.load(lines.trim_end().as_bytes()));
        assert_eq!(
            next.known().get("a").map(|known| known.digest),
            Some(digest)
        );
        assert_eq!(digest_of(&next, &dir, "a"), digest);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lines_of_tasks_and_torn_lines_are_not_digests() {
        let mut digests = Digests::default();
        assert!(!digests.load(br#"{"task":"a","fingerprint":"1"}"#));
        assert!(!digests.load(br#"{"file":"a","len":1"#));
        assert_eq!(digests.len(), 0);
    }

    #[test]
    fn hex_goes_both_ways() {
        let digest: [u8; 32] = Sha256::digest(b"x").into();
        assert_eq!(from_hex(&to_hex(&digest)), Some(digest));
        assert_eq!(from_hex("zz"), None);
    }
}
