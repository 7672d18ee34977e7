use ingest::{
    find_plants, AutoThreshold, Cube, PlantConfig, ReadConfig, Threshold, VegetationIndex,
};

use crate::{wavelength_field, write_envi_by_hand};

/// Two bands (red 670, NIR 800); vegetation where the mask says so. Plants span block borders.
#[test]
fn plants_are_whole_across_block_borders() {
    #[rustfmt::skip]
    let mask = [
        "..........",
        ".###......",
        ".###...##.",
        "..#....##.",
        "..#.......",
        "..##...#..",
        "...#..###.",
        "......#...",
        "..........",
    ];
    let (lines, samples) = (mask.len(), mask[0].len());
    let vegetation = |l: usize, s: usize| mask[l].as_bytes()[s] == b'#';
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "data type = 4\nbyte order = 0\nmap info = {{UTM, 1, 1, 500000, 4100000, 0.5, 0.25, 32, North, WGS-84}}\n{}",
        wavelength_field(2, 670.0, 130.0)
    );
    // Spectra encode position so that means can be checked: red 0.05 on plants, NIR = 0.5 + row/100.
    let config = PlantConfig {
        min_plant_area_px: 3,
        threshold: Threshold::Fixed(0.5),
        opening_radius_px: 0,
        ..PlantConfig::default()
    };
    // Every interleave: BIP blocks are accumulated pixel-major, the others band by band.
    let mut hdr = std::path::PathBuf::new();
    for interleave in ["bsq", "bil", "bip"] {
        hdr = write_envi_by_hand(
            dir.path(),
            &format!("plants-{interleave}"),
            (lines, samples, 2),
            interleave,
            &extra,
            |v| (v as f32).to_le_bytes().to_vec(),
            |b, l, s| match (b, vegetation(l, s)) {
                (0, true) => 0.05,
                (0, false) => 0.2,
                (_, true) => 0.5 + l as f64 / 100.0,
                (_, false) => 0.25,
            },
        );
        for block_lines in [1, 2, 3, lines] {
            let cube = Cube::open(
                &hdr,
                &ReadConfig {
                    block_bytes: block_lines * samples * 2 * 4,
                    ..ReadConfig::default()
                },
            )
            .unwrap();
            assert_eq!(cube.block_lines(), block_lines);
            let set = find_plants(&cube, &config).unwrap();
            let sizes: Vec<u64> = set.plants.iter().map(|p| p.pixel_count).collect();
            assert_eq!(
                sizes,
                vec![11, 4, 5],
                "{interleave}, block of {block_lines} lines"
            );
            let first = &set.plants[0];
            assert_eq!(
                (
                    first.bbox.row_min,
                    first.bbox.row_max,
                    first.bbox.col_min,
                    first.bbox.col_max
                ),
                (1, 6, 1, 3)
            );
            // The first plant is the only vegetation in columns 0-3: its centroid straight from the mask.
            let rows: Vec<usize> = (0..lines)
                .flat_map(|l| (0..4).filter(move |&s| vegetation(l, s)).map(move |_| l))
                .collect();
            let mean_row = rows.iter().sum::<usize>() as f64 / rows.len() as f64;
            assert!((first.centroid_row - mean_row).abs() < 1e-9);
            assert!((first.mean_reflectance[1] as f64 - (0.5 + mean_row / 100.0)).abs() < 1e-6);
            assert_eq!(set.vegetation_pixels, 20);
            // Standard deviation (ddof 0) of NIR = 0.5 + row / 100 over the plant's pixels; red is constant.
            let nir_std = (rows
                .iter()
                .map(|&r| (r as f64 / 100.0 - mean_row / 100.0).powi(2))
                .sum::<f64>()
                / rows.len() as f64)
                .sqrt();
            assert!((first.std_reflectance[1] as f64 - nir_std).abs() < 1e-6);
            assert!(first.std_reflectance[0].abs() < 1e-6);
            let ndvi = rows
                .iter()
                .map(|&r| {
                    let nir = (0.5 + r as f64 / 100.0) as f32 as f64;
                    (nir - 0.05f32 as f64) / (nir + 0.05f32 as f64)
                })
                .sum::<f64>()
                / rows.len() as f64;
            assert!((first.mean_ndvi.unwrap() - ndvi).abs() < 1e-6);
            // Map coordinates of the centroid's pixel centre: x = 500000 + (col + 0.5) * 0.5,
            // y = 4100000 - (row + 0.5) * 0.25.
            let x = 500_000.0 + (first.centroid_col + 0.5) * 0.5;
            let y = 4_100_000.0 - (first.centroid_row + 0.5) * 0.25;
            assert!((first.centroid_x.unwrap() - x).abs() < 1e-6);
            assert!((first.centroid_y.unwrap() - y).abs() < 1e-6);
        }
    }
    let cube = Cube::open(&hdr, &ReadConfig::default()).unwrap();
    // Otsu finds the same split as the fixed threshold (soil NDVI 0.11, plants 0.82-0.86).
    let otsu = PlantConfig {
        threshold: Threshold::Auto(AutoThreshold::Otsu),
        ..config.clone()
    };
    let (_, t) = ingest::vegetation_mask(&cube, &otsu).unwrap();
    assert!(t > 0.3 && t < 0.82, "otsu threshold {t}");
    assert_eq!(find_plants(&cube, &otsu).unwrap().plants.len(), 3);
    // Area limits: the 11-pixel plant is too large for a 10-pixel maximum.
    let capped = PlantConfig {
        max_plant_area_px: Some(10),
        ..config.clone()
    };
    let sizes: Vec<u64> = find_plants(&cube, &capped)
        .unwrap()
        .plants
        .iter()
        .map(|p| p.pixel_count)
        .collect();
    assert_eq!(sizes, vec![4, 5]);
    // An opening of radius 1 keeps only what a 3x3 square covers, and no region here holds one.
    let opened = PlantConfig {
        opening_radius_px: 1,
        min_plant_area_px: 1,
        ..config
    };
    let sizes: Vec<u64> = find_plants(&cube, &opened)
        .unwrap()
        .plants
        .iter()
        .map(|p| p.pixel_count)
        .collect();
    assert_eq!(sizes, Vec::<u64>::new());
}

/// NDRE reads the red-edge and NIR bands; a cube without a red-edge band is an error naming it.
#[test]
fn red_edge_index() {
    let dir = tempfile::tempdir().unwrap();
    // Bands 670, 720, 800: plant pixels red 0.05, red edge 0.2, NIR 0.5; soil 0.2, 0.22, 0.25.
    let extra =
        "data type = 4\nbyte order = 0\nwavelength units = nm\nwavelength = {670, 720, 800}\n";
    let plant = |l: usize, s: usize| (1..4).contains(&l) && (1..4).contains(&s);
    let hdr = write_envi_by_hand(
        dir.path(),
        "edge",
        (5, 5, 3),
        "bsq",
        extra,
        |v| (v as f32).to_le_bytes().to_vec(),
        |b, l, s| match (b, plant(l, s)) {
            (0, true) => 0.05,
            (1, true) => 0.2,
            (_, true) => 0.5,
            (0, false) => 0.2,
            (1, false) => 0.22,
            (_, false) => 0.25,
        },
    );
    let cube = Cube::open(&hdr, &ReadConfig::default()).unwrap();
    let config = PlantConfig {
        index: VegetationIndex::Ndre,
        threshold: Threshold::Fixed(0.3),
        min_plant_area_px: 1,
        ..PlantConfig::default()
    };
    let index = ingest::index_raster(&cube, &config).unwrap();
    assert!((index[6] - (0.5 - 0.2) / (0.5 + 0.2)).abs() < 1e-6);
    assert!((index[0] - (0.25 - 0.22) / (0.25 + 0.22)).abs() < 1e-6);
    let set = find_plants(&cube, &config).unwrap();
    assert_eq!(set.plants.len(), 1);
    assert_eq!(set.plants[0].pixel_count, 9);
    let far = PlantConfig {
        red_edge_nm: 740.0,
        max_band_distance_nm: 10.0,
        ..config
    };
    let err = find_plants(&cube, &far).unwrap_err().to_string();
    assert!(err.contains("no red-edge band near 740"), "{err}");
}

#[test]
fn cube_without_red_or_nir_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("data type = 1\n{}", wavelength_field(3, 1000.0, 500.0));
    let hdr = write_envi_by_hand(
        dir.path(),
        "swir",
        (2, 2, 3),
        "bsq",
        &extra,
        |v| vec![v as u8],
        |_, _, _| 1.0,
    );
    let cube = Cube::open(&hdr, &ReadConfig::default()).unwrap();
    let err = find_plants(&cube, &PlantConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("swir.img") && err.contains("no red band near 670"),
        "{err}"
    );
}
