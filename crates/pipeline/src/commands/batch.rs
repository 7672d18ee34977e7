//! `pipeline batch`: a campaign of cubes from a pipeline file, into a Hive-partitioned dataset;
//! resumable, kill-safe, concurrent, shardable.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Instant, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use model::VibModel;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::run::{write_plant_spectra, write_report, CubeJob, PlantSource};
use crate::cli::BatchArgs;
use crate::model_source;

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
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            path: None,
            device: default_device(),
            z_samples: default_z_samples(),
        }
    }
}

fn default_device() -> String {
    "auto".into()
}

fn default_z_samples() -> usize {
    12
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
fn normalise(path: &Path) -> PathBuf {
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
fn sanitise(text: &str) -> String {
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
        let file: Self = toml::from_str(&text).map_err(|e| {
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
                    },
                });
            }
        }
        resolved.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(resolved)
    }
}

/// `K/N` (0 <= K < N), else the Slurm array variables, else everything.
pub fn shard(arg: Option<&str>) -> Result<Option<(usize, usize)>> {
    let parse = |k: &str, n: &str, what: &str| -> Result<(usize, usize)> {
        let (k, n): (usize, usize) = (
            k.trim()
                .parse()
                .with_context(|| format!("{what}: '{k}' is not a number"))?,
            n.trim()
                .parse()
                .with_context(|| format!("{what}: '{n}' is not a number"))?,
        );
        if n == 0 || k >= n {
            bail!("{what}: shard {k} of {n} does not exist (0 <= K < N)");
        }
        Ok((k, n))
    };
    if let Some(arg) = arg {
        let Some((k, n)) = arg.split_once('/') else {
            bail!("--shard '{arg}' is not K/N");
        };
        return parse(k, n, "--shard").map(Some);
    }
    match (
        std::env::var("SLURM_ARRAY_TASK_ID"),
        std::env::var("SLURM_ARRAY_TASK_COUNT"),
    ) {
        (Ok(k), Ok(n)) => {
            let min: usize = std::env::var("SLURM_ARRAY_TASK_MIN")
                .ok()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            let k: usize = k.trim().parse().context("SLURM_ARRAY_TASK_ID")?;
            parse(
                &(k.saturating_sub(min)).to_string(),
                &n,
                "SLURM_ARRAY_TASK_*",
            )
            .map(Some)
        }
        _ => Ok(None),
    }
}

/// One file written for a cube: path relative to the dataset folder, size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// A file the cube was read from, as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    pub path: String,
    pub bytes: u64,
    pub modified_ns: u128,
}

/// Written last for each cube: its outputs are complete exactly when this exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub key: String,
    pub cube: String,
    pub field_id: String,
    pub date: String,
    pub config_hash: String,
    pub model_id: String,
    pub pipeline_version: String,
    pub inputs: Vec<InputRecord>,
    pub outputs: Vec<OutputRecord>,
    pub plants: usize,
    pub seconds: f64,
}

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// The files a cube is read from (data, header, references, polygons), with size and mtime.
fn input_records(job: &CubeJob) -> Result<Vec<InputRecord>> {
    let files = ingest::locate(&job.cube)?;
    let mut paths = vec![files.data.clone()];
    paths.extend(files.header.clone());
    if let Some(c) = &job.read.calibration {
        paths.push(c.white.clone());
        paths.push(c.dark.clone());
    }
    paths.extend(job.read.wavelengths.clone());
    match &job.plants {
        PlantSource::Polygons(_, p) | PlantSource::PlantIds(p) => paths.push(p.clone()),
        PlantSource::Components(_) => {}
    }
    paths
        .iter()
        .map(|p| {
            let meta =
                std::fs::metadata(p).with_context(|| format!("{}: cannot stat", p.display()))?;
            Ok(InputRecord {
                path: p.display().to_string(),
                bytes: meta.len(),
                modified_ns: meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos()),
            })
        })
        .collect()
}

/// What decides a cube's outputs: the job, the model, the output choices, this version.
fn config_hash(job: &CubeJob, model_id: &str, outputs: &OutputSection) -> String {
    let text = serde_json::json!({
        "job": job,
        "model_id": model_id,
        "outputs": { "report": outputs.report, "maps": outputs.maps, "plant_spectra": outputs.plant_spectra },
        "version": env!("CARGO_PKG_VERSION"),
    })
    .to_string();
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

fn manifest_path(out: &Path, key: &str) -> PathBuf {
    out.join("manifests").join(format!("{key}.json"))
}

fn read_manifest(out: &Path, key: &str) -> Option<Manifest> {
    let text = std::fs::read_to_string(manifest_path(out, key)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The cube's outputs are complete and current: same settings, same inputs, every output present
/// with its recorded checksum.
fn up_to_date(out: &Path, key: &str, hash: &str, inputs: &[InputRecord]) -> bool {
    let Some(manifest) = read_manifest(out, key) else {
        return false;
    };
    manifest.config_hash == hash
        && manifest.inputs == inputs
        && manifest.outputs.iter().all(|o| {
            let path = out.join(&o.path);
            std::fs::metadata(&path).is_ok_and(|m| m.len() == o.bytes)
                && sha256_file(&path).is_ok_and(|h| h == o.sha256)
        })
}

/// All files under `dir`, relative to it.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                files.push(relative.to_path_buf());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The staging folder of this process for one cube: hidden (`.staging`), so dataset readers and
/// globs never see half-written files.
fn staging_dir(out: &Path, key: &str) -> PathBuf {
    out.join(".staging")
        .join(format!("{key}.{}.{}", hostname(), std::process::id()))
}

/// This machine's name, without dots (they separate the parts of staging folder names).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| sanitise(h.trim()).replace('.', "_"))
        .unwrap_or_else(|_| "host".into())
}

/// Remove staging folders left by killed runs on this host (their process is gone).
fn clean_stale_staging(out: &Path) {
    let Ok(entries) = std::fs::read_dir(out.join(".staging")) else {
        return;
    };
    let host = hostname();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut parts = name.rsplitn(3, '.');
        let (Some(pid), Some(h)) = (parts.next(), parts.next()) else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if h == host && !alive {
            tracing::info!(staging = %entry.path().display(), "removing what a killed run left");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// What happened to one cube.
#[derive(Debug)]
enum Outcome {
    Done { plants: usize, seconds: f64 },
    UpToDate,
    Failed(String),
}

struct Campaign<'a> {
    out: &'a Path,
    outputs: &'a OutputSection,
    model: &'a Mutex<VibModel>,
    card: model::ModelCard,
    model_id: String,
    model_name: String,
    force: bool,
}

impl Campaign<'_> {
    /// Process one cube; `stage` names what it is doing (the cube's progress line).
    fn process(&self, item: &Resolved, stage: &dyn Fn(&str)) -> Result<Outcome> {
        stage("checking the outputs");
        let inputs = input_records(&item.job)?;
        let hash = config_hash(&item.job, &self.model_id, self.outputs);
        if !self.force && up_to_date(self.out, &item.key, &hash, &inputs) {
            return Ok(Outcome::UpToDate);
        }
        let started = Instant::now();
        let staging = staging_dir(self.out, &item.key);
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?;
        }
        std::fs::create_dir_all(&staging)
            .with_context(|| format!("creating {}", staging.display()))?;
        let result = self.stage(item, &staging, &hash, inputs, started, stage);
        let _ = std::fs::remove_dir_all(&staging);
        result
    }

    /// Analyse, write everything into `staging`, then move it into the dataset; manifest last.
    fn stage(
        &self,
        item: &Resolved,
        staging: &Path,
        hash: &str,
        inputs: Vec<InputRecord>,
        started: Instant,
        stage: &dyn Fn(&str),
    ) -> Result<Outcome> {
        stage("reading: mask, plants, spectra, calls");
        let analysed = super::run::analyse_with(
            &item.job,
            &self.card,
            &self.model_id,
            &self.model_name,
            |spectra, n, z| {
                // One model for all workers; libtorch tensors are Send but not Sync, so the
                // (short) prediction step takes turns.
                let model = self
                    .model
                    .lock()
                    .map_err(|_| anyhow::anyhow!("the model lock is poisoned"))?;
                Ok(model.predict(spectra, n, z, 0)?)
            },
        )?;
        stage(&format!(
            "writing {} plants: tables, maps, report",
            analysed.table.plants.len()
        ));
        let table = &analysed.table;
        let date = sanitise(table.scan_date.as_deref().unwrap_or("unknown"));
        let partition = format!("field_id={}/date={date}", sanitise(&table.field_id));
        let part = format!("part-{}.parquet", item.key);
        let mut written: Vec<String> = Vec::new();
        let predictions = format!("predictions/{partition}/{part}");
        let summaries = format!("summaries/{partition}/{part}");
        for relative in [&predictions, &summaries] {
            std::fs::create_dir_all(staging.join(relative).parent().unwrap_or(staging))?;
        }
        // `field_id` is a partition column: it comes from the folder names, not the files.
        report::write_prediction_part(
            &staging.join(&predictions),
            table,
            &analysed.metadata,
            &["field_id"],
        )?;
        written.push(predictions);
        report::write_summary_part(
            &staging.join(&summaries),
            std::slice::from_ref(&analysed.summary),
            &analysed.metadata,
            &["field_id"],
        )?;
        written.push(summaries);
        if self.outputs.plant_spectra {
            let spectra = format!("plant_spectra/{partition}/{part}");
            std::fs::create_dir_all(staging.join(&spectra).parent().unwrap_or(staging))?;
            write_plant_spectra(&staging.join(&spectra), &table.field_id, &analysed.plants)?;
            written.push(spectra);
        }
        let cube_dir = format!("cubes/{}", item.key);
        if self.outputs.report {
            std::fs::create_dir_all(staging.join("cubes"))?;
            let model = self
                .model
                .lock()
                .map_err(|_| anyhow::anyhow!("the model lock is poisoned"))?;
            write_report(
                &staging.join(&cube_dir),
                &analysed.maps(),
                &analysed.summary,
                &model,
                &self.model_name,
                &analysed.metadata,
                false,
            )?;
        } else if self.outputs.maps {
            let dir = staging.join(&cube_dir);
            std::fs::create_dir_all(&dir)?;
            let maps = analysed.maps();
            maps.write_class_map(&dir.join("class-map.tif"))?;
            maps.write_kl_map(&dir.join("kl-map.tif"))?;
            if let Err(e) = maps.write_quicklook(&dir.join("quicklook.png")) {
                tracing::warn!(cube = %item.job.cube.display(), "no quicklook: {e:#}");
            }
        }
        if self.outputs.report || self.outputs.maps {
            for file in files_under(&staging.join(&cube_dir))? {
                written.push(format!("{cube_dir}/{}", file.display()));
            }
        }
        stage("moving into the dataset");
        // Replace the cube's previous outputs: its manifest goes first, so that a run killed
        // from here on redoes the cube.
        let previous = read_manifest(self.out, &item.key);
        let manifest_file = manifest_path(self.out, &item.key);
        if manifest_file.exists() {
            std::fs::remove_file(&manifest_file)?;
        }
        if let Some(previous) = previous {
            for o in previous.outputs {
                if !written.contains(&o.path) {
                    let _ = std::fs::remove_file(self.out.join(&o.path));
                }
            }
        }
        let final_cube_dir = self.out.join(&cube_dir);
        if final_cube_dir.exists() {
            std::fs::remove_dir_all(&final_cube_dir)?;
        }
        let mut records = Vec::new();
        for relative in &written {
            let (from, to) = (staging.join(relative), self.out.join(relative));
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let bytes = std::fs::metadata(&from)?.len();
            let sha256 = sha256_file(&from)?;
            std::fs::rename(&from, &to)
                .with_context(|| format!("moving {} into {}", from.display(), to.display()))?;
            records.push(OutputRecord {
                path: relative.clone(),
                bytes,
                sha256,
            });
        }
        let manifest = Manifest {
            key: item.key.clone(),
            cube: item.job.cube.display().to_string(),
            field_id: table.field_id.clone(),
            date,
            config_hash: hash.to_string(),
            model_id: self.model_id.clone(),
            pipeline_version: env!("CARGO_PKG_VERSION").into(),
            inputs,
            outputs: records,
            plants: table.plants.len(),
            seconds: started.elapsed().as_secs_f64(),
        };
        let staged_manifest = staging.join("manifest.json");
        std::fs::write(&staged_manifest, serde_json::to_string_pretty(&manifest)?)?;
        std::fs::create_dir_all(self.out.join("manifests"))?;
        std::fs::rename(&staged_manifest, &manifest_file)?;
        Ok(Outcome::Done {
            plants: manifest.plants,
            seconds: manifest.seconds,
        })
    }
}

/// Rough peak memory of analysing a cube: whole-scene rasters (~32 bytes a pixel) and the blocks.
fn memory_estimate(job: &CubeJob) -> u64 {
    // Only the size is needed: open without the calibration references (they would be read whole).
    let read = ingest::ReadConfig {
        calibration: None,
        ..job.read.clone()
    };
    let pixels = ingest::Cube::open(&job.cube, &read)
        .map(|c| (c.lines() * c.samples()) as u64)
        .unwrap_or(0);
    pixels * 32 + 3 * job.read.block_bytes as u64 + (64 << 20)
}

/// Bytes of memory the running cubes may claim together.
struct Budget {
    free: Mutex<u64>,
    changed: Condvar,
    total: u64,
}

impl Budget {
    /// Wait until `want` fits (a cube larger than the whole budget runs alone).
    fn take(&self, want: u64) -> u64 {
        let want = want.min(self.total);
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free < want {
            free = self.changed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= want;
        want
    }

    fn give(&self, amount: u64) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += amount;
        self.changed.notify_all();
    }
}

/// Half of the memory available now, from /proc/meminfo (4 GiB when unknown).
fn default_memory_budget() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(4 << 30, |kb| kb * 1024 / 2)
}

pub fn run(args: BatchArgs) -> Result<()> {
    let file = PipelineFile::read(&args.file)?;
    let mut items = file.resolve(&args.file)?;
    let shard = shard(args.shard.as_deref())?;
    if let Some((k, n)) = shard {
        items = items
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % n == k)
            .map(|(_, item)| item)
            .collect();
    }
    let base = args.file.parent().unwrap_or(Path::new("."));
    let out = normalise(
        &args
            .out
            .clone()
            .unwrap_or_else(|| base.join(&file.outputs.dir)),
    );
    let model_path = file.model.path.as_ref().map(|p| normalise(&base.join(p)));
    let device: model::DeviceChoice = file
        .model
        .device
        .parse()
        .with_context(|| format!("{}: [model] device", args.file.display()))?;
    let (model, model_name) = model_source::load(model_path.as_deref(), device)?;
    if args.check {
        for item in &items {
            let files =
                ingest::locate(&item.job.cube).with_context(|| format!("input {}", item.key))?;
            for path in item
                .job
                .read
                .calibration
                .iter()
                .flat_map(|c| [&c.white, &c.dark])
            {
                ingest::locate(path).with_context(|| format!("input {}", item.key))?;
            }
            if let PlantSource::Polygons(_, path) | PlantSource::PlantIds(path) = &item.job.plants {
                if !path.exists() {
                    bail!("input {}: {}: file not found", item.key, path.display());
                }
            }
            println!(
                "{:<24} {}{}",
                item.key,
                files.data.display(),
                item.job
                    .date
                    .as_ref()
                    .map_or(String::new(), |d| format!(" ({d})"))
            );
        }
        println!(
            "{}: valid; {} cube(s){}, model {} ({}), outputs in {}",
            args.file.display(),
            items.len(),
            shard.map_or(String::new(), |(k, n)| format!(" in shard {k}/{n}")),
            model.model_id(),
            model_name,
            out.display()
        );
        return Ok(());
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    clean_stale_staging(&out);
    let model_id = model.model_id().to_string();
    let card = model.card().clone();
    let model = Mutex::new(model);
    let campaign = Campaign {
        out: &out,
        outputs: &file.outputs,
        model: &model,
        card,
        model_id,
        model_name,
        force: args.force,
    };
    // Data file sizes, for the progress bar.
    let sizes: Vec<u64> = items
        .iter()
        .map(|i| {
            ingest::locate(&i.job.cube)
                .ok()
                .and_then(|f| std::fs::metadata(f.data).ok())
                .map_or(0, |m| m.len())
        })
        .collect();
    let total_bytes: u64 = sizes.iter().sum();
    let progress = indicatif::MultiProgress::new();
    let overall = progress.add(indicatif::ProgressBar::new(total_bytes));
    overall.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {msg} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    overall.set_prefix("batch");
    let budget_bytes = args
        .memory_mb
        .map_or_else(default_memory_budget, |m| m << 20);
    let budget = Budget {
        free: Mutex::new(budget_bytes),
        changed: Condvar::new(),
        total: budget_bytes,
    };
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..items.len()).collect());
    let outcomes: Mutex<BTreeMap<usize, Outcome>> = Mutex::new(BTreeMap::new());
    let jobs = args.jobs.max(1).min(items.len().max(1));
    let started = Instant::now();
    tracing::info!(cubes = items.len(), jobs, out = %out.display(), "batch starts");
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let Some(index) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
                else {
                    break;
                };
                let item = &items[index];
                let name = format!("{}: {}", item.key, item.job.cube.display());
                let bar = progress.add(indicatif::ProgressBar::new_spinner());
                bar.set_message(name.clone());
                bar.enable_steady_tick(std::time::Duration::from_millis(200));
                let claimed = budget.take(memory_estimate(&item.job));
                let outcome = campaign
                    .process(item, &|stage| bar.set_message(format!("{name}: {stage}")))
                    .unwrap_or_else(|e| Outcome::Failed(format!("{e:#}")));
                budget.give(claimed);
                bar.finish_and_clear();
                overall.inc(sizes[index]);
                match &outcome {
                    Outcome::Done { plants, seconds } => {
                        tracing::info!(cube = %item.key, plants, seconds = format!("{seconds:.2}"), "done")
                    }
                    Outcome::UpToDate => tracing::info!(cube = %item.key, "up to date, skipped"),
                    Outcome::Failed(e) => tracing::error!(cube = %item.key, "failed: {e}"),
                }
                let mut all = outcomes.lock().unwrap_or_else(|p| p.into_inner());
                all.insert(index, outcome);
                overall.set_message(format!("{}/{} cubes", all.len(), items.len()));
            });
        }
    });
    overall.finish_and_clear();
    let outcomes = outcomes.into_inner().unwrap_or_else(|p| p.into_inner());
    let (mut done, mut skipped, mut failed) = (0, 0, Vec::new());
    for (index, outcome) in &outcomes {
        match outcome {
            Outcome::Done { .. } => done += 1,
            Outcome::UpToDate => skipped += 1,
            Outcome::Failed(e) => failed.push((items[*index].key.clone(), e.clone())),
        }
    }
    println!(
        "batch        {} cube(s): {done} done, {skipped} up to date, {} failed in {:.1} s{}",
        items.len(),
        failed.len(),
        started.elapsed().as_secs_f64(),
        shard.map_or(String::new(), |(k, n)| format!(" (shard {k}/{n})"))
    );
    for (key, error) in &failed {
        println!("failed       {key}: {error}");
    }
    println!("dataset      {}", out.display());
    if !failed.is_empty() {
        bail!(
            "{} of {} cubes failed (listed above)",
            failed.len(),
            items.len()
        );
    }
    Ok(())
}

/// `pipeline merge`: copy every complete cube (one with a manifest whose outputs all match their
/// checksums) of each folder into `out`; a cube in two folders must have the same outputs.
pub fn merge(args: crate::cli::MergeArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let (mut copied, mut same) = (0usize, 0usize);
    for dir in &args.dirs {
        let manifests = dir.join("manifests");
        let entries = std::fs::read_dir(&manifests)
            .with_context(|| format!("{}: not a batch output (no manifests/)", dir.display()))?;
        let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        for path in names
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
        {
            let text = std::fs::read_to_string(&path)?;
            let manifest: Manifest = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a manifest", path.display()))?;
            for o in &manifest.outputs {
                let file = dir.join(&o.path);
                if sha256_file(&file)? != o.sha256 {
                    bail!(
                        "{}: checksum differs from its manifest {}",
                        file.display(),
                        path.display()
                    );
                }
            }
            if let Some(existing) = read_manifest(&args.out, &manifest.key) {
                if existing.outputs == manifest.outputs {
                    same += 1;
                    continue;
                }
                bail!(
                    "cube {} is in {} and already in {} with other outputs (settings {} vs {})",
                    manifest.key,
                    dir.display(),
                    args.out.display(),
                    &manifest.config_hash[..12],
                    &existing.config_hash[..12]
                );
            }
            // Files first through hidden temporary names, the manifest last.
            for o in &manifest.outputs {
                let to = args.out.join(&o.path);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let tmp = to.with_file_name(format!(
                    ".{}.merge-{}",
                    to.file_name().unwrap_or_default().to_string_lossy(),
                    std::process::id()
                ));
                std::fs::copy(dir.join(&o.path), &tmp)?;
                std::fs::rename(&tmp, &to)?;
            }
            let to = manifest_path(&args.out, &manifest.key);
            std::fs::create_dir_all(args.out.join("manifests"))?;
            let tmp = to.with_file_name(format!(".{}.merge-{}", manifest.key, std::process::id()));
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &to)?;
            copied += 1;
        }
    }
    println!(
        "merge        {copied} cube(s) copied, {same} already present, into {}",
        args.out.display()
    );
    Ok(())
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
    fn shards_parse() {
        assert_eq!(shard(Some("1/4")).unwrap(), Some((1, 4)));
        assert!(shard(Some("4/4")).is_err());
        assert!(shard(Some("x/4")).is_err());
        assert!(shard(Some("2")).is_err());
    }

    #[test]
    fn keys_are_safe_folder_names() {
        assert_eq!(sanitise("plot 7/A=1"), "plot_7_A_1");
        assert_eq!(sanitise(".hidden"), "_.hidden");
        assert_eq!(sanitise(""), "_");
    }
}
