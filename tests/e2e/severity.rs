//! Severity as a trained target: the Gaussian head from severity rasters and from spectral tables,
//! `evaluate`'s regression metrics checked by an independent computation, `run --severity-model`,
//! and bad severity input.

use super::*;

/// A per-pixel severity raster of a lesion field (ENVI float32): 1 on lesion pixels, 0 on healthy
/// tissue, NaN off the plants, from its per-pixel truth (codes 0 soil, 1 healthy, 2-3 lesions).
fn severity_raster(field: &str, out: &Path) {
    let truth = std::fs::read(sample(&format!("{field}-pixel-truth.img"))).unwrap();
    let mut bytes = Vec::with_capacity(truth.len() * 4);
    for &code in &truth {
        let v = match code {
            0 => f32::NAN,
            1 => 0.0,
            _ => 1.0,
        };
        bytes.extend(v.to_le_bytes());
    }
    std::fs::write(out.with_extension("img"), bytes).unwrap();
    std::fs::write(
        out.with_extension("hdr"),
        "ENVI\nsamples = 140\nlines = 140\nbands = 1\nheader offset = 0\nfile type = ENVI Standard\n\
         data type = 4\ninterleave = bsq\nbyte order = 0\n",
    )
    .unwrap();
}

/// Per plant id, the truth table's severity as a fraction.
fn truth_severity(field: &str) -> std::collections::HashMap<u64, f64> {
    let text = std::fs::read_to_string(sample(&format!("{field}-truth.csv"))).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            (
                cells[0].parse().unwrap(),
                cells[2].parse::<f64>().unwrap() / 100.0,
            )
        })
        .collect()
}

/// Train the Gaussian head on lesions-a's plants (mean spectrum, mean pixel severity from a
/// severity raster), then `run --severity-model` on lesions-b with its plant ids: every plant
/// gets a predicted severity and interval that track the generator's truth; the classifier's
/// columns are unchanged by it.
#[test]
fn severity_model_from_a_raster_predicts_the_other_field() {
    let dir = tempfile::tempdir().unwrap();
    let raster = dir.path().join("lesions-a-severity.hdr");
    severity_raster("lesions-a", &raster);
    let model = dir.path().join("severity.safetensors");
    let stdout = ok(&[
        "train",
        "--cube",
        s(&sample("lesions-a.hdr")),
        "--severity",
        s(&raster),
        "--unit",
        "plant",
        "--no-tune",
        "--snv",
        "--input-noise",
        "0.2",
        "--beta",
        "1e-2",
        "--ensemble",
        "1",
        "--out",
        s(&model),
    ]);
    assert!(
        stdout.contains("target           severity (regression"),
        "{stdout}"
    );
    assert!(stdout.contains("calibration      variance x"), "{stdout}");

    let plain = dir.path().join("plain.parquet");
    let with = dir.path().join("with.parquet");
    let (cube, ids) = (sample("lesions-b.hdr"), sample("lesions-b-plant-ids.tif"));
    let base = ["run", "--cube", s(&cube), "--plant-ids", s(&ids)];
    ok(&[&base[..], &["--out", s(&plain)]].concat());
    let stdout = ok(&[
        &base[..],
        &["--out", s(&with), "--severity-model", s(&model)],
    ]
    .concat());
    assert!(
        stdout.contains("severity     predicted per plant"),
        "{stdout}"
    );
    let (plain, with) = (read_parquet(&plain), read_parquet(&with));
    let truth = truth_severity("lesions-b");
    let rows = with["rows"].as_array().unwrap();
    assert_eq!(rows.len(), truth.len());
    let mut errors = Vec::new();
    for (row, plain_row) in rows.iter().zip(plain["rows"].as_array().unwrap()) {
        assert_eq!(
            row["predicted_class_name"],
            plain_row["predicted_class_name"]
        );
        assert_eq!(row["kl_nats"], plain_row["kl_nats"]);
        let mean = row["predicted_severity"].as_f64().unwrap();
        let (lower, upper) = (
            row["predicted_severity_lower"].as_f64().unwrap(),
            row["predicted_severity_upper"].as_f64().unwrap(),
        );
        let sd = row["predicted_severity_sd"].as_f64().unwrap();
        assert!(lower < mean && mean < upper && sd > 0.0, "{row}");
        // A 90% interval of a Gaussian: mean +- 1.645 sd.
        assert!((upper - mean - 1.644_853_6 * sd).abs() < 1e-6, "{row}");
        let t = truth[&row["plant_id"].as_u64().unwrap()];
        errors.push((mean - t).abs());
    }
    // Plant means mix lesion and healthy spectra in proportion to severity: a model trained on
    // 49 plants of the other field tracks it (MAE 0.079 when written), where predicting the
    // training mean for every plant has an MAE of 0.208.
    let mae = errors.iter().sum::<f64>() / errors.len() as f64;
    assert!(mae < 0.12, "MAE {mae}");
    assert!(with["columns"]
        .as_array()
        .unwrap()
        .contains(&"predicted_severity_ood".into()));

    // The sweep of a regression model: rate and relevance per beta from the Gaussian likelihood.
    let sweep = dir.path().join("sweep");
    let stdout = ok(&[
        "sweep",
        "--cube",
        s(&sample("lesions-a.hdr")),
        "--severity",
        s(&raster),
        "--unit",
        "plant",
        "--no-tune",
        "--snv",
        "--ensemble",
        "1",
        "--betas",
        "1e-4,1",
        "--out",
        s(&sweep),
    ]);
    assert!(stdout.contains("val RMSE"), "{stdout}");
    let table = read_parquet(&sweep.join("sweep.parquet"));
    let rows = table["rows"].as_array().unwrap();
    let (small, large) = (&rows[0], &rows[1]);
    // h(Y) of the Gaussian stand-in: 0.5 ln(2 pi e sd^2) of the training targets.
    let h = small["label_entropy_nats"].as_f64().unwrap();
    assert_eq!(h, large["label_entropy_nats"].as_f64().unwrap());
    for row in rows {
        let bound = row["izy_lower_bound_nats"].as_f64().unwrap();
        assert!((bound - (h - row["cross_entropy_nats"].as_f64().unwrap())).abs() < 1e-12);
        assert!(row["validation_rmse"].as_f64().unwrap() > 0.0, "{row}");
    }
    // beta 1 squeezes the bottleneck: less rate, less relevance than beta 1e-4.
    assert!(large["rate_nats"].as_f64().unwrap() < small["rate_nats"].as_f64().unwrap());
    assert!(
        large["izy_lower_bound_nats"].as_f64().unwrap()
            < small["izy_lower_bound_nats"].as_f64().unwrap()
    );
}

/// From a spectral table: `train --target-column`, `evaluate` with per-row predictions whose
/// RMSE, MAE, R^2, Spearman's rho and coverage an independent Python computation reproduces.
#[test]
fn severity_from_a_table_with_metrics_checked_independently() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("library.csv");
    library_table(&table);
    let model = dir.path().join("severity.safetensors");
    ok(&[
        "train",
        "--spectra",
        s(&table),
        "--target-column",
        "severity",
        "--group-column",
        "id",
        "--no-tune",
        "--epochs",
        "60",
        "--ensemble",
        "1",
        "--band-range-nm",
        "400,2400",
        "--out",
        s(&model),
    ]);
    let (metrics, predictions) = (dir.path().join("m.json"), dir.path().join("p.parquet"));
    let stdout = ok(&[
        "evaluate",
        "--spectra",
        s(&table),
        "--target-column",
        "severity",
        "--model",
        s(&model),
        "--metrics",
        s(&metrics),
        "--predictions",
        s(&predictions),
    ]);
    assert!(stdout.contains("Spearman rho"), "{stdout}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    assert_eq!(m["samples"], 1200);
    assert_eq!(m["target"], "severity");
    assert!(m["r_squared"].as_f64().unwrap() > 0.6, "{m}");
    let check = python_json(
        r#"
import json, math, sys, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1]).to_pydict()
y, p = t["target"], t["predicted_mean"]
n = len(y)
mean_y = sum(y) / n
sse = sum((a - b) ** 2 for a, b in zip(y, p))
def ranks(v):
    order = sorted(range(len(v)), key=lambda i: v[i])
    r = [0.0] * len(v)
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and v[order[j]] == v[order[i]]:
            j += 1
        for k in order[i:j]:
            r[k] = (i + 1 + j) / 2
        i = j
    return r
def pearson(a, b):
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    sab = sum((x - ma) * (z - mb) for x, z in zip(a, b))
    return sab / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((z - mb) ** 2 for z in b))
print(json.dumps({
    "rmse": math.sqrt(sse / n),
    "mae": sum(abs(a - b) for a, b in zip(y, p)) / n,
    "r_squared": 1 - sse / sum((a - mean_y) ** 2 for a in y),
    "spearman_rho": pearson(ranks(y), ranks(p)),
    "coverage": sum(lo <= a <= hi for a, lo, hi in zip(y, t["interval_lower"], t["interval_upper"])) / n,
    "rows": n,
}))
"#,
        &[s(&predictions)],
    );
    assert_eq!(check["rows"], 1200);
    for key in ["rmse", "mae", "r_squared", "spearman_rho", "coverage"] {
        let (ours, theirs) = (m[key].as_f64().unwrap(), check[key].as_f64().unwrap());
        assert!((ours - theirs).abs() < 1e-9, "{key}: {ours} vs {theirs}");
    }
    // A classifier's evaluation does not take a target column, nor a regression model labels.
    let out = pipeline(&[
        "evaluate",
        "--spectra",
        s(&table),
        "--label-column",
        "label",
        "--model",
        s(&model),
        "--metrics",
        s(&dir.path().join("x.json")),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("predicts a continuous target"));
    let out = pipeline(&[
        "run",
        "--cube",
        s(&sample("lesions-b.hdr")),
        "--model",
        s(&model),
        "--out",
        s(&dir.path().join("x.parquet")),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--severity-model"));
    assert!(!dir.path().join("x.parquet").exists());
}

/// Text, NaN or an empty cell in the target column, and a severity above 1 in a raster: one line
/// naming the file, the column (or pixel) and the row, and no model written.
#[test]
fn bad_severity_input_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let header = "id,severity,500,510,520\n";
    for (cell, says) in [
        ("mild", "'mild' is not a number"),
        ("NaN", "'NaN' is not a finite number"),
        ("inf", "'inf' is not a finite number"),
    ] {
        let table = dir.path().join("bad.csv");
        std::fs::write(
            &table,
            format!("{header}1,0.2,0.1,0.2,0.3\n2,{cell},0.1,0.2,0.3\n3,0.5,0.2,0.2,0.3\n"),
        )
        .unwrap();
        let model = dir.path().join("bad.safetensors");
        let out = pipeline(&[
            "train",
            "--spectra",
            s(&table),
            "--target-column",
            "severity",
            "--out",
            s(&model),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert_eq!(
            stderr.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{stderr}"
        );
        for part in [s(&table), "row 2", "column 'severity'", says] {
            assert!(stderr.contains(part), "{part}: {stderr}");
        }
        assert!(!model.exists());
    }
    // A missing target column names the file and the column.
    let out = pipeline(&[
        "train",
        "--spectra",
        s(&dir.path().join("bad.csv")),
        "--target-column",
        "score",
        "--out",
        s(&dir.path().join("bad.safetensors")),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no column 'score'"));
    // A severity raster with a value above 1.
    let raster = dir.path().join("sev.hdr");
    severity_raster("lesions-a", &raster);
    let mut bytes = std::fs::read(raster.with_extension("img")).unwrap();
    let pixel = 37 * 140 + 21;
    bytes[4 * pixel..4 * pixel + 4].copy_from_slice(&1.5f32.to_le_bytes());
    std::fs::write(raster.with_extension("img"), bytes).unwrap();
    let out = pipeline(&[
        "train",
        "--cube",
        s(&sample("lesions-a.hdr")),
        "--severity",
        s(&raster),
        "--no-tune",
        "--out",
        s(&dir.path().join("bad.safetensors")),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("sev.img")
            && stderr.contains("line 37, sample 21")
            && stderr.contains("severity 1.5"),
        "{stderr}"
    );
    assert!(!dir.path().join("bad.safetensors").exists());
}
