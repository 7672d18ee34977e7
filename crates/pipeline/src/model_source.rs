//! Where the model comes from: a file the user names, or the default model built into the binary;
//! loaded for the CPU here, or onto a GPU through libtorch (`torch.rs`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use model::{DeviceChoice, VibModel};

/// The bundled default model, trained on `sample_cubes/field-a` (see docs/default-model.md).
const DEFAULT_MODEL: &[u8] = include_bytes!("../models/default.safetensors");
const DEFAULT_MODEL_NAME: &str = "<bundled default model>";

/// Load `path`, or the bundled default when `None`, to predict on `device`. Returns the model
/// and how to name it.
pub fn load(path: Option<&Path>, device: DeviceChoice) -> Result<(VibModel, String)> {
    let (bytes, name): (std::borrow::Cow<'_, [u8]>, String) = match path {
        Some(path) => (
            model::read_model_file(path)
                .with_context(|| format!("loading model {}", path.display()))?
                .into(),
            path.display().to_string(),
        ),
        None => (DEFAULT_MODEL.into(), DEFAULT_MODEL_NAME.to_string()),
    };
    let context = || match path {
        Some(path) => format!("loading model {}", path.display()),
        None => "loading the bundled default model".to_string(),
    };
    let label = PathBuf::from(&name);
    let model = if device.needs_libtorch() {
        crate::torch::required(&format!("--device {device}"))?
            .load(&bytes, &label, device)
            .with_context(context)?
    } else {
        if device == DeviceChoice::Auto {
            tracing::info!(device = "cpu", "device auto-selected (no GPU driver here)");
        }
        VibModel::from_bytes(&bytes, &label).with_context(context)?
    };
    Ok((model, name))
}
