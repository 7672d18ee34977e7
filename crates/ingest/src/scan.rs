//! Parallel scans of a raw ENVI file through a read-only memory map: the vegetation index of
//! every pixel from its two bands, and per-region sums of every band, straight from the stored
//! values (no f32 block, no transposition, no copy out of the page cache).
//!
//! The scene is cut into units of lines whose size depends only on the cube; threads take units
//! in turn, and unit results are combined in unit order, so the outcome is the same bits for any
//! number of threads. Integer data of up to 16 bits is summed exactly in integers (the order of
//! additions cannot matter); other types are summed in f64. Pages of a unit are dropped from the
//! process (`MADV_DONTNEED`) once it is done, so resident memory stays at a few units whatever
//! the size of the file.

use std::ops::AddAssign;
use std::path::Path;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use domain::{BoundingBox, Interleave};
use memmap2::{Mmap, UncheckedAdvice};

use crate::raw_envi::Decode;

/// Threads used by scans: set once by the application (`--threads`), else the machine's cores.
static SCAN_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Threads that scans of a cube use from now on (at least 1). Results do not depend on it.
pub fn set_scan_threads(threads: usize) {
    SCAN_THREADS.store(threads.max(1), Ordering::Relaxed);
}

/// Threads scans use: [`set_scan_threads`], else the cores available.
pub fn scan_threads() -> usize {
    match SCAN_THREADS.load(Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// `f(first item, part)` on `threads` contiguous parts of `items` (part lengths multiples of
/// `align`, e.g. whole lines of a raster), in parallel; results in part order.
pub(crate) fn in_parts<T: Send, R: Send>(
    items: &mut [T],
    align: usize,
    f: impl Fn(usize, &mut [T]) -> R + Sync,
) -> Vec<R> {
    let align = align.max(1);
    let threads = scan_threads();
    let per_part = items.len().div_ceil(align).div_ceil(threads).max(1) * align;
    if threads == 1 || items.len() <= per_part {
        return vec![f(0, items)];
    }
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items
            .chunks_mut(per_part)
            .enumerate()
            .map(|(i, part)| scope.spawn(move || f(i * per_part, part)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// [`in_parts`] over a shared slice.
pub(crate) fn in_parts_of<T: Sync, R: Send>(
    items: &[T],
    align: usize,
    f: impl Fn(usize, &[T]) -> R + Sync,
) -> Vec<R> {
    let align = align.max(1);
    let threads = scan_threads();
    let per_part = items.len().div_ceil(align).div_ceil(threads).max(1) * align;
    if threads == 1 || items.len() <= per_part {
        return vec![f(0, items)];
    }
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items
            .chunks(per_part)
            .enumerate()
            .map(|(i, part)| scope.spawn(move || f(i * per_part, part)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

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
    fn release(&self, start: usize, len: usize) {
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

/// Where value (band, line of the unit, sample) of one unit of lines sits in the map, in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub interleave: Interleave,
    pub offset: usize,
    pub lines: usize,
    pub samples: usize,
    pub bands: usize,
    pub value_bytes: usize,
    /// Lines per unit of work (the cube's block of lines: a setting, never the thread count).
    pub unit_lines: usize,
}

impl Layout {
    /// Byte strides of (band, line, sample).
    fn strides(&self) -> (usize, usize, usize) {
        let (s, b, v) = (self.samples, self.bands, self.value_bytes);
        match self.interleave {
            Interleave::Bsq => (self.lines * s * v, s * v, v),
            Interleave::Bil => (s * v, b * s * v, v),
            Interleave::Bip => (v, s * b * v, b * v),
        }
    }

    fn at(&self, band: usize, line: usize, sample: usize) -> usize {
        let (bs, ls, ss) = self.strides();
        self.offset + band * bs + line * ls + sample * ss
    }

    /// Byte ranges of lines `first..first + count` in `bands` (all when `None`).
    fn ranges(&self, first: usize, count: usize, bands: Option<&[usize]>) -> Vec<(usize, usize)> {
        let line_bytes = self.samples * self.bands * self.value_bytes;
        match (self.interleave, bands) {
            (Interleave::Bsq, Some(bands)) => bands
                .iter()
                .map(|&b| {
                    (
                        self.at(b, first, 0),
                        count * self.samples * self.value_bytes,
                    )
                })
                .collect(),
            (Interleave::Bsq, None) => (0..self.bands)
                .map(|b| {
                    (
                        self.at(b, first, 0),
                        count * self.samples * self.value_bytes,
                    )
                })
                .collect(),
            _ => vec![(self.at(0, first, 0), count * line_bytes)],
        }
    }
}

/// Run `work` on units `0..units` with `threads` threads; `merge(unit, result)` sees the results
/// in unit order. The byte ranges `release(unit)` are dropped from the process after the unit.
fn for_each_unit<R: Send>(
    map: &MappedFile,
    units: usize,
    threads: usize,
    release: impl Fn(usize) -> Vec<(usize, usize)> + Sync,
    work: impl Fn(usize) -> R + Sync,
    merge: impl FnMut(usize, R) + Send,
) {
    let next = AtomicUsize::new(0);
    // (next unit to merge, results waiting for an earlier unit, merge).
    let ordered = Mutex::new((0usize, std::collections::BTreeMap::new(), merge));
    let worker = || loop {
        let unit = next.fetch_add(1, Ordering::Relaxed);
        if unit >= units {
            break;
        }
        let result = work(unit);
        for (start, len) in release(unit) {
            map.release(start, len);
        }
        let Ok(mut guard) = ordered.lock() else {
            return; // another worker panicked: its panic propagates from the scope
        };
        let (next_merge, waiting, merge) = &mut *guard;
        waiting.insert(unit, result);
        while let Some(result) = waiting.remove(next_merge) {
            merge(*next_merge, result);
            *next_merge += 1;
        }
    };
    let threads = threads.clamp(1, units.max(1));
    if threads == 1 {
        worker();
    } else {
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(worker);
            }
        });
    }
}

/// Run `work` on units `0..units` with `threads` threads and hand each result to `consume` on
/// the calling thread, in unit order, while the workers go on with later units (at most two per
/// thread ahead of `consume`, which bounds memory). `consume` returning false stops the scan.
fn units_to_caller<R: Send>(
    map: &MappedFile,
    units: usize,
    threads: usize,
    release: impl Fn(usize) -> Vec<(usize, usize)> + Sync,
    work: impl Fn(usize) -> R + Sync,
    mut consume: impl FnMut(R) -> bool,
) {
    use std::sync::atomic::AtomicBool;
    let threads = threads.max(1);
    let window = 2 * threads;
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let consumed = Mutex::new(0usize);
    let advanced = std::sync::Condvar::new();
    let (sender, results) = std::sync::mpsc::channel::<(usize, R)>();
    std::thread::scope(|scope| {
        for _ in 0..threads.min(units.max(1)) {
            let sender = sender.clone();
            let (next, stop, consumed, advanced, release, work) =
                (&next, &stop, &consumed, &advanced, &release, &work);
            scope.spawn(move || loop {
                let unit = next.fetch_add(1, Ordering::Relaxed);
                if unit >= units || stop.load(Ordering::Relaxed) {
                    break;
                }
                {
                    let Ok(mut done) = consumed.lock() else { break };
                    while unit >= *done + window && !stop.load(Ordering::Relaxed) {
                        let Ok(guard) = advanced.wait(done) else {
                            return;
                        };
                        done = guard;
                    }
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let result = work(unit);
                for (start, len) in release(unit) {
                    map.release(start, len);
                }
                if sender.send((unit, result)).is_err() {
                    break;
                }
            });
        }
        drop(sender);
        let mut waiting = std::collections::BTreeMap::new();
        let mut next_unit = 0;
        'receive: for (unit, result) in results.iter() {
            waiting.insert(unit, result);
            while let Some(result) = waiting.remove(&next_unit) {
                next_unit += 1;
                let go_on = consume(result);
                if let Ok(mut done) = consumed.lock() {
                    *done = next_unit;
                }
                if !go_on {
                    stop.store(true, Ordering::Relaxed);
                    advanced.notify_all();
                    break 'receive;
                }
                advanced.notify_all();
            }
        }
        // Workers blocked on a full window see the stop; the rest see the closed channel.
        stop.store(true, Ordering::Relaxed);
        advanced.notify_all();
        drop(results);
    });
}

/// Hint the CPU to fetch the cache line at `bytes[at]` (nothing when `at` is past the end).
#[inline(always)]
fn prefetch(bytes: &[u8], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if at < bytes.len() {
        // SAFETY: a prefetch is only a hint, and the address is inside the slice.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                bytes.as_ptr().add(at).cast(),
            );
        }
    }
}

/// The signature of [`index`] for one value type.
pub(crate) type IndexKernel =
    fn(&MappedFile, &Layout, (usize, usize), (f32, f32), Option<f32>, usize, &mut [f32]);

/// Vegetation index `(b - a) / (b + a)` of every pixel from file bands `a` and `b` (stored value
/// * gain + offset, as f32), NaN where either is the no-data value or the sum is not positive.
#[allow(clippy::too_many_arguments)]
pub(crate) fn index<D: Decode>(
    map: &MappedFile,
    layout: &Layout,
    (a, b): (usize, usize),
    (gain, offset): (f32, f32),
    ignore: Option<f32>,
    threads: usize,
    out: &mut [f32],
) {
    let bytes = map.bytes();
    let samples = layout.samples;
    let value =
        |band, line, sample| D::get(&bytes[layout.at(band, line, sample)..]) * gain + offset;
    let unit_lines = layout.unit_lines.max(1);
    let units = layout.lines.div_ceil(unit_lines);
    let chunks: Vec<Mutex<&mut [f32]>> = out
        .chunks_mut(unit_lines * samples)
        .map(Mutex::new)
        .collect();
    let lines_of = |unit: usize| {
        let first = unit * unit_lines;
        (first, unit_lines.min(layout.lines - first))
    };
    // BIP: two values in every pixel, which the hardware does not prefetch across pages.
    let ahead = if layout.interleave == Interleave::Bip {
        PREFETCH_BYTES / (layout.bands * layout.value_bytes).max(1) + 1
    } else {
        0
    };
    for_each_unit(
        map,
        units,
        threads,
        |unit| match layout.interleave {
            // Band planes: released once at the end (units are slivers of a plane).
            Interleave::Bsq => Vec::new(),
            _ => {
                let (first, count) = lines_of(unit);
                layout.ranges(first, count, None)
            }
        },
        |unit| {
            let (first, _) = lines_of(unit);
            let Ok(mut chunk) = chunks[unit].lock() else {
                return;
            };
            for (i, v) in chunk.iter_mut().enumerate() {
                let (line, sample) = (first + i / samples, i % samples);
                if ahead > 0 && sample + ahead < samples {
                    prefetch(bytes, layout.at(a, line, sample + ahead));
                    prefetch(bytes, layout.at(b, line, sample + ahead));
                }
                let (r, n) = (value(a, line, sample), value(b, line, sample));
                let no_data = ignore.is_some_and(|i| r == i || n == i);
                let sum = n + r;
                *v = if !no_data && sum > 0.0 {
                    (n - r) / sum
                } else {
                    f32::NAN
                };
            }
        },
        |_, ()| {},
    );
    if layout.interleave == Interleave::Bsq {
        for (start, len) in layout.ranges(0, layout.lines, Some(&[a, b])) {
            map.release(start, len);
        }
    }
}

/// A stored value's contribution to a region's sums: exact integers for types of up to 16 bits,
/// f64 otherwise.
pub(crate) trait Accumulate: Decode {
    type Sum: Copy + Default + Send + AddAssign;
    type Square: Copy + Default + Send + AddAssign;
    type Total: Copy + Default + Send + Sync;
    type TotalSquare: Copy + Default + Send + Sync;
    fn value(bytes: &[u8]) -> (Self::Sum, Self::Square);
    /// Sum and sum of squares of lanes `lo..hi` of a window of [`WINDOW`] stored values: fixed
    /// width and masked, so it compiles to a few vector instructions however short the run.
    fn window(window: &[u8], lo: usize, hi: usize) -> (Self::Sum, Self::Square);
    fn merge(total: &mut (Self::Total, Self::TotalSquare), part: (Self::Sum, Self::Square));
    /// Mean and (population) variance of `n` values from their totals.
    fn moments(total: (Self::Total, Self::TotalSquare), n: u64) -> (f64, f64);
}

/// Values summed at once along a line by [`Accumulate::window`].
pub(crate) const WINDOW: usize = 16;

/// -1 in the middle third, 0 elsewhere: windows of it are lane masks.
static MASK_TABLE: [i32; 3 * WINDOW] = {
    let mut table = [0; 3 * WINDOW];
    let mut i = WINDOW;
    while i < 2 * WINDOW {
        table[i] = -1;
        i += 1;
    }
    table
};

/// Lane masks (-1 or 0) of `j >= lo` and of `j < hi` for lanes j of a window.
#[inline(always)]
pub(crate) fn lane_masks(lo: usize, hi: usize) -> (&'static [i32], &'static [i32]) {
    (
        &MASK_TABLE[WINDOW - lo..2 * WINDOW - lo],
        &MASK_TABLE[2 * WINDOW - hi..3 * WINDOW - hi],
    )
}

/// Integer sums in i64/u64: values of at most 2^16, squares of at most 2^32, over regions of
/// fewer than [`MAX_EXACT_REGION`] pixels, cannot overflow. A window sums in i32 lanes
/// (16 values of at most 2^16) and squares in u32 (at most 2^32 - 2^17 + 1) widened to u64.
macro_rules! exact {
    ($name:ty) => {
        impl Accumulate for $name {
            type Sum = i64;
            type Square = u64;
            type Total = i64;
            type TotalSquare = u64;
            #[inline(always)]
            fn value(bytes: &[u8]) -> (i64, u64) {
                let v = <$name>::get_i64(bytes);
                (v, v.unsigned_abs() * v.unsigned_abs())
            }
            #[inline(always)]
            fn window(window: &[u8], lo: usize, hi: usize) -> (i64, u64) {
                let (from, to) = $crate::scan::lane_masks(lo, hi);
                let mut lanes = [0i32; $crate::scan::WINDOW];
                for (((lane, v), &f), &t) in lanes
                    .iter_mut()
                    .zip(window.chunks_exact(<$name>::SIZE))
                    .zip(from)
                    .zip(to)
                {
                    *lane = (<$name>::get_i64(v) as i32) & f & t;
                }
                let sum: i32 = lanes.iter().sum();
                // |v| <= 2^16, so |v|^2 fits in u32; the sum of 16 of them does not.
                let square: u64 = lanes
                    .iter()
                    .map(|&v| u64::from(v.unsigned_abs() * v.unsigned_abs()))
                    .sum();
                (i64::from(sum), square)
            }
            fn merge(total: &mut (i64, u64), (s, q): (i64, u64)) {
                total.0 += s;
                total.1 += q;
            }
            fn moments((s, q): (i64, u64), n: u64) -> (f64, f64) {
                $crate::scan::exact_moments(i128::from(s), u128::from(q), n)
            }
        }
    };
}

/// Largest region (pixels) the exact sums take: beyond it, 64-bit sums of squares could overflow
/// (such regions are summed by the block reader instead).
pub(crate) const MAX_EXACT_REGION: u64 = 1 << 31;

/// Mean and (population) variance of `n` integers from their exact sum and sum of squares.
pub(crate) fn exact_moments(s: i128, q: u128, n: u64) -> (f64, f64) {
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let n128 = u128::from(n);
    // n * sum of squares - sum^2 = n^2 * variance, exactly (>= 0 by Cauchy-Schwarz).
    let spread = (n128 * q).saturating_sub(s.unsigned_abs() * s.unsigned_abs());
    // 64-bit conversions where the values fit (the usual case): u128 -> f64 is a slow library
    // call. Both round to nearest, so the results are the same.
    let sum = i64::try_from(s).map_or_else(|_| s as f64, |s| s as f64);
    let spread = u64::try_from(spread).map_or_else(|_| spread as f64, |v| v as f64);
    let n = n as f64;
    (sum / n, spread / (n * n))
}

/// NDVI values are summed in fixed point (units of 2^-48, rounded): integer sums, so the mean
/// NDVI has the same bits whatever the order of the pixels (readers, interleaves, threads).
pub(crate) const NDVI_UNIT: f64 = (1u64 << 48) as f64;

/// A pixel's NDVI in units of [`NDVI_UNIT`].
#[inline(always)]
pub(crate) fn ndvi_fixed(red: f32, nir: f32) -> i64 {
    (f64::from((nir - red) / (nir + red)) * NDVI_UNIT).round() as i64
}

/// Float sums in f64, lane by lane in order (the same bits on every machine).
macro_rules! float {
    ($name:ty) => {
        impl Accumulate for $name {
            type Sum = f64;
            type Square = f64;
            type Total = f64;
            type TotalSquare = f64;
            #[inline(always)]
            fn value(bytes: &[u8]) -> (f64, f64) {
                let v = <$name>::get_f64(bytes);
                (v, v * v)
            }
            #[inline(always)]
            fn window(window: &[u8], lo: usize, hi: usize) -> (f64, f64) {
                let (mut s, mut q) = (0.0, 0.0);
                for v in window[lo * <$name>::SIZE..hi * <$name>::SIZE].chunks_exact(<$name>::SIZE)
                {
                    let v = <$name>::get_f64(v);
                    s += v;
                    q += v * v;
                }
                (s, q)
            }
            fn merge(total: &mut (f64, f64), (s, q): (f64, f64)) {
                total.0 += s;
                total.1 += q;
            }
            fn moments((s, q): (f64, f64), n: u64) -> (f64, f64) {
                let n = n as f64;
                let mean = s / n;
                (mean, (q / n - mean * mean).max(0.0))
            }
        }
    };
}

pub(crate) use {exact, float};

/// Per-region results of a scan.
#[derive(Debug)]
pub(crate) struct RegionMoments {
    /// Mean reflectance (stored mean * gain + offset) and its standard deviation of band b of
    /// region r at `r * bands + b`.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub row_sums: Vec<u64>,
    pub col_sums: Vec<u64>,
    /// NDVI sums in units of [`NDVI_UNIT`].
    pub ndvi_sums: Vec<i128>,
    pub ndvi_counts: Vec<u64>,
    pub boxes: Vec<BoundingBox>,
}

/// What a region scan needs besides the map.
#[derive(Debug)]
pub(crate) struct RegionScan<'a> {
    /// Region (1-based; 0 = none) of every pixel, row-major.
    pub region_of_pixel: &'a [u32],
    pub regions: usize,
    pub sizes: &'a [u64],
    /// File band of each band summed.
    pub bands: &'a [usize],
    /// File bands (red, near-infrared) of the mean NDVI, when the cube has them.
    pub ndvi: Option<(usize, usize)>,
    /// Stored value -> reflectance, for the NDVI.
    pub scale: (f32, f32),
    /// Stored value -> reflectance, for the means.
    pub reflectance: (f64, f64),
    pub ignore: Option<f32>,
}

/// A run of one region along a line: (line, first sample, length, region or slot).
type Run = (u32, u32, u32, u32);

/// One unit's sums for the regions that appear in it (`regions`, in order of appearance; all
/// regions, in order, for band units).
struct UnitSums<S, Q> {
    regions: Vec<u32>,
    sums: Vec<S>,
    squares: Vec<Q>,
    ndvi: Vec<i128>,
    ndvi_counts: Vec<u64>,
}

const EMPTY_BOX: BoundingBox = BoundingBox {
    row_min: u32::MAX,
    row_max: 0,
    col_min: u32::MAX,
    col_max: 0,
};

/// How far ahead of the data being summed the scans prefetch (4096 was best of 4-32 KiB on a
/// 224-band BIL cube: 1.5x faster than none). Runs touch the data in short pieces, which the
/// hardware prefetchers do not follow across pages.
const PREFETCH_BYTES: usize = 4096;

/// Sums of every band over every region, with centroids, boxes and mean NDVI. Units are blocks
/// of lines for BIL and BIP files, and bands for BSQ files (a band's plane is contiguous).
pub(crate) fn regions<D: Accumulate>(
    map: &MappedFile,
    layout: &Layout,
    scan: &RegionScan<'_>,
) -> RegionMoments {
    let (n, nb, samples) = (scan.regions, scan.bands.len(), layout.samples);
    let bytes = map.bytes();
    let mut totals = vec![(D::Total::default(), D::TotalSquare::default()); n * nb];
    let mut out = RegionMoments {
        mean: Vec::new(),
        std: Vec::new(),
        row_sums: vec![0; n],
        col_sums: vec![0; n],
        ndvi_sums: vec![0; n],
        ndvi_counts: vec![0; n],
        boxes: vec![EMPTY_BOX; n],
    };
    // Centroids and boxes from the region raster alone: integer sums, minima and maxima, so
    // parts of the scene in parallel give the same result.
    let parts = in_parts_of(scan.region_of_pixel, samples, |first, part| {
        let first_line = first / samples.max(1);
        let mut touched: Vec<(usize, u64, u64, BoundingBox)> = Vec::new();
        let mut slot = vec![u32::MAX; n];
        for (l, keys) in part.chunks(samples).enumerate() {
            let line = first_line + l;
            for (s, &region) in keys.iter().enumerate() {
                if region != 0 {
                    let r = region as usize - 1;
                    if slot[r] == u32::MAX {
                        slot[r] = touched.len() as u32;
                        touched.push((r, 0, 0, EMPTY_BOX));
                    }
                    let t = &mut touched[slot[r] as usize];
                    t.1 += line as u64;
                    t.2 += s as u64;
                    let b = &mut t.3;
                    b.row_min = b.row_min.min(line as u32);
                    b.row_max = b.row_max.max(line as u32);
                    b.col_min = b.col_min.min(s as u32);
                    b.col_max = b.col_max.max(s as u32);
                }
            }
        }
        touched
    });
    for (r, rows, cols, part) in parts.into_iter().flatten() {
        out.row_sums[r] += rows;
        out.col_sums[r] += cols;
        let b = &mut out.boxes[r];
        b.row_min = b.row_min.min(part.row_min);
        b.row_max = b.row_max.max(part.row_max);
        b.col_min = b.col_min.min(part.col_min);
        b.col_max = b.col_max.max(part.col_max);
    }
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::arch::is_x86_feature_detected!("avx2");
    let unit_lines = layout.unit_lines.max(1);
    let merge = |unit: UnitSums<D::Sum, D::Square>, columns: Option<std::ops::Range<usize>>| {
        for (k, &r) in unit.regions.iter().enumerate() {
            let r = r as usize;
            match &columns {
                _ if unit.sums.is_empty() => {}
                // A unit of bands: those bands of every region.
                Some(columns) => {
                    let width = columns.len();
                    for (j, i) in columns.clone().enumerate() {
                        let part = (unit.sums[k * width + j], unit.squares[k * width + j]);
                        D::merge(&mut totals[r * nb + i], part);
                    }
                }
                None => {
                    let parts = unit.sums[k * nb..(k + 1) * nb]
                        .iter()
                        .zip(&unit.squares[k * nb..(k + 1) * nb]);
                    for (total, (&s, &q)) in totals[r * nb..(r + 1) * nb].iter_mut().zip(parts) {
                        D::merge(total, (s, q));
                    }
                }
            }
            if let (Some(&ndvi), Some(&count)) = (unit.ndvi.get(k), unit.ndvi_counts.get(k)) {
                out.ndvi_sums[r] += ndvi;
                out.ndvi_counts[r] += count;
            }
        }
    };
    let started = std::time::Instant::now();
    if layout.interleave == Interleave::Bsq {
        let runs = region_runs(scan.region_of_pixel, samples, 0..layout.lines, |r| r as u32);
        let every: Vec<u32> = (0..n as u32).collect();
        // NDVI from the red and NIR planes, in scan order.
        let ndvi = scan.ndvi.map(|bands| {
            let (mut sums, mut counts) = (vec![0; n], vec![0; n]);
            add_ndvi::<D>(bytes, layout, scan, bands, &runs, &mut sums, &mut counts);
            (sums, counts)
        });
        let mut merge = merge;
        if let Some((sums, counts)) = ndvi {
            merge(
                UnitSums {
                    regions: every.clone(),
                    sums: Vec::new(),
                    squares: Vec::new(),
                    ndvi: sums,
                    ndvi_counts: counts,
                },
                None,
            );
        }
        // Units of BSQ_BANDS planes: the run list is read once per unit, not once per band.
        let groups = nb.div_ceil(BSQ_BANDS);
        let columns = |g: usize| g * BSQ_BANDS..((g + 1) * BSQ_BANDS).min(nb);
        let work = |g: usize| {
            let width = columns(g).len();
            let mut unit = UnitSums {
                regions: every.clone(),
                sums: vec![D::Sum::default(); n * width],
                squares: vec![D::Square::default(); n * width],
                ndvi: Vec::new(),
                ndvi_counts: Vec::new(),
            };
            let bands = &scan.bands[columns(g)];
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: the CPU has AVX2 (checked above).
                unsafe { add_plane_runs_avx2::<D>(bytes, layout, bands, &runs, &mut unit) };
                return unit;
            }
            add_plane_runs::<D>(bytes, layout, bands, &runs, &mut unit);
            unit
        };
        let plane = layout.lines * samples * layout.value_bytes;
        for_each_unit(
            map,
            groups,
            scan_threads(),
            |g| {
                scan.bands[columns(g)]
                    .iter()
                    .map(|&band| (layout.at(band, 0, 0), plane))
                    .collect()
            },
            work,
            |g, unit| merge(unit, Some(columns(g))),
        );
    } else {
        // Each worker's slot of each region in its current unit (u32::MAX: none), reused.
        let pool: Mutex<Vec<Vec<u32>>> = Mutex::new(Vec::new());
        let lines_of = |unit: usize| {
            let first = unit * unit_lines;
            first..(first + unit_lines).min(layout.lines)
        };
        let work = |unit: usize| {
            let mut slot = pool
                .lock()
                .ok()
                .and_then(|mut p| p.pop())
                .unwrap_or_else(|| vec![u32::MAX; n]);
            let lines = lines_of(unit);
            #[cfg(target_arch = "x86_64")]
            let sums = if avx2 {
                // SAFETY: the CPU has AVX2 (checked above).
                unsafe { unit_sums_avx2::<D>(bytes, layout, scan, &mut slot, lines) }
            } else {
                unit_sums::<D>(bytes, layout, scan, &mut slot, lines)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let sums = unit_sums::<D>(bytes, layout, scan, &mut slot, lines);
            if let Ok(mut p) = pool.lock() {
                p.push(slot);
            }
            sums
        };
        let mut merge = merge;
        for_each_unit(
            map,
            layout.lines.div_ceil(unit_lines),
            scan_threads(),
            |unit| {
                let lines = lines_of(unit);
                layout.ranges(lines.start, lines.len(), None)
            },
            work,
            |_, unit| merge(unit, None),
        );
    }
    let scanned = started.elapsed().as_secs_f64();
    // Moments region by region, the regions split between the threads.
    out.mean = vec![0.0; n * nb];
    out.std = vec![0.0; n * nb];
    let (gain, offset) = scan.reflectance;
    let nb = nb.max(1);
    let per_thread = n.div_ceil(scan_threads()).max(1) * nb;
    std::thread::scope(|scope| {
        let parts = totals
            .chunks(per_thread)
            .zip(out.mean.chunks_mut(per_thread))
            .zip(out.std.chunks_mut(per_thread))
            .zip(scan.sizes.chunks(per_thread / nb));
        for (((totals, means), variances), sizes) in parts {
            scope.spawn(move || {
                let regions = totals
                    .chunks(nb)
                    .zip(means.chunks_mut(nb))
                    .zip(variances.chunks_mut(nb))
                    .zip(sizes);
                for (((totals, means), stds), &size) in regions {
                    for ((&total, mean), std) in totals.iter().zip(means).zip(stds) {
                        let (m, variance) = D::moments(total, size);
                        *mean = (m * gain + offset) as f32;
                        *std = (variance.sqrt() * gain.abs()) as f32;
                    }
                }
            });
        }
    });
    tracing::debug!(
        scan_s = scanned,
        moments_s = started.elapsed().as_secs_f64() - scanned,
        "region scan"
    );
    out
}

/// Runs of regions along `lines`: (line, first sample, length, `id(region index)`).
fn region_runs(
    region_of_pixel: &[u32],
    samples: usize,
    lines: std::ops::Range<usize>,
    mut id: impl FnMut(usize) -> u32,
) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for line in lines {
        let keys = &region_of_pixel[line * samples..(line + 1) * samples];
        let mut s = 0;
        while s < samples {
            let region = keys[s];
            if region == 0 {
                s += 1;
                continue;
            }
            let end = s + keys[s..].iter().take_while(|&&k| k == region).count();
            runs.push((
                line as u32,
                s as u32,
                (end - s) as u32,
                id(region as usize - 1),
            ));
            s = end;
        }
    }
    runs
}

/// Mean-NDVI sums of the runs' pixels (in run order) into `sums[run.3]` and `counts[run.3]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn add_ndvi<D: Accumulate>(
    bytes: &[u8],
    layout: &Layout,
    scan: &RegionScan<'_>,
    (red, nir): (usize, usize),
    runs: &[Run],
    sums: &mut [i128],
    counts: &mut [u64],
) {
    let (gain, offset) = scan.scale;
    for &(line, start, len, k) in runs {
        for s in start as usize..(start + len) as usize {
            let red = D::get(&bytes[layout.at(red, line as usize, s)..]) * gain + offset;
            let nir = D::get(&bytes[layout.at(nir, line as usize, s)..]) * gain + offset;
            let no_data = scan.ignore.is_some_and(|i| red == i || nir == i);
            if !no_data && red + nir > 0.0 {
                sums[k as usize] += i128::from(ndvi_fixed(red, nir));
                counts[k as usize] += 1;
            }
        }
    }
}

/// [`unit_sums`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn unit_sums_avx2<D: Accumulate>(
    bytes: &[u8],
    layout: &Layout,
    scan: &RegionScan<'_>,
    slot: &mut [u32],
    lines: std::ops::Range<usize>,
) -> UnitSums<D::Sum, D::Square> {
    unit_sums::<D>(bytes, layout, scan, slot, lines)
}

/// The sums of a block of lines of a BIL or BIP file. `slot` (all u32::MAX) is left as found.
#[inline(always)]
fn unit_sums<D: Accumulate>(
    bytes: &[u8],
    layout: &Layout,
    scan: &RegionScan<'_>,
    slot: &mut [u32],
    lines: std::ops::Range<usize>,
) -> UnitSums<D::Sum, D::Square> {
    let nb = scan.bands.len();
    let mut regions = Vec::new();
    let runs = region_runs(scan.region_of_pixel, layout.samples, lines, |r| {
        if slot[r] == u32::MAX {
            slot[r] = regions.len() as u32;
            regions.push(r as u32);
        }
        slot[r]
    });
    for &r in &regions {
        slot[r as usize] = u32::MAX;
    }
    let m = regions.len();
    let mut unit = UnitSums {
        regions,
        sums: vec![D::Sum::default(); m * nb],
        squares: vec![D::Square::default(); m * nb],
        ndvi: vec![0; m],
        ndvi_counts: vec![0; m],
    };
    if layout.interleave == Interleave::Bip {
        // Pixel by pixel: a spectrum is contiguous.
        let all_bands = nb == layout.bands && scan.bands.iter().enumerate().all(|(i, &b)| i == b);
        let pixel_bytes = layout.bands * D::SIZE;
        for run in &runs {
            let (line, start, len, k) = *run;
            let k = k as usize;
            if let Some(bands) = scan.ndvi {
                add_ndvi::<D>(
                    bytes,
                    layout,
                    scan,
                    bands,
                    &[(line, start, len, 0)],
                    &mut unit.ndvi[k..=k],
                    &mut unit.ndvi_counts[k..=k],
                );
            }
            let sums = &mut unit.sums[k * nb..(k + 1) * nb];
            let squares = &mut unit.squares[k * nb..(k + 1) * nb];
            for s in start as usize..(start + len) as usize {
                let pixel = layout.at(0, line as usize, s);
                for at in (pixel..pixel + pixel_bytes).step_by(64) {
                    prefetch(bytes, at + PREFETCH_BYTES);
                }
                if all_bands {
                    let spectrum = &bytes[pixel..pixel + nb * D::SIZE];
                    for ((sum, square), v) in sums
                        .iter_mut()
                        .zip(squares.iter_mut())
                        .zip(spectrum.chunks_exact(D::SIZE))
                    {
                        let (v, q) = D::value(v);
                        *sum += v;
                        *square += q;
                    }
                } else {
                    for ((sum, square), &band) in
                        sums.iter_mut().zip(squares.iter_mut()).zip(scan.bands)
                    {
                        let (v, q) = D::value(&bytes[pixel + band * D::SIZE..]);
                        *sum += v;
                        *square += q;
                    }
                }
            }
        }
        return unit;
    }
    // BIL: line by line, each band's segment of the line in file order.
    for line_runs in runs.chunk_by(|a, b| a.0 == b.0) {
        if let Some(bands) = scan.ndvi {
            add_ndvi::<D>(
                bytes,
                layout,
                scan,
                bands,
                line_runs,
                &mut unit.ndvi,
                &mut unit.ndvi_counts,
            );
        }
        for (i, &band) in scan.bands.iter().enumerate() {
            add_runs::<D>(bytes, layout, (i, band), nb, line_runs, &mut unit);
        }
    }
    unit
}

/// Band planes per unit of a BSQ region scan (8 was best of 1, 2, 8, 32 on a 224-band cube, by
/// a few per cent).
const BSQ_BANDS: usize = 8;

/// [`add_plane_runs`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_plane_runs_avx2<D: Accumulate>(
    bytes: &[u8],
    layout: &Layout,
    bands: &[usize],
    runs: &[Run],
    unit: &mut UnitSums<D::Sum, D::Square>,
) {
    add_plane_runs::<D>(bytes, layout, bands, runs, unit);
}

/// The sums of file bands `bands` (BSQ planes) over `runs` (the fourth field the region) into
/// the unit's columns `0..bands.len()`, every band of a run at once.
#[inline(always)]
fn add_plane_runs<D: Accumulate>(
    bytes: &[u8],
    layout: &Layout,
    bands: &[usize],
    runs: &[Run],
    unit: &mut UnitSums<D::Sum, D::Square>,
) {
    let (width, segment_bytes) = (bands.len(), layout.samples * D::SIZE);
    let mut prefetched = u32::MAX;
    for &(line, start, len, k) in runs {
        if line != prefetched {
            for &band in bands {
                let segment = layout.at(band, line as usize, 0);
                for at in (segment..segment + segment_bytes).step_by(64) {
                    prefetch(bytes, at + PREFETCH_BYTES);
                }
            }
            prefetched = line;
        }
        for (j, &band) in bands.iter().enumerate() {
            let segment = layout.at(band, line as usize, 0);
            let values = &bytes[segment..segment + segment_bytes];
            let (s, q) = run_sums::<D>(values, start as usize, (start + len) as usize);
            unit.sums[k as usize * width + j] += s;
            unit.squares[k as usize * width + j] += q;
        }
    }
}

/// Add the sums of file band `band` over `runs` to column `i` of the unit's sums (of `nb`
/// columns; the run's fourth field is its row).
#[inline(always)]
fn add_runs<D: Accumulate>(
    bytes: &[u8],
    layout: &Layout,
    (i, band): (usize, usize),
    nb: usize,
    runs: &[Run],
    unit: &mut UnitSums<D::Sum, D::Square>,
) {
    let segment_bytes = layout.samples * D::SIZE;
    let mut prefetched = usize::MAX;
    for &(line, start, len, k) in runs {
        let segment = layout.at(band, line as usize, 0);
        if segment != prefetched {
            // The data PREFETCH_BYTES ahead is fetched while this segment is summed.
            for at in (segment..segment + segment_bytes).step_by(64) {
                prefetch(bytes, at + PREFETCH_BYTES);
            }
            prefetched = segment;
        }
        let values = &bytes[segment..segment + segment_bytes];
        let (s, q) = run_sums::<D>(values, start as usize, (start + len) as usize);
        unit.sums[k as usize * nb + i] += s;
        unit.squares[k as usize * nb + i] += q;
    }
}

/// Sum and sum of squares of samples `start..end` of one band's segment of a line (`samples`
/// stored values), a [`WINDOW`] at a time.
#[inline(always)]
fn run_sums<D: Accumulate>(segment: &[u8], start: usize, end: usize) -> (D::Sum, D::Square) {
    let samples = segment.len() / D::SIZE;
    let (mut s, mut q) = (D::Sum::default(), D::Square::default());
    if samples < WINDOW {
        for v in segment[start * D::SIZE..end * D::SIZE].chunks_exact(D::SIZE) {
            let (v, vq) = D::value(v);
            s += v;
            q += vq;
        }
        return (s, q);
    }
    let mut from = start;
    while from < end {
        // A window of WINDOW values inside the segment holding samples from..to.
        let to = end.min(from + WINDOW);
        let window = from.min(samples - WINDOW);
        let at = window * D::SIZE;
        let (ws, wq) = D::window(
            &segment[at..at + WINDOW * D::SIZE],
            from - window,
            to - window,
        );
        s += ws;
        q += wq;
        from = to;
    }
    (s, q)
}

/// What a pixel scan needs besides the map.
#[derive(Debug)]
pub(crate) struct PixelScan<'a> {
    /// Pixels to read: non-zero entries, row-major.
    pub select: &'a [u32],
    /// File band of each band read.
    pub bands: &'a [usize],
    /// Stored value -> reflectance.
    pub scale: (f32, f32),
    pub ignore: Option<f32>,
}

/// The signature of [`pixels`] for one value type.
pub(crate) type PixelKernel =
    fn(&MappedFile, &Layout, &PixelScan<'_>, &mut dyn FnMut(&[usize], &[f32]) -> bool);

/// Spectra (reflectance, pixel-major, `scan.bands` in order) of the selected pixels, a unit of
/// lines at a time in scan order, to `each(pixel indices, spectra)` on the calling thread while
/// the next units are read. Pixels with a non-finite or no-data value are left out.
pub(crate) fn pixels<D: Decode>(
    map: &MappedFile,
    layout: &Layout,
    scan: &PixelScan<'_>,
    each: &mut dyn FnMut(&[usize], &[f32]) -> bool,
) {
    let bytes = map.bytes();
    let (samples, nb) = (layout.samples, scan.bands.len());
    let (gain, offset) = scan.scale;
    let unit_lines = layout.unit_lines.max(1);
    let lines_of = |unit: usize| {
        let first = unit * unit_lines;
        first..(first + unit_lines).min(layout.lines)
    };
    let work = |unit: usize| {
        let (mut indices, mut spectra) = (Vec::new(), Vec::new());
        for line in lines_of(unit) {
            let keys = &scan.select[line * samples..(line + 1) * samples];
            let start = indices.len();
            indices.extend(
                keys.iter()
                    .enumerate()
                    .filter(|(_, &k)| k != 0)
                    .map(|(s, _)| line * samples + s),
            );
            let picked = &indices[start..];
            if picked.is_empty() {
                continue;
            }
            let base = spectra.len();
            spectra.resize(base + picked.len() * nb, 0.0);
            let out = &mut spectra[base..];
            if layout.interleave == Interleave::Bip {
                for (p, &i) in picked.iter().enumerate() {
                    let pixel = layout.at(0, line, i % samples);
                    for (v, &band) in out[p * nb..(p + 1) * nb].iter_mut().zip(scan.bands) {
                        *v = D::get(&bytes[pixel + band * D::SIZE..]) * gain + offset;
                    }
                }
            } else {
                // A band's values of the line are contiguous: read them in order.
                for (b, &band) in scan.bands.iter().enumerate() {
                    let segment = layout.at(band, line, 0);
                    for (p, &i) in picked.iter().enumerate() {
                        let at = segment + (i % samples) * D::SIZE;
                        out[p * nb + b] = D::get(&bytes[at..]) * gain + offset;
                    }
                }
            }
        }
        // Drop the pixels with a no-data or non-finite value, keeping the order.
        let mut kept = 0;
        for p in 0..indices.len() {
            let spectrum = &spectra[p * nb..(p + 1) * nb];
            if spectrum
                .iter()
                .all(|&v| v.is_finite() && scan.ignore.is_none_or(|i| v != i))
            {
                indices[kept] = indices[p];
                spectra.copy_within(p * nb..(p + 1) * nb, kept * nb);
                kept += 1;
            }
        }
        indices.truncate(kept);
        spectra.truncate(kept * nb);
        (indices, spectra)
    };
    let release = |unit: usize| {
        let lines = lines_of(unit);
        layout.ranges(lines.start, lines.len(), None)
    };
    let units = layout.lines.div_ceil(unit_lines);
    units_to_caller(
        map,
        units,
        scan_threads(),
        release,
        work,
        |(indices, spectra)| indices.is_empty() || each(&indices, &spectra),
    );
}
