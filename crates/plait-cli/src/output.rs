//! Standard output that ends plait quietly when its reader has gone.
//!
//! Rust ignores SIGPIPE, so `println!` panics when stdout is a pipe whose reader closed it
//! (`plait graph jobs.toml | head -1`). Restoring the signal would do for the printing,
//! but would also let a write to a crashed worker's pipe kill plait; so the printing
//! itself checks: a closed pipe ends the process with the status SIGPIPE would have given
//! (128 + SIGPIPE), as it ends `cat` or `make`.

use std::fmt;
use std::io::{self, Write};

/// Like `print!`, through [`write`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*))
    };
}

/// Like `println!`, through [`write`].
macro_rules! outln {
    () => {
        $crate::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes `text` to standard output. A reader that has gone ends plait (status 141); any
/// other failure to write is said on standard error, once per write.
pub(crate) fn write(text: fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    match stdout.write_fmt(text) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
            std::process::exit(128 + libc::SIGPIPE);
        }
        Err(error) => eprintln!("plait: cannot write to standard output: {error}"),
    }
}
