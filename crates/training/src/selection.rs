//! Automatic model selection: grouped, stratified k-fold cross-validation inside the training data
//! over a compact search space, raced by successive halving over the folds, under a budget of
//! training work.
//!
//! Two races, one after the other:
//! 1. preprocessing: every chain of [`PREPROCESSING_CHOICES`] at the base hyperparameters;
//! 2. hyperparameters: the winning chain with beta x capacity x regularisation from the grid, in a
//!    seeded order, as many as the remaining budget allows (the first race's winner takes part
//!    with the folds it already has).
//!
//! When the budget allows, a race evaluates every candidate on every fold (small data sets: one
//! fold of a few dozen spectra is a noisy judge). Otherwise it is successive halving: every
//! candidate on the first fold, the best third (at least two) on the next two folds, the best
//! third of those on the remaining folds. The score is the out-of-fold
//! negative log-likelihood after calibration (temperature and class offsets) (the NLL the calibrated model would have;
//! accuracy breaks ties), over the folds a candidate has been evaluated on; the winner is the best
//! candidate evaluated on every fold.
//!
//! The budget is counted in training work, not wall-clock time: a training of n spectra for e
//! epochs costs 3 x n x e x (multiply-adds of one forward pass), converted to seconds at
//! [`REFERENCE_WORK_PER_SECOND`] (measured on a 2-core machine). The same data and settings thus
//! always search the same candidates, whatever the load; a faster machine just finishes sooner.

use std::collections::BTreeMap;

use domain::{Preprocessing, SavitzkyGolay, SpectralSamples};
use model::{
    calibrated_nll, describe_preprocessing, fewest_groups_per_class, fit_calibration,
    fit_variance_scale, grouped_folds, mean_nll, moments, tempered_nll, CandidateRecord, Error,
    Fixed, Head, RawPrediction, Result, Selection, SplitMix64, TrainConfig, TuneSettings,
    BETA_CHOICES, CAPACITY_CHOICES, PREPROCESSING_CHOICES, REFERENCE_WORK_PER_SECOND,
    REGULARISATION_CHOICES,
};

use crate::ensemble::TorchNet;
use crate::training::{architecture, fit, forward_cost, Batch, Features};

/// Samples of z for the out-of-fold predictions (as at prediction).
const CV_Z_SAMPLES: usize = 12;

/// The winner's configuration and its out-of-fold predictions (one per sample).
pub(crate) struct Outcome {
    pub selection: Selection,
    pub config: TrainConfig,
    /// (sample index, prediction) of the held-out samples the ensemble was cross-validated on.
    pub out_of_fold: Vec<(usize, RawPrediction)>,
}

/// Held-out samples enough to fit a temperature and two percentiles: the ensemble's other
/// members are cross-validated on the first folds until this many samples are covered.
const ENSEMBLE_CV_SAMPLES: usize = 1000;

struct Candidate {
    config: TrainConfig,
    record: CandidateRecord,
    /// Out-of-fold predictions of the evaluated folds.
    out_of_fold: Vec<Option<RawPrediction>>,
    evaluated: Vec<bool>,
}

impl Candidate {
    fn new(id: usize, race: &str, config: TrainConfig, n: usize, k: usize) -> Self {
        let record = CandidateRecord {
            id,
            race: race.to_string(),
            preprocessing: describe_preprocessing(&config.preprocessing),
            beta: config.beta,
            latent_dim: config.latent_dim,
            hidden_dims: config.hidden_dims.clone(),
            weight_decay: config.weight_decay,
            input_noise: config.input_noise,
            folds_evaluated: 0,
            cv_nll_nats: f64::INFINITY,
            cv_raw_nll_nats: f64::INFINITY,
            cv_accuracy: 0.0,
            cv_rmse: None,
            temperature: 1.0,
            class_log_bias: Vec::new(),
            best_epochs: Vec::new(),
            work_seconds: 0.0,
            wall_seconds: 0.0,
        };
        Self {
            config,
            record,
            out_of_fold: vec![None; n],
            evaluated: vec![false; k],
        }
    }

    /// Ranking key: calibrated NLL, then accuracy (higher first), then id.
    fn beats(&self, other: &Self) -> bool {
        let (a, b) = (&self.record, &other.record);
        a.cv_nll_nats
            .total_cmp(&b.cv_nll_nats)
            .then(b.cv_accuracy.total_cmp(&a.cv_accuracy))
            .then(a.id.cmp(&b.id))
            .is_lt()
    }
}

/// The cross-validation: data, folds and the preprocessed features of each chain tried.
struct CrossValidation<'a> {
    samples: &'a SpectralSamples,
    /// Class indices, or the strata of a continuous target.
    targets: &'a [usize],
    /// The standardised continuous target (Gaussian head) and its standard deviation.
    values: Option<(&'a [f32], f64)>,
    fold_of: Vec<usize>,
    k: usize,
    device: tch::Device,
    features: BTreeMap<String, Features>,
    work_seconds: f64,
}

impl CrossValidation<'_> {
    fn evaluate(&mut self, candidate: &mut Candidate, fold: usize) -> Result<()> {
        if candidate.evaluated[fold] {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let key = serde_json::to_string(&candidate.config.preprocessing)
            .map_err(|e| Error::Data(format!("preprocessing: {e}")))?;
        if !self.features.contains_key(&key) {
            let data =
                Features::prepare(self.samples, &candidate.config.preprocessing, self.targets)?
                    .with_target_values(self.values.map(|(v, _)| v));
            self.features.insert(key.clone(), data);
        }
        let data = &self.features[&key];
        let (train_idx, val_idx): (Vec<usize>, Vec<usize>) =
            (0..self.targets.len()).partition(|&i| self.fold_of[i] != fold);
        let (mean, std) = data.standardisation(&train_idx);
        let train = Batch::new(data, &train_idx, &mean, &std, self.device)?;
        let validation = Batch::new(data, &val_idx, &mean, &std, self.device)?;
        let config = &candidate.config;
        let head = if self.values.is_some() {
            Head::Gaussian
        } else {
            Head::Classifier
        };
        let arch = architecture(config, data.features, head, self.samples.classes.len())?;
        let fitted = fit(
            &train,
            Some(&validation),
            &arch,
            config,
            config.seed,
            self.device,
            &mut |_| {},
        )?;
        let epochs_run = fitted.history.len();
        let member = TorchNet {
            vs: fitted.vs,
            net: fitted.net,
        };
        let x = data.standardised(&val_idx, &mean, &std);
        let predictions = member.predict(&x, val_idx.len(), &arch, CV_Z_SAMPLES, config.seed)?;
        for (&i, p) in val_idx.iter().zip(predictions) {
            candidate.out_of_fold[i] = Some(p);
        }
        candidate.evaluated[fold] = true;
        let work = 3.0 * forward_cost(&arch) * train_idx.len() as f64 * epochs_run as f64
            / REFERENCE_WORK_PER_SECOND;
        let record = &mut candidate.record;
        record.best_epochs.push(fitted.best_epoch);
        record.work_seconds += work;
        record.wall_seconds += started.elapsed().as_secs_f64();
        record.folds_evaluated += 1;
        self.work_seconds += work;
        // Scores over the folds evaluated so far.
        if let Some((values, std)) = self.values {
            let (mut predicted, mut truth) = (Vec::new(), Vec::new());
            for (i, p) in candidate.out_of_fold.iter().enumerate() {
                if let Some(p) = p {
                    predicted.push(moments(p));
                    truth.push(values[i] as f64);
                }
            }
            let scale = fit_variance_scale(&predicted, &truth);
            // In target units: the standardised NLL plus ln std.
            record.cv_nll_nats = mean_nll(&predicted, &truth, scale) + std.ln();
            record.cv_raw_nll_nats = mean_nll(&predicted, &truth, 1.0) + std.ln();
            record.temperature = scale.sqrt();
            let squared: f64 = predicted
                .iter()
                .zip(&truth)
                .map(|(&(m, _), y)| (y - m).powi(2))
                .sum();
            record.cv_rmse = Some((squared / truth.len().max(1) as f64).sqrt() * std);
            tracing::debug!(
                candidate = record.id,
                fold,
                nll = record.cv_nll_nats,
                rmse = record.cv_rmse,
                "cross-validation fold"
            );
            return Ok(());
        }
        let (mut probabilities, mut truth) = (Vec::new(), Vec::new());
        let mut correct = 0usize;
        for (i, p) in candidate.out_of_fold.iter().enumerate() {
            if let Some(p) = p {
                probabilities.push(p.probabilities.as_slice());
                truth.push(self.targets[i]);
                correct += usize::from(argmax(&p.probabilities) == self.targets[i]);
            }
        }
        let (temperature, bias) = fit_calibration(&probabilities, &truth);
        record.cv_nll_nats = calibrated_nll(&probabilities, &truth, temperature, &bias);
        record.temperature = temperature;
        record.class_log_bias = bias;
        record.cv_raw_nll_nats = tempered_nll(&probabilities, &truth, 1.0);
        record.cv_accuracy = correct as f64 / truth.len().max(1) as f64;
        tracing::debug!(
            candidate = record.id,
            fold,
            nll = record.cv_nll_nats,
            accuracy = record.cv_accuracy,
            "cross-validation fold"
        );
        Ok(())
    }

    /// The folds of each rung: the first, the next two, the rest.
    fn rungs(&self) -> Vec<Vec<usize>> {
        let k = self.k;
        [0..1.min(k), 1.min(k)..3.min(k), 3.min(k)..k]
            .into_iter()
            .filter(|r| !r.is_empty())
            .map(|r| r.collect())
            .collect()
    }

    /// Trainings a candidate costs on average in a race (1 fold for all, 2 for a third, ...).
    fn trainings_per_candidate(&self) -> f64 {
        self.rungs()
            .iter()
            .enumerate()
            .map(|(r, folds)| folds.len() as f64 / 3f64.powi(r as i32))
            .sum()
    }

    /// Successive halving over the folds (or every candidate on every fold, without `halving`).
    fn race(
        &mut self,
        candidates: &mut [Candidate],
        halving: bool,
        on_progress: &mut dyn FnMut(&CandidateRecord),
    ) -> Result<()> {
        let mut alive: Vec<usize> = (0..candidates.len()).collect();
        let rungs = if halving {
            self.rungs()
        } else {
            vec![(0..self.k).collect()]
        };
        for (r, folds) in rungs.into_iter().enumerate() {
            if r > 0 {
                alive.sort_by(|&a, &b| {
                    if candidates[a].beats(&candidates[b]) {
                        std::cmp::Ordering::Less
                    } else {
                        std::cmp::Ordering::Greater
                    }
                });
                let keep = alive.len().div_ceil(3).max(2).min(alive.len());
                alive.truncate(keep);
            }
            for &c in &alive {
                for &fold in &folds {
                    self.evaluate(&mut candidates[c], fold)?;
                }
                on_progress(&candidates[c].record);
            }
        }
        Ok(())
    }
}

fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// The best candidate evaluated on every fold.
fn best_complete(candidates: &[Candidate], k: usize) -> Option<usize> {
    (0..candidates.len())
        .filter(|&c| candidates[c].record.folds_evaluated == k)
        .reduce(|a, b| {
            if candidates[b].beats(&candidates[a]) {
                b
            } else {
                a
            }
        })
}

/// Select the configuration for `samples` (class indices `targets`, or the strata of the
/// standardised continuous target `values` with its standard deviation) from the search space
/// around `base`, keeping what `fixed` names.
#[allow(clippy::too_many_arguments)]
pub(crate) fn select(
    samples: &SpectralSamples,
    targets: &[usize],
    values: Option<(&[f32], f64)>,
    base: &TrainConfig,
    fixed: Fixed,
    settings: &TuneSettings,
    device: tch::Device,
    on_progress: &mut dyn FnMut(&CandidateRecord),
) -> Result<Outcome> {
    if !(settings.budget_seconds > 0.0 && settings.budget_seconds.is_finite()) {
        return Err(Error::Config(format!(
            "the tuning budget must be a positive number of seconds, not {} (train without \
             selection with --no-tune)",
            settings.budget_seconds
        )));
    }
    if settings.folds < 2 {
        return Err(Error::Config(format!(
            "cross-validation needs at least 2 folds, not {}",
            settings.folds
        )));
    }
    let (fewest, class) = fewest_groups_per_class(targets, &samples.groups);
    if fewest < 2 {
        let what = match values {
            Some(_) => format!("target stratum {} (of its quintiles or scores)", class + 1),
            None => format!(
                "class '{}'",
                samples
                    .classes
                    .iter()
                    .nth(class)
                    .map_or("?", |c| c.name.as_str())
            ),
        };
        return Err(Error::Data(format!(
            "{what} has {fewest} sample group(s); cross-validation needs at least 2 per class \
             (train without selection with --no-tune)"
        )));
    }
    let k = settings.folds.min(fewest);
    if k < settings.folds {
        tracing::warn!(
            folds = k,
            "a class has only {fewest} sample groups: cross-validating with {k} folds"
        );
    }
    let mut cv = CrossValidation {
        samples,
        targets,
        values,
        fold_of: grouped_folds(targets, &samples.groups, k, base.seed),
        k,
        device,
        features: BTreeMap::new(),
        work_seconds: 0.0,
    };
    let n = targets.len();
    let per_candidate = cv.trainings_per_candidate();

    // Race 1: preprocessing, at the base hyperparameters; the base chain first.
    let mut chains = vec![base.preprocessing.clone()];
    if !fixed.preprocessing {
        for (continuum_removal, sg, snv) in PREPROCESSING_CHOICES {
            let chain = Preprocessing {
                continuum_removal,
                savitzky_golay: sg.map(|(window, order, derivative)| SavitzkyGolay {
                    window,
                    order,
                    derivative,
                }),
                snv,
                ..base.preprocessing.clone()
            };
            // Chains too long for the bands left are skipped.
            if !chains.contains(&chain) && chain.for_axis(&samples.axis).is_ok() {
                chains.push(chain);
            }
        }
    }
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut first = Candidate::new(0, "preprocessing", base.clone(), n, k);
    cv.evaluate(&mut first, 0)?;
    // One training of the base candidate: the yardstick for planning the budget.
    let unit = first.record.work_seconds;
    candidates.push(first);
    let share = if fixed.beta && fixed.capacity && fixed.regularisation {
        1.0
    } else {
        0.4
    };
    // Every chain on every fold when the budget allows it (small data: one fold is a noisy
    // judge), else successive halving over as many chains as fit.
    let k_f = k as f64;
    let budget_1 = share * settings.budget_seconds;
    let halving_1 = chains.len() as f64 * k_f * unit > budget_1;
    let per = if halving_1 { per_candidate } else { k_f };
    let mut planned = unit * per;
    for chain in chains.into_iter().skip(1) {
        if planned + unit * per > budget_1 {
            break;
        }
        planned += unit * per;
        let config = TrainConfig {
            preprocessing: chain,
            ..base.clone()
        };
        candidates.push(Candidate::new(
            candidates.len(),
            "preprocessing",
            config,
            n,
            k,
        ));
    }
    cv.race(&mut candidates, halving_1, on_progress)?;
    let incumbent = best_complete(&candidates, k)
        .expect("the race evaluates two candidates, or one, on every fold");

    // Race 2: beta x capacity x regularisation for the winning chain, in a seeded order.
    let chosen = candidates[incumbent].config.clone();
    let mut grid = Vec::new();
    let betas: Vec<f64> = if fixed.beta || base.deterministic {
        vec![base.beta]
    } else {
        BETA_CHOICES.to_vec()
    };
    let capacities: Vec<(usize, Vec<usize>)> = if fixed.capacity {
        vec![(base.latent_dim, base.hidden_dims.clone())]
    } else {
        CAPACITY_CHOICES
            .iter()
            .map(|(l, h)| (*l, h.to_vec()))
            .collect()
    };
    let regularisations: Vec<(f64, f64)> = if fixed.regularisation {
        vec![(base.weight_decay, base.input_noise)]
    } else {
        REGULARISATION_CHOICES.to_vec()
    };
    for &beta in &betas {
        for (latent_dim, hidden_dims) in &capacities {
            for &(weight_decay, input_noise) in &regularisations {
                let config = TrainConfig {
                    beta,
                    latent_dim: *latent_dim,
                    hidden_dims: hidden_dims.clone(),
                    weight_decay,
                    input_noise,
                    ..chosen.clone()
                };
                if config != chosen {
                    grid.push(config);
                }
            }
        }
    }
    SplitMix64::new(base.seed ^ 0x0005_E1EC_7000_0003).shuffle(&mut grid);
    let remaining = settings.budget_seconds - cv.work_seconds;
    let base_cost = forward_cost(&architecture(&chosen, 2, Head::Classifier, 2)?);
    // A candidate's work scales with its network's cost relative to the base's.
    let costs: Vec<f64> = grid
        .iter()
        .map(|c| Ok(unit * forward_cost(&architecture(c, 2, Head::Classifier, 2)?) / base_cost))
        .collect::<Result<_>>()?;
    let halving_2 = costs.iter().sum::<f64>() * k_f > remaining;
    let per = if halving_2 { per_candidate } else { k_f };
    let mut planned = 0.0;
    let mut second: Vec<Candidate> = Vec::new();
    for (config, cost) in grid.into_iter().zip(costs) {
        if planned + cost * per > remaining {
            break;
        }
        planned += cost * per;
        second.push(Candidate::new(
            candidates.len() + second.len(),
            "hyperparameters",
            config,
            n,
            k,
        ));
    }
    if !second.is_empty() {
        // The incumbent joins the race with the folds it has.
        let mut racing = vec![candidates.remove(incumbent)];
        racing.extend(second);
        cv.race(&mut racing, halving_2, on_progress)?;
        candidates.extend(racing);
    }
    candidates.sort_by_key(|c| c.record.id);
    let winner = best_complete(&candidates, k).expect("the incumbent is evaluated on every fold");
    let w = &candidates[winner];
    let search_work = cv.work_seconds;
    let mut epochs = w.record.best_epochs.clone();
    epochs.sort_unstable();
    let refit_epochs = epochs[epochs.len() / 2].max(1);
    let complete = candidates
        .iter()
        .filter(|c| c.record.folds_evaluated == k)
        .count();
    let second_score = match w.record.cv_rmse {
        Some(rmse) => format!("RMSE {rmse:.4}"),
        None => format!("accuracy {:.4}", w.record.cv_accuracy),
    };
    let reason = format!(
        "lowest out-of-fold NLL after calibration ({:.4} nats, {second_score}) of the {complete} \
         candidate(s) evaluated on all {k} folds; {} candidate(s) tried in {:.0} s of training work",
        w.record.cv_nll_nats,
        candidates.len(),
        search_work
    );
    let single: Vec<RawPrediction> = w
        .out_of_fold
        .iter()
        .map(|p| p.clone().expect("the winner has every fold"))
        .collect();
    // The ensemble's own out-of-fold predictions: the other members of each fold's ensemble are
    // trained too (seeds seed + 1, ...), so that the temperature and OOD thresholds are fitted
    // to what the model will predict (averaging members softens the probabilities).
    let winner_config = w.config.clone();
    let mut folds_used = Vec::new();
    let mut covered = 0;
    for fold in 0..k {
        if covered >= ENSEMBLE_CV_SAMPLES && base.ensemble > 1 {
            break;
        }
        folds_used.push(fold);
        covered += cv.fold_of.iter().filter(|&&f| f == fold).count();
    }
    let held: Vec<usize> = (0..n)
        .filter(|&i| folds_used.contains(&cv.fold_of[i]))
        .collect();
    let mut per_member = vec![held.iter().map(|&i| single[i].clone()).collect::<Vec<_>>()];
    for m in 1..base.ensemble {
        let mut member = Candidate::new(
            usize::MAX,
            "ensemble",
            TrainConfig {
                seed: winner_config.seed.wrapping_add(m as u64),
                ..winner_config.clone()
            },
            n,
            k,
        );
        for &fold in &folds_used {
            cv.evaluate(&mut member, fold)?;
        }
        per_member.push(
            held.iter()
                .map(|&i| member.out_of_fold[i].clone().expect("fold evaluated"))
                .collect(),
        );
    }
    let averaged = model::average(per_member);
    let ensemble_accuracy = if values.is_some() {
        0.0
    } else {
        averaged
            .iter()
            .zip(&held)
            .filter(|(p, &i)| argmax(&p.probabilities) == targets[i])
            .count() as f64
            / held.len() as f64
    };
    let out_of_fold: Vec<(usize, RawPrediction)> = held.into_iter().zip(averaged).collect();
    let config = TrainConfig {
        epochs: refit_epochs,
        validation_fraction: 0.0,
        ..w.config.clone()
    };
    let records: Vec<CandidateRecord> = candidates.into_iter().map(|c| c.record).collect();
    Ok(Outcome {
        selection: Selection {
            folds: k,
            budget_seconds: settings.budget_seconds,
            work_seconds: search_work,
            winner,
            reason,
            ensemble_cv_accuracy: ensemble_accuracy,
            ensemble_cv_samples: out_of_fold.len(),
            ensemble_work_seconds: cv.work_seconds - search_work,
            refit_epochs,
            candidates: records,
        },
        config,
        out_of_fold,
    })
}
