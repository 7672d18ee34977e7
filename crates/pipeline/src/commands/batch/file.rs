//! The pipeline file: its TOML schema (unknown keys rejected) and its resolution into cube jobs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::commands::run::{CubeJob, PlantSource};

/// A pipeline file (TOML). Unknown keys anywhere are errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    #[serde(default)]
    pub model: ModelSection,
    #[serde(default)]
    pub read: ReadSection,
    #[serde(default)]
    pub plants: ingest::PlantConfig,
    pub outputs: OutputSection,
    pub inputs: Vec<InputEntry>,
    /// Disease progress over the dataset after the batch (`pipeline progress`), when present.
    pub progress: Option<ProgressSection>,
}

/// `[progress]`: after the batch, `pipeline progress` over the whole dataset into
/// `<dir>/progress/` (and the campaign report into `<dir>/progress-report/`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProgressSection {
    /// Polygon attribute naming the plot (`progress --plot-column`).
    pub plot_column: Option<String>,
    /// Polygon attribute naming the treatment (`progress --treatment-column`).
    pub treatment_column: Option<String>,
    /// The control treatment (`progress --control`).
    pub control: Option<String>,
    /// Centroid matching radius (`progress --match-radius-m`).
    pub match_radius_m: Option<f64>,
    /// Class name of healthy plants.
    #[serde(default = "default_healthy")]
    pub healthy_class: String,
    /// Also write the campaign report.
    #[serde(default = "yes")]
    pub report: bool,
}

fn default_healthy() -> String {
    "healthy".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ModelSection {
    /// Model file; the bundled default model when absent.
    pub path: Option<PathBuf>,
    #[serde(default = "default_device")]
    pub device: String,
    #[serde(default = "default_z_samples")]
    pub z_samples: usize,
    /// Classify every scored pixel of every plant too (`run --per-pixel`).
    #[serde(default)]
    pub per_pixel: bool,
    /// Plant pixels this close to the plant's edge are not scored (`run --pixel-erosion-px`).
    #[serde(default = "default_erosion_px")]
    pub pixel_erosion_px: usize,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            path: None,
            device: default_device(),
            z_samples: default_z_samples(),
            per_pixel: false,
            pixel_erosion_px: default_erosion_px(),
        }
    }
}

fn default_device() -> String {
    "auto".into()
}

fn default_z_samples() -> usize {
    12
}

fn default_erosion_px() -> usize {
    1
}

/// How cubes are read; an input's own `white`/`dark`/`wavelengths` win over these.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ReadSection {
    pub block_bytes: Option<usize>,
    pub envi_reader: Option<ingest::EnviReader>,
    pub wavelengths: Option<PathBuf>,
    pub white: Option<PathBuf>,
    pub dark: Option<PathBuf>,
    pub clip_max: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OutputSection {
    /// The dataset folder.
    pub dir: PathBuf,
    /// Per-cube HTML report folder (`cubes/<key>/`), with the maps.
    #[serde(default = "yes")]
    pub report: bool,
    /// Class and KL map GeoTIFFs and the quicklook (in `cubes/<key>/`), also without a report.
    #[serde(default = "yes")]
    pub maps: bool,
    /// Per-plant spectra tables (`plant_spectra/...`).
    #[serde(default)]
    pub plant_spectra: bool,
}

fn yes() -> bool {
    true
}

/// One input: a cube, or a glob of cubes (each then gets its own file stem as field id unless
/// `field-id` is given).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct InputEntry {
    pub cube: Option<PathBuf>,
    pub glob: Option<String>,
    pub field_id: Option<String>,
    /// Scan date, YYYY-MM-DD; else the cube's acquisition date.
    pub date: Option<String>,
    pub polygons: Option<PathBuf>,
    pub plant_ids: Option<PathBuf>,
    pub white: Option<PathBuf>,
    pub dark: Option<PathBuf>,
    pub wavelengths: Option<PathBuf>,
}

/// A resolved input: its key (unique in the campaign) and the job.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub key: String,
    pub job: CubeJob,
}

/// `a/b/../c` as `a/c`, without touching the file system (the path may not exist yet).
pub(super) fn normalise(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                match out.components().next_back() {
                    Some(Component::Normal(_)) => {
                        out.pop();
                    }
                    // Above the root is the root.
                    Some(Component::RootDir | Component::Prefix(_)) => {}
                    _ => out.push(".."),
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

/// Characters allowed in keys and Hive partition values; others become `_`.
pub(super) fn sanitise(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() || clean.starts_with('.') {
        format!("_{clean}")
    } else {
        clean
    }
}

fn check_date(date: &str, file: &Path, entry: usize) -> Result<()> {
    let ok = date.len() == 10
        && date.as_bytes()[4] == b'-'
        && date.as_bytes()[7] == b'-'
        && date
            .chars()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !ok {
        bail!(
            "{}: inputs[{entry}].date '{date}' is not YYYY-MM-DD",
            file.display()
        );
    }
    Ok(())
}

impl PipelineFile {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the pipeline file", path.display()))?;
        Self::parse(path, &text)
    }

    /// The file's text, already read; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let file: Self = toml::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {}",
                path.display(),
                e.to_string().trim().replace('\n', " ")
            )
        })?;
        if file.inputs.is_empty() {
            bail!("{}: no [[inputs]]", path.display());
        }
        Ok(file)
    }

    /// Every cube of the campaign, sorted by key; relative paths are relative to the file's folder.
    pub fn resolve(&self, file: &Path) -> Result<Vec<Resolved>> {
        let base = file.parent().unwrap_or(Path::new("."));
        let at = |p: &Path| {
            if p.is_absolute() {
                normalise(p)
            } else {
                normalise(&base.join(p))
            }
        };
        let mut resolved: Vec<Resolved> = Vec::new();
        for (i, entry) in self.inputs.iter().enumerate() {
            let cubes: Vec<PathBuf> = match (&entry.cube, &entry.glob) {
                (Some(cube), None) => vec![at(cube)],
                (None, Some(pattern)) => {
                    let pattern = at(Path::new(pattern));
                    let mut found: Vec<PathBuf> = glob::glob(&pattern.to_string_lossy())
                        .with_context(|| format!("{}: inputs[{i}].glob", file.display()))?
                        .filter_map(std::result::Result::ok)
                        .collect();
                    found.sort();
                    if found.is_empty() {
                        bail!(
                            "{}: inputs[{i}].glob '{}' matches no file",
                            file.display(),
                            pattern.display()
                        );
                    }
                    found
                }
                _ => bail!(
                    "{}: inputs[{i}] needs exactly one of 'cube' and 'glob'",
                    file.display()
                ),
            };
            if let Some(date) = &entry.date {
                check_date(date, file, i)?;
            }
            if entry.polygons.is_some() && entry.plant_ids.is_some() {
                bail!(
                    "{}: inputs[{i}] has both 'polygons' and 'plant-ids'",
                    file.display()
                );
            }
            let white = entry.white.as_ref().or(self.read.white.as_ref());
            let dark = entry.dark.as_ref().or(self.read.dark.as_ref());
            let calibration = match (white, dark) {
                (Some(w), Some(d)) => Some(ingest::Calibration {
                    clip_max: self.read.clip_max.unwrap_or(1.5),
                    ..ingest::Calibration::new(at(w), at(d))
                }),
                (None, None) => None,
                _ => bail!(
                    "{}: inputs[{i}]: 'white' and 'dark' go together",
                    file.display()
                ),
            };
            let defaults = ingest::ReadConfig::default();
            let read = ingest::ReadConfig {
                block_bytes: self.read.block_bytes.unwrap_or(defaults.block_bytes),
                wavelengths: entry
                    .wavelengths
                    .as_ref()
                    .or(self.read.wavelengths.as_ref())
                    .map(|p| at(p)),
                calibration,
                envi_reader: self.read.envi_reader.unwrap_or_default(),
            };
            let plants = match (&entry.polygons, &entry.plant_ids) {
                (Some(p), _) => PlantSource::Polygons(self.plants.clone(), at(p)),
                (None, Some(p)) => PlantSource::PlantIds(at(p)),
                (None, None) => PlantSource::Components(self.plants.clone()),
            };
            for cube in cubes {
                let stem = cube
                    .file_stem()
                    .map_or_else(|| "cube".into(), |s| s.to_string_lossy().into_owned());
                let field_id = entry.field_id.clone().unwrap_or_else(|| stem.clone());
                let key = if entry.field_id.is_some() && entry.glob.is_some() {
                    sanitise(&format!("{field_id}-{stem}"))
                } else {
                    sanitise(&field_id)
                };
                if let Some(other) = resolved.iter().find(|r| r.key == key) {
                    bail!(
                        "{}: two inputs make cube key '{key}' ({} and {}); give them distinct field-ids",
                        file.display(),
                        other.job.cube.display(),
                        cube.display()
                    );
                }
                resolved.push(Resolved {
                    key,
                    job: CubeJob {
                        cube,
                        field_id: Some(field_id),
                        date: entry.date.clone(),
                        read: read.clone(),
                        plants: plants.clone(),
                        z_samples: self.model.z_samples,
                        pixels: self
                            .model
                            .per_pixel
                            .then_some(crate::commands::pixels::PixelJob {
                                erosion_px: self.model.pixel_erosion_px,
                            }),
                    },
                });
            }
        }
        resolved.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(resolved)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_lexically() {
        assert_eq!(
            normalise(Path::new("pipelines/../out/x")),
            PathBuf::from("out/x")
        );
        assert_eq!(normalise(Path::new("./a/./b/..")), PathBuf::from("a"));
        assert_eq!(normalise(Path::new("../x")), PathBuf::from("../x"));
        assert_eq!(normalise(Path::new("/a/../../b")), PathBuf::from("/b"));
    }

    #[test]
    fn keys_are_safe_folder_names() {
        assert_eq!(sanitise("plot 7/A=1"), "plot_7_A_1");
        assert_eq!(sanitise(".hidden"), "_.hidden");
        assert_eq!(sanitise(""), "_");
    }

    /// Random pipeline files, built from the schema's keys (and misspelt ones) with values of
    /// every TOML type, then mutated byte by byte: parsing and resolving end in a value or an
    /// error, never a panic or a hang. 256 cases here; `scripts/fuzz` runs 1,000,000
    /// (PROPTEST_CASES) and reports the slowest case.
    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        const KEYS: &[&str] = &[
            "path",
            "device",
            "z-samples",
            "per-pixel",
            "pixel-erosion-px",
            "block-bytes",
            "envi-reader",
            "wavelengths",
            "white",
            "dark",
            "clip-max",
            "dir",
            "report",
            "maps",
            "plant-spectra",
            "cube",
            "glob",
            "field-id",
            "date",
            "polygons",
            "plant-ids",
            "index",
            "threshold",
            "opening-px",
            "min-area-px",
            "max-area-px",
            "reprot",
            "z_samples",
            "",
        ];
        const SECTIONS: &[&str] = &[
            "[model]",
            "[read]",
            "[plants]",
            "[outputs]",
            "[[inputs]]",
            "[inputs]",
            "[[outputs]]",
            "[x]",
        ];

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z0-9_.*?-]{0,12}".prop_map(|v| format!("\"{v}\"")),
                any::<i64>().prop_map(|v| v.to_string()),
                any::<f64>().prop_map(|v| format!("{v:?}")),
                any::<bool>().prop_map(|v| v.to_string()),
                Just("\"2026-07-01\"".to_string()),
                Just("\"2026-13-99\"".to_string()),
                Just("\"otsu\"".to_string()),
                Just("\"ndre\"".to_string()),
                Just("\"cuda:7\"".to_string()),
                Just("[1, \"a\", {}]".to_string()),
                Just("{ a = 1 }".to_string()),
                Just("1e400".to_string()),
                Just("18446744073709551616".to_string()),
                Just("\"\\u0000\"".to_string()),
            ]
        }

        fn document() -> impl Strategy<Value = String> {
            let line = prop_oneof![
                3 => (proptest::sample::select(KEYS), value()).prop_map(|(k, v)| format!("{k} = {v}")),
                1 => proptest::sample::select(SECTIONS).prop_map(str::to_string),
                1 => "[ -~]{0,20}",
            ];
            (
                proptest::collection::vec(line, 0..24),
                proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 0..4),
            )
                .prop_map(|(lines, edits)| {
                    let mut bytes = lines.join("\n").into_bytes();
                    for (at, byte) in edits {
                        if bytes.is_empty() {
                            bytes.push(byte);
                        } else {
                            let i = at.index(bytes.len());
                            if byte % 2 == 0 {
                                bytes[i] = byte;
                            } else {
                                bytes.remove(i);
                            }
                        }
                    }
                    String::from_utf8_lossy(&bytes).into_owned()
                })
        }

        fn slowest() -> &'static std::sync::Mutex<(f64, String)> {
            static SLOWEST: std::sync::OnceLock<std::sync::Mutex<(f64, String)>> =
                std::sync::OnceLock::new();
            SLOWEST.get_or_init(|| std::sync::Mutex::new((0.0, String::new())))
        }

        proptest! {
            #![proptest_config(ProptestConfig::default())]
            #[test]
            fn random_pipeline_files_never_panic(text in document()) {
                let dir = std::env::temp_dir().join(format!("pipeline-fuzz-{}", std::process::id()));
                let file = dir.join("campaign.toml");
                let started = std::time::Instant::now();
                if let Ok(parsed) = PipelineFile::parse(&file, &text) {
                    let _ = parsed.resolve(&file);
                }
                let seconds = started.elapsed().as_secs_f64();
                let mut slowest = slowest().lock().unwrap();
                if seconds > slowest.0 {
                    *slowest = (seconds, text.clone());
                }
                if std::env::var_os("PIPELINE_FUZZ_REPORT").is_some() && seconds > 1.0 {
                    panic!("a case took {seconds:.2} s (a hang): {text:?}");
                }
            }
        }

        /// Printed by `scripts/fuzz` after the cases above ran (same process, test order).
        #[test]
        fn zz_report_the_slowest_case() {
            if std::env::var_os("PIPELINE_FUZZ_REPORT").is_some() {
                let slowest = slowest().lock().unwrap();
                println!("pipeline-file fuzz: slowest case {:.6} s", slowest.0);
            }
        }
    }
}
