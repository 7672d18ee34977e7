//! `pipeline-torch`: the `pipeline` command line with libtorch, for training (`train`, `sweep`)
//! and prediction on CUDA. `pipeline` runs it in its place for those commands; run directly, it
//! does everything `pipeline` does.

use std::path::Path;

use domain::SpectralSamples;
use model::{
    CandidateRecord, DeviceChoice, EpochRecord, Fixed, Selection, TrainConfig, TuneSettings,
    VibModel,
};
use pipeline::torch::Torch;
use training::Train;

/// The `training` crate behind `pipeline::torch::Torch`.
struct Libtorch;

impl Torch for Libtorch {
    fn train(
        &self,
        samples: &SpectralSamples,
        config: &TrainConfig,
        device: DeviceChoice,
        sources: Vec<String>,
        unit: &str,
        on_epoch: &mut dyn FnMut(&EpochRecord),
    ) -> model::Result<(VibModel, Vec<EpochRecord>)> {
        VibModel::train(samples, config, device, sources, unit, on_epoch)
    }

    fn tune(
        &self,
        samples: &SpectralSamples,
        config: &TrainConfig,
        fixed: Fixed,
        settings: &TuneSettings,
        device: DeviceChoice,
        sources: Vec<String>,
        unit: &str,
        on_candidate: &mut dyn FnMut(&CandidateRecord),
        on_epoch: &mut dyn FnMut(&EpochRecord),
    ) -> model::Result<(VibModel, Vec<EpochRecord>)> {
        VibModel::tune(
            samples,
            config,
            fixed,
            settings,
            device,
            sources,
            unit,
            on_candidate,
            on_epoch,
        )
    }

    fn select(
        &self,
        samples: &SpectralSamples,
        config: &TrainConfig,
        fixed: Fixed,
        settings: &TuneSettings,
        device: DeviceChoice,
        on_candidate: &mut dyn FnMut(&CandidateRecord),
    ) -> model::Result<(TrainConfig, Selection)> {
        VibModel::select(samples, config, fixed, settings, device, on_candidate)
    }

    fn load(&self, bytes: &[u8], path: &Path, device: DeviceChoice) -> model::Result<VibModel> {
        training::from_bytes(bytes, path, device)
    }

    fn set_threads(&self, threads: usize) {
        training::set_threads(threads);
    }
}

static LIBTORCH: Libtorch = Libtorch;

fn main() {
    pipeline::torch::register(&LIBTORCH);
    pipeline::main()
}
