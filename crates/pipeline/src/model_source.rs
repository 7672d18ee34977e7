//! Where the model comes from: a file the user names, or the default model built into the binary.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use model::{DeviceChoice, VibModel};

/// The bundled default model, trained on `sample_cubes/field-a` (see docs/default-model.md).
const DEFAULT_MODEL: &[u8] = include_bytes!("../models/default.safetensors");
const DEFAULT_MODEL_NAME: &str = "<bundled default model>";

/// Load `path`, or the bundled default when `None`. Returns the model and how to name it.
pub fn load(path: Option<&Path>, device: DeviceChoice) -> Result<(VibModel, String)> {
    match path {
        Some(path) => {
            let model = VibModel::load(path, device)
                .with_context(|| format!("loading model {}", path.display()))?;
            Ok((model, path.display().to_string()))
        }
        None => {
            let model =
                VibModel::from_bytes(DEFAULT_MODEL, &PathBuf::from(DEFAULT_MODEL_NAME), device)
                    .context("loading the bundled default model")?;
            Ok((model, DEFAULT_MODEL_NAME.to_string()))
        }
    }
}
