//! `run --per-pixel`: every scored pixel of every plant classified, streamed with the cube's
//! blocks, and the per-plant counts severity comes from.

use anyhow::{Context, Result};
use domain::{PixelCalls, PlantPixels, PlantSet, Prediction, Resampler};
use ingest::Cube;

/// Pixels per prediction call: bounds the memory of one call (spectra and tensors) whatever the
/// block size. Predictions do not depend on it (each spectrum's call is its own).
const PIXEL_BATCH: usize = 16_384;

/// Predictions of (spectra, count, samples of z).
pub(crate) type PredictFn<'a> = dyn FnMut(&[f32], usize, usize) -> Result<Vec<Prediction>> + 'a;

/// Settings of the per-pixel calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct PixelJob {
    /// Plant pixels within this many pixels of the plant's edge are not scored (mixed with soil).
    pub erosion_px: usize,
}

/// Classify the scored pixels of every plant (see [`domain::scored_pixels`]): one pass over
/// the cube, in blocks, `predict(spectra, n, z_samples)` on at most [`PIXEL_BATCH`] pixels at
/// a time. Pixels with a no-data value in any band are not scored. Returns the rasters and the
/// per-plant counts (in `plants.plants` order).
pub(crate) fn classify_pixels(
    cube: &Cube,
    plants: &PlantSet,
    resampler: &Resampler,
    classes: usize,
    job: PixelJob,
    z_samples: usize,
    predict: &mut PredictFn<'_>,
) -> Result<(PixelCalls, Vec<PlantPixels>)> {
    let (lines, samples) = (plants.lines, plants.samples);
    let select = domain::scored_pixels(plants, job.erosion_px);
    let n = lines * samples;
    let mut calls = PixelCalls {
        lines,
        samples,
        erosion_px: job.erosion_px,
        class_of_pixel: vec![0; n],
        kl_of_pixel: vec![f32::NAN; n],
        ood_of_pixel: vec![0; n],
    };
    let mut counts = vec![PlantPixels::new(classes); plants.plants.len()];
    let bands = cube.bands();
    let mut model_spectra = Vec::new();
    let identity = resampler.is_identity();
    let started = std::time::Instant::now();
    let mut predicting = std::time::Duration::ZERO;
    ingest::stream_pixel_spectra(cube, &select, |indices: &[usize], spectra: &[f32]| {
        for (chunk, values) in indices
            .chunks(PIXEL_BATCH)
            .zip(spectra.chunks(PIXEL_BATCH * bands))
        {
            // On the model's own bands the spectra go as read (resampling would copy them
            // unchanged: a weight of 1 on the same band).
            let on_model_bands = if identity {
                values
            } else {
                model_spectra.clear();
                for spectrum in values.chunks(bands) {
                    resampler.apply_into(spectrum, &mut model_spectra)?;
                }
                &model_spectra
            };
            let since = std::time::Instant::now();
            let predictions =
                predict(on_model_bands, chunk.len(), z_samples).context("predicting pixels")?;
            predicting += since.elapsed();
            for (&i, p) in chunk.iter().zip(&predictions) {
                let plant = &mut counts[select[i] as usize - 1];
                plant.scored += 1;
                plant.per_class[p.predicted_index] += 1;
                plant.kl_sum_nats += p.kl_nats;
                plant.ood += u64::from(p.ood);
                calls.class_of_pixel[i] = p.predicted_index as u16 + 1;
                calls.kl_of_pixel[i] = p.kl_nats as f32;
                calls.ood_of_pixel[i] = u8::from(p.ood);
            }
        }
        anyhow::Ok(())
    })
    .with_context(|| format!("classifying the pixels of {}", cube.data_path().display()))?;
    tracing::info!(
        seconds = format!("{:.3}", started.elapsed().as_secs_f64()),
        predicting_s = format!("{:.3}", predicting.as_secs_f64()),
        "pixel pass (reading, resampling and predicting)"
    );
    Ok((calls, counts))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    /// The pixel calls on a hand-made cube: two plants, one with a lesion patch; a fake model
    /// calls a pixel class 1 when its first band is above 0.5. Counts, severity and the maps
    /// follow the pixels exactly, edge pixels are left out, and a no-data pixel is not scored.
    #[test]
    fn pixel_counts_follow_the_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let (lines, samples, bands) = (6usize, 8usize, 2usize);
        // Plant 1: rows 0-4, cols 0-4 (5x5); lesion (band 0 = 0.9) in its core at rows 1-2,
        // cols 1-2, and at its edge (row 0), which erosion must drop. Plant 2: rows 1-4,
        // cols 6-7 (2 px wide: no core, scored whole), one lesion pixel and one no-data pixel.
        let mut plant = vec![0u32; lines * samples];
        let mut value = vec![1000u16; lines * samples];
        for r in 0..5 {
            for c in 0..5 {
                plant[r * samples + c] = 1;
            }
        }
        for r in 1..5 {
            for c in 6..8 {
                plant[r * samples + c] = 2;
            }
        }
        for (r, c) in [(1, 1), (1, 2), (2, 1), (2, 2), (0, 3), (3, 6)] {
            value[r * samples + c] = 9000;
        }
        value[4 * samples + 7] = 0; // the cube's no-data value
        let mut values_bsq = Vec::new();
        for _ in 0..bands {
            values_bsq.extend_from_slice(&value);
        }
        let base = dir.path().join("tiny.img");
        let raster = domain::RasterCube {
            lines,
            samples,
            axis: domain::SpectralAxis::new(vec![600.0, 800.0], None).unwrap(),
            values_bsq,
            reflectance_scale_factor: 10000.0,
            georeference: None,
            description: "pixel test".into(),
        };
        ingest::write_envi_cube(&base, &raster, domain::Interleave::Bil).unwrap();
        let header = base.with_extension("hdr");
        let mut text = std::fs::read_to_string(&header).unwrap();
        text.push_str("data ignore value = 0\n");
        std::fs::write(&header, text).unwrap();
        let ids = dir.path().join("ids.tif");
        let classes = domain::ClassSet::new(vec![domain::ClassInfo {
            code: 1,
            name: "plant".into(),
        }])
        .unwrap();
        ingest::write_geotiff_labels(
            &ids,
            &domain::LabelRaster {
                lines,
                samples,
                codes: plant,
                classes,
                georeference: None,
            },
        )
        .unwrap();
        let cube = Cube::open(&header, &ingest::ReadConfig::default()).unwrap();
        let plants = ingest::plants_from_id_raster(&cube, &ids).unwrap();
        let resampler = cube.axis().resampler_to(cube.axis()).unwrap();
        let mut fake = |spectra: &[f32], n: usize, _z: usize| -> Result<Vec<Prediction>> {
            Ok((0..n)
                .map(|i| {
                    let lesion = spectra[i * 2] > 0.5;
                    let mut p = Prediction::from_probabilities(
                        if lesion {
                            vec![0.1, 0.9]
                        } else {
                            vec![0.8, 0.2]
                        },
                        f64::from(spectra[i * 2]),
                    );
                    p.ood = lesion;
                    p
                })
                .collect())
        };
        let (calls, counts) = classify_pixels(
            &cube,
            &plants,
            &resampler,
            2,
            PixelJob { erosion_px: 1 },
            1,
            &mut fake,
        )
        .unwrap();
        // Plant 1: 3x3 core, 4 of its 9 pixels lesioned.
        assert_eq!(counts[0].scored, 9);
        assert_eq!(counts[0].per_class, vec![5, 4]);
        assert!((counts[0].severity_pct(0).unwrap() - 400.0 / 9.0).abs() < 1e-9);
        // Plant 2: 8 pixels, one no-data: 7 scored, 1 lesioned.
        assert_eq!(counts[1].scored, 7);
        assert_eq!(counts[1].per_class, vec![6, 1]);
        assert_eq!(counts[1].ood, 1);
        // The maps hold exactly the counted pixels.
        for (k, class) in [(0usize, 1u16), (1, 2)] {
            let in_map = calls.class_of_pixel.iter().filter(|&&c| c == class).count() as u64;
            let in_table: u64 = counts.iter().map(|p| p.per_class[k]).sum();
            assert_eq!(in_map, in_table);
        }
        assert_eq!(
            calls.class_of_pixel[3], 0,
            "edge pixel (0, 3) is not scored"
        );
        assert!(calls.kl_of_pixel[4 * samples + 7].is_nan());
        // Without erosion the edge lesion counts too.
        let (_, all) = classify_pixels(
            &cube,
            &plants,
            &resampler,
            2,
            PixelJob { erosion_px: 0 },
            1,
            &mut fake,
        )
        .unwrap();
        assert_eq!(all[0].scored, 25);
        assert_eq!(all[0].per_class, vec![20, 5]);
    }
}
