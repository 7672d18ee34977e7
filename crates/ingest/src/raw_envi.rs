//! ENVI data read directly (positioned reads, our own decoding and transposition), for every
//! real ENVI data type in both byte orders: faster than GDAL's band reads into a band-sequential
//! buffer, and it reads the 64-bit integer types GDAL 3.6's ENVI driver refuses.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use domain::Interleave;

use crate::accumulate::{exact, float, Accumulate};
use crate::error::{Error, Result};
use crate::mapped::MappedFile;
use crate::scan::{self, Layout, RegionMoments, RegionScan};

/// A value type on disk: width in bytes and decoding to f32.
pub(crate) trait Decode {
    const SIZE: usize;
    fn get(bytes: &[u8]) -> f32;
    /// The value in f64 (exact for every type but 64-bit integers beyond 2^53).
    fn get_f64(bytes: &[u8]) -> f64;
    /// The value as an integer (integer types of up to 32 bits only).
    fn get_i64(bytes: &[u8]) -> i64;
    /// Decode consecutive values of `src` into `dst` (as many as `dst` holds) as v * gain + offset.
    fn run(src: &[u8], dst: &mut [f32], scale: (f32, f32));
}

macro_rules! decoder {
    ($name:ident, $t:ty, $n:expr, $from:ident) => {
        pub(crate) struct $name;
        impl Decode for $name {
            const SIZE: usize = $n;
            #[inline(always)]
            fn get(bytes: &[u8]) -> f32 {
                let mut raw = [0u8; $n];
                raw.copy_from_slice(&bytes[..$n]);
                <$t>::$from(raw) as f32
            }
            #[inline(always)]
            fn get_f64(bytes: &[u8]) -> f64 {
                let mut raw = [0u8; $n];
                raw.copy_from_slice(&bytes[..$n]);
                <$t>::$from(raw) as f64
            }
            #[inline(always)]
            #[allow(clippy::cast_possible_truncation)]
            fn get_i64(bytes: &[u8]) -> i64 {
                let mut raw = [0u8; $n];
                raw.copy_from_slice(&bytes[..$n]);
                <$t>::$from(raw) as i64
            }
            #[inline(always)]
            fn run(src: &[u8], dst: &mut [f32], (gain, offset): (f32, f32)) {
                // Fixed-size chunks: no bounds checks, so the loop vectorises.
                let (values, _) = src[..dst.len() * $n].as_chunks::<$n>();
                for (d, v) in dst.iter_mut().zip(values) {
                    *d = <$t>::$from(*v) as f32 * gain + offset;
                }
            }
        }
    };
}

decoder!(U8, u8, 1, from_le_bytes);
decoder!(I16Le, i16, 2, from_le_bytes);
decoder!(I16Be, i16, 2, from_be_bytes);
decoder!(I32Le, i32, 4, from_le_bytes);
decoder!(I32Be, i32, 4, from_be_bytes);
decoder!(F32Le, f32, 4, from_le_bytes);
decoder!(F32Be, f32, 4, from_be_bytes);
decoder!(F64Le, f64, 8, from_le_bytes);
decoder!(F64Be, f64, 8, from_be_bytes);
decoder!(U16Le, u16, 2, from_le_bytes);
decoder!(U16Be, u16, 2, from_be_bytes);
decoder!(U32Le, u32, 4, from_le_bytes);
decoder!(U32Be, u32, 4, from_be_bytes);
decoder!(I64Le, i64, 8, from_le_bytes);
decoder!(I64Be, i64, 8, from_be_bytes);
decoder!(U64Le, u64, 8, from_le_bytes);
decoder!(U64Be, u64, 8, from_be_bytes);

// Up to 16 bits: exact integer sums; wider types: f64 sums.
exact!(U8);
exact!(I16Le);
exact!(I16Be);
exact!(U16Le, u16 false);
exact!(U16Be, u16 true);
float!(I32Le);
float!(I32Be);
float!(F32Le);
float!(F32Be);
float!(F64Le);
float!(F64Be);
float!(U32Le);
float!(U32Be);
float!(I64Le);
float!(I64Be);
float!(U64Le);
float!(U64Be);

/// Values at `start, start + step, ...` of `src` (in values) into `dst`, as value * gain + offset.
fn gather<D: Decode>(
    src: &[u8],
    start: usize,
    step: usize,
    dst: &mut [f32],
    (gain, offset): (f32, f32),
) {
    if step == 1 {
        D::run(&src[start * D::SIZE..], dst, (gain, offset));
        return;
    }
    let stride = step * D::SIZE;
    let bytes = &src[start * D::SIZE..];
    for (d, b) in dst.iter_mut().zip(bytes.chunks(stride)) {
        *d = D::get(b) * gain + offset;
    }
}

type Gather = fn(&[u8], usize, usize, &mut [f32], (f32, f32));

/// Band-interleaved pixels `src` (each `total_bands` values) to band-sequential planes: value of
/// pixel p, `bands[i]` to `dst[i * plane + at + p]`. Pixel by pixel: each pixel's values are
/// read in order and every band's plane is written in order.
#[allow(clippy::too_many_arguments)]
fn transpose<D: Decode>(
    src: &[u8],
    total_bands: usize,
    bands: &[usize],
    dst: &mut [f32],
    plane: usize,
    at: usize,
    pixels: usize,
    (gain, offset): (f32, f32),
) {
    if bands.len() * 2 < total_bands {
        for p in 0..pixels {
            let pixel = &src[p * total_bands * D::SIZE..(p + 1) * total_bands * D::SIZE];
            for (i, &band) in bands.iter().enumerate() {
                dst[i * plane + at + p] = D::get(&pixel[band * D::SIZE..]) * gain + offset;
            }
        }
        return;
    }
    // Most bands: decode the tile in file order (contiguous, vectorised), then transpose it in
    // 8 x 8 blocks that stay in L1.
    TILE.with_borrow_mut(|tile| {
        tile.resize(pixels * total_bands, 0.0);
        D::run(src, tile, (gain, offset));
        for i0 in (0..bands.len()).step_by(8) {
            for p0 in (0..pixels).step_by(8) {
                for (i, &band) in bands.iter().enumerate().skip(i0).take(8) {
                    let out = &mut dst[i * plane + at + p0..i * plane + at + (p0 + 8).min(pixels)];
                    for (k, d) in out.iter_mut().enumerate() {
                        *d = tile[(p0 + k) * total_bands + band];
                    }
                }
            }
        }
    });
}

thread_local! {
    /// Decoded BIP tile (pixels x bands), reused across calls.
    static TILE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

type Transpose = fn(&[u8], usize, &[usize], &mut [f32], usize, usize, usize, (f32, f32));

/// The decoding kernels of one on-disk value type.
#[derive(Clone, Copy)]
struct Kernels {
    gather: Gather,
    transpose: Transpose,
    run: fn(&[u8], &mut [f32], (f32, f32)),
    index: scan::IndexKernel,
    regions: fn(&MappedFile, &Layout, &RegionScan<'_>) -> RegionMoments,
    pixels: crate::pixel_scan::PixelKernel,
    size: usize,
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kernels({} bytes)", self.size)
    }
}

fn kernels<D: Accumulate>() -> Kernels {
    Kernels {
        gather: gather::<D>,
        transpose: transpose::<D>,
        run: D::run,
        index: scan::index::<D>,
        regions: scan::regions::<D>,
        pixels: crate::pixel_scan::pixels::<D>,
        size: D::SIZE,
    }
}

fn kernels_for(data_type: u32, big_endian: bool) -> Option<Kernels> {
    Some(match (data_type, big_endian) {
        (1, _) => kernels::<U8>(),
        (2, false) => kernels::<I16Le>(),
        (2, true) => kernels::<I16Be>(),
        (3, false) => kernels::<I32Le>(),
        (3, true) => kernels::<I32Be>(),
        (4, false) => kernels::<F32Le>(),
        (4, true) => kernels::<F32Be>(),
        (5, false) => kernels::<F64Le>(),
        (5, true) => kernels::<F64Be>(),
        (12, false) => kernels::<U16Le>(),
        (12, true) => kernels::<U16Be>(),
        (13, false) => kernels::<U32Le>(),
        (13, true) => kernels::<U32Be>(),
        (14, false) => kernels::<I64Le>(),
        (14, true) => kernels::<I64Be>(),
        (15, false) => kernels::<U64Le>(),
        (15, true) => kernels::<U64Be>(),
        _ => return None,
    })
}

/// Pixels of a BIP block transposed per tile of this many pixels, so a tile's bytes stay in cache
/// while every band is gathered from it.
const BIP_TILE_PIXELS: usize = 256;

/// An ENVI data file and its layout.
#[derive(Debug)]
pub(crate) struct RawEnvi {
    file: File,
    path: PathBuf,
    offset: u64,
    lines: usize,
    samples: usize,
    bands: usize,
    interleave: Interleave,
    value_bytes: usize,
    kernels: Kernels,
    scratch: Mutex<Vec<u8>>,
    /// The file mapped read-only, for the parallel scans (absent when the system refuses).
    map: Option<MappedFile>,
}

impl RawEnvi {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        path: &Path,
        offset: usize,
        (lines, samples, bands): (usize, usize, usize),
        interleave: Interleave,
        data_type: u32,
        big_endian: bool,
    ) -> Result<Self> {
        let kernels = kernels_for(data_type, big_endian).ok_or_else(|| {
            Error::invalid(
                path,
                format!("data type {data_type} cannot be read as spectra"),
            )
        })?;
        let file = File::open(path).map_err(|e| Error::io(path, "cannot open the data file", e))?;
        let map = MappedFile::new(&file, path);
        Ok(Self {
            file,
            path: path.to_path_buf(),
            offset: offset as u64,
            lines,
            samples,
            bands,
            interleave,
            value_bytes: kernels.size,
            kernels,
            scratch: Mutex::new(Vec::new()),
            map,
        })
    }

    fn layout(&self, unit_lines: usize) -> Layout {
        Layout {
            unit_lines,
            interleave: self.interleave,
            offset: self.offset as usize,
            lines: self.lines,
            samples: self.samples,
            bands: self.bands,
            value_bytes: self.value_bytes,
        }
    }

    /// Whether the parallel scans ([`RawEnvi::scan_index`], [`RawEnvi::scan_regions`]) work.
    pub(crate) fn is_mapped(&self) -> bool {
        self.map.is_some()
    }

    /// The index `(b - a) / (b + a)` of file bands `a` and `b` of every pixel into `out`
    /// (lines x samples), in parallel from the map; false (nothing done) without a map.
    pub(crate) fn scan_index(
        &self,
        unit_lines: usize,
        bands: (usize, usize),
        scale: (f32, f32),
        ignore: Option<f32>,
        out: &mut [f32],
    ) -> bool {
        let Some(map) = &self.map else {
            return false;
        };
        (self.kernels.index)(map, &self.layout(unit_lines), bands, scale, ignore, out);
        true
    }

    /// The selected pixels' spectra to `each`, in scan order, read in parallel from the map;
    /// false (nothing done) without a map.
    pub(crate) fn scan_pixels(
        &self,
        unit_lines: usize,
        scan: &crate::pixel_scan::PixelScan<'_>,
        each: &mut dyn FnMut(&[usize], &[f32]) -> bool,
    ) -> bool {
        let Some(map) = &self.map else {
            return false;
        };
        (self.kernels.pixels)(map, &self.layout(unit_lines), scan, each);
        true
    }

    /// Per-region moments of the stored values, in parallel from the map; `None` without a map.
    pub(crate) fn scan_regions(
        &self,
        unit_lines: usize,
        scan: &RegionScan<'_>,
    ) -> Option<RegionMoments> {
        let map = self.map.as_ref()?;
        Some((self.kernels.regions)(map, &self.layout(unit_lines), scan))
    }

    fn read_at(&self, bytes: &mut [u8], value_index: usize) -> Result<()> {
        let position = self.offset + (value_index * self.value_bytes) as u64;
        self.file.read_exact_at(bytes, position).map_err(|e| {
            Error::io(
                &self.path,
                format!("cannot read {} bytes at byte {position}", bytes.len()),
                e,
            )
        })
    }

    /// Whether blocks can be read pixel-major (BIP files: no transposition).
    pub(crate) fn is_bip(&self) -> bool {
        self.interleave == Interleave::Bip
    }

    /// Lines `first..first + count` of a BIP file, every band, pixel-major as in the file: value of
    /// (pixel p of the block, band b) at `p * bands + b`, as stored value * scale.0 + scale.1.
    pub(crate) fn read_block_pixel_major(
        &self,
        first: usize,
        count: usize,
        scale: (f32, f32),
        buffer: &mut Vec<f32>,
    ) -> Result<()> {
        if self.interleave != Interleave::Bip || first + count > self.lines {
            return Err(Error::invalid(
                &self.path,
                format!(
                    "pixel-major read of lines {first}..{} needs a BIP file of enough lines",
                    first + count
                ),
            ));
        }
        let values = count * self.samples * self.bands;
        buffer.resize(values, 0.0);
        let mut scratch = self
            .scratch
            .lock()
            .map_err(|_| Error::invalid(&self.path, "a previous read panicked"))?;
        scratch.resize(values * self.value_bytes, 0);
        self.read_at(&mut scratch, first * self.samples * self.bands)?;
        (self.kernels.run)(&scratch, buffer, scale);
        Ok(())
    }

    /// Lines `first..first + count` of `bands` (file bands, 0-based; all when `None`) as f32, band
    /// sequential, as [`crate::Cube::read_block_of_bands`] lays them out; values are stored
    /// value * `scale.0` + `scale.1`.
    pub(crate) fn read_block(
        &self,
        first: usize,
        count: usize,
        bands: Option<&[usize]>,
        scale: (f32, f32),
        buffer: &mut Vec<f32>,
    ) -> Result<()> {
        let all: Vec<usize>;
        let bands = match bands {
            Some(b) => b,
            None => {
                all = (0..self.bands).collect();
                &all
            }
        };
        if let Some(&bad) = bands.iter().find(|&&b| b >= self.bands) {
            return Err(Error::invalid(
                &self.path,
                format!("band {} does not exist ({} bands)", bad + 1, self.bands),
            ));
        }
        if first + count > self.lines {
            return Err(Error::invalid(
                &self.path,
                format!(
                    "block of lines {first}..{} is outside the {} lines",
                    first + count,
                    self.lines
                ),
            ));
        }
        let (samples, vb) = (self.samples, self.value_bytes);
        let plane = count * samples;
        // Every value is overwritten below: no need to clear.
        buffer.resize(bands.len() * plane, 0.0);
        let mut scratch = self
            .scratch
            .lock()
            .map_err(|_| Error::invalid(&self.path, "a previous read panicked"))?;
        let gather = self.kernels.gather;
        match self.interleave {
            Interleave::Bsq => {
                scratch.resize(plane * vb, 0);
                for (i, &band) in bands.iter().enumerate() {
                    self.read_at(&mut scratch, (band * self.lines + first) * samples)?;
                    gather(
                        &scratch,
                        0,
                        1,
                        &mut buffer[i * plane..(i + 1) * plane],
                        scale,
                    );
                }
            }
            Interleave::Bil if bands.len() * 4 < self.bands => {
                // A few bands: read just their line segments.
                scratch.resize(samples * vb, 0);
                for l in 0..count {
                    for (i, &band) in bands.iter().enumerate() {
                        self.read_at(&mut scratch, ((first + l) * self.bands + band) * samples)?;
                        let out = (i * count + l) * samples;
                        gather(&scratch, 0, 1, &mut buffer[out..out + samples], scale);
                    }
                }
            }
            Interleave::Bil => {
                scratch.resize(count * self.bands * samples * vb, 0);
                self.read_at(&mut scratch, first * self.bands * samples)?;
                for l in 0..count {
                    for (i, &band) in bands.iter().enumerate() {
                        let out = (i * count + l) * samples;
                        gather(
                            &scratch,
                            (l * self.bands + band) * samples,
                            1,
                            &mut buffer[out..out + samples],
                            scale,
                        );
                    }
                }
            }
            Interleave::Bip => {
                scratch.resize(plane * self.bands * vb, 0);
                self.read_at(&mut scratch, first * samples * self.bands)?;
                for tile in (0..plane).step_by(BIP_TILE_PIXELS) {
                    let n = BIP_TILE_PIXELS.min(plane - tile);
                    let src = &scratch[tile * self.bands * vb..(tile + n) * self.bands * vb];
                    (self.kernels.transpose)(src, self.bands, bands, buffer, plane, tile, n, scale);
                }
            }
        }
        Ok(())
    }
}
