//! The matrix's workloads as functions, registered so that worker processes run them too.

use serde_bytes::ByteBuf;

/// The CPU kernel: `rounds` rounds of xorshift, folded. About 10 ms per 10 million rounds
/// here; the same code runs on every strand.
#[plait::task]
pub(crate) fn kernel(rounds: u64) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut acc = 0u64;
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc = acc.wrapping_add(x);
    }
    acc
}

/// The tiny task.
#[plait::task]
pub(crate) fn inc(x: u64) -> u64 {
    x + 1
}

/// Reads a payload and answers with a checksum.
#[plait::task]
pub(crate) fn checksum(data: ByteBuf) -> u64 {
    sum(&data)
}

pub(crate) fn sum(data: &[u8]) -> u64 {
    data.iter().map(|&b| u64::from(b)).sum()
}

/// A wait that blocks its thread.
#[plait::task]
pub(crate) fn sleep_ms(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

/// A crash: the process aborts.
#[plait::task]
pub(crate) fn abort() {
    std::process::abort()
}

/// A leak: `mib` MiB allocated, written and never freed.
#[plait::task]
pub(crate) fn leak(mib: u64) -> u64 {
    let block = vec![1u8; (mib as usize) << 20];
    let leaked: &'static mut [u8] = Box::leak(block.into_boxed_slice());
    leaked.len() as u64
}

/// This process's resident memory, in bytes.
#[plait::task]
pub(crate) fn resident() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}
