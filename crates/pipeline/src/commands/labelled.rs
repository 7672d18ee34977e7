//! Labelled samples from pairs of cube and label raster, shared by `train` and `evaluate`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use domain::{SampleUnit, SpectralSamples};
use ingest::{labelled_samples, read_label_raster, Cube, ReadConfig};

use crate::cli::Unit;

pub fn sample_unit(unit: Unit) -> SampleUnit {
    match unit {
        Unit::Plant => SampleUnit::Plant,
        Unit::Pixel => SampleUnit::Pixel,
    }
}

/// Samples of every (cube, labels) pair, all on the first cube's wavelengths and classes. Group ids
/// are made unique across cubes.
pub fn collect(cubes: &[PathBuf], labels: &[PathBuf], unit: Unit) -> Result<SpectralSamples> {
    if cubes.len() != labels.len() {
        bail!(
            "{} --cube but {} --labels: give one label raster per cube, in the same order",
            cubes.len(),
            labels.len()
        );
    }
    let mut all: Option<SpectralSamples> = None;
    for (cube_path, label_path) in cubes.iter().zip(labels) {
        let cube = Cube::open(cube_path, &ReadConfig::default())
            .with_context(|| format!("opening cube {}", cube_path.display()))?;
        let raster = read_label_raster(label_path)
            .with_context(|| format!("reading labels {}", label_path.display()))?;
        let samples = labelled_samples(&cube, &raster, label_path, sample_unit(unit))
            .with_context(|| format!("collecting labelled spectra of {}", cube_path.display()))?;
        tracing::info!(cube = %cube_path.display(), samples = samples.len(), "labelled samples");
        all = Some(match all {
            None => samples,
            Some(mut acc) => {
                if acc.classes != samples.classes {
                    bail!(
                        "{}: classes ({}) differ from those of {} ({})",
                        label_path.display(),
                        samples.classes.names().join(", "),
                        labels[0].display(),
                        acc.classes.names().join(", ")
                    );
                }
                let resampler = samples.axis.resampler_to(&acc.axis).with_context(|| {
                    format!(
                        "{}: bands do not cover those of {}",
                        cube_path.display(),
                        cubes[0].display()
                    )
                })?;
                let group_offset = acc.groups.iter().copied().max().unwrap_or(0) + 1;
                for i in 0..samples.len() {
                    acc.spectra.extend(resampler.apply(samples.spectrum(i))?);
                }
                acc.label_codes.extend(&samples.label_codes);
                acc.groups
                    .extend(samples.groups.iter().map(|g| g + group_offset));
                acc
            }
        });
    }
    all.context("no cube given")
}
