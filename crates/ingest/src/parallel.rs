//! Work split between threads with results that do not depend on how many there are: units
//! merged in unit order, or parts of a slice whose results are combined exactly.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::mapped::MappedFile;

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
    let per_part = part_len(items.len(), align);
    run_parts(items.chunks_mut(per_part), per_part, f)
}

/// [`in_parts`] over a shared slice.
pub(crate) fn in_parts_of<T: Sync, R: Send>(
    items: &[T],
    align: usize,
    f: impl Fn(usize, &[T]) -> R + Sync,
) -> Vec<R> {
    let per_part = part_len(items.len(), align);
    run_parts(items.chunks(per_part), per_part, f)
}

/// Items per part: `len` over the scan threads, rounded up to whole `align`s.
fn part_len(len: usize, align: usize) -> usize {
    let align = align.max(1);
    len.div_ceil(align).div_ceil(scan_threads()).max(1) * align
}

/// `f(first item, part)` on each part, each on its own thread (one part: on this one).
fn run_parts<P: Send, R: Send>(
    parts: impl ExactSizeIterator<Item = P>,
    per_part: usize,
    f: impl Fn(usize, P) -> R + Sync,
) -> Vec<R> {
    if parts.len() <= 1 {
        return parts.map(|part| f(0, part)).collect();
    }
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = parts
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

/// Run `work` on units `0..units` with `threads` threads; `merge(unit, result)` sees the results
/// in unit order. The byte ranges `release(unit)` are dropped from the process after the unit.
pub(crate) fn for_each_unit<R: Send>(
    map: &MappedFile,
    units: usize,
    threads: usize,
    release: impl Fn(usize) -> Vec<(usize, usize)> + Sync,
    work: impl Fn(usize) -> R + Sync,
    merge: impl FnMut(usize, R) + Send,
) {
    let next = AtomicUsize::new(0);
    let released = Releases::new(map);
    // (next unit to merge, results waiting for an earlier unit, merge).
    let ordered = Mutex::new((0usize, std::collections::BTreeMap::new(), merge));
    let worker = || loop {
        let unit = next.fetch_add(1, Ordering::Relaxed);
        if unit >= units {
            break;
        }
        let result = work(unit);
        released.add(release(unit));
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
    released.flush();
}

/// Byte ranges of a map that scans are done with, dropped from the process in batches: each
/// `madvise` makes the kernel flush the TLBs of every thread of the process (an interrupt to
/// each other core, and in a virtual machine an exit), so one call per few megabytes of a unit
/// cost more than the pages themselves.
struct Releases<'a> {
    map: &'a MappedFile,
    /// Ranges done with, and their total length.
    pending: Mutex<(Vec<(usize, usize)>, usize)>,
}

/// Bytes of finished ranges kept mapped before they are released together: what a scan adds to
/// the process's resident size at most, beyond the units in flight.
const RELEASE_BATCH: usize = 64 << 20;

impl<'a> Releases<'a> {
    fn new(map: &'a MappedFile) -> Self {
        Self {
            map,
            pending: Mutex::new((Vec::new(), 0)),
        }
    }

    /// Ranges done with; released with the others once they add up to [`RELEASE_BATCH`].
    fn add(&self, ranges: Vec<(usize, usize)>) {
        let batch = {
            let Ok(mut pending) = self.pending.lock() else {
                return;
            };
            pending.1 += ranges.iter().map(|r| r.1).sum::<usize>();
            pending.0.extend(ranges);
            if pending.1 < RELEASE_BATCH {
                return;
            }
            pending.1 = 0;
            std::mem::take(&mut pending.0)
        };
        self.release(batch);
    }

    /// Release what is pending.
    fn flush(&self) {
        let batch = match self.pending.lock() {
            Ok(mut pending) => {
                pending.1 = 0;
                std::mem::take(&mut pending.0)
            }
            Err(_) => return,
        };
        self.release(batch);
    }

    /// Release `ranges`, adjacent ones joined into one call.
    fn release(&self, ranges: Vec<(usize, usize)>) {
        for (start, len) in joined(ranges) {
            self.map.release(start, len);
        }
    }
}

/// `(start, length)` ranges sorted, with touching or overlapping ones joined.
fn joined(mut ranges: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    ranges.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, len) in ranges {
        match out.last_mut() {
            Some((s, l)) if start <= *s + *l => *l = (start + len).max(*s + *l) - *s,
            _ => out.push((start, len)),
        }
    }
    out
}

/// Run `work` on units `0..units` with `threads` threads and hand each result to `consume` on
/// the calling thread, in unit order, while the workers go on with later units (at most two per
/// thread ahead of `consume`, which bounds memory). `consume` returning false stops the scan.
pub(crate) fn units_to_caller<R: Send>(
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
    let released = Releases::new(map);
    std::thread::scope(|scope| {
        for _ in 0..threads.min(units.max(1)) {
            let sender = sender.clone();
            let (next, stop, consumed, advanced, release, work, released) = (
                &next, &stop, &consumed, &advanced, &release, &work, &released,
            );
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
                released.add(release(unit));
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
    released.flush();
}

/// Hint the CPU to fetch the cache line at `bytes[at]` (nothing when `at` is past the end).
#[inline(always)]
pub(crate) fn prefetch(bytes: &[u8], at: usize) {
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

#[cfg(test)]
mod tests {
    use super::joined;

    #[test]
    fn released_ranges_are_joined_where_they_touch_or_overlap() {
        // Units finish out of order; touching, overlapping and contained ranges become one.
        let ranges = vec![
            (100, 50),
            (0, 100),
            (300, 10),
            (150, 5),
            (120, 10),
            (305, 20),
        ];
        assert_eq!(joined(ranges), vec![(0, 155), (300, 25)]);
        assert_eq!(joined(vec![(10, 5), (0, 5)]), vec![(0, 5), (10, 5)]);
        assert_eq!(joined(Vec::new()), Vec::new());
        // Every byte of the input is covered, and nothing else: checked byte by byte.
        let mut state = 7u64;
        for _ in 0..200 {
            let ranges: Vec<(usize, usize)> = (0..8)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (
                        ((state >> 40) % 100) as usize,
                        ((state >> 20) % 12) as usize,
                    )
                })
                .collect();
            let mut covered = [false; 128];
            for &(s, l) in &ranges {
                covered[s..s + l].iter_mut().for_each(|c| *c = true);
            }
            let out = joined(ranges);
            let mut from_out = [false; 128];
            for w in out.windows(2) {
                assert!(w[0].0 + w[0].1 < w[1].0, "{out:?} are apart and sorted");
            }
            for &(s, l) in &out {
                from_out[s..s + l].iter_mut().for_each(|c| *c = true);
            }
            assert_eq!(covered, from_out);
        }
    }
}
