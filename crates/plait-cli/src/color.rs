//! Colour in what plait prints: on a terminal unless `NO_COLOR` is set (or `TERM` is
//! `dumb`), or as `--color always` / `--color never` says.

use std::io::IsTerminal;

/// `--color`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set.
    #[default]
    Auto,
    Always,
    Never,
}

/// Paints words, or leaves them as they are.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Paint(bool);

impl Paint {
    /// Whether to paint standard output, as `choice` and the environment say.
    pub(crate) fn for_stdout(choice: ColorChoice) -> Paint {
        let env = |key| std::env::var_os(key);
        Paint(match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal()
                    && env("NO_COLOR").is_none_or(|v| v.is_empty())
                    && env("TERM").is_none_or(|term| term != "dumb")
            }
        })
    }

    /// Leaves every word as it is.
    pub(crate) fn never() -> Paint {
        Paint(false)
    }

    /// `[name]`, in a colour of the task's own (ten in turn, as `docker compose` colours
    /// its services' names), so that interleaved lines are told apart at a glance.
    pub(crate) fn prefix(self, name: &str, task: usize) -> String {
        const CODES: [&str; 10] = ["36", "33", "32", "35", "34", "96", "93", "92", "95", "94"];
        if !self.0 {
            return format!("[{name}]");
        }
        format!("\x1b[{}m[{name}]\x1b[0m", CODES[task % CODES.len()])
    }

    /// `text` (a task's status, padded or not) in the colour of `status`: green for ok,
    /// red for failed, yellow for cancelled and skipped, dim for up to date.
    pub(crate) fn status(self, text: &str, status: &str) -> String {
        let code = match status {
            "ok" => "32",
            "failed" => "1;31",
            "cancelled" | "skipped" => "33",
            "up to date" => "2",
            _ => "",
        };
        if !self.0 || code.is_empty() {
            return text.to_owned();
        }
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}
