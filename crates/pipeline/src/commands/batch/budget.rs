//! The memory budget shared by the cubes that run at the same time.

use std::sync::{Condvar, Mutex};

use crate::commands::run::CubeJob;

/// Rough peak memory of analysing a cube: whole-scene rasters (~32 bytes a pixel) and the blocks.
pub(super) fn memory_estimate(job: &CubeJob) -> u64 {
    // Only the size is needed: open without the calibration references (they would be read whole).
    let read = ingest::ReadConfig {
        calibration: None,
        ..job.read.clone()
    };
    let pixels = ingest::Cube::open(&job.cube, &read)
        .map(|c| (c.lines() * c.samples()) as u64)
        .unwrap_or(0);
    pixels * 32 + 3 * job.read.block_bytes as u64 + (64 << 20)
}

/// Bytes of memory the running cubes may claim together.
pub(super) struct Budget {
    pub(super) free: Mutex<u64>,
    pub(super) changed: Condvar,
    pub(super) total: u64,
}

impl Budget {
    /// Wait until `want` fits (a cube larger than the whole budget runs alone); `None` when
    /// `give_up` turns true while waiting.
    pub(super) fn take(&self, want: u64, give_up: impl Fn() -> bool) -> Option<u64> {
        let want = want.min(self.total);
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free < want {
            if give_up() {
                return None;
            }
            free = self
                .changed
                .wait_timeout(free, std::time::Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *free -= want;
        Some(want)
    }

    pub(super) fn give(&self, amount: u64) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += amount;
        self.changed.notify_all();
    }
}

/// Half of the memory available now, from /proc/meminfo (4 GiB when unknown).
pub(super) fn default_memory_budget() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(4 << 30, |kb| kb * 1024 / 2)
}
