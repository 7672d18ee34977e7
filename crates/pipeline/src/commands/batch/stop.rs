//! The graceful stop. Slurm sends SIGTERM at the time limit or on preemption and SIGKILL 30 s
//! later (KillWait); a user presses Ctrl-C. On the first SIGTERM or SIGINT the batch starts no
//! new cube, lets the running ones finish within the grace period (`--stop-grace`), then
//! abandons those still running: nothing of theirs is moved into the dataset (the gate below
//! waits for a cube that is being moved), their staging folders are removed, and the process
//! exits with [`EXIT_STOPPED`]. A rerun resumes. A second signal ends the process at once with
//! 128 + the signal number; what it leaves behind is as safe as after SIGKILL (staging only).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};

/// Exit status of a batch stopped by a signal before it finished: EX_TEMPFAIL of sysexits.h
/// ("try again later"), distinct from 1 (a cube failed) and 2 (bad command line).
pub const EXIT_STOPPED: u8 = 75;

/// The error a stopped batch returns; `main` turns it into [`EXIT_STOPPED`].
#[derive(Debug)]
pub struct Stopped {
    pub signal: &'static str,
    pub not_done: usize,
    pub total: usize,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stopped by {} with {} of {} cube(s) not done; run the same command again to resume",
            self.signal, self.not_done, self.total
        )
    }
}

impl std::error::Error for Stopped {}

/// Whether a stop was asked for, which signal, and when it was first seen.
#[derive(Debug)]
pub(super) struct StopSignal {
    requested: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
    seen_at: OnceLock<Instant>,
    ids: Vec<signal_hook::SigId>,
}

impl StopSignal {
    /// Catch SIGTERM and SIGINT until this is dropped.
    pub(super) fn install() -> Result<Self> {
        let requested = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        let mut ids = Vec::new();
        for sig in [SIGTERM, SIGINT] {
            // Registered first, so it sees the flag as the previous signal left it: a second
            // signal ends the process at once.
            ids.push(
                signal_hook::flag::register_conditional_shutdown(
                    sig,
                    128 + sig,
                    Arc::clone(&requested),
                )
                .context("installing the signal handlers")?,
            );
            ids.push(
                signal_hook::flag::register_usize(sig, Arc::clone(&signal), sig as usize)
                    .context("installing the signal handlers")?,
            );
            ids.push(
                signal_hook::flag::register(sig, Arc::clone(&requested))
                    .context("installing the signal handlers")?,
            );
        }
        Ok(Self {
            requested,
            signal,
            seen_at: OnceLock::new(),
            ids,
        })
    }

    /// A stop was asked for.
    pub(super) fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// When this process first noticed the stop (the grace period counts from here), or `None`.
    pub(super) fn noticed(&self) -> Option<(Instant, bool)> {
        if !self.requested() {
            return None;
        }
        let mut first = false;
        let at = *self.seen_at.get_or_init(|| {
            first = true;
            Instant::now()
        });
        Some((at, first))
    }

    /// The signal's name, for messages.
    pub(super) fn name(&self) -> &'static str {
        match self.signal.load(Ordering::SeqCst) as i32 {
            SIGTERM => "SIGTERM",
            SIGINT => "SIGINT",
            _ => "a signal",
        }
    }
}

impl Drop for StopSignal {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// The dataset's door: a cube moves its files into the dataset only through it, and once it is
/// closed (grace period over) no cube starts moving, and closing waits for those that are.
#[derive(Debug, Default)]
pub(super) struct Gate {
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

/// Held while a cube moves its files into the dataset.
#[derive(Debug)]
pub(super) struct Passage<'a>(&'a Gate);

impl Gate {
    /// `None` when the gate is closed: the cube is abandoned.
    pub(super) fn enter(&self) -> Option<Passage<'_>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.1 {
            return None;
        }
        state.0 += 1;
        Some(Passage(self))
    }

    /// Close, and wait until no cube is inside.
    pub(super) fn close(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.1 = true;
        while state.0 > 0 {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for Passage<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 -= 1;
        self.0.changed.notify_all();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn a_closed_gate_waits_for_those_inside_and_admits_no_one() {
        let gate = Gate::default();
        let inside = gate.enter().unwrap();
        std::thread::scope(|scope| {
            let closer = scope.spawn(|| {
                gate.close();
                Instant::now()
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            let left = Instant::now();
            drop(inside);
            assert!(
                closer.join().unwrap() >= left,
                "close returned before the cube left"
            );
        });
        assert!(gate.enter().is_none());
    }
}
