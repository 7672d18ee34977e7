//! Command-line types; their doc comments are the `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Hyperspectral field scans to per-plant crop-disease calls with a Variational Information
/// Bottleneck classifier.
#[derive(Debug, Parser)]
#[command(name = "pipeline", version, about, long_about = None)]
pub struct Cli {
    /// More log detail on stderr (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Threads for reading cubes and for inference on the CPU (default: every core; `batch`
    /// shares them among its --jobs). Outputs are the same bits whatever the number.
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Find the plants in a cube and call each one's disease: writes one Parquet row per plant.
    Run(RunArgs),
    /// Train a VIB classifier from cubes with label rasters or spectral tables; or, with
    /// --target-column / --severity, a VIB regression model of a continuous target (severity).
    Train(TrainArgs),
    /// Score a model against labelled cubes or tables: accuracy, kappa, per-class F1, KL (or, for
    /// a regression model, RMSE, MAE, R^2, Spearman's rho, interval coverage); writes METRICS.json.
    Evaluate(EvaluateArgs),
    /// Train one model per beta and chart the information plane: both bounds per beta, accuracy,
    /// calibration; keeps the model with the best validation NLL.
    Sweep(SweepArgs),
    /// Describe a cube: size, data type, interleave, byte order, bands and wavelengths, bad bands,
    /// scale factor, ignore value, CRS and pixel size; optionally an RGB quicklook.
    Inspect(InspectArgs),
    /// Generate the synthetic sample field scans (ENVI and GeoTIFF, with ground-truth labels).
    Synth(SynthArgs),
    /// Run a campaign from a pipeline file (TOML) into a Hive-partitioned dataset: resumable,
    /// safe to kill, concurrent (--jobs), shardable (--shard K/N or a Slurm array).
    Batch(BatchArgs),
    /// Combine batch output folders (e.g. one per shard) into one dataset, checking every file.
    Merge(MergeArgs),
    /// Disease progress over a campaign dataset (`batch` output): incidence, severity, KL and OOD
    /// per field, plot and date; AUDPC per plot; treatments compared against a control; plants
    /// tracked across dates with the date each first showed symptoms.
    Progress(ProgressArgs),
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// The pipeline file (see pipelines/ and docs/batch.md).
    pub file: PathBuf,
    /// Validate the file (schema, inputs, model) and list the cubes; process nothing.
    #[arg(long)]
    pub check: bool,
    /// Cubes processed at the same time (one model, shared).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Memory the concurrent cubes may claim together, MiB (estimated per cube from its size);
    /// default half of the memory available.
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// Process only shard K of N (0 <= K < N): inputs i with i mod N = K, in key order. Without
    /// it, SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT are used when set.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Dataset folder, instead of the file's [outputs] dir.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Redo every cube, even those whose outputs are complete for the same settings.
    #[arg(long)]
    pub force: bool,
    /// On SIGTERM or SIGINT, start no new cube and give the running ones this many seconds to
    /// finish; then abandon them (nothing half-written enters the dataset) and exit with status
    /// 75. A second signal ends at once. Slurm sends SIGKILL 30 s after SIGTERM by default.
    #[arg(long, value_name = "SECONDS", default_value_t = 20.0)]
    pub stop_grace: f64,
}

#[derive(Debug, Args)]
pub struct ProgressArgs {
    /// The dataset folder `pipeline batch` wrote (its predictions/field_id=.../date=... parts).
    pub dataset: PathBuf,
    /// Output folder, written whole: progress.parquet, audpc.parquet, plants.parquet,
    /// matches.parquet, and treatments.parquet with --treatment-column.
    #[arg(long)]
    pub out: PathBuf,
    /// Polygon attribute naming each plant's plot (e.g. `plot`); without it each field is one plot.
    #[arg(long, value_name = "COLUMN")]
    pub plot_column: Option<String>,
    /// Polygon attribute naming each plot's treatment (e.g. `treatment`).
    #[arg(long, value_name = "COLUMN")]
    pub treatment_column: Option<String>,
    /// The control treatment: every other is compared with it by Welch's t-test on plot AUDPC.
    #[arg(long, value_name = "NAME", requires = "treatment_column")]
    pub control: Option<String>,
    /// Match plants across dates by map centroid within this radius (metres), for segmented
    /// plants whose ids change between scans; without it the plant id is the key (polygons,
    /// plant-id rasters).
    #[arg(long, value_name = "METRES")]
    pub match_radius_m: Option<f64>,
    /// Class name of healthy plants: every other call counts as diseased.
    #[arg(long, default_value = "healthy", value_name = "NAME")]
    pub healthy_class: String,
    /// Also write the campaign report into this new folder: index.html (no network needed) with
    /// the progress curves per treatment (or field), the AUDPC and treatment tables, every scan
    /// linked to its field report, and the cubes that failed.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Replace the output folder if it exists.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The combined dataset folder (created if missing; cubes already there are checked too).
    #[arg(long)]
    pub out: PathBuf,
    /// Batch output folders to combine.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
}

/// Compute device.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// auto (CUDA when available, else CPU), cpu, cuda or cuda:N. An explicit CUDA request
    /// without a GPU is an error.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// How vegetation and plants are found.
#[derive(Debug, Clone, Args)]
pub struct PlantArgs {
    /// Vegetation index for the mask: ndvi (bands nearest 670 and 800 nm) or ndre (red edge,
    /// 720 and 800 nm).
    #[arg(long, value_enum, default_value_t = Index::Ndvi)]
    pub index: Index,
    /// Index value at or above which a pixel is vegetation, or `otsu` to pick it from the scene's
    /// histogram (never below 0.3 NDVI / 0.15 NDRE).
    #[arg(long, default_value = "otsu")]
    pub threshold: ingest::Threshold,
    /// Radius in pixels of the square morphological opening of the mask (0: none): removes
    /// specks and splits regions joined by thin bridges.
    #[arg(long, default_value_t = 1)]
    pub opening_px: usize,
    /// Vegetation regions (8-connected) smaller than this many pixels are not plants.
    #[arg(long, default_value_t = 10)]
    pub min_area_px: u64,
    /// Regions larger than this many pixels are not plants (default: no limit).
    #[arg(long)]
    pub max_area_px: Option<u64>,
    /// Plants from plant or plot polygons (GeoJSON, Shapefile, GeoPackage; reprojected into the
    /// cube's CRS): each polygon's vegetation pixels make one plant, its attributes become columns.
    #[arg(long, value_name = "FILE", conflicts_with = "plant_ids")]
    pub polygons: Option<PathBuf>,
    /// Plants from a plant-id raster of the cube's size (pixel value = plant id, 0 = none; no
    /// vegetation mask applied).
    #[arg(long, value_name = "RASTER")]
    pub plant_ids: Option<PathBuf>,
}

/// Vegetation index of the mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Index {
    Ndvi,
    Ndre,
}

impl PlantArgs {
    /// How these arguments find plants.
    pub fn source(&self) -> crate::commands::PlantSource {
        use crate::commands::PlantSource;
        match (&self.polygons, &self.plant_ids) {
            (Some(polygons), _) => PlantSource::Polygons(self.config(), polygons.clone()),
            (None, Some(ids)) => PlantSource::PlantIds(ids.clone()),
            (None, None) => PlantSource::Components(self.config()),
        }
    }

    pub fn config(&self) -> ingest::PlantConfig {
        ingest::PlantConfig {
            index: match self.index {
                Index::Ndvi => ingest::VegetationIndex::Ndvi,
                Index::Ndre => ingest::VegetationIndex::Ndre,
            },
            threshold: self.threshold,
            opening_radius_px: self.opening_px,
            min_plant_area_px: self.min_area_px,
            max_plant_area_px: self.max_area_px,
            ..ingest::PlantConfig::default()
        }
    }
}

/// How cubes are read: wavelengths for bare headers, and radiometric calibration.
#[derive(Debug, Clone, Args)]
pub struct ReadArgs {
    /// Band wavelengths from a text file, one band per line (`wavelength[,fwhm]`, optional header
    /// row naming the unit, e.g. `wavelength_nm` or `wavelength_um`), replacing the cube's own.
    #[arg(long, value_name = "FILE")]
    pub wavelengths: Option<PathBuf>,
    /// White reference (panel capture, same width and bands): with --dark, the cube's raw values
    /// become reflectance = (raw - dark) / (white - dark), references averaged along track.
    #[arg(long, requires = "dark", value_name = "CUBE")]
    pub white: Option<PathBuf>,
    /// Dark reference (shutter closed), same width and bands.
    #[arg(long, requires = "white", value_name = "CUBE")]
    pub dark: Option<PathBuf>,
    /// Calibrated reflectance is clipped to [0, this]; the clipped count is reported.
    #[arg(long, default_value_t = 1.5, requires = "white")]
    pub clip_max: f64,
}

impl ReadArgs {
    pub fn config(&self) -> ingest::ReadConfig {
        ingest::ReadConfig {
            wavelengths: self.wavelengths.clone(),
            calibration: match (&self.white, &self.dark) {
                (Some(white), Some(dark)) => Some(ingest::Calibration {
                    clip_max: self.clip_max,
                    ..ingest::Calibration::new(white.clone(), dark.clone())
                }),
                _ => None,
            },
            ..ingest::ReadConfig::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The cube: ENVI header (.hdr), ENVI data file, or GeoTIFF.
    #[arg(long)]
    pub cube: PathBuf,
    /// Model file (.safetensors); the bundled default model when omitted.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Per-plant predictions table to write (Parquet).
    #[arg(long)]
    pub out: PathBuf,
    /// Field id written in every row; the cube's file stem when omitted.
    #[arg(long)]
    pub field_id: Option<String>,
    /// Also write the field summary (Parquet, one row): plants per class, disease incidence, KL
    /// mean and percentiles, OOD count, model and beta.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Also write the class map (GeoTIFF in the cube's georeference: each plant's pixels carry its
    /// predicted class code, with a colour table and category names; 0 = no plant).
    #[arg(long, value_name = "FILE")]
    pub class_map: Option<PathBuf>,
    /// Also write the KL map (float32 GeoTIFF: each plant's KL in nats on its pixels, NaN elsewhere).
    #[arg(long, value_name = "FILE")]
    pub kl_map: Option<PathBuf>,
    /// Also write a quicklook PNG: true colour with plant outlines in their class colour,
    /// out-of-distribution plants in magenta with a cross.
    #[arg(long, value_name = "FILE")]
    pub quicklook: Option<PathBuf>,
    /// Write a field report into this new folder: index.html (open it in a browser, no network
    /// needed), the summary, maps and figures it shows.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Also write each plant's spectra (Parquet): mean reflectance per band in columns named by
    /// wavelength (a spectral table `train --spectra` reads) and `std_<wavelength>`.
    #[arg(long, value_name = "FILE")]
    pub plant_spectra: Option<PathBuf>,
    /// Samples of z averaged per prediction.
    #[arg(long, default_value_t = 12)]
    pub z_samples: usize,
    /// A regression model (`train --target-column` or `--severity`): every plant's mean spectrum
    /// also gets its predicted target with a 90% interval (columns predicted_<target>, _sd,
    /// _lower, _upper, _kl_nats, _ood), beside the classifier's call.
    #[arg(long, value_name = "FILE")]
    pub severity_model: Option<PathBuf>,
    /// Also classify every pixel of every plant: per plant, severity_pct (share of its scored
    /// pixels not called healthy), pixels_<class> counts, the pixel-vote call and the share of
    /// pixels flagged OOD; per-pixel maps with --pixel-class-map / --pixel-kl-map; the lesion map
    /// and severity histogram in the report.
    #[arg(long)]
    pub per_pixel: bool,
    /// With --per-pixel: plant pixels within this many pixels of the plant's edge are not scored
    /// (they mix plant and soil); 0 scores every pixel. Plants too thin to keep a core are scored
    /// on all their pixels.
    #[arg(long, default_value_t = 1, value_name = "PX", requires = "per_pixel")]
    pub pixel_erosion_px: usize,
    /// With --per-pixel: per-pixel class map (GeoTIFF, class code of each scored pixel, colour
    /// table and category names; 0 = not scored).
    #[arg(long, value_name = "FILE", requires = "per_pixel")]
    pub pixel_class_map: Option<PathBuf>,
    /// With --per-pixel: per-pixel KL map (float32 GeoTIFF, nats; NaN where not scored).
    #[arg(long, value_name = "FILE", requires = "per_pixel")]
    pub pixel_kl_map: Option<PathBuf>,
    /// Replace the output if it exists.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub plants: PlantArgs,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// The encoder's first stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Encoder {
    /// Fully connected layers on the whole spectrum.
    Mlp,
    /// Two 1D convolutions along the bands, then the fully connected layers.
    Conv,
}

impl From<Encoder> for model::EncoderKind {
    fn from(e: Encoder) -> Self {
        match e {
            Encoder::Mlp => model::EncoderKind::Mlp,
            Encoder::Conv => model::EncoderKind::Conv,
        }
    }
}

/// What one training or evaluation sample is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Unit {
    /// Each connected region of one label is a sample: its mean spectrum.
    Plant,
    /// Every labelled pixel is a sample.
    Pixel,
}

/// The network and its training, shared by `train` and `sweep`. The options marked "searched" are
/// chosen by cross-validation unless given (or `--no-tune`, which uses the defaults shown).
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Dimensions of the latent z [searched; default 16].
    #[arg(long)]
    pub latent_dim: Option<usize>,
    /// Widths of the encoder's hidden layers, comma-separated [searched with --latent-dim;
    /// default 256,128].
    #[arg(long, value_delimiter = ',', value_name = "WIDTH,...")]
    pub hidden_dims: Option<Vec<usize>>,
    /// Decoupled (AdamW) weight decay [searched; default 0].
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Standard deviation of Gaussian noise added to the standardised spectra while training
    /// [searched with --weight-decay; default 0].
    #[arg(long)]
    pub input_noise: Option<f64>,
    /// Networks trained with seeds SEED, SEED+1, ... whose probabilities are averaged (one
    /// model file).
    #[arg(long, default_value_t = 5)]
    pub ensemble: usize,
    /// Maximum passes over the training data, per beta in a sweep (early stopping on validation
    /// loss may end sooner; a tuned model is refitted for the epochs cross-validation found).
    #[arg(long, default_value_t = 300)]
    pub epochs: usize,
    /// Fraction of the plants held out for early stopping, calibration and OOD thresholds with
    /// --no-tune (0: none; train for exactly --epochs).
    #[arg(long, default_value_t = 0.2)]
    pub validation_fraction: f64,
    /// Seed of the folds, validation split, initialisation and minibatches (the same for every
    /// beta in a sweep).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Encoder: fully connected (mlp) or 1D convolutions along the spectrum (conv).
    #[arg(long, value_enum, default_value = "mlp")]
    pub encoder: Encoder,
    /// Train exactly the options given (defaults for the rest): no cross-validated selection.
    #[arg(long)]
    pub no_tune: bool,
    /// Budget of the cross-validated selection, in seconds of training work at a reference
    /// speed (about wall-clock seconds on 2 cores; the search is the same on any machine).
    #[arg(long, default_value_t = 120.0, value_name = "SECONDS")]
    pub tune_budget: f64,
    /// Folds of the cross-validation (fewer when a class has fewer plants).
    #[arg(long, default_value_t = 5)]
    pub tune_folds: usize,
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
}

/// Spectral preprocessing, stored in the model and applied identically at prediction; in this
/// order: band selection, continuum removal, Savitzky-Golay, SNV.
#[derive(Debug, Clone, Args)]
pub struct PreprocessArgs {
    /// Keep only bands within MIN,MAX nm.
    #[arg(long, value_delimiter = ',', value_name = "MIN,MAX")]
    pub band_range_nm: Option<Vec<f64>>,
    /// Drop the water-vapour absorption bands (1340-1460 and 1790-1960 nm).
    #[arg(long)]
    pub exclude_water_bands: bool,
    /// Divide each spectrum by its upper convex hull.
    #[arg(long)]
    pub continuum_removal: bool,
    /// Savitzky-Golay filter WINDOW,ORDER,DERIVATIVE (e.g. 11,2,1 for a smoothed first derivative).
    #[arg(long, value_delimiter = ',', value_name = "WINDOW,ORDER,DERIVATIVE")]
    pub savgol: Option<Vec<usize>>,
    /// Standard normal variate: each spectrum centred and scaled by its own mean and deviation.
    #[arg(long)]
    pub snv: bool,
}

/// Where labelled spectra come from: cubes with label rasters, or spectral tables.
#[derive(Debug, Clone, Args)]
pub struct SamplesArgs {
    /// Cube; repeat with --labels (or --severity) for several fields (paired in order).
    #[arg(long, required_unless_present = "spectra", conflicts_with = "spectra")]
    pub cube: Vec<PathBuf>,
    /// Label raster of each cube (0 = unlabelled; class names from the ENVI `class names` field).
    #[arg(
        long,
        required_unless_present_any = ["spectra", "severity"],
        conflicts_with_all = ["spectra", "severity"]
    )]
    pub labels: Vec<PathBuf>,
    /// Severity raster of each cube, in place of --labels: one band of numbers, the share (0-1) of
    /// symptomatic tissue of the pixel or of its plant; no-data, NaN and negative pixels are
    /// unlabelled. Trains or evaluates a regression model (a Gaussian head on the bottleneck).
    #[arg(long, conflicts_with = "spectra")]
    pub severity: Vec<PathBuf>,
    /// Spectral table (CSV or Parquet): one row per spectrum, one column per band named by its
    /// wavelength in nm (`505`, `515.5`); repeatable.
    #[arg(long)]
    pub spectra: Vec<PathBuf>,
    /// Column of the spectral table holding the labels (class names or integer codes).
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Column of the spectral table holding a continuous target (severity 0-1, a disease score),
    /// in place of class labels: trains or evaluates a regression model (a Gaussian head on the
    /// bottleneck) whose predictions carry a mean and a 90% interval.
    #[arg(long, value_name = "COLUMN")]
    pub target_column: Option<String>,
    /// Column of the spectral table grouping rows (plant or leaf id): a group never straddles the
    /// validation split. Without it each row is its own group.
    #[arg(long)]
    pub group_column: Option<String>,
    #[command(flatten)]
    pub read: ReadArgs,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub samples: SamplesArgs,
    /// Training samples: every labelled pixel (validation still holds out whole plants), or one
    /// mean spectrum per labelled plant.
    #[arg(long, value_enum, default_value = "pixel")]
    pub unit: Unit,
    /// Model file to write (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Weight of the KL term (the bottleneck's price per nat) [searched; default 1e-3].
    #[arg(long)]
    pub beta: Option<f64>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Train the same network without the bottleneck (z = mu, no sampling, no KL): the baseline
    /// to compare the VIB against. Its predictions carry no rate (KL 0).
    #[arg(long)]
    pub deterministic: bool,
    /// Replace the output if it exists.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub samples: SamplesArgs,
    /// Evaluation samples: one mean spectrum per labelled plant (as `run` sees plants), or every
    /// labelled pixel.
    #[arg(long, value_enum, default_value = "plant")]
    pub unit: Unit,
    /// Model file; the bundled default model when omitted.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Metrics to write (JSON).
    #[arg(long)]
    pub metrics: PathBuf,
    /// Also draw the reliability diagram (accuracy against confidence, before and after the
    /// model's temperature) to PATH.svg and PATH.png.
    #[arg(long, value_name = "PATH")]
    pub reliability: Option<PathBuf>,
    /// Also write every sample's prediction beside its truth (Parquet): for a classifier the
    /// true and predicted class, class probabilities, entropy, KL and OOD flag; for a regression
    /// model the target, predicted mean, sd, interval, KL and OOD flag.
    #[arg(long, value_name = "PATH")]
    pub predictions: Option<PathBuf>,
    /// A cube of out-of-distribution spectra (soil, another crop): reports how well KL and
    /// entropy separate them from the evaluation samples (AUROC) and how many the model flags.
    #[arg(long)]
    pub ood_cube: Vec<PathBuf>,
    /// Label raster per --ood-cube: only its non-zero pixels are out of distribution (without it,
    /// every pixel is).
    #[arg(long)]
    pub ood_labels: Vec<PathBuf>,
    /// A spectral table of out-of-distribution spectra (CSV or Parquet, band columns named by
    /// wavelength in nm; other columns ignored); repeatable.
    #[arg(long)]
    pub ood_spectra: Vec<PathBuf>,
    /// At most this many out-of-distribution pixels per cube (evenly strided).
    #[arg(long, default_value_t = 20000)]
    pub ood_max_pixels: usize,
    /// Samples of z averaged per prediction.
    #[arg(long, default_value_t = 12)]
    pub z_samples: usize,
    /// Replace the output if it exists.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// The spectral library folder (canopy.hdr/img/csv, soil.hdr/img).
    #[arg(long, default_value = "crates/synth/library")]
    pub library: PathBuf,
    /// Where to write the fields.
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Fields to generate (default: all of field-a, field-b, lesions-a, lesions-b, and the
    /// five-scan example campaign into OUT_DIR/campaign/).
    #[arg(long, value_delimiter = ',')]
    pub field: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub samples: SamplesArgs,
    #[arg(long, value_enum, default_value = "pixel")]
    pub unit: Unit,
    /// The betas to train, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1e-6,1e-5,1e-4,1e-3,1e-2,1e-1,1"
    )]
    pub betas: Vec<f64>,
    /// Output folder: sweep.parquet, sweep.json, information-plane and beta-curves (SVG, PNG), and
    /// the recommended model.safetensors with its history.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Replace outputs already in the folder.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The cube: ENVI header (.hdr), ENVI data file, or GeoTIFF.
    #[arg(long)]
    pub cube: PathBuf,
    /// Write a true-colour quicklook PNG (bands nearest 640, 550, 460 nm, 2-98% stretch).
    #[arg(long)]
    pub quicklook: Option<PathBuf>,
    /// Longest side of the quicklook in pixels (the cube is decimated to fit).
    #[arg(long, default_value_t = 2048)]
    pub quicklook_max_px: usize,
    /// Print the description as JSON.
    #[arg(long)]
    pub json: bool,
    /// Replace the quicklook if it exists.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub read: ReadArgs,
}
