//! `pipeline progress`: a campaign's disease progress curves, AUDPC, treatment comparison and
//! plant tracks, from a batch dataset.

use ::progress::{
    audpc_table, check_campaign, compare_treatments, progress_table, track_plants, AudpcRow,
    MatchReport, PlantTrack, ProgressRow, Tracking, TreatmentRow,
};
use anyhow::{bail, Context, Result};
use report::{Table, Values};

use crate::cli::ProgressArgs;
use crate::output::{check_writable_dir, write_folder_atomically};

pub fn run(args: ProgressArgs) -> Result<()> {
    check_writable_dir(&args.out, args.overwrite)?;
    if let Some(dir) = &args.report {
        check_writable_dir(dir, args.overwrite)?;
    }
    if let Some(r) = args.match_radius_m {
        if !(r > 0.0 && r.is_finite()) {
            bail!("--match-radius-m must be a positive number of metres, not {r}");
        }
    }
    let started = std::time::Instant::now();
    let plants = report::read_dataset_plants(
        &args.dataset,
        &report::DatasetColumns {
            plot: args.plot_column.clone(),
            treatment: args.treatment_column.clone(),
            healthy_class: args.healthy_class.clone(),
        },
    )
    .with_context(|| format!("reading dataset {}", args.dataset.display()))?;
    let read_seconds = started.elapsed().as_secs_f64();
    check_campaign(&plants).with_context(|| args.dataset.display().to_string())?;
    let progress = progress_table(&plants)?;
    let audpc = audpc_table(&progress);
    let tracking = match args.match_radius_m {
        Some(radius_m) => Tracking::Centroids { radius_m },
        None => Tracking::Ids,
    };
    let (tracks, matches) = track_plants(&plants, tracking)?;
    let treatments = match &args.treatment_column {
        Some(column) => {
            let per_plot: Vec<(String, f64)> = audpc
                .iter()
                .map(|r| (r.treatment.clone().unwrap_or_default(), r.audpc_incidence))
                .collect();
            if let Some(control) = &args.control {
                if !per_plot.iter().any(|(t, _)| t == control) {
                    bail!(
                        "--control '{control}' is not a treatment of column '{column}' ({})",
                        distinct(per_plot.iter().map(|(t, _)| t.as_str())).join(", ")
                    );
                }
            }
            let severity: Option<Vec<(String, f64)>> = audpc
                .iter()
                .map(|r| Some((r.treatment.clone().unwrap_or_default(), r.audpc_severity?)))
                .collect();
            Some((
                compare_treatments(&per_plot, args.control.as_deref()),
                severity.map(|s| compare_treatments(&s, args.control.as_deref())),
            ))
        }
        None => None,
    };
    let metadata = vec![
        (
            "pipeline.progress".to_string(),
            serde_json::json!({
                "dataset": args.dataset.display().to_string(),
                "plot_column": args.plot_column,
                "treatment_column": args.treatment_column,
                "control": args.control,
                "match_radius_m": args.match_radius_m,
                "healthy_class": args.healthy_class,
            })
            .to_string(),
        ),
        (
            "pipeline.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ];
    write_folder_atomically(&args.out, args.overwrite, |dir| {
        report::write_table(
            &dir.join("progress.parquet"),
            &progress_frame(&progress),
            &metadata,
        )?;
        report::write_table(&dir.join("audpc.parquet"), &audpc_frame(&audpc), &metadata)?;
        report::write_table(
            &dir.join("plants.parquet"),
            &tracks_frame(&tracks),
            &metadata,
        )?;
        report::write_table(
            &dir.join("matches.parquet"),
            &matches_frame(&matches),
            &metadata,
        )?;
        if let Some((incidence, severity)) = &treatments {
            report::write_table(
                &dir.join("treatments.parquet"),
                &treatments_frame(incidence, severity.as_deref()),
                &metadata,
            )?;
        }
        Ok(())
    })?;
    if let Some(dir) = &args.report {
        let facts = vec![
            ("plants observed".to_string(), plants.len().to_string()),
            (
                "plot column".to_string(),
                args.plot_column
                    .clone()
                    .unwrap_or_else(|| "- (one plot per field)".into()),
            ),
            (
                "treatment column".to_string(),
                args.treatment_column.clone().unwrap_or_else(|| "-".into()),
            ),
            (
                "plants tracked by".to_string(),
                args.match_radius_m
                    .map_or("plant id".into(), |r| format!("map centroid within {r} m")),
            ),
        ];
        let content = super::progress_report::content(
            &args.dataset,
            dir,
            &progress,
            &audpc,
            treatments.as_ref(),
            args.control.as_deref(),
            facts,
        );
        write_folder_atomically(dir, args.overwrite, |tmp| {
            Ok(report::write_campaign_report(tmp, &content)?)
        })
        .with_context(|| format!("writing the campaign report {}", dir.display()))?;
    }
    tracing::info!(
        plants = plants.len(),
        read_s = format!("{read_seconds:.3}"),
        total_s = format!("{:.3}", started.elapsed().as_secs_f64()),
        "progress"
    );
    print_summary(
        &progress,
        &audpc,
        treatments.as_ref().map(|t| &t.0),
        &tracks,
        &args,
    );
    Ok(())
}

fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn progress_frame(rows: &[ProgressRow]) -> Table {
    let mut t = Table::default();
    t.push(
        "field_id",
        Values::Str(rows.iter().map(|r| r.field_id.clone()).collect()),
    )
    .push(
        "plot_id",
        Values::Str(rows.iter().map(|r| r.plot_id.clone()).collect()),
    )
    .push(
        "date",
        Values::Str(rows.iter().map(|r| r.date.clone()).collect()),
    )
    .push(
        "treatment",
        Values::OptionalStr(rows.iter().map(|r| r.treatment.clone()).collect()),
    )
    .push(
        "days_since_first",
        Values::U64(rows.iter().map(|r| r.days_since_first as u64).collect()),
    )
    .push(
        "plants",
        Values::U64(rows.iter().map(|r| r.plants as u64).collect()),
    )
    .push(
        "diseased_plants",
        Values::U64(rows.iter().map(|r| r.diseased_plants as u64).collect()),
    )
    .push(
        "incidence_pct",
        Values::F64(rows.iter().map(|r| r.incidence_pct).collect()),
    )
    .push(
        "severity_mean_pct",
        Values::OptionalF64(rows.iter().map(|r| r.severity_mean_pct).collect()),
    )
    .push(
        "kl_mean_nats",
        Values::F64(rows.iter().map(|r| r.kl_mean_nats).collect()),
    )
    .push(
        "ood_plants",
        Values::U64(rows.iter().map(|r| r.ood_plants as u64).collect()),
    );
    t
}

fn audpc_frame(rows: &[AudpcRow]) -> Table {
    let mut t = Table::default();
    t.push(
        "field_id",
        Values::Str(rows.iter().map(|r| r.field_id.clone()).collect()),
    )
    .push(
        "plot_id",
        Values::Str(rows.iter().map(|r| r.plot_id.clone()).collect()),
    )
    .push(
        "treatment",
        Values::OptionalStr(rows.iter().map(|r| r.treatment.clone()).collect()),
    )
    .push(
        "dates",
        Values::U64(rows.iter().map(|r| r.dates as u64).collect()),
    )
    .push(
        "first_date",
        Values::Str(rows.iter().map(|r| r.first_date.clone()).collect()),
    )
    .push(
        "last_date",
        Values::Str(rows.iter().map(|r| r.last_date.clone()).collect()),
    )
    .push(
        "duration_days",
        Values::U64(rows.iter().map(|r| r.duration_days as u64).collect()),
    )
    .push(
        "audpc_incidence",
        Values::F64(rows.iter().map(|r| r.audpc_incidence).collect()),
    )
    .push(
        "relative_audpc_incidence",
        Values::OptionalF64(rows.iter().map(|r| r.relative_audpc_incidence).collect()),
    )
    .push(
        "audpc_severity",
        Values::OptionalF64(rows.iter().map(|r| r.audpc_severity).collect()),
    )
    .push(
        "relative_audpc_severity",
        Values::OptionalF64(rows.iter().map(|r| r.relative_audpc_severity).collect()),
    );
    t
}

fn tracks_frame(tracks: &[PlantTrack]) -> Table {
    let mut t = Table::default();
    t.push(
        "field_id",
        Values::Str(tracks.iter().map(|r| r.field_id.clone()).collect()),
    )
    .push(
        "plot_id",
        Values::Str(tracks.iter().map(|r| r.plot_id.clone()).collect()),
    )
    .push(
        "track_id",
        Values::U64(tracks.iter().map(|r| u64::from(r.track_id)).collect()),
    )
    .push(
        "dates_seen",
        Values::U64(tracks.iter().map(|r| r.seen.len() as u64).collect()),
    )
    .push(
        "first_date",
        Values::Str(tracks.iter().map(|r| r.seen[0].0.clone()).collect()),
    )
    .push(
        "last_date",
        Values::Str(
            tracks
                .iter()
                .map(|r| r.seen[r.seen.len() - 1].0.clone())
                .collect(),
        ),
    )
    .push(
        "plant_ids",
        Values::Str(
            tracks
                .iter()
                .map(|r| {
                    r.seen
                        .iter()
                        .map(|(d, id)| format!("{d}:{id}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect(),
        ),
    )
    .push(
        "first_symptom_date",
        Values::OptionalStr(
            tracks
                .iter()
                .map(|r| r.first_symptom_date.clone())
                .collect(),
        ),
    );
    t
}

fn matches_frame(rows: &[MatchReport]) -> Table {
    let mut t = Table::default();
    t.push(
        "field_id",
        Values::Str(rows.iter().map(|r| r.field_id.clone()).collect()),
    )
    .push(
        "date",
        Values::Str(rows.iter().map(|r| r.date.clone()).collect()),
    )
    .push(
        "plants",
        Values::U64(rows.iter().map(|r| r.plants as u64).collect()),
    )
    .push(
        "matched",
        Values::U64(rows.iter().map(|r| r.matched as u64).collect()),
    )
    .push(
        "new",
        Values::U64(rows.iter().map(|r| r.new as u64).collect()),
    )
    .push(
        "missing",
        Values::U64(rows.iter().map(|r| r.missing as u64).collect()),
    );
    t
}

/// Per treatment: plots, mean AUDPC of incidence (and severity) with the 95% interval, Welch's
/// test against the control.
fn treatments_frame(incidence: &[TreatmentRow], severity: Option<&[TreatmentRow]>) -> Table {
    let mut t = Table::default();
    let rows = incidence;
    t.push(
        "treatment",
        Values::Str(rows.iter().map(|r| r.treatment.clone()).collect()),
    )
    .push(
        "plots",
        Values::U64(rows.iter().map(|r| r.plots as u64).collect()),
    );
    let mut push = |prefix: &str, rows: &[TreatmentRow]| {
        t.push(
            &format!("{prefix}_mean"),
            Values::F64(rows.iter().map(|r| r.mean).collect()),
        )
        .push(
            &format!("{prefix}_ci95_low"),
            Values::OptionalF64(rows.iter().map(|r| r.ci95.map(|c| c.0)).collect()),
        )
        .push(
            &format!("{prefix}_ci95_high"),
            Values::OptionalF64(rows.iter().map(|r| r.ci95.map(|c| c.1)).collect()),
        )
        .push(
            &format!("{prefix}_welch_t"),
            Values::OptionalF64(rows.iter().map(|r| r.versus_control.map(|w| w.t)).collect()),
        )
        .push(
            &format!("{prefix}_welch_df"),
            Values::OptionalF64(
                rows.iter()
                    .map(|r| r.versus_control.map(|w| w.df))
                    .collect(),
            ),
        )
        .push(
            &format!("{prefix}_p_value"),
            Values::OptionalF64(
                rows.iter()
                    .map(|r| r.versus_control.map(|w| w.p_value))
                    .collect(),
            ),
        );
    };
    push("audpc_incidence", incidence);
    if let Some(severity) = severity {
        push("audpc_severity", severity);
    }
    t
}

fn print_summary(
    progress: &[ProgressRow],
    audpc: &[AudpcRow],
    treatments: Option<&Vec<TreatmentRow>>,
    tracks: &[PlantTrack],
    args: &ProgressArgs,
) {
    let fields = distinct(progress.iter().map(|r| r.field_id.as_str()));
    let dates = distinct(progress.iter().map(|r| r.date.as_str()));
    println!(
        "campaign     {} field(s), {} plot(s), {} date(s), {} plant track(s)",
        fields.len(),
        audpc.len(),
        dates.len(),
        tracks.len()
    );
    println!(
        "{:<16} {:<16} {:>6} {:>12} {:>15} {:>10}",
        "field", "plot", "dates", "days", "AUDPC inc %-d", "relative"
    );
    for r in audpc {
        println!(
            "{:<16} {:<16} {:>6} {:>12} {:>15.1} {:>10}",
            r.field_id,
            r.plot_id,
            r.dates,
            r.duration_days,
            r.audpc_incidence,
            r.relative_audpc_incidence
                .map_or("-".into(), |v| format!("{v:.3}"))
        );
    }
    if let Some(rows) = treatments {
        println!("treatments   AUDPC of incidence (%-days), mean and 95% interval; Welch's t-test against the control");
        for r in rows {
            println!(
                "  {:<14} {:>3} plots  {:>9.1}  [{}]  {}",
                r.treatment,
                r.plots,
                r.mean,
                r.ci95
                    .map_or("-".into(), |(lo, hi)| format!("{lo:.1}, {hi:.1}")),
                r.versus_control.map_or(String::new(), |w| format!(
                    "t {:.3}, df {:.2}, p {:.4}",
                    w.t, w.df, w.p_value
                ))
            );
        }
    }
    println!("written      {}", args.out.display());
    if let Some(dir) = &args.report {
        println!("report       {}", dir.join("index.html").display());
    }
}
