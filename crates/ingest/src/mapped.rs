//! A data file mapped read-only, and the bus error of a file that shrinks under its map turned
//! into an error message naming the file.

use std::path::Path;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::Once;

use memmap2::{Mmap, UncheckedAdvice};

/// A read-only map of a data file, registered so a bus error (the file shrank under the map)
/// ends the process with a message naming the file instead of a bare crash.
#[derive(Debug)]
pub(crate) struct MappedFile {
    map: Mmap,
    slot: usize,
}

impl MappedFile {
    /// Map `file` (at `path`); `None` when the system refuses (the caller reads instead).
    pub(crate) fn new(file: &std::fs::File, path: &Path) -> Option<Self> {
        // SAFETY: the map is only read. The file changing under it is the one hazard: a shrink
        // raises SIGBUS, which `bus_error` turns into an error message and exit status 1.
        let map = match unsafe { Mmap::map(file) } {
            Ok(map) => map,
            Err(e) => {
                tracing::debug!(file = %path.display(), error = %e, "cannot map the data file: reading it instead");
                return None;
            }
        };
        let slot = bus_error::register(map.as_ptr() as usize, map.len(), path)?;
        Some(Self { map, slot })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Let the kernel drop this range's pages from the process (they stay in the page cache).
    pub(crate) fn release(&self, start: usize, len: usize) {
        if len == 0 {
            return;
        }
        // SAFETY: the map is private, read-only and never written: after DONTNEED a page reads
        // back the file's bytes, the same as before.
        if let Err(e) = unsafe {
            self.map
                .unchecked_advise_range(UncheckedAdvice::DontNeed, start, len)
        } {
            tracing::debug!(error = %e, "madvise(DONTNEED) failed");
        }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        bus_error::unregister(self.slot);
    }
}

/// The SIGBUS handler and the table of mapped files it consults (lock-free: a signal handler
/// cannot take locks).
mod bus_error {
    use super::*;

    const SLOTS: usize = 64;
    static STARTS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
    static ENDS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
    /// Leaked `Box<[u8]>` of the path (length in `LENGTHS`), or null.
    static PATHS: [AtomicPtr<u8>; SLOTS] = [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];
    static LENGTHS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
    static INSTALL: Once = Once::new();

    pub(super) fn register(start: usize, len: usize, path: &Path) -> Option<usize> {
        INSTALL.call_once(install);
        let name: Box<[u8]> = path.as_os_str().as_encoded_bytes().into();
        for slot in 0..SLOTS {
            if STARTS[slot]
                .compare_exchange(0, start.max(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                LENGTHS[slot].store(name.len(), Ordering::Release);
                PATHS[slot].store(Box::into_raw(name).cast::<u8>(), Ordering::Release);
                ENDS[slot].store(start + len, Ordering::Release);
                return Some(slot);
            }
        }
        tracing::debug!("more mapped files than bus-error slots: reading instead");
        None
    }

    pub(super) fn unregister(slot: usize) {
        ENDS[slot].store(0, Ordering::Release);
        let name = PATHS[slot].swap(std::ptr::null_mut(), Ordering::AcqRel);
        let len = LENGTHS[slot].load(Ordering::Acquire);
        if !name.is_null() {
            // SAFETY: made by `Box::into_raw` of a boxed slice of `len` bytes in `register`.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(name, len)) });
        }
        STARTS[slot].store(0, Ordering::Release);
    }

    fn install() {
        // SAFETY: a plain sigaction with a handler that only reads atomics, writes to stderr
        // and calls _exit (async-signal-safe).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) != 0 {
                tracing::debug!("cannot install the SIGBUS handler");
            }
        }
    }

    extern "C" fn handler(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
        let address = unsafe { (*info).si_addr() } as usize;
        let write = |bytes: &[u8]| {
            // SAFETY: write(2) on stderr with a valid buffer is async-signal-safe.
            unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        };
        for slot in 0..SLOTS {
            let (start, end) = (
                STARTS[slot].load(Ordering::Acquire),
                ENDS[slot].load(Ordering::Acquire),
            );
            let name = PATHS[slot].load(Ordering::Acquire);
            if start <= address && address < end && !name.is_null() {
                let len = LENGTHS[slot].load(Ordering::Acquire);
                write(b"error: ");
                // SAFETY: the slot's path stays alive while its range is registered.
                write(unsafe { std::slice::from_raw_parts(name, len) });
                write(b": the data file shrank while it was being read; no output was written\n");
                // SAFETY: _exit is async-signal-safe; outputs are only ever renamed into place
                // when complete, so leaving now writes nothing half-done.
                unsafe { libc::_exit(1) };
            }
        }
        // Not one of ours: the default action (the fault repeats on return and ends the process).
        // SAFETY: resetting a handler is async-signal-safe.
        unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
    }
}
