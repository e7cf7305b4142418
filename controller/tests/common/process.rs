//! Waiting for a process to be really gone, as seen in `/proc`.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// The state letter of `/proc/PID[/task/TID]/stat` (`R`, `S`, `Z` for a zombie...).
fn state_in(stat_path: &std::path::Path) -> Option<String> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    let after_name = stat.rsplit(')').next()?;
    after_name.split_whitespace().next().map(str::to_owned)
}

/// The state letter of process `pid`, `None` once reaped.
pub fn proc_state(pid: u32) -> Option<String> {
    state_in(std::path::Path::new(&format!("/proc/{pid}/stat")))
}

/// Whether `pid` and all its threads have exited. The leader shows `Z` as soon as it
/// exits, but the process is over (and its parent can reap it) only once every other
/// thread has gone too.
pub fn exited(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.flatten().all(|task| {
        matches!(
            state_in(&task.path().join("stat")).as_deref(),
            None | Some("Z" | "X")
        )
    })
}

/// Waits (up to `limit`) until `pid` has exited; panics naming it otherwise.
pub fn wait_for_exit(pid: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !exited(pid) {
        assert!(
            Instant::now() < deadline,
            "process {pid} did not exit: {:?}",
            proc_state(pid)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`...), in KiB; `None` once the
/// process is gone or without the field.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
