//! `pipeline synth --field campaign`: the example campaign of `sample_cubes/campaign/`, a trial
//! field scanned on five dates while rust spreads from one focus per plot, fast in the control
//! plots and slowly under the fungicide (see sample_cubes/README.md for the ground truth).

use std::path::Path;

use anyhow::{Context, Result};
use domain::Interleave;
use synth::{generate_campaign, CampaignSpec, FieldSpec, SpectralLibrary, Treatment};

/// The example trial: 6 x 12 plants in 6 plots of 3 x 4, control and fungicide in a
/// checkerboard, scanned on days 0, 5, 12, 19 and 28.
pub fn spec() -> CampaignSpec {
    CampaignSpec {
        field: FieldSpec {
            field_id: "trial".into(),
            lines: 72,
            samples: 144,
            cell_px: 12,
            seed: 11,
            origin_x_m: 512_100.0,
            origin_y_m: 5_350_000.0,
            pixel_size_m: 0.005,
            min_disease_severity: 0.7,
            lesions: false,
            plant_classes: None,
            scan_seed: None,
        },
        plot_cells: (3, 4),
        scans: [
            ("2026-06-01", 0),
            ("2026-06-06", 5),
            ("2026-06-13", 12),
            ("2026-06-20", 19),
            ("2026-06-29", 28),
        ]
        .iter()
        .map(|&(d, n)| (d.to_string(), n))
        .collect(),
        treatments: vec![
            Treatment {
                name: "control".into(),
                spread_cells_per_week: 1.0,
            },
            Treatment {
                name: "fungicide".into(),
                spread_cells_per_week: 0.35,
            },
        ],
        disease_code: 2,
    }
}

/// Write the campaign into `dir/campaign/`: one ENVI cube per scan (`trial-<date>`), the plant
/// polygons with their plot and treatment (`plants.geojson`), the per-plant truth (`truth.csv`)
/// and the true incidence per plot and date (`truth-incidence.csv`).
pub fn write(library: &SpectralLibrary, dir: &Path) -> Result<()> {
    let spec = spec();
    let campaign = generate_campaign(library, &spec).context("generating the campaign")?;
    let out = dir.join("campaign");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for ((date, _), scene) in spec.scans.iter().zip(&campaign.scenes) {
        let base = out.join(format!("{}-{date}", spec.field.field_id));
        ingest::write_envi_cube(&base.with_extension("img"), &scene.cube, Interleave::Bil)?;
        // The scan date, as instruments record it: a batch takes it from the header.
        let header = base.with_extension("hdr");
        let text = std::fs::read_to_string(&header)
            .with_context(|| format!("reading {}", header.display()))?;
        write_text(
            &header,
            &format!("{text}acquisition time = {date}T10:00:00Z\n"),
        )?;
    }
    let field = &spec.field;
    let cells_across = field.samples / field.cell_px;
    let plot_name = |q: usize| format!("P{}", q + 1);
    let treatment_of = |p: usize| {
        spec.treatments[campaign.treatment_of_plot[campaign.plot_of_plant[p]]]
            .name
            .as_str()
    };
    // One square polygon per plant cell, in the scene's map coordinates (north up).
    let mut features = Vec::new();
    for p in 0..campaign.plot_of_plant.len() {
        let (row, col) = ((p / cells_across) as f64, (p % cells_across) as f64);
        let size = field.cell_px as f64 * field.pixel_size_m;
        let (x0, y0) = (field.origin_x_m + col * size, field.origin_y_m - row * size);
        let (x1, y1) = (x0 + size, y0 - size);
        features.push(format!(
            "{{\"type\":\"Feature\",\"properties\":{{\"plant\":{},\"plot\":\"{}\",\"treatment\":\"{}\"}},\
             \"geometry\":{{\"type\":\"Polygon\",\"coordinates\":[[[{x0:.3},{y0:.3}],[{x1:.3},{y0:.3}],\
             [{x1:.3},{y1:.3}],[{x0:.3},{y1:.3}],[{x0:.3},{y0:.3}]]]}}}}",
            p + 1,
            plot_name(campaign.plot_of_plant[p]),
            treatment_of(p)
        ));
    }
    let geojson = format!(
        "{{\"type\":\"FeatureCollection\",\"name\":\"plants\",\"crs\":{{\"type\":\"name\",\
         \"properties\":{{\"name\":\"urn:ogc:def:crs:EPSG::32632\"}}}},\"features\":[\n{}\n]}}\n",
        features.join(",\n")
    );
    write_text(&out.join("plants.geojson"), &geojson)?;
    let mut truth = String::from("plant_id,plot,treatment,infection_day\n");
    for p in 0..campaign.plot_of_plant.len() {
        truth.push_str(&format!(
            "{},{},{},{}\n",
            p + 1,
            plot_name(campaign.plot_of_plant[p]),
            treatment_of(p),
            campaign.infection_day[p].map_or(String::new(), |d| format!("{d:.1}"))
        ));
    }
    write_text(&out.join("truth.csv"), &truth)?;
    let mut incidence = String::from("date,days,plot,treatment,plants,diseased,incidence_pct\n");
    for (date, day) in &spec.scans {
        for (q, &t) in campaign.treatment_of_plot.iter().enumerate() {
            let members: Vec<usize> = (0..campaign.plot_of_plant.len())
                .filter(|&p| campaign.plot_of_plant[p] == q)
                .collect();
            let diseased = members
                .iter()
                .filter(|&&p| campaign.diseased(p, *day))
                .count();
            incidence.push_str(&format!(
                "{date},{day},{},{},{},{diseased},{:.4}\n",
                plot_name(q),
                spec.treatments[t].name,
                members.len(),
                100.0 * diseased as f64 / members.len() as f64
            ));
        }
    }
    write_text(&out.join("truth-incidence.csv"), &incidence)?;
    println!(
        "campaign: {} scans of {} lines x {} samples, {} plants in {} plots ({})",
        spec.scans.len(),
        field.lines,
        field.samples,
        campaign.plot_of_plant.len(),
        campaign.treatment_of_plot.len(),
        spec.treatments
            .iter()
            .map(|t| format!("{} {} cells/week", t.name, t.spread_cells_per_week))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
