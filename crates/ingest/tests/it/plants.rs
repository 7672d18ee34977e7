use ingest::{find_plants, Cube, PlantConfig, ReadConfig};

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
        "data type = 4\nbyte order = 0\n{}",
        wavelength_field(2, 670.0, 130.0)
    );
    // Spectra encode position so that means can be checked: red 0.05 on plants, NIR = 0.5 + row/100.
    let hdr = write_envi_by_hand(
        dir.path(),
        "plants",
        (lines, samples, 2),
        "bil",
        &extra,
        |v| (v as f32).to_le_bytes().to_vec(),
        |b, l, s| match (b, vegetation(l, s)) {
            (0, true) => 0.05,
            (0, false) => 0.2,
            (_, true) => 0.5 + l as f64 / 100.0,
            (_, false) => 0.25,
        },
    );
    let config = PlantConfig {
        min_plant_area_px: 3,
        ..PlantConfig::default()
    };
    for block_lines in [1, 2, 3, lines] {
        let cube = Cube::open(
            &hdr,
            &ReadConfig {
                block_bytes: block_lines * samples * 2 * 4,
            },
        )
        .unwrap();
        assert_eq!(cube.block_lines(), block_lines);
        let set = find_plants(&cube, &config).unwrap();
        let sizes: Vec<u64> = set.plants.iter().map(|p| p.pixel_count).collect();
        assert_eq!(sizes, vec![11, 4, 5], "block of {block_lines} lines");
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
    }
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
