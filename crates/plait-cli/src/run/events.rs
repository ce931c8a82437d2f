//! `plait run --json`: one JSON object per line on standard output for each thing that
//! happens to a task, as it happens, then one `summary` object. Messages for people
//! (warnings, the interruption notice) stay on standard error.
//!
//! Every object has `event` and `at` (seconds since the run started); those about a task
//! have `task` and, once it runs, `attempt`:
//!
//! | `event` | more fields |
//! |---|---|
//! | `queued` | all it needs has succeeded; it waits for room |
//! | `started` | |
//! | `output` | `stream` (`stdout` or `stderr`), `line` (without its newline) |
//! | `finished` | `status` (`ok`, or `up to date`: not run), `elapsed` |
//! | `failed` | `error`, `elapsed`, `retrying` (whether it runs again) |
//! | `cancelled` | `elapsed`: stopped by an interruption or another task's failure |
//! | `skipped` | `reason`: it will not run |
//! | `summary` | `tasks` (each task's row), `counts`, `wall`, `job_file_changed`, `ok` |

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::summary::Summary;

/// Writes a run's events.
pub(super) struct Events {
    started: Instant,
}

impl Events {
    pub(super) fn new() -> Events {
        Events {
            started: Instant::now(),
        }
    }

    /// One event about `task`'s run `attempt` (0: not started), with `fields` (an object).
    pub(super) fn task(&self, event: &str, task: &str, attempt: u32, fields: Value) {
        let mut object = Map::new();
        object.insert("task".to_owned(), task.into());
        if attempt > 0 {
            object.insert("attempt".to_owned(), attempt.into());
        }
        if let Value::Object(fields) = fields {
            object.extend(fields);
        }
        self.write(event, object);
    }

    /// One line of a task's output.
    pub(super) fn output(&self, task: &str, stream: &str, line: &[u8]) {
        self.task(
            "output",
            task,
            0,
            json!({ "stream": stream, "line": String::from_utf8_lossy(line) }),
        );
    }

    /// The last line.
    pub(super) fn summary(&self, summary: &Summary) {
        match serde_json::to_value(summary) {
            Ok(Value::Object(object)) => self.write("summary", object),
            // A summary is a struct of plain fields: this does not happen.
            other => eprintln!("plait: cannot write the summary as JSON: {other:?}"),
        }
    }

    fn write(&self, event: &str, fields: Map<String, Value>) {
        let mut object = Map::with_capacity(fields.len() + 2);
        object.insert("event".to_owned(), event.into());
        object.insert("at".to_owned(), seconds(self.started.elapsed()));
        object.extend(fields);
        // One write per line: lines from tasks running at once never interleave.
        outln!("{}", Value::Object(object));
    }
}

/// A duration as JSON: seconds, to the microsecond.
pub(super) fn seconds(duration: Duration) -> Value {
    json!((duration.as_micros() as f64) / 1e6)
}
