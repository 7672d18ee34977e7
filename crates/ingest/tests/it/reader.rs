use ingest::{Cube, CubeFormat, EnviReader, ReadConfig};

use crate::{read_all, real_cubes, wavelength_field, write_envi_by_hand};

/// A value with structure in every axis, exact in every data type used below.
fn value(b: usize, l: usize, s: usize) -> f64 {
    (b * 1000 + l * 37 + s * 3) as f64 % 30000.0
}

/// Each ENVI data type in both byte orders: (name, data type, byte order, encoder, signed).
type Encoder = fn(f64) -> Vec<u8>;
const ENCODINGS: [(&str, u32, u8, Encoder, bool); 17] = [
    ("u8", 1, 0, |v| vec![(v as u32 % 251) as u8], false),
    ("i16le", 2, 0, |v| (v as i16).to_le_bytes().to_vec(), true),
    ("i16be", 2, 1, |v| (v as i16).to_be_bytes().to_vec(), true),
    ("i32le", 3, 0, |v| (v as i32).to_le_bytes().to_vec(), true),
    ("i32be", 3, 1, |v| (v as i32).to_be_bytes().to_vec(), true),
    ("f32le", 4, 0, |v| (v as f32).to_le_bytes().to_vec(), true),
    ("f32be", 4, 1, |v| (v as f32).to_be_bytes().to_vec(), true),
    ("f64le", 5, 0, |v| v.to_le_bytes().to_vec(), true),
    ("f64be", 5, 1, |v| v.to_be_bytes().to_vec(), true),
    ("u16le", 12, 0, |v| (v as u16).to_le_bytes().to_vec(), false),
    ("u16be", 12, 1, |v| (v as u16).to_be_bytes().to_vec(), false),
    ("u32le", 13, 0, |v| (v as u32).to_le_bytes().to_vec(), false),
    ("u32be", 13, 1, |v| (v as u32).to_be_bytes().to_vec(), false),
    ("i64le", 14, 0, |v| (v as i64).to_le_bytes().to_vec(), true),
    ("i64be", 14, 1, |v| (v as i64).to_be_bytes().to_vec(), true),
    ("u64le", 15, 0, |v| (v as u64).to_le_bytes().to_vec(), false),
    ("u64be", 15, 1, |v| (v as u64).to_be_bytes().to_vec(), false),
];

/// The value written for `(b, l, s)` in an encoding: negative ones for signed types, u8 wrapped.
fn expected(name: &str, signed: bool, b: usize, l: usize, s: usize) -> f64 {
    match (name, signed) {
        ("u8", _) => (value(b, l, s) as u32 % 251) as f64,
        (_, true) => value(b, l, s) - 1500.0,
        (_, false) => value(b, l, s),
    }
}

/// Every interleave x data type x byte order, half of them behind a `header offset`, against
/// bytes written by hand.
#[test]
fn every_interleave_byte_order_and_type_reads_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let shape = (7, 5, 4);
    for interleave in ["bsq", "bil", "bip"] {
        for (index, (label, data_type, byte_order, encode, signed)) in
            ENCODINGS.into_iter().enumerate()
        {
            let name = format!("{interleave}-{label}");
            let offset = if index % 2 == 1 { 33 } else { 0 };
            let extra = format!(
                "data type = {data_type}\nbyte order = {byte_order}\nheader offset = {offset}\n{}",
                wavelength_field(4, 500.0, 100.0)
            );
            let hdr = write_envi_by_hand(
                dir.path(),
                &name,
                shape,
                interleave,
                &extra,
                encode,
                |b, l, s| expected(label, signed, b, l, s),
            );
            if offset > 0 {
                let data = dir.path().join(format!("{name}.img"));
                let mut bytes = vec![0xAB; offset];
                bytes.extend(std::fs::read(&data).unwrap());
                std::fs::write(&data, bytes).unwrap();
            }
            // Small blocks, so several block reads are exercised.
            let cube = Cube::open(
                &hdr,
                &ReadConfig {
                    block_bytes: 4 * 5 * 4 * 3,
                    ..ReadConfig::default()
                },
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((cube.lines(), cube.samples(), cube.bands()), shape);
            assert_eq!(cube.block_lines(), 3);
            let all = read_all(&cube);
            for b in 0..4 {
                for l in 0..7 {
                    for s in 0..5 {
                        assert_eq!(
                            all[(b * 7 + l) * 5 + s] as f64,
                            expected(label, signed, b, l, s),
                            "{name} band {b} line {l} sample {s}"
                        );
                    }
                }
            }
            // GDAL's ENVI driver (types up to 13 in GDAL 3.6) reads the same values, also for
            // band subsets.
            if data_type <= 13 {
                let gdal = Cube::open(
                    &hdr,
                    &ReadConfig {
                        block_bytes: 4 * 5 * 4 * 2,
                        envi_reader: EnviReader::Gdal,
                        ..ReadConfig::default()
                    },
                )
                .unwrap();
                assert_eq!(read_all(&gdal), all, "{name}: raw and GDAL readers");
                let (mut a, mut b) = (Vec::new(), Vec::new());
                cube.read_block_of_bands(2, 4, Some(&[3, 1]), &mut a)
                    .unwrap();
                gdal.read_block_of_bands(2, 4, Some(&[3, 1]), &mut b)
                    .unwrap();
                assert_eq!(a, b, "{name}: band subset");
                assert_eq!(a[0] as f64, expected(label, signed, 3, 2, 0));
            }
        }
    }
}

#[test]
fn scale_factor_and_micrometres() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "data type = 12\nbyte order = 0\nreflectance scale factor = 10000\nwavelength units = Micrometers\nwavelength = {0.67, 0.8}\n";
    let hdr = write_envi_by_hand(
        dir.path(),
        "scaled",
        (2, 2, 2),
        "bip",
        extra,
        |v| (v as u16).to_le_bytes().to_vec(),
        |b, _, _| [1200.0, 4500.0][b],
    );
    let cube = Cube::open(&hdr, &ReadConfig::default()).unwrap();
    assert_eq!(cube.axis().wavelength_nm(), &[670.0, 800.0]);
    let mut block = Vec::new();
    cube.read_block(0, 2, &mut block).unwrap();
    assert!(
        (block[0] - 0.12).abs() < 1e-6 && (block[4] - 0.45).abs() < 1e-6,
        "{block:?}"
    );
}

#[test]
fn data_file_named_instead_of_header() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("data type = 1\n{}", wavelength_field(3, 600.0, 100.0));
    write_envi_by_hand(
        dir.path(),
        "bytes",
        (2, 3, 3),
        "bsq",
        &extra,
        |v| vec![v as u8],
        |b, l, s| (b + l + s) as f64,
    );
    let cube = Cube::open(&dir.path().join("bytes.img"), &ReadConfig::default()).unwrap();
    assert_eq!(cube.format(), CubeFormat::Envi);
    assert_eq!(cube.bands(), 3);
}

#[test]
fn real_plantcv_cube_with_lenient_header_opens() {
    let hdr = real_cubes().join("plantcv_corn_kernel/corn-kernel-hyperspectral.hdr");
    let cube = Cube::open(&hdr, &ReadConfig::default()).unwrap();
    assert_eq!((cube.lines(), cube.samples(), cube.bands()), (31, 43, 580));
    let (lo, hi) = cube.axis().range_nm();
    assert!(
        (lo - 366.551).abs() < 1e-9 && (hi - 1048.4).abs() < 0.1,
        "{lo}-{hi}"
    );
    // Independent check of one pixel against the raw file: BIL, uint16 little-endian, offset 0.
    let raw = std::fs::read(hdr.with_extension("raw")).unwrap();
    let (line, sample, band) = (17usize, 29usize, 311usize);
    let at = ((line * 580 + band) * 43 + sample) * 2;
    let expected = u16::from_le_bytes([raw[at], raw[at + 1]]) as f32;
    let mut block = Vec::new();
    cube.read_block(line, 1, &mut block).unwrap();
    assert_eq!(block[band * 43 + sample], expected);
}

#[test]
fn bad_cubes_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Header without a data file.
    let hdr = dir.path().join("lonely.hdr");
    std::fs::write(&hdr, "ENVI\nsamples = 2\nlines = 2\nbands = 2\n").unwrap();
    let err = Cube::open(&hdr, &ReadConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lonely.hdr") && err.contains("no data file"),
        "{err}"
    );
    // Data file shorter than the header implies.
    let extra = format!(
        "data type = 12\nbyte order = 0\n{}",
        wavelength_field(2, 670.0, 130.0)
    );
    let hdr = write_envi_by_hand(
        dir.path(),
        "short",
        (4, 4, 2),
        "bsq",
        &extra,
        |v| (v as u16).to_le_bytes().to_vec(),
        |_, _, _| 1.0,
    );
    std::fs::write(dir.path().join("short.img"), [0u8; 10]).unwrap();
    let err = Cube::open(&hdr, &ReadConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("short.img"), "{err}");
    // Missing wavelengths.
    let hdr = write_envi_by_hand(
        dir.path(),
        "nowl",
        (2, 2, 2),
        "bsq",
        "data type = 1\n",
        |v| vec![v as u8],
        |_, _, _| 1.0,
    );
    let err = Cube::open(&hdr, &ReadConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nowl.hdr") && err.contains("'wavelength'"),
        "{err}"
    );
    // Non-numeric wavelength.
    let hdr = write_envi_by_hand(
        dir.path(),
        "badwl",
        (2, 2, 2),
        "bsq",
        "data type = 1\nwavelength = {500, x}\n",
        |v| vec![v as u8],
        |_, _, _| 1.0,
    );
    let err = Cube::open(&hdr, &ReadConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("badwl.hdr") && err.contains("'x'"), "{err}");
    // Missing file.
    let err = Cube::open(&dir.path().join("nothing.hdr"), &ReadConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nothing.hdr") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn bad_bands_are_dropped_and_no_data_pixels_are_not_plants() {
    let dir = tempfile::tempdir().unwrap();
    // 4 bands: 500 (bad), 670 (red), 800 (NIR), 900; a 4 x 4 scene of vegetation, one pixel no-data.
    let extra =
        "data type = 2\nbyte order = 0\nwavelength units = nm\nwavelength = {500, 670, 800, 900}\n\
                 bbl = {0, 1, 1, 1}\ndata ignore value = -9999\n";
    let value = |b: usize, l: usize, s: usize| -> f64 {
        if (l, s) == (1, 1) {
            return -9999.0;
        }
        [111.0, 50.0, 500.0, 400.0][b] + (l * 4 + s) as f64
    };
    let hdr = write_envi_by_hand(
        dir.path(),
        "bbl",
        (4, 4, 4),
        "bip",
        extra,
        |v| (v as i16).to_le_bytes().to_vec(),
        value,
    );
    let cube = Cube::open(&hdr, &ReadConfig::default()).unwrap();
    assert_eq!(cube.bands(), 3);
    assert_eq!(cube.axis().wavelength_nm(), &[670.0, 800.0, 900.0]);
    let all = read_all(&cube);
    for (exposed, file_band) in [(0usize, 1usize), (1, 2), (2, 3)] {
        for l in 0..4 {
            for s in 0..4 {
                assert_eq!(
                    all[(exposed * 4 + l) * 4 + s] as f64,
                    value(file_band, l, s)
                );
            }
        }
    }
    let config = ingest::PlantConfig {
        threshold: ingest::Threshold::Fixed(0.5),
        opening_radius_px: 0,
        ..ingest::PlantConfig::default()
    };
    let (mask, threshold) = ingest::vegetation_mask(&cube, &config).unwrap();
    assert_eq!(threshold, 0.5);
    assert_eq!(
        mask.iter().filter(|&&m| m == 1).count(),
        15,
        "all but the no-data pixel"
    );
    assert_eq!(mask[5], 0);
    let description = cube.describe().unwrap();
    assert_eq!(description.bad_bands, Some(vec![1]));
    assert_eq!(description.data_ignore_value, Some(-9999.0));
}

/// A few bands of a wide BIL cube are read segment by segment: same values as GDAL.
#[test]
fn few_bands_of_a_bil_cube() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "data type = 12\nbyte order = 1\nheader offset = 5\n{}",
        wavelength_field(9, 400.0, 50.0)
    );
    let hdr = write_envi_by_hand(
        dir.path(),
        "wide",
        (6, 3, 9),
        "bil",
        &extra,
        |v| (v as u16).to_be_bytes().to_vec(),
        value,
    );
    let data = dir.path().join("wide.img");
    let mut bytes = vec![0u8; 5];
    bytes.extend(std::fs::read(&data).unwrap());
    std::fs::write(&data, bytes).unwrap();
    let raw = Cube::open(&hdr, &ReadConfig::default()).unwrap();
    let gdal = Cube::open(
        &hdr,
        &ReadConfig {
            envi_reader: EnviReader::Gdal,
            ..ReadConfig::default()
        },
    )
    .unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    raw.read_block_of_bands(1, 4, Some(&[7, 2]), &mut a)
        .unwrap();
    gdal.read_block_of_bands(1, 4, Some(&[7, 2]), &mut b)
        .unwrap();
    assert_eq!(a, b);
    for (i, band) in [7, 2].into_iter().enumerate() {
        for l in 0..4 {
            for s in 0..3 {
                assert_eq!(a[(i * 4 + l) * 3 + s] as f64, value(band, l + 1, s));
            }
        }
    }
}

/// GeoTIFFs written by GDAL itself, pixel- and band-interleaved, tiled (partial edge tiles) and
/// striped, with a band scale, wavelengths in band metadata and a nodata value.
#[test]
fn geotiff_layouts_and_nodata() {
    use gdal::raster::RasterCreationOptions;
    use gdal::Metadata;
    let dir = tempfile::tempdir().unwrap();
    let (lines, samples) = (40usize, 37usize);
    let wavelengths = [550.0, 670.0, 800.0];
    // Stored i16; reflectance = stored * 1e-4. Vegetation in the middle, nodata on line 20.
    let stored = |b: usize, l: usize, s: usize| -> i16 {
        if l == 20 && s < 10 {
            return -9999;
        }
        let plant = (10..30).contains(&l) && (8..28).contains(&s);
        match (b, plant) {
            (0, true) => 900,
            (1, true) => 400 + (s % 7) as i16,
            (2, true) => 5000 + l as i16,
            (0, false) => 1500,
            (1, false) => 1800,
            _ => 2200 + s as i16,
        }
    };
    for options in [
        [
            "INTERLEAVE=PIXEL",
            "TILED=YES",
            "BLOCKXSIZE=16",
            "BLOCKYSIZE=16",
        ],
        [
            "INTERLEAVE=BAND",
            "TILED=NO",
            "BLOCKYSIZE=3",
            "COMPRESS=DEFLATE",
        ],
        [
            "INTERLEAVE=BAND",
            "TILED=YES",
            "BLOCKXSIZE=32",
            "BLOCKYSIZE=16",
        ],
    ] {
        let path = dir.path().join(format!("{}.tif", options.join("-")));
        {
            let driver = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
            let dataset = driver
                .create_with_band_type_with_options::<i16, _>(
                    &path,
                    samples,
                    lines,
                    3,
                    &RasterCreationOptions::from_iter(options),
                )
                .unwrap();
            for (b, wavelength) in wavelengths.iter().enumerate() {
                let mut band = dataset.rasterband(b + 1).unwrap();
                band.set_metadata_item("wavelength", &wavelength.to_string(), "")
                    .unwrap();
                band.set_metadata_item("wavelength_units", "nm", "")
                    .unwrap();
                band.set_scale(1e-4).unwrap();
                band.set_no_data_value(Some(-9999.0)).unwrap();
                let values: Vec<i16> = (0..lines * samples)
                    .map(|i| stored(b, i / samples, i % samples))
                    .collect();
                let mut buffer = gdal::raster::Buffer::new((samples, lines), values);
                band.write((0, 0), (samples, lines), &mut buffer).unwrap();
            }
        }
        let cube = Cube::open(
            &path,
            &ReadConfig {
                block_bytes: 7 * samples * 3 * 4,
                ..ReadConfig::default()
            },
        )
        .unwrap();
        assert_eq!(cube.format(), CubeFormat::GeoTiff);
        assert_eq!(cube.axis().wavelength_nm(), &wavelengths);
        let all = read_all(&cube);
        for b in 0..3 {
            for l in 0..lines {
                for s in 0..samples {
                    let expected = stored(b, l, s) as f32 * 1e-4f32;
                    let got = all[(b * lines + l) * samples + s];
                    assert!(
                        (got - expected).abs() < 1e-6,
                        "{options:?} band {b} line {l} sample {s}: {got} vs {expected}"
                    );
                }
            }
        }
        let config = ingest::PlantConfig {
            threshold: ingest::Threshold::Fixed(0.5),
            opening_radius_px: 0,
            ..ingest::PlantConfig::default()
        };
        let (mask, _) = ingest::vegetation_mask(&cube, &config).unwrap();
        // The plant is 20 x 20; nodata removes line 20, samples 8-9 from it.
        assert_eq!(
            mask.iter().filter(|&&m| m == 1).count(),
            400 - 2,
            "{options:?}"
        );
        assert_eq!(mask[20 * samples + 9], 0);
        assert_eq!(mask[20 * samples + 10], 1);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
    /// Headers with plausible and implausible values over data files of random length: opening,
    /// reading every block and finding plants end in a value or an error, never a panic.
    #[test]
    fn random_headers_and_data_never_panic(
        lines in 0usize..5,
        samples in 0usize..5,
        bands in 0usize..4,
        data_type in proptest::sample::select(vec![0u32, 1, 2, 3, 4, 5, 6, 12, 13, 14, 15, 99]),
        interleave in proptest::sample::select(vec!["bsq", "bil", "bip", "bsx"]),
        byte_order in proptest::sample::select(vec!["0", "1", "2", ""]),
        offset in 0usize..20,
        wavelengths in proptest::collection::vec(300.0f64..1100.0, 0..5),
        data_len in 0usize..400,
        scale in proptest::sample::select(vec!["", "reflectance scale factor = 10000\n", "reflectance scale factor = 0\n"]),
        bbl in proptest::sample::select(vec!["", "bbl = {1, 0, 1}\n", "bbl = {0, 0, 0}\n"]),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let list: Vec<String> = wavelengths.iter().map(|w| format!("{w:.1}")).collect();
        let byte_order = if byte_order.is_empty() { String::new() } else { format!("byte order = {byte_order}\n") };
        let header = format!(
            "ENVI\nsamples = {samples}\nlines = {lines}\nbands = {bands}\ndata type = {data_type}\ninterleave = {interleave}\n{byte_order}header offset = {offset}\nwavelength = {{{}}}\n{scale}{bbl}",
            list.join(", ")
        );
        std::fs::write(dir.path().join("f.hdr"), header).unwrap();
        std::fs::write(dir.path().join("f.img"), (0..data_len).map(|i| (i * 37 % 251) as u8).collect::<Vec<u8>>()).unwrap();
        for reader in [EnviReader::Raw, EnviReader::Gdal] {
            let config = ReadConfig { block_bytes: 64, envi_reader: reader, ..ReadConfig::default() };
            if let Ok(cube) = Cube::open(&dir.path().join("f.hdr"), &config) {
                let mut block = Vec::new();
                for (first, count) in cube.blocks() {
                    let _ = cube.read_block(first, count, &mut block);
                }
                let _ = ingest::find_plants(&cube, &ingest::PlantConfig::default());
                let _ = cube.describe();
            }
        }
    }
}
