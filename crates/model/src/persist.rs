//! The model file: safetensors with every member's weights (`member{m}.{tensor}`) and the model
//! card as JSON in the metadata. Written to a temporary name, then renamed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::ensemble::Member;
use crate::error::{Error, Result};
use crate::vib::{ModelCard, VibModel, FORMAT_VERSION};

const METADATA_KEY: &str = "pipeline.model";

/// FNV-1a 64 of the model file: a content id for reports.
pub fn content_id(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Tensor name prefix of member `m` in a file of `version` (version 2 had one unprefixed network).
fn prefix(version: u32, m: usize) -> String {
    if version == 2 {
        String::new()
    } else {
        format!("member{m}.")
    }
}

/// One weight tensor of a network: its name in the model file (without the member prefix), its
/// shape and its values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl VibModel {
    /// The model file's bytes: every member's tensors (`member{m}.{name}`, sorted by name, F32
    /// little-endian) and the card as JSON in the metadata.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut tensors: Vec<(String, &NamedTensor, Vec<u8>)> = Vec::new();
        for (m, member) in self.members.iter().enumerate() {
            for tensor in &member.tensors {
                tensors.push((
                    format!("{}{}", prefix(self.card.format_version, m), tensor.name),
                    tensor,
                    tensor.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ));
            }
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let views = tensors
            .iter()
            .map(|(name, tensor, bytes)| {
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    tensor.shape.clone(),
                    bytes,
                )
                .map(|view| (name.clone(), view))
                .map_err(|e| Error::Data(format!("weights of {name}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let card = serde_json::to_string(&self.card)
            .map_err(|e| Error::Data(format!("model card: {e}")))?;
        let metadata = HashMap::from([(METADATA_KEY.to_string(), card)]);
        safetensors::serialize(views, Some(metadata))
            .map_err(|e| Error::Data(format!("serialising weights: {e}")))
    }

    /// Save as safetensors with the model card in the metadata; written to a temporary name, then renamed.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        let tmp = PathBuf::from(format!("{}.tmp", path.display()));
        std::fs::write(&tmp, &bytes)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|source| {
                let _ = std::fs::remove_file(&tmp);
                Error::Io {
                    path: path.into(),
                    message: "cannot write model".into(),
                    source,
                }
            })
    }

    /// Read only the model card of a model file.
    pub fn read_card(path: &Path) -> Result<ModelCard> {
        let bytes = read_model_file(path)?;
        card_from_bytes(path, &bytes)
    }

    /// Load a model file for prediction on the CPU (the training crate loads onto a GPU).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = read_model_file(path)?;
        Self::from_bytes(&bytes, path)
    }

    /// Load a model from the bytes of a model file; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let card = card_from_bytes(path, bytes)?;
        let format = |message: String| Error::Format {
            path: path.into(),
            message,
        };
        let tensors =
            safetensors::SafeTensors::deserialize(bytes).map_err(|e| format(e.to_string()))?;
        let shapes = card.architecture.weight_shapes();
        let mut members = Vec::with_capacity(card.members);
        for m in 0..card.members {
            let mut named = Vec::with_capacity(shapes.len());
            for (name, expected) in &shapes {
                let full = format!("{}{name}", prefix(card.format_version, m));
                let view = tensors
                    .tensor(&full)
                    .map_err(|_| format(format!("tensor '{full}' is missing")))?;
                if view.dtype() != safetensors::Dtype::F32 || view.shape() != expected.as_slice() {
                    return Err(format(format!(
                        "tensor '{full}' is {:?} {:?}, expected F32 {expected:?}",
                        view.dtype(),
                        view.shape()
                    )));
                }
                named.push(NamedTensor {
                    name: name.clone(),
                    shape: expected.clone(),
                    values: view
                        .data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                });
            }
            members
                .push(Member::new(&card.architecture, named).map_err(|e| format(e.to_string()))?);
        }
        let expected_tensors = shapes.len() * card.members;
        if tensors.len() != expected_tensors {
            return Err(format(format!(
                "{} tensors, {} member(s) of this architecture have {expected_tensors}",
                tensors.len(),
                card.members
            )));
        }
        Ok(Self {
            members,
            card,
            model_id: content_id(bytes),
            accelerator: None,
        })
    }
}

/// The bytes of a model file; a missing or unreadable file is an error naming it.
pub fn read_model_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.into(),
        message: match source.kind() {
            std::io::ErrorKind::NotFound => "model file not found".into(),
            _ => "cannot read model".into(),
        },
        source,
    })
}

fn card_from_bytes(path: &Path, bytes: &[u8]) -> Result<ModelCard> {
    let format = |message: String| Error::Format {
        path: path.into(),
        message,
    };
    let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| format(format!("not safetensors ({e})")))?;
    let json = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(METADATA_KEY))
        .ok_or_else(|| format(format!("no '{METADATA_KEY}' metadata")))?;
    let card: ModelCard =
        serde_json::from_str(json).map_err(|e| format(format!("model card: {e}")))?;
    if card.format_version != FORMAT_VERSION && card.format_version != 2 {
        return Err(format(format!(
            "format version {} (this build reads 2 to {FORMAT_VERSION})",
            card.format_version
        )));
    }
    if card.members == 0 {
        return Err(format("an ensemble of 0 members".into()));
    }
    if card.architecture.latent_dim == 0 {
        return Err(format("a bottleneck of 0 dimensions (latent_dim)".into()));
    }
    if let Some(c) = &card.calibration {
        if !(c.temperature > 0.0 && c.temperature.is_finite()) {
            return Err(format(format!(
                "temperature {} is not a positive number",
                c.temperature
            )));
        }
        if !c.class_log_bias.is_empty()
            && (c.class_log_bias.len() != card.classes.len()
                || c.class_log_bias.iter().any(|b| !b.is_finite()))
        {
            return Err(format(format!(
                "{} class offsets for {} classes, or one not finite",
                c.class_log_bias.len(),
                card.classes.len()
            )));
        }
    }
    let features = card
        .train_config
        .preprocessing
        .for_axis(&card.axis)
        .map_err(|e| format(format!("preprocessing: {e}")))?
        .output_len();
    if card.input_mean.len() != features
        || card.input_std.len() != features
        || card.architecture.input_dim != features
    {
        return Err(format(
            "standardisation or input size does not match the preprocessed wavelengths".into(),
        ));
    }
    if card.architecture.classes != card.architecture.head.outputs(card.classes.len()) {
        return Err(format("class count does not match the classifier".into()));
    }
    match (&card.target, card.architecture.head) {
        (Some(t), crate::network::Head::Gaussian) => {
            let valid = t.std > 0.0
                && t.std.is_finite()
                && t.mean.is_finite()
                && t.variance_scale > 0.0
                && t.variance_scale.is_finite()
                && t.interval_level > 0.0
                && t.interval_level < 1.0;
            if !valid {
                return Err(format(format!(
                    "target '{}': scale, variance scale or interval level out of range",
                    t.name
                )));
            }
        }
        (None, crate::network::Head::Classifier) => {}
        _ => {
            return Err(format(
                "the decoder and the target disagree (a Gaussian head needs a target)".into(),
            ))
        }
    }
    Ok(card)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled() -> (PathBuf, Vec<u8>) {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipeline/models/default.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        (path, bytes)
    }

    /// A classifier written before regression heads existed is written again byte for byte: the
    /// card gained only fields that a classifier leaves out (its model id and reproducibility hold).
    #[test]
    fn a_classifier_file_round_trips_byte_for_byte() {
        let (path, bytes) = bundled();
        let model = VibModel::from_bytes(&bytes, &path).unwrap();
        assert!(model.card().target.is_none());
        assert!(model.to_bytes().unwrap() == bytes);
        assert_eq!(model.model_id(), content_id(&bytes));
    }

    /// The bundled model's file rewritten with one tensor changed by `change` (None drops it).
    fn altered(change: impl Fn(&str, Vec<usize>) -> Option<Vec<usize>>) -> Vec<u8> {
        let (_, bytes) = bundled();
        let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let kept: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .tensors()
            .into_iter()
            .filter_map(|(name, view)| {
                let shape = change(&name, view.shape().to_vec())?;
                let values = shape.iter().product::<usize>() * 4;
                Some((
                    name,
                    shape,
                    view.data()[..values.min(view.data().len())].to_vec(),
                ))
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = kept
            .iter()
            .map(|(name, shape, data)| {
                let view = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    shape.clone(),
                    data,
                )
                .unwrap();
                (name.clone(), view)
            })
            .collect();
        safetensors::serialize(views, metadata.metadata().clone()).unwrap()
    }

    /// A card whose bottleneck has no dimension, with weights of the shapes that implies, is an
    /// error naming the file, not a panic in the forward pass.
    #[test]
    fn a_bottleneck_of_no_dimensions_is_an_error() {
        let (_, bytes) = bundled();
        let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let mut metadata = metadata.metadata().clone().unwrap();
        let card = metadata.get_mut("pipeline.model").unwrap();
        let mut json: serde_json::Value = serde_json::from_str(card).unwrap();
        json["architecture"]["latent_dim"] = 0.into();
        *card = json.to_string();
        // The bottleneck's tensors with 0 latent dimensions: no values.
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let mut shape = view.shape().to_vec();
                if name.contains("mu_logvar") {
                    shape[0] = 0;
                } else if name.ends_with("classifier.weight") {
                    shape[1] = 0;
                } else {
                    return (name, view);
                }
                let empty =
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &[])
                        .unwrap();
                (name, empty)
            })
            .collect();
        let thin = safetensors::serialize(views, Some(metadata)).unwrap();
        let err = VibModel::from_bytes(&thin, Path::new("thin.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("thin.safetensors") && err.contains("latent_dim"),
            "{err}"
        );
    }

    /// Missing and misshapen weights are errors naming the file and the tensor.
    #[test]
    fn missing_or_misshapen_tensors_are_errors() {
        let path = Path::new("broken.safetensors");
        let target = "member0.classifier.bias";
        let missing = altered(|name, shape| (name != target).then_some(shape));
        let err = VibModel::from_bytes(&missing, path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("broken.safetensors")
                && err.contains("tensor 'member0.classifier.bias' is missing"),
            "{err}"
        );
        let misshapen = altered(|name, shape| Some(if name == target { vec![1] } else { shape }));
        let err = VibModel::from_bytes(&misshapen, path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(target) && err.contains("expected F32"),
            "{err}"
        );
    }
}
