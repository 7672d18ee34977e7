//! Manifests: written last for each cube, they say which outputs are complete and for which
//! settings and inputs, so a rerun skips what is done and redoes what changed.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::file::OutputSection;
use crate::commands::run::{CubeJob, PlantSource};

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

pub(super) fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// The files a cube is read from (data, header, references, polygons), with size and mtime.
pub(super) fn input_records(job: &CubeJob) -> Result<Vec<InputRecord>> {
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
pub(super) fn config_hash(job: &CubeJob, model_id: &str, outputs: &OutputSection) -> String {
    let text = serde_json::json!({
        "job": job,
        "model_id": model_id,
        "outputs": { "report": outputs.report, "maps": outputs.maps, "plant_spectra": outputs.plant_spectra },
        "version": env!("CARGO_PKG_VERSION"),
    })
    .to_string();
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

pub(super) fn manifest_path(out: &Path, key: &str) -> PathBuf {
    out.join("manifests").join(format!("{key}.json"))
}

pub(super) fn read_manifest(out: &Path, key: &str) -> Option<Manifest> {
    let text = std::fs::read_to_string(manifest_path(out, key)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The cube's outputs are complete and current: same settings, same inputs, every output present
/// with its recorded checksum.
pub(super) fn up_to_date(out: &Path, key: &str, hash: &str, inputs: &[InputRecord]) -> bool {
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
pub(super) fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
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
