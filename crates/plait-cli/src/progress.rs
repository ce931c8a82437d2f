//! What `plait run` shows while it runs: live bars on a terminal (the whole run with its
//! ETA, and a line per running task), plain lines otherwise (a log, a CI job, a pipe).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

pub(crate) enum Progress {
    Bars {
        multi: MultiProgress,
        overall: ProgressBar,
        running: HashMap<usize, ProgressBar>,
    },
    Lines,
}

impl Progress {
    /// Bars if standard output is a terminal, else lines.
    pub(crate) fn new(total: usize) -> Progress {
        if !std::io::stdout().is_terminal() {
            return Progress::Lines;
        }
        let multi = MultiProgress::new();
        let overall = multi.add(ProgressBar::new(total as u64));
        overall.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} tasks  {elapsed_precise}  eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Progress::Bars {
            multi,
            overall,
            running: HashMap::new(),
        }
    }

    pub(crate) fn started(&mut self, task: usize, name: &str, attempt: u32) {
        let what = if attempt > 1 {
            format!("{name} (attempt {attempt})")
        } else {
            name.to_owned()
        };
        match self {
            Progress::Bars { multi, running, .. } => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(what);
                bar.enable_steady_tick(Duration::from_millis(120));
                // A retry replaces the failed attempt's line.
                if let Some(old) = running.insert(task, bar) {
                    old.finish_and_clear();
                    multi.remove(&old);
                }
            }
            Progress::Lines => outln!("[{name}] started{}", attempt_note(attempt)),
        }
    }

    /// `task` ended (or was found up to date, or skipped): `how` says which.
    pub(crate) fn ended(&mut self, task: usize, name: &str, how: &str) {
        match self {
            Progress::Bars {
                multi,
                overall,
                running,
            } => {
                if let Some(bar) = running.remove(&task) {
                    bar.finish_and_clear();
                    multi.remove(&bar);
                }
                overall.inc(1);
            }
            Progress::Lines => outln!("[{name}] {how}"),
        }
    }

    /// Prints a line of a task's output without tearing the bars.
    pub(crate) fn out(&self, line: &str) {
        match self {
            Progress::Bars { multi, .. } => multi.suspend(|| outln!("{line}")),
            Progress::Lines => outln!("{line}"),
        }
    }

    /// Like [`out`](Self::out), to standard error.
    pub(crate) fn err(&self, line: &str) {
        match self {
            Progress::Bars { multi, .. } => multi.suspend(|| eprintln!("{line}")),
            Progress::Lines => eprintln!("{line}"),
        }
    }

    pub(crate) fn finish(&self) {
        if let Progress::Bars { overall, .. } = self {
            overall.finish_and_clear();
        }
    }
}

fn attempt_note(attempt: u32) -> String {
    if attempt > 1 {
        format!(" (attempt {attempt})")
    } else {
        String::new()
    }
}
