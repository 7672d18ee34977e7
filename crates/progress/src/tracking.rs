//! Plants followed across scan dates: by their id (polygons and plant-id rasters give every plant
//! the same id on every date), or by their map centroid, matched to the nearest plant of the
//! previous dates within a radius (segmented plants are renumbered on every scan).

use std::collections::BTreeMap;

use domain::PlantObservation;

use crate::date::day_number;
use crate::error::{Error, Result};

/// How plants are matched across dates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tracking {
    /// The plant id is the key.
    Ids,
    /// Nearest centroid within this many map units (metres), one to one, closest pairs first.
    Centroids { radius_m: f64 },
}

/// One plant over the season.
#[derive(Debug, Clone, PartialEq)]
pub struct PlantTrack {
    pub field_id: String,
    pub plot_id: String,
    /// 1.. per field: the plant id with [`Tracking::Ids`], else in order of first appearance.
    pub track_id: u32,
    /// (date, plant id in that date's cube), in date order.
    pub seen: Vec<(String, u32)>,
    /// The first date the plant was called non-healthy.
    pub first_symptom_date: Option<String>,
}

/// Per field and date, how the date's plants matched the tracks so far.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchReport {
    pub field_id: String,
    pub date: String,
    pub plants: usize,
    /// Plants matched to an existing track.
    pub matched: usize,
    /// Plants that started a new track (no track within the radius; on the first date, all).
    pub new: usize,
    /// Tracks seen before that no plant of this date matched.
    pub missing: usize,
}

/// Follow every plant across its field's dates.
pub fn track_plants(
    observations: &[PlantObservation],
    tracking: Tracking,
) -> Result<(Vec<PlantTrack>, Vec<MatchReport>)> {
    // field -> day -> observations
    let mut fields: BTreeMap<&str, BTreeMap<i64, Vec<&PlantObservation>>> = BTreeMap::new();
    for o in observations {
        fields
            .entry(&o.field_id)
            .or_default()
            .entry(day_number(&o.date)?)
            .or_default()
            .push(o);
    }
    let (mut tracks, mut reports) = (Vec::new(), Vec::new());
    for (field, dates) in fields {
        // Per track: the plant's last position and its record.
        let mut field_tracks: Vec<(Option<(f64, f64)>, PlantTrack)> = Vec::new();
        let mut by_id: BTreeMap<u32, usize> = BTreeMap::new();
        for plants in dates.values() {
            let mut assigned: Vec<Option<usize>> = vec![None; plants.len()];
            match tracking {
                Tracking::Ids => {
                    for (p, o) in plants.iter().enumerate() {
                        assigned[p] = by_id.get(&o.plant_id).copied();
                    }
                }
                Tracking::Centroids { radius_m } => {
                    let mut pairs = Vec::new();
                    for (p, o) in plants.iter().enumerate() {
                        let (Some(x), Some(y)) = (o.x, o.y) else {
                            return Err(Error::Campaign(format!(
                                "field '{field}' date {}: plant {} has no map coordinates (the cube \
                                 is not georeferenced): track plants by id (polygons or plant-id rasters)",
                                o.date, o.plant_id
                            )));
                        };
                        for (t, (last, _)) in field_tracks.iter().enumerate() {
                            if let Some((tx, ty)) = last {
                                let d = ((x - tx).powi(2) + (y - ty).powi(2)).sqrt();
                                if d <= radius_m {
                                    pairs.push((d, p, t));
                                }
                            }
                        }
                    }
                    // Closest pairs first; ties by plant then track order (deterministic).
                    pairs.sort_by(|a, b| {
                        a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
                    });
                    let mut taken = vec![false; field_tracks.len()];
                    for (_, p, t) in pairs {
                        if assigned[p].is_none() && !taken[t] {
                            assigned[p] = Some(t);
                            taken[t] = true;
                        }
                    }
                }
            }
            let date = &plants[0].date;
            let before = field_tracks.len();
            let matched = assigned.iter().flatten().count();
            for (p, o) in plants.iter().enumerate() {
                let t = match assigned[p] {
                    Some(t) => t,
                    None => {
                        let track_id = match tracking {
                            Tracking::Ids => o.plant_id,
                            Tracking::Centroids { .. } => field_tracks.len() as u32 + 1,
                        };
                        by_id.insert(o.plant_id, field_tracks.len());
                        field_tracks.push((
                            None,
                            PlantTrack {
                                field_id: field.to_string(),
                                plot_id: o.plot_id.clone(),
                                track_id,
                                seen: Vec::new(),
                                first_symptom_date: None,
                            },
                        ));
                        field_tracks.len() - 1
                    }
                };
                let (last, track) = &mut field_tracks[t];
                if let (Some(x), Some(y)) = (o.x, o.y) {
                    *last = Some((x, y));
                }
                track.seen.push((o.date.clone(), o.plant_id));
                if o.diseased && track.first_symptom_date.is_none() {
                    track.first_symptom_date = Some(o.date.clone());
                }
            }
            reports.push(MatchReport {
                field_id: field.to_string(),
                date: date.clone(),
                plants: plants.len(),
                matched,
                new: plants.len() - matched,
                missing: before - matched,
            });
        }
        tracks.extend(field_tracks.into_iter().map(|(_, t)| t));
    }
    Ok((tracks, reports))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(date: &str, id: u32, x: f64, y: f64, diseased: bool) -> PlantObservation {
        PlantObservation {
            field_id: "f".into(),
            date: date.into(),
            plot_id: "p".into(),
            treatment: None,
            plant_id: id,
            x: Some(x),
            y: Some(y),
            diseased,
            severity_pct: None,
            kl_nats: 1.0,
            ood: false,
            model_id: "m".into(),
        }
    }

    /// Three plants on day 1; on day 2 they are renumbered, one has moved 0.04 m (a segmentation
    /// shift), one is missing (eaten, or merged with a neighbour) and a new one appears far away.
    #[test]
    fn centroids_match_a_moved_plant_and_report_a_missing_one() {
        let obs = vec![
            at("2026-06-01", 1, 0.0, 0.0, false),
            at("2026-06-01", 2, 1.0, 0.0, false),
            at("2026-06-01", 3, 2.0, 0.0, false),
            at("2026-06-08", 7, 1.04, 0.0, true),
            at("2026-06-08", 8, 0.0, 0.01, false),
            at("2026-06-08", 9, 5.0, 5.0, true),
        ];
        let (tracks, reports) = track_plants(&obs, Tracking::Centroids { radius_m: 0.1 }).unwrap();
        assert_eq!(tracks.len(), 4);
        assert_eq!(
            tracks[1].seen,
            vec![("2026-06-01".into(), 2), ("2026-06-08".into(), 7)]
        );
        assert_eq!(tracks[1].first_symptom_date.as_deref(), Some("2026-06-08"));
        assert_eq!(tracks[0].seen.len(), 2);
        assert_eq!(tracks[0].first_symptom_date, None);
        assert_eq!(tracks[2].seen.len(), 1, "plant 3 is missing on day 2");
        assert_eq!(tracks[3].track_id, 4);
        assert_eq!(
            reports[1],
            MatchReport {
                field_id: "f".into(),
                date: "2026-06-08".into(),
                plants: 3,
                matched: 2,
                new: 1,
                missing: 1,
            }
        );
        // By id, plant 7 on day 2 is another plant than plant 2 on day 1.
        let (by_id, _) = track_plants(&obs, Tracking::Ids).unwrap();
        assert_eq!(by_id.len(), 6);
        // Without coordinates, centroids cannot match.
        let mut bare = obs.clone();
        bare[4].x = None;
        assert!(track_plants(&bare, Tracking::Centroids { radius_m: 0.1 })
            .unwrap_err()
            .to_string()
            .contains("no map coordinates"));
    }
}
