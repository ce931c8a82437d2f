//! `plait clean FILE`: forgets what `plait run` recorded of a job (its journal and its
//! tasks' last output), so that the next run runs every task.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::job::state::{JobLock, StatePaths, job_folder};

/// Options of `plait clean`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The job file.
    file: PathBuf,
    /// If a run of this job holds its lock, wait for it to end (default: refuse).
    #[arg(long)]
    wait: bool,
}

pub(crate) fn run(args: &Args) -> Result<ExitCode, String> {
    let paths = StatePaths::of(&job_folder(&args.file)?, &args.file);
    let _lock = JobLock::take(&paths, &args.file, args.wait)?;
    let mut removed = Vec::new();
    if paths.journal.exists() {
        std::fs::remove_file(&paths.journal)
            .map_err(|e| format!("cannot remove {}: {e}", paths.journal.display()))?;
        removed.push(paths.journal.display().to_string());
    }
    if paths.logs.exists() {
        std::fs::remove_dir_all(&paths.logs)
            .map_err(|e| format!("cannot remove {}: {e}", paths.logs.display()))?;
        removed.push(paths.logs.display().to_string());
    }
    // The parsed file is no record of what ran; it goes with the rest all the same.
    if paths.tasks.exists() {
        std::fs::remove_file(&paths.tasks)
            .map_err(|e| format!("cannot remove {}: {e}", paths.tasks.display()))?;
    }
    if removed.is_empty() {
        outln!("plait: nothing recorded of {}", args.file.display());
    } else {
        outln!(
            "plait: forgot what ran of {} (removed {})",
            args.file.display(),
            removed.join(" and ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
