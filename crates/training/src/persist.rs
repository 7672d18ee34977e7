//! Loading a model file onto a device: the model crate reads it (no libtorch); on a GPU its
//! members are then copied into libtorch networks there.

use std::path::Path;

use model::{DeviceChoice, Result, VibModel};

use crate::device::resolve;
use crate::ensemble::on_device;

/// Load a model file to predict on `device`.
pub fn load(path: &Path, device: DeviceChoice) -> Result<VibModel> {
    let model = VibModel::load(path)?;
    on_device(model, resolve(device)?)
}

/// Load a model from the bytes of a model file (`path` names it in errors) to predict on `device`.
pub fn from_bytes(bytes: &[u8], path: &Path, device: DeviceChoice) -> Result<VibModel> {
    let model = VibModel::from_bytes(bytes, path)?;
    on_device(model, resolve(device)?)
}
