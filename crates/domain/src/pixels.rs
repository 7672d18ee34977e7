//! Per-pixel calls inside plants (`run --per-pixel`): which pixels are scored, their classes and
//! KL, and the per-plant counts severity is computed from.

use serde::{Deserialize, Serialize};

use crate::PlantSet;

/// Pixel counts of one plant's scored pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlantPixels {
    /// Pixels classified (the plant's core; all its pixels when it has no core).
    pub scored: u64,
    /// Scored pixels called each class, in the model's class order.
    pub per_class: Vec<u64>,
    /// Scored pixels flagged out of distribution.
    pub ood: u64,
    /// Sum of the scored pixels' KL, nats.
    pub kl_sum_nats: f64,
}

impl PlantPixels {
    pub fn new(classes: usize) -> Self {
        Self {
            scored: 0,
            per_class: vec![0; classes],
            ood: 0,
            kl_sum_nats: 0.0,
        }
    }

    /// Percentage of scored pixels not called the healthy class (`healthy` at output index
    /// `healthy`); None without scored pixels.
    pub fn severity_pct(&self, healthy: usize) -> Option<f64> {
        (self.scored > 0).then(|| {
            100.0 * (self.scored - self.per_class.get(healthy).copied().unwrap_or(0)) as f64
                / self.scored as f64
        })
    }

    /// The class most of the scored pixels are called (the lowest index on a tie); None
    /// without scored pixels.
    pub fn vote(&self) -> Option<usize> {
        (self.scored > 0).then(|| {
            let top = self.per_class.iter().copied().max().unwrap_or(0);
            self.per_class.iter().position(|&c| c == top).unwrap_or(0)
        })
    }

    pub fn ood_pct(&self) -> Option<f64> {
        (self.scored > 0).then(|| 100.0 * self.ood as f64 / self.scored as f64)
    }

    pub fn kl_mean_nats(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.kl_sum_nats / self.scored as f64)
    }
}

/// The per-pixel calls of one cube, as scene rasters (the per-plant counts are
/// [`PlantPixels`], kept in the predictions table).
#[derive(Debug, Clone, PartialEq)]
pub struct PixelCalls {
    pub lines: usize,
    pub samples: usize,
    /// Plant pixels within this many pixels of another plant or of non-plant pixels (mixed edge
    /// pixels) were not scored.
    pub erosion_px: usize,
    /// Scene raster (row-major): 1 + output index of each scored pixel's class, 0 where no pixel
    /// was scored.
    pub class_of_pixel: Vec<u16>,
    /// Scene raster: KL of each scored pixel, NaN elsewhere.
    pub kl_of_pixel: Vec<f32>,
    /// Scene raster: 1 where a scored pixel is flagged out of distribution.
    pub ood_of_pixel: Vec<u8>,
}

/// Which pixels of each plant are scored: those whose every neighbour within `erosion_px`
/// (8-connected, iterated) belongs to the same plant, so that plant-soil mixtures at the edge do
/// not count as tissue; a plant with no such pixel (too thin) is scored on all its pixels.
/// Returns the scene raster of 1-based plant indices of scored pixels (0: not scored).
pub fn scored_pixels(plants: &PlantSet, erosion_px: usize) -> Vec<u32> {
    let (lines, samples) = (plants.lines, plants.samples);
    let mut core = plants.pixel_plants.clone();
    for _ in 0..erosion_px {
        let previous = core.clone();
        for row in 0..lines {
            for col in 0..samples {
                let i = row * samples + col;
                let own = previous[i];
                if own == 0 {
                    continue;
                }
                let interior = row > 0
                    && col > 0
                    && row + 1 < lines
                    && col + 1 < samples
                    && (row - 1..=row + 1).all(|r| {
                        previous[r * samples + col - 1..=r * samples + col + 1]
                            .iter()
                            .all(|&p| p == own)
                    });
                if !interior {
                    core[i] = 0;
                }
            }
        }
    }
    let mut has_core = vec![false; plants.plants.len() + 1];
    core.iter().for_each(|&p| has_core[p as usize] = true);
    for (c, &p) in core.iter_mut().zip(&plants.pixel_plants) {
        if p != 0 && !has_core[p as usize] {
            *c = p;
        }
    }
    core
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SpectralAxis;

    fn set(lines: usize, samples: usize, pixel_plants: Vec<u32>, plants: usize) -> PlantSet {
        PlantSet {
            axis: SpectralAxis::new(vec![500.0], None).unwrap(),
            plants: (0..plants)
                .map(|i| crate::Plant {
                    plant_id: i as u32 + 1,
                    pixel_count: 0,
                    centroid_row: 0.0,
                    centroid_col: 0.0,
                    centroid_x: None,
                    centroid_y: None,
                    bbox: crate::BoundingBox {
                        row_min: 0,
                        row_max: 0,
                        col_min: 0,
                        col_max: 0,
                    },
                    mean_reflectance: Vec::new(),
                    std_reflectance: Vec::new(),
                    mean_ndvi: None,
                    label_code: None,
                    attributes: Vec::new(),
                })
                .collect(),
            attributes: Vec::new(),
            vegetation_pixels: 0,
            total_pixels: (lines * samples) as u64,
            pixel_plants,
            lines,
            samples,
        }
    }

    /// A 5x5 plant, a 1-pixel-wide plant and a thin plant touching the first: erosion keeps the
    /// 3x3 core of the square and the thin plants whole (they have no core).
    #[test]
    fn erosion_keeps_cores_and_thin_plants() {
        #[rustfmt::skip]
        let raster = vec![
            0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 1, 1, 1, 1, 1, 0, 2, 0,
            0, 1, 1, 1, 1, 1, 0, 2, 0,
            0, 1, 1, 1, 1, 1, 3, 2, 0,
            0, 1, 1, 1, 1, 1, 3, 0, 0,
            0, 1, 1, 1, 1, 1, 3, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let plants = set(7, 9, raster.clone(), 3);
        assert_eq!(scored_pixels(&plants, 0), raster);
        let core = scored_pixels(&plants, 1);
        #[rustfmt::skip]
        let expected = vec![
            0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 2, 0,
            0, 0, 1, 1, 1, 0, 0, 2, 0,
            0, 0, 1, 1, 1, 0, 3, 2, 0,
            0, 0, 1, 1, 1, 0, 3, 0, 0,
            0, 0, 0, 0, 0, 0, 3, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(core, expected);
        // Two passes: the 5x5 keeps its centre only.
        let core = scored_pixels(&plants, 2);
        assert_eq!(core.iter().filter(|&&p| p == 1).count(), 1);
        assert_eq!(core[3 * 9 + 3], 1);
    }

    #[test]
    fn severity_vote_and_shares() {
        let p = PlantPixels {
            scored: 8,
            per_class: vec![5, 2, 1],
            ood: 2,
            kl_sum_nats: 16.0,
        };
        assert_eq!(p.severity_pct(0), Some(37.5));
        assert_eq!(p.vote(), Some(0));
        assert_eq!(p.ood_pct(), Some(25.0));
        assert_eq!(p.kl_mean_nats(), Some(2.0));
        let tie = PlantPixels {
            scored: 4,
            per_class: vec![1, 2, 2],
            ood: 0,
            kl_sum_nats: 0.0,
        };
        assert_eq!(tie.vote(), Some(1));
        assert_eq!(PlantPixels::new(3).severity_pct(0), None);
    }
}
