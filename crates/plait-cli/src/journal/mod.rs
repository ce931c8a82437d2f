//! The run journal under `.plait/`: which tasks succeeded, with what fingerprint, so that
//! running a job again skips them, after a failure or after plait itself was killed.
//!
//! A task's fingerprint covers what it runs (command, environment, directory), the content
//! of its declared `inputs`, and the fingerprints of the tasks it needs: change any of
//! those and it runs again. A task that declares `outputs` also runs again if one is
//! missing. Each success is appended (and flushed) as it happens, one JSON line each, so a
//! run killed at any moment leaves every finished task recorded; a torn last line is
//! ignored. Each task's last output is kept beside the journal, in `<job>.logs/`.
//!
//! The journal also keeps the digests of input files ([`digests`]), so that an unchanged
//! input is known by its `stat` and not read again.

mod digests;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub(crate) use self::digests::Digests;
use crate::job::file::{Run, TaskSpec};
use crate::job::inputs::{Input, Outputs};
use crate::job::state::StatePaths;

#[derive(Serialize, Deserialize)]
struct Entry {
    task: String,
    fingerprint: String,
}

pub(crate) struct Journal {
    path: PathBuf,
    done: HashMap<String, String>,
    file: File,
    /// Where each task's last output is kept: `.plait/<job>.logs/`.
    logs: PathBuf,
    /// The input files' digests, shared with the tasks that fingerprint.
    digests: Arc<Digests>,
    /// How many lines the journal held when it was opened.
    lines: usize,
}

impl Journal {
    /// Opens (creating) the journal for the job file `job` in `base`/.plait.
    ///
    /// # Errors
    ///
    /// If `.plait` or the journal cannot be created or read, naming the path.
    pub(crate) fn open(base: &Path, job: &Path) -> Result<Journal, String> {
        let paths = StatePaths::of(base, job);
        paths.create()?;
        let path = paths.journal;
        let mut done = HashMap::new();
        let mut digests = Digests::default();
        let mut torn = false;
        let mut lines = 0;
        if let Ok(existing) = std::fs::read(&path) {
            // Lines that do not parse (one cut short by a kill) are skipped, not fatal.
            for line in existing.split(|&byte| byte == b'\n') {
                lines += 1;
                // A digest's line starts with its file; anything else is tried as a task's.
                if line.starts_with(br#"{"file":"#) {
                    digests.load(line);
                } else if let Ok(entry) = serde_json::from_slice::<Entry>(line) {
                    done.insert(entry.task, entry.fingerprint);
                }
            }
            torn = existing.last().is_some_and(|&byte| byte != b'\n');
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let mut file = file;
        if torn {
            // End the torn line, so that the next entry starts a line of its own.
            file.write_all(b"\n")
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        let logs = paths.logs;
        Ok(Journal {
            path,
            done,
            file,
            logs,
            digests: Arc::new(digests),
            lines,
        })
    }

    /// Writes the journal anew without the lines that later ones replaced, once they are
    /// most of it: a task that succeeds again, or an input read again after a change, adds a
    /// line each time, and every run reads them all. The new journal is written beside the
    /// old and renamed over it, so a kill at any moment leaves one or the other whole. The
    /// caller holds the job's lock.
    ///
    /// # Errors
    ///
    /// If the new journal cannot be written, naming it.
    pub(crate) fn compact(&mut self) -> Result<(), String> {
        let live = self.done.len() + self.digests.len();
        if self.lines <= 2 * live + 64 {
            return Ok(());
        }
        let mut text = String::new();
        for (task, fingerprint) in &self.done {
            let entry = Entry {
                task: task.clone(),
                fingerprint: fingerprint.clone(),
            };
            text.push_str(&serde_json::to_string(&entry).map_err(|e| e.to_string())?);
            text.push('\n');
        }
        text.push_str(&self.digests.lines());
        let new = self.path.with_extension("journal.new");
        let written = File::create(&new)
            .and_then(|mut file| {
                file.write_all(text.as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&new, &self.path))
            .and_then(|()| OpenOptions::new().append(true).open(&self.path));
        match written {
            Ok(file) => {
                self.file = file;
                self.lines = live;
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&new);
                Err(format!("cannot write {}: {e}", new.display()))
            }
        }
    }

    /// The input files' digests, to fingerprint tasks with (without holding the journal).
    pub(crate) fn digests(&self) -> Arc<Digests> {
        Arc::clone(&self.digests)
    }

    /// Writes the digests found since the last write (a run that recorded nothing, all up
    /// to date, calls this at its end). Their loss costs only a read next time, so a failure
    /// is not an error of the run.
    pub(crate) fn write_digests(&mut self) {
        let lines = self.digests.take_unwritten();
        if !lines.is_empty() {
            let _ = self
                .file
                .write_all(lines.as_bytes())
                .and_then(|()| self.file.flush());
        }
    }

    /// Keeps a task's last output under `.plait/<job>.logs/<task>.stdout` and `.stderr`.
    ///
    /// # Errors
    ///
    /// If the files cannot be written, naming them.
    pub(crate) fn keep_output(
        &self,
        task: &str,
        stdout: &[u8],
        stderr: &[u8],
    ) -> Result<(), String> {
        std::fs::create_dir_all(&self.logs)
            .map_err(|e| format!("cannot create {}: {e}", self.logs.display()))?;
        for (extension, bytes) in [("stdout", stdout), ("stderr", stderr)] {
            let path = self.log_of(task, extension);
            std::fs::write(&path, bytes)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// Where `task`'s last output on `stream` (`stdout` or `stderr`) is kept.
    pub(crate) fn log_of(&self, task: &str, stream: &str) -> PathBuf {
        // Task names are TOML keys: escape what a file name cannot hold, reversibly.
        let file = task
            .replace('%', "%25")
            .replace('/', "%2F")
            .replace('\0', "%00");
        self.logs.join(format!("{file}.{stream}"))
    }

    /// Whether `task` succeeded before with `fingerprint` (its outputs are the caller's
    /// to check).
    pub(crate) fn is_done(&self, task: &str, fingerprint: &str) -> bool {
        self.done.get(task).is_some_and(|done| done == fingerprint)
    }

    /// Why `task` would run with `fingerprint`, its outputs as `outputs` found them: `None`
    /// if it is up to date.
    pub(crate) fn why_run(
        &self,
        task: &TaskSpec,
        fingerprint: &str,
        outputs: &Outputs,
    ) -> Option<String> {
        let missing = outputs.missing.map(|at| task.outputs[at].as_str());
        why_run(
            self.done.get(&task.name).map(String::as_str),
            fingerprint,
            missing,
        )
    }

    /// Records that `task` succeeded with `fingerprint`.
    ///
    /// # Errors
    ///
    /// If the journal cannot be written, naming it.
    pub(crate) fn record(&mut self, task: &str, fingerprint: &str) -> Result<(), String> {
        let entry = Entry {
            task: task.to_owned(),
            fingerprint: fingerprint.to_owned(),
        };
        // The digests found since the last write go first, in the same write.
        let mut line = self.digests.take_unwritten();
        line.push_str(&serde_json::to_string(&entry).map_err(|e| e.to_string())?);
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        self.done.insert(entry.task, entry.fingerprint);
        Ok(())
    }
}

/// A task's fingerprint, in three parts joined by `.`, so that a changed one can be named:
/// what it runs (command, environment, folder), the content of its input `files` (see
/// `job::inputs`; their digests come from `digests`), and its needs' fingerprints.
pub(crate) fn fingerprint(
    task: &TaskSpec,
    base: &Path,
    needs: &[&str],
    files: &[Input],
    digests: &Digests,
) -> String {
    // Each list goes in with its length, so that items cannot move between lists
    // (`argv = ["x", "A", "B"]` against `argv = ["x"]` with `env = { A = "B" }`).
    let count = |n: usize| (n as u64).to_le_bytes();
    let run = part(|field| {
        match &task.run {
            Run::Shell(line) => {
                field(b"shell");
                field(line.as_bytes());
            }
            Run::Argv(argv) => {
                field(b"argv");
                field(&count(argv.len()));
                for arg in argv {
                    field(arg.as_bytes());
                }
            }
        }
        field(b"env");
        field(&count(task.env.len()));
        for (key, value) in &task.env {
            field(key.as_bytes());
            field(value.as_bytes());
        }
        field(
            task.cwd
                .as_deref()
                .map_or(&b""[..], |cwd| cwd.as_os_str().as_encoded_bytes()),
        );
    });
    let inputs = part(|field| {
        field(&count(files.len()));
        for file in files {
            let name = file.path.strip_prefix(base).unwrap_or(&file.path);
            field(name.as_os_str().as_encoded_bytes());
            match digests.digest(name, &file.path, &file.meta) {
                Some(digest) => field(&digest),
                // Gone since it was found: it fingerprints differently every time, so the
                // task runs.
                None => {
                    field(format!("unreadable {:?}", std::time::SystemTime::now()).as_bytes());
                }
            }
        }
    });
    let needs = part(|field| {
        field(&count(needs.len()));
        for need in needs {
            field(need.as_bytes());
        }
    });
    format!("{run}.{inputs}.{needs}")
}

/// One part of a fingerprint: what `fill` feeds it, each field with its length, as 32 hex
/// digits.
fn part(fill: impl FnOnce(&mut dyn FnMut(&[u8]))) -> String {
    let mut hash = Sha256::new();
    fill(&mut |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    });
    // By hand: a `format!` per byte was a tenth of an up-to-date check.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    hash.finalize()[..16]
        .iter()
        .flat_map(|byte| {
            [
                DIGITS[usize::from(byte >> 4)],
                DIGITS[usize::from(byte & 15)],
            ]
        })
        .map(char::from)
        .collect()
}

/// Why a task would run again, as `plait run --dry-run` says it; `None` if it is up to
/// date by the journal.
pub(crate) fn why_run(
    recorded: Option<&str>,
    now: &str,
    missing_output: Option<&str>,
) -> Option<String> {
    let Some(recorded) = recorded else {
        return Some("it has not succeeded before (or not since `plait clean`)".to_owned());
    };
    let (old, new): (Vec<&str>, Vec<&str>) =
        (recorded.split('.').collect(), now.split('.').collect());
    if old.len() != new.len() {
        return Some("it was recorded by an older plait".to_owned());
    }
    let changed: Vec<&str> = ["its command", "an input", "what it needs"]
        .into_iter()
        .zip(old.iter().zip(&new))
        .filter(|(_, (old, new))| old != new)
        .map(|(what, _)| what)
        .collect();
    if !changed.is_empty() {
        return Some(format!("{} changed", changed.join(" and ")));
    }
    missing_output.map(|output| format!("its output `{output}` is missing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Journals written before the hex digits were made by hand still match.
    #[test]
    fn a_part_is_the_first_half_of_its_sha256_in_lowercase_hex() {
        let made = part(|field| field(b"echo hi"));
        let mut hash = Sha256::new();
        hash.update(7_u64.to_le_bytes());
        hash.update(b"echo hi");
        let expected: String = hash.finalize()[..16]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(made, expected);
        assert_eq!(made.len(), 32);
    }

    fn spec(argv: &[&str], env: &[(&str, &str)]) -> TaskSpec {
        let run = Run::Argv(argv.iter().map(|s| (*s).to_owned()).collect());
        let mut task = TaskSpec::plain("t", run);
        task.env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        task
    }

    #[test]
    fn items_cannot_move_between_lists_unnoticed() {
        let base = Path::new(".");
        let digests = &Digests::default();
        let a = fingerprint(&spec(&["x", "A", "B"], &[]), base, &[], &[], digests);
        let b = fingerprint(&spec(&["x"], &[("A", "B")]), base, &[], &[], digests);
        assert_ne!(a, b);
        let again = fingerprint(&spec(&["x", "A", "B"], &[]), base, &[], &[], digests);
        assert_eq!(a, again);
    }

    /// A fresh folder with a `.plait` in it, and the job file's path there.
    fn job_folder(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("plait-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(".plait")).unwrap();
        let job = dir.join("job.toml");
        (dir, job)
    }

    #[test]
    fn a_journal_mostly_of_replaced_lines_is_written_anew_with_what_stands() {
        let (dir, job) = job_folder("compact");
        let mut journal = Journal::open(&dir, &job).unwrap();
        for round in 0..100 {
            journal.record("a", &format!("{round}")).unwrap();
            journal.record("b", "same").unwrap();
        }
        drop(journal);
        let file = dir.join(".plait/job.journal");
        let before = std::fs::read_to_string(&file).unwrap().lines().count();
        assert_eq!(before, 200);
        let mut journal = Journal::open(&dir, &job).unwrap();
        journal.compact().unwrap();
        // Still appended to after the rename.
        journal.record("c", "new").unwrap();
        drop(journal);
        assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 3);
        let journal = Journal::open(&dir, &job).unwrap();
        assert_eq!(journal.done.get("a").map(String::as_str), Some("99"));
        assert_eq!(journal.done.get("b").map(String::as_str), Some("same"));
        assert_eq!(journal.done.get("c").map(String::as_str), Some("new"));
        assert!(!dir.join(".plait/job.journal.new").exists());
        // A journal of lines that all stand is left as it is.
        let mut journal = Journal::open(&dir, &job).unwrap();
        let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
        journal.compact().unwrap();
        assert_eq!(
            std::fs::metadata(&file).unwrap().modified().unwrap(),
            modified
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_last_line_loses_nothing_before_or_after_it() {
        let (dir, job) = job_folder("journal");
        // A whole entry, then one cut inside a two-byte character by a kill.
        let text = b"{\"task\":\"a\",\"fingerprint\":\"1\"}\n{\"task\":\"\xc3";
        std::fs::write(dir.join(".plait/job.journal"), text).unwrap();
        let mut journal = Journal::open(&dir, &job).unwrap();
        assert_eq!(journal.done.get("a").map(String::as_str), Some("1"));
        journal.record("b", "2").unwrap();
        drop(journal);
        let journal = Journal::open(&dir, &job).unwrap();
        assert_eq!(journal.done.get("a").map(String::as_str), Some("1"));
        assert_eq!(journal.done.get("b").map(String::as_str), Some("2"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
