//! A task's log file for one attempt: the last attempt's is removed when the attempt
//! starts, and the new one is made with its first line, so a task that prints nothing
//! costs no file (making thousands of them dominated a job of small tasks).

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

enum State {
    /// Nothing written yet.
    Unmade,
    Open(File),
    /// It could not be made or written; said once.
    Broken,
}

/// One stream's log for one attempt.
pub(super) struct AttemptLog {
    path: PathBuf,
    state: Mutex<State>,
}

impl AttemptLog {
    /// The log at `path`, with what an earlier attempt left there removed.
    pub(super) fn fresh(path: PathBuf) -> AttemptLog {
        let _ = std::fs::remove_file(&path);
        AttemptLog {
            path,
            state: Mutex::new(State::Unmade),
        }
    }

    /// Appends `line` and a newline; on the first failure, tells `said` why (once).
    pub(super) fn write_line(&self, line: &[u8], said: impl FnOnce(String)) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let failed = match &mut *state {
            State::Broken => return,
            State::Unmade => self
                .path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| File::create(&self.path))
                .and_then(|mut file| {
                    write(&mut file, line)?;
                    *state = State::Open(file);
                    Ok(())
                })
                .err(),
            State::Open(file) => write(file, line).err(),
        };
        if let Some(error) = failed {
            *state = State::Broken;
            said(format!("cannot write {}: {error}", self.path.display()));
        }
    }
}

fn write(file: &mut File, line: &[u8]) -> std::io::Result<()> {
    file.write_all(line)?;
    file.write_all(b"\n")
}
