//! Per-region spectra from the parallel scan of mapped ENVI files, against sums computed here
//! from the values written, for every interleave, data type and byte order; the same bits for
//! any number of threads; the same plants as GDAL's reader.

use ingest::{
    find_plants, label_components, region_spectra, set_scan_threads, Cube, EnviReader, PlantConfig,
    ReadConfig, RegionIds, Threshold,
};

use crate::write_envi_by_hand;

/// Stored value of (band, line, sample): an integer in 0..=250 with structure on every axis.
fn stored(b: usize, l: usize, s: usize) -> f64 {
    ((b * 53 + l * 31 + s * 17 + l * s) % 251) as f64
}

type Encoder = fn(f64) -> Vec<u8>;
/// (name, data type, byte order, encoder, value offset): signed types get negative values.
const ENCODINGS: [(&str, u32, u8, Encoder, f64); 11] = [
    ("u8", 1, 0, |v| vec![v as u8], 0.0),
    ("i16le", 2, 0, |v| (v as i16).to_le_bytes().to_vec(), -120.0),
    ("i16be", 2, 1, |v| (v as i16).to_be_bytes().to_vec(), -120.0),
    ("u16le", 12, 0, |v| (v as u16).to_le_bytes().to_vec(), 0.0),
    ("u16be", 12, 1, |v| (v as u16).to_be_bytes().to_vec(), 0.0),
    ("i32be", 3, 1, |v| (v as i32).to_be_bytes().to_vec(), -120.0),
    ("u32le", 13, 0, |v| (v as u32).to_le_bytes().to_vec(), 0.0),
    ("f32be", 4, 1, |v| (v as f32).to_be_bytes().to_vec(), -120.5),
    ("f64le", 5, 0, |v| v.to_le_bytes().to_vec(), -120.25),
    (
        "i64le",
        14,
        0,
        |v| (v as i64).to_le_bytes().to_vec(),
        -120.0,
    ),
    ("u64be", 15, 1, |v| (v as u64).to_be_bytes().to_vec(), 0.0),
];

/// Regions of a scene: concave ones (two runs on a line), one along a whole line (runs longer
/// than a window), regions touching the edges and each other.
fn key_of(lines: usize, samples: usize) -> impl Fn(usize, usize) -> u32 {
    move |l, s| {
        if l == lines / 2 {
            return 4; // a whole line
        }
        let (dl, ds) = (l as i64 - 5, s as i64 - 4);
        if dl * dl + ds * ds <= 12 && !(l == 5 && s == 4) {
            return 1; // a ring: two runs on its middle lines
        }
        if s + 3 >= samples && l < lines - 2 {
            return 2; // the right edge
        }
        if l + 4 >= lines && s % 5 != 0 {
            return 3; // the bottom, cut into pieces (several regions of one key)
        }
        0
    }
}

#[test]
fn region_sums_match_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    // Band 3 (720 nm) is marked bad: the scan sums file bands through the band map.
    let wavelengths =
        "wavelength units = nm\nwavelength = {500, 670, 720, 800, 900}\nbbl = {1, 1, 0, 1, 1}\n";
    let gain = 1.0 / 250.0;
    for (lines, samples) in [(23, 19), (9, 7)] {
        let key = key_of(lines, samples);
        let keys: Vec<u32> = (0..lines * samples)
            .map(|p| key(p / samples, p % samples))
            .collect();
        let components = label_components(&keys, lines, samples);
        assert!(components.region_count >= 4);
        for (name, data_type, byte_order, encode, shift) in ENCODINGS {
            let mut first_of_interleaves = None;
            for interleave in ["bsq", "bil", "bip"] {
                let value = |b, l, s| stored(b, l, s) + shift;
                let hdr = write_envi_by_hand(
                    dir.path(),
                    &format!("{name}-{interleave}-{samples}"),
                    (lines, samples, 5),
                    interleave,
                    &format!(
                        "data type = {data_type}\nbyte order = {byte_order}\nreflectance scale factor = 250\n{wavelengths}"
                    ),
                    encode,
                    value,
                );
                let mut results = Vec::new();
                for (block_lines, threads) in [(1, 1), (2, 3), (3, 2), (lines, 2)] {
                    set_scan_threads(threads);
                    let config = ReadConfig {
                        block_bytes: block_lines * samples * 4 * 4,
                        ..ReadConfig::default()
                    };
                    let cube = Cube::open(&hdr, &config).unwrap();
                    assert_eq!(cube.bands(), 4);
                    let plants = region_spectra(&cube, &components, RegionIds::Sequential).unwrap();
                    let case = format!("{name} {interleave} {samples} samples, blocks of {block_lines}, {threads} threads");
                    for (r, plant) in plants.iter().enumerate() {
                        let pixels: Vec<(usize, usize)> = (0..lines * samples)
                            .filter(|&p| components.region_of_pixel[p] == r as u32 + 1)
                            .map(|p| (p / samples, p % samples))
                            .collect();
                        let n = pixels.len() as f64;
                        assert_eq!(plant.pixel_count, pixels.len() as u64, "{case}");
                        for (i, file_band) in [0, 1, 3, 4].into_iter().enumerate() {
                            let values: Vec<f64> = pixels
                                .iter()
                                .map(|&(l, s)| value(file_band, l, s) * gain)
                                .collect();
                            let mean = values.iter().sum::<f64>() / n;
                            let std =
                                (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
                            let got = (
                                plant.mean_reflectance[i] as f64,
                                plant.std_reflectance[i] as f64,
                            );
                            assert!(
                                (got.0 - mean).abs() < 1e-6,
                                "{case}: region {r} band {i} mean {} vs {mean}",
                                got.0
                            );
                            assert!(
                                (got.1 - std).abs() < 1e-6,
                                "{case}: region {r} band {i} std {} vs {std}",
                                got.1
                            );
                        }
                        let row = pixels.iter().map(|&(l, _)| l as f64).sum::<f64>() / n;
                        let col = pixels.iter().map(|&(_, s)| s as f64).sum::<f64>() / n;
                        assert!((plant.centroid_row - row).abs() < 1e-12, "{case}");
                        assert!((plant.centroid_col - col).abs() < 1e-12, "{case}");
                        let (rows, cols): (Vec<u32>, Vec<u32>) =
                            pixels.iter().map(|&(l, s)| (l as u32, s as u32)).unzip();
                        let b = plant.bbox;
                        assert_eq!(
                            (b.row_min, b.row_max, b.col_min, b.col_max),
                            (
                                *rows.iter().min().unwrap(),
                                *rows.iter().max().unwrap(),
                                *cols.iter().min().unwrap(),
                                *cols.iter().max().unwrap()
                            ),
                            "{case}"
                        );
                        // NDVI per pixel from red (670) and NIR (800) reflectance in f32, as stored.
                        let ndvi: Vec<f64> = pixels
                            .iter()
                            .map(|&(l, s)| {
                                let red = value(1, l, s) as f32 * gain as f32;
                                let nir = value(3, l, s) as f32 * gain as f32;
                                (red, nir)
                            })
                            .filter(|&(red, nir)| red + nir > 0.0)
                            .map(|(red, nir)| f64::from((nir - red) / (nir + red)))
                            .collect();
                        match plant.mean_ndvi {
                            Some(m) => assert!(
                                (m - ndvi.iter().sum::<f64>() / ndvi.len() as f64).abs() < 1e-9,
                                "{case}"
                            ),
                            None => assert!(ndvi.is_empty(), "{case}"),
                        }
                    }
                    results.push(plants);
                }
                // Threads never change a bit; for integer data of up to 16 bits (exact sums)
                // nor does the size of the units of lines.
                assert_eq!(
                    results[2], results[3],
                    "{name} {interleave}: 2 threads vs 2 threads"
                );
                if ["u8", "i16le", "i16be", "u16le", "u16be"].contains(&name) {
                    assert!(
                        results.windows(2).all(|w| w[0] == w[1]),
                        "{name} {interleave}: exact sums differ"
                    );
                    // And the same bits from every interleave of the same values.
                    let first = first_of_interleaves.get_or_insert_with(|| results[0].clone());
                    assert_eq!(first, &results[0], "{name} {interleave} vs bsq");
                }
            }
        }
    }
    set_scan_threads(2);
}

/// The same plants, bit for bit, from 1 and 3 threads and from GDAL's reader (blocks read one
/// after the other).
#[test]
fn find_plants_is_the_same_for_any_threads_and_reader() {
    let dir = tempfile::tempdir().unwrap();
    let (lines, samples) = (40, 33);
    let plant = |l: usize, s: usize| {
        let (dl, ds) = ((l % 10) as i64 - 5, (s % 11) as i64 - 5);
        dl * dl + ds * ds <= 10
    };
    for interleave in ["bsq", "bil", "bip"] {
        let hdr = write_envi_by_hand(
            dir.path(),
            &format!("field-{interleave}"),
            (lines, samples, 3),
            interleave,
            "data type = 12\nbyte order = 1\nreflectance scale factor = 10000\nwavelength units = nm\nwavelength = {560, 670, 800}\n",
            |v| (v as u16).to_be_bytes().to_vec(),
            |b, l, s| {
                let texture = ((l * 7 + s * 13) % 17) as f64 * 20.0;
                match (b, plant(l, s)) {
                    (1, true) => 400.0 + texture,
                    (2, true) => 4500.0 + texture,
                    (_, true) => 900.0 + texture,
                    (_, false) => 2000.0 + texture,
                }
            },
        );
        let config = PlantConfig {
            threshold: Threshold::Fixed(0.4),
            min_plant_area_px: 5,
            ..PlantConfig::default()
        };
        let read = |reader| ReadConfig {
            block_bytes: 3 * samples * 3 * 4,
            envi_reader: reader,
            ..ReadConfig::default()
        };
        let mut found = Vec::new();
        for threads in [1, 3] {
            set_scan_threads(threads);
            let cube = Cube::open(&hdr, &read(EnviReader::Raw)).unwrap();
            found.push(find_plants(&cube, &config).unwrap());
        }
        assert_eq!(found[0].plants, found[1].plants, "{interleave}");
        assert_eq!(found[0].pixel_plants, found[1].pixel_plants, "{interleave}");
        assert!(
            found[0].plants.len() >= 12,
            "{interleave}: {}",
            found[0].plants.len()
        );
        let cube = Cube::open(&hdr, &read(EnviReader::Gdal)).unwrap();
        let gdal = find_plants(&cube, &config).unwrap();
        // Integer data is summed exactly on both paths, NDVI in fixed point: the same bits.
        assert_eq!(gdal.pixel_plants, found[0].pixel_plants, "{interleave}");
        assert_eq!(gdal.plants, found[0].plants, "{interleave}");
    }
    set_scan_threads(2);
}

/// A data file truncated under the map (another process rewriting it) ends the process with a
/// message naming the file and status 1, not a bare bus error. Run in a child process: the
/// child's test maps a cube, truncates its data file and scans it.
#[test]
fn a_file_shrinking_under_the_map_is_a_clear_error() {
    const CHILD: &str = "PIPELINE_TEST_SIGBUS_CUBE";
    if let Some(hdr) = std::env::var_os(CHILD) {
        let cube = Cube::open(std::path::Path::new(&hdr), &ReadConfig::default()).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(cube.data_path())
            .unwrap()
            .set_len(0)
            .unwrap();
        let _ = find_plants(&cube, &PlantConfig::default());
        panic!("the scan of a truncated file returned");
    }
    let dir = tempfile::tempdir().unwrap();
    let hdr = write_envi_by_hand(
        dir.path(),
        "shrinking",
        (64, 64, 2),
        "bip", // BIP: the index pass reads through the map too
        "data type = 12\nbyte order = 0\nwavelength units = nm\nwavelength = {670, 800}\n",
        |v| (v as u16).to_le_bytes().to_vec(),
        |b, l, s| {
            if (l / 8 + s / 8) % 2 == 0 {
                [400.0, 4000.0][b]
            } else {
                2000.0
            }
        },
    );
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "scan::a_file_shrinking_under_the_map_is_a_clear_error",
            "--nocapture",
        ])
        .env(CHILD, &hdr)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert_eq!(child.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("shrinking.img: the data file shrank while it was being read"),
        "{stderr}"
    );
}
