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

// Column builders: one value per row.
fn text<T>(rows: &[T], f: impl Fn(&T) -> String) -> Values {
    Values::Str(rows.iter().map(f).collect())
}

fn maybe_text<T>(rows: &[T], f: impl Fn(&T) -> Option<String>) -> Values {
    Values::OptionalStr(rows.iter().map(f).collect())
}

fn count<T>(rows: &[T], f: impl Fn(&T) -> u64) -> Values {
    Values::U64(rows.iter().map(f).collect())
}

fn number<T>(rows: &[T], f: impl Fn(&T) -> f64) -> Values {
    Values::F64(rows.iter().map(f).collect())
}

fn maybe_number<T>(rows: &[T], f: impl Fn(&T) -> Option<f64>) -> Values {
    Values::OptionalF64(rows.iter().map(f).collect())
}

fn progress_frame(rows: &[ProgressRow]) -> Table {
    let mut t = Table::default();
    t.push("field_id", text(rows, |r| r.field_id.clone()))
        .push("plot_id", text(rows, |r| r.plot_id.clone()))
        .push("date", text(rows, |r| r.date.clone()))
        .push("treatment", maybe_text(rows, |r| r.treatment.clone()))
        .push(
            "days_since_first",
            count(rows, |r| r.days_since_first as u64),
        )
        .push("plants", count(rows, |r| r.plants as u64))
        .push("diseased_plants", count(rows, |r| r.diseased_plants as u64))
        .push("incidence_pct", number(rows, |r| r.incidence_pct))
        .push(
            "severity_mean_pct",
            maybe_number(rows, |r| r.severity_mean_pct),
        )
        .push("kl_mean_nats", number(rows, |r| r.kl_mean_nats))
        .push("ood_plants", count(rows, |r| r.ood_plants as u64));
    t
}

fn audpc_frame(rows: &[AudpcRow]) -> Table {
    let mut t = Table::default();
    t.push("field_id", text(rows, |r| r.field_id.clone()))
        .push("plot_id", text(rows, |r| r.plot_id.clone()))
        .push("treatment", maybe_text(rows, |r| r.treatment.clone()))
        .push("dates", count(rows, |r| r.dates as u64))
        .push("first_date", text(rows, |r| r.first_date.clone()))
        .push("last_date", text(rows, |r| r.last_date.clone()))
        .push("duration_days", count(rows, |r| r.duration_days as u64))
        .push("audpc_incidence", number(rows, |r| r.audpc_incidence))
        .push(
            "relative_audpc_incidence",
            maybe_number(rows, |r| r.relative_audpc_incidence),
        )
        .push("audpc_severity", maybe_number(rows, |r| r.audpc_severity))
        .push(
            "relative_audpc_severity",
            maybe_number(rows, |r| r.relative_audpc_severity),
        );
    t
}

fn tracks_frame(tracks: &[PlantTrack]) -> Table {
    let mut t = Table::default();
    t.push("field_id", text(tracks, |r| r.field_id.clone()))
        .push("plot_id", text(tracks, |r| r.plot_id.clone()))
        .push("track_id", count(tracks, |r| u64::from(r.track_id)))
        .push("dates_seen", count(tracks, |r| r.seen.len() as u64))
        .push("first_date", text(tracks, |r| r.seen[0].0.clone()))
        .push(
            "last_date",
            text(tracks, |r| r.seen[r.seen.len() - 1].0.clone()),
        )
        .push(
            "plant_ids",
            text(tracks, |r| {
                r.seen
                    .iter()
                    .map(|(d, id)| format!("{d}:{id}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
        )
        .push(
            "first_symptom_date",
            maybe_text(tracks, |r| r.first_symptom_date.clone()),
        );
    t
}

fn matches_frame(rows: &[MatchReport]) -> Table {
    let mut t = Table::default();
    t.push("field_id", text(rows, |r| r.field_id.clone()))
        .push("date", text(rows, |r| r.date.clone()))
        .push("plants", count(rows, |r| r.plants as u64))
        .push("matched", count(rows, |r| r.matched as u64))
        .push("new", count(rows, |r| r.new as u64))
        .push("missing", count(rows, |r| r.missing as u64));
    t
}

/// Per treatment: plots, mean AUDPC of incidence (and severity) with the 95% interval, Welch's
/// test against the control.
fn treatments_frame(incidence: &[TreatmentRow], severity: Option<&[TreatmentRow]>) -> Table {
    let mut t = Table::default();
    t.push("treatment", text(incidence, |r| r.treatment.clone()))
        .push("plots", count(incidence, |r| r.plots as u64));
    let mut push = |prefix: &str, rows: &[TreatmentRow]| {
        let welch = |f: fn(&::progress::WelchTest) -> f64| {
            maybe_number(rows, move |r| r.versus_control.as_ref().map(f))
        };
        t.push(&format!("{prefix}_mean"), number(rows, |r| r.mean))
            .push(
                &format!("{prefix}_ci95_low"),
                maybe_number(rows, |r| r.ci95.map(|c| c.0)),
            )
            .push(
                &format!("{prefix}_ci95_high"),
                maybe_number(rows, |r| r.ci95.map(|c| c.1)),
            )
            .push(&format!("{prefix}_welch_t"), welch(|w| w.t))
            .push(&format!("{prefix}_welch_df"), welch(|w| w.df))
            .push(&format!("{prefix}_p_value"), welch(|w| w.p_value));
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
