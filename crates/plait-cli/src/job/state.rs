//! What plait keeps of a job beside it, in `.plait/` next to the job file: the journal
//! (`JOB.journal`), each task's last output (`JOB.logs/`), the job file as last parsed
//! (`JOB.tasks`, see `parsed`), and the lock (`JOB.lock`) that lets one `plait run` (or
//! `plait clean`) of a job go on at a time.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use rustix::io::Errno;

/// The job file's folder, made absolute: where its commands run, its relative paths
/// start, and its state is kept.
///
/// # Errors
///
/// The folder cannot be found, naming it.
pub(crate) fn job_folder(job: &Path) -> Result<PathBuf, String> {
    let folder = job
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::canonicalize(folder)
        .map_err(|e| format!("cannot find the job's folder {}: {e}", folder.display()))
}

/// Where a job's state lives.
pub(crate) struct StatePaths {
    pub(crate) dir: PathBuf,
    pub(crate) journal: PathBuf,
    pub(crate) logs: PathBuf,
    pub(crate) tasks: PathBuf,
    pub(crate) lock: PathBuf,
}

impl StatePaths {
    /// The state of the job file `job`, kept in `base`/.plait.
    pub(crate) fn of(base: &Path, job: &Path) -> StatePaths {
        let dir = base.join(".plait");
        let stem = job
            .file_stem()
            .map_or_else(|| "job".into(), |s| s.to_string_lossy().into_owned());
        StatePaths {
            journal: dir.join(format!("{stem}.journal")),
            logs: dir.join(format!("{stem}.logs")),
            tasks: dir.join(format!("{stem}.tasks")),
            lock: dir.join(format!("{stem}.lock")),
            dir,
        }
    }

    /// Creates `.plait/`, naming it if it cannot be.
    pub(crate) fn create(&self) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))
    }
}

/// The job's lock, held until dropped. It is an advisory lock on an open file, so the
/// kernel lets go of it when its holder dies, however it dies: a killed run leaves no
/// stale lock to clear.
pub(crate) struct JobLock {
    _file: File,
}

impl JobLock {
    /// Takes the lock of the job whose state is at `paths`; if another run holds it,
    /// waits for it when `wait`, or refuses.
    ///
    /// # Errors
    ///
    /// Another run holds it (with its process id, and the way out), or the lock file
    /// cannot be made.
    pub(crate) fn take(paths: &StatePaths, job: &Path, wait: bool) -> Result<JobLock, String> {
        paths.create()?;
        let named = |e: std::io::Error| format!("cannot lock {}: {e}", paths.lock.display());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&paths.lock)
            .map_err(named)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                let holder = holder(&mut file);
                if !wait {
                    return Err(format!(
                        "another plait run of {} is running{holder}, and holds {}; wait for it \
                         to end, or pass --wait to start when it has",
                        job.display(),
                        paths.lock.display()
                    ));
                }
                eprintln!(
                    "plait: waiting for another run of {}{holder} to end",
                    job.display()
                );
                flock(&file, FlockOperation::LockExclusive).map_err(|e| named(e.into()))?;
            }
            Err(e) => return Err(named(e.into())),
        }
        // Says who holds it, for the message another run shows.
        let _ = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()));
        Ok(JobLock { _file: file })
    }
}

/// ` (process N)` as the lock file says, or nothing.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    text.trim()
        .parse::<u32>()
        .map_or_else(|_| String::new(), |pid| format!(" (process {pid})"))
}
