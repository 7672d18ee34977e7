//! One cube of a campaign: analyse it, write its outputs into staging, move them into the
//! dataset, manifest last.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use model::VibModel;

use super::file::{sanitise, OutputSection, Resolved};
use super::manifest::{
    config_hash, files_under, input_records, manifest_path, read_manifest, sha256_file, up_to_date,
    InputRecord, Manifest, OutputRecord,
};
use super::staging::staging_dir;
use super::stop::{Gate, Passage};
use crate::commands::run::{write_plant_spectra, write_report};

/// What happened to one cube.
#[derive(Debug)]
pub(super) enum Outcome {
    Done {
        plants: usize,
        seconds: f64,
    },
    UpToDate,
    Failed(String),
    /// The stop's grace period ended before the cube could be moved into the dataset.
    Abandoned,
}

pub(super) struct Campaign<'a> {
    pub(super) out: &'a Path,
    pub(super) outputs: &'a OutputSection,
    pub(super) model: &'a VibModel,
    pub(super) card: model::ModelCard,
    pub(super) model_id: String,
    pub(super) model_name: String,
    pub(super) force: bool,
    pub(super) gate: &'a Gate,
}

/// What a cube wrote into its staging folder.
struct Staged {
    /// Paths relative to the staging folder (and, once moved, to the dataset), sizes, checksums.
    records: Vec<OutputRecord>,
    field_id: String,
    date: String,
    plants: usize,
}

impl<'a> Campaign<'a> {
    /// Process one cube; `stage` names what it is doing (the cube's progress line).
    /// `held` receives the passage through the dataset's gate once the cube starts moving into
    /// the dataset: the caller records the outcome before letting it go.
    pub(super) fn process(
        &self,
        item: &Resolved,
        stage: &dyn Fn(&str),
        held: &mut Option<Passage<'a>>,
    ) -> Result<Outcome> {
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
        let result = self.stage(item, &staging, &hash, inputs, started, stage, held);
        let _ = std::fs::remove_dir_all(&staging);
        result
    }

    /// Analyse, write everything into `staging`, then move it into the dataset; manifest last.
    #[allow(clippy::too_many_arguments)] // one cube's whole context, passed down once
    fn stage(
        &self,
        item: &Resolved,
        staging: &Path,
        hash: &str,
        inputs: Vec<InputRecord>,
        started: Instant,
        stage: &dyn Fn(&str),
        held: &mut Option<Passage<'a>>,
    ) -> Result<Outcome> {
        let staged = self.write_staged(item, staging, stage)?;
        stage("moving into the dataset");
        let Some(passage) = self.gate.enter() else {
            return Ok(Outcome::Abandoned);
        };
        *held = Some(passage);
        let manifest = self.move_into_dataset(item, staging, hash, inputs, started, staged)?;
        Ok(Outcome::Done {
            plants: manifest.plants,
            seconds: manifest.seconds,
        })
    }

    /// Analyse the cube and write all its outputs into `staging`.
    fn write_staged(
        &self,
        item: &Resolved,
        staging: &Path,
        stage: &dyn Fn(&str),
    ) -> Result<Staged> {
        stage("reading: mask, plants, spectra, calls");
        let analysed = crate::commands::run::analyse_with(
            &item.job,
            &self.card,
            &self.model_id,
            &self.model_name,
            // One model for all workers (on a GPU its networks take turns).
            |spectra, n, z| Ok(self.model.predict(spectra, n, z, 0)?),
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
            write_report(
                &staging.join(&cube_dir),
                &analysed.maps(),
                &analysed.summary,
                self.model,
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
            if analysed.pixel_calls.is_some() {
                maps.write_pixel_class_map(&dir.join("pixel-class-map.tif"))?;
                maps.write_pixel_kl_map(&dir.join("pixel-kl-map.tif"))?;
            }
            if let Err(e) = maps.write_quicklook(&dir.join("quicklook.png")) {
                tracing::warn!(cube = %item.job.cube.display(), "no quicklook: {e:#}");
            }
        }
        if self.outputs.report || self.outputs.maps {
            for file in files_under(&staging.join(&cube_dir))? {
                written.push(format!("{cube_dir}/{}", file.display()));
            }
        }
        // Checksums now, before the gate: moving in is then only renames.
        let records = written
            .into_iter()
            .map(|relative| {
                let from = staging.join(&relative);
                Ok(OutputRecord {
                    bytes: std::fs::metadata(&from)?.len(),
                    sha256: sha256_file(&from)?,
                    path: relative,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Staged {
            records,
            field_id: table.field_id.clone(),
            date,
            plants: table.plants.len(),
        })
    }

    /// Replace the cube's previous outputs with the staged ones; the manifest goes last.
    fn move_into_dataset(
        &self,
        item: &Resolved,
        staging: &Path,
        hash: &str,
        inputs: Vec<InputRecord>,
        started: Instant,
        staged: Staged,
    ) -> Result<Manifest> {
        let Staged {
            records,
            field_id,
            date,
            plants,
        } = staged;
        let cube_dir = format!("cubes/{}", item.key);
        // Replace the cube's previous outputs: its manifest goes first, so that a run killed
        // from here on redoes the cube.
        let previous = read_manifest(self.out, &item.key);
        let manifest_file = manifest_path(self.out, &item.key);
        if manifest_file.exists() {
            std::fs::remove_file(&manifest_file)?;
        }
        if let Some(previous) = previous {
            for o in previous.outputs {
                if !records.iter().any(|r| r.path == o.path) {
                    let _ = std::fs::remove_file(self.out.join(&o.path));
                }
            }
        }
        let final_cube_dir = self.out.join(&cube_dir);
        if final_cube_dir.exists() {
            std::fs::remove_dir_all(&final_cube_dir)?;
        }
        for record in &records {
            let (from, to) = (staging.join(&record.path), self.out.join(&record.path));
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(&from, &to)
                .with_context(|| format!("moving {} into {}", from.display(), to.display()))?;
        }
        let manifest = Manifest {
            key: item.key.clone(),
            cube: item.job.cube.display().to_string(),
            field_id,
            date,
            config_hash: hash.to_string(),
            model_id: self.model_id.clone(),
            pipeline_version: env!("CARGO_PKG_VERSION").into(),
            inputs,
            outputs: records,
            plants,
            seconds: started.elapsed().as_secs_f64(),
        };
        let staged_manifest = staging.join("manifest.json");
        std::fs::write(&staged_manifest, serde_json::to_string_pretty(&manifest)?)?;
        std::fs::create_dir_all(self.out.join("manifests"))?;
        std::fs::rename(&staged_manifest, &manifest_file)?;
        Ok(manifest)
    }
}
