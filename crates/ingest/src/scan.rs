//! Parallel scans of a raw ENVI file through a read-only memory map: the vegetation index of
//! every pixel from its two bands, and per-region sums of every band (the selected pixels
//! spectra: `pixel_scan.rs`), straight from the stored
//! values (no f32 block, no transposition, no copy out of the page cache).
//!
//! The scene is cut into units of lines whose size depends only on the cube; threads take units
//! in turn, and unit results are combined in unit order, so the outcome is the same bits for any
//! number of threads. Integer data of up to 16 bits is summed exactly in integers (the order of
//! additions cannot matter); other types are summed in f64. Pages of a unit are dropped from the
//! process (`MADV_DONTNEED`) once it is done, so resident memory stays at a few units whatever
//! the size of the file.

use std::ops::AddAssign;
use std::sync::Mutex;

use domain::{BoundingBox, Interleave};

use crate::accumulate::{ndvi_fixed, run_sums, Accumulate};
use crate::mapped::MappedFile;
use crate::parallel::{for_each_unit, in_parts_of, prefetch, scan_threads};
use crate::raw_envi::Decode;

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

    pub(crate) fn at(&self, band: usize, line: usize, sample: usize) -> usize {
        let (bs, ls, ss) = self.strides();
        self.offset + band * bs + line * ls + sample * ss
    }

    /// Byte ranges of lines `first..first + count` in `bands` (all when `None`).
    pub(crate) fn ranges(
        &self,
        first: usize,
        count: usize,
        bands: Option<&[usize]>,
    ) -> Vec<(usize, usize)> {
        let line_bytes = self.samples * self.bands * self.value_bytes;
        match (self.interleave, bands) {
            (Interleave::Bsq, bands) => {
                let plane_part = count * self.samples * self.value_bytes;
                match bands {
                    Some(bands) => bands.to_vec(),
                    None => (0..self.bands).collect(),
                }
                .into_iter()
                .map(|b| (self.at(b, first, 0), plane_part))
                .collect()
            }
            _ => vec![(self.at(0, first, 0), count * line_bytes)],
        }
    }
}

/// The signature of [`index`] for one value type.
pub(crate) type IndexKernel =
    fn(&MappedFile, &Layout, (usize, usize), (f32, f32), Option<f32>, &mut [f32]);

/// Vegetation index `(b - a) / (b + a)` of every pixel from file bands `a` and `b` (stored value
/// * gain + offset, as f32), NaN where either is the no-data value or the sum is not positive.
pub(crate) fn index<D: Decode>(
    map: &MappedFile,
    layout: &Layout,
    (a, b): (usize, usize),
    (gain, offset): (f32, f32),
    ignore: Option<f32>,
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
        scan_threads(),
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
    /// Stored value -> reflectance (gain, offset): in f64 for the means, in f32 (as blocks of
    /// reflectance are decoded) for the NDVI.
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
    let mut totals = vec![(D::Sum::default(), D::Square::default()); n * nb];
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
    // BSQ: the runs of the whole scene (units are band planes), and the NDVI from the red and
    // NIR planes in scan order.
    let bsq_runs = (layout.interleave == Interleave::Bsq)
        .then(|| region_runs(scan.region_of_pixel, samples, 0..layout.lines, |r| r as u32));
    if let (Some(runs), Some(bands)) = (&bsq_runs, scan.ndvi) {
        add_ndvi::<D>(
            bytes,
            layout,
            scan,
            bands,
            runs,
            &mut out.ndvi_sums,
            &mut out.ndvi_counts,
        );
    }
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::arch::is_x86_feature_detected!("avx2");
    let unit_lines = layout.unit_lines.max(1);
    fn add<S: AddAssign, Q: AddAssign>(total: &mut (S, Q), (s, q): (S, Q)) {
        total.0 += s;
        total.1 += q;
    }
    let mut merge = |unit: UnitSums<D::Sum, D::Square>, columns: Option<std::ops::Range<usize>>| {
        for (k, &r) in unit.regions.iter().enumerate() {
            let r = r as usize;
            match &columns {
                // A unit of bands: those bands of every region.
                Some(columns) => {
                    let width = columns.len();
                    for (j, i) in columns.clone().enumerate() {
                        let part = (unit.sums[k * width + j], unit.squares[k * width + j]);
                        add(&mut totals[r * nb + i], part);
                    }
                }
                None => {
                    let parts = unit.sums[k * nb..(k + 1) * nb]
                        .iter()
                        .zip(&unit.squares[k * nb..(k + 1) * nb]);
                    for (total, (&s, &q)) in totals[r * nb..(r + 1) * nb].iter_mut().zip(parts) {
                        add(total, (s, q));
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
    if let Some(runs) = bsq_runs {
        let every: Vec<u32> = (0..n as u32).collect();
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
            add_plane_runs::<D, false>(bytes, layout, bands, &runs, &mut unit);
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
                unit_sums::<D, false>(bytes, layout, scan, &mut slot, lines)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let sums = unit_sums::<D, false>(bytes, layout, scan, &mut slot, lines);
            if let Ok(mut p) = pool.lock() {
                p.push(slot);
            }
            sums
        };
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
    let (gain, offset) = (scan.reflectance.0 as f32, scan.reflectance.1 as f32);
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
    unit_sums::<D, true>(bytes, layout, scan, slot, lines)
}

/// The sums of a block of lines of a BIL or BIP file. `slot` (all u32::MAX) is left as found.
/// `AVX2`: the CPU has AVX2 (see [`run_sums`]).
#[inline(always)]
fn unit_sums<D: Accumulate, const AVX2: bool>(
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
            add_runs::<D, AVX2>(bytes, layout, (i, band), nb, line_runs, &mut unit);
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
    add_plane_runs::<D, true>(bytes, layout, bands, runs, unit);
}

/// The sums of file bands `bands` (BSQ planes) over `runs` (the fourth field the region) into
/// the unit's columns `0..bands.len()`, every band of a run at once.
/// `AVX2`: as for [`unit_sums`].
#[inline(always)]
fn add_plane_runs<D: Accumulate, const AVX2: bool>(
    bytes: &[u8],
    layout: &Layout,
    bands: &[usize],
    runs: &[Run],
    unit: &mut UnitSums<D::Sum, D::Square>,
) {
    // No software prefetch here (unlike BIL and BIP): each plane is read in line order, which
    // the hardware prefetchers follow, and prefetching 8 planes ahead cost 8% more CPU (its
    // page walks stall).
    let (width, segment_bytes) = (bands.len(), layout.samples * D::SIZE);
    for &(line, start, len, k) in runs {
        for (j, &band) in bands.iter().enumerate() {
            let segment = layout.at(band, line as usize, 0);
            let values = &bytes[segment..segment + segment_bytes];
            let (s, q) = run_sums::<D, AVX2>(values, start as usize, (start + len) as usize);
            unit.sums[k as usize * width + j] += s;
            unit.squares[k as usize * width + j] += q;
        }
    }
}

/// Add the sums of file band `band` over `runs` to column `i` of the unit's sums (of `nb`
/// columns; the run's fourth field is its row).
/// `AVX2`: as for [`unit_sums`].
#[inline(always)]
fn add_runs<D: Accumulate, const AVX2: bool>(
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
        let (s, q) = run_sums::<D, AVX2>(values, start as usize, (start + len) as usize);
        unit.sums[k as usize * nb + i] += s;
        unit.squares[k as usize * nb + i] += q;
    }
}
