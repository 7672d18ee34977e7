//! Disease progress over a season of scans of the same plots.
//!
//! The input is one [`domain::PlantObservation`] per plant per scan date (what `pipeline batch` writes into its
//! predictions dataset). From them: per field, plot and date the plants, incidence, mean severity,
//! mean KL and OOD count ([`progress_table`]); per plot the area under the disease progress curve
//! of incidence and severity by the trapezoid rule over days since the first scan
//! ([`audpc_table`]); per treatment the mean AUDPC with a 95% confidence interval and Welch's
//! t-test against a control ([`compare_treatments`]); and plants tracked across dates by id or by
//! map centroid, with the date each first turned non-healthy ([`track_plants`]). No I/O here.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests: a failed unwrap is a failed test

mod audpc;
mod campaign;
mod date;
mod error;
mod stats;
mod tracking;

pub use audpc::{audpc, relative_audpc};
pub use campaign::{audpc_table, check_campaign, progress_table, AudpcRow, ProgressRow};
pub use date::{day_number, format_day};
pub use error::{Error, Result};
pub use stats::{
    compare_treatments, mean_confidence_interval, student_t_cdf, student_t_quantile, welch_t_test,
    TreatmentRow, WelchTest,
};
pub use tracking::{track_plants, MatchReport, PlantTrack, Tracking};
