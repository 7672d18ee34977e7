//! A synthetic field scan: plants of varied size and shape on measured soil, with mixed edge
//! pixels, illumination, shadow, within-plant variation and sensor noise.

use domain::{ClassInfo, ClassSet, GeoReference, LabelRaster, RasterCube, SpectralAxis};

use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::sensor::{vnir_swir_axis, SpectralResponse};

/// Endmembers on a fine wavelength grid (the bundled library: 1 nm, 400-2500 nm).
#[derive(Debug, Clone)]
pub struct SpectralLibrary {
    pub wavelength_nm: Vec<f64>,
    /// Canopy spectra, row-major `n x wavelength_nm.len()`, reflectance 0-1.
    pub canopy: Vec<f32>,
    /// Class name of each canopy spectrum (`healthy`, `rust`, `blight`).
    pub canopy_labels: Vec<String>,
    /// Disease severity of each canopy spectrum, 0 (healthy) to 1.
    pub canopy_severity: Vec<f64>,
    /// Soil spectra, row-major.
    pub soil: Vec<f32>,
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FieldSpec {
    pub field_id: String,
    pub lines: usize,
    pub samples: usize,
    /// Plants sit one per square cell of this many pixels.
    pub cell_px: usize,
    pub seed: u64,
    /// Map position of the top-left corner (UTM zone 32N, EPSG:32632) and pixel size.
    pub origin_x_m: f64,
    pub origin_y_m: f64,
    pub pixel_size_m: f64,
    /// Diseased plants are drawn from library spectra at least this severe: ground truth scored in
    /// the field is reliable for symptomatic plants; mild cases of rust and blight overlap.
    pub min_disease_severity: f64,
    /// Diseased plants carry lesions: patches of diseased tissue (the disease's library spectra)
    /// on otherwise healthy tissue, covering a drawn share of the plant's pixels (its severity).
    /// Without lesions, a diseased plant is diseased all over.
    #[serde(default)]
    pub lesions: bool,
    /// Class code of every plant (row-major over the cells), in place of the balanced shuffle:
    /// the same seed then gives the same plants (positions, shapes, spectra draws) in another
    /// disease state, as a field scanned again later.
    #[serde(default)]
    pub plant_classes: Option<Vec<u32>>,
    /// Seed of the scan's own randomness (illumination, mixing, noise), drawn after the plants:
    /// another scan of the same field. `None` keeps one stream for everything.
    #[serde(default)]
    pub scan_seed: Option<u64>,
}

/// Severity of a lesioned plant is drawn uniformly from this range (share of its pixels).
pub const LESION_SEVERITY_RANGE: (f64, f64) = (0.03, 0.7);

/// Class codes in the label rasters.
pub const CLASSES: [(u32, &str); 3] = [(1, "healthy"), (2, "rust"), (3, "blight")];

/// A generated scene.
#[derive(Debug, Clone)]
pub struct Scene {
    pub cube: RasterCube,
    pub labels: LabelRaster,
    /// Per plant: (class code, library row of its main spectrum).
    pub plants: Vec<(u32, usize)>,
    /// Per plant: share of its labelled pixels that are lesion (0 for healthy plants; 1 for
    /// diseased plants of fields without lesions).
    pub severity: Vec<f64>,
    /// Scene raster: 1 + plant index of each labelled pixel (a plant-id raster), 0 elsewhere.
    pub plant_ids: Vec<u32>,
    /// With lesions: the per-pixel truth, healthy tissue `healthy` and lesion pixels the
    /// plant's disease (labelled pixels only).
    pub pixel_truth: Option<LabelRaster>,
}

const SCALE_FACTOR: f64 = 10000.0;
const SUPERSAMPLING: usize = 4;

/// One plant's footprint: a lobed ellipse.
struct Shape {
    row: f64,
    col: f64,
    radius: f64,
    aspect: f64,
    rotation: f64,
    lobes: f64,
    lobe_amplitude: f64,
    lobe_phase: f64,
}

impl Shape {
    fn contains(&self, row: f64, col: f64) -> bool {
        let (dr, dc) = (row - self.row, col - self.col);
        let (s, c) = self.rotation.sin_cos();
        let (u, v) = (dc * c + dr * s, (-dc * s + dr * c) * self.aspect);
        let distance = (u * u + v * v).sqrt();
        let angle = v.atan2(u);
        distance
            <= self.radius
                * (1.0 + self.lobe_amplitude * (self.lobes * angle + self.lobe_phase).sin())
    }
}

/// Generate one field. Deterministic for a given library and spec.
pub fn generate(library: &SpectralLibrary, spec: &FieldSpec) -> Result<Scene> {
    let fine_bands = library.wavelength_nm.len();
    if fine_bands == 0
        || library.canopy.len() != library.canopy_labels.len() * fine_bands
        || library.canopy_severity.len() != library.canopy_labels.len()
        || !library.soil.len().is_multiple_of(fine_bands)
    {
        return Err(Error::Library(
            "spectra do not match the wavelength grid".into(),
        ));
    }
    if spec.lines < spec.cell_px || spec.samples < spec.cell_px || spec.cell_px < 6 {
        return Err(Error::Spec(format!(
            "a {}x{} field cannot hold cells of {} px (cells need at least 6 px)",
            spec.lines, spec.samples, spec.cell_px
        )));
    }
    let axis: SpectralAxis = vnir_swir_axis();
    let bands = axis.len();
    let response = SpectralResponse::new(&library.wavelength_nm, &axis);
    let on_sensor = |rows: &[f32]| -> Vec<Vec<f64>> {
        rows.chunks(fine_bands).map(|r| response.apply(r)).collect()
    };
    let canopy = on_sensor(&library.canopy);
    let soils = on_sensor(&library.soil);
    if soils.len() < 2 {
        return Err(Error::Library(
            "at least two soil spectra are needed".into(),
        ));
    }
    let rows_of_class: Vec<Vec<usize>> = CLASSES
        .iter()
        .map(|(_, name)| {
            (0..canopy.len())
                .filter(|&i| library.canopy_labels[i] == *name)
                .filter(|&i| {
                    *name == "healthy" || library.canopy_severity[i] >= spec.min_disease_severity
                })
                .collect()
        })
        .collect();
    if let Some((_, name)) = CLASSES
        .iter()
        .zip(&rows_of_class)
        .find(|(_, rows)| rows.is_empty())
        .map(|(c, _)| c)
    {
        return Err(Error::Library(format!(
            "no canopy spectra labelled '{name}' (with severity >= {} for diseases)",
            spec.min_disease_severity
        )));
    }

    let mut rng = Rng::new(spec.seed);
    let (lines, samples) = (spec.lines, spec.samples);
    // Two soils blended by a smooth field, like moisture or texture varying across a plot.
    let soil_a = rng.index(soils.len());
    let soil_b = (soil_a + 1 + rng.index(soils.len() - 1)) % soils.len();
    let (wave_row, wave_col, wave_phase) = (
        rng.range(0.02, 0.06),
        rng.range(0.02, 0.06),
        rng.range(0.0, 6.3),
    );

    // Plants: one per cell, classes balanced and shuffled.
    let cells_down = lines / spec.cell_px;
    let cells_across = samples / spec.cell_px;
    let n_plants = cells_down * cells_across;
    let mut plant_classes: Vec<usize> = (0..n_plants).map(|i| i % CLASSES.len()).collect();
    rng.shuffle(&mut plant_classes);
    if let Some(codes) = &spec.plant_classes {
        if codes.len() != n_plants {
            return Err(Error::Spec(format!(
                "{} plant classes for {n_plants} plants",
                codes.len()
            )));
        }
        for (class, code) in plant_classes.iter_mut().zip(codes) {
            *class = CLASSES
                .iter()
                .position(|(c, _)| c == code)
                .ok_or_else(|| Error::Spec(format!("plant class code {code} is not a class")))?;
        }
    }
    let cell = spec.cell_px as f64;
    let mut shapes = Vec::with_capacity(n_plants);
    let mut plants = Vec::with_capacity(n_plants);
    let mut plant_spectra = Vec::with_capacity(n_plants);
    for (i, &class) in plant_classes.iter().enumerate() {
        let (cell_row, cell_col) = ((i / cells_across) as f64, (i % cells_across) as f64);
        let radius = rng.range(0.18, 0.36) * cell;
        let slack = (cell / 2.0 - radius * 1.25).max(0.0);
        shapes.push(Shape {
            row: (cell_row + 0.5) * cell + rng.range(-slack, slack),
            col: (cell_col + 0.5) * cell + rng.range(-slack, slack),
            radius,
            aspect: rng.range(0.8, 1.25),
            rotation: rng.range(0.0, std::f64::consts::PI),
            lobes: (3 + rng.index(4)) as f64,
            lobe_amplitude: rng.range(0.0, 0.2),
            lobe_phase: rng.range(0.0, 6.3),
        });
        let rows = &rows_of_class[class];
        let main = rows[rng.index(rows.len())];
        let second = rows[rng.index(rows.len())];
        plants.push((CLASSES[class].0, main));
        plant_spectra.push((main, second));
    }

    // Which plant (if any) covers how much of each pixel, and the shadows: geometry only.
    let mut cover = Vec::with_capacity(lines * samples);
    for row in 0..lines {
        for col in 0..samples {
            let (r, c) = (row as f64, col as f64);
            let cell_index = (row / spec.cell_px).min(cells_down - 1) * cells_across
                + (col / spec.cell_px).min(cells_across - 1);
            let mut fraction = 0.0;
            let mut owner = None;
            let mut shade = 1.0;
            for candidate in [cell_index].into_iter().chain(neighbour_cells(
                cell_index,
                cells_down,
                cells_across,
            )) {
                let shape = &shapes[candidate];
                let mut inside = 0;
                for sr in 0..SUPERSAMPLING {
                    for sc in 0..SUPERSAMPLING {
                        let pr = r + (sr as f64 + 0.5) / SUPERSAMPLING as f64;
                        let pc = c + (sc as f64 + 0.5) / SUPERSAMPLING as f64;
                        inside += usize::from(shape.contains(pr, pc));
                    }
                }
                let f = inside as f64 / (SUPERSAMPLING * SUPERSAMPLING) as f64;
                if f > fraction {
                    fraction = f;
                    owner = Some(candidate);
                }
                // Shadow cast towards the lower right, within a plant radius of its edge.
                if shape.contains(r + 0.5 - 0.6 * shape.radius, c + 0.5 - 0.6 * shape.radius) {
                    shade = 0.72;
                }
            }
            cover.push((fraction, owner.filter(|_| fraction > 0.0), shade));
        }
    }
    let plant_ids: Vec<u32> = cover
        .iter()
        .map(|&(fraction, owner, _)| match owner {
            Some(p) if fraction >= 0.5 => p as u32 + 1,
            _ => 0,
        })
        .collect();
    let lesions = if spec.lesions {
        Some(draw_lesions(
            &mut rng,
            &plants,
            &rows_of_class[0],
            &cover,
            &plant_ids,
            samples,
        ))
    } else {
        None
    };

    if let Some(seed) = spec.scan_seed {
        rng = Rng::new(seed);
    }
    let mut values = vec![0u16; bands * lines * samples];
    let mut codes = vec![0u32; lines * samples];
    let mut truth = lesions.as_ref().map(|_| vec![0u32; lines * samples]);
    let gradient = (rng.range(-0.08, 0.08), rng.range(-0.08, 0.08));
    let mut pixel = vec![0f64; bands];
    for row in 0..lines {
        for col in 0..samples {
            let (r, c) = (row as f64, col as f64);
            let (fraction, owner, shade) = cover[row * samples + col];
            let blend = 0.5 + 0.5 * (wave_row * r + wave_col * c + wave_phase).sin();
            let illumination = (1.0
                + gradient.0 * (r / lines as f64 - 0.5)
                + gradient.1 * (c / samples as f64 - 0.5))
                * (1.0 + 0.03 * rng.normal());
            let soil_brightness = shade * (1.0 + 0.04 * rng.normal());
            let (plant, mix, leaf_brightness) = match owner {
                Some(p) if fraction > 0.0 => {
                    // A lesioned plant's healthy tissue has healthy spectra.
                    let spectra = match &lesions {
                        Some(l)
                            if !l.lesion[row * samples + col] && plants[p].0 != CLASSES[0].0 =>
                        {
                            l.healthy_spectra[p]
                        }
                        _ => plant_spectra[p],
                    };
                    (
                        Some(spectra),
                        rng.range(0.0, 0.35),
                        1.0 + 0.06 * rng.normal(),
                    )
                }
                _ => (None, 0.0, 1.0),
            };
            for b in 0..bands {
                let soil = blend * soils[soil_a][b] + (1.0 - blend) * soils[soil_b][b];
                let mut value = (1.0 - fraction) * soil * soil_brightness;
                if let Some((main, second)) = plant {
                    let leaf = (1.0 - mix) * canopy[main][b] + mix * canopy[second][b];
                    value += fraction * leaf * leaf_brightness;
                }
                pixel[b] = value * illumination;
            }
            for (b, &v) in pixel.iter().enumerate() {
                // Shot-like noise grows with signal; a read-noise floor; SWIR detectors are noisier.
                let floor = if axis.wavelength_nm()[b] > 1000.0 {
                    0.004
                } else {
                    0.002
                };
                let noisy = v + (floor + 0.01 * v) * rng.normal();
                values[(b * lines + row) * samples + col] =
                    (noisy * SCALE_FACTOR).round().clamp(0.0, u16::MAX as f64) as u16;
            }
            if let (Some(p), true) = (owner, fraction >= 0.5) {
                codes[row * samples + col] = plants[p].0;
                if let (Some(truth), Some(l)) = (&mut truth, &lesions) {
                    truth[row * samples + col] = if l.lesion[row * samples + col] {
                        plants[p].0
                    } else {
                        CLASSES[0].0
                    };
                }
            }
        }
    }

    let georeference = GeoReference {
        origin_x: spec.origin_x_m,
        origin_y: spec.origin_y_m,
        pixel_width: spec.pixel_size_m,
        pixel_height: spec.pixel_size_m,
        epsg: Some(32632),
        crs_wkt: UTM32N_WKT.to_string(),
    };
    let classes = ClassSet::new(
        CLASSES
            .iter()
            .map(|&(code, name)| ClassInfo {
                code,
                name: name.into(),
            })
            .collect(),
    )
    .expect("fixed classes are valid");
    Ok(Scene {
        cube: RasterCube {
            lines,
            samples,
            axis,
            values_bsq: values,
            reflectance_scale_factor: SCALE_FACTOR,
            georeference: Some(georeference.clone()),
            description: format!(
                "synthetic field scan '{}' (seed {}): PROSPECT-D + 4SAIL canopies on measured soils, generated by pipeline synth",
                spec.field_id, spec.seed
            ),
        },
        severity: match &lesions {
            Some(l) => l.severity.clone(),
            None => plants
                .iter()
                .map(|&(code, _)| f64::from(u8::from(code != CLASSES[0].0)))
                .collect(),
        },
        pixel_truth: truth.map(|codes| LabelRaster {
            lines,
            samples,
            codes,
            classes: classes.clone(),
            georeference: Some(georeference.clone()),
        }),
        labels: LabelRaster {
            lines,
            samples,
            codes,
            classes,
            georeference: Some(georeference),
        },
        plants,
        plant_ids,
    })
}

/// Lesions of every diseased plant: which pixels are lesion, the healthy spectra of the rest,
/// and each plant's severity.
struct Lesions {
    lesion: Vec<bool>,
    healthy_spectra: Vec<(usize, usize)>,
    severity: Vec<f64>,
}

/// For each diseased plant: a severity s from [`LESION_SEVERITY_RANGE`], one to three patch
/// centres on its labelled pixels with random sizes, and a ragged distance score per pixel
/// (distance to the nearest centre over its size, plus noise); the round(s n) labelled pixels of
/// lowest score are lesion, so the plant's severity is exactly that share. Its partly covered
/// edge pixels are lesion when their score is below the last lesion pixel's.
fn draw_lesions(
    rng: &mut Rng,
    plants: &[(u32, usize)],
    healthy_rows: &[usize],
    cover: &[(f64, Option<usize>, f64)],
    plant_ids: &[u32],
    samples: usize,
) -> Lesions {
    let mut lesion = vec![false; cover.len()];
    let mut healthy_spectra = Vec::with_capacity(plants.len());
    let mut severity = vec![0.0; plants.len()];
    let mut owned: Vec<Vec<usize>> = vec![Vec::new(); plants.len()];
    for (i, &(_, owner, _)) in cover.iter().enumerate() {
        if let Some(p) = owner {
            owned[p].push(i);
        }
    }
    for (p, &(code, _)) in plants.iter().enumerate() {
        healthy_spectra.push((
            healthy_rows[rng.index(healthy_rows.len())],
            healthy_rows[rng.index(healthy_rows.len())],
        ));
        let labelled: Vec<usize> = owned[p]
            .iter()
            .copied()
            .filter(|&i| plant_ids[i] == p as u32 + 1)
            .collect();
        if code == CLASSES[0].0 || labelled.is_empty() {
            continue;
        }
        let share = rng.range(LESION_SEVERITY_RANGE.0, LESION_SEVERITY_RANGE.1);
        let centres: Vec<(f64, f64, f64)> = (0..1 + rng.index(3))
            .map(|_| {
                let at = labelled[rng.index(labelled.len())];
                (
                    (at / samples) as f64,
                    (at % samples) as f64,
                    rng.range(0.6, 1.4),
                )
            })
            .collect();
        let score = |i: usize, noise: f64| {
            let (r, c) = ((i / samples) as f64, (i % samples) as f64);
            centres
                .iter()
                .map(|&(cr, cc, size)| ((r - cr).powi(2) + (c - cc).powi(2)).sqrt() / size)
                .fold(f64::INFINITY, f64::min)
                + noise
        };
        let scores: Vec<(f64, usize)> = owned[p]
            .iter()
            .map(|&i| (score(i, 0.8 * rng.normal()), i))
            .collect();
        let mut ranked: Vec<(f64, usize)> = scores
            .iter()
            .copied()
            .filter(|&(_, i)| plant_ids[i] == p as u32 + 1)
            .collect();
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let k = ((share * ranked.len() as f64).round() as usize).clamp(1, ranked.len());
        let last = ranked[k - 1].0;
        for &(_, i) in &ranked[..k] {
            lesion[i] = true;
        }
        for &(s, i) in &scores {
            if plant_ids[i] != p as u32 + 1 && s <= last {
                lesion[i] = true;
            }
        }
        severity[p] = k as f64 / ranked.len() as f64;
    }
    Lesions {
        lesion,
        healthy_spectra,
        severity,
    }
}

fn neighbour_cells(index: usize, down: usize, across: usize) -> impl Iterator<Item = usize> {
    let (row, col) = ((index / across) as i64, (index % across) as i64);
    (-1..=1i64)
        .flat_map(move |dr| (-1..=1i64).map(move |dc| (row + dr, col + dc)))
        .filter(move |&(r, c)| {
            (r, c) != (row, col) && r >= 0 && c >= 0 && r < down as i64 && c < across as i64
        })
        .map(move |(r, c)| r as usize * across + c as usize)
}

/// WGS 84 / UTM zone 32N.
const UTM32N_WKT: &str = r#"PROJCS["WGS 84 / UTM zone 32N",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AUTHORITY["EPSG","4326"]],PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",9],PARAMETER["scale_factor",0.9996],PARAMETER["false_easting",500000],PARAMETER["false_northing",0],UNIT["metre",1,AUTHORITY["EPSG","9001"]],AXIS["Easting",EAST],AXIS["Northing",NORTH],AUTHORITY["EPSG","32632"]]"#;
