//! A task's inputs, as the files whose content its fingerprint covers: the paths and globs
//! it declares (`**` too), directories by everything in them, and the outputs of the tasks
//! it needs. A declared input that is not there is an error, not a silent rerun.

use std::fs::Metadata;
use std::path::{Path, PathBuf};

/// An input file, with what `stat` said of it when it was found (the journal's digests
/// tell a change by it).
#[derive(Debug)]
pub(crate) struct Input {
    pub(crate) path: PathBuf,
    pub(crate) meta: Metadata,
}

/// The files `patterns` name in `base`, sorted by path and without repeats.
///
/// # Errors
///
/// A path that does not exist, a glob that matches nothing or is not a glob, or a folder
/// that cannot be read; named, with the task.
pub(crate) fn expand(task: &str, base: &Path, patterns: &[String]) -> Result<Vec<Input>, String> {
    let mut files = Vec::new();
    for pattern in patterns {
        let before = files.len();
        if pattern.contains(['*', '?', '[']) {
            let full = base.join(pattern);
            let matches = glob::glob(&full.to_string_lossy()).map_err(|error| {
                format!("task `{task}` has an input `{pattern}` that is not a glob: {error}")
            })?;
            for found in matches {
                let found = found.map_err(|error| {
                    format!("task `{task}`: cannot read input `{pattern}`: {error}")
                })?;
                add(task, pattern, found, &mut files)?;
            }
            if files.len() == before {
                return Err(format!(
                    "task `{task}` has an input `{pattern}` that matches nothing in {}",
                    base.display()
                ));
            }
        } else {
            let path = base.join(pattern);
            add(task, pattern, path, &mut files)?;
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    Ok(files)
}

/// Adds `path`: a file, or everything below a folder. One `stat` tells whether it is
/// there, what it is, and (for a file) what the journal's digest is checked against.
fn add(task: &str, pattern: &str, path: PathBuf, files: &mut Vec<Input>) -> Result<(), String> {
    let meta = match std::fs::metadata(&path) {
        Ok(meta) => meta,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "task `{task}` has an input `{pattern}` that does not exist ({}); make it, or \
                 make it an output of a task this one needs",
                path.display()
            ));
        }
        Err(error) => {
            return Err(format!(
                "task `{task}`: cannot read input {} (`{pattern}`): {error}",
                path.display()
            ));
        }
    };
    if !meta.is_dir() {
        files.push(Input { path, meta });
        return Ok(());
    }
    let entries = std::fs::read_dir(&path).map_err(|error| {
        format!(
            "task `{task}`: cannot read the folder {} (input `{pattern}`): {error}",
            path.display()
        )
    })?;
    for entry in entries {
        let entry = entry.map_err(|error| {
            format!(
                "task `{task}`: cannot read {} (input `{pattern}`): {error}",
                path.display()
            )
        })?;
        add(task, pattern, entry.path(), files)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_folders_and_paths_expand_and_what_is_missing_is_named() {
        let base = std::env::temp_dir().join(format!("plait-inputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("data/deep")).unwrap();
        for file in ["a.txt", "b.txt", "c.csv", "data/x", "data/deep/y"] {
            std::fs::write(base.join(file), file).unwrap();
        }
        let names = |patterns: &[&str]| -> Vec<String> {
            let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
            expand("t", &base, &patterns)
                .unwrap()
                .iter()
                .map(|input| {
                    input
                        .path
                        .strip_prefix(&base)
                        .unwrap()
                        .display()
                        .to_string()
                })
                .collect()
        };
        assert_eq!(names(&["*.txt"]), ["a.txt", "b.txt"]);
        assert_eq!(names(&["data"]), ["data/deep/y", "data/x"]);
        assert_eq!(names(&["**/y", "c.csv", "c.csv"]), ["c.csv", "data/deep/y"]);
        let missing = expand("t", &base, &["nope.txt".to_owned()]).unwrap_err();
        assert!(
            missing.contains("task `t`") && missing.contains("`nope.txt` that does not exist"),
            "{missing}"
        );
        let nothing = expand("t", &base, &["*.md".to_owned()]).unwrap_err();
        assert!(nothing.contains("`*.md` that matches nothing"), "{nothing}");
        let _ = std::fs::remove_dir_all(&base);
    }
}
