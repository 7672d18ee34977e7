//! Report crate integration tests: files written here are read back by an independent reader
//! (pyarrow, from the project's .venv).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;

use domain::{
    AttributeType, AttributeValue, BoundingBox, ClassInfo, ClassSet, Plant, Prediction,
    PredictionTable,
};

fn python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup",
        python.display()
    );
    python
}

fn table() -> PredictionTable {
    let classes = ClassSet::new(vec![
        ClassInfo {
            code: 1,
            name: "healthy".into(),
        },
        ClassInfo {
            code: 10,
            name: "rust".into(),
        },
    ])
    .unwrap();
    let plants = (1..=3)
        .map(|i| Plant {
            plant_id: i,
            pixel_count: 10 * i as u64,
            centroid_row: 1.5 * i as f64,
            centroid_col: 2.25 * i as f64,
            centroid_x: Some(500_000.0 + i as f64),
            centroid_y: None,
            bbox: BoundingBox {
                row_min: i,
                row_max: i + 3,
                col_min: 2 * i,
                col_max: 2 * i + 4,
            },
            mean_reflectance: vec![0.1, 0.2],
            std_reflectance: vec![0.01, 0.02],
            mean_ndvi: Some(0.5 + 0.1 * i as f64),
            label_code: None,
            attributes: vec![
                AttributeValue::Text(format!("plot-{i}")),
                if i == 2 {
                    AttributeValue::Null
                } else {
                    AttributeValue::Integer(i as i64 * 7)
                },
            ],
        })
        .collect();
    let predictions = vec![
        Prediction::from_probabilities(vec![0.9, 0.1], 3.5),
        Prediction::from_probabilities(vec![0.25, 0.75], 4.0),
        Prediction::from_probabilities(vec![0.5, 0.5], 10.25),
    ];
    PredictionTable {
        field_id: "north-plot".into(),
        cube: "scans/north.hdr".into(),
        scan_date: Some("2026-06-14".into()),
        crs_wkt: Some("PROJCS[\"WGS 84 / UTM zone 32N\"]".into()),
        epsg: Some(32632),
        model_id: "abc123".into(),
        beta: 1e-3,
        classes,
        plants,
        attributes: vec![
            ("plot".into(), AttributeType::Text),
            ("genotype_id".into(), AttributeType::Integer),
        ],
        predictions,
        pixels: None,
        values: None,
    }
}

#[test]
fn parquet_reads_back_in_pyarrow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("predictions.parquet");
    report::write_predictions(&path, &table(), &[("pipeline.cube".into(), "x.hdr".into())])
        .unwrap();
    assert!(!dir.path().join("predictions.parquet.tmp").exists());
    let script = r#"
import json, sys, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
meta = {k.decode(): v.decode() for k, v in (pq.read_metadata(sys.argv[1]).metadata or {}).items() if k.decode().startswith("pipeline.")}
print(json.dumps({"columns": t.column_names, "rows": t.to_pylist(), "meta": meta,
                  "types": {f.name: str(f.type) for f in t.schema}}))
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let columns: Vec<&str> = v["columns"]
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
        "entropy_nats",
        "kl_nats",
        "model_id",
        "beta",
    ] {
        assert!(
            columns.contains(&required),
            "missing {required}: {columns:?}"
        );
    }
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["predicted_label"], 10);
    assert_eq!(rows[1]["predicted_class_name"], "rust");
    assert_eq!(rows[0]["field_id"], "north-plot");
    assert_eq!(rows[2]["kl_nats"], 10.25);
    assert_eq!(rows[1]["pixel_count"], 20);
    assert!(
        (rows[1]["entropy_nats"].as_f64().unwrap()
            - (-(0.25f64.ln() * 0.25 + 0.75f64.ln() * 0.75)))
            .abs()
            < 1e-6
    );
    assert_eq!(rows[0]["x"], 500_001.0);
    assert!(rows[0]["y"].is_null());
    assert!((rows[2]["mean_ndvi"].as_f64().unwrap() - 0.8).abs() < 1e-12);
    assert_eq!(rows[2]["plot"], "plot-3");
    assert_eq!(rows[2]["genotype_id"], 21);
    assert!(rows[1]["genotype_id"].is_null());
    assert_eq!(v["types"]["genotype_id"], "int64");
    assert_eq!(v["types"]["plot"], "string_view");
    assert_eq!(v["types"]["pixel_count"], "uint64");
    assert_eq!(rows[0]["scan_date"], "2026-06-14");
    assert_eq!(rows[0]["cube"], "scans/north.hdr");
    // Second-best class and margin: [0.9, 0.1] -> rust, 0.8; [0.5, 0.5] -> margin 0.
    assert_eq!(rows[0]["second_class_name"], "rust");
    assert!((rows[0]["margin"].as_f64().unwrap() - 0.8).abs() < 1e-6);
    assert_eq!(rows[1]["second_class_name"], "healthy");
    assert_eq!(rows[2]["margin"].as_f64().unwrap(), 0.0);
    assert!((rows[2]["kl_bits"].as_f64().unwrap() - 10.25 / std::f64::consts::LN_2).abs() < 1e-9);
    assert_eq!(rows[0]["ood"], false);
    assert_eq!(v["meta"]["pipeline.crs_epsg"], "32632");
    assert!(v["meta"]["pipeline.crs_wkt"]
        .as_str()
        .unwrap()
        .contains("UTM zone 32N"));
    assert_eq!(v["types"]["prob_rust"], "float");
    assert_eq!(v["meta"]["pipeline.schema_version"], "3");
    assert_eq!(v["meta"]["pipeline.cube"], "x.hdr");
}

#[test]
fn mismatched_table_is_an_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.parquet");
    let mut t = table();
    t.predictions.pop();
    let err = report::write_predictions(&path, &t, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 predictions for 3 plants"), "{err}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

/// A regression model's per-plant predictions become predicted_<target> columns.
#[test]
fn severity_predictions_become_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("predictions.parquet");
    let mut t = table();
    let value = |mean: f64| domain::ValuePrediction {
        mean,
        sd: 0.1,
        lower: mean - 0.1645,
        upper: mean + 0.1645,
        entropy_nats: -0.88,
        kl_nats: 2.5,
        ood: mean > 0.5,
    };
    t.values = Some(("severity".into(), vec![value(0.1), value(0.4), value(0.7)]));
    report::write_predictions(&path, &t, &[]).unwrap();
    let script = r#"
import json, sys, pyarrow.parquet as pq
print(json.dumps(pq.read_table(sys.argv[1]).to_pylist()))
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[1]["predicted_severity"], 0.4);
    assert_eq!(rows[1]["predicted_severity_sd"], 0.1);
    assert!((rows[2]["predicted_severity_upper"].as_f64().unwrap() - 0.8645).abs() < 1e-12);
    assert!((rows[0]["predicted_severity_lower"].as_f64().unwrap() + 0.0645).abs() < 1e-12);
    assert_eq!(rows[0]["predicted_severity_kl_nats"], 2.5);
    assert_eq!(rows[2]["predicted_severity_ood"], true);
    assert_eq!(rows[0]["predicted_severity_ood"], false);
    // The wrong count is an error that names the target and leaves nothing.
    t.values.as_mut().unwrap().1.pop();
    let other = dir.path().join("other.parquet");
    let err = report::write_predictions(&other, &t, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 severity predictions, 3 plants"), "{err}");
    assert!(!other.exists());
}
