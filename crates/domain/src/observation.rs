/// One plant on one scan date of a campaign, as a batch dataset records it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlantObservation {
    pub field_id: String,
    /// Scan date, YYYY-MM-DD.
    pub date: String,
    /// The plot the plant belongs to (a polygon attribute), or the field id when plots are not
    /// distinguished.
    pub plot_id: String,
    /// The plot's treatment (a polygon attribute), when the campaign has one.
    pub treatment: Option<String>,
    /// The plant's id in its cube: stable across dates with polygons or plant-id rasters.
    pub plant_id: u32,
    /// Centroid in map coordinates (metres of a projected CRS), when the cube is georeferenced.
    pub x: Option<f64>,
    pub y: Option<f64>,
    /// The call is not healthy.
    pub diseased: bool,
    /// Share of the plant's scored pixels not called healthy (`--per-pixel`), %.
    pub severity_pct: Option<f64>,
    pub kl_nats: f64,
    pub ood: bool,
    pub model_id: String,
}
