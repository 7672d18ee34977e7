use ingest::{Calibration, Cube, ReadConfig};

use crate::{read_all, wavelength_field, write_envi_by_hand};

fn u16_le(v: f64) -> Vec<u8> {
    (v as u16).to_le_bytes().to_vec()
}

/// Raw counts, a one-line white capture and a two-line dark capture, against reflectance computed
/// by hand.
#[test]
fn white_dark_calibration_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "data type = 12\nbyte order = 0\n{}",
        wavelength_field(2, 670.0, 130.0)
    );
    // Raw: 2 lines x 3 samples x 2 bands.
    let raw = |b: usize, l: usize, s: usize| {
        1000.0 + 500.0 * b as f64 + 100.0 * l as f64 + 10.0 * s as f64
    };
    let cube = write_envi_by_hand(dir.path(), "raw", (2, 3, 2), "bil", &extra, u16_le, raw);
    // White: one line; dark: two lines whose mean is 100 + band + sample.
    let white = |b: usize, _l: usize, s: usize| 3000.0 + 1000.0 * b as f64 + s as f64;
    let white_hdr =
        write_envi_by_hand(dir.path(), "white", (1, 3, 2), "bil", &extra, u16_le, white);
    let dark = |b: usize, l: usize, s: usize| {
        100.0 + b as f64 + s as f64 + if l == 0 { -20.0 } else { 20.0 }
    };
    let dark_hdr = write_envi_by_hand(dir.path(), "dark", (2, 3, 2), "bil", &extra, u16_le, dark);
    let config = ReadConfig {
        calibration: Some(Calibration::new(white_hdr.clone(), dark_hdr.clone())),
        ..ReadConfig::default()
    };
    let cube_open = Cube::open(&cube, &config).unwrap();
    let all = read_all(&cube_open);
    for b in 0..2 {
        for l in 0..2 {
            for s in 0..3 {
                let d = 100.0 + b as f64 + s as f64;
                let expected = (raw(b, l, s) - d) / (white(b, 0, s) - d);
                let got = all[(b * 2 + l) * 3 + s] as f64;
                assert!(
                    (got - expected).abs() < 1e-6,
                    "band {b} line {l} sample {s}: {got} vs {expected}"
                );
            }
        }
    }
    assert_eq!(cube_open.calibration_counts(), Some((0, 12)));

    // A white darker than the scene: values above the clip maximum are clipped and counted.
    let clip = ReadConfig {
        calibration: Some(Calibration {
            clip_max: 0.35,
            ..Calibration::new(white_hdr.clone(), dark_hdr.clone())
        }),
        ..ReadConfig::default()
    };
    let clipped = Cube::open(&cube, &clip).unwrap();
    let all = read_all(&clipped);
    let over = (0..2)
        .flat_map(|b| (0..2).flat_map(move |l| (0..3).map(move |s| (b, l, s))))
        .filter(|&(b, l, s)| {
            let d = 100.0 + b as f64 + s as f64;
            (raw(b, l, s) - d) / (white(b, 0, s) - d) > 0.35
        })
        .count() as u64;
    assert!(over > 0);
    assert!(all.iter().all(|&v| (0.0..=0.35).contains(&v)));
    assert_eq!(clipped.calibration_counts(), Some((over, 12)));

    // A white panel captured at another width is a clear error naming it.
    let narrow = write_envi_by_hand(
        dir.path(),
        "narrow",
        (1, 2, 2),
        "bil",
        &extra,
        u16_le,
        white,
    );
    let bad = ReadConfig {
        calibration: Some(Calibration::new(narrow, dark_hdr)),
        ..ReadConfig::default()
    };
    let err = Cube::open(&cube, &bad).unwrap_err().to_string();
    assert!(
        err.contains("narrow.img") && err.contains("2 samples x 2 bands") && err.contains("3 x 2"),
        "{err}"
    );
}

/// A cube without wavelengths opens with a wavelength file; unsorted wavelengths find the right
/// red and NIR bands.
#[test]
fn wavelength_file_and_unsorted_bands() {
    let dir = tempfile::tempdir().unwrap();
    // Bands in file order: 800 nm, 550 nm, 670 nm (unsorted). Plant pixels: NIR 0.5, red 0.05.
    let plant = |l: usize, s: usize| l >= 1 && s >= 1;
    let value = |b: usize, l: usize, s: usize| match (b, plant(l, s)) {
        (0, true) => 0.5,
        (2, true) => 0.05,
        (1, true) => 0.1,
        _ => 0.2,
    };
    let hdr = write_envi_by_hand(
        dir.path(),
        "bare",
        (4, 4, 3),
        "bip",
        "data type = 4\nbyte order = 0\n",
        |v| (v as f32).to_le_bytes().to_vec(),
        value,
    );
    let err = Cube::open(&hdr, &ReadConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bare.hdr") && err.contains("wavelength") && err.contains("--wavelengths"),
        "{err}"
    );
    let file = dir.path().join("bands.csv");
    std::fs::write(&file, "wavelength_um\n0.800\n0.550\n0.670\n").unwrap();
    let config = ReadConfig {
        wavelengths: Some(file),
        ..ReadConfig::default()
    };
    let cube = Cube::open(&hdr, &config).unwrap();
    assert_eq!(cube.axis().wavelength_nm(), &[800.0, 550.0, 670.0]);
    let plants = ingest::find_plants(
        &cube,
        &ingest::PlantConfig {
            threshold: ingest::Threshold::Fixed(0.5),
            opening_radius_px: 0,
            min_plant_area_px: 1,
            ..ingest::PlantConfig::default()
        },
    )
    .unwrap();
    assert_eq!(plants.plants.len(), 1);
    assert_eq!(plants.plants[0].pixel_count, 9);
    assert!((plants.plants[0].mean_ndvi.unwrap() - (0.45f32 / 0.55f32) as f64).abs() < 1e-6);
}
