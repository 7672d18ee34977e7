//! The spectra of selected pixels (per-pixel classification) read in parallel from a mapped ENVI
//! file while the caller works on the previous unit of lines.

use domain::Interleave;

use crate::mapped::MappedFile;
use crate::parallel::{scan_threads, units_to_caller};
use crate::raw_envi::Decode;
use crate::scan::Layout;

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
        let (mut indices, mut spectra, mut columns) = (Vec::new(), Vec::new(), Vec::new());
        for line in lines_of(unit) {
            let keys = &scan.select[line * samples..(line + 1) * samples];
            // Each picked pixel's byte offset within the line's run of one band (BIL, BSQ) or
            // its spectrum's offset in the line (BIP).
            let line_start = layout.at(0, line, 0);
            columns.clear();
            for (s, _) in keys.iter().enumerate().filter(|(_, &k)| k != 0) {
                indices.push(line * samples + s);
                columns.push(layout.at(0, line, s) - line_start);
            }
            if columns.is_empty() {
                continue;
            }
            let base = spectra.len();
            spectra.resize(base + columns.len() * nb, 0.0);
            let out = &mut spectra[base..];
            if layout.interleave == Interleave::Bip {
                for (spectrum, &column) in out.chunks_exact_mut(nb).zip(&columns) {
                    let pixel = &bytes[line_start + column..];
                    for (v, &band) in spectrum.iter_mut().zip(scan.bands) {
                        *v = D::get(&pixel[band * D::SIZE..]) * gain + offset;
                    }
                }
            } else {
                // A band's values of the line are contiguous: read them in order.
                for (b, &band) in scan.bands.iter().enumerate() {
                    let run = &bytes[layout.at(band, line, 0)..][..samples * D::SIZE];
                    for (spectrum, &column) in out.chunks_exact_mut(nb).zip(&columns) {
                        spectrum[b] = D::get(&run[column..]) * gain + offset;
                    }
                }
            }
        }
        // Drop the pixels with a no-data or non-finite value, keeping the order (each spectrum
        // tested whole, without a branch per value).
        let mut kept = 0;
        for p in 0..indices.len() {
            let spectrum = &spectra[p * nb..(p + 1) * nb];
            let usable = match scan.ignore {
                None => spectrum.iter().fold(true, |ok, &v| ok & v.is_finite()),
                Some(ignore) => spectrum
                    .iter()
                    .fold(true, |ok, &v| ok & v.is_finite() & (v != ignore)),
            };
            if usable {
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
