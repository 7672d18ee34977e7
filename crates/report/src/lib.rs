//! Report writers: per-plant predictions and other tables as Parquet (polars), sweep figures as
//! SVG and PNG (plotters). polars and plotters stay inside this crate.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests: a failed unwrap is a failed test

mod campaign;
mod dataset;
mod error;
mod field_plots;
mod html;
mod maps;
mod plot;
mod predictions;
mod reliability;
mod spectra_table;
mod summary;
mod table;

pub use campaign::{write_campaign_report, CampaignReport, ProgressCurve, ScanLink, TextTable};
pub use dataset::{read_dataset_plants, DatasetColumns};
pub use error::{Error, Result};
pub use field_plots::{
    histogram, write_kl_histogram, write_probability_distributions, write_severity_histogram,
};
pub use html::{escape, report_html, write_report_html, ModelReport, ReportImages};
pub use maps::{
    class_map_rgb, draw_plant_outlines, paint_pixel_classes, pixel_class_rgb, OOD_COLOUR,
};
pub use plot::{write_png_rgb, write_sweep_plots, SweepPoint};
pub use predictions::{
    probability_column, write_prediction_part, write_predictions, PREDICTIONS_SCHEMA_VERSION,
};
pub use reliability::{write_reliability_diagram, ReliabilityCurve, ReliabilityPoint};
pub use spectra_table::{read_spectral_table, SpectralTable};
pub use summary::{percentile_sorted, write_field_summaries, write_summary_part, FieldSummary};
pub use table::{write_table, Table, Values};
