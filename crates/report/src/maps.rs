//! Pictures of a field for people: plant outlines over a true-colour quicklook, and the class map
//! as RGB, both decimated like the quicklook (every `step`-th line and sample).

use domain::PlantSet;

/// Magenta: out-of-distribution plants.
pub const OOD_COLOUR: [u8; 3] = [255, 0, 255];

/// The plant (1-based index into the plant set, 0 = none) at each decimated pixel.
fn decimated_plants(plants: &PlantSet, step: usize, width: usize, height: usize) -> Vec<u32> {
    let mut out = vec![0u32; width * height];
    for y in 0..height {
        for x in 0..width {
            let (line, sample) = (y * step, x * step);
            if line < plants.lines && sample < plants.samples {
                out[y * width + x] = plants.pixel_plants[line * plants.samples + sample];
            }
        }
    }
    out
}

/// Draw each plant's outline (its pixels with a 4-neighbour outside it) over `rgb` (width x
/// height, decimated from the scene by `step`) in `colour_of(plant index)`; plants with `ood`
/// get a magenta outline and a cross at their centroid.
pub fn draw_plant_outlines(
    rgb: &mut [u8],
    (width, height, step): (usize, usize, usize),
    plants: &PlantSet,
    colour_of: impl Fn(usize) -> [u8; 3],
    ood: impl Fn(usize) -> bool,
) {
    let ids = decimated_plants(plants, step, width, height);
    let mut paint = |x: usize, y: usize, c: [u8; 3]| {
        if x < width && y < height {
            rgb[(y * width + x) * 3..(y * width + x) * 3 + 3].copy_from_slice(&c);
        }
    };
    for y in 0..height {
        for x in 0..width {
            let id = ids[y * width + x];
            if id == 0 {
                continue;
            }
            let differs = |nx: Option<usize>, ny: Option<usize>| match (nx, ny) {
                (Some(nx), Some(ny)) if nx < width && ny < height => ids[ny * width + nx] != id,
                _ => true,
            };
            let edge = differs(x.checked_sub(1), Some(y))
                || differs(Some(x + 1), Some(y))
                || differs(Some(x), y.checked_sub(1))
                || differs(Some(x), Some(y + 1));
            if edge {
                let index = id as usize - 1;
                paint(
                    x,
                    y,
                    if ood(index) {
                        OOD_COLOUR
                    } else {
                        colour_of(index)
                    },
                );
            }
        }
    }
    for (index, plant) in plants.plants.iter().enumerate() {
        if !ood(index) {
            continue;
        }
        let (cx, cy) = (
            (plant.centroid_col / step as f64).round() as usize,
            (plant.centroid_row / step as f64).round() as usize,
        );
        for d in 0..=2usize {
            for (x, y) in [
                (cx + d, cy + d),
                (cx.wrapping_sub(d), cy.wrapping_sub(d)),
                (cx + d, cy.wrapping_sub(d)),
                (cx.wrapping_sub(d), cy + d),
            ] {
                paint(x, y, OOD_COLOUR);
            }
        }
    }
}

/// The class map as RGB (decimated by `step`): plants filled in their class colour, the rest
/// light grey.
pub fn class_map_rgb(
    plants: &PlantSet,
    step: usize,
    colour_of: impl Fn(usize) -> [u8; 3],
) -> (usize, usize, Vec<u8>) {
    let (width, height) = (plants.samples.div_ceil(step), plants.lines.div_ceil(step));
    let ids = decimated_plants(plants, step, width, height);
    let mut rgb = Vec::with_capacity(width * height * 3);
    for &id in &ids {
        rgb.extend(if id == 0 {
            [235, 235, 235]
        } else {
            colour_of(id as usize - 1)
        });
    }
    (width, height, rgb)
}

/// Grey of plant pixels that were not scored (edge pixels) in per-pixel maps.
const UNSCORED_COLOUR: [u8; 3] = [150, 150, 150];

/// The per-pixel class map as RGB, decimated from the scene by `step`: scored pixels in their
/// class colour (`colour_of(class index)`), unscored plant pixels grey, the rest light grey.
pub fn pixel_class_rgb(
    plants: &PlantSet,
    class_of_pixel: &[u16],
    step: usize,
    colour_of: impl Fn(usize) -> [u8; 3],
) -> (usize, usize, Vec<u8>) {
    let (width, height) = (plants.samples.div_ceil(step), plants.lines.div_ceil(step));
    let mut rgb = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let i = (y * step) * plants.samples + x * step;
            rgb.extend(match (class_of_pixel[i], plants.pixel_plants[i]) {
                (0, 0) => [235, 235, 235],
                (0, _) => UNSCORED_COLOUR,
                (c, _) => colour_of(c as usize - 1),
            });
        }
    }
    (width, height, rgb)
}

/// Paint the scored pixels not of class `skip` (the healthy class: lesions stand out) over
/// `rgb` (width x height, decimated from the scene by `step`) in their class colour.
pub fn paint_pixel_classes(
    rgb: &mut [u8],
    (width, height, step): (usize, usize, usize),
    (lines, samples): (usize, usize),
    class_of_pixel: &[u16],
    skip: Option<usize>,
    colour_of: impl Fn(usize) -> [u8; 3],
) {
    for y in 0..height {
        for x in 0..width {
            let (line, sample) = (y * step, x * step);
            if line >= lines || sample >= samples {
                continue;
            }
            let c = class_of_pixel[line * samples + sample];
            if c == 0 || Some(c as usize - 1) == skip {
                continue;
            }
            let o = (y * width + x) * 3;
            rgb[o..o + 3].copy_from_slice(&colour_of(c as usize - 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{BoundingBox, Plant, SpectralAxis};

    fn plant(id: u32, row: f64, col: f64) -> Plant {
        Plant {
            plant_id: id,
            pixel_count: 9,
            centroid_row: row,
            centroid_col: col,
            centroid_x: None,
            centroid_y: None,
            bbox: BoundingBox {
                row_min: 0,
                row_max: 0,
                col_min: 0,
                col_max: 0,
            },
            mean_reflectance: vec![],
            std_reflectance: vec![],
            mean_ndvi: None,
            label_code: None,
            attributes: vec![],
        }
    }

    #[test]
    fn outlines_ring_a_square_and_mark_ood() {
        // A 3x3 plant (index 0) in a 5x5 scene: its 8 border pixels are outline, the centre not.
        let mut pixel_plants = vec![0u32; 25];
        for l in 1..4 {
            for s in 1..4 {
                pixel_plants[l * 5 + s] = 1;
            }
        }
        let set = PlantSet {
            axis: SpectralAxis::new(vec![500.0], None).unwrap(),
            plants: vec![plant(1, 2.0, 2.0)],
            attributes: vec![],
            vegetation_pixels: 9,
            total_pixels: 25,
            pixel_plants,
            lines: 5,
            samples: 5,
        };
        let mut rgb = vec![0u8; 75];
        draw_plant_outlines(&mut rgb, (5, 5, 1), &set, |_| [1, 2, 3], |_| false);
        let coloured: Vec<usize> = (0..25)
            .filter(|&i| rgb[i * 3..i * 3 + 3] == [1, 2, 3])
            .collect();
        assert_eq!(coloured, vec![6, 7, 8, 11, 13, 16, 17, 18]);
        let mut rgb = vec![0u8; 75];
        draw_plant_outlines(&mut rgb, (5, 5, 1), &set, |_| [1, 2, 3], |_| true);
        assert_eq!(
            &rgb[12 * 3..12 * 3 + 3],
            &OOD_COLOUR,
            "cross at the centroid"
        );
        let (w, h, map) = class_map_rgb(&set, 2, |_| [9, 9, 9]);
        assert_eq!((w, h), (3, 3));
        // Decimated pixel (1, 1) is scene pixel (2, 2): inside the plant.
        assert_eq!(&map[4 * 3..4 * 3 + 3], &[9, 9, 9]);
        assert_eq!(&map[0..3], &[235, 235, 235]);
    }
}
