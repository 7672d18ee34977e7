//! `pipeline progress` on hand-made batch datasets (written by pyarrow, independent of our
//! writer): incidence per plot and date, AUDPC over uneven intervals, treatments compared with
//! scipy's Welch test, plants tracked by id and by centroid, and the campaigns that cannot give a
//! curve.

use super::*;

/// Write a dataset of `predictions/field_id=<f>/date=<d>/part-0.parquet` files. Three plots per
/// treatment, five plants each, on three uneven dates; plant k of a plot is diseased on date j
/// when k < sick[plot][j]. `MIXED` changes the model id of the last date; `ONE_DATE` keeps only
/// the first date; `RENUMBER` gives every plant another id on each date (segmented plants) with
/// its centroid moved by at most 2 cm.
const DATASET: &str = r#"
import os, sys, pyarrow as pa, pyarrow.parquet as pq
out, flags = sys.argv[1], sys.argv[2:]
dates = ["2026-06-01", "2026-06-04", "2026-06-15"]
if "ONE_DATE" in flags:
    dates = dates[:1]
sick = {"c1": [0, 2, 4], "c2": [1, 2, 5], "c3": [0, 3, 4], "t1": [0, 0, 1], "t2": [0, 1, 2], "t3": [0, 1, 1]}
for j, date in enumerate(dates):
    rows = {k: [] for k in ["plant_id", "x", "y", "predicted_class_name", "kl_nats", "ood", "model_id", "plot", "treatment", "severity_pct"]}
    for p, (plot, counts) in enumerate(sick.items()):
        for k in range(5):
            base = 10 * p + k + 1
            rows["plant_id"].append(base + (100 * (j + 1) if "RENUMBER" in flags else 0))
            shift = 0.02 * ((j + k) % 2) if "RENUMBER" in flags else 0.0
            rows["x"].append(500000.0 + 0.5 * base + shift)
            rows["y"].append(5350000.0 + 0.25 * p)
            diseased = k < counts[j]
            rows["predicted_class_name"].append("rust" if diseased else "healthy")
            rows["kl_nats"].append(2.0 + 0.1 * k + j)
            rows["ood"].append(k == 4 and j == 2)
            rows["model_id"].append("m2" if ("MIXED" in flags and j == 2) else "m1")
            rows["plot"].append(plot)
            rows["treatment"].append("control" if plot.startswith("c") else "fungicide")
            rows["severity_pct"].append(30.0 * counts[j] / 5 + k)
    folder = os.path.join(out, "predictions", "field_id=north", f"date={date}")
    os.makedirs(folder, exist_ok=True)
    pq.write_table(pa.table(rows), os.path.join(folder, "part-0.parquet"))
print("{}")
"#;

fn dataset(dir: &Path, flags: &[&str]) -> PathBuf {
    let path = dir.join(format!("dataset{}", flags.join("-")));
    let mut args = vec![s(&path)];
    args.extend(flags);
    python_json(DATASET, &args);
    path
}

/// Expected numbers by an independent computation: incidence and trapezoid AUDPC in Python,
/// Welch's test and the t interval by scipy.
const EXPECTED: &str = r#"
import json, sys
from scipy import stats
days = [0, 3, 14]
sick = {"c1": [0, 2, 4], "c2": [1, 2, 5], "c3": [0, 3, 4], "t1": [0, 0, 1], "t2": [0, 1, 2], "t3": [0, 1, 1]}
audpc = {}
for plot, counts in sick.items():
    inc = [100 * c / 5 for c in counts]
    audpc[plot] = sum((inc[i] + inc[i + 1]) / 2 * (days[i + 1] - days[i]) for i in range(2))
control = [audpc[p] for p in ["c1", "c2", "c3"]]
treated = [audpc[p] for p in ["t1", "t2", "t3"]]
welch = stats.ttest_ind(treated, control, equal_var=False)
mean = sum(treated) / 3
sem = stats.sem(treated)
half = stats.t.ppf(0.975, 2) * sem
df = welch.df if hasattr(welch, "df") else None
print(json.dumps({"audpc": audpc, "t": float(welch.statistic), "p": float(welch.pvalue), "df": float(df),
                  "ci": [mean - half, mean + half]}))
"#;

#[test]
fn progress_curves_audpc_and_treatments_match_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), &[]);
    let out = dir.path().join("progress");
    let stdout = ok(&[
        "progress",
        s(&data),
        "--out",
        s(&out),
        "--plot-column",
        "plot",
        "--treatment-column",
        "treatment",
        "--control",
        "control",
    ]);
    assert!(
        stdout.contains("1 field(s), 6 plot(s), 3 date(s), 30 plant track(s)"),
        "{stdout}"
    );
    let expected = python_json(EXPECTED, &[]);

    let progress = read_parquet(&out.join("progress.parquet"));
    let rows = progress["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 18);
    // c1 on its three dates: 0, 2 and 4 of 5 plants.
    let c1: Vec<f64> = rows[..3]
        .iter()
        .map(|r| r["incidence_pct"].as_f64().unwrap())
        .collect();
    assert_eq!(c1, vec![0.0, 40.0, 80.0]);
    assert_eq!(rows[2]["days_since_first"], 14);
    assert_eq!(rows[2]["ood_plants"], 1);
    assert_eq!(rows[0]["treatment"], "control");
    // Severity mean: 30 * count / 5 + mean(k) = 6 * count + 2.
    assert!((rows[1]["severity_mean_pct"].as_f64().unwrap() - 14.0).abs() < 1e-12);

    let audpc = read_parquet(&out.join("audpc.parquet"));
    for row in audpc["rows"].as_array().unwrap() {
        let plot = row["plot_id"].as_str().unwrap();
        let want = expected["audpc"][plot].as_f64().unwrap();
        assert!(
            (row["audpc_incidence"].as_f64().unwrap() - want).abs() < 1e-9,
            "{row}"
        );
        assert!((row["relative_audpc_incidence"].as_f64().unwrap() - want / 1400.0).abs() < 1e-12);
        assert_eq!(row["duration_days"], 14);
        assert!(row["audpc_severity"].as_f64().is_some());
    }

    let treatments = read_parquet(&out.join("treatments.parquet"));
    let rows = treatments["rows"].as_array().unwrap();
    assert_eq!(rows[0]["treatment"], "control");
    assert!(rows[0]["audpc_incidence_p_value"].is_null());
    let treated = &rows[1];
    assert_eq!(treated["treatment"], "fungicide");
    assert_eq!(treated["plots"], 3);
    for (ours, theirs) in [
        ("audpc_incidence_welch_t", "t"),
        ("audpc_incidence_welch_df", "df"),
        ("audpc_incidence_p_value", "p"),
    ] {
        let (a, b) = (
            treated[ours].as_f64().unwrap(),
            expected[theirs].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() < 1e-8 * b.abs().max(1.0),
            "{ours}: {a} vs scipy {b}"
        );
    }
    let ci = expected["ci"].as_array().unwrap();
    assert!(
        (treated["audpc_incidence_ci95_low"].as_f64().unwrap() - ci[0].as_f64().unwrap()).abs()
            < 1e-7
    );
    assert!(
        (treated["audpc_incidence_ci95_high"].as_f64().unwrap() - ci[1].as_f64().unwrap()).abs()
            < 1e-7
    );

    // Tracks by id: the first symptom date of plant 1 of c2 (diseased from the first date) and
    // of plant 3 of c1 (from the third date).
    let plants = read_parquet(&out.join("plants.parquet"));
    let track = |id: u64| {
        plants["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["track_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(track(11)["first_symptom_date"], "2026-06-01");
    assert_eq!(track(3)["first_symptom_date"], "2026-06-15");
    assert!(track(5)["first_symptom_date"].is_null());
    assert_eq!(track(5)["dates_seen"], 3);
}

/// Segmented plants get new ids on every date: matched by centroid within 5 cm they make the same
/// 30 tracks and first symptom dates as ids do; within 1 mm most are unmatched and reported.
#[test]
fn segmented_plants_are_tracked_by_centroid() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), &["RENUMBER"]);
    let out = dir.path().join("tracked");
    ok(&[
        "progress",
        s(&data),
        "--out",
        s(&out),
        "--match-radius-m",
        "0.05",
    ]);
    let plants = read_parquet(&out.join("plants.parquet"));
    let rows = plants["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 30);
    assert!(rows.iter().all(|r| r["dates_seen"] == 3));
    let symptomatic_first_day = rows
        .iter()
        .filter(|r| r["first_symptom_date"] == "2026-06-01")
        .count();
    assert_eq!(
        symptomatic_first_day, 1,
        "only c2's first plant is sick on day 1"
    );
    let matches = read_parquet(&out.join("matches.parquet"));
    let last = &matches["rows"].as_array().unwrap()[2];
    assert_eq!(
        (last["matched"].as_u64(), last["missing"].as_u64()),
        (Some(30), Some(0))
    );
    let tight = dir.path().join("tight");
    ok(&[
        "progress",
        s(&data),
        "--out",
        s(&tight),
        "--match-radius-m",
        "0.001",
    ]);
    let matches = read_parquet(&tight.join("matches.parquet"));
    let second = &matches["rows"].as_array().unwrap()[1];
    assert!(second["new"].as_u64().unwrap() > 0 && second["missing"].as_u64().unwrap() > 0);
}

/// One date, mixed models, a missing plot column, an unknown control, a plot with two treatments
/// (no --plot-column: the field is one plot), not a dataset: one line
/// that says why, and no output folder.
#[test]
fn campaigns_without_a_curve_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(PathBuf, Vec<&str>, &str)> = vec![
        (
            dataset(dir.path(), &["ONE_DATE"]),
            vec![],
            "one date (2026-06-01)",
        ),
        (
            dataset(dir.path(), &["MIXED"]),
            vec![],
            "different models (m1 from 2026-06-01, m2 from 2026-06-15)",
        ),
        (
            dataset(dir.path(), &[]),
            vec!["--plot-column", "block"],
            "no column 'block'",
        ),
        (
            dataset(dir.path(), &[]),
            vec![
                "--plot-column",
                "plot",
                "--treatment-column",
                "treatment",
                "--control",
                "untreated",
            ],
            "--control 'untreated' is not a treatment",
        ),
        (
            dataset(dir.path(), &[]),
            vec!["--treatment-column", "treatment"],
            "plot 'north' has two treatments (control and fungicide)",
        ),
        (dir.path().join("nothing"), vec![], "no predictions/ folder"),
    ];
    for (data, extra, says) in cases {
        let out = dir.path().join("out");
        let mut args = vec!["progress", s(&data), "--out", s(&out)];
        args.extend(extra);
        let result = pipeline(&args);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success(), "{args:?}");
        assert!(stderr.contains(says), "{says}: {stderr}");
        assert_eq!(
            stderr.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{stderr}"
        );
        assert!(!out.exists());
    }
}

/// The example campaign end to end: `synth` regenerates sample_cubes/campaign/ byte for byte,
/// `batch` runs pipelines/campaign-example.toml, `progress` recovers the true incidence per date
/// within 5 points and ranks the treatments by AUDPC as the generator's ground truth does.
#[test]
fn example_campaign_matches_the_generators_truth() {
    let dir = tempfile::tempdir().unwrap();
    ok(&[
        "synth",
        "--library",
        s(&root().join("crates/synth/library")),
        "--out-dir",
        s(dir.path()),
        "--field",
        "campaign",
    ]);
    let mut compared = 0;
    for entry in std::fs::read_dir(dir.path().join("campaign")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let committed = std::fs::read(sample("campaign").join(&name))
            .unwrap_or_else(|_| panic!("{name} is not in sample_cubes/campaign/"));
        assert!(std::fs::read(&path).unwrap() == committed, "{name} differs");
        compared += 1;
    }
    assert_eq!(
        compared,
        5 * 2 + 3,
        "5 cubes with headers, polygons, two truth tables"
    );

    let out = dir.path().join("dataset");
    let file = root().join("pipelines/campaign-example.toml");
    let run = ok(&["batch", s(&file), "--out", s(&out), "--jobs", "2"]);
    assert!(run.contains("5 done") && run.contains("0 failed"), "{run}");
    // Its [progress] section: the same tables and report as `pipeline progress` below.
    assert!(run.contains("treatments   AUDPC of incidence"), "{run}");
    assert!(out.join("progress-report/index.html").is_file());
    let from_batch = std::fs::read(out.join("progress/audpc.parquet")).unwrap();
    // A second batch into the same dataset with a cube that cannot be read: it is recorded in
    // failures/ and listed by the campaign report.
    let broken = dir.path().join("broken.hdr");
    std::fs::write(&broken, "ENVI\nsamples = 3\n").unwrap();
    let extra = dir.path().join("extra.toml");
    std::fs::write(
        &extra,
        format!(
            "[outputs]\ndir = \"{}\"\n\n[[inputs]]\ncube = \"{}\"\nfield-id = \"broken\"\ndate = \"2026-06-02\"\n",
            s(&out),
            s(&broken)
        ),
    )
    .unwrap();
    assert!(!pipeline(&["batch", s(&extra)]).status.success());
    assert!(out.join("failures/broken.json").is_file());
    let progress = dir.path().join("progress");
    let report = dir.path().join("report");
    ok(&[
        "progress",
        s(&out),
        "--plot-column",
        "plot",
        "--treatment-column",
        "treatment",
        "--control",
        "control",
        "--out",
        s(&progress),
        "--report",
        s(&report),
    ]);
    let audpc_of = |path: &Path| read_parquet(path)["rows"].clone();
    let batch_copy = dir.path().join("batch-audpc.parquet");
    std::fs::write(&batch_copy, from_batch).unwrap();
    assert_eq!(
        audpc_of(&batch_copy),
        audpc_of(&progress.join("audpc.parquet"))
    );
    // The report: its figures, every scan linked to its own field report, the failed cube.
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    for figure in ["incidence.svg", "incidence.png"] {
        assert!(report.join(figure).is_file(), "{figure}");
    }
    let links: Vec<&str> = html
        .split("href=\"")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .collect();
    assert_eq!(links.len(), 5, "{html}");
    for link in links {
        assert!(report.join(link).is_file(), "{link} does not resolve");
    }
    assert!(
        html.contains("broken.hdr") && html.contains("Cubes that failed"),
        "{html}"
    );
    assert!(html.contains("Welch"));
    assert_opens_in_chromium(&report.join("index.html"));
    let check = python_json(
        r#"
import csv, json, sys
from collections import defaultdict
import pyarrow.parquet as pq
rows = pq.read_table(sys.argv[1] + "/progress.parquet").to_pylist()
truth = list(csv.DictReader(open(sys.argv[2])))
def by_date(items, diseased, plants):
    d = defaultdict(lambda: [0, 0])
    for r in items:
        d[r["date"]][0] += int(r[diseased]); d[r["date"]][1] += int(r[plants])
    return {k: 100 * a / b for k, (a, b) in d.items()}
estimated, true = by_date(rows, "diseased_plants", "plants"), by_date(truth, "diseased", "plants")
days = {r["date"]: int(r["days"]) for r in truth}
def audpc(points):
    points = sorted(points)
    return sum((points[i][1] + points[i + 1][1]) / 2 * (points[i + 1][0] - points[i][0]) for i in range(len(points) - 1))
per_plot = defaultdict(list)
treatment = {}
for r in truth:
    per_plot[r["plot"]].append((int(r["days"]), float(r["incidence_pct"])))
    treatment[r["plot"]] = r["treatment"]
true_audpc = defaultdict(list)
for plot, points in per_plot.items():
    true_audpc[treatment[plot]].append(audpc(points))
treatments = {r["treatment"]: r for r in pq.read_table(sys.argv[1] + "/treatments.parquet").to_pylist()}
print(json.dumps({
    "worst_date_error": max(abs(estimated[d] - true[d]) for d in true),
    "dates": len(estimated),
    "true_mean": {t: sum(v) / len(v) for t, v in true_audpc.items()},
    "estimated_mean": {t: r["audpc_incidence_mean"] for t, r in treatments.items()},
    "p_value": treatments["fungicide"]["audpc_incidence_p_value"],
}))
"#,
        &[
            s(&progress),
            s(&sample("campaign").join("truth-incidence.csv")),
        ],
    );
    assert_eq!(check["dates"], 5);
    assert!(
        check["worst_date_error"].as_f64().unwrap() <= 5.0,
        "{check}"
    );
    let (true_mean, estimated) = (&check["true_mean"], &check["estimated_mean"]);
    let lower =
        |m: &serde_json::Value| m["fungicide"].as_f64().unwrap() < m["control"].as_f64().unwrap();
    assert!(lower(true_mean) && lower(estimated), "{check}");
    assert!(check["p_value"].as_f64().unwrap() < 0.05, "{check}");
}

/// Headless Chromium (Debian's package; `scripts/test` installs it) loads the page from its folder
/// and gives back its DOM: the title, the figures and the tables are there.
fn assert_opens_in_chromium(page: &Path) {
    let browser = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("headless Chromium is needed to open the report: apt-get install chromium (scripts/test does)");
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", s(profile.path())),
            "--dump-dom",
            &format!("file://{}", s(page)),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    for part in [
        "<title>Campaign report</title>",
        "<img src=\"incidence.svg\"",
        "<h2>Treatments</h2>",
    ] {
        assert!(dom.contains(part), "{part} missing from the rendered page");
    }
}
