//! What the load generator reads about other processes (nginx workers, a broker): CPU time and
//! resident memory from /proc, and a sampler that keeps the peak RSS while a run lasts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// utime + stime of `pid` in seconds (clock ticks of 100 Hz on Linux).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU seconds of this process.
pub fn cpu_seconds_self() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// The sum over `pids` of `f`, or `None` when any of them cannot be read.
pub fn sum_over<T: std::iter::Sum<T>>(pids: &[u32], f: impl Fn(u32) -> Option<T>) -> Option<T> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| f(p)).sum()
}

/// Samples the summed RSS of some processes every 50 ms on the current runtime and keeps the
/// peak. `reset` starts a new peak from the current value (a run's phases have peaks of their own).
#[derive(Debug)]
pub struct PeakRss {
    peak: Arc<AtomicU64>,
    pids: Vec<u32>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    pub fn start(pids: Vec<u32>) -> PeakRss {
        let peak = Arc::new(AtomicU64::new(sum_over(&pids, rss_kib).unwrap_or(0)));
        let (p, ps) = (peak.clone(), pids.clone());
        let task = tokio::spawn(async move {
            loop {
                if let Some(v) = sum_over(&ps, rss_kib) {
                    p.fetch_max(v, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        PeakRss { peak, pids, task }
    }

    /// The peak so far, including the value now.
    pub fn peak(&self) -> Option<u64> {
        let now = sum_over(&self.pids, rss_kib)?;
        Some(self.peak.fetch_max(now, Ordering::Relaxed).max(now))
    }

    pub fn reset(&self) {
        self.peak.store(sum_over(&self.pids, rss_kib).unwrap_or(0), Ordering::Relaxed);
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.task.abort();
    }
}
