//! Finding a command's program on `PATH` before it starts, as make does.
//!
//! Left to the C library, a program named without a `/` is found by trying `execve` in
//! each folder of `PATH` in turn, in the child, while the parent's thread waits for the
//! child to leave its memory (`vfork`); with a long `PATH` that is several failed
//! `execve`s a command. A `stat` each in the parent is cheaper, and the child then runs
//! the program at once. Where the answer is not certain (a relative folder on `PATH`, no
//! `PATH`, nothing found), the search is left to the C library as before, so what runs
//! and the errors a user sees do not change.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::fs::Access;

/// What to start for `program`: the file it names on the `PATH` the command will run with
/// (`env`'s, if it sets one), or `program` itself for the C library to find.
pub(super) fn find(program: &str, env: &[(String, String)]) -> OsString {
    let path = match env.iter().rev().find(|(key, _)| key == "PATH") {
        Some((_, path)) => Some(OsString::from(path)),
        None => std::env::var_os("PATH"),
    };
    path.and_then(|path| search(program, &path))
        .unwrap_or_else(|| OsString::from(program))
}

/// The first executable file called `program` in `path`'s folders, if every folder before
/// it is absolute.
fn search(program: &str, path: &OsStr) -> Option<OsString> {
    if program.is_empty() || program.contains('/') {
        return None;
    }
    for folder in std::env::split_paths(path) {
        // Relative to the child's working folder, at its exec: not ours to judge.
        if !folder.is_absolute() {
            return None;
        }
        let file = folder.join(program);
        if is_executable(&file) {
            return Some(file.into_os_string());
        }
    }
    None
}

/// A regular file this process may execute (`execvp` goes on past one it may not).
fn is_executable(file: &Path) -> bool {
    std::fs::metadata(file).is_ok_and(|meta| {
        meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
            && rustix::fs::access(file, Access::EXEC_OK).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_on_an_absolute_path_is_found_in_the_first_folder_that_has_it() {
        let found = search("sh", OsStr::new("/nonexistent-plait-dir:/bin:/usr/bin"));
        assert_eq!(found, Some(OsString::from("/bin/sh")));
    }

    #[test]
    fn names_with_a_slash_and_relative_folders_are_left_to_the_c_library() {
        assert_eq!(search("./sh", OsStr::new("/bin")), None);
        assert_eq!(search("sh", OsStr::new("relative:/bin")), None);
        assert_eq!(search("sh", OsStr::new(":/bin")), None);
        assert_eq!(search("", OsStr::new("/bin")), None);
    }

    #[test]
    fn a_file_that_cannot_be_executed_is_passed_over() {
        let dir = std::env::temp_dir().join(format!("plait-program-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("sh");
        std::fs::write(&plain, "not a program").unwrap();
        let path = std::env::join_paths([dir.as_path(), Path::new("/bin")]).unwrap();
        assert_eq!(search("sh", &path), Some(OsString::from("/bin/sh")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_commands_own_path_decides() {
        let env = [("PATH".to_owned(), "/nonexistent-plait-dir".to_owned())];
        assert_eq!(find("sh", &env), OsString::from("sh"));
        let env = [("PATH".to_owned(), "/bin".to_owned())];
        assert_eq!(find("sh", &env), OsString::from("/bin/sh"));
    }
}
