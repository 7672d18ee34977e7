//! End-to-end tests of the `pipeline` binary on the files in `sample_cubes/`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod progress;
mod severity;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn sample(name: &str) -> PathBuf {
    root().join("sample_cubes").join(name)
}

fn pipeline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the pipeline binary runs")
}

fn ok(args: &[&str]) -> String {
    let out = pipeline(args);
    assert!(
        out.status.success(),
        "pipeline {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Read a Parquet file with pyarrow (independent of the writer) into JSON.
fn read_parquet(path: &Path) -> serde_json::Value {
    python_json(
        "import json,sys,pyarrow.parquet as pq; t=pq.read_table(sys.argv[1]); print(json.dumps({'columns': t.column_names, 'rows': t.to_pylist()}))",
        &[s(path)],
    )
}

#[test]
fn synth_regenerates_a_sample_field_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let library = root().join("crates/synth/library");
    ok(&[
        "synth",
        "--library",
        s(&library),
        "--out-dir",
        s(dir.path()),
        "--field",
        "field-b,lesions-b",
    ]);
    let mut compared = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let committed = std::fs::read(sample(&name))
            .unwrap_or_else(|_| panic!("{name} is not in sample_cubes/"));
        assert!(
            std::fs::read(&path).unwrap() == committed,
            "{name} differs from sample_cubes/{name}"
        );
        compared += 1;
    }
    assert_eq!(
        compared,
        7 + 9,
        "field-b: ENVI cube + header, labels + header, two GeoTIFFs and the labels' .aux.xml; \
         lesions-b: ENVI cube + header, labels + header, pixel truth + header, plant ids + \
         .aux.xml, truth table"
    );
    // The lesion field's truth: severity per plant is the lesion share of its pixels.
    let truth = std::fs::read_to_string(sample("lesions-b-truth.csv")).unwrap();
    let rows: Vec<Vec<&str>> = truth
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 49);
    for row in &rows {
        let severity: f64 = row[2].parse().unwrap();
        match row[1] {
            "healthy" => assert_eq!(severity, 0.0),
            _ => assert!((1.0..=75.0).contains(&severity), "{row:?}"),
        }
    }
}

#[test]
fn train_on_one_field_evaluate_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.safetensors");
    let metrics = dir.path().join("metrics.json");
    let a = sample("field-a.hdr");
    let a_labels = sample("field-a-labels.hdr");
    ok(&[
        "train",
        "--cube",
        s(&a),
        "--labels",
        s(&a_labels),
        "--unit",
        "pixel",
        "--out",
        s(&model),
        "--device",
        "cpu",
        // Exactly the default options (selection has its own test below).
        "--no-tune",
        "--ensemble",
        "1",
    ]);
    // Evaluate on the other field, read as GeoTIFF this time.
    let stdout = ok(&[
        "evaluate",
        "--cube",
        s(&sample("field-b.tif")),
        "--labels",
        s(&sample("field-b-labels.tif")),
        "--unit",
        "plant",
        "--model",
        s(&model),
        "--metrics",
        s(&metrics),
    ]);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    for key in [
        "overall_accuracy",
        "average_accuracy",
        "kappa",
        "per_class",
        "confusion_matrix",
        "mean_kl_nats",
        "n_samples",
    ] {
        assert!(m.get(key).is_some(), "METRICS.json lacks {key}");
    }
    let accuracy = m["overall_accuracy"].as_f64().unwrap();
    assert_eq!(m["n_samples"], 90);
    assert!(
        accuracy >= 0.95,
        "plant-level overall accuracy {accuracy}\n{stdout}"
    );
    for class in ["healthy", "rust", "blight"] {
        let c = &m["per_class"][class];
        assert_eq!(c["support"], 30);
        assert!(c["f1"].as_f64().unwrap() > 0.9, "{class}: {c}");
    }
}

#[test]
fn run_with_the_bundled_model_writes_one_row_per_plant() {
    let dir = tempfile::tempdir().unwrap();
    for cube in ["field-b.hdr", "field-b.tif"] {
        let out = dir.path().join(format!("{cube}.parquet"));
        let stdout = ok(&["run", "--cube", s(&sample(cube)), "--out", s(&out)]);
        assert!(
            stdout.contains("plants") && stdout.contains("healthy"),
            "{stdout}"
        );
        let table = read_parquet(&out);
        let columns: Vec<&str> = table["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        for required in [
            "field_id",
            "plant_id",
            "pixel_count",
            "centroid_row",
            "centroid_col",
            "predicted_label",
            "predicted_class_name",
            "prob_healthy",
            "prob_rust",
            "prob_blight",
            "entropy_nats",
            "kl_nats",
            "model_id",
            "beta",
        ] {
            assert!(
                columns.contains(&required),
                "{cube}: no column {required} in {columns:?}"
            );
        }
        let rows = table["rows"].as_array().unwrap();
        assert!(
            rows.len() >= 80 && rows.len() <= 90,
            "{cube}: {} plants; the field has 90, some touching",
            rows.len()
        );
        for row in rows {
            let total: f64 = ["prob_healthy", "prob_rust", "prob_blight"]
                .iter()
                .map(|c| row[c].as_f64().unwrap())
                .sum();
            assert!((total - 1.0).abs() < 1e-4, "{row}");
            assert!(row["kl_nats"].as_f64().unwrap() > 0.0);
            assert_eq!(row["field_id"], "field-b");
        }
    }
    // Same cube through ENVI and GeoTIFF: same plants, same calls (only the cube column differs).
    let rows = |name: &str| {
        let mut table = read_parquet(&dir.path().join(name));
        for row in table["rows"].as_array_mut().unwrap() {
            row.as_object_mut().unwrap().remove("cube");
        }
        table["rows"].clone()
    };
    assert_eq!(rows("field-b.hdr.parquet"), rows("field-b.tif.parquet"));
}

/// A bad input gives one line on stderr naming the file and the problem, a non-zero exit and no output.
fn assert_clean_failure(args: &[&str], out: &Path, must_name: &str, must_say: &str) {
    let result = pipeline(args);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success(), "{args:?} succeeded");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(must_name) && errors[0].contains(must_say),
        "{}",
        errors[0]
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
    assert!(!out.exists(), "{} was written", out.display());
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        leftovers
            .iter()
            .all(|n| !n.to_string_lossy().ends_with(".tmp")),
        "{leftovers:?}"
    );
}

#[test]
fn bad_input_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.parquet");
    let o = s(&out);

    assert_clean_failure(
        &["run", "--cube", "/no/such/field.hdr", "--out", o],
        &out,
        "/no/such/field.hdr",
        "not found",
    );

    let inputs = tempfile::tempdir().unwrap();
    let lonely = inputs.path().join("lonely.hdr");
    std::fs::copy(sample("field-b.hdr"), &lonely).unwrap();
    assert_clean_failure(
        &["run", "--cube", s(&lonely), "--out", o],
        &out,
        "lonely.hdr",
        "no data file",
    );

    // OS-level failures in words: a symbolic link loop, a folder, a file GDAL cannot read.
    let looped = inputs.path().join("loop.hdr");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    assert_clean_failure(
        &["run", "--cube", s(&looped), "--out", o],
        &out,
        "loop.hdr",
        "symbolic link loop",
    );
    let folder = inputs.path().join("cubes");
    std::fs::create_dir(&folder).unwrap();
    assert_clean_failure(
        &["run", "--cube", s(&folder), "--out", o],
        &out,
        "cubes",
        "is a directory",
    );
    let junk_tiff = inputs.path().join("junk.tif");
    std::fs::write(&junk_tiff, b"II*\0 not really a TIFF").unwrap();
    assert_clean_failure(
        &["run", "--cube", s(&junk_tiff), "--out", o],
        &out,
        "junk.tif",
        "not a raster GDAL can read (GDAL: ",
    );

    let model_out = dir.path().join("model.safetensors");
    assert_clean_failure(
        &[
            "train",
            "--cube",
            s(&sample("field-b.hdr")),
            "--labels",
            s(&sample("field-a-labels.hdr")),
            "--out",
            s(&model_out),
        ],
        &model_out,
        "field-a-labels.hdr",
        "label raster is 168 lines x 168 samples",
    );

    // A VNIR-only cube (400-1000 nm) cannot feed the bundled model (400-2475 nm).
    let header = std::fs::read_to_string(sample("field-b.hdr")).unwrap();
    let vnir = vnir_only(&header);
    std::fs::write(inputs.path().join("vnir.hdr"), vnir.0).unwrap();
    let data = std::fs::read(sample("field-b.img")).unwrap();
    std::fs::write(
        inputs.path().join("vnir.img"),
        bil_first_bands(&data, 126, 140, 120, vnir.1),
    )
    .unwrap();
    assert_clean_failure(
        &[
            "run",
            "--cube",
            s(&inputs.path().join("vnir.hdr")),
            "--out",
            o,
        ],
        &out,
        "vnir.hdr",
        "do not cover",
    );

    let junk_model = inputs.path().join("junk.safetensors");
    std::fs::write(&junk_model, b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ").unwrap();
    assert_clean_failure(
        &[
            "run",
            "--cube",
            s(&sample("field-b.hdr")),
            "--model",
            s(&junk_model),
            "--out",
            o,
        ],
        &out,
        "junk.safetensors",
        "not a model file",
    );

    assert_clean_failure(
        &[
            "run",
            "--cube",
            s(&sample("field-b.hdr")),
            "--device",
            "cuda:7",
            "--out",
            o,
        ],
        &out,
        "cuda:7",
        "",
    );
}

#[test]
fn existing_output_needs_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.parquet");
    std::fs::write(&out, b"keep me").unwrap();
    let result = pipeline(&["run", "--cube", s(&sample("field-b.hdr")), "--out", s(&out)]);
    assert!(!result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("--overwrite"));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    ok(&[
        "run",
        "--cube",
        s(&sample("field-b.hdr")),
        "--out",
        s(&out),
        "--overwrite",
    ]);
    assert!(read_parquet(&out)["rows"].as_array().unwrap().len() > 10);
}

/// The header of field-b cut to its VNIR bands (< 1000.5 nm); returns the header and band count.
fn vnir_only(header: &str) -> (String, usize) {
    let list = |key: &str| -> Vec<String> {
        let start = header.find(&format!("{key} = {{")).unwrap() + key.len() + 4;
        let end = start + header[start..].find('}').unwrap();
        header[start..end]
            .split(',')
            .map(|v| v.trim().to_string())
            .collect()
    };
    let wavelengths = list("wavelength");
    let keep = wavelengths
        .iter()
        .filter(|w| w.parse::<f64>().unwrap() < 1000.5)
        .count();
    let text = format!(
        "ENVI\nsamples = 140\nlines = 126\nbands = {keep}\nheader offset = 0\ndata type = 12\ninterleave = bil\nbyte order = 0\n\
         reflectance scale factor = 10000\nwavelength units = nm\nwavelength = {{{}}}\n",
        wavelengths[..keep].join(", ")
    );
    (text, keep)
}

fn bil_first_bands(
    data: &[u8],
    lines: usize,
    samples: usize,
    bands: usize,
    keep: usize,
) -> Vec<u8> {
    let line_bytes = bands * samples * 2;
    (0..lines)
        .flat_map(|l| data[l * line_bytes..l * line_bytes + keep * samples * 2].to_vec())
        .collect()
}

#[test]
fn sweep_writes_bounds_figures_and_the_recommended_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let stdout = ok(&[
        "sweep",
        "--cube",
        s(&sample("field-a.hdr")),
        "--labels",
        s(&sample("field-a-labels.hdr")),
        "--betas",
        "1e-3,1",
        "--epochs",
        "15",
        "--no-tune",
        "--out",
        s(&out),
    ]);
    assert!(stdout.contains("recommended"), "{stdout}");
    for name in [
        "sweep.parquet",
        "sweep.json",
        "information-plane.svg",
        "information-plane.png",
        "beta-curves.svg",
        "beta-curves.png",
        "model.safetensors",
        "model.history.parquet",
    ] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    assert!(std::fs::read_to_string(out.join("information-plane.svg"))
        .unwrap()
        .contains("<svg"));
    assert_eq!(
        &std::fs::read(out.join("beta-curves.png")).unwrap()[1..4],
        b"PNG"
    );
    let table = read_parquet(&out.join("sweep.parquet"));
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let ln2 = std::f64::consts::LN_2;
    for row in rows {
        let f = |k: &str| row[k].as_f64().unwrap();
        assert!((f("rate_bits") - f("rate_nats") / ln2).abs() < 1e-9);
        assert!(
            (f("izy_lower_bound_nats") - (f("label_entropy_nats") - f("cross_entropy_nats"))).abs()
                < 1e-9
        );
        assert!((f("izy_lower_bound_bits") - f("izy_lower_bound_nats") / ln2).abs() < 1e-9);
        // Three balanced-ish classes: H(Y) close to ln 3, never above it.
        assert!(f("label_entropy_nats") <= 3f64.ln() + 1e-12 && f("label_entropy_nats") > 1.0);
    }
    // beta 1 squeezes the bottleneck far below beta 1e-3.
    assert!(rows[1]["rate_nats"].as_f64().unwrap() < rows[0]["rate_nats"].as_f64().unwrap() / 10.0);
    let recommended: Vec<&serde_json::Value> =
        rows.iter().filter(|r| r["recommended"] == true).collect();
    assert_eq!(recommended.len(), 1);
    let best_nll = rows
        .iter()
        .map(|r| r["validation_nll_nats"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(
        recommended[0]["validation_nll_nats"].as_f64().unwrap(),
        best_nll
    );
    // The recommended model is usable as it is, and its report shows the sweep it came from.
    let predictions = dir.path().join("p.parquet");
    let report = dir.path().join("report");
    ok(&[
        "run",
        "--cube",
        s(&sample("field-b.hdr")),
        "--model",
        s(&out.join("model.safetensors")),
        "--out",
        s(&predictions),
        "--report",
        s(&report),
    ]);
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(
        html.contains("src=\"information-plane.svg\""),
        "no information plane in the report"
    );
    assert!(report.join("information-plane.svg").is_file());
    assert!(
        html.contains("&quot;sweep&quot;"),
        "the card's sweep records are shown"
    );
}

#[test]
fn evaluate_reports_how_kl_separates_soil_from_plants() {
    let dir = tempfile::tempdir().unwrap();
    // Soil: the pixels field-b's ground truth leaves unlabelled (bare soil and thin plant edges).
    let labels = std::fs::read(sample("field-b-labels.img")).unwrap();
    std::fs::write(
        dir.path().join("soil.img"),
        labels
            .iter()
            .map(|&c| u8::from(c == 0))
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("soil.hdr"),
        "ENVI\nsamples = 140\nlines = 126\nbands = 1\ndata type = 1\ninterleave = bsq\nbyte order = 0\n\
         file type = ENVI Classification\nclasses = 2\nclass names = {Unclassified, soil}\n",
    )
    .unwrap();
    let metrics = dir.path().join("m.json");
    ok(&[
        "evaluate",
        "--cube",
        s(&sample("field-b.hdr")),
        "--labels",
        s(&sample("field-b-labels.hdr")),
        "--metrics",
        s(&metrics),
        "--ood-cube",
        s(&sample("field-b.hdr")),
        "--ood-labels",
        s(&dir.path().join("soil.hdr")),
        "--ood-max-pixels",
        "5000",
    ]);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    let ood = &m["ood"];
    assert!(
        ood["n_ood_spectra"].as_u64().unwrap() > 4000
            && ood["n_ood_spectra"].as_u64().unwrap() <= 5000,
        "{ood}"
    );
    assert!(ood["auroc_kl"].as_f64().unwrap() > 0.65, "{ood}");
    assert!(
        ood["mean_kl_nats_ood"].as_f64().unwrap()
            > ood["mean_kl_nats_in_distribution"].as_f64().unwrap(),
        "{ood}"
    );
    for key in [
        "auroc_entropy",
        "flagged_fraction",
        "in_distribution_flagged_fraction",
    ] {
        let v = ood[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{key} {v}");
    }
}

/// Value at `band` (1 nm steps from 400 nm) of spectrum `line` of a library file (float32 BSQ, one
/// spectrum per line, `lines` lines).
fn library_value(raw: &[u8], lines: usize, line: usize, band: usize) -> f32 {
    let at = 4 * (band * lines + line);
    f32::from_le_bytes(raw[at..at + 4].try_into().unwrap())
}

/// A field-spectrometer style table from a library file: the columns `header` then one per 10 nm
/// named by its wavelength; each row starts with `leading(line)`.
fn write_library_table(
    path: &Path,
    file: &str,
    lines: usize,
    header: &str,
    leading: impl Fn(usize) -> String,
) {
    let raw = std::fs::read(root().join("crates/synth/library").join(file)).unwrap();
    let bands: Vec<usize> = (0..2101).step_by(10).collect();
    let names: Vec<String> = bands.iter().map(|b| (400 + b).to_string()).collect();
    let mut text = format!("{header},{}\n", names.join(","));
    for line in 0..lines {
        let values: Vec<String> = bands
            .iter()
            .map(|&b| format!("{:.5}", library_value(&raw, lines, line, b)))
            .collect();
        text.push_str(&format!("{},{}\n", leading(line), values.join(",")));
    }
    std::fs::write(path, text).unwrap();
}

/// The canopy library: id, label, severity, then the bands.
fn library_table(path: &Path) {
    let meta = std::fs::read_to_string(root().join("crates/synth/library/canopy.csv")).unwrap();
    let rows: Vec<String> = meta
        .lines()
        .skip(1)
        .map(|l| l.split(',').take(3).collect::<Vec<_>>().join(","))
        .collect();
    write_library_table(
        path,
        "canopy.img",
        rows.len(),
        "id,label,severity",
        |line| rows[line].clone(),
    );
}

/// The library's measured soils, as out-of-distribution spectra (no label column).
fn soil_table(path: &Path) {
    write_library_table(path, "soil.img", 200, "name", |line| format!("soil{line}"));
}

/// Default `train`: options chosen by cross-validation within the budget, an ensemble, a
/// temperature from the out-of-fold predictions; the search is printed, in the model card and in
/// the history's metadata; `evaluate` reports calibration before and after and draws the
/// reliability diagram. The same command twice gives the same model file.
#[test]
fn train_selects_options_by_cross_validation_and_calibrates() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("library.csv");
    library_table(&table);
    let model = dir.path().join("tuned.safetensors");
    let train = |out: &Path| {
        ok(&[
            "train",
            "--spectra",
            s(&table),
            "--label-column",
            "label",
            "--group-column",
            "id",
            "--epochs",
            "20",
            "--ensemble",
            "2",
            "--tune-budget",
            "6",
            "--tune-folds",
            "3",
            "--band-range-nm",
            "400,2400",
            "--out",
            s(out),
        ])
    };
    let stdout = train(&model);
    for needle in [
        "selection        3 folds",
        "  winner: lowest out-of-fold NLL",
        "calibration      temperature ",
        "2 member(s)",
    ] {
        assert!(stdout.contains(needle), "no '{needle}' in:\n{stdout}");
    }
    let search_rows = stdout
        .lines()
        .filter(|l| l.contains(" preprocessing ") || l.contains(" hyperparameters "))
        .count();
    assert!(search_rows >= 2, "{stdout}");
    let again = dir.path().join("again.safetensors");
    train(&again);
    assert_eq!(
        std::fs::read(&model).unwrap(),
        std::fs::read(&again).unwrap(),
        "tuning is deterministic"
    );
    let history = std::fs::read(model.with_extension("history.parquet")).unwrap();
    let needle = b"pipeline.selection";
    assert!(history.windows(needle.len()).any(|w| w == needle));

    let metrics = dir.path().join("m.json");
    let diagram = dir.path().join("reliability");
    let stdout = ok(&[
        "evaluate",
        "--spectra",
        s(&table),
        "--model",
        s(&model),
        "--metrics",
        s(&metrics),
        "--reliability",
        s(&diagram),
    ]);
    assert!(stdout.contains("(before calibration"), "{stdout}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    assert_eq!(m["members"], 2);
    let c = &m["calibration"];
    assert_eq!(c["fitted_on"], "out-of-fold");
    assert!(c["temperature"].as_f64().unwrap() > 0.0);
    assert_eq!(c["reliability_after"].as_array().unwrap().len(), 15);
    for ext in ["svg", "png"] {
        assert!(diagram.with_extension(ext).metadata().unwrap().len() > 1000);
    }
    // Bad settings: one-line errors, nothing written.
    for (flag, value, message) in [
        (
            "--tune-budget",
            "0",
            "tuning budget must be a positive number",
        ),
        ("--ensemble", "0", "at least 1 member"),
    ] {
        let out_path = dir.path().join("bad.safetensors");
        let out = pipeline(&[
            "train",
            "--spectra",
            s(&table),
            "--label-column",
            "label",
            flag,
            value,
            "--out",
            s(&out_path),
        ]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{flag} {value}: {stderr}");
        assert!(!out_path.exists());
    }
}

#[test]
fn train_and_evaluate_from_a_spectral_table() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("library.csv");
    library_table(&table);
    let model = dir.path().join("library.safetensors");
    // With a preprocessing chain, which the model file must carry to evaluate.
    let stdout = ok(&[
        "train",
        "--spectra",
        s(&table),
        "--label-column",
        "label",
        "--group-column",
        "id",
        "--epochs",
        "60",
        "--out",
        s(&model),
        "--band-range-nm",
        "400,2400",
        "--savgol",
        "11,2,0",
        "--snv",
        "--no-tune",
        "--ensemble",
        "1",
    ]);
    assert!(stdout.contains("unit             row"), "{stdout}");
    let metrics = dir.path().join("m.json");
    ok(&[
        "evaluate",
        "--spectra",
        s(&table),
        "--model",
        s(&model),
        "--metrics",
        s(&metrics),
    ]);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    assert_eq!(m["n_samples"], 1200);
    assert_eq!(m["unit"], "row");
    // Over the library's full severity range rust and blight overlap (a logistic regression reaches
    // about 0.85 in cross-validation); the model must clearly beat chance (1/3) on data it saw.
    assert!(
        m["overall_accuracy"].as_f64().unwrap() > 0.75,
        "{}",
        m["overall_accuracy"]
    );
    // A missing label column is a clear error.
    let out = pipeline(&[
        "train",
        "--spectra",
        s(&table),
        "--label-column",
        "disease",
        "--out",
        s(&dir.path().join("x.safetensors")),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no column 'disease'"));
}

#[test]
fn measured_soils_cost_more_nats_than_plants() {
    let dir = tempfile::tempdir().unwrap();
    let soils = dir.path().join("soils.csv");
    soil_table(&soils);
    let metrics = dir.path().join("m.json");
    ok(&[
        "evaluate",
        "--cube",
        s(&sample("field-b.hdr")),
        "--labels",
        s(&sample("field-b-labels.hdr")),
        "--metrics",
        s(&metrics),
        "--ood-spectra",
        s(&soils),
    ]);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    assert_eq!(m["ood"]["n_ood_spectra"], 200);
    assert!(m["ood"]["auroc_kl"].as_f64().unwrap() > 0.9, "{}", m["ood"]);
}

/// The resampler's Gaussian spectral response agrees with the synthetic-scene generator's
/// (an independent implementation) on real library spectra.
#[test]
fn gaussian_resampling_matches_the_scene_generator() {
    let raw = std::fs::read(root().join("crates/synth/library/canopy.img")).unwrap();
    let fine_nm: Vec<f64> = (400..=2500).map(f64::from).collect();
    let fine = domain::SpectralAxis::new(fine_nm.clone(), None).unwrap();
    let sensor = synth::vnir_swir_axis();
    let resampler = fine.resampler_to(&sensor).unwrap();
    let response = synth::SpectralResponse::new(&fine_nm, &sensor);
    for line in [0usize, 450, 1100] {
        let spectrum: Vec<f32> = (0..2101)
            .map(|b| library_value(&raw, 1200, line, b))
            .collect();
        let ours = resampler.apply(&spectrum).unwrap();
        let theirs = response.apply(&spectrum);
        for (band, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            // Where the response is cut by the library's ends, ours integrates by the trapezoidal
            // rule (half weight on the end sample) and the generator uniformly: close, not equal.
            let (centre, fwhm) = (
                sensor.wavelength_nm()[band],
                sensor.fwhm_nm().unwrap()[band],
            );
            let sigma = fwhm / (8.0 * 2f64.ln()).sqrt();
            let cut = centre - 3.0 * sigma < 400.0 || centre + 3.0 * sigma > 2500.0;
            let tolerance = if cut { 1e-3 } else { 1e-6 };
            assert!(
                (*a as f64 - b).abs() < tolerance,
                "line {line} band {band}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn inspect_describes_cubes_and_writes_a_quicklook() {
    let dir = tempfile::tempdir().unwrap();
    let quicklook = dir.path().join("q.png");
    let stdout = ok(&[
        "inspect",
        "--cube",
        s(&sample("field-b.hdr")),
        "--quicklook",
        s(&quicklook),
    ]);
    for expected in [
        "126 lines x 140 samples x 120 bands",
        "UInt16",
        "bil",
        "little-endian (0)",
        "400.0-2475.0 nm",
        "10000",
        "EPSG:32632",
        "0.005 x 0.005",
    ] {
        assert!(stdout.contains(expected), "{expected} not in\n{stdout}");
    }
    let png = std::fs::read(&quicklook).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // IHDR: width and height, big-endian, at bytes 16..24.
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 140);
    assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 126);

    let real =
        root().join("../shared/real_cubes/plantcv_corn_kernel/corn-kernel-hyperspectral.hdr");
    let json = ok(&["inspect", "--cube", s(&real), "--json"]);
    let d: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(d["bands"], 580);
    assert_eq!(d["byte_order"], "missing (read as little-endian)");
    assert_eq!(d["data_type"], "UInt16");

    // The GeoTIFF's own band metadata is used; the ENVI header of the same scan beside it is not.
    let tiff = ok(&["inspect", "--cube", s(&sample("field-a.tif")), "--json"]);
    let d: serde_json::Value = serde_json::from_str(&tiff).unwrap();
    assert_eq!(d["driver"], "GTiff");
    assert!(d["header_path"].is_null());
    assert_eq!(d["reflectance_scale_factor"], 10000.0);
}

/// field-b's header up to its band lists (no wavelengths, no FWHM), and the lists.
fn field_b_header_without_bands() -> (String, Vec<f64>, Vec<f64>) {
    let text = std::fs::read_to_string(sample("field-b.hdr")).unwrap();
    let at = text.find("wavelength = {").unwrap();
    let list = |key: &str| -> Vec<f64> {
        let start = text.find(key).unwrap() + key.len();
        let end = start + text[start..].find('}').unwrap();
        text[start..end]
            .split(',')
            .map(|v| v.trim().parse().unwrap())
            .collect()
    };
    (
        text[..at].to_string(),
        list("wavelength = {"),
        list("fwhm = {"),
    )
}

/// Plants and calls of two prediction tables agree (probabilities to float rounding).
fn assert_same_calls(a: &serde_json::Value, b: &serde_json::Value) {
    let (a, b) = (a["rows"].as_array().unwrap(), b["rows"].as_array().unwrap());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        for exact in [
            "plant_id",
            "pixel_count",
            "centroid_row",
            "centroid_col",
            "x",
            "y",
            "predicted_class_name",
        ] {
            assert_eq!(x[exact], y[exact], "{exact}");
        }
        for close in [
            "prob_healthy",
            "prob_rust",
            "prob_blight",
            "kl_nats",
            "mean_ndvi",
        ] {
            let (u, v) = (x[close].as_f64().unwrap(), y[close].as_f64().unwrap());
            assert!(
                (u - v).abs() < 1e-4 * (1.0 + u.abs()),
                "{close}: {u} vs {v}"
            );
        }
    }
}

/// field-b with its bands shuffled in the file and its wavelengths given only by a file
/// (micrometres, unsorted): same plants, same calls as the original.
#[test]
fn unsorted_bands_from_a_wavelength_file_give_the_same_calls() {
    let dir = tempfile::tempdir().unwrap();
    let (prefix, wavelengths, fwhm) = field_b_header_without_bands();
    let (lines, samples, bands) = (126, 140, 120);
    let perm: Vec<usize> = (0..bands).map(|i| (i * 37 + 11) % bands).collect();
    let raw = std::fs::read(sample("field-b.img")).unwrap();
    let chunk = samples * 2;
    let mut shuffled = Vec::with_capacity(raw.len());
    for l in 0..lines {
        for &old in &perm {
            let at = (l * bands + old) * chunk;
            shuffled.extend_from_slice(&raw[at..at + chunk]);
        }
    }
    std::fs::write(dir.path().join("shuffled.img"), shuffled).unwrap();
    std::fs::write(dir.path().join("shuffled.hdr"), &prefix).unwrap();
    let mut table = String::from("wavelength_um,fwhm_um\n");
    for &old in &perm {
        table.push_str(&format!(
            "{},{}\n",
            wavelengths[old] / 1000.0,
            fwhm[old] / 1000.0
        ));
    }
    let bands_file = dir.path().join("bands.csv");
    std::fs::write(&bands_file, table).unwrap();

    let shuffled_hdr = dir.path().join("shuffled.hdr");
    let out = dir.path().join("x.parquet");
    assert_clean_failure(
        &["run", "--cube", s(&shuffled_hdr), "--out", s(&out)],
        &out,
        "shuffled.hdr",
        "--wavelengths",
    );
    let original = dir.path().join("original.parquet");
    ok(&[
        "run",
        "--cube",
        s(&sample("field-b.hdr")),
        "--out",
        s(&original),
    ]);
    ok(&[
        "run",
        "--cube",
        s(&shuffled_hdr),
        "--wavelengths",
        s(&bands_file),
        "--out",
        s(&out),
        "--field-id",
        "field-b",
    ]);
    assert_same_calls(&read_parquet(&original), &read_parquet(&out));
}

/// field-b's stored counts calibrated against a white panel of 10000 counts and a zero dark
/// frame equal its reflectance scale factor of 10000: same plants, same calls.
#[test]
fn white_and_dark_references_calibrate_raw_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (prefix, _, _) = field_b_header_without_bands();
    let (samples, bands) = (140, 120);
    let raw_header = prefix.replace("reflectance scale factor = 10000\n", "");
    assert_ne!(raw_header, prefix);
    let header_text = std::fs::read_to_string(sample("field-b.hdr")).unwrap();
    let bands_part = &header_text[prefix.len()..];
    std::fs::copy(sample("field-b.img"), dir.path().join("raw.img")).unwrap();
    std::fs::write(
        dir.path().join("raw.hdr"),
        format!("{raw_header}{bands_part}"),
    )
    .unwrap();
    let reference = |name: &str, lines: usize, value: u16| {
        let header = raw_header.replace("lines = 126", &format!("lines = {lines}"));
        std::fs::write(dir.path().join(format!("{name}.hdr")), header).unwrap();
        let data: Vec<u8> = std::iter::repeat_n(value.to_le_bytes(), lines * samples * bands)
            .flatten()
            .collect();
        std::fs::write(dir.path().join(format!("{name}.img")), data).unwrap();
        dir.path().join(format!("{name}.hdr"))
    };
    let white = reference("white", 1, 10000);
    let dark = reference("dark", 3, 0);
    let narrow = {
        let header = raw_header
            .replace("samples = 140", "samples = 100")
            .replace("lines = 126", "lines = 1");
        std::fs::write(dir.path().join("narrow.hdr"), header).unwrap();
        std::fs::write(dir.path().join("narrow.img"), vec![0u8; 100 * bands * 2]).unwrap();
        dir.path().join("narrow.hdr")
    };
    let raw = dir.path().join("raw.hdr");
    let out = dir.path().join("calibrated.parquet");
    assert_clean_failure(
        &[
            "run",
            "--cube",
            s(&raw),
            "--white",
            s(&narrow),
            "--dark",
            s(&dark),
            "--out",
            s(&out),
        ],
        &out,
        "narrow.img",
        "100 samples x 120 bands",
    );
    let stdout = ok(&[
        "run",
        "--cube",
        s(&raw),
        "--white",
        s(&white),
        "--dark",
        s(&dark),
        "--out",
        s(&out),
        "--field-id",
        "field-b",
    ]);
    assert!(stdout.contains("calibration  0 of"), "{stdout}");
    let original = dir.path().join("original.parquet");
    ok(&[
        "run",
        "--cube",
        s(&sample("field-b.hdr")),
        "--out",
        s(&original),
    ]);
    assert_same_calls(&read_parquet(&original), &read_parquet(&out));
}

/// field-b split into 3 x 2 plots by polygons with attributes, as GeoJSON, GeoPackage and
/// Shapefile (converted by GDAL's ogr2ogr): one plant per plot, attributes as columns, the same
/// rows from every format; and a plant-id raster.
#[test]
fn plants_from_plot_polygons_and_a_plant_id_raster() {
    let dir = tempfile::tempdir().unwrap();
    // field-b: 126 lines x 140 samples of 5 mm from (512010, 5350000), UTM 32N.
    let (x0, y0, px) = (512_010.0, 5_350_000.0, 0.005);
    let mut features = Vec::new();
    for row in 0..2 {
        for col in 0..3 {
            let (a, b) = (x0 + col as f64 * 47.0 * px, y0 - row as f64 * 63.0 * px);
            let (c, d) = (a + 46.0 * px, b - 62.0 * px);
            features.push(format!(
                r#"{{"type": "Feature", "properties": {{"plot": "R{row}C{col}", "genotype": {}, "x": 1.5}}, "geometry": {{"type": "Polygon", "coordinates": [[[{a}, {b}], [{c}, {b}], [{c}, {d}], [{a}, {d}], [{a}, {b}]]]}}}}"#,
                100 + row * 3 + col
            ));
        }
    }
    let geojson = dir.path().join("plots.geojson");
    std::fs::write(
        &geojson,
        format!(
            r#"{{"type": "FeatureCollection", "crs": {{"type": "name", "properties": {{"name": "urn:ogc:def:crs:EPSG::32632"}}}}, "features": [{}]}}"#,
            features.join(", ")
        ),
    )
    .unwrap();
    let gpkg = dir.path().join("plots.gpkg");
    let shp = dir.path().join("plots.shp");
    for (target, driver) in [(&gpkg, "GPKG"), (&shp, "ESRI Shapefile")] {
        let status = Command::new("ogr2ogr")
            .args(["-f", driver, s(target), s(&geojson)])
            .status()
            .unwrap();
        assert!(status.success(), "ogr2ogr {driver}");
    }
    let mut tables = Vec::new();
    for polygons in [&geojson, &gpkg, &shp] {
        let out = dir.path().join(format!(
            "{}.parquet",
            polygons.extension().unwrap().to_string_lossy()
        ));
        ok(&[
            "run",
            "--cube",
            s(&sample("field-b.hdr")),
            "--polygons",
            s(polygons),
            "--out",
            s(&out),
        ]);
        let table = read_parquet(&out);
        let rows = table["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 6, "{}", polygons.display());
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row["plant_id"], i as u64 + 1);
            assert_eq!(row["plot"], format!("R{}C{}", i / 3, i % 3));
            assert_eq!(row["genotype"], 100 + i as u64);
            // A polygon field named like a built-in column keeps its value under a prefix.
            assert_eq!(row["polygon_x"], 1.5);
            let x = row["x"].as_f64().unwrap();
            let left = x0 + (i % 3) as f64 * 47.0 * px;
            assert!(x > left && x < left + 46.0 * px, "plot {i}: x {x}");
            assert!(row["pixel_count"].as_u64().unwrap() > 100);
        }
        tables.push(table["rows"].clone());
    }
    assert_eq!(tables[0], tables[1], "GeoJSON and GeoPackage");
    assert_eq!(tables[0], tables[2], "GeoJSON and Shapefile");

    // The ground-truth raster as a plant-id raster: one "plant" per class, each called as its class.
    let out = dir.path().join("ids.parquet");
    ok(&[
        "run",
        "--cube",
        s(&sample("field-b.hdr")),
        "--plant-ids",
        s(&sample("field-b-labels.hdr")),
        "--out",
        s(&out),
    ]);
    let table = read_parquet(&out);
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        assert_eq!(row["plant_id"], row["predicted_label"], "{row}");
    }
}

/// The plant spectra table against means and standard deviations computed in Python from the raw
/// bytes of field-b and its label raster (used as a plant-id raster: one plant per class).
#[test]
fn plant_spectra_match_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.parquet");
    let spectra = dir.path().join("spectra.parquet");
    ok(&[
        "run",
        "--cube",
        s(&sample("field-b.hdr")),
        "--plant-ids",
        s(&sample("field-b-labels.hdr")),
        "--plant-spectra",
        s(&spectra),
        "--out",
        s(&out),
    ]);
    let script = r#"
import json, math, struct, sys
import pyarrow.parquet as pq
lines, samples, bands = 126, 140, 120
raw = open(sys.argv[1], "rb").read()
labels = open(sys.argv[2], "rb").read()
t = pq.read_table(sys.argv[3]).to_pylist()
worst = 0.0
for row in t:
    pid = row["plant_id"]
    pixels = [(l, s) for l in range(lines) for s in range(samples) if labels[l * samples + s] == pid]
    assert row["pixel_count"] == len(pixels), (row["pixel_count"], len(pixels))
    for b in (0, 27, 40, 119):
        vals = [struct.unpack_from("<H", raw, ((l * bands + b) * samples + s) * 2)[0] / 10000 for l, s in pixels]
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
        name = [k for k in row if not k.startswith("std_") and k not in ("field_id", "plant_id", "pixel_count", "mean_ndvi")][b]
        worst = max(worst, abs(row[name] - mean), abs(row["std_" + name] - std))
print(json.dumps({"rows": len(t), "columns": len(t[0]), "worst": worst}))
"#;
    let v = python_json(
        script,
        &[
            s(&sample("field-b.img")),
            s(&sample("field-b-labels.img")),
            s(&spectra),
        ],
    );
    assert_eq!(v["rows"], 3);
    assert_eq!(v["columns"], 4 + 2 * 120);
    assert!(v["worst"].as_f64().unwrap() < 1e-5, "{v}");
}

/// Run a command that must succeed; its stdout as JSON.
fn json_output(command: &mut Command) -> serde_json::Value {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Run a Python snippet from the project's venv with arguments; its stdout as JSON.
fn python_json(script: &str, args: &[&str]) -> serde_json::Value {
    json_output(
        Command::new(root().join(".venv/bin/python"))
            .arg("-c")
            .arg(script)
            .args(args),
    )
}

/// The pixels of value `code` in a band of `gdalinfo -json -hist` (its histogram's bucket).
fn histogram_count(band: &serde_json::Value, code: u32) -> serde_json::Value {
    let histogram = &band["histogram"];
    let buckets = histogram["buckets"].as_array().unwrap();
    let (min, max) = (
        histogram["min"].as_f64().unwrap(),
        histogram["max"].as_f64().unwrap(),
    );
    let width = (max - min) / buckets.len() as f64;
    buckets[((f64::from(code) - min) / width).floor() as usize].clone()
}

/// `gdalinfo -json` (GDAL's command line, independent of our writer).
fn gdalinfo(path: &Path, extra: &[&str]) -> serde_json::Value {
    json_output(Command::new("gdalinfo").arg("-json").args(extra).arg(path))
}

/// Every output of a run: predictions with the new columns, the field summary (checked by an
/// independent computation in Python), the class and KL maps (checked with gdalinfo), the quicklook
/// and the report folder (valid HTML whose images all exist; never half written).
#[test]
fn run_writes_summary_maps_and_a_report() {
    let dir = tempfile::tempdir().unwrap();
    // field-b with an acquisition time in its header.
    let header = std::fs::read_to_string(sample("field-b.hdr")).unwrap();
    std::fs::write(
        dir.path().join("scan.hdr"),
        header.replacen(
            "ENVI\n",
            "ENVI\nacquisition time = 2026-06-14T10:21:07Z\n",
            1,
        ),
    )
    .unwrap();
    std::fs::copy(sample("field-b.img"), dir.path().join("scan.img")).unwrap();
    let cube = dir.path().join("scan.hdr");
    let p = |name: &str| dir.path().join(name);
    let report = p("report");
    let stdout = ok(&[
        "run",
        "--cube",
        s(&cube),
        "--out",
        s(&p("plants.parquet")),
        "--summary",
        s(&p("summary.parquet")),
        "--class-map",
        s(&p("classes.tif")),
        "--kl-map",
        s(&p("kl.tif")),
        "--quicklook",
        s(&p("quicklook.png")),
        "--report",
        s(&report),
    ]);
    assert!(
        stdout.contains("incidence") && stdout.contains("report"),
        "{stdout}"
    );

    // Predictions and summary, recomputed in Python from the predictions table.
    let check = r#"
import json, math, sys
import pyarrow.parquet as pq
plants = pq.read_table(sys.argv[1])
meta = {k.decode(): v.decode() for k, v in pq.read_metadata(sys.argv[1]).metadata.items()}
rows = plants.to_pylist()
summary = pq.read_table(sys.argv[2]).to_pylist()
assert len(summary) == 1, summary
s = summary[0]
n = len(rows)
kl = sorted(r["kl_nats"] for r in rows)
def pct(q):
    rank = q / 100 * (n - 1)
    lo, hi = math.floor(rank), math.ceil(rank)
    return kl[lo] + (kl[hi] - kl[lo]) * (rank - lo)
healthy = sum(r["predicted_class_name"] == "healthy" for r in rows)
problems = []
def close(a, b, what, tol=1e-9):
    if abs(a - b) > tol * (1 + abs(b)):
        problems.append(f"{what}: {a} vs {b}")
close(s["incidence_pct"], 100 * (n - healthy) / n, "incidence")
close(s["kl_mean_nats"], sum(kl) / n, "kl mean")
for q in (50, 90, 99):
    close(s[f"kl_p{q}_nats"], pct(q), f"kl p{q}")
for c in ("healthy", "rust", "blight"):
    if s[f"plants_{c}"] != sum(r["predicted_class_name"] == c for r in rows):
        problems.append(f"plants_{c}")
if s["plants"] != n or s["ood_plants"] != sum(r["ood"] for r in rows):
    problems.append("plants/ood")
for r in rows:
    close(r["kl_bits"], r["kl_nats"] / math.log(2), "kl_bits")
    probs = {c: r["prob_" + c] for c in ("healthy", "rust", "blight")}
    ranked = sorted(probs, key=probs.get, reverse=True)
    if r["second_class_name"] != ranked[1] and probs[ranked[1]] != probs[ranked[2]]:
        problems.append(f"second class of plant {r['plant_id']}")
    close(r["margin"], probs[ranked[0]] - probs[ranked[1]], "margin", 1e-6)  # float32 columns
    if r["scan_date"] != "2026-06-14" or r["x"] is None or not (512010 < r["x"] < 512010 + 140 * 0.005):
        problems.append(f"date/x of plant {r['plant_id']}")
print(json.dumps({"problems": problems, "plants": n, "schema": meta["pipeline.schema_version"],
                  "epsg": meta.get("pipeline.crs_epsg"), "scan_date": s["scan_date"],
                  "pixels_per_class": {c: sum(r["pixel_count"] for r in rows if r["predicted_class_name"] == c) for c in ("healthy", "rust", "blight")}}))
"#;
    let v = python_json(check, &[s(&p("plants.parquet")), s(&p("summary.parquet"))]);
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    assert_eq!(v["schema"], "3");
    assert_eq!(v["epsg"], "32632");
    assert_eq!(v["scan_date"], "2026-06-14");

    // The class map as GDAL sees it: CRS, colour table, names, and each class's pixel count equal
    // to the pixels of the plants called that class.
    let info = gdalinfo(&p("classes.tif"), &["-hist"]);
    assert!(info["coordinateSystem"]["wkt"]
        .as_str()
        .unwrap()
        .contains("UTM zone 32N"));
    let band = &info["bands"][0];
    assert_eq!(band["type"], "Byte");
    assert_eq!(
        band["colorTable"]["entries"][1],
        serde_json::json!([46, 160, 44, 255])
    );
    assert_eq!(
        band["categories"],
        serde_json::json!(["Unclassified", "healthy", "rust", "blight"])
    );
    for (code, class) in [(1, "healthy"), (2, "rust"), (3, "blight")] {
        assert_eq!(
            histogram_count(band, code),
            v["pixels_per_class"][class],
            "{class}: {band}"
        );
    }
    let kl = gdalinfo(&p("kl.tif"), &[]);
    assert_eq!(kl["bands"][0]["type"], "Float32");
    assert!(
        kl["bands"][0]["noDataValue"].is_string()
            || kl["bands"][0]["noDataValue"].is_null()
            || kl["bands"][0]["noDataValue"].as_f64().is_none()
    );

    // The report: well-formed HTML, no network references, every image present.
    let html_check = r#"
import html.parser, json, os, sys
VOID = {"meta", "img", "br", "hr", "link", "input"}
class Check(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.images, self.errors = [], [], []
    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in VOID:
            self.stack.append(tag)
    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unbalanced </{tag}>")
d = sys.argv[1]
text = open(os.path.join(d, "index.html"), encoding="utf-8").read()
c = Check()
c.feed(text)
if c.stack:
    c.errors.append(f"unclosed {c.stack}")
missing = [i for i in c.images if not os.path.isfile(os.path.join(d, i))]
print(json.dumps({"errors": c.errors, "images": c.images, "missing": missing,
                  "network": "http://" in text or "https://" in text, "doctype": text.startswith("<!DOCTYPE html>")}))
"#;
    let h = python_json(html_check, &[s(&report)]);
    assert_eq!(h["errors"], serde_json::json!([]), "{h}");
    assert_eq!(h["missing"], serde_json::json!([]), "{h}");
    assert_eq!(h["network"], false);
    assert_eq!(h["doctype"], true);
    assert!(h["images"].as_array().unwrap().len() >= 4, "{h}");
    // The bundled model was tuned and calibrated: the report shows how its options were chosen
    // and the reliability of the held-out predictions its calibration was fitted on.
    let index = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(
        index.contains("How the options were chosen"),
        "no search table"
    );
    assert!(
        index.contains("src=\"reliability.svg\""),
        "no reliability diagram"
    );
    assert!(report.join("reliability.png").is_file());
    for name in [
        "summary.parquet",
        "class-map.tif",
        "kl-map.tif",
        "quicklook.png",
    ] {
        assert!(report.join(name).is_file(), "{name}");
    }

    // An existing report is kept without --overwrite; a failing run leaves no half-written folder.
    let before = std::fs::read(report.join("index.html")).unwrap();
    let again = pipeline(&[
        "run",
        "--cube",
        s(&cube),
        "--out",
        s(&p("other.parquet")),
        "--report",
        s(&report),
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("report folder exists"));
    assert_eq!(std::fs::read(report.join("index.html")).unwrap(), before);
    let broken = p("broken-report");
    let failed = pipeline(&[
        "run",
        "--cube",
        s(&p("nothing.hdr")),
        "--out",
        s(&p("x.parquet")),
        "--report",
        s(&broken),
    ]);
    assert!(!failed.status.success());
    assert!(!broken.exists());
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A campaign folder: `n` copies of field-b (ENVI, so each is its own cube) and a pipeline file
/// over them by glob, plus `extra` TOML.
fn campaign(dir: &Path, n: usize, extra: &str) -> PathBuf {
    let cubes = dir.join("cubes");
    std::fs::create_dir_all(&cubes).unwrap();
    for i in 0..n {
        std::fs::copy(sample("field-b.img"), cubes.join(format!("plot{i:02}.img"))).unwrap();
        std::fs::copy(sample("field-b.hdr"), cubes.join(format!("plot{i:02}.hdr"))).unwrap();
    }
    let file = dir.join("campaign.toml");
    std::fs::write(
        &file,
        format!(
            "[outputs]\ndir = \"dataset\"\nreport = false\nmaps = true\n\n[[inputs]]\nglob = \"cubes/*.hdr\"\ndate = \"2026-07-01\"\n{extra}"
        ),
    )
    .unwrap();
    file
}

/// Every predictions row of a dataset, sorted, with pyarrow (Hive partitions as columns).
fn dataset_rows(dir: &Path) -> serde_json::Value {
    python_json(
        r#"
import json, sys
import pyarrow.dataset as ds
t = ds.dataset(sys.argv[1], format="parquet", partitioning="hive").to_table()
rows = sorted(t.to_pylist(), key=lambda r: (r["field_id"], r["plant_id"]))
for r in rows:
    r.pop("cube")
print(json.dumps(rows))
"#,
        &[s(&dir.join("predictions"))],
    )
}

#[test]
fn batch_resumes_skips_and_reports_failures() {
    let dir = tempfile::tempdir().unwrap();
    let file = campaign(dir.path(), 3, "");
    let check = ok(&["batch", "--check", s(&file)]);
    assert!(check.contains("valid; 3 cube(s)"), "{check}");
    let first = ok(&["batch", s(&file), "--jobs", "2"]);
    assert!(first.contains("3 done, 0 up to date, 0 failed"), "{first}");
    let data = dir.path().join("dataset");
    let rows = dataset_rows(&data);
    let rows = rows.as_array().unwrap();
    // The same plants and calls as a single `run` of field-b, for each copy.
    let single = dir.path().join("single.parquet");
    ok(&[
        "run",
        "--cube",
        s(&sample("field-b.hdr")),
        "--out",
        s(&single),
    ]);
    let single = read_parquet(&single);
    let single_rows = single["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3 * single_rows.len());
    for (row, expected) in rows.iter().zip(single_rows.iter().cycle()) {
        for column in [
            "plant_id",
            "pixel_count",
            "predicted_class_name",
            "kl_nats",
            "x",
            "y",
        ] {
            assert_eq!(row[column], expected[column], "{column}");
        }
        assert_eq!(row["date"], "2026-07-01");
    }
    // A rerun skips every cube; touching one input redoes just that one.
    let again = ok(&["batch", s(&file)]);
    assert!(again.contains("0 done, 3 up to date"), "{again}");
    let touched = dir.path().join("cubes/plot01.img");
    let bytes = std::fs::read(&touched).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&touched, bytes).unwrap();
    let after_touch = ok(&["batch", s(&file)]);
    assert!(
        after_touch.contains("1 done, 2 up to date"),
        "{after_touch}"
    );
    // A damaged output is noticed by its checksum and redone.
    let part = dir
        .path()
        .join("dataset/predictions/field_id=plot02/date=2026-07-01/part-plot02.parquet");
    std::fs::write(&part, b"not parquet").unwrap();
    let repaired = ok(&["batch", s(&file)]);
    assert!(repaired.contains("1 done, 2 up to date"), "{repaired}");
    assert_eq!(dataset_rows(&data).as_array().unwrap().len(), rows.len());

    // A bad cube is reported and skipped; the others complete; the exit code says so.
    std::fs::write(
        dir.path().join("cubes/broken.hdr"),
        "ENVI\nsamples = 4\nlines = 4\nbands = 2\ndata type = 12\ninterleave = bsq\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("cubes/broken.img"), [0u8; 10]).unwrap();
    let result = pipeline(&["batch", s(&file)]);
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    assert!(
        stdout.contains("0 done, 3 up to date, 1 failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("failed       broken:") && stdout.contains("broken.img"),
        "{stdout}"
    );
    assert!(stderr.contains("1 of 4 cubes failed"), "{stderr}");
    assert!(!stderr.contains("panicked"));

    // Schema errors name the file and the key.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[outputs]\ndir = \"x\"\nreprot = true\n[[inputs]]\ncube = \"a.hdr\"\n",
    )
    .unwrap();
    assert_clean_failure(
        &["batch", "--check", s(&bad)],
        &dir.path().join("x"),
        "bad.toml",
        "reprot",
    );
    std::fs::write(
        &bad,
        "[outputs]\ndir = \"x\"\n[[inputs]]\ncube = \"missing.hdr\"\n",
    )
    .unwrap();
    assert_clean_failure(
        &["batch", "--check", s(&bad)],
        &dir.path().join("x"),
        "missing.hdr",
        "not found",
    );
}

/// Every file a reader can see under `data` is complete: each Parquet part reads with pyarrow,
/// and nothing temporary lies outside the hidden staging folder. `what` names the moment.
fn assert_dataset_complete(data: &Path, what: &str) {
    if !data.join("predictions").exists() {
        return;
    }
    let check = python_json(
        r#"
import json, os, sys
import pyarrow.parquet as pq
root = sys.argv[1]
bad, parts = [], 0
for d, subdirs, files in os.walk(root):
    subdirs[:] = [s for s in subdirs if not s.startswith(".")]
    for f in files:
        path = os.path.join(d, f)
        if ".tmp" in f or f.startswith("."):
            bad.append(path)
        elif f.endswith(".parquet"):
            pq.read_table(path)
            parts += 1
print(json.dumps({"bad": bad, "parts": parts}))
"#,
        &[s(data)],
    );
    assert_eq!(check["bad"], serde_json::json!([]), "{what}: {check}");
}

fn manifest_count(data: &Path) -> usize {
    std::fs::read_dir(data.join("manifests")).map_or(0, |d| d.count())
}

/// The staging folders a run left behind (none, after a clean stop or a finished run).
fn staging_left(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data.join(".staging"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// SplitMix64, for the kill test's random moments.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A batch killed at 20 random moments (SIGKILL and SIGINT in turn) shows only complete files
/// after each; the next run finishes the campaign, and its dataset equals an uninterrupted run's.
/// The moments are uniform over an uninterrupted run's duration, measured here; the seed comes
/// from the clock (or PIPELINE_KILL_SEED) and is printed with any failure.
#[test]
fn batch_killed_at_random_moments_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let file = campaign(dir.path(), 6, "");
    let data = dir.path().join("dataset");
    let clean = dir.path().join("clean");
    let timer = std::time::Instant::now();
    ok(&["batch", s(&file), "--out", s(&clean)]);
    let full_ms = timer.elapsed().as_millis() as u64 + 50;
    let seed: u64 = std::env::var("PIPELINE_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let mut state = seed;
    let mut incomplete_after_kill = 0;
    let mut log = Vec::new();
    for round in 0..20 {
        let delay_ms = splitmix(&mut state) % full_ms;
        let mut child = Command::new(env!("CARGO_BIN_EXE_pipeline"))
            .args(["-q", "batch", s(&file)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let signal = if round % 2 == 0 { "KILL" } else { "INT" };
        let _ = Command::new("kill")
            .args(["-s", signal, &child.id().to_string()])
            .status();
        let status = child.wait().unwrap();
        let what = format!(
            "seed {seed}, round {round}, SIG{signal} after {delay_ms} of {full_ms} ms ({status:?})"
        );
        if signal == "INT" {
            // A graceful stop (75), a campaign that finished first (0), or a signal that came
            // before the handlers were installed (killed by SIGINT).
            use std::os::unix::process::ExitStatusExt;
            assert!(
                matches!(status.code(), Some(0 | 75)) || status.signal() == Some(2),
                "{what}"
            );
        }
        assert_dataset_complete(&data, &what);
        let complete = manifest_count(&data);
        log.push(format!("{what}: {complete} complete"));
        if complete < 6 {
            incomplete_after_kill += 1;
        } else {
            // Finished before the kill: start over, so later kills land mid-campaign too.
            std::fs::remove_dir_all(&data).unwrap();
        }
    }
    assert!(
        incomplete_after_kill > 0,
        "no kill landed mid-campaign: {log:#?}"
    );
    let finish = ok(&["batch", s(&file)]);
    assert!(finish.contains("0 failed"), "{finish}\n{log:#?}");
    assert_eq!(dataset_rows(&data), dataset_rows(&clean), "{log:#?}");
    assert!(
        staging_left(&data).is_empty(),
        "staging left behind: {log:#?}"
    );
}

/// Output checksums of a batch dataset, by path, from its manifests.
fn output_checksums(data: &Path) -> std::collections::BTreeMap<String, String> {
    let mut found = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(data.join("manifests")).unwrap() {
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        for o in manifest["outputs"].as_array().unwrap() {
            found.insert(
                o["path"].as_str().unwrap().to_string(),
                o["sha256"].as_str().unwrap().to_string(),
            );
        }
    }
    found
}

/// Issue 10: identical cubes in one batch with `--jobs 2`, under CPU load (a busy thread per
/// core), pinned to one core or not, with libtorch on 1 or 2 threads, 12 times: every cube's
/// outputs are byte-identical run to run, and the identical copies have identical KL and class
/// maps within each run. Before the fixed-order CPU forward pass, one copy's KL moved by up to
/// 2.6e-4 nats about one run in ten on a loaded machine. `--threads` 1 or 2 also sets the
/// threads of the parallel cube scan (issue 14).
#[test]
fn predictions_are_bit_identical_whatever_the_jobs_threads_or_load() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let cubes = dir.path().join("cubes");
    std::fs::create_dir_all(&cubes).unwrap();
    for i in 0..4 {
        std::fs::copy(sample("field-a.img"), cubes.join(format!("copy{i}.img"))).unwrap();
        std::fs::copy(sample("field-a.hdr"), cubes.join(format!("copy{i}.hdr"))).unwrap();
    }
    let file = dir.path().join("campaign.toml");
    std::fs::write(
        &file,
        "[outputs]\ndir = \"dataset\"\nreport = false\nmaps = true\n\n[[inputs]]\nglob = \"cubes/*.hdr\"\ndate = \"2026-07-01\"\n",
    )
    .unwrap();
    let busy = std::sync::Arc::new(AtomicBool::new(true));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hogs: Vec<_> = (0..cores)
        .map(|_| {
            let busy = busy.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while busy.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let mut first: Option<std::collections::BTreeMap<String, String>> = None;
    for run in 0..12 {
        let out = dir.path().join(format!("run{run}"));
        let threads = if run % 2 == 0 { "1" } else { "2" };
        let pinned = run % 4 >= 2;
        let mut command = if pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", "0", env!("CARGO_BIN_EXE_pipeline")]);
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_pipeline"))
        };
        let result = command
            .args([
                "-q",
                "--threads",
                threads,
                "batch",
                s(&file),
                "--jobs",
                "2",
                "--out",
                s(&out),
            ])
            .env("OMP_NUM_THREADS", threads)
            .output()
            .unwrap();
        let what = format!("run {run} ({threads} threads, pinned {pinned})");
        assert!(
            result.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        let sums = output_checksums(&out);
        // Per cube: predictions, summary, class map (+ its .aux.xml), KL map, quicklook.
        assert_eq!(sums.len(), 4 * 6, "{what}: {sums:?}");
        for map in ["kl-map.tif", "class-map.tif"] {
            let copies: Vec<&String> = (0..4)
                .map(|i| &sums[&format!("cubes/copy{i}/{map}")])
                .collect();
            assert!(
                copies.iter().all(|c| *c == copies[0]),
                "{what}: the identical cubes' {map} differ: {copies:?}"
            );
        }
        match &first {
            None => first = Some(sums),
            Some(expected) => assert_eq!(&sums, expected, "{what}: outputs differ from run 0"),
        }
    }
    busy.store(false, Ordering::Relaxed);
    hogs.into_iter().for_each(|h| h.join().unwrap());
    // And the rows themselves, through pyarrow: the copies' plants are the same to the bit.
    let rows = dataset_rows(&dir.path().join("run0"));
    let rows = rows.as_array().unwrap();
    let per_copy = rows.len() / 4;
    for (i, row) in rows.iter().enumerate() {
        let twin = &rows[i % per_copy];
        for column in [
            "kl_nats",
            "entropy_nats",
            "prob_healthy",
            "prob_rust",
            "prob_blight",
        ] {
            assert_eq!(row[column], twin[column], "{column} of row {i}");
        }
    }
}

/// Wait (up to a minute) until the campaign has at least one complete cube.
fn wait_for_first_cube(data: &Path, child: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while manifest_count(data) == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the batch ended before its first cube"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no cube finished in a minute"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// SIGTERM mid-campaign: no new cube starts, the running one finishes within the grace period,
/// the exit status is 75 and the closing lines list what is not done; a rerun completes the
/// campaign. With `--stop-grace 0` the running cube is abandoned: nothing of it in the dataset,
/// no staging left.
#[test]
fn batch_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let file = campaign(dir.path(), 12, "");
    let data = dir.path().join("dataset");
    let clean = dir.path().join("clean");
    ok(&["batch", s(&file), "--out", s(&clean)]);
    for grace in ["20", "0"] {
        if data.exists() {
            std::fs::remove_dir_all(&data).unwrap();
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_pipeline"))
            .args(["batch", s(&file), "--stop-grace", grace])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_first_cube(&data, &mut child);
        let pid = child.id();
        Command::new("kill")
            .args(["-s", "TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let what = format!("grace {grace}:\n{stdout}\n{stderr}");
        assert_eq!(out.status.code(), Some(75), "{what}");
        assert!(stderr.contains("SIGTERM: starting no new cube"), "{what}");
        assert!(stderr.contains("stopped by SIGTERM with"), "{what}");
        assert!(stdout.contains("not done     "), "{what}");
        assert!(!stderr.contains("panicked"), "{what}");
        let complete = manifest_count(&data);
        assert!((1..12).contains(&complete), "{complete} complete: {what}");
        assert!(
            stdout.contains(&format!(
                "{complete} done, 0 up to date, 0 failed, {} not done",
                12 - complete
            )),
            "{what}"
        );
        assert_dataset_complete(&data, &what);
        // Staging of an abandoned cube is removed on exit; a file its worker was still writing
        // may land after that, in the stopped process's own (hidden) folder, which the next run
        // removes.
        let pid = format!(".{pid}");
        let left = staging_left(&data);
        assert!(
            left.iter().all(|p| p.to_string_lossy().ends_with(&pid)),
            "{left:?}: {what}"
        );
        // An abandoned cube left nothing in the dataset.
        for line in stdout.lines().filter(|l| l.starts_with("not done")) {
            for key in line
                .split(", ")
                .filter_map(|k| k.strip_suffix(" (abandoned)"))
            {
                let key = key.trim_start_matches("not done").trim();
                assert!(!data.join("manifests").join(format!("{key}.json")).exists());
                assert!(!data.join("cubes").join(key).exists(), "{what}");
            }
        }
        let resumed = ok(&["batch", s(&file)]);
        assert!(
            resumed.contains(&format!(
                "{} done, {complete} up to date, 0 failed",
                12 - complete
            )),
            "{resumed}"
        );
        assert_eq!(dataset_rows(&data), dataset_rows(&clean));
        assert!(
            staging_left(&data).is_empty(),
            "staging left after the rerun"
        );
    }
}

/// Shards 0/2 and 1/2 into their own folders, merged, equal a single-process run.
#[test]
fn shards_merge_into_the_single_run_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let file = campaign(dir.path(), 5, "");
    let (a, b, merged, single) = (
        dir.path().join("shard0"),
        dir.path().join("shard1"),
        dir.path().join("merged"),
        dir.path().join("single"),
    );
    let out0 = ok(&["batch", s(&file), "--shard", "0/2", "--out", s(&a)]);
    let out1 = ok(&["batch", s(&file), "--shard", "1/2", "--out", s(&b)]);
    assert!(
        out0.contains("3 cube(s)") && out1.contains("2 cube(s)"),
        "{out0}{out1}"
    );
    let merge = ok(&["merge", "--out", s(&merged), s(&a), s(&b)]);
    assert!(merge.contains("5 cube(s) copied"), "{merge}");
    ok(&["batch", s(&file), "--out", s(&single)]);
    assert_eq!(dataset_rows(&merged), dataset_rows(&single));
    // Merging again finds everything present; a shard with other outputs for a cube is refused.
    let again = ok(&["merge", "--out", s(&merged), s(&a)]);
    assert!(
        again.contains("0 cube(s) copied, 3 already present"),
        "{again}"
    );
    let other = dir.path().join("other");
    let file2 = campaign(&dir.path().join("c2"), 1, "");
    std::fs::write(
        &file2,
        std::fs::read_to_string(&file2)
            .unwrap()
            .replace("2026-07-01", "2026-07-02"),
    )
    .unwrap();
    ok(&["batch", s(&file2), "--out", s(&other)]);
    let conflict = pipeline(&["merge", "--out", s(&merged), s(&other)]);
    assert!(!conflict.status.success());
    assert!(String::from_utf8_lossy(&conflict.stderr).contains("plot00"));
}

/// Every example pipeline file in pipelines/ validates and runs on the sample cubes.
#[test]
fn example_pipeline_files_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2);
    for (i, file) in files.iter().enumerate() {
        let check = ok(&["batch", "--check", s(file)]);
        assert!(check.contains("valid;"), "{check}");
        let out = dir.path().join(format!("run{i}"));
        let run = ok(&["batch", s(file), "--out", s(&out), "--jobs", "2"]);
        assert!(run.contains("0 failed"), "{}: {run}", file.display());
        assert!(out.join("predictions").is_dir() && out.join("manifests").is_dir());
    }
}

/// `run --per-pixel` on field-b: per-plant pixel counts, severity and the pixel vote agree with
/// an independent computation in Python; the per-pixel class map's histogram (gdalinfo) equals
/// the table's `pixels_<class>` sums; erosion scores only plant cores; the report shows the
/// lesion map; pixel maps without --per-pixel are refused.
#[test]
fn run_per_pixel_counts_severity_and_maps() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let cube = sample("field-b.hdr");
    let report = p("report");
    let stdout = ok(&[
        "run",
        "--cube",
        s(&cube),
        "--out",
        s(&p("plants.parquet")),
        "--summary",
        s(&p("summary.parquet")),
        "--per-pixel",
        "--pixel-class-map",
        s(&p("pixels.tif")),
        "--pixel-kl-map",
        s(&p("pixel-kl.tif")),
        "--report",
        s(&report),
    ]);
    assert!(stdout.contains("severity     mean"), "{stdout}");
    let check = r#"
import json, sys
import pyarrow.parquet as pq
rows = pq.read_table(sys.argv[1]).to_pylist()
s = pq.read_table(sys.argv[2]).to_pylist()[0]
classes = ("healthy", "rust", "blight")
problems = []
severity = []
for r in rows:
    counts = [r["pixels_" + c] for c in classes]
    if sum(counts) != r["scored_pixels"] or not 0 < r["scored_pixels"] <= r["pixel_count"]:
        problems.append(f"counts of plant {r['plant_id']}")
    sev = 100 * (r["scored_pixels"] - r["pixels_healthy"]) / r["scored_pixels"]
    severity.append(sev)
    if abs(sev - r["severity_pct"]) > 1e-9:
        problems.append(f"severity of plant {r['plant_id']}")
    vote = classes[counts.index(max(counts))]
    if vote != r["pixel_vote_class_name"]:
        problems.append(f"vote of plant {r['plant_id']}")
    if not 0 <= r["ood_pixels_pct"] <= 100 or r["pixel_kl_mean_nats"] <= 0:
        problems.append(f"ood/kl of plant {r['plant_id']}")
if abs(s["severity_mean_pct"] - sum(severity) / len(severity)) > 1e-9:
    problems.append("summary severity mean")
agree = sum(r["pixel_vote_class_name"] == r["predicted_class_name"] for r in rows) / len(rows)
print(json.dumps({"problems": problems, "agree": agree,
                  "sums": {c: sum(r["pixels_" + c] for r in rows) for c in classes},
                  "scored": sum(r["scored_pixels"] for r in rows),
                  "pixels": sum(r["pixel_count"] for r in rows)}))
"#;
    let v = python_json(check, &[s(&p("plants.parquet")), s(&p("summary.parquet"))]);
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    // The bundled model was trained on pixels: its pixel votes agree with the plant calls.
    assert!(v["agree"].as_f64().unwrap() >= 0.9, "{v}");
    assert!(v["scored"].as_u64().unwrap() < v["pixels"].as_u64().unwrap());
    let info = gdalinfo(&p("pixels.tif"), &["-hist"]);
    let band = &info["bands"][0];
    assert_eq!(
        band["categories"],
        serde_json::json!(["Unclassified", "healthy", "rust", "blight"])
    );
    for (code, class) in [(1, "healthy"), (2, "rust"), (3, "blight")] {
        assert_eq!(
            histogram_count(band, code),
            v["sums"][class],
            "{class}: {band}"
        );
    }
    assert_eq!(
        gdalinfo(&p("pixel-kl.tif"), &[])["bands"][0]["type"],
        "Float32"
    );
    for name in [
        "lesion-map.png",
        "severity-histogram.svg",
        "pixel-class-map.tif",
    ] {
        assert!(report.join(name).is_file(), "{name}");
    }
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(html.contains("lesion-map.png") && html.contains("severity (mean"));

    // Without erosion every plant pixel is scored.
    ok(&[
        "run",
        "--cube",
        s(&cube),
        "--out",
        s(&p("all.parquet")),
        "--per-pixel",
        "--pixel-erosion-px",
        "0",
    ]);
    let all = python_json(
        r#"
import json, sys
import pyarrow.parquet as pq
rows = pq.read_table(sys.argv[1]).to_pylist()
print(json.dumps({"same": all(r["scored_pixels"] == r["pixel_count"] for r in rows)}))
"#,
        &[s(&p("all.parquet"))],
    );
    assert_eq!(all["same"], true);

    // Pixel maps need the pixel calls: refused before anything is written.
    let refused = pipeline(&[
        "run",
        "--cube",
        s(&cube),
        "--out",
        s(&p("x.parquet")),
        "--pixel-class-map",
        s(&p("x.tif")),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--per-pixel"));
    assert!(!p("x.parquet").exists() && !p("x.tif").exists());
}

/// Shared libraries a binary names in its dynamic section (`readelf -d`).
fn needed_libraries(binary: &Path) -> Vec<String> {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(binary)
        .output()
        .expect("readelf (binutils) runs");
    assert!(out.status.success(), "readelf -d {}", binary.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next().map(str::to_string))
        .collect()
}

/// `pipeline` never loads libtorch (its start-up alone is ~0.2 s); training hands the whole
/// command over to `pipeline-torch` beside it, and without that binary says so, before writing
/// anything.
#[test]
fn libtorch_only_where_training_needs_it() {
    let plain = Path::new(env!("CARGO_BIN_EXE_pipeline"));
    let libs = needed_libraries(plain);
    assert!(
        !libs
            .iter()
            .any(|l| l.contains("torch") || l.contains("c10")),
        "pipeline links {libs:?}"
    );
    let torch = plain.with_file_name("pipeline-torch");
    assert!(
        torch.is_file(),
        "pipeline-torch is not built beside pipeline: run `cargo test --workspace`"
    );
    let libs = needed_libraries(&torch);
    assert!(
        libs.iter().any(|l| l.starts_with("libtorch_cpu")),
        "{libs:?}"
    );
    // A copy of `pipeline` alone in a folder (a hard link: the same file, another name).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let alone = dir.path().join("pipeline");
    std::fs::hard_link(plain, &alone).unwrap();
    let out_model = dir.path().join("m.safetensors");
    let cube = sample("field-a.hdr");
    let out = Command::new(&alone)
        .args([
            "train",
            "--cube",
            s(&cube),
            "--labels",
            s(&sample("field-a-labels.hdr")),
            "--out",
            s(&out_model),
            "--no-tune",
        ])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("training needs libtorch") && stderr.contains("pipeline-torch"),
        "{stderr}"
    );
    assert!(!out_model.exists());
    // Prediction on the CPU needs nothing else.
    let table = dir.path().join("plants.parquet");
    let out = Command::new(&alone)
        .args([
            "run",
            "--cube",
            s(&cube),
            "--out",
            s(&table),
            "--device",
            "cpu",
        ])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.is_file());
}
