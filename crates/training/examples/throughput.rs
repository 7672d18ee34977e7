//! Training and inference throughput of the VIB on CPU, for `scripts/bench-model` (which runs the
//! same network in PyTorch from Python beside it).
//!
//! Usage: throughput THREADS [SAMPLES] [EPOCHS] [DEVICE]   (DEVICE: cpu (default), cuda, cuda:N)
//! Prints one JSON line: training samples/s (epochs 2.. through the real training loop, timed
//! between epoch callbacks) and inference spectra/s (12 samples of z, batches of 4096).

use std::time::Instant;

use domain::{ClassInfo, ClassSet, SpectralAxis, SpectralSamples};
use model::{ClassBalance, DeviceChoice, TrainConfig, VibModel};
use training::Train;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let threads: i32 = args.get(1).map_or(Ok(1), |a| a.parse())?;
    let n: usize = args.get(2).map_or(Ok(20_000), |a| a.parse())?;
    let epochs: usize = args.get(3).map_or(Ok(5), |a| a.parse())?;
    let device: DeviceChoice = args.get(4).map_or(Ok(DeviceChoice::Cpu), |a| a.parse())?;
    let bands = 200;
    tch::set_num_threads(threads);

    // Three classes of smooth random spectra (a fixed generator, so every run sees the same data).
    let mut state = 42u64;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut spectra = Vec::with_capacity(n * bands);
    let mut codes = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % 3;
        for b in 0..bands {
            let x = b as f64 / bands as f64;
            let shape = [x, 1.0 - x, (6.0 * x).sin() * 0.5 + 0.5][class];
            spectra.push((0.2 + 0.5 * shape + 0.1 * (uniform() - 0.5)) as f32);
        }
        codes.push(class as u32 + 1);
    }
    let samples = SpectralSamples {
        axis: SpectralAxis::new((0..bands).map(|b| 400.0 + 10.0 * b as f64).collect(), None)?,
        classes: ClassSet::new(
            (1..=3)
                .map(|c| ClassInfo {
                    code: c,
                    name: format!("c{c}"),
                })
                .collect(),
        )?,
        spectra,
        label_codes: codes,
        groups: (0..n as u32).collect(),
        values: None,
    };
    let config = TrainConfig {
        latent_dim: 32,
        hidden_dims: vec![256, 128],
        epochs,
        batch_size: 64,
        validation_fraction: 0.0,
        class_balance: ClassBalance::None,
        ..TrainConfig::default()
    };
    let mut stamps = Vec::new();
    let (model, _) = VibModel::train(&samples, &config, device, vec![], "pixel", |_| {
        stamps.push(Instant::now())
    })?;
    let (Some(first), Some(last)) = (stamps.first(), stamps.last()) else {
        return Err("no epoch ran".into());
    };
    if epochs < 2 {
        return Err("at least 2 epochs are needed to time one".into());
    }
    let train_seconds = last.duration_since(*first).as_secs_f64();
    let train_rate = ((epochs - 1) * n) as f64 / train_seconds;

    model.predict(&samples.spectra[..4096 * bands], 4096, 12, 0)?; // warm-up
    let start = Instant::now();
    let repeats = 3;
    for _ in 0..repeats {
        model.predict(&samples.spectra, n, 12, 0)?;
    }
    let infer_rate = (repeats * n) as f64 / start.elapsed().as_secs_f64();
    println!(
        "{{\"implementation\": \"rust-tch\", \"device\": \"{}\", \"threads\": {threads}, \"samples\": {n}, \"train_samples_per_s\": {train_rate:.1}, \"inference_spectra_per_s\": {infer_rate:.1}}}",
        model.device_name()
    );
    Ok(())
}
