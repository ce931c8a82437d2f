//! The job file: a TOML file of command tasks and what each needs, read with every mistake
//! named by line and column.
//!
//! ```toml
//! [tasks.fetch]
//! cmd = "python3 fetch.py"          # a shell command line; or argv = ["prog", "arg"]
//!
//! [tasks.report]
//! argv = ["python3", "report.py"]
//! needs = ["fetch"]
//! env = { LANG = "C" }
//! cwd = "reports"
//! timeout = "30s"                   # or a number of seconds
//! retries = 2
//! retry_delay = "1s"                # before the first retry; doubled each time after
//! cpus = 2                          # counts against --jobs
//! inputs = ["data/*.csv", "lookup/"] # paths, globs, folders: for up-to-date checks
//! outputs = ["out/report.txt"]
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::arrays;
use toml::Spanned;

/// A job file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Format {
    #[serde(default)]
    tasks: BTreeMap<String, Spanned<TaskFormat>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFormat {
    cmd: Option<String>,
    argv: Option<Vec<String>>,
    #[serde(default)]
    needs: Vec<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    timeout: Option<Spanned<TimeoutFormat>>,
    #[serde(default)]
    retries: u32,
    retry_delay: Option<Spanned<TimeoutFormat>>,
    #[serde(default = "one")]
    cpus: Spanned<u32>,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default)]
    outputs: Vec<String>,
    /// Makes the table a task array: see `arrays`.
    each: Option<Spanned<BTreeMap<String, toml::Value>>>,
}

fn one() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TimeoutFormat {
    Seconds(u64),
    Text(String),
}

/// What a task runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Run {
    /// A shell command line (`sh -c`).
    Shell(String),
    /// A program and its arguments.
    Argv(Vec<String>),
}

/// One task of a job file, checked. `parsed` keeps it as JSON, without what is empty (the
/// copy is read on every run).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskSpec {
    pub(crate) name: String,
    pub(crate) run: Run,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) needs: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cwd: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: u32,
    /// The wait before the first retry (doubled for each next one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) retry_delay: Option<Duration>,
    pub(crate) cpus: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) inputs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) outputs: Vec<String>,
    /// Where each of `needs` was written, for messages about it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) needs_at: Vec<Position>,
}

#[cfg(test)]
impl TaskSpec {
    /// A task named `name` that runs `run` with every option at its default (for tests
    /// that build specs without a file).
    pub(crate) fn plain(name: &str, run: Run) -> TaskSpec {
        TaskSpec {
            name: name.to_owned(),
            run,
            needs: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            timeout: None,
            retries: 0,
            retry_delay: None,
            cpus: 1,
            inputs: Vec::new(),
            outputs: Vec::new(),
            needs_at: Vec::new(),
        }
    }
}

/// A line and column in the job file, from 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Position {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

/// Where each line of a text starts, so that an offset's line and column take a binary
/// search rather than a scan from the start (a job of thousands of tasks asks thousands of
/// times).
struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Lines<'a> {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        Lines { text, starts }
    }

    /// The line and column (both from 1, the column in characters) of byte `offset`.
    fn at(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(0, |before| before.chars().count())
            + 1;
        Position { line, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A job file that cannot be used, with where and why.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FileError {
    pub(crate) path: PathBuf,
    pub(crate) at: Option<Position>,
    pub(crate) message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some(at) => write!(f, "{}, {at}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for FileError {}

/// Reads and checks the job file at `path`.
pub(crate) fn read(path: &Path) -> Result<Vec<TaskSpec>, FileError> {
    parse(path, &read_text(path)?)
}

/// A job file's text, as [`parse`] takes it.
pub(crate) fn read_text(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|error| FileError {
        path: path.to_owned(),
        at: None,
        message: format!("cannot read it: {error}"),
    })
}

/// Checks a job file's text (`path` is for messages).
pub(crate) fn parse(path: &Path, text: &str) -> Result<Vec<TaskSpec>, FileError> {
    let error = |at: Option<Position>, message: String| FileError {
        path: path.to_owned(),
        at,
        message,
    };
    let lines = Lines::new(text);
    let format: Format = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|span| lines.at(span.start));
        let said = e.message().trim_end();
        // TOML says "duplicate key" at the repeated name: say which, and what it is.
        let twice = e
            .span()
            .filter(|_| said.contains("duplicate key"))
            .and_then(|span| {
                let name = text
                    .get(span.clone())?
                    .trim_matches(|c| c == '"' || c == '\'');
                let line_start = text[..span.start].rfind('\n').map_or(0, |at| at + 1);
                let table = text[line_start..].trim_start().starts_with("[tasks.");
                Some((name, table))
            });
        let message = match twice {
            Some((name, true)) => format!(
                "task `{name}` is defined twice (a job file holds one [tasks.{name}]); rename \
                 or merge them"
            ),
            Some((name, false)) => format!("`{name}` is given twice; keep one"),
            None => said.to_owned(),
        };
        error(at, message)
    })?;
    if format.tasks.is_empty() {
        return Err(error(
            None,
            "no tasks: a job file holds tables like [tasks.build] with cmd = \"make\"".to_owned(),
        ));
    }
    let mut tasks: Vec<(TaskSpec, Option<arrays::Each>)> = Vec::with_capacity(format.tasks.len());
    for (name, spanned) in format.tasks {
        let at = Some(lines.at(spanned.span().start));
        let task = spanned.into_inner();
        let run = match (task.cmd, task.argv) {
            (Some(line), None) if !line.trim().is_empty() => Run::Shell(line),
            (None, Some(argv)) if argv.first().is_some_and(|p| !p.is_empty()) => Run::Argv(argv),
            (Some(_), Some(_)) => {
                return Err(error(
                    at,
                    format!("task `{name}` has both `cmd` and `argv`; keep one"),
                ));
            }
            (None, None) => {
                return Err(error(
                    at,
                    format!(
                        "task `{name}` runs nothing: give it `cmd = \"...\"` or `argv = [...]`"
                    ),
                ));
            }
            _ => return Err(error(at, format!("task `{name}` has an empty command"))),
        };
        if *task.cpus.get_ref() == 0 {
            let at = Some(lines.at(task.cpus.span().start));
            return Err(error(
                at,
                format!("task `{name}` has cpus = 0; it needs at least 1"),
            ));
        }
        let timeout = time_above_zero(&lines, &name, "a timeout", task.timeout)
            .map_err(|(at, message)| error(at, message))?;
        let retry_delay = time_above_zero(&lines, &name, "a retry_delay", task.retry_delay)
            .map_err(|(at, message)| error(at, message))?;
        let needs_at = task
            .needs
            .iter()
            .map(|need| lines.at(need.span().start))
            .collect();
        let each = task.each.map(|each| arrays::Each {
            at: Some(lines.at(each.span().start)),
            keys: each.into_inner(),
        });
        let spec = TaskSpec {
            name,
            run,
            needs: task.needs.into_iter().map(Spanned::into_inner).collect(),
            env: task.env,
            cwd: task.cwd,
            timeout,
            retries: task.retries,
            retry_delay,
            cpus: task.cpus.into_inner(),
            inputs: task.inputs,
            outputs: task.outputs,
            needs_at,
        };
        tasks.push((spec, each));
    }
    arrays::expand(tasks).map_err(|(at, message)| error(at, message))
}

/// A key holding a time above zero (`what`, for the message), if given; or where it is
/// wrong and why.
fn time_above_zero(
    lines: &Lines<'_>,
    name: &str,
    what: &str,
    value: Option<Spanned<TimeoutFormat>>,
) -> Result<Option<Duration>, (Option<Position>, String)> {
    let Some(spanned) = value else {
        return Ok(None);
    };
    let at = Some(lines.at(spanned.span().start));
    let time = match spanned.into_inner() {
        TimeoutFormat::Seconds(seconds) => Some(Duration::from_secs(seconds)),
        TimeoutFormat::Text(text) => crate::duration::parse(&text).ok(),
    };
    match time {
        Some(time) if !time.is_zero() => Ok(Some(time)),
        _ => Err((
            at,
            format!(
                "task `{name}` has {what} that is not a time above zero; write a number of \
                 seconds, or a number and a unit: \"500ms\", \"30s\", \"5m\", \"1h30m\""
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        #[test]
        fn a_line_index_finds_what_a_scan_from_the_start_finds(
            text in "[a\n\u{e9}]{0,200}",
            cut in 0..400_usize,
        ) {
            let offset = (0..=cut.min(text.len())).rev().find(|&at| text.is_char_boundary(at)).unwrap();
            let before = &text[..offset];
            let line = before.matches('\n').count() + 1;
            let start = before.rfind('\n').map_or(0, |at| at + 1);
            let column = before[start..].chars().count() + 1;
            proptest::prop_assert_eq!(Lines::new(&text).at(offset), Position { line, column });
        }
    }

    use super::*;

    fn parse_str(text: &str) -> Result<Vec<TaskSpec>, FileError> {
        parse(Path::new("job.toml"), text)
    }

    fn message(text: &str) -> String {
        parse_str(text).unwrap_err().to_string()
    }

    #[test]
    fn a_full_task_reads_back() {
        let tasks = parse_str(
            r#"
[tasks.fetch]
cmd = "echo fetch"

[tasks.report]
argv = ["python3", "report.py"]
needs = ["fetch"]
env = { LANG = "C" }
cwd = "reports"
timeout = "1m30s"
retries = 2
cpus = 2
inputs = ["raw.csv"]
outputs = ["out.txt"]
"#,
        )
        .unwrap();
        assert_eq!(tasks.len(), 2);
        let report = &tasks[1];
        assert_eq!(report.name, "report");
        assert_eq!(
            report.run,
            Run::Argv(vec!["python3".into(), "report.py".into()])
        );
        assert_eq!(report.needs, ["fetch"]);
        assert_eq!(
            report.needs_at[0],
            Position {
                line: 7,
                column: 10
            }
        );
        assert_eq!(report.timeout, Some(Duration::from_secs(90)));
        assert_eq!((report.retries, report.cpus), (2, 2));
        assert_eq!(tasks[0].cpus, 1);
    }

    #[test]
    fn mistakes_are_named_with_line_and_column() {
        let unknown = message("[tasks.a]\ncmd = \"x\"\ncommand = \"y\"\n");
        assert!(unknown.contains("line 3, column 1"), "{unknown}");
        assert!(unknown.contains("command"), "{unknown}");

        let wrong_type = message("[tasks.a]\ncmd = \"x\"\nretries = \"two\"\n");
        assert!(wrong_type.contains("line 3"), "{wrong_type}");

        let duplicate = message("[tasks.a]\ncmd = \"x\"\n[tasks.a]\ncmd = \"y\"\n");
        assert!(duplicate.contains("line 3"), "{duplicate}");
        assert!(
            duplicate.contains("task `a` is defined twice"),
            "{duplicate}"
        );

        let both = message("[tasks.a]\ncmd = \"x\"\nargv = [\"y\"]\n");
        assert!(both.contains("both `cmd` and `argv`"), "{both}");

        let neither = message("[tasks.a]\nneeds = []\n");
        assert!(neither.contains("runs nothing"), "{neither}");

        let zero = message("[tasks.a]\ncmd = \"x\"\ntimeout = 0\n");
        assert!(zero.contains("above zero"), "{zero}");
        let timeout = message("[tasks.a]\ncmd = \"x\"\ntimeout = \"soon\"\n");
        assert!(
            timeout.contains("line 3, column 11") && timeout.contains("30s"),
            "{timeout}"
        );

        let cpus = message("[tasks.a]\ncmd = \"x\"\ncpus = 0\n");
        assert!(
            cpus.contains("line 3, column 8") && cpus.contains("at least 1"),
            "{cpus}"
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let tasks = parse_str("[tasks.c]\ncmd = 'x'\nneeds = [\"é\", \"x\"]\n").unwrap();
        assert_eq!(
            tasks[0].needs_at[1],
            Position {
                line: 3,
                column: 15
            }
        );
    }

    #[test]
    fn an_empty_file_says_what_a_job_file_holds() {
        for text in ["", "# nothing yet\n", "[tasks]\n"] {
            let empty = message(text);
            assert!(
                empty.contains("no tasks") && empty.contains("[tasks."),
                "{empty}"
            );
        }
    }
}
