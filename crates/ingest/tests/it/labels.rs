use domain::SampleUnit;
use ingest::{labelled_samples, read_label_raster, Cube, ReadConfig};

use crate::{wavelength_field, write_envi_by_hand};

fn write_labels(
    dir: &std::path::Path,
    name: &str,
    lines: usize,
    samples: usize,
    codes: &[u8],
) -> std::path::PathBuf {
    std::fs::write(dir.join(format!("{name}.img")), codes).unwrap();
    std::fs::write(
        dir.join(format!("{name}.hdr")),
        format!(
            "ENVI\nsamples = {samples}\nlines = {lines}\nbands = 1\ndata type = 1\ninterleave = bsq\n\
             file type = ENVI Classification\nclasses = 3\nclass names = {{Unclassified, healthy, blight}}\nclass values = {{0, 1, 12}}\n"
        ),
    )
    .unwrap();
    dir.join(format!("{name}.hdr"))
}

#[test]
fn sparse_codes_and_units() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "data type = 4\nbyte order = 0\n{}",
        wavelength_field(2, 670.0, 130.0)
    );
    let hdr = write_envi_by_hand(
        dir.path(),
        "cube",
        (3, 4, 2),
        "bsq",
        &extra,
        |v| (v as f32).to_le_bytes().to_vec(),
        |b, l, s| (b * 100 + l * 4 + s) as f64,
    );
    #[rustfmt::skip]
    let codes = [
        1, 1, 0, 12,
        0, 0, 0, 12,
        12, 0, 0, 0,
    ];
    let labels_path = write_labels(dir.path(), "labels", 3, 4, &codes);
    let labels = read_label_raster(&labels_path).unwrap();
    assert_eq!(labels.classes.names(), vec!["healthy", "blight"]);
    let cube = Cube::open(&hdr, &ReadConfig::default()).unwrap();
    let plants = labelled_samples(&cube, &labels, &labels_path, SampleUnit::Plant).unwrap();
    assert_eq!(plants.label_codes, vec![1, 12, 12]);
    // Region 1: pixels (0,0), (0,1): band 0 values 0 and 1.
    assert_eq!(plants.spectrum(0), &[0.5, 100.5]);
    let pixels = labelled_samples(&cube, &labels, &labels_path, SampleUnit::Pixel).unwrap();
    assert_eq!(pixels.len(), 5);
    assert_eq!(pixels.groups, vec![1, 1, 2, 2, 3]);
}

#[test]
fn label_raster_of_another_size_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("data type = 1\n{}", wavelength_field(2, 670.0, 130.0));
    let hdr = write_envi_by_hand(
        dir.path(),
        "cube",
        (3, 4, 2),
        "bsq",
        &extra,
        |v| vec![v as u8],
        |_, _, _| 1.0,
    );
    let labels_path = write_labels(dir.path(), "small", 2, 2, &[1, 0, 0, 1]);
    let labels = read_label_raster(&labels_path).unwrap();
    let cube = Cube::open(&hdr, &ReadConfig::default()).unwrap();
    let err = labelled_samples(&cube, &labels, &labels_path, SampleUnit::Plant)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("small.hdr") && err.contains("2 lines x 2 samples"),
        "{err}"
    );
}
