//! Per field, plot and date: incidence, severity, KL and OOD; per plot: AUDPC.

use std::collections::BTreeMap;

use domain::PlantObservation;

use crate::audpc::{audpc, relative_audpc};
use crate::date::day_number;
use crate::error::{Error, Result};

/// The plants of one plot on one date.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressRow {
    pub field_id: String,
    pub plot_id: String,
    pub treatment: Option<String>,
    pub date: String,
    /// Days since the field's first scan.
    pub days_since_first: i64,
    pub plants: usize,
    pub diseased_plants: usize,
    /// Share of the plants called non-healthy, %.
    pub incidence_pct: f64,
    /// Mean of the plants' per-pixel severity, %; `None` when no plant has one (no `--per-pixel`).
    pub severity_mean_pct: Option<f64>,
    pub kl_mean_nats: f64,
    pub ood_plants: usize,
}

/// One plot over the season.
#[derive(Debug, Clone, PartialEq)]
pub struct AudpcRow {
    pub field_id: String,
    pub plot_id: String,
    pub treatment: Option<String>,
    pub dates: usize,
    pub first_date: String,
    pub last_date: String,
    pub duration_days: i64,
    /// Trapezoid AUDPC of incidence, %-days.
    pub audpc_incidence: f64,
    /// AUDPC of incidence / (100 % x duration): 0-1.
    pub relative_audpc_incidence: Option<f64>,
    /// The same of mean severity, when every date has one.
    pub audpc_severity: Option<f64>,
    pub relative_audpc_severity: Option<f64>,
}

/// What stops a progress curve: a field scanned on one date, a field whose dates were scored by
/// different models, a plot with two treatments, a date that is not a date.
pub fn check_campaign(observations: &[PlantObservation]) -> Result<()> {
    if observations.is_empty() {
        return Err(Error::Campaign("the dataset has no plants".into()));
    }
    let mut fields: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    let mut treatments: BTreeMap<(&str, &str), &Option<String>> = BTreeMap::new();
    for o in observations {
        day_number(&o.date)?;
        fields
            .entry(&o.field_id)
            .or_default()
            .entry(&o.date)
            .or_insert(&o.model_id);
        if let Some(other) = treatments.insert((&o.field_id, &o.plot_id), &o.treatment) {
            if other != &o.treatment {
                return Err(Error::Campaign(format!(
                    "field '{}' plot '{}' has two treatments ({} and {})",
                    o.field_id,
                    o.plot_id,
                    other.as_deref().unwrap_or("none"),
                    o.treatment.as_deref().unwrap_or("none")
                )));
            }
        }
    }
    for (field, dates) in &fields {
        if dates.len() < 2 {
            let date = dates.keys().next().copied().unwrap_or("?");
            return Err(Error::Campaign(format!(
                "field '{field}' was scanned on one date ({date}): a progress curve needs two or more"
            )));
        }
        let mut models: Vec<(&str, &str)> = Vec::new();
        for (&date, &model) in dates {
            if !models.iter().any(|(_, m)| *m == model) {
                models.push((date, model));
            }
        }
        if models.len() > 1 {
            let listed: Vec<String> = models
                .iter()
                .map(|(d, m)| format!("{m} from {d}"))
                .collect();
            return Err(Error::Campaign(format!(
                "field '{field}': its dates were scored by different models ({}); incidence from two \
                 classifiers is not one curve: rerun the campaign with one model",
                listed.join(", ")
            )));
        }
    }
    Ok(())
}

/// Incidence, severity, KL and OOD per (field, plot, date), sorted by field, plot and date.
/// Call [`check_campaign`] first.
pub fn progress_table(observations: &[PlantObservation]) -> Result<Vec<ProgressRow>> {
    struct Sums<'a> {
        treatment: &'a Option<String>,
        plants: usize,
        diseased: usize,
        severity: (f64, usize),
        kl: f64,
        ood: usize,
    }
    let mut first_day: BTreeMap<&str, i64> = BTreeMap::new();
    let mut groups: BTreeMap<(&str, &str, i64), Sums> = BTreeMap::new();
    for o in observations {
        let day = day_number(&o.date)?;
        let first = first_day.entry(&o.field_id).or_insert(day);
        *first = (*first).min(day);
        let sums = groups
            .entry((&o.field_id, &o.plot_id, day))
            .or_insert(Sums {
                treatment: &o.treatment,
                plants: 0,
                diseased: 0,
                severity: (0.0, 0),
                kl: 0.0,
                ood: 0,
            });
        sums.plants += 1;
        sums.diseased += usize::from(o.diseased);
        if let Some(s) = o.severity_pct {
            sums.severity.0 += s;
            sums.severity.1 += 1;
        }
        sums.kl += o.kl_nats;
        sums.ood += usize::from(o.ood);
    }
    Ok(groups
        .into_iter()
        .map(|((field, plot, day), s)| ProgressRow {
            field_id: field.to_string(),
            plot_id: plot.to_string(),
            treatment: s.treatment.clone(),
            date: crate::date::format_day(day),
            days_since_first: day - first_day[field],
            plants: s.plants,
            diseased_plants: s.diseased,
            incidence_pct: 100.0 * s.diseased as f64 / s.plants as f64,
            severity_mean_pct: (s.severity.1 > 0).then(|| s.severity.0 / s.severity.1 as f64),
            kl_mean_nats: s.kl / s.plants as f64,
            ood_plants: s.ood,
        })
        .collect())
}

/// AUDPC per plot from its rows of [`progress_table`] (sorted by field, plot and date). A plot
/// seen on one date only has an AUDPC of 0 over 0 days and no relative AUDPC.
pub fn audpc_table(progress: &[ProgressRow]) -> Vec<AudpcRow> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < progress.len() {
        let (field, plot) = (&progress[start].field_id, &progress[start].plot_id);
        let end = start
            + progress[start..]
                .iter()
                .take_while(|r| &r.field_id == field && &r.plot_id == plot)
                .count();
        let rows = &progress[start..end];
        let days: Vec<i64> = rows.iter().map(|r| r.days_since_first).collect();
        let incidence: Vec<f64> = rows.iter().map(|r| r.incidence_pct).collect();
        let severity: Option<Vec<f64>> = rows.iter().map(|r| r.severity_mean_pct).collect();
        out.push(AudpcRow {
            field_id: field.clone(),
            plot_id: plot.clone(),
            treatment: rows[0].treatment.clone(),
            dates: rows.len(),
            first_date: rows[0].date.clone(),
            last_date: rows[rows.len() - 1].date.clone(),
            duration_days: days[days.len() - 1] - days[0],
            audpc_incidence: audpc(&days, &incidence),
            relative_audpc_incidence: relative_audpc(&days, &incidence, 100.0),
            audpc_severity: severity.as_ref().map(|s| audpc(&days, s)),
            relative_audpc_severity: severity
                .as_ref()
                .and_then(|s| relative_audpc(&days, s, 100.0)),
        });
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn plant(
        field: &str,
        date: &str,
        plot: &str,
        id: u32,
        diseased: bool,
    ) -> PlantObservation {
        PlantObservation {
            field_id: field.into(),
            date: date.into(),
            plot_id: plot.into(),
            treatment: Some(
                if plot.starts_with('c') {
                    "control"
                } else {
                    "fungicide"
                }
                .into(),
            ),
            plant_id: id,
            x: Some(id as f64),
            y: Some(0.0),
            diseased,
            severity_pct: None,
            kl_nats: 2.0,
            ood: false,
            model_id: "m1".into(),
        }
    }

    /// Two plots, three uneven dates: incidence per date and AUDPC by hand.
    #[test]
    fn progress_and_audpc_by_hand() {
        let mut obs = Vec::new();
        // Plot c1: 4 plants; diseased 0, 1, 3 on days 0, 5, 12.
        for (date, sick) in [("2026-06-01", 0), ("2026-06-06", 1), ("2026-06-13", 3)] {
            for id in 0..4 {
                obs.push(plant("f", date, "c1", id, id < sick));
            }
        }
        // Plot t1: 2 plants; diseased 0, 0, 1.
        for (date, sick) in [("2026-06-01", 0), ("2026-06-06", 0), ("2026-06-13", 1)] {
            for id in 10..12 {
                obs.push(plant("f", date, "t1", id, id - 10 < sick));
            }
        }
        check_campaign(&obs).unwrap();
        let progress = progress_table(&obs).unwrap();
        assert_eq!(progress.len(), 6);
        let c1: Vec<f64> = progress[..3].iter().map(|r| r.incidence_pct).collect();
        assert_eq!(c1, vec![0.0, 25.0, 75.0]);
        assert_eq!(progress[2].days_since_first, 12);
        assert_eq!(progress[2].severity_mean_pct, None);
        let audpc = audpc_table(&progress);
        // c1: 5 * 12.5 + 7 * 50 = 412.5 %-days; t1: 7 * 25 = 175.
        assert_eq!(audpc[0].audpc_incidence, 412.5);
        assert_eq!(audpc[1].audpc_incidence, 175.0);
        assert_eq!(audpc[0].duration_days, 12);
        assert!((audpc[0].relative_audpc_incidence.unwrap() - 412.5 / 1200.0).abs() < 1e-15);
        assert_eq!(audpc[1].treatment.as_deref(), Some("fungicide"));
    }

    #[test]
    fn one_date_mixed_models_and_two_treatments_are_errors() {
        let one = vec![plant("f", "2026-06-01", "c1", 1, false)];
        let error = check_campaign(&one).unwrap_err().to_string();
        assert!(error.contains("one date (2026-06-01)"), "{error}");
        let mut mixed = vec![
            plant("f", "2026-06-01", "c1", 1, false),
            plant("f", "2026-06-08", "c1", 1, true),
        ];
        mixed[1].model_id = "m2".into();
        let error = check_campaign(&mixed).unwrap_err().to_string();
        assert!(
            error.contains("m1 from 2026-06-01") && error.contains("m2 from 2026-06-08"),
            "{error}"
        );
        let mut two = vec![
            plant("f", "2026-06-01", "c1", 1, false),
            plant("f", "2026-06-08", "c1", 1, true),
        ];
        two[1].treatment = Some("fungicide".into());
        assert!(check_campaign(&two)
            .unwrap_err()
            .to_string()
            .contains("two treatments"));
    }
}
