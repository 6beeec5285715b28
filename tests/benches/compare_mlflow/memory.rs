//! Resident memory of a process tree, read from /proc (Linux): a server process and every
//! process below it, such as MLflow's uvicorn workers and job runner.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Time between two samples of the sampler thread.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(50);

/// Samples the summed `VmRSS` of a process tree on a thread and keeps the maximum since the
/// last [`RssMonitor::reset`].
pub(crate) struct RssMonitor {
    root: u32,
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RssMonitor {
    /// Starts sampling the tree below `root`.
    pub(crate) fn start(root: u32) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(tree_rss_kib(root)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak_kib, stop) = (peak_kib.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak_kib.fetch_max(tree_rss_kib(root), Ordering::Relaxed);
                    std::thread::sleep(SAMPLE_INTERVAL);
                }
            })
        };
        Self {
            root,
            peak_kib,
            stop,
            thread: Some(thread),
        }
    }

    /// Returns the tree's resident memory now, in KiB.
    pub(crate) fn current_kib(&self) -> u64 {
        tree_rss_kib(self.root)
    }

    /// Returns the resident memory now of the processes of the tree whose command line
    /// contains `program`, in KiB, or of the whole tree when it is a single process.
    pub(crate) fn current_kib_of(&self, program: &str) -> u64 {
        let pids = tree(self.root);
        if pids.len() == 1 {
            return status_kib(pids[0], "VmRSS:");
        }
        pids.into_iter()
            .filter(|pid| command_line(*pid).contains(program))
            .map(|pid| status_kib(pid, "VmRSS:"))
            .sum()
    }

    /// Starts a new peak at the current size, and resets the kernel's `VmHWM` of each process
    /// of the tree; returns the current size in KiB.
    pub(crate) fn reset(&self) -> u64 {
        for pid in tree(self.root) {
            let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        }
        let now = tree_rss_kib(self.root);
        self.peak_kib.store(now, Ordering::Relaxed);
        now
    }

    /// Returns the peak since the last reset, in KiB. For a single process it is the larger of
    /// the sampled peak and the kernel's `VmHWM`, which also sees peaks between samples. For a
    /// tree the per-process high-water marks may fall at different times, so their sum would
    /// overstate the peak; only the samples count there.
    pub(crate) fn peak_kib(&self) -> u64 {
        let sampled = self.peak_kib.load(Ordering::Relaxed);
        let pids = tree(self.root);
        match pids.as_slice() {
            [pid] => sampled.max(status_kib(*pid, "VmHWM:")),
            _ => sampled,
        }
    }

    /// Stops the sampler thread.
    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RssMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sums `VmRSS` over `root` and its descendants, in KiB.
pub(crate) fn tree_rss_kib(root: u32) -> u64 {
    tree(root)
        .into_iter()
        .map(|pid| status_kib(pid, "VmRSS:"))
        .sum()
}

/// Returns `root` and the ids of every process below it.
fn tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, parent) in parents() {
        children.entry(parent).or_default().push(pid);
    }
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        if let Some(below) = children.get(&found[next]) {
            found.extend(below);
        }
        next += 1;
    }
    found
}

/// Lists `(pid, parent pid)` of every process, from `/proc/PID/stat`.
fn parents() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect()
}

/// Reads the parent pid, the second field after the parenthesized command name.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// Reads the command line of a process with its arguments separated by spaces.
fn command_line(pid: u32) -> String {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&bytes).replace('\0', " ")
}

/// Reads a `/proc/PID/status` field in KiB; 0 when the process is gone.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}
