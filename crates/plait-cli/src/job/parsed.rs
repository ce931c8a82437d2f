//! The job file as last parsed, kept in `.plait/JOB.tasks` so that a run of an unchanged
//! file does not parse its TOML again. For a job of 5,000 tasks, parsing was a third of an
//! up-to-date check (about 26 ms of 75 here); reading the kept copy back is a few
//! milliseconds.
//!
//! A copy is used only when its key matches: a SHA-256 of the file's text and of the plait
//! that wrote it (its version, and the size and modification time of its executable, so
//! that a rebuilt plait never trusts what another build parsed). No copy, another key, or a
//! copy that does not decode: the file is parsed, as if there were none. A copy is written
//! whole under another name and renamed over the old one, so no reader sees half of one.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::file::{self, FileError, TaskSpec};
use super::state::StatePaths;

/// The first line of a copy, before its key.
const HEADER: &str = "plait-tasks 1";

/// The tasks of the job file at `path` whose text is `text`: the kept copy where it was
/// made from this text by this plait, else [`file::parse`]d, with the copy to keep of
/// them if `keep` ([`Fresh::keep`], once they make a plan: a job file with a mistake leaves
/// nothing beside it; a dry run keeps none, and does not make one).
///
/// # Errors
///
/// As [`file::parse`]: only a file that does not parse is an error. A copy that cannot be
/// read is passed over.
pub(crate) fn tasks(
    path: &Path,
    text: &str,
    state: &StatePaths,
    keep: bool,
) -> Result<(Vec<TaskSpec>, Option<Fresh>), FileError> {
    let key = key(text);
    if let Some(tasks) = std::fs::read(&state.tasks)
        .ok()
        .and_then(|copy| decode(&copy, &key))
    {
        return Ok((tasks, None));
    }
    let tasks = file::parse(path, text)?;
    let fresh = keep.then(|| {
        let mut copy = format!("{HEADER} {key}\n").into_bytes();
        serde_json::to_writer(&mut copy, &tasks)
            .ok()
            .map(|()| Fresh(copy))
    });
    Ok((tasks, fresh.flatten()))
}

/// A job file's tasks as just parsed, encoded to be kept.
#[must_use = "a copy is kept only by `keep`"]
pub(crate) struct Fresh(Vec<u8>);

impl Fresh {
    /// Keeps the copy for the next run (making `.plait/`). A copy that cannot be written
    /// is passed over; the next run parses the file and tries again.
    pub(crate) fn keep(self, state: &StatePaths) {
        let _ = write(state, &self.0);
    }
}

/// What a copy's key covers: the text, and the build of plait that parsed it.
fn key(text: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(env!("CARGO_PKG_VERSION").as_bytes());
    if let Some(meta) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.metadata().ok())
    {
        hash.update(meta.len().to_le_bytes());
        if let Ok(since) = meta
            .modified()
            .map(|at| at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default())
        {
            hash.update(since.as_nanos().to_le_bytes());
        }
    }
    hash.update((text.len() as u64).to_le_bytes());
    hash.update(text.as_bytes());
    hash.finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The tasks in `copy` if its key is `key`.
fn decode(copy: &[u8], key: &str) -> Option<Vec<TaskSpec>> {
    let end = copy.iter().position(|&byte| byte == b'\n')?;
    let first = std::str::from_utf8(&copy[..end]).ok()?;
    if first.strip_prefix(HEADER)?.strip_prefix(' ')? != key {
        return None;
    }
    serde_json::from_slice(&copy[end + 1..]).ok()
}

/// Writes `copy` whole, then renames it over the last one.
fn write(state: &StatePaths, copy: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(&state.dir)?;
    // A name of this process's own: two runs that parse at once do not write one file.
    let fresh = state
        .tasks
        .with_extension(format!("tasks.{}", std::process::id()));
    let written = File::create_new(&fresh).and_then(|mut file| file.write_all(copy));
    match written.and_then(|()| std::fs::rename(&fresh, &state.tasks)) {
        Ok(()) => Ok(()),
        Err(error) => {
            let _ = std::fs::remove_file(&fresh);
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = "[tasks.a]\ncmd = \"echo a\"\noutputs = [\"a.txt\"]\n\n\
                       [tasks.b]\nargv = [\"cat\", \"a.txt\"]\nneeds = [\"a\"]\n\
                       timeout = \"1m\"\nenv = { LANG = \"C\" }\n";

    /// A fresh folder with a `.plait` in it, and the job's state paths there.
    fn state(name: &str) -> StatePaths {
        let dir = std::env::temp_dir().join(format!("plait-parsed-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = StatePaths::of(&dir, Path::new("job.toml"));
        state.create().unwrap();
        state
    }

    #[test]
    fn a_kept_copy_reads_back_as_the_parse_made_it() {
        let state = state("kept");
        let (parsed, fresh) = tasks(Path::new("job.toml"), JOB, &state, true).unwrap();
        assert_eq!(parsed, file::parse(Path::new("job.toml"), JOB).unwrap());
        fresh.expect("parsed afresh").keep(&state);
        let (again, fresh) = tasks(Path::new("job.toml"), JOB, &state, true).unwrap();
        assert!(fresh.is_none(), "read from the copy");
        assert_eq!(again, parsed);
        let copy = std::fs::read(&state.tasks).expect("the parse was kept");
        assert_eq!(decode(&copy, &key(JOB)), Some(parsed));
    }

    #[test]
    fn a_copy_of_other_text_is_passed_over() {
        let state = state("other");
        let (_, fresh) = tasks(Path::new("job.toml"), JOB, &state, true).unwrap();
        fresh.unwrap().keep(&state);
        let edited = JOB.replace("echo a", "echo A");
        let copy = std::fs::read(&state.tasks).unwrap();
        assert_eq!(decode(&copy, &key(&edited)), None);
        let (now, fresh) = tasks(Path::new("job.toml"), &edited, &state, true).unwrap();
        assert_eq!(now[0].run, file::Run::Shell("echo A".to_owned()));
        fresh.expect("parsed afresh").keep(&state);
        // And the copy now holds the edited file.
        let copy = std::fs::read(&state.tasks).unwrap();
        assert_eq!(decode(&copy, &key(&edited)), Some(now));
    }

    #[test]
    fn a_damaged_copy_is_parsed_over() {
        let state = state("damaged");
        std::fs::write(&state.tasks, format!("{HEADER} {}\n[{{\"na", key(JOB))).unwrap();
        let (parsed, fresh) = tasks(Path::new("job.toml"), JOB, &state, true).unwrap();
        assert_eq!(parsed, file::parse(Path::new("job.toml"), JOB).unwrap());
        assert!(fresh.is_some(), "parsed afresh");
        let (_, fresh) = tasks(Path::new("job.toml"), JOB, &state, false).unwrap();
        assert!(fresh.is_none(), "a dry run makes no copy");
    }

    #[test]
    fn a_file_that_does_not_parse_is_still_an_error() {
        let state = state("invalid");
        let error = tasks(Path::new("job.toml"), "[tasks.a]\n", &state, true)
            .err()
            .unwrap();
        assert!(error.message.contains("runs nothing"), "{error}");
    }
}
