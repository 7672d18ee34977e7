//! Ingest integration tests: the reader against bytes written independently of it (by hand,
//! here), the real PlantCV cube, plants across block borders, and bad input.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod calibration;
mod fuzz_regressions;
mod labels;
mod plants;
mod polygons;
mod reader;
mod scan;

use std::path::{Path, PathBuf};

use ingest::Cube;

/// Write an ENVI cube by hand: `value(band, line, sample)` laid out per `interleave`, encoded by
/// `encode` (which picks the data type and byte order).
pub fn write_envi_by_hand(
    dir: &Path,
    name: &str,
    (lines, samples, bands): (usize, usize, usize),
    interleave: &str,
    header_extra: &str,
    encode: impl Fn(f64) -> Vec<u8>,
    value: impl Fn(usize, usize, usize) -> f64,
) -> PathBuf {
    let mut data = Vec::new();
    let mut push = |b, l, s| data.extend(encode(value(b, l, s)));
    match interleave {
        "bsq" => (0..bands)
            .for_each(|b| (0..lines).for_each(|l| (0..samples).for_each(|s| push(b, l, s)))),
        "bil" => (0..lines)
            .for_each(|l| (0..bands).for_each(|b| (0..samples).for_each(|s| push(b, l, s)))),
        _ => (0..lines)
            .for_each(|l| (0..samples).for_each(|s| (0..bands).for_each(|b| push(b, l, s)))),
    }
    let data_path = dir.join(format!("{name}.img"));
    std::fs::write(&data_path, data).unwrap();
    let header = format!("ENVI\nsamples = {samples}\nlines = {lines}\nbands = {bands}\ninterleave = {interleave}\n{header_extra}");
    std::fs::write(dir.join(format!("{name}.hdr")), header).unwrap();
    dir.join(format!("{name}.hdr"))
}

pub fn wavelength_field(bands: usize, first_nm: f64, step_nm: f64) -> String {
    let list: Vec<String> = (0..bands)
        .map(|b| format!("{}", first_nm + step_nm * b as f64))
        .collect();
    format!(
        "wavelength units = nm\nwavelength = {{{}}}\n",
        list.join(", ")
    )
}

/// The shared real cubes, beside the checkout.
pub fn real_cubes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/real_cubes")
}

/// Every value of the cube, band sequential, through block reads.
pub fn read_all(cube: &Cube) -> Vec<f32> {
    let mut all = vec![0f32; cube.bands() * cube.lines() * cube.samples()];
    let mut block = Vec::new();
    for (first, count) in cube.blocks() {
        cube.read_block(first, count, &mut block).unwrap();
        for b in 0..cube.bands() {
            for l in 0..count {
                for s in 0..cube.samples() {
                    all[(b * cube.lines() + first + l) * cube.samples() + s] =
                        block[(b * count + l) * cube.samples() + s];
                }
            }
        }
    }
    all
}
