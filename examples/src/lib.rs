//! Runnable examples of the ruang crates live in `examples/examples/`; this library holds what
//! they share.

use std::time::Instant;

/// CPU time of this thread (from /proc/thread-self/schedstat), so the figures are "on one core"
/// even when other processes compete for the machine; wall-clock time where that is unreadable.
pub struct CpuTimer {
    cpu_ns: Option<u64>,
    wall: Instant,
}

impl CpuTimer {
    fn read() -> Option<u64> {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Starts timing.
    pub fn start() -> CpuTimer {
        CpuTimer {
            cpu_ns: Self::read(),
            wall: Instant::now(),
        }
    }

    /// CPU time (or wall time) since the start.
    pub fn elapsed(&self) -> std::time::Duration {
        match (self.cpu_ns, Self::read()) {
            (Some(a), Some(b)) => std::time::Duration::from_nanos(b.saturating_sub(a)),
            _ => self.wall.elapsed(),
        }
    }
}

/// Resident memory of this process in bytes (from /proc/self/status), if readable.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
