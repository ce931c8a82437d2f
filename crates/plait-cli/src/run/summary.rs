//! How each task of a run ended: worked out once from the scheduler's results and the
//! run's books, then shown as a table (for people) or as one JSON object (`--json`).

use std::path::PathBuf;
use std::sync::PoisonError;
use std::time::Duration;

use comfy_table::{Cell, CellAlignment, Table, presets};
use plait::Error;
use plait::graph::{Node, NodeStatus, Results};
use plait::process::CommandOutput;
use serde::Serialize;

use super::{Job, reason};
use crate::color::Paint;

/// How one task ended.
#[derive(Serialize)]
pub(super) struct Row {
    pub(super) task: String,
    /// `ok`, `up to date`, `failed`, `cancelled` or `skipped`.
    pub(super) status: &'static str,
    /// Times its command was started in this run.
    pub(super) attempts: u32,
    /// Time its commands ran, all attempts together.
    #[serde(serialize_with = "seconds")]
    pub(super) elapsed: Duration,
    /// Where its command ran (`process`: a child of this run; `queue`: a `plait worker`),
    /// or `None` if it did not run.
    pub(super) strand: Option<&'static str>,
    /// Why it ended so, where that is not plain.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) detail: String,
    /// A failed task's error output, where it was kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) log: Option<PathBuf>,
}

/// How the whole run ended.
#[derive(Serialize)]
pub(super) struct Summary {
    /// Whether every task succeeded (ran, or was up to date).
    pub(super) ok: bool,
    /// Tasks by status, in the order the statuses first appear among the tasks (sorted by
    /// name).
    #[serde(serialize_with = "as_object")]
    pub(super) counts: Vec<(&'static str, usize)>,
    #[serde(serialize_with = "seconds")]
    pub(super) wall: Duration,
    /// Whether the job file changed while the run ran (the run used it as first read).
    pub(super) job_file_changed: bool,
    pub(super) tasks: Vec<Row>,
}

fn seconds<S: serde::Serializer>(duration: &Duration, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_f64(duration.as_micros() as f64 / 1e6)
}

fn as_object<S: serde::Serializer>(
    counts: &[(&'static str, usize)],
    to: S,
) -> Result<S::Ok, S::Error> {
    to.collect_map(counts.iter().copied())
}

impl Job {
    /// Each task's row, sorted by name.
    pub(super) fn summary(
        &self,
        results: &Results,
        nodes: &[Node<CommandOutput>],
        wall: Duration,
        job_file_changed: bool,
    ) -> Summary {
        let books = self.books();
        let interrupted = *self
            .interrupted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut order: Vec<usize> = (0..self.tasks.len()).collect();
        order.sort_by(|&a, &b| self.tasks[a].name.cmp(&self.tasks[b].name));
        let mut rows = Vec::with_capacity(order.len());
        for task in order {
            let node = nodes[task];
            let book = &books[task];
            let name = self.tasks[task].name.as_str();
            let error = results.error(node.id());
            let mut log = None;
            let (status, detail) = match results.status(node.id()) {
                NodeStatus::Succeeded => match self.marks.get(task) {
                    Some(mark) if !mark.ran => {
                        ("up to date", "succeeded before; not run again".to_owned())
                    }
                    _ => ("ok", String::new()),
                },
                NodeStatus::Failed => {
                    let kept = self
                        .journal
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .log_of(name, "stderr");
                    log = kept.exists().then_some(kept);
                    ("failed", error.as_ref().map(reason).unwrap_or_default())
                }
                NodeStatus::Skipped => (
                    "skipped",
                    error
                        .as_ref()
                        .map(|e| self.skip_reason(e))
                        .unwrap_or_default(),
                ),
                // Started and stopped, or never started.
                _ if book.attempts > 0 => (
                    "cancelled",
                    match interrupted {
                        Some(signal) => format!("stopped: plait was {signal}"),
                        None => "stopped at another task's failure".to_owned(),
                    },
                ),
                _ => ("skipped", self.skip_reason(&Error::Cancelled)),
            };
            let strand = match book.attempts {
                0 => None,
                _ if self.queued => Some("queue"),
                _ => Some("process"),
            };
            rows.push(Row {
                task: name.to_owned(),
                status,
                attempts: book.attempts,
                elapsed: book.elapsed,
                strand,
                detail,
                log,
            });
        }
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        for row in &rows {
            match counts.iter_mut().find(|(seen, _)| *seen == row.status) {
                Some((_, n)) => *n += 1,
                None => counts.push((row.status, 1)),
            }
        }
        let ok = counts
            .iter()
            .all(|(status, _)| matches!(*status, "ok" | "up to date"));
        Summary {
            ok,
            counts,
            wall,
            job_file_changed,
            tasks: rows,
        }
    }
}

/// Past this many up-to-date tasks, the table leaves them out and says how many: a table of
/// thousands of tasks that did nothing hides the few that did (make says nothing of them).
const UP_TO_DATE_LISTED: usize = 50;

impl Summary {
    /// The table, then a line of counts: `3 tasks in 1.2s: 2 ok, 1 failed`.
    pub(super) fn render(&self, paint: Paint) -> String {
        let up_to_date = self
            .tasks
            .iter()
            .filter(|row| row.status == "up to date")
            .count();
        let listed: Vec<&Row> = self
            .tasks
            .iter()
            .filter(|row| up_to_date <= UP_TO_DATE_LISTED || row.status != "up to date")
            .collect();
        let mut out = String::from("\n");
        if !listed.is_empty() {
            out.push_str(&table(&listed, paint));
        }
        if listed.len() < self.tasks.len() {
            out.push_str(&format!(
                "({up_to_date} tasks up to date are not listed: they did not run; \
                 `plait run --json` lists every task)\n"
            ));
        }
        let total = self.tasks.len();
        let counted: Vec<String> = self
            .counts
            .iter()
            .map(|(status, n)| format!("{n} {status}"))
            .collect();
        out.push_str(&format!(
            "\n{total} task{} in {:.1?}: {}\n",
            if total == 1 { "" } else { "s" },
            self.wall,
            counted.join(", ")
        ));
        out
    }
}

/// The rows laid out under a header, each line ending in a newline.
fn table(rows: &[&Row], paint: Paint) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_header(["task", "status", "attempts", "time", "strand", "detail"]);
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    for row in rows {
        let detail = match &row.log {
            Some(log) => format!("{} (output in {})", row.detail, log.display()),
            None => row.detail.clone(),
        };
        table.add_row([
            Cell::new(&row.task),
            // Painted below, once laid out: the table measures plain text.
            Cell::new(row.status),
            Cell::new(row.attempts).set_alignment(CellAlignment::Right),
            Cell::new(match row.strand {
                Some(_) => format!("{:.1?}", row.elapsed),
                None => "-".to_owned(),
            })
            .set_alignment(CellAlignment::Right),
            Cell::new(row.strand.unwrap_or("-")),
            Cell::new(detail),
        ]);
    }
    let mut out = String::new();
    let mut lines = table.lines();
    if let Some(header) = lines.next() {
        out.push_str(header.trim_end());
        out.push('\n');
    }
    for (line, row) in lines.zip(rows) {
        // The preset pads every cell, the last one too.
        out.push_str(&paint_status(line.trim_end(), row, paint));
        out.push('\n');
    }
    out
}

/// `line`, a row of the table for `row`, with its status painted. The row starts with the
/// task's name (the first column, never wrapped: the table has no width to fit), then the
/// padding, then the status.
fn paint_status(line: &str, row: &Row, paint: Paint) -> String {
    let painted = paint.status(row.status, row.status);
    if painted == row.status {
        return line.to_owned();
    }
    let Some(after_name) = line.strip_prefix(row.task.as_str()) else {
        return line.to_owned();
    };
    let status_at = line.len() - after_name.trim_start().len();
    match line[status_at..].strip_prefix(row.status) {
        Some(rest) => format!("{}{painted}{rest}", &line[..status_at]),
        None => line.to_owned(),
    }
}
