//! What `plait run` shows while it runs: live bars on a terminal (the whole run with its
//! ETA, and a line per running task), plain lines otherwise (a log, a CI job, a pipe).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::color::Paint;

pub(crate) struct Progress {
    shown: Shown,
    paint: Paint,
}

enum Shown {
    Bars {
        multi: MultiProgress,
        overall: ProgressBar,
        running: HashMap<usize, ProgressBar>,
    },
    Lines,
    /// Nothing about tasks (`--json` says it instead); messages still go to standard error.
    Quiet,
}

impl Progress {
    /// Bars if standard output is a terminal, else lines; task names and statuses
    /// coloured as `paint` says.
    pub(crate) fn new(total: usize, paint: Paint) -> Progress {
        if !std::io::stdout().is_terminal() {
            return Progress {
                shown: Shown::Lines,
                paint,
            };
        }
        let multi = MultiProgress::new();
        let overall = multi.add(ProgressBar::new(total as u64));
        overall.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} tasks  {elapsed_precise}  eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Progress {
            shown: Shown::Bars {
                multi,
                overall,
                running: HashMap::new(),
            },
            paint,
        }
    }

    /// Nothing about tasks (`--json` says it instead); messages go to standard error.
    pub(crate) fn quiet() -> Progress {
        Progress {
            shown: Shown::Quiet,
            paint: Paint::never(),
        }
    }

    pub(crate) fn started(&mut self, task: usize, name: &str, attempt: u32) {
        let what = if attempt > 1 {
            format!("{name} (attempt {attempt})")
        } else {
            name.to_owned()
        };
        let prefix = self.paint.prefix(name, task);
        match &mut self.shown {
            Shown::Bars { multi, running, .. } => {
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
            Shown::Lines => outln!("{prefix} started{}", attempt_note(attempt)),
            Shown::Quiet => {}
        }
    }

    /// `task` ended with `status` (`ok`, `failed`, `up to date`, ...), `detail` after it.
    pub(crate) fn ended(&mut self, task: usize, name: &str, status: &str, detail: &str) {
        match &mut self.shown {
            Shown::Bars {
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
            Shown::Lines => outln!(
                "{} {}{detail}",
                self.paint.prefix(name, task),
                self.paint.status(status, status)
            ),
            Shown::Quiet => {}
        }
    }

    /// Prints a line of `task`'s output after its name, without tearing the bars: to
    /// standard error if `to_stderr`.
    pub(crate) fn task_line(&self, task: usize, name: &str, text: &str, to_stderr: bool) {
        let line = format!("{} {text}", self.paint.prefix(name, task));
        if to_stderr {
            self.err(&line);
        } else {
            match &self.shown {
                Shown::Bars { multi, .. } => multi.suspend(|| outln!("{line}")),
                Shown::Lines => outln!("{line}"),
                Shown::Quiet => {}
            }
        }
    }

    /// Prints a message to standard error without tearing the bars.
    pub(crate) fn err(&self, line: &str) {
        match &self.shown {
            Shown::Bars { multi, .. } => multi.suspend(|| eprintln!("{line}")),
            Shown::Lines | Shown::Quiet => eprintln!("{line}"),
        }
    }

    /// How task names and statuses are coloured.
    pub(crate) fn paint(&self) -> Paint {
        self.paint
    }

    pub(crate) fn finish(&self) {
        if let Shown::Bars { overall, .. } = &self.shown {
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
