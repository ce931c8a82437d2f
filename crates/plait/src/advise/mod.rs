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
mod tree;

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
    /// Time it was ready to run but waited for a core (for a command, all its processes'
    /// and threads' added up): left out of the wall time the CPU share is taken over, so
    /// that a busy machine does not make computing look like waiting.
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
    /// the reasons: [`advice_for`](Profile::advice_for) a machine of which nothing else is
    /// known.
    #[must_use]
    pub fn advice(&self, cores: usize) -> Advice {
        self.advice_for(&Machine::with_cores(cores))
    }

    /// The strand and concurrency that fit the work on `machine`, with the reasons.
    ///
    /// * CPU-bound: the thread strand, one task per core (per `cpu_share` cores, rounded,
    ///   for work that is itself parallel): more would only queue.
    /// * I/O-bound: the coroutine strand, as many at once as keep the cores busy while the
    ///   rest wait: `cores / cpu_share`, at most [`MAX_CONCURRENCY`] (then a cap, said so).
    /// * Mixed: the thread strand with more tasks than cores, by the same rule, so that one
    ///   task's waits are another's computing.
    ///
    /// Where the machine's available memory is known, as many at once as fit in it at the
    /// measured peak, if that is fewer (said so). A run shorter than [`SHORTEST_JUDGED`]
    /// gets no verdict; nor does one that waited for a core too long to tell computing from
    /// waiting ([`Advice::no_verdict`] says why).
    #[must_use]
    pub fn advice_for(&self, machine: &Machine) -> Advice {
        let cores = machine.cores.max(1);
        let share = self.cpu_share();
        let bound = self.bound();
        let mut concurrency = match bound {
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
        let capped = bound != Bound::Cpu && concurrency == MAX_CONCURRENCY;
        let strand = match bound {
            Bound::Cpu | Bound::Mixed => Strand::Thread,
            Bound::Io => Strand::Coroutine,
        };
        let mut reasons = vec![format!(
            "CPU {:.3} s over {:.3} s wall{}: a CPU share of {share:.2} ({})",
            self.cpu().as_secs_f64(),
            self.wall.as_secs_f64(),
            if self.run_queue.is_zero() {
                String::new()
            } else {
                format!(
                    ", of which {:.3} s waiting for a core (not counted as waiting)",
                    self.run_queue.as_secs_f64()
                )
            },
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
            Bound::Io if capped => format!(
                "each keeps a core {:.1}% busy, so the cores set no limit: {MAX_CONCURRENCY} is plait's cap, not a measured need; what it waits on (a server, a disk, a rate limit) sets the real one",
                share * 100.0
            ),
            Bound::Io => format!(
                "each keeps a core {:.0}% busy: {concurrency} at once keep {cores} cores busy while the rest wait",
                share * 100.0
            ),
            Bound::Mixed => format!(
                "waits and computes: {concurrency} at once on {cores} cores, so one's waits are another's computing (the thread strand has one thread per core: build the runtime with Builder::threads({concurrency}), or put the waiting part on the coroutine strand)"
            ),
        });
        let mut memory_bound = false;
        if let (Some(peak), Some(available)) = (self.peak_rss, machine.available_memory)
            && peak > 0
        {
            let fit = usize::try_from(available / peak)
                .unwrap_or(usize::MAX)
                .max(1);
            if fit < concurrency {
                memory_bound = true;
                reasons.push(format!(
                    "memory binds, not the cores: {fit} at once at a {} peak each fit in the {} available (the cores alone would allow {concurrency})",
                    human_bytes(peak),
                    human_bytes(available)
                ));
                concurrency = fit;
            }
        }
        reasons.push(
            "for isolation (work that may crash, leak or hang, or needs a hard memory or time limit): the process strand, at the same concurrency".to_owned(),
        );
        let waited = if self.wall.is_zero() {
            0.0
        } else {
            self.run_queue.as_secs_f64() / self.wall.as_secs_f64()
        };
        let mut warnings = Vec::new();
        if waited >= BUSY_SHARE {
            warnings.push(format!(
                "the machine was busy: the work waited {:.3} s for a core ({:.0}% of its wall time{}); those waits are not counted as waiting, but a quieter machine measures better",
                self.run_queue.as_secs_f64(),
                waited * 100.0,
                machine
                    .load
                    .map(|load| format!(", load {load:.1} on {cores} cores"))
                    .unwrap_or_default()
            ));
        }
        let no_verdict = if self.wall < SHORTEST_JUDGED {
            Some(format!(
                "the run took {:.1} ms, under the {} ms it takes to judge: start-up and clock granularity outweigh the work; measure a longer run (more input)",
                self.wall.as_secs_f64() * 1000.0,
                SHORTEST_JUDGED.as_millis()
            ))
        } else if bound == Bound::Mixed && waited >= TOO_BUSY_SHARE {
            Some(format!(
                "the machine was too busy to tell: the work waited for a core {:.0}% of its wall time, and what is left does not say whether it computes or waits; measure it on a quieter machine",
                waited * 100.0
            ))
        } else {
            None
        };
        Advice {
            bound,
            strand,
            concurrency,
            cores,
            reasons,
            no_verdict,
            warnings,
            capped,
            memory_bound,
        }
    }

    /// The median of each figure over several runs of the same work (`None` for none):
    /// what `plait advise --repeat N` judges.
    #[must_use]
    pub fn median(runs: &[Profile]) -> Option<Profile> {
        fn mid<T: Copy + Ord>(mut values: Vec<T>) -> T {
            values.sort_unstable();
            values[values.len() / 2]
        }
        fn mid_opt(values: Vec<Option<u64>>) -> Option<u64> {
            let known: Vec<u64> = values.into_iter().flatten().collect();
            (!known.is_empty()).then(|| mid(known))
        }
        if runs.is_empty() {
            return None;
        }
        let pick = |f: fn(&Profile) -> Duration| mid(runs.iter().map(f).collect());
        Some(Profile {
            wall: pick(|p| p.wall),
            user: pick(|p| p.user),
            system: pick(|p| p.system),
            run_queue: pick(|p| p.run_queue),
            voluntary_switches: mid(runs.iter().map(|p| p.voluntary_switches).collect()),
            involuntary_switches: mid(runs.iter().map(|p| p.involuntary_switches).collect()),
            peak_rss: mid_opt(runs.iter().map(|p| p.peak_rss).collect()),
            read_bytes: mid_opt(runs.iter().map(|p| p.read_bytes).collect()),
            written_bytes: mid_opt(runs.iter().map(|p| p.written_bytes).collect()),
        })
    }
}

/// A run shorter than this gets no verdict: start-up and clock granularity outweigh it.
pub const SHORTEST_JUDGED: Duration = Duration::from_millis(20);
/// Waiting for a core this share of the wall time or more is warned of.
pub const BUSY_SHARE: f64 = 0.1;
/// Waiting for a core this share of the wall time or more, with a mixed share left, gets
/// no verdict.
pub const TOO_BUSY_SHARE: f64 = 0.3;

/// The most tasks at once [`Profile::advice`] recommends: a cap, said so where it binds.
pub const MAX_CONCURRENCY: usize = 1024;

/// The machine advice is for: its cores and, where known, the memory available and the
/// load.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Machine {
    /// Cores to run on.
    pub cores: usize,
    /// Memory available to new work, in bytes (`MemAvailable`).
    pub available_memory: Option<u64>,
    /// The load average over the last minute.
    pub load: Option<f64>,
}

impl Machine {
    /// A machine of `cores` cores, nothing else known.
    #[must_use]
    pub fn with_cores(cores: usize) -> Machine {
        Machine {
            cores,
            available_memory: None,
            load: None,
        }
    }

    /// This machine, now: its cores, the memory available (`/proc/meminfo`) and the load
    /// (`/proc/loadavg`), where they can be read.
    #[must_use]
    pub fn here() -> Machine {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let available_memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|line| line.strip_prefix("MemAvailable:"))
                    .and_then(|rest| {
                        rest.trim()
                            .trim_end_matches("kB")
                            .trim()
                            .parse::<u64>()
                            .ok()
                    })
                    .map(|kib| kib * 1024)
            });
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|text| text.split_whitespace().next()?.parse().ok());
        Machine {
            cores,
            available_memory,
            load,
        }
    }

    /// The same machine with `cores` cores.
    #[must_use]
    pub fn cores(mut self, cores: usize) -> Machine {
        self.cores = cores;
        self
    }
}

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
    /// Why the run cannot be judged (too short, or the machine too busy), if it cannot:
    /// then the rest is a guess, shown as one.
    pub no_verdict: Option<String>,
    /// What may blur the verdict (a busy machine).
    pub warnings: Vec<String>,
    /// Whether `concurrency` is [`MAX_CONCURRENCY`], a cap rather than a measured need.
    pub capped: bool,
    /// Whether the memory available, not the cores, set `concurrency`.
    pub memory_bound: bool,
}

impl fmt::Display for Advice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.no_verdict {
            Some(why) => writeln!(f, "no verdict: {why}")?,
            None => writeln!(
                f,
                "{}: the {} strand, {}{} at once",
                self.bound,
                self.strand,
                if self.capped { "up to " } else { "" },
                self.concurrency
            )?,
        }
        for reason in &self.reasons {
            writeln!(f, "  - {reason}")?;
        }
        for warning in &self.warnings {
            writeln!(f, "  ! {warning}")?;
        }
        Ok(())
    }
}

/// A size in bytes for people, as the advice words it: `1.5 MiB`, `512 B`.
///
/// # Examples
///
/// ```
/// assert_eq!(plait::advise::human_bytes(3 << 20), "3.0 MiB");
/// assert_eq!(plait::advise::human_bytes(512), "512 B");
/// ```
#[must_use]
pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
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

    #[test]
    fn a_run_too_short_or_too_busy_to_judge_gets_no_verdict() {
        let short = profile(1, 1).advice(2);
        assert!(
            short
                .no_verdict
                .as_deref()
                .is_some_and(|why| why.contains("20 ms"))
        );
        assert!(short.to_string().starts_with("no verdict"));
        // Half its wall time waiting for a core, and a mixed share left.
        let mut busy = profile(1000, 300);
        busy.run_queue = Duration::from_millis(500);
        let advice = busy.advice(2);
        assert_eq!(advice.bound, Bound::Mixed);
        assert!(
            advice
                .no_verdict
                .as_deref()
                .is_some_and(|why| why.contains("too busy"))
        );
        // Waits for a core, but clearly computing once they are set aside: a verdict and a
        // warning.
        let mut computing = profile(1000, 450);
        computing.run_queue = Duration::from_millis(500);
        let advice = computing.advice(2);
        assert_eq!(
            (advice.bound, advice.no_verdict.clone()),
            (Bound::Cpu, None)
        );
        assert!(advice.warnings[0].contains("busy"), "{:?}", advice.warnings);
    }

    #[test]
    fn memory_binds_when_the_peaks_do_not_fit() {
        let mut heavy = profile(1000, 10);
        heavy.peak_rss = Some(1 << 30);
        let machine = Machine {
            cores: 8,
            available_memory: Some(3 << 30),
            load: None,
        };
        let advice = heavy.advice_for(&machine);
        assert_eq!(advice.concurrency, 3);
        assert!(advice.memory_bound);
        assert!(advice.reasons.iter().any(|r| r.contains("memory binds")));
        // Too big for even one: still one, said so.
        heavy.peak_rss = Some(4 << 30);
        assert_eq!(heavy.advice_for(&machine).concurrency, 1);
    }

    #[test]
    fn a_cap_is_said_to_be_one() {
        let idle = profile(1000, 0).advice(2);
        assert!(idle.capped);
        assert!(
            idle.to_string()
                .starts_with("io-bound: the coroutine strand, up to 1024 at once")
        );
        assert!(idle.reasons.iter().any(|r| r.contains("plait's cap")));
        assert!(!profile(1000, 1000).advice(2).capped);
    }

    #[test]
    fn the_median_of_runs_is_taken_figure_by_figure() {
        let runs = [profile(100, 90), profile(300, 10), profile(200, 50)];
        let median = Profile::median(&runs).unwrap();
        assert_eq!(
            (median.wall, median.user),
            (Duration::from_millis(200), Duration::from_millis(50))
        );
        assert_eq!(Profile::median(&[]), None);
    }
}
