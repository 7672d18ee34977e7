//! Inputs that once made a fuzz target (`fuzz/`, `scripts/fuzz`) panic, hang or allocate
//! without bound, replayed on every test run: `fuzz/regressions/<target>/<name>`. Each must end
//! without a panic, within a second's worth of work and bounded memory.

use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

#[test]
fn envi_header_regressions() {
    for (_, data) in inputs("envi_header") {
        ingest::fuzzing::envi_header(&data);
    }
}

#[test]
fn wavelength_file_regressions() {
    for (_, data) in inputs("wavelength_file") {
        ingest::fuzzing::wavelength_file(&data);
    }
}

#[test]
fn raw_envi_regressions() {
    let cases = inputs("raw_envi");
    for (_, data) in &cases {
        let dir = tempfile::tempdir().unwrap();
        ingest::fuzzing::raw_envi(data, dir.path());
    }
}
