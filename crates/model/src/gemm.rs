//! The dense layers' product y = x W^T + b with W packed once, when the network is loaded.
//!
//! `matrixmultiply` packs both operands on every call: for the per-pixel pass that repacked each
//! layer's weights for every chunk of 256 rows and every member, 11-12% of the run's CPU time.
//! Here the weights are packed once into panels of 32 output columns (16 for narrow layers), the
//! rows of x are read where they are (a kernel of 8 rows broadcasts each value from its row), bias
//! and ReLU are applied as the results are stored, and the terms whose x is zero in every row of
//! a block are skipped (a ReLU layer's output is half zeros or more).
//!
//! The arithmetic is `matrixmultiply`'s, element by element, so the bits do not change: every
//! output is a chain of fused multiply-adds over the reduction in order, starting from zero, in
//! blocks of [`KC`] (its `kc` for f32); a block after the first is summed into the running value
//! with one rounded add (its beta = 1 epilogue). The tests state that in scalar code (`reference`)
//! and hold both this kernel and `matrixmultiply` to it, bit for bit. Where AVX-512 is not
//! available the product goes through `matrixmultiply`, as before.

use std::mem::MaybeUninit;

/// The reduction block of `matrixmultiply`'s f32 kernels.
const KC: usize = 256;

/// A layer's weights W [n, k] (libtorch's [outputs, inputs], row-major) as panels of `width`
/// output columns (32, or 16 for a layer of at most 16 outputs): panel p holds, for each
/// reduction index t, W[p width .. (p + 1) width][t] (zero past column n), `width` values apart.
#[derive(Debug, Clone)]
pub(crate) struct PackedWeights {
    k: usize,
    n: usize,
    width: usize,
    panels: Vec<f32>,
    /// Every weight is finite: a zero input then adds nothing to any chain (see [`dense`]).
    finite: bool,
}

impl PackedWeights {
    /// Pack `w` [n, k].
    pub(crate) fn new(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "weights of {n} x {k}");
        let width = if n <= 16 { 16 } else { 32 };
        let count = n.div_ceil(width);
        let mut panels = vec![0f32; count * k * width];
        for p in 0..count {
            let panel = &mut panels[p * k * width..(p + 1) * k * width];
            for column in 0..width.min(n - p * width) {
                let row = &w[(p * width + column) * k..(p * width + column + 1) * k];
                for (t, &v) in row.iter().enumerate() {
                    panel[t * width + column] = v;
                }
            }
        }
        Self {
            k,
            n,
            width,
            panels,
            finite: w.iter().all(|v| v.is_finite()),
        }
    }
}

/// A dense layer: `y` [rows, n] = `x` [rows, k] W^T + `bias`, then ReLU (v < 0 -> 0) when
/// `relu`; each product element as `matrixmultiply` computes it (see the module's notes), the
/// bias added with one rounding.
/// `w` is the same weights unpacked, for the product without AVX-512. Every element of `y` is
/// written.
pub(crate) fn dense(
    x: &[f32],
    rows: usize,
    packed: &PackedWeights,
    w: &[f32],
    bias: &[f32],
    relu: bool,
    y: &mut [MaybeUninit<f32>],
) {
    let (k, n) = (packed.k, packed.n);
    assert!(x.len() == rows * k && w.len() == n * k && bias.len() == n && y.len() == rows * n);
    if rows == 0 || n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is present; the asserts above bound every access (see the kernel).
        unsafe { avx512::dense(x, rows, packed, bias, relu, y) };
        return;
    }
    dense_portable(x, rows, k, w, bias, relu, y);
}

/// [`dense`] by `matrixmultiply` and a scalar bias and ReLU: the same bits.
pub(crate) fn dense_portable(
    x: &[f32],
    rows: usize,
    k: usize,
    w: &[f32],
    bias: &[f32],
    relu: bool,
    y: &mut [MaybeUninit<f32>],
) {
    let n = bias.len();
    matrixmultiply_product(x, rows, k, w, n, y);
    for row in y.chunks_exact_mut(n) {
        for (v, b) in row.iter_mut().zip(bias) {
            // SAFETY: the product wrote every element.
            let mut value = unsafe { v.assume_init() } + b;
            if relu && value < 0.0 {
                value = 0.0;
            }
            *v = MaybeUninit::new(value);
        }
    }
}

/// `y` [rows, n] = `x` [rows, k] times the transpose of `w` [n, k], by `matrixmultiply`: every
/// element of `y` is written (beta = 0, which it never reads C for; an empty reduction writes
/// zeros).
pub(crate) fn matrixmultiply_product(
    x: &[f32],
    rows: usize,
    k: usize,
    w: &[f32],
    n: usize,
    y: &mut [MaybeUninit<f32>],
) {
    assert!(x.len() == rows * k && w.len() == n * k && y.len() == rows * n);
    if rows == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above keep every index the strides reach inside the three slices:
    // x is rows x k with row stride k, w^T is k x n read through w's row stride k, and y is
    // rows x n with row stride n, which does not alias x or w (a unique borrow); with beta = 0
    // y is only written.
    unsafe {
        matrixmultiply::sgemm(
            rows,
            k,
            n,
            1.0,
            x.as_ptr(),
            k as isize,
            1,
            w.as_ptr(),
            1,
            k as isize,
            0.0,
            y.as_mut_ptr().cast::<f32>(),
            n as isize,
            1,
        );
    }
}

/// One element of x W^T as both products compute it: per block of [`KC`] reduction indices a
/// chain of fused multiply-adds from zero, the blocks summed in order with one rounding each.
#[cfg(test)]
fn reference(x_row: &[f32], w_row: &[f32]) -> f32 {
    let mut total = 0f32;
    for (block, (xs, ws)) in x_row.chunks(KC).zip(w_row.chunks(KC)).enumerate() {
        let mut chain = 0f32;
        for (&a, &b) in xs.iter().zip(ws) {
            chain = a.mul_add(b, chain);
        }
        total = if block == 0 { chain } else { total + chain };
    }
    total
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::{PackedWeights, KC};

    /// See [`super::dense`].
    ///
    /// # Safety
    /// AVX-512F must be available; `x` is rows x k, `y` rows x n, `bias` n, `packed` of k and n.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dense(
        x: &[f32],
        rows: usize,
        packed: &PackedWeights,
        bias: &[f32],
        relu: bool,
        y: &mut [MaybeUninit<f32>],
    ) {
        let (k, n, width) = (packed.k, packed.n, packed.width);
        // Blocks of 8 rows with a 32-wide panel, 16 with a 16-wide one: 16 accumulators either
        // way.
        let block = 256 / width;
        let blocks = rows.div_ceil(block);
        let rows_of = |b: usize| b * block..((b + 1) * block).min(rows);
        // Per block, the reduction indices where some row's x is not zero (a ReLU layer's
        // output is half zeros or more), or None where that is all of them. A zero x adds
        // nothing to a chain: fma(0, w, c) = c + (+-0) = c for finite w, as c is never -0 (a
        // chain starts at +0, and an exact zero sum rounds to +0). Not with a weight that is
        // not finite (0 x inf is NaN).
        let mut indices: Vec<u32> = Vec::new();
        let mut spans = Vec::with_capacity(blocks);
        for b in 0..blocks {
            if !packed.finite {
                spans.push(None);
                continue;
            }
            let first = indices.len();
            let rows = rows_of(b);
            // SAFETY: rows `rows` of x hold k values each.
            unsafe { nonzero_terms(x.as_ptr().add(rows.start * k), rows.len(), k, &mut indices) };
            if indices.len() - first == k {
                indices.truncate(first);
                spans.push(None);
            } else {
                spans.push(Some(first..indices.len()));
            }
        }
        // Panels outer: a panel (k x 32 values, 28 KiB for k = 224) stays in L1 while every
        // block of rows passes it.
        for p in 0..n.div_ceil(width) {
            let panel = Panel {
                values: packed.panels[p * k * width..].as_ptr(),
                bias: bias[p * width..].as_ptr(),
                columns: width.min(n - p * width),
            };
            for (b, span) in spans.iter().enumerate() {
                let rows = rows_of(b);
                // SAFETY: rows `rows` of x (k values each) and of y (n each) exist; the panel
                // holds k x width values and `columns` biases; the indices are below k.
                unsafe {
                    let block = Block {
                        k,
                        terms: span.clone().map(|span| &indices[span]),
                        x: x.as_ptr().add(rows.start * k),
                        y: y.as_mut_ptr().add(rows.start * n + p * width).cast::<f32>(),
                        n,
                        relu,
                    };
                    if width == 32 {
                        rows_of_wide(rows.len(), &block, &panel);
                    } else {
                        rows_of_narrow(rows.len(), &block, &panel);
                    }
                }
            }
        }
    }

    /// Append to `indices` the t < k where some of the `count` rows of x from `a` (k values
    /// apart) is not zero (+0 and -0 are zero; a NaN is not), in order; without branches on the
    /// values (their zeros fall at random).
    ///
    /// # Safety
    /// AVX-512F; `count` rows of `k` values from `a`.
    #[target_feature(enable = "avx512f")]
    unsafe fn nonzero_terms(a: *const f32, count: usize, k: usize, indices: &mut Vec<u32>) {
        indices.reserve(k);
        let magnitude = _mm512_set1_epi32(0x7fff_ffff);
        let step = _mm512_set1_epi32(16);
        let mut t_values = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let mut t = 0;
        while t < k {
            let lanes = lanes(k - t);
            let mut any = _mm512_setzero_si512();
            for r in 0..count {
                // SAFETY: the mask keeps the load to row r's values t..k.
                let v = unsafe { _mm512_maskz_loadu_epi32(lanes, a.add(r * k + t).cast::<i32>()) };
                any = _mm512_or_si512(any, _mm512_and_si512(v, magnitude));
            }
            let nonzero = _mm512_test_epi32_mask(any, any);
            let len = indices.len();
            // SAFETY: `reserve(k)` left room for every t; compress-store writes popcount(nonzero)
            // values, which `set_len` then covers.
            unsafe {
                _mm512_mask_compressstoreu_epi32(
                    indices.as_mut_ptr().add(len).cast::<i32>(),
                    nonzero,
                    t_values,
                );
                indices.set_len(len + nonzero.count_ones() as usize);
            }
            t_values = _mm512_add_epi32(t_values, step);
            t += 16;
        }
    }

    /// One panel: its values, the biases of its columns, how many of its columns are real.
    struct Panel {
        values: *const f32,
        bias: *const f32,
        columns: usize,
    }

    /// A block of rows: x from `x` (rows `k` apart), y from `y` (rows `n` apart, at the panel's
    /// first column); with `terms`, only those reduction indices (sorted; x is zero in every
    /// row at the others); ReLU when `relu`.
    struct Block<'a> {
        k: usize,
        terms: Option<&'a [u32]>,
        x: *const f32,
        y: *mut f32,
        n: usize,
        relu: bool,
    }

    macro_rules! rows_of {
        ($name:ident, $registers:literal, $($rows:literal)+) => {
            /// [`kernel`] for `count` rows of this panel width.
            #[target_feature(enable = "avx512f")]
            unsafe fn $name(count: usize, block: &Block<'_>, panel: &Panel) {
                // SAFETY: the caller's guarantees, passed on.
                unsafe {
                    match count {
                        $($rows => kernel::<$rows, $registers>(block, panel),)+
                        _ => unreachable!("a block has 1 to {} rows", 16 / $registers),
                    }
                }
            }
        };
    }
    rows_of!(rows_of_wide, 2, 1 2 3 4 5 6 7 8);
    rows_of!(rows_of_narrow, 1, 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);

    /// Mask of the first `columns` of 16 lanes.
    fn lanes(columns: usize) -> __mmask16 {
        if columns >= 16 {
            0xffff
        } else {
            (1u16 << columns) - 1
        }
    }

    /// `R` rows of a block of x times one panel of `B` registers (16 B columns), plus the bias,
    /// ReLU when asked, into the panel's real columns of y.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn kernel<const R: usize, const B: usize>(block: &Block<'_>, panel: &Panel) {
        let &Block {
            k,
            terms,
            x: a,
            y: c,
            n,
            relu,
        } = block;
        let width = 16 * B;
        // One term of every chain: x[r][t] times the panel's row t.
        macro_rules! term {
            ($chain:ident, $t:expr) => {{
                let t = $t;
                // SAFETY: t < k: inside the panel's k x width values and each row's k values.
                unsafe {
                    let mut b = [_mm512_setzero_ps(); B];
                    for (j, v) in b.iter_mut().enumerate() {
                        *v = _mm512_loadu_ps(panel.values.add(t * width + 16 * j));
                    }
                    for (r, acc) in $chain.iter_mut().enumerate() {
                        let v = _mm512_set1_ps(*a.add(r * k + t));
                        for j in 0..B {
                            acc[j] = _mm512_fmadd_ps(v, b[j], acc[j]);
                        }
                    }
                }
            }};
        }
        let mut total = [[_mm512_setzero_ps(); B]; R];
        let mut start = 0;
        while start < k {
            let end = (start + KC).min(k);
            let mut chain = [[_mm512_setzero_ps(); B]; R];
            match terms {
                None => {
                    for t in start..end {
                        term!(chain, t);
                    }
                }
                Some(terms) => {
                    let from = terms.partition_point(|&t| (t as usize) < start);
                    let to = terms.partition_point(|&t| (t as usize) < end);
                    for &t in &terms[from..to] {
                        term!(chain, t as usize);
                    }
                }
            }
            for (sum, acc) in total.iter_mut().zip(&chain) {
                for j in 0..B {
                    // The first block is the value; later ones are added with one rounding.
                    sum[j] = if start == 0 {
                        acc[j]
                    } else {
                        _mm512_add_ps(sum[j], acc[j])
                    };
                }
            }
            start = end;
        }
        let mut masks = [0 as __mmask16; B];
        let mut biases = [_mm512_setzero_ps(); B];
        for j in 0..B {
            masks[j] = lanes(panel.columns.saturating_sub(16 * j));
            // SAFETY: the mask keeps the load to the panel's real columns' biases.
            biases[j] = unsafe { _mm512_maskz_loadu_ps(masks[j], panel.bias.add(16 * j)) };
        }
        let zero = _mm512_setzero_ps();
        for (r, sum) in total.iter().enumerate() {
            for j in 0..B {
                if masks[j] == 0 {
                    continue;
                }
                let mut v = _mm512_add_ps(sum[j], biases[j]);
                if relu {
                    // v < 0 -> 0; NaN and -0 stay, as in the scalar `if v < 0.0`.
                    let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, zero);
                    v = _mm512_mask_mov_ps(v, negative, zero);
                }
                // SAFETY: row r of y has n values from the panel's first column; the mask
                // keeps the store to its real columns.
                unsafe { _mm512_mask_storeu_ps(c.add(r * n + 16 * j), masks[j], v) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::SplitMix64;

    fn values(rng: &mut SplitMix64, count: usize, zeros: bool) -> Vec<f32> {
        sparse_values(rng, count, if zeros { 143 } else { 0 })
    }

    /// Values of several binades and both signs, about `zeros` per 1000 of them exact zeros.
    fn sparse_values(rng: &mut SplitMix64, count: usize, zeros: u64) -> Vec<f32> {
        (0..count)
            .map(|_| {
                let u = rng.next_u64();
                if (u >> 20) % 1000 < zeros {
                    // exact zeros (ReLU outputs), of both signs
                    if u.is_multiple_of(2) {
                        0.0
                    } else {
                        -0.0
                    }
                } else {
                    // spread over several binades, both signs
                    let mantissa = (u >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                    mantissa * 2f32.powi((u % 9) as i32 - 4)
                }
            })
            .collect()
    }

    /// Whether `matrixmultiply`'s kernel here rounds a multiply-add once (FMA): [`reference`]
    /// states its arithmetic only then (without FMA it rounds the product and the sum apart).
    fn fused() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            cfg!(target_arch = "aarch64")
        }
    }

    fn init(y: Vec<MaybeUninit<f32>>) -> Vec<f32> {
        // SAFETY: the products write every element (asserted by the callers' shapes).
        y.into_iter().map(|v| unsafe { v.assume_init() }).collect()
    }

    /// The packed layer, `matrixmultiply` with the scalar bias and ReLU, and the scalar
    /// statement of their arithmetic agree bit for bit, for reductions within one block and over
    /// several (k > 256), any number of rows (the kernels and their remainders) and of columns
    /// (16- and 32-wide panels, whole and partial), with and without ReLU.
    #[test]
    fn packed_layer_is_matrixmultiply_bit_for_bit() {
        let mut rng = SplitMix64::new(11);
        for &(rows, k, n) in &[
            (1, 1, 1),
            (3, 5, 3),
            (8, 16, 16),
            (9, 224, 256),
            (256, 224, 256),
            (17, 256, 128),
            (13, 128, 32),
            (40, 16, 3),
            (33, 16, 15),
            (7, 257, 33),
            (11, 300, 17),
            (5, 600, 48),
            (2, 512, 31),
        ] {
            let x = values(&mut rng, rows * k, true);
            let w = values(&mut rng, n * k, false);
            let bias = values(&mut rng, n, true);
            let packed = PackedWeights::new(&w, n, k);
            for relu in [false, true] {
                let mut ours = vec![MaybeUninit::new(f32::NAN); rows * n];
                dense(&x, rows, &packed, &w, &bias, relu, &mut ours);
                let mut theirs = vec![MaybeUninit::new(f32::NAN); rows * n];
                dense_portable(&x, rows, k, &w, &bias, relu, &mut theirs);
                let (ours, theirs) = (init(ours), init(theirs));
                for r in 0..rows {
                    for c in 0..n {
                        let mut expected =
                            reference(&x[r * k..(r + 1) * k], &w[c * k..(c + 1) * k]) + bias[c];
                        if relu && expected < 0.0 {
                            expected = 0.0;
                        }
                        let at = r * n + c;
                        assert_eq!(
                            ours[at].to_bits(),
                            theirs[at].to_bits(),
                            "packed vs matrixmultiply, {rows}x{k}x{n}, relu {relu}, at ({r}, {c})"
                        );
                        if fused() {
                            assert_eq!(
                                theirs[at].to_bits(),
                                expected.to_bits(),
                                "matrixmultiply, {rows}x{k}x{n}, relu {relu}, at ({r}, {c})"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Inputs with many zeros (a ReLU layer's output): the terms skipped where a whole block's
    /// x is zero change no bit, whatever the share of zeros (none to all), with the reduction
    /// in one block or several, and whole zero columns.
    #[test]
    fn skipping_zero_inputs_changes_no_bit() {
        let mut rng = SplitMix64::new(23);
        for &(rows, k, n) in &[(64, 256, 128), (40, 128, 32), (30, 16, 3), (19, 600, 40)] {
            for zeros in [0, 500, 900, 990, 1000] {
                let mut x = sparse_values(&mut rng, rows * k, zeros);
                // Some reduction indices zero in every row, as a dead unit gives.
                for r in 0..rows {
                    for t in (0..k).step_by(3) {
                        x[r * k + t] = if r % 2 == 0 { 0.0 } else { -0.0 };
                    }
                }
                let w = values(&mut rng, n * k, false);
                let bias = values(&mut rng, n, false);
                let packed = PackedWeights::new(&w, n, k);
                let mut ours = vec![MaybeUninit::new(f32::NAN); rows * n];
                dense(&x, rows, &packed, &w, &bias, true, &mut ours);
                let mut theirs = vec![MaybeUninit::new(f32::NAN); rows * n];
                dense_portable(&x, rows, k, &w, &bias, true, &mut theirs);
                let bits = |y: Vec<MaybeUninit<f32>>| {
                    init(y).iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                };
                assert_eq!(
                    bits(ours),
                    bits(theirs),
                    "{rows}x{k}x{n}, {zeros} per 1000 zeros"
                );
            }
        }
    }

    /// A weight that is not finite makes 0 x w a NaN, so nothing is skipped: the NaNs appear
    /// where `matrixmultiply` has them.
    #[test]
    fn a_weight_that_is_not_finite_skips_nothing() {
        let mut rng = SplitMix64::new(29);
        let (rows, k, n) = (16, 64, 32);
        let x = sparse_values(&mut rng, rows * k, 950);
        let mut w = values(&mut rng, n * k, false);
        w[5 * k + 7] = f32::INFINITY;
        let bias = vec![0.0; n];
        let packed = PackedWeights::new(&w, n, k);
        let mut ours = vec![MaybeUninit::new(0.0); rows * n];
        dense(&x, rows, &packed, &w, &bias, false, &mut ours);
        let mut theirs = vec![MaybeUninit::new(0.0); rows * n];
        dense_portable(&x, rows, k, &w, &bias, false, &mut theirs);
        let (ours, theirs) = (init(ours), init(theirs));
        assert!(theirs.iter().any(|v| v.is_nan()));
        for (a, b) in ours.iter().zip(&theirs) {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{a} vs {b}"
            );
        }
    }

    /// Against an independent product in f64: the blocks and chains compute x W^T + b.
    #[test]
    fn packed_layer_matches_a_naive_product() {
        let mut rng = SplitMix64::new(5);
        let (rows, k, n) = (10, 300, 40);
        let x = values(&mut rng, rows * k, false);
        let w = values(&mut rng, n * k, false);
        let bias = values(&mut rng, n, false);
        let mut y = vec![MaybeUninit::new(0.0); rows * n];
        dense(
            &x,
            rows,
            &PackedWeights::new(&w, n, k),
            &w,
            &bias,
            false,
            &mut y,
        );
        let y = init(y);
        for r in 0..rows {
            for c in 0..n {
                let products = (0..k).map(|t| x[r * k + t] as f64 * w[c * k + t] as f64);
                let exact = products.clone().sum::<f64>() + bias[c] as f64;
                let scale = products.map(f64::abs).sum::<f64>() + (bias[c] as f64).abs();
                assert!(
                    (y[r * n + c] as f64 - exact).abs() <= 1e-6 * scale,
                    "({r}, {c}): {} vs {exact}",
                    y[r * n + c]
                );
            }
        }
    }
}
