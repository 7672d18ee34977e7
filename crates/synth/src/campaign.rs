//! A season of scans of one trial field: the same plants scanned on several dates while a disease
//! spreads from one focus per plot, faster under one treatment than another. The ground truth is
//! each plant's infection day; a plant is diseased (fully symptomatic, drawn from the library's
//! severe spectra) on every scan from then on.

use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::scene::{generate, FieldSpec, Scene, SpectralLibrary, CLASSES};

/// A treatment and how fast the disease spreads under it.
#[derive(Debug, Clone, PartialEq)]
pub struct Treatment {
    pub name: String,
    /// Plant cells the infection front advances per week from the plot's focus.
    pub spread_cells_per_week: f64,
}

/// The trial: the field's geometry, its plots, the scan days and the treatments.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignSpec {
    /// Geometry, plants and scan noise of the field (its `plant_classes` and `scan_seed` are set
    /// per scan).
    pub field: FieldSpec,
    /// Plant cells per plot: (down, across). Plots tile the field row-major.
    pub plot_cells: (usize, usize),
    /// Scan dates (YYYY-MM-DD) and their day numbers since the first.
    pub scans: Vec<(String, i64)>,
    /// Treatments, assigned to the plots in a checkerboard.
    pub treatments: Vec<Treatment>,
    /// Class code of the disease (see [`CLASSES`]).
    pub disease_code: u32,
}

/// The generated campaign and its ground truth.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// Plot index of each plant (row-major over the cells).
    pub plot_of_plant: Vec<usize>,
    /// Treatment index of each plot.
    pub treatment_of_plot: Vec<usize>,
    /// Day each plant is infected (symptomatic from then on); `None`: not during the campaign.
    pub infection_day: Vec<Option<f64>>,
    /// One scene per scan, in scan order.
    pub scenes: Vec<Scene>,
}

impl Campaign {
    /// Whether plant `p` is diseased on scan day `day`.
    pub fn diseased(&self, p: usize, day: i64) -> bool {
        self.infection_day[p].is_some_and(|d| d <= day as f64)
    }
}

/// Generate every scan of the campaign. Deterministic for a given library and spec.
pub fn generate_campaign(library: &SpectralLibrary, spec: &CampaignSpec) -> Result<Campaign> {
    let field = &spec.field;
    let (cells_down, cells_across) = (field.lines / field.cell_px, field.samples / field.cell_px);
    let (plot_down, plot_across) = spec.plot_cells;
    if plot_down == 0
        || plot_across == 0
        || !cells_down.is_multiple_of(plot_down)
        || !cells_across.is_multiple_of(plot_across)
    {
        return Err(Error::Spec(format!(
            "plots of {plot_down}x{plot_across} cells do not tile {cells_down}x{cells_across} cells"
        )));
    }
    if spec.treatments.is_empty() || spec.scans.is_empty() {
        return Err(Error::Spec("a campaign needs treatments and scans".into()));
    }
    if !CLASSES.iter().any(|(c, _)| *c == spec.disease_code) || spec.disease_code == CLASSES[0].0 {
        return Err(Error::Spec(format!(
            "{} is not a disease code",
            spec.disease_code
        )));
    }
    let plots_across = cells_across / plot_across;
    let n_plants = cells_down * cells_across;
    let plot_of_plant: Vec<usize> = (0..n_plants)
        .map(|p| (p / cells_across / plot_down) * plots_across + (p % cells_across) / plot_across)
        .collect();
    let n_plots = (cells_down / plot_down) * plots_across;
    let treatment_of_plot: Vec<usize> = (0..n_plots)
        .map(|q| (q / plots_across + q % plots_across) % spec.treatments.len())
        .collect();
    // One focus per plot, infected before the first scan; the others when the front reaches
    // them (Euclidean distance in cells over the treatment's speed), with a day or two of jitter.
    let mut rng = Rng::new(field.seed ^ 0x00CA_4D16_0000_0001);
    let mut infection_day = vec![None; n_plants];
    for (q, &treatment) in treatment_of_plot.iter().enumerate() {
        let members: Vec<usize> = (0..n_plants).filter(|&p| plot_of_plant[p] == q).collect();
        let focus = members[rng.index(members.len())];
        let speed = spec.treatments[treatment].spread_cells_per_week / 7.0;
        let last_day = spec.scans[spec.scans.len() - 1].1 as f64;
        for &p in &members {
            let (dr, dc) = (
                (p / cells_across) as f64 - (focus / cells_across) as f64,
                (p % cells_across) as f64 - (focus % cells_across) as f64,
            );
            let day = if p == focus {
                0.0
            } else {
                (dr * dr + dc * dc).sqrt() / speed + rng.range(0.0, 2.0)
            };
            infection_day[p] = (day <= last_day).then_some((day * 10.0).round() / 10.0);
        }
    }
    let mut campaign = Campaign {
        plot_of_plant,
        treatment_of_plot,
        infection_day,
        scenes: Vec::with_capacity(spec.scans.len()),
    };
    for (k, (_, day)) in spec.scans.iter().enumerate() {
        let codes: Vec<u32> = (0..n_plants)
            .map(|p| {
                if campaign.diseased(p, *day) {
                    spec.disease_code
                } else {
                    CLASSES[0].0
                }
            })
            .collect();
        let scan = FieldSpec {
            plant_classes: Some(codes),
            scan_seed: Some(field.seed.wrapping_mul(1000).wrapping_add(k as u64 + 1)),
            ..field.clone()
        };
        campaign.scenes.push(generate(library, &scan)?);
    }
    Ok(campaign)
}
