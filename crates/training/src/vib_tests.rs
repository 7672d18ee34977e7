//! Tests of training, prediction and the model file.

use super::*;
use crate::ensemble::torch_nets;
use crate::training::tensor_2d;
use domain::{ClassInfo, ClassSet, SpectralAxis};
use model::{standardise, EncoderKind, SplitMix64};
use tch::Tensor;

/// Three classes of noisy spectra with distinct shapes, 40 groups of 5.
fn toy_samples(seed: u64) -> SpectralSamples {
    let bands = 12;
    let mut rng = SplitMix64::new(seed);
    let mut uniform = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let (mut spectra, mut codes, mut groups) = (Vec::new(), Vec::new(), Vec::new());
    for g in 0..60u32 {
        let class = (g % 3) as usize;
        for _ in 0..5 {
            for b in 0..bands {
                let shape = match class {
                    0 => b as f64 / bands as f64,
                    1 => 1.0 - b as f64 / bands as f64,
                    _ => ((b as f64) * 0.8).sin() * 0.5 + 0.5,
                };
                spectra.push((shape * 0.5 + 0.2 + (uniform() - 0.5) * 0.1) as f32);
            }
            codes.push(class as u32 * 10 + 1);
            groups.push(g);
        }
    }
    SpectralSamples {
        axis: SpectralAxis::new((0..bands).map(|b| 400.0 + 50.0 * b as f64).collect(), None)
            .unwrap(),
        classes: ClassSet::new(
            ["a", "b", "c"]
                .iter()
                .enumerate()
                .map(|(i, n)| ClassInfo {
                    code: i as u32 * 10 + 1,
                    name: n.to_string(),
                })
                .collect(),
        )
        .unwrap(),
        spectra,
        label_codes: codes,
        groups,
        values: None,
    }
}

/// The device the tests run on: `PIPELINE_TEST_DEVICE` (`cuda`, `cuda:1`, ...; for
/// `scripts/gpu-check`), else the CPU. The determinism test always uses the CPU.
fn test_device() -> DeviceChoice {
    std::env::var("PIPELINE_TEST_DEVICE")
        .ok()
        .map_or(DeviceChoice::Cpu, |d| d.parse().unwrap())
}

fn quick_config() -> TrainConfig {
    TrainConfig {
        epochs: 40,
        hidden_dims: vec![32],
        latent_dim: 4,
        ..TrainConfig::default()
    }
}

#[test]
fn learns_separable_classes_and_reloads_identically() {
    let samples = toy_samples(1);
    let (model, history) = VibModel::train(
        &samples,
        &quick_config(),
        test_device(),
        vec!["toy".into()],
        "pixel",
        |_| {},
    )
    .unwrap();
    assert!(!history.is_empty());
    assert!(
        model.card().training.train.accuracy > 0.95,
        "{:?}",
        model.card().training
    );
    let test = toy_samples(2);
    let predictions = model.predict(&test.spectra, test.len(), 12, 0).unwrap();
    let correct = predictions
        .iter()
        .zip(&test.label_codes)
        .filter(|(p, &c)| model.card().classes.get(p.predicted_index).unwrap().code == c)
        .count();
    assert!(
        correct as f64 / test.len() as f64 > 0.95,
        "{correct}/{}",
        test.len()
    );
    for p in &predictions {
        assert!((p.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        assert!(p.kl_nats >= 0.0);
    }

    assert_reloads_identically(&model, &test, &predictions);
}

/// A small model with `encoder`, trained for `epochs` on the CPU.
fn quick_cpu_model(samples: &SpectralSamples, encoder: EncoderKind, epochs: usize) -> VibModel {
    let config = TrainConfig {
        epochs,
        encoder,
        ..quick_config()
    };
    VibModel::train(samples, &config, DeviceChoice::Cpu, vec![], "pixel", |_| {})
        .unwrap()
        .0
}

/// The fixed-order CPU forward pass against libtorch's forward pass of the same weights with
/// the same eps (an independent implementation of the same arithmetic), for both encoders.
#[test]
fn cpu_forward_pass_matches_libtorch() {
    let samples = toy_samples(4);
    for encoder in [EncoderKind::Mlp, EncoderKind::Conv] {
        let model = quick_cpu_model(&samples, encoder, 15);
        let n = samples.len();
        let ours = model
            .predict_uncalibrated(&samples.spectra, n, 12, 5)
            .unwrap();
        let x = standardise(
            &samples.spectra,
            &model.card().input_mean,
            &model.card().input_std,
        );
        let nets = torch_nets(&model, tch::Device::Cpu).unwrap();
        let torch = nets[0]
            .predict_on_device(&x, n, &model.card().architecture, 12, 5)
            .unwrap();
        assert_eq!(ours.len(), torch.len());
        for (a, b) in ours.iter().zip(&torch) {
            assert!(
                (a.kl_nats - b.kl_nats).abs() <= 1e-4 * b.kl_nats.abs().max(1.0),
                "{encoder:?}: KL {} vs libtorch {}",
                a.kl_nats,
                b.kl_nats
            );
            for (p, q) in a.probabilities.iter().zip(&b.probabilities) {
                assert!((p - q).abs() < 1e-5, "{encoder:?}: {p} vs libtorch {q}");
            }
        }
        // mu and logvar themselves, against the libtorch encoder.
        let cpu = model.cpu_net(0);
        let (mu, logvar) = cpu.encode(&x, n);
        let xt = tensor_2d(&x, n, x.len() / n, tch::Device::Cpu).unwrap();
        let (tmu, tlogvar) = tch::no_grad(|| nets[0].net.encode(&xt));
        let tmu: Vec<f32> = Vec::try_from(tmu.flatten(0, -1)).unwrap();
        let tlogvar: Vec<f32> = Vec::try_from(tlogvar.flatten(0, -1)).unwrap();
        for (a, b) in mu.iter().chain(&logvar).zip(tmu.iter().chain(&tlogvar)) {
            assert!(
                (a - b).abs() < 1e-4 * b.abs().max(1.0),
                "{encoder:?}: {a} vs {b}"
            );
        }
    }
}

/// One spectrum gives bit-identical probabilities, entropy and KL alone, inside batches of 1, 7
/// and 4096 rows at offsets that move it and its memory alignment, and on 1, 2 or 3 threads.
#[test]
fn predictions_depend_only_on_the_spectrum() {
    let samples = toy_samples(6);
    for encoder in [EncoderKind::Mlp, EncoderKind::Conv] {
        let model = quick_cpu_model(&samples, encoder, 10);
        let bands = samples.axis.len();
        let cpu = model.cpu_net(0);
        let key = |p: &Prediction| {
            (
                p.probabilities
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>(),
                p.entropy_nats.to_bits(),
                p.kl_nats.to_bits(),
            )
        };
        let lone = |i: usize| {
            let one = &samples.spectra[i * bands..(i + 1) * bands];
            key(&model.predict_uncalibrated(one, 1, 12, 0).unwrap()[0])
        };
        let targets = [0usize, 3, samples.len() - 1];
        let expected: Vec<_> = targets.iter().map(|&i| lone(i)).collect();
        for rows in [1usize, 7, 4096] {
            for offset in [0usize, 1, 5] {
                for (&target, expected) in targets.iter().zip(&expected) {
                    // A batch of `rows` spectra, the target at `offset` (mod rows), the rest
                    // other spectra; one leading spare float shifts the alignment on odd offsets.
                    let at = offset % rows;
                    let shift = offset % 2;
                    let mut buffer = vec![0f32; shift];
                    for r in 0..rows {
                        let i = if r == at {
                            target
                        } else {
                            (r * 7 + offset) % samples.len()
                        };
                        buffer.extend_from_slice(&samples.spectra[i * bands..(i + 1) * bands]);
                    }
                    let batch = &buffer[shift..];
                    for threads in [1usize, 2, 3] {
                        let x =
                            standardise(batch, &model.card().input_mean, &model.card().input_std);
                        let raw = cpu.predict(&x, rows, 12, 0, threads);
                        let got = Prediction::from_probabilities(
                            raw[at].probabilities.clone(),
                            raw[at].kl_nats,
                        );
                        assert_eq!(
                            &key(&got),
                            expected,
                            "{encoder:?}: spectrum {target} at row {at} of {rows}, shift {shift}, {threads} threads"
                        );
                    }
                    if rows != 4096 || offset == 0 {
                        let through_api = model.predict_uncalibrated(batch, rows, 12, 0).unwrap();
                        assert_eq!(&key(&through_api[at]), expected);
                    }
                }
            }
        }
    }
}

/// Save, load, and predict `samples` again: same card, same id, the same `predictions`.
fn assert_reloads_identically(
    model: &VibModel,
    samples: &SpectralSamples,
    predictions: &[Prediction],
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    model.save(&path).unwrap();
    let loaded = crate::load(&path, test_device()).unwrap();
    assert_eq!(loaded.card(), model.card());
    assert_eq!(loaded.model_id(), model.model_id());
    let again = loaded
        .predict(&samples.spectra, samples.len(), 12, 0)
        .unwrap();
    assert_eq!(again, predictions, "a reloaded model predicts identically");
}

#[test]
fn training_is_deterministic_on_cpu() {
    let samples = toy_samples(3);
    let config = TrainConfig {
        epochs: 5,
        ..quick_config()
    };
    let run = || {
        VibModel::train(
            &samples,
            &config,
            DeviceChoice::Cpu,
            vec![],
            "pixel",
            |_| {},
        )
        .unwrap()
    };
    let (a, history_a) = run();
    let (b, history_b) = run();
    assert_eq!(history_a, history_b);
    assert_eq!(a.model_id(), b.model_id());
}

/// The sweep's bounds, recomputed here without the training code: H(Y) from label counts, the
/// rate from the encoder's mu and logvar with f64 loops, the cross-entropy by our own Monte Carlo
/// (another generator, 200 draws) through the classifier's weights.
#[test]
fn information_bounds_match_an_independent_computation() {
    let samples = toy_samples(5);
    let config = TrainConfig {
        epochs: 15,
        validation_fraction: 0.0,
        beta: 1e-2,
        ..quick_config()
    };
    let (model, _) =
        VibModel::train(&samples, &config, test_device(), vec![], "pixel", |_| {}).unwrap();
    let summary = &model.card().training;
    assert!(summary.validation.is_none());
    let n = samples.len();

    let mut counts = std::collections::BTreeMap::new();
    for c in &samples.label_codes {
        *counts.entry(*c).or_insert(0usize) += 1;
    }
    let h_y: f64 = counts
        .values()
        .map(|&c| c as f64 / n as f64)
        .map(|p| -p * p.ln())
        .sum();
    assert!((summary.label_entropy_nats - h_y).abs() < 1e-12);

    let x = tensor_2d(
        &standardise(
            &samples.spectra,
            &model.card().input_mean,
            &model.card().input_std,
        ),
        n,
        samples.axis.len(),
        tch::Device::Cpu,
    )
    .unwrap();
    let nets = torch_nets(&model, tch::Device::Cpu).unwrap();
    let (mu, logvar) = tch::no_grad(|| nets[0].net.encode(&x));
    let k = model.card().architecture.latent_dim;
    let cpu = |t: Tensor| t.to_device(tch::Device::Cpu).flatten(0, -1);
    let mu: Vec<f32> = Vec::try_from(cpu(mu)).unwrap();
    let logvar: Vec<f32> = Vec::try_from(cpu(logvar)).unwrap();
    let mut rate = 0.0;
    for i in 0..n {
        for j in 0..k {
            let (m, lv) = (mu[i * k + j] as f64, logvar[i * k + j] as f64);
            rate += 0.5 * (m * m + lv.exp() - lv - 1.0);
        }
    }
    rate /= n as f64;
    assert!(
        (rate - summary.train.mean_kl_nats).abs() < 1e-4 * rate.max(1.0),
        "{rate} vs {}",
        summary.train.mean_kl_nats
    );

    let variables = nets[0].vs.variables();
    let weight: Vec<f32> =
        Vec::try_from(cpu(variables["classifier.weight"].shallow_clone())).unwrap();
    let bias: Vec<f32> = Vec::try_from(cpu(variables["classifier.bias"].shallow_clone())).unwrap();
    let classes = bias.len();
    let mut rng = SplitMix64::new(99);
    let mut normal = move || {
        let u1 = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    };
    let draws = 200;
    let mut cross_entropy = 0.0;
    for i in 0..n {
        let target = model
            .card()
            .classes
            .index_of_code(samples.label_codes[i])
            .unwrap();
        for _ in 0..draws {
            let z: Vec<f64> = (0..k)
                .map(|j| mu[i * k + j] as f64 + (0.5 * logvar[i * k + j] as f64).exp() * normal())
                .collect();
            let logits: Vec<f64> = (0..classes)
                .map(|c| {
                    bias[c] as f64 + (0..k).map(|j| weight[c * k + j] as f64 * z[j]).sum::<f64>()
                })
                .collect();
            let max = logits.iter().copied().fold(f64::MIN, f64::max);
            let log_sum = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
            cross_entropy += log_sum - logits[target];
        }
    }
    cross_entropy /= (n * draws) as f64;
    let recorded = summary.train.cross_entropy_nats;
    assert!(
        (cross_entropy - recorded).abs() < 0.02 + 0.1 * cross_entropy,
        "independent {cross_entropy} vs recorded {recorded}"
    );
    // So the I(Z;Y) lower bound H(Y) - CE agrees too.
    assert!(h_y - cross_entropy > 0.0);
}

#[test]
fn deterministic_baseline_has_no_rate() {
    let samples = toy_samples(4);
    let config = TrainConfig {
        deterministic: true,
        ..quick_config()
    };
    let (model, history) =
        VibModel::train(&samples, &config, test_device(), vec![], "pixel", |_| {}).unwrap();
    assert!(history
        .iter()
        .all(|e| e.kl_nats == 0.0 && (e.loss - e.cross_entropy_nats).abs() < 1e-9));
    assert!(model.card().architecture.deterministic);
    assert!(model.card().training.train.accuracy > 0.95);
    let p = model
        .predict(&samples.spectra, samples.len(), 12, 0)
        .unwrap();
    assert!(p.iter().all(|p| p.kl_nats == 0.0));
    // One sample or twelve: z = mu, so the same probabilities (up to float rounding of the mean).
    let single = model
        .predict(&samples.spectra, samples.len(), 1, 0)
        .unwrap();
    for (a, b) in single.iter().zip(&p) {
        assert!(a
            .probabilities
            .iter()
            .zip(&b.probabilities)
            .all(|(x, y)| (x - y).abs() < 1e-6));
    }
}

#[test]
fn preprocessing_is_stored_and_reapplied() {
    let samples = toy_samples(6);
    let preprocessing = domain::Preprocessing {
        band_range_nm: Some((420.0, 1000.0)),
        savitzky_golay: Some(domain::SavitzkyGolay {
            window: 5,
            order: 2,
            derivative: 0,
        }),
        snv: true,
        ..Default::default()
    };
    let config = TrainConfig {
        preprocessing: preprocessing.clone(),
        ..quick_config()
    };
    let (model, _) =
        VibModel::train(&samples, &config, test_device(), vec![], "pixel", |_| {}).unwrap();
    assert_eq!(
        model.card().architecture.input_dim,
        11,
        "band 400 nm dropped"
    );
    assert_eq!(model.card().train_config.preprocessing, preprocessing);
    let predictions = model
        .predict(&samples.spectra, samples.len(), 12, 0)
        .unwrap();
    assert_reloads_identically(&model, &samples, &predictions);
    let correct = predictions
        .iter()
        .zip(&samples.label_codes)
        .filter(|(p, &c)| model.card().classes.get(p.predicted_index).unwrap().code == c)
        .count();
    assert!(correct as f64 / samples.len() as f64 > 0.9, "{correct}");
}

#[test]
fn convolutional_encoder_learns_and_reloads() {
    let samples = toy_samples(8);
    let config = TrainConfig {
        encoder: EncoderKind::Conv,
        ..quick_config()
    };
    let (model, _) =
        VibModel::train(&samples, &config, test_device(), vec![], "pixel", |_| {}).unwrap();
    assert_eq!(model.card().architecture.encoder, EncoderKind::Conv);
    assert!(model
        .member_tensors(0)
        .iter()
        .any(|t| t.name == "conv0.weight"));
    assert!(
        model.card().training.train.accuracy > 0.9,
        "{:?}",
        model.card().training.train
    );
    let predictions = model
        .predict(&samples.spectra, samples.len(), 12, 0)
        .unwrap();
    assert_reloads_identically(&model, &samples, &predictions);
}

#[test]
fn bad_inputs_are_errors() {
    let samples = toy_samples(1);
    let (model, _) = VibModel::train(
        &samples,
        &TrainConfig {
            epochs: 1,
            ..quick_config()
        },
        test_device(),
        vec![],
        "pixel",
        |_| {},
    )
    .unwrap();
    assert!(model.predict(&[0.0; 5], 1, 12, 0).is_err());
    assert!(model.predict(&[f32::NAN; 12], 1, 12, 0).is_err());
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a model").unwrap();
    let err = crate::load(&junk, test_device()).unwrap_err().to_string();
    assert!(
        err.contains("junk.safetensors") && err.contains("not a model file"),
        "{err}"
    );
}

/// Two classes of `bands`-band spectra, `per_class` groups of 2 each: `shape(class, band, u)`
/// gives the value, `u` a uniform draw per spectrum (for brightness), plus noise of `noise`.
fn constructed(
    per_class: u32,
    bands: usize,
    noise: f64,
    seed: u64,
    shape: impl Fn(usize, usize, f64) -> f64,
) -> SpectralSamples {
    let mut rng = SplitMix64::new(seed);
    let mut uniform = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let (mut spectra, mut codes, mut groups) = (Vec::new(), Vec::new(), Vec::new());
    for g in 0..2 * per_class {
        let class = (g % 2) as usize;
        for _ in 0..2 {
            let u = uniform();
            for b in 0..bands {
                spectra.push((shape(class, b, u) + (uniform() - 0.5) * 2.0 * noise) as f32);
            }
            codes.push(class as u32 + 1);
            groups.push(g);
        }
    }
    SpectralSamples {
        axis: SpectralAxis::new((0..bands).map(|b| 500.0 + 10.0 * b as f64).collect(), None)
            .unwrap(),
        classes: ClassSet::new(
            ["up", "down"]
                .iter()
                .enumerate()
                .map(|(i, n)| ClassInfo {
                    code: i as u32 + 1,
                    name: n.to_string(),
                })
                .collect(),
        )
        .unwrap(),
        spectra,
        label_codes: codes,
        groups,
        values: None,
    }
}

/// Only the preprocessing race, small networks: fast enough for a debug test.
fn preprocessing_race(samples: &SpectralSamples) -> VibModel {
    let fixed = Fixed {
        preprocessing: false,
        beta: true,
        capacity: true,
        regularisation: true,
    };
    let config = TrainConfig {
        epochs: 60,
        patience: 15,
        ensemble: 1,
        ..quick_config()
    };
    let settings = TuneSettings {
        budget_seconds: 1e6,
        folds: 3,
    };
    VibModel::tune(
        samples,
        &config,
        fixed,
        &settings,
        DeviceChoice::Cpu,
        vec![],
        "pixel",
        |_| {},
        |_| {},
    )
    .unwrap()
    .0
}

fn winner_chain(model: &VibModel) -> domain::Preprocessing {
    let selection = model.card().selection.as_ref().unwrap();
    assert_eq!(
        selection.candidates.len(),
        model::PREPROCESSING_CHOICES.len(),
        "every chain was tried"
    );
    model.card().train_config.preprocessing.clone()
}

/// Classes that differ only in spectral slope, under a brightness that varies 4-fold between
/// spectra: raw values are dominated by brightness; SNV or a derivative removes it and must win.
#[test]
fn selection_picks_a_brightness_free_chain_when_only_the_slope_differs() {
    let samples = constructed(40, 40, 0.002, 11, |class, b, u| {
        let slope = if class == 0 { 0.004 } else { -0.004 };
        (0.2 + 0.6 * u) * (1.0 + slope * (b as f64 - 20.0))
    });
    let chain = winner_chain(&preprocessing_race(&samples));
    let derivative = chain.savitzky_golay.is_some_and(|sg| sg.derivative == 1);
    assert!(
        (chain.snv || derivative) && !chain.continuum_removal,
        "won: {}",
        model::describe_preprocessing(&chain)
    );
}

/// Flat spectra whose classes differ only in brightness: SNV, derivatives and continuum removal
/// erase the difference, so the raw (or merely smoothed) spectra must win.
#[test]
fn selection_keeps_raw_spectra_when_brightness_is_the_signal() {
    let samples = constructed(40, 40, 0.01, 12, |class, _, u| {
        (if class == 0 { 0.30 } else { 0.36 }) + 0.02 * u
    });
    let chain = winner_chain(&preprocessing_race(&samples));
    let derivative = chain.savitzky_golay.is_some_and(|sg| sg.derivative > 0);
    assert!(
        !chain.snv && !derivative && !chain.continuum_removal,
        "won: {}",
        model::describe_preprocessing(&chain)
    );
}

/// The refit is a plain training of the chosen options: `train` with the card's config gives the
/// same networks; the tuned model's temperature comes from the out-of-fold predictions and does
/// not raise their NLL; the same call gives the same model.
#[test]
fn refit_equals_a_plain_training_of_the_chosen_options_and_tuning_is_deterministic() {
    let samples = toy_samples(21);
    let config = TrainConfig {
        epochs: 30,
        patience: 10,
        ensemble: 2,
        ..quick_config()
    };
    let settings = TuneSettings {
        budget_seconds: 0.05,
        folds: 3,
    };
    let tune = || {
        VibModel::tune(
            &samples,
            &config,
            Fixed::default(),
            &settings,
            DeviceChoice::Cpu,
            vec![],
            "pixel",
            |_| {},
            |_| {},
        )
        .unwrap()
        .0
    };
    let tuned = tune();
    let card = tuned.card();
    let selection = card.selection.as_ref().unwrap();
    assert!(selection.candidates.len() >= 2, "{selection:?}");
    assert_eq!(card.train_config.epochs, selection.refit_epochs);
    assert_eq!(card.train_config.validation_fraction, 0.0);
    let calibration = card.calibration.as_ref().unwrap();
    assert_eq!(calibration.fitted_on, "out-of-fold");
    assert_eq!(calibration.samples, samples.len());
    assert!(calibration.nll_after_nats <= calibration.nll_before_nats);

    let (plain, _) = VibModel::train(
        &samples,
        &card.train_config,
        DeviceChoice::Cpu,
        vec![],
        "pixel",
        |_| {},
    )
    .unwrap();
    let n = samples.len();
    // The same networks: the same raw probabilities and KL (the OOD flags differ: the tuned
    // model's thresholds come from its out-of-fold predictions).
    let raw = |m: &VibModel| -> Vec<(Vec<f32>, f64)> {
        m.predict_uncalibrated(&samples.spectra, n, 12, 0)
            .unwrap()
            .into_iter()
            .map(|p| (p.probabilities, p.kl_nats))
            .collect()
    };
    assert!(
        raw(&tuned) == raw(&plain),
        "the refit differs from a plain training"
    );
    assert_eq!(
        tune().model_id(),
        tuned.model_id(),
        "the same search, the same model"
    );
}

/// An ensemble's first member is the single network of the same seed, and its probabilities
/// and KL are the members' means.
#[test]
fn ensemble_of_one_is_the_single_model_and_members_are_averaged() {
    let samples = toy_samples(22);
    let config = |ensemble| TrainConfig {
        epochs: 15,
        ensemble,
        ..quick_config()
    };
    let train = |c: &TrainConfig| {
        VibModel::train(&samples, c, DeviceChoice::Cpu, vec![], "pixel", |_| {})
            .unwrap()
            .0
    };
    let single = train(&config(1));
    let triple = train(&config(3));
    assert_eq!(triple.card().members, 3);
    let n = samples.len();
    let x = standardise(
        &samples.spectra,
        &single.card().input_mean,
        &single.card().input_std,
    );
    let of = |m: &VibModel, k: usize| m.member_predictions(k, &x, n, 12, 0).unwrap();
    assert_eq!(
        of(&single, 0),
        of(&triple, 0),
        "member 0 is the single network"
    );
    let members: Vec<_> = (0..3).map(|k| of(&triple, k)).collect();
    assert_ne!(members[0], members[1], "members differ by seed");
    let averaged = triple.raw_predictions(&x, n, 12, 0).unwrap();
    for i in 0..n {
        let kl = members.iter().map(|m| m[i].kl_nats).sum::<f64>() / 3.0;
        assert!((averaged[i].kl_nats - kl).abs() < 1e-12);
        for c in 0..3 {
            let p = members
                .iter()
                .map(|m| m[i].probabilities[c] as f64)
                .sum::<f64>()
                / 3.0;
            assert!((averaged[i].probabilities[c] as f64 - p).abs() < 1e-6);
        }
    }
    // An ensemble of one through the public API is the single model's tempered prediction.
    let p = single.predict(&samples.spectra, n, 12, 0).unwrap();
    let (t, bias) = single.card().scaling();
    for (q, r) in p.iter().zip(of(&single, 0)) {
        assert_eq!(
            q.probabilities,
            model::calibrate(&r.probabilities, t, &bias)
        );
    }
    let reloaded = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ensemble.safetensors");
        triple.save(&path).unwrap();
        crate::load(&path, DeviceChoice::Cpu).unwrap()
    };
    assert_eq!(reloaded.model_id(), triple.model_id());
    assert_eq!(
        reloaded.predict(&samples.spectra, n, 12, 0).unwrap(),
        triple.predict(&samples.spectra, n, 12, 0).unwrap()
    );
}

#[test]
fn bad_selection_settings_are_one_line_errors_or_fewer_folds() {
    let samples = toy_samples(23);
    let tune = |samples: &SpectralSamples, budget: f64, config: &TrainConfig| {
        VibModel::tune(
            samples,
            config,
            Fixed::default(),
            &TuneSettings {
                budget_seconds: budget,
                folds: 5,
            },
            DeviceChoice::Cpu,
            vec![],
            "pixel",
            |_| {},
            |_| {},
        )
    };
    let quick = TrainConfig {
        epochs: 5,
        ensemble: 1,
        ..quick_config()
    };
    let err = tune(&samples, 0.0, &quick).unwrap_err().to_string();
    assert!(err.contains("budget") && err.contains("--no-tune"), "{err}");
    let err = tune(
        &samples,
        1.0,
        &TrainConfig {
            ensemble: 0,
            ..quick.clone()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("at least 1 member"), "{err}");
    // Class "a" in a single group: no cross-validation is possible.
    let mut one_group = samples.clone();
    for (g, &c) in one_group.groups.iter_mut().zip(&samples.label_codes) {
        if c == 1 {
            *g = 1000;
        }
    }
    let err = tune(&one_group, 1.0, &quick).unwrap_err().to_string();
    assert!(
        err.contains("class 'a'") && err.contains("--no-tune"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
    // Three groups per class: three folds instead of five.
    let mut three = samples.clone();
    for g in three.groups.iter_mut() {
        *g %= 9;
    }
    let model = tune(&three, 0.01, &quick).unwrap().0;
    assert_eq!(model.card().selection.as_ref().unwrap().folds, 3);
}

/// Spectra whose depth of one absorption feature is a severity s in [0, 1] (40 plants of 4
/// spectra, each plant one severity), with Gaussian noise of sd `noise` on the target: y = s + e.
fn severity_samples(seed: u64, noise: f64) -> SpectralSamples {
    let bands = 12;
    let normals = model::normals(seed, 40 * 4 * (bands + 1));
    let mut draws = normals.iter().map(|&v| v as f64);
    let (mut spectra, mut values, mut groups) = (Vec::new(), Vec::new(), Vec::new());
    for g in 0..40u32 {
        let s = (g as f64 * 0.618_034).fract();
        for _ in 0..4 {
            for b in 0..bands {
                let feature = (-((b as f64 - 6.0) / 2.0).powi(2)).exp();
                let e = draws.next().unwrap();
                spectra.push((0.5 - 0.3 * s * feature + 0.005 * e) as f32);
            }
            values.push(s + noise * draws.next().unwrap());
            groups.push(g);
        }
    }
    SpectralSamples {
        axis: SpectralAxis::new((0..bands).map(|b| 500.0 + 20.0 * b as f64).collect(), None)
            .unwrap(),
        classes: ClassSet::new(vec![ClassInfo {
            code: 1,
            name: "severity".into(),
        }])
        .unwrap(),
        label_codes: vec![1; values.len()],
        spectra,
        groups,
        values: Some(values),
    }
}

/// The Gaussian head learns a severity with known noise (sd 0.05): RMSE near the noise, 90%
/// intervals that cover about 90% of new targets, the model file round trip, batch independence,
/// and the two kinds of model refusing each other's prediction call.
#[test]
fn regression_head_learns_severity_with_calibrated_intervals() {
    let samples = severity_samples(3, 0.05);
    let config = TrainConfig {
        epochs: 150,
        ..quick_config()
    };
    let (model, history) = VibModel::train(
        &samples,
        &config,
        DeviceChoice::Cpu,
        vec![],
        "plant",
        |_| {},
    )
    .unwrap();
    assert!(history.iter().all(|r| r.train_accuracy.is_nan()));
    let card = model.card();
    assert_eq!(card.architecture.head, model::Head::Gaussian);
    assert_eq!(card.architecture.classes, 2);
    let target = card.target.as_ref().unwrap();
    assert_eq!(target.name, "severity");
    assert!(
        target.calibration.is_some(),
        "fitted on the validation split"
    );
    let validation = card.training.validation.as_ref().unwrap();
    let m = validation.regression.as_ref().unwrap();
    assert!(m.rmse < 0.1 && m.r_squared > 0.8, "{m:?}");
    // The relevance bound's ingredients are in target units.
    assert!(card.training.label_entropy_nats - validation.cross_entropy_nats > 0.5);

    let test = severity_samples(4, 0.05);
    let predictions = model
        .predict_values(&test.spectra, test.len(), 12, 0)
        .unwrap();
    let truth = test.values.as_ref().unwrap();
    let metrics = model::RegressionMetrics::compute(truth, &predictions, 0.9);
    assert!(metrics.rmse < 0.1, "{metrics:?}");
    // 160 targets: coverage within 0.75-0.99 (the noise is known, the fit is not exact).
    assert!(
        (0.75..=0.99).contains(&metrics.coverage),
        "coverage {}",
        metrics.coverage
    );
    assert!(metrics.spearman_rho > 0.9, "{metrics:?}");
    for p in &predictions {
        assert!(p.sd > 0.0 && p.lower < p.mean && p.mean < p.upper && p.kl_nats >= 0.0);
    }
    // Alone or in a batch: the same bits.
    let bands = test.axis.len();
    let alone = model
        .predict_values(&test.spectra[5 * bands..6 * bands], 1, 12, 0)
        .unwrap();
    assert_eq!(alone[0], predictions[5]);
    // The model file keeps the target and its calibration.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("severity.safetensors");
    model.save(&path).unwrap();
    let loaded = crate::load(&path, DeviceChoice::Cpu).unwrap();
    assert_eq!(loaded.card(), model.card());
    assert_eq!(
        loaded
            .predict_values(&test.spectra, test.len(), 12, 0)
            .unwrap(),
        predictions
    );
    // Each kind of model refuses the other's call.
    assert!(model.predict(&test.spectra, test.len(), 12, 0).is_err());
    let classifier = quick_cpu_model(&toy_samples(1), EncoderKind::Mlp, 5);
    let toy = toy_samples(2);
    assert!(classifier
        .predict_values(&toy.spectra, toy.len(), 12, 0)
        .is_err());
}

/// Selection and calibration work for a continuous target: candidates scored by out-of-fold
/// Gaussian NLL with an RMSE, the variance scale fitted out of fold, deterministic.
#[test]
fn regression_selection_scores_by_gaussian_nll() {
    let samples = severity_samples(5, 0.05);
    let tune = || {
        VibModel::tune(
            &samples,
            &TrainConfig {
                epochs: 40,
                ensemble: 2,
                ..quick_config()
            },
            Fixed {
                capacity: true,
                regularisation: true,
                beta: true,
                ..Fixed::default()
            },
            &TuneSettings {
                budget_seconds: 0.5,
                folds: 3,
            },
            DeviceChoice::Cpu,
            vec![],
            "plant",
            |_| {},
            |_| {},
        )
        .unwrap()
        .0
    };
    let model = tune();
    let selection = model.card().selection.as_ref().unwrap();
    assert!(selection.candidates.iter().all(|c| c.cv_rmse.is_some()));
    let winner = &selection.candidates[selection.winner];
    assert!(
        winner.cv_nll_nats.is_finite() && winner.cv_rmse.unwrap() < 0.2,
        "{winner:?}"
    );
    let target = model.card().target.as_ref().unwrap();
    assert_eq!(
        target.calibration.as_ref().unwrap().fitted_on,
        "out-of-fold"
    );
    assert_eq!(model.card().members, 2);
    assert_eq!(tune().model_id(), model.model_id());
}

/// A target that is not a number is an error naming the sample.
#[test]
fn regression_targets_must_be_finite() {
    let mut samples = severity_samples(6, 0.0);
    samples.values.as_mut().unwrap()[7] = f64::NAN;
    let error = VibModel::train(
        &samples,
        &quick_config(),
        DeviceChoice::Cpu,
        vec![],
        "plant",
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("sample 8") && error.contains("not a finite"),
        "{error}"
    );
}
