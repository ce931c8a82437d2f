//! The decision matrix, executable: measure a piece of work, say what bounds it, and which
//! strand (and how many at once) fits it.
//!
//! Python's rule of thumb is "processes for CPU-bound work, threads for I/O-bound work,
//! coroutines for non-blocking I/O", and the first half is about the GIL. In Rust threads
//! have no GIL: CPU-bound work goes to the thread strand, I/O-bound waits to the coroutine
//! strand, and processes earn their cost by isolation (a crash, a leak, a hang, a hard
//! limit), not by parallelism. What bounds a given piece of work is measured, not guessed:
//!
//! * [`profile_command`] runs a command and measures its CPU time against its wall time
//!   (children included), its context switches, peak memory and bytes read and written;
//! * [`profile`] does the same for a closure on the current thread (its thread's CPU clock),
//!   and [`profile_task`] for a registered task with a sample argument;
//! * [`Profile::advice`] classifies the work ([`Bound`]) and recommends a strand and a
//!   concurrency level, with the numbers behind it;
//! * [`Strand::Auto`] ([`Runtime::spawn_on`](crate::Runtime::spawn_on))
//!   measures a closure's first calls and routes the rest to the strand that fits, and
//!   [`Runtime::explain_auto`](crate::Runtime::explain_auto) says why.
//!
//! # Examples
//!
//! ```
//! use plait::advise::{Bound, profile};
//!
//! let (sum, measured) = profile(|| (0..20_000_000u64).fold(0, |a, x| a ^ x.wrapping_mul(31)));
//! # let _ = sum;
//! let advice = measured.advice(4);
//! assert_eq!(advice.bound, Bound::Cpu);
//! assert_eq!(advice.strand, plait::Strand::Thread);
//! println!("{advice}");
//! ```

pub mod auto;
mod measure;

use std::fmt;
use std::time::Duration;

pub use auto::Decision;
pub use measure::{profile, profile_command, profile_task, profile_task_by_name};

use crate::Strand;

/// What one run of a piece of work cost.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Profile {
    /// Wall-clock time, start to end.
    pub wall: Duration,
    /// CPU time in user mode (of the command and the children it waited for).
    pub user: Duration,
    /// CPU time in the kernel, likewise.
    pub system: Duration,
    /// Time it was ready to run but waited for a core (for a command, its main process's):
    /// left out of the wall time the CPU share is taken over, so that a busy machine does
    /// not make computing look like waiting.
    pub run_queue: Duration,
    /// Times the work gave up the CPU to wait (for I/O, a timer, a lock): many per CPU
    /// second mark work that waits.
    pub voluntary_switches: u64,
    /// Times the scheduler took the CPU from it: many mark work that wanted more CPU than
    /// it got.
    pub involuntary_switches: u64,
    /// Peak resident memory of the largest process, in bytes (commands only; see
    /// [`profile_command`]).
    pub peak_rss: Option<u64>,
    /// Bytes read, through any file descriptor (commands only).
    pub read_bytes: Option<u64>,
    /// Bytes written, likewise.
    pub written_bytes: Option<u64>,
}

/// What bounds a piece of work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Bound {
    /// It computes most of the time: CPU time close to (or, with threads, over) wall time.
    Cpu,
    /// It waits most of the time: little CPU time for its wall time.
    Io,
    /// Both, in measure.
    Mixed,
}

impl Bound {
    /// `cpu-bound`, `io-bound` or `mixed`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Bound::Cpu => "cpu-bound",
            Bound::Io => "io-bound",
            Bound::Mixed => "mixed",
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// At or over this share of CPU time to wall time, work is CPU-bound.
pub const CPU_BOUND_SHARE: f64 = 0.7;
/// At or under this share, work is I/O-bound.
pub const IO_BOUND_SHARE: f64 = 0.3;

impl Profile {
    /// CPU time, user and kernel.
    #[must_use]
    pub fn cpu(&self) -> Duration {
        self.user + self.system
    }

    /// CPU time over wall time (less the time spent waiting for a core): about 1 for one
    /// busy thread, more for several, near 0 for work that waits.
    #[must_use]
    pub fn cpu_share(&self) -> f64 {
        let wall = if self.run_queue.is_zero() {
            self.wall
        } else {
            // The kernel updates the run-queue time lazily: over a few milliseconds it can
            // exceed what was not spent on the CPU. It never takes away computing time.
            self.wall
                .saturating_sub(self.run_queue)
                .max(self.cpu().min(self.wall))
        };
        if wall.is_zero() {
            return 0.0;
        }
        self.cpu().as_secs_f64() / wall.as_secs_f64()
    }

    /// What bounds the work, from its CPU share: CPU-bound at [`CPU_BOUND_SHARE`] or
    /// more, I/O-bound at [`IO_BOUND_SHARE`] or less, mixed between.
    #[must_use]
    pub fn bound(&self) -> Bound {
        let share = self.cpu_share();
        if share >= CPU_BOUND_SHARE {
            Bound::Cpu
        } else if share <= IO_BOUND_SHARE {
            Bound::Io
        } else {
            Bound::Mixed
        }
    }

    /// The strand and concurrency that fit the work on a machine with `cores` cores, with
    /// the reasons.
    ///
    /// * CPU-bound: the thread strand, one task per core (per `cpu_share` cores, rounded,
    ///   for work that is itself parallel): more would only queue.
    /// * I/O-bound: the coroutine strand, as many at once as keep the cores busy while the
    ///   rest wait: `cores / cpu_share`, at most [`MAX_CONCURRENCY`].
    /// * Mixed: the thread strand with more tasks than cores, by the same rule, so that one
    ///   task's waits are another's computing.
    #[must_use]
    pub fn advice(&self, cores: usize) -> Advice {
        let cores = cores.max(1);
        let share = self.cpu_share();
        let bound = self.bound();
        let concurrency = match bound {
            // Whole cores each task keeps busy: a share a little above one (children that
            // overlap their parent for a moment, clock granularity) is still one core.
            Bound::Cpu => (cores as f64 / share.round().max(1.0)).floor().max(1.0) as usize,
            Bound::Io | Bound::Mixed => {
                let per_core = 1.0 / share.max(1.0 / MAX_CONCURRENCY as f64);
                // At least one per core, at most MAX_CONCURRENCY, even for more cores.
                ((cores as f64 * per_core).ceil() as usize)
                    .max(cores)
                    .min(MAX_CONCURRENCY)
            }
        };
        let strand = match bound {
            Bound::Cpu | Bound::Mixed => Strand::Thread,
            Bound::Io => Strand::Coroutine,
        };
        let mut reasons = vec![format!(
            "CPU {:.3} s over {:.3} s wall: a CPU share of {share:.2} ({})",
            self.cpu().as_secs_f64(),
            self.wall.as_secs_f64(),
            match bound {
                Bound::Cpu => format!("at least {CPU_BOUND_SHARE}: it computes"),
                Bound::Io => format!("at most {IO_BOUND_SHARE}: it waits"),
                Bound::Mixed => format!("between {IO_BOUND_SHARE} and {CPU_BOUND_SHARE}"),
            }
        )];
        let cpu_s = self.cpu().as_secs_f64().max(1e-3);
        if self.voluntary_switches > 0 || self.involuntary_switches > 0 {
            reasons.push(format!(
                "{} voluntary context switches ({:.0} per CPU second: waits), {} involuntary (the CPU taken from it)",
                self.voluntary_switches,
                self.voluntary_switches as f64 / cpu_s,
                self.involuntary_switches
            ));
        }
        reasons.push(match bound {
            Bound::Cpu if share >= 1.5 => format!(
                "it already keeps {share:.1} cores busy: run {concurrency} at once on {cores} cores"
            ),
            Bound::Cpu => format!(
                "Rust threads have no GIL: one per core, {concurrency} at once on {cores} cores; more would only queue"
            ),
            Bound::Io => format!(
                "each keeps a core {:.0}% busy: {concurrency} at once keep {cores} cores busy while the rest wait",
                share * 100.0
            ),
            Bound::Mixed => format!(
                "waits and computes: {concurrency} at once on {cores} cores, so one's waits are another's computing (the thread strand has one thread per core: build the runtime with Builder::threads({concurrency}), or put the waiting part on the coroutine strand)"
            ),
        });
        reasons.push(
            "for isolation (work that may crash, leak or hang, or needs a hard memory or time limit): the process strand, at the same concurrency".to_owned(),
        );
        Advice {
            bound,
            strand,
            concurrency,
            cores,
            reasons,
        }
    }
}

/// The most tasks at once [`Profile::advice`] recommends.
pub const MAX_CONCURRENCY: usize = 1024;

/// What [`Profile::advice`] recommends, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Advice {
    /// What bounds the work.
    pub bound: Bound,
    /// The strand that fits it.
    pub strand: Strand,
    /// How many to run at once.
    pub concurrency: usize,
    /// The cores the advice is for.
    pub cores: usize,
    /// The numbers and rules behind it, one line each.
    pub reasons: Vec<String>,
}

impl fmt::Display for Advice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: the {} strand, {} at once",
            self.bound, self.strand, self.concurrency
        )?;
        for reason in &self.reasons {
            writeln!(f, "  - {reason}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(wall_ms: u64, cpu_ms: u64) -> Profile {
        Profile {
            wall: Duration::from_millis(wall_ms),
            user: Duration::from_millis(cpu_ms),
            ..Profile::default()
        }
    }

    #[test]
    fn the_cpu_share_decides_the_bound() {
        assert_eq!(profile(1000, 990).bound(), Bound::Cpu);
        assert_eq!(profile(1000, 1900).bound(), Bound::Cpu, "two busy threads");
        assert_eq!(profile(1000, 10).bound(), Bound::Io);
        assert_eq!(profile(1000, 500).bound(), Bound::Mixed);
        assert_eq!(profile(0, 0).bound(), Bound::Io, "nothing measured: no CPU");
        let mut queued = profile(10, 4);
        queued.run_queue = Duration::from_millis(30);
        assert_eq!(
            queued.bound(),
            Bound::Cpu,
            "waiting for a core is not waiting for I/O"
        );
        queued.run_queue = Duration::from_millis(5);
        assert_eq!(queued.cpu_share(), 0.8);
    }

    #[test]
    fn advice_fits_concurrency_to_the_cores() {
        let cpu = profile(1000, 1000).advice(8);
        assert_eq!((cpu.strand, cpu.concurrency), (Strand::Thread, 8));
        let parallel = profile(1000, 4000).advice(8);
        assert_eq!(parallel.concurrency, 2, "each already uses four cores");
        let overlapping = profile(1000, 1300).advice(4);
        assert_eq!(overlapping.concurrency, 4, "a share of 1.3 is one core");
        let io = profile(1000, 10).advice(2);
        assert_eq!((io.strand, io.concurrency), (Strand::Coroutine, 200));
        let idle = profile(1000, 0).advice(2);
        assert_eq!(idle.concurrency, MAX_CONCURRENCY);
        let many = profile(1000, 10).advice(4096);
        assert_eq!(
            many.concurrency, MAX_CONCURRENCY,
            "more cores than the cap: no panic"
        );
        let mixed = profile(1000, 500).advice(2);
        assert_eq!((mixed.strand, mixed.concurrency), (Strand::Thread, 4));
        assert!(
            mixed
                .to_string()
                .starts_with("mixed: the thread strand, 4 at once")
        );
    }
}
