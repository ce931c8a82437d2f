//! What every suite needs: the systems under test, built once, and how to time a case.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// The systems measured side by side, each with the same number of threads.
pub(crate) struct Context {
    pub(crate) plait: plait::Runtime,
    pub(crate) rayon: rayon_core::ThreadPool,
    pub(crate) tokio: tokio::runtime::Runtime,
    pub(crate) threads: usize,
    pub(crate) repeats: usize,
    pub(crate) quick: bool,
}

impl Context {
    pub(crate) fn new(quick: bool, repeats: usize) -> Result<Context, String> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let plait = plait::Runtime::builder()
            .threads(threads)
            .coroutine_workers(threads)
            .build()
            .map_err(|e| e.to_string())?;
        let rayon = rayon_core::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| e.to_string())?;
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Context {
            plait,
            rayon,
            tokio,
            threads,
            repeats,
            quick,
        })
    }

    /// `full` tasks, or a tenth of them with `--quick`.
    pub(crate) fn n(&self, full: u64) -> u64 {
        if self.quick { (full / 10).max(1) } else { full }
    }

    /// Runs `case` once to warm up, then `repeats` times; each run times itself (so set-up
    /// stays outside the measurement) and returns its wall time.
    pub(crate) fn measure(&self, mut case: impl FnMut() -> Duration) -> Vec<Duration> {
        black_box(case());
        (0..self.repeats).map(|_| case()).collect()
    }

    /// Like [`measure`](Self::measure) for several cases at once, run in turn (A B C A B C
    /// ...) so that a drift in the machine's speed hits every case alike: the ratios between
    /// them hold even when absolute times wander.
    pub(crate) fn measure_interleaved(
        &self,
        cases: &mut [&mut dyn FnMut() -> Duration],
    ) -> Vec<Vec<Duration>> {
        for case in cases.iter_mut() {
            black_box(case());
        }
        let mut runs = vec![Vec::with_capacity(self.repeats); cases.len()];
        for _ in 0..self.repeats {
            for (case, runs) in cases.iter_mut().zip(&mut runs) {
                runs.push(case());
            }
        }
        runs
    }
}

/// Times `f`.
pub(crate) fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// Runs `--memory-child SYSTEM N` in a fresh copy of this program and returns the numbers
/// it printed (the memory suites measure there, in a process of their own).
pub(crate) fn memory_child(system: &str, n: u64) -> Option<Vec<f64>> {
    let exe = std::env::current_exe().ok()?;
    let output = std::process::Command::new(exe)
        .args(["--memory-child", system, &n.to_string()])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(|field| field.parse().ok())
        .collect()
}
