//! A task's inputs, as the files whose content its fingerprint covers: the paths and globs
//! it declares (`**` too), directories by everything in them, and the outputs of the tasks
//! it needs. A declared input that is not there is an error, not a silent rerun.

use std::fs::Metadata;
use std::path::{Path, PathBuf};

/// An input file, with what `stat` said of it when it was found (the journal's digests
/// tell a change by it).
#[derive(Clone, Debug)]
pub(crate) struct Input {
    pub(crate) path: PathBuf,
    pub(crate) meta: Metadata,
}

/// The files a task's fingerprint covers, sorted by path and without repeats: what its
/// `declared` inputs name (paths, globs, folders), and what each task it needs made. A
/// need's outputs are taken as that need found them where it did (`Made::found`: a need
/// that did not run left them as they were), and looked up here otherwise.
///
/// # Errors
///
/// A path that does not exist, a glob that matches nothing or is not a glob, or a folder
/// that cannot be read; named, with the task.
pub(crate) fn gather<'a>(
    task: &str,
    base: &Path,
    declared: &[String],
    needs: impl IntoIterator<Item = Made<'a>>,
) -> Result<Vec<Input>, String> {
    let mut files = Vec::new();
    expand_into(task, base, declared, &mut files)?;
    for made in needs {
        match made.found {
            Some(found) => files.extend(found.iter().cloned()),
            None => expand_into(task, base, made.outputs, &mut files)?,
        }
    }
    Ok(settle(files))
}

/// What a task a task needs made: its declared `outputs`, and those outputs as it found
/// them, if it found them all as plain files and did not run.
#[derive(Clone, Copy)]
pub(crate) struct Made<'a> {
    pub(crate) outputs: &'a [String],
    pub(crate) found: Option<&'a [Input]>,
}

/// What `stat` found of a task's outputs.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    /// The first output that is not there (the task must run to make it).
    pub(crate) missing: Option<usize>,
    /// Every output, as an input of the tasks that need this one, where each is a plain
    /// file named without a glob (a folder or a glob is expanded by each such task).
    pub(crate) found: Option<Vec<Input>>,
}

impl Outputs {
    /// `stat`s each of `outputs` in `base`, once.
    pub(crate) fn find(base: &Path, outputs: &[String]) -> Outputs {
        let mut found = Some(Vec::with_capacity(outputs.len()));
        for (at, output) in outputs.iter().enumerate() {
            let path = base.join(output);
            match std::fs::metadata(&path) {
                Err(_) => {
                    return Outputs {
                        missing: Some(at),
                        found: None,
                    };
                }
                Ok(meta) if meta.is_dir() || output.contains(['*', '?', '[']) => found = None,
                Ok(meta) => {
                    if let Some(found) = &mut found {
                        found.push(Input { path, meta });
                    }
                }
            }
        }
        Outputs {
            missing: None,
            found,
        }
    }
}

/// Adds what `patterns` name in `base` to `files`.
fn expand_into(
    task: &str,
    base: &Path,
    patterns: &[String],
    files: &mut Vec<Input>,
) -> Result<(), String> {
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
                add(task, pattern, found, files)?;
            }
            if files.len() == before {
                return Err(format!(
                    "task `{task}` has an input `{pattern}` that matches nothing in {}",
                    base.display()
                ));
            }
        } else {
            let path = base.join(pattern);
            add(task, pattern, path, files)?;
        }
    }
    Ok(())
}

/// `files` sorted by path, without repeats.
fn settle(mut files: Vec<Input>) -> Vec<Input> {
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    files
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
            gather("t", &base, &patterns, [])
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
        let missing = gather("t", &base, &["nope.txt".to_owned()], []).unwrap_err();
        assert!(
            missing.contains("task `t`") && missing.contains("`nope.txt` that does not exist"),
            "{missing}"
        );
        let nothing = gather("t", &base, &["*.md".to_owned()], []).unwrap_err();
        assert!(nothing.contains("`*.md` that matches nothing"), "{nothing}");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn outputs_are_found_once_and_taken_as_found_by_what_needs_them() {
        let base = std::env::temp_dir().join(format!("plait-outputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("folder")).unwrap();
        std::fs::write(base.join("a.txt"), "a").unwrap();
        std::fs::write(base.join("folder/b"), "b").unwrap();
        let list =
            |names: &[&str]| -> Vec<String> { names.iter().map(|n| (*n).to_owned()).collect() };

        let missing = Outputs::find(&base, &list(&["a.txt", "gone.txt"]));
        assert_eq!(missing.missing, Some(1));
        assert!(missing.found.is_none());
        // A folder is there, but each task that needs it lists it for itself.
        let folder = Outputs::find(&base, &list(&["a.txt", "folder"]));
        assert_eq!((folder.missing, folder.found.is_none()), (None, true));

        let outputs = list(&["a.txt"]);
        let found = Outputs::find(&base, &outputs).found.expect("a plain file");
        assert_eq!(found.len(), 1);
        // Removed after it was found: a need that did not run is taken as it found it...
        std::fs::remove_file(base.join("a.txt")).unwrap();
        let taken = gather(
            "t",
            &base,
            &list(&["folder"]),
            [Made {
                outputs: &outputs,
                found: Some(&found),
            }],
        )
        .unwrap();
        let names: Vec<_> = taken
            .iter()
            .map(|input| input.path.strip_prefix(&base).unwrap())
            .collect();
        assert_eq!(names, [Path::new("a.txt"), Path::new("folder/b")]);
        // ...and one without what it found is looked up again.
        let again = gather(
            "t",
            &base,
            &[],
            [Made {
                outputs: &outputs,
                found: None,
            }],
        )
        .unwrap_err();
        assert!(again.contains("`a.txt` that does not exist"), "{again}");
        let _ = std::fs::remove_dir_all(&base);
    }
}
