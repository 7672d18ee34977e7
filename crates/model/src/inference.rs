//! Prediction on the CPU in a fixed arithmetic order.
//!
//! Every spectrum's probabilities, entropy and KL are a function of (spectrum, weights, samples of
//! z, seed) alone: never of what else is in the batch, the batch size, the thread count, memory
//! alignment or the load of the machine. libtorch's CPU kernels (MKL, oneDNN) choose blocking and
//! code paths by matrix shape, alignment and thread count, so one plant's KL moved in the last bits
//! with its neighbours (issue 10). Here:
//! - the dense layers' products go through `gemm.rs` (weights packed once; with AVX-512 its own
//!   kernel, which computes every element as `matrixmultiply` does, bit for bit: a chain of fused
//!   multiply-adds over the reduction in order, in blocks of 256), the convolutions' through
//!   `matrixmultiply`: either way one element depends only on its row, the weights and the
//!   reduction length, never on the other rows or the blocking of rows and columns;
//! - rows are independent: threads take fixed chunks of rows, so the thread count changes who
//!   computes a row, not how;
//! - the noise eps of z = mu + sigma * eps is a table of `z_samples` draws made from the seed
//!   alone (common random numbers): every spectrum averages its softmax over the same draws, so a
//!   plant gets the same eps alone or among thousands, and a change in the last bit of a spectrum
//!   changes its probabilities by as little as the network lets it (it would not, with draws seeded
//!   by the spectrum's bits).
//!
//! The result can still differ between CPUs with different SIMD (FMA or not), as any BLAS does.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::exp;
use crate::gemm::{self, PackedWeights};
use crate::network::{Architecture, EncoderKind, Head, LOGVAR_MAX, LOGVAR_MIN};
use crate::persist::NamedTensor;
use crate::split::SplitMix64;

/// Rows a thread takes at a time.
const CHUNK_ROWS: usize = 256;

/// A fully connected layer: `weight` [out, in] row-major (as libtorch stores it), `bias` [out].
#[derive(Debug, Clone)]
struct Dense {
    weight: Vec<f32>,
    /// `weight`, packed once for the product.
    packed: PackedWeights,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Dense {
    /// `x`: [rows, inputs] -> `y` [rows, outputs]: x W^T + b, ReLU when asked. `y`'s contents
    /// are replaced (its allocation is reused, and the product writes every element, so nothing
    /// is zeroed first).
    fn forward_into(&self, x: &[f32], rows: usize, relu: bool, y: &mut Vec<f32>) {
        let len = rows * self.outputs;
        y.clear();
        y.reserve(len);
        gemm::dense(
            x,
            rows,
            &self.packed,
            &self.weight,
            &self.bias,
            relu,
            &mut y.spare_capacity_mut()[..len],
        );
        // SAFETY: `gemm::dense` wrote all `len` elements of the spare capacity.
        unsafe { y.set_len(len) };
    }
}

/// A 1D convolution along the bands, stride 1, zero padding `kernel / 2` (length kept):
/// `weight` [out_channels, in_channels, kernel], `bias` [out_channels].
#[derive(Debug, Clone)]
struct Conv {
    weight: Vec<f32>,
    bias: Vec<f32>,
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
}

impl Conv {
    /// One spectrum's feature map [in_channels, length] -> ReLU(conv) max-pooled by 2:
    /// [out_channels, length / 2]. The convolution is an im2col product, so its reduction order
    /// is fixed like the dense layers'.
    fn forward_pooled(&self, x: &[f32], length: usize) -> Vec<f32> {
        let taps = self.in_channels * self.kernel;
        let pad = (self.kernel / 2) as isize;
        // columns[t, c * kernel + j] = x[c, t + j - pad] (0 outside)
        let mut columns = vec![0f32; length * taps];
        for t in 0..length {
            for c in 0..self.in_channels {
                for j in 0..self.kernel {
                    let source = t as isize + j as isize - pad;
                    if (0..length as isize).contains(&source) {
                        columns[t * taps + c * self.kernel + j] = x[c * length + source as usize];
                    }
                }
            }
        }
        // [length, out_channels]
        let mut y = vec![0f32; length * self.out_channels];
        matmul_transposed(
            &columns,
            length,
            taps,
            &self.weight,
            self.out_channels,
            &mut y,
        );
        let pooled = length / 2;
        let mut out = vec![0f32; self.out_channels * pooled];
        for o in 0..self.out_channels {
            for t in 0..pooled {
                let a = (y[2 * t * self.out_channels + o] + self.bias[o]).max(0.0);
                let b = (y[(2 * t + 1) * self.out_channels + o] + self.bias[o]).max(0.0);
                out[o * pooled + t] = a.max(b);
            }
        }
        out
    }
}

/// `y` [rows, n] = `x` [rows, k] times the transpose of `w` [n, k].
fn matmul_transposed(x: &[f32], rows: usize, k: usize, w: &[f32], n: usize, y: &mut [f32]) {
    // SAFETY: f32 and MaybeUninit<f32> have the same layout, and only initialised f32 values are
    // written through the view.
    let y = unsafe {
        std::slice::from_raw_parts_mut(y.as_mut_ptr().cast::<MaybeUninit<f32>>(), y.len())
    };
    gemm::matrixmultiply_product(x, rows, k, w, n, y);
}

/// The buffers of one thread's forward passes, reused from member to member and call to call
/// (their contents never carry over: each pass overwrites what it reads).
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    hidden: [Vec<f32>; 2],
    head: Vec<f32>,
    mu: Vec<f32>,
    logvar: Vec<f32>,
    z: Vec<f32>,
    logits: Vec<f32>,
    /// exp(logvar / 2) of every row.
    sigma: Vec<f32>,
    /// exp's arguments, then its values (the softmax's and the KL terms').
    exps: Vec<f64>,
    /// The logits class-major, each sample row's largest and its softmax denominator.
    transposed: Vec<f32>,
    row_max: Vec<f32>,
    totals: Vec<f64>,
}

/// The VIB network's weights, laid out for [`CpuNet::predict`].
#[derive(Debug, Clone)]
pub struct CpuNet {
    encoder: EncoderKind,
    input_dim: usize,
    convs: Vec<Conv>,
    hidden: Vec<Dense>,
    /// The mu/logvar head: [2 * latent, last hidden].
    head: Dense,
    classifier: Dense,
    latent_dim: usize,
    deterministic: bool,
    output: Head,
}

/// One spectrum's prediction before it becomes a [`domain::Prediction`] (or, for a Gaussian
/// head, a [`domain::ValuePrediction`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RawPrediction {
    /// The softmax averaged over samples of z; for a Gaussian head, the mixture's moments
    /// (E[y], E[y^2]) on the standardised target.
    pub probabilities: Vec<f32>,
    pub kl_nats: f64,
}

/// (x - mean) / std per band, for row-major spectra of `mean.len()` bands.
pub fn standardise(spectra: &[f32], mean: &[f32], std: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(spectra.len());
    for spectrum in spectra.chunks(mean.len()) {
        // Slices zipped: the loop is vectorised (the same divisions, element by element).
        out.extend(
            spectrum
                .iter()
                .zip(mean)
                .zip(std)
                .map(|((&v, &m), &sd)| (v - m) / sd),
        );
    }
    out
}

/// The eps of every spectrum's `z_samples` draws of z, [z_samples, latent], from `seed` alone.
pub fn eps_table(seed: u64, z_samples: usize, latent: usize) -> Vec<f32> {
    normals(
        SplitMix64::new(seed ^ 0x0005_EED0_FE95_u64).next_u64(),
        z_samples * latent,
    )
}

/// `count` standard normal draws (Box-Muller on SplitMix64), the same on every platform.
pub fn normals(seed: u64, count: usize) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    let mut uniform = move || ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let mut out = Vec::with_capacity(count + 1);
    while out.len() < count {
        let (u1, u2) = (uniform(), uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let angle = 2.0 * std::f64::consts::PI * u2;
        out.push((r * angle.cos()) as f32);
        out.push((r * angle.sin()) as f32);
    }
    out.truncate(count);
    out
}

impl CpuNet {
    /// The network of `arch` with the weights `tensors` (every tensor of
    /// [`Architecture::weight_shapes`], by name; checked there).
    pub fn new(arch: &Architecture, tensors: &[NamedTensor]) -> Result<Self> {
        let values = |name: &str| -> Result<(Vec<f32>, Vec<usize>)> {
            tensors
                .iter()
                .find(|t| t.name == name)
                .map(|t| (t.values.clone(), t.shape.clone()))
                .ok_or_else(|| Error::Data(format!("the network has no tensor '{name}'")))
        };
        let dense = |name: &str| -> Result<Dense> {
            let (weight, shape) = values(&format!("{name}.weight"))?;
            let (bias, _) = values(&format!("{name}.bias"))?;
            Ok(Dense {
                packed: PackedWeights::new(&weight, shape[0], shape[1]),
                weight,
                bias,
                inputs: shape[1],
                outputs: shape[0],
            })
        };
        let mut convs = Vec::new();
        if arch.encoder == EncoderKind::Conv {
            for name in ["conv0", "conv1"] {
                let (weight, shape) = values(&format!("{name}.weight"))?;
                let (bias, _) = values(&format!("{name}.bias"))?;
                convs.push(Conv {
                    weight,
                    bias,
                    out_channels: shape[0],
                    in_channels: shape[1],
                    kernel: shape[2],
                });
            }
        }
        let hidden = (0..arch.hidden_dims.len())
            .map(|i| dense(&format!("encoder{i}")))
            .collect::<Result<_>>()?;
        Ok(Self {
            encoder: arch.encoder,
            input_dim: arch.input_dim,
            convs,
            hidden,
            head: dense("mu_logvar")?,
            classifier: dense("classifier")?,
            latent_dim: arch.latent_dim,
            deterministic: arch.deterministic,
            output: arch.head,
        })
    }

    /// `x`: [rows, input_dim] standardised spectra -> (mu, logvar), each [rows, latent].
    pub fn encode(&self, x: &[f32], rows: usize) -> (Vec<f32>, Vec<f32>) {
        let mut work = Workspace::default();
        self.encode_into(x, rows, &mut work);
        (work.mu, work.logvar)
    }

    /// [`CpuNet::encode`] into `work.mu` and `work.logvar`.
    fn encode_into(&self, x: &[f32], rows: usize, work: &mut Workspace) {
        let convolved;
        let mut input = x;
        if self.encoder == EncoderKind::Conv && !self.convs.is_empty() {
            let mut h = Vec::new();
            for spectrum in x.chunks_exact(self.input_dim) {
                let mut map = spectrum.to_vec();
                let mut length = self.input_dim;
                for conv in &self.convs {
                    map = conv.forward_pooled(&map, length);
                    length /= 2;
                }
                h.extend(map);
            }
            convolved = h;
            input = &convolved;
        }
        // Hidden layer i reads layer i - 1's output (the input for i = 0) and writes
        // work.hidden[i % 2].
        let [even, odd] = &mut work.hidden;
        for (i, layer) in self.hidden.iter().enumerate() {
            let (out, previous) = if i % 2 == 0 {
                (&mut *even, &*odd)
            } else {
                (&mut *odd, &*even)
            };
            let source: &[f32] = if i == 0 { input } else { previous };
            debug_assert_eq!(source.len(), rows * layer.inputs);
            layer.forward_into(source, rows, true, out);
        }
        let last: &[f32] = match self.hidden.len() {
            0 => input,
            n if n % 2 == 1 => even,
            _ => odd,
        };
        self.head.forward_into(last, rows, false, &mut work.head);
        let latent = self.latent_dim;
        work.mu.clear();
        work.logvar.clear();
        for row in work.head.chunks_exact(2 * latent) {
            work.mu.extend_from_slice(&row[..latent]);
            work.logvar.extend(
                row[latent..]
                    .iter()
                    .map(|&v| v.clamp(LOGVAR_MIN as f32, LOGVAR_MAX as f32)),
            );
        }
    }

    /// Closed-form KL(N(mu, diag(exp(logvar))) || N(0, I)) of each of `rows` rows of `work`'s
    /// (mu, logvar), each row's terms summed in order, nats, into `kl` (replacing its contents).
    fn kl_into(&self, work: &mut Workspace, rows: usize, kl: &mut Vec<f64>) {
        kl.clear();
        if self.deterministic {
            kl.resize(rows, 0.0);
            return;
        }
        let exps = &mut work.exps;
        exps.clear();
        exps.extend(work.logvar.iter().map(|&lv| lv as f64));
        exp::exp_in_place(exps);
        let latent = self.latent_dim;
        kl.extend(
            work.mu
                .chunks_exact(latent)
                .zip(work.logvar.chunks_exact(latent))
                .zip(exps.chunks_exact(latent))
                .map(|((mu, logvar), exps)| {
                    mu.iter()
                        .zip(logvar)
                        .zip(exps)
                        .map(|((&m, &lv), &e)| {
                            let (m, lv) = (m as f64, lv as f64);
                            0.5 * (m * m + e - lv - 1.0)
                        })
                        .sum::<f64>()
                }),
        );
    }

    /// Outputs per spectrum: the classes, or (E[y], E[y^2]) for a Gaussian head.
    pub(crate) fn outputs(&self) -> usize {
        match self.output {
            Head::Classifier => self.classifier.outputs,
            Head::Gaussian => 2,
        }
    }

    /// Softmax averaged over the samples of z for each of `rows` rows of `work`'s (mu, logvar),
    /// into `out` [rows, outputs]; `eps` holds `z_samples * latent` draws. All rows' samples go
    /// through the classifier as one product: an element's value depends only on its own row and
    /// the reduction length, so this equals one product per row, bit for bit, and saves a call
    /// per row.
    fn probabilities_into(
        &self,
        work: &mut Workspace,
        rows: usize,
        eps: &[f32],
        z_samples: usize,
        out: &mut [f32],
    ) {
        let classes = self.classifier.outputs;
        let latent = self.latent_dim;
        let samples = if self.deterministic { 1 } else { z_samples };
        let (mu, z, sigma) = (&work.mu, &mut work.z, &mut work.sigma);
        z.clear();
        z.reserve(rows * samples * latent);
        if self.deterministic {
            z.extend_from_slice(mu);
        } else {
            // sigma = exp(logvar / 2), once per row (the same bits as per sample).
            sigma.clear();
            sigma.extend(work.logvar.iter().map(|&lv| 0.5 * lv));
            exp::expf_in_place(sigma);
            for (m, sigma) in mu.chunks_exact(latent).zip(sigma.chunks_exact(latent)) {
                for eps in eps.chunks_exact(latent).take(samples) {
                    // A product, then a sum (two roundings, as written; slices zipped so the
                    // loop is vectorised).
                    z.extend(m.iter().zip(sigma).zip(eps).map(|((&m, &s), &e)| m + s * e));
                }
            }
        }
        self.classifier
            .forward_into(z, rows * samples, false, &mut work.logits);
        let (logits, exps) = (&work.logits, &mut work.exps);
        if self.output == Head::Gaussian {
            // Per sample a mean and a log-variance: the mixture's E[y] and E[y^2].
            exps.clear();
            exps.extend(
                logits
                    .chunks_exact(2)
                    .map(|sample| sample[1].clamp(LOGVAR_MIN as f32, LOGVAR_MAX as f32) as f64),
            );
            exp::exp_in_place(exps);
            for ((row_outputs, variances), moments) in logits
                .chunks_exact(samples * 2)
                .zip(exps.chunks_exact(samples))
                .zip(out.chunks_exact_mut(2))
            {
                let (mut first, mut second) = (0f64, 0f64);
                for (sample, &variance) in row_outputs.chunks_exact(2).zip(variances) {
                    let mean = sample[0] as f64;
                    first += mean;
                    second += variance + mean * mean;
                }
                moments[0] = (first / samples as f64) as f32;
                moments[1] = (second / samples as f64) as f32;
            }
            return;
        }
        // Class-major from here (class c of sample row r at c * n + r), so that every step
        // is a vectorised loop over sample rows, each element computed as the per-row loops
        // would: the largest logit (f32::max over the classes in order), each logit less it, all
        // exponentiated in one call, per sample row the total (classes in order) and each
        // quotient, then per row and class the sum over samples in sample order.
        let n = rows * samples;
        let (transposed, row_max, totals) =
            (&mut work.transposed, &mut work.row_max, &mut work.totals);
        transposed.clear();
        for c in 0..classes {
            transposed.extend(logits.chunks_exact(classes).map(|row| row[c]));
        }
        row_max.clear();
        row_max.resize(n, f32::NEG_INFINITY);
        for class in transposed.chunks_exact(n) {
            for (m, &l) in row_max.iter_mut().zip(class) {
                *m = m.max(l);
            }
        }
        exps.clear();
        for class in transposed.chunks_exact(n) {
            exps.extend(
                class
                    .iter()
                    .zip(row_max.iter())
                    .map(|(&l, &m)| l as f64 - m as f64),
            );
        }
        exp::exp_in_place(exps);
        totals.clear();
        totals.resize(n, 0.0);
        for e in exps.chunks_exact(n) {
            for (t, &e) in totals.iter_mut().zip(e) {
                *t += e;
            }
        }
        for e in exps.chunks_exact_mut(n) {
            for (e, &t) in e.iter_mut().zip(totals.iter()) {
                *e /= t;
            }
        }
        for (row, probabilities) in out.chunks_exact_mut(classes).enumerate() {
            for (p, quotients) in probabilities.iter_mut().zip(exps.chunks_exact(n)) {
                let sum = quotients[row * samples..(row + 1) * samples]
                    .iter()
                    .fold(0.0, |sum, q| sum + q);
                *p = (sum / samples as f64) as f32;
            }
        }
    }

    /// The eps table of this network's draws of z (none for a deterministic network).
    pub(crate) fn eps(&self, seed: u64, z_samples: usize) -> Vec<f32> {
        if self.deterministic {
            Vec::new()
        } else {
            eps_table(seed, z_samples, self.latent_dim)
        }
    }

    /// Predict `rows` spectra from their standardised features `x` [rows, input_dim];
    /// `threads` workers take chunks of rows in turn.
    pub fn predict(
        &self,
        x: &[f32],
        rows: usize,
        z_samples: usize,
        seed: u64,
        threads: usize,
    ) -> Vec<RawPrediction> {
        let eps = self.eps(seed, z_samples);
        let features = self.input_dim;
        in_chunks(rows, threads, |chunk| {
            self.predict_chunk(
                &x[chunk.start * features..chunk.end * features],
                chunk.len(),
                &eps,
                z_samples,
            )
        })
        .into_iter()
        .flatten()
        .collect()
    }

    /// Predict `rows` standardised spectra `x` on this thread, with the draws `eps` of
    /// [`CpuNet::eps`].
    pub(crate) fn predict_chunk(
        &self,
        x: &[f32],
        rows: usize,
        eps: &[f32],
        z_samples: usize,
    ) -> Vec<RawPrediction> {
        let (mut probabilities, mut kl) = (Vec::new(), Vec::new());
        self.predict_chunk_into(
            x,
            rows,
            eps,
            z_samples,
            &mut Workspace::default(),
            &mut probabilities,
            &mut kl,
        );
        probabilities
            .chunks_exact(self.outputs())
            .zip(kl)
            .map(|(p, kl_nats)| RawPrediction {
                probabilities: p.to_vec(),
                kl_nats,
            })
            .collect()
    }

    /// [`CpuNet::predict_chunk`] into flat buffers, replacing their contents: `probabilities`
    /// [rows, outputs] and `kl` [rows], with the scratch space `work`.
    #[allow(clippy::too_many_arguments)] // the inputs, the scratch and the two outputs
    pub(crate) fn predict_chunk_into(
        &self,
        x: &[f32],
        rows: usize,
        eps: &[f32],
        z_samples: usize,
        work: &mut Workspace,
        probabilities: &mut Vec<f32>,
        kl: &mut Vec<f64>,
    ) {
        self.encode_into(x, rows, work);
        probabilities.clear();
        probabilities.resize(rows * self.outputs(), 0.0);
        self.probabilities_into(work, rows, eps, z_samples, probabilities);
        self.kl_into(work, rows, kl);
    }
}

/// `work` on chunks of [`CHUNK_ROWS`] of `rows` rows (the last one shorter), taken in turn by
/// up to `threads` workers; the results in chunk order. Which thread computes a chunk never
/// changes what it computes.
pub(crate) fn in_chunks<T: Send>(
    rows: usize,
    threads: usize,
    work: impl Fn(std::ops::Range<usize>) -> T + Sync,
) -> Vec<T> {
    let chunks = rows.div_ceil(CHUNK_ROWS);
    let rows_of = |chunk: usize| chunk * CHUNK_ROWS..((chunk + 1) * CHUNK_ROWS).min(rows);
    let threads = threads.clamp(1, chunks.max(1));
    if threads == 1 {
        return (0..chunks).map(|chunk| work(rows_of(chunk))).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<T>>> = (0..chunks).map(|_| Mutex::new(None)).collect();
    let worker = || loop {
        let chunk = next.fetch_add(1, Ordering::Relaxed);
        if chunk >= chunks {
            break;
        }
        let result = work(rows_of(chunk));
        // Each chunk index is handed out once; a poisoned cell (a panic) loses the chunk, and
        // the panic ends the scope.
        if let Ok(mut cell) = results[chunk].lock() {
            *cell = Some(result);
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(worker);
        }
    });
    results
        .into_iter()
        .filter_map(|cell| cell.into_inner().ok().flatten())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normals_have_unit_moments_and_are_stable() {
        let draws = normals(7, 200_000);
        let n = draws.len() as f64;
        let mean = draws.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = draws
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        // 5 standard errors: sd of the mean 1/sqrt(n), of the variance sqrt(2/n).
        assert!(mean.abs() < 5.0 / n.sqrt(), "mean {mean}");
        assert!((var - 1.0).abs() < 5.0 * (2.0 / n).sqrt(), "variance {var}");
        assert_eq!(normals(7, 5), normals(7, 6)[..5].to_vec());
        assert_ne!(normals(7, 4), normals(8, 4));
    }

    #[test]
    fn eps_tables_depend_on_the_seed_only() {
        assert_eq!(eps_table(3, 12, 16), eps_table(3, 12, 16));
        assert_ne!(eps_table(3, 12, 16), eps_table(4, 12, 16));
        assert_eq!(eps_table(3, 12, 16).len(), 12 * 16);
    }

    /// The product against a plain triple loop in f64.
    #[test]
    fn matmul_matches_a_naive_product() {
        let (rows, k, n) = (5, 37, 11);
        let x: Vec<f32> = (0..rows * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let mut y = vec![0f32; rows * n];
        matmul_transposed(&x, rows, k, &w, n, &mut y);
        for r in 0..rows {
            for c in 0..n {
                let expected: f64 = (0..k)
                    .map(|i| x[r * k + i] as f64 * w[c * k + i] as f64)
                    .sum();
                assert!((y[r * n + c] as f64 - expected).abs() < 1e-4, "{r},{c}");
            }
        }
    }
}
