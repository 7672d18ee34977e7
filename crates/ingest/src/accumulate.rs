//! Sums of stored values: exact integer sums for data of up to 16 bits (the same bits in any
//! order), f64 otherwise; the mean and variance from them; NDVI in fixed point.

use std::ops::AddAssign;

use crate::raw_envi::Decode;

/// A stored value's contribution to a region's sums: exact integers for types of up to 16 bits,
/// f64 otherwise.
pub(crate) trait Accumulate: Decode {
    /// The sum (and sum of squares) of a run, a unit and the scene alike.
    type Sum: Copy + Default + Send + Sync + AddAssign;
    type Square: Copy + Default + Send + Sync + AddAssign;
    fn value(bytes: &[u8]) -> (Self::Sum, Self::Square);
    /// Sum and sum of squares of lanes `lo..hi` of a window of [`WINDOW`] stored values: fixed
    /// width and masked, so it compiles to a few vector instructions however short the run.
    fn window(window: &[u8], lo: usize, hi: usize) -> (Self::Sum, Self::Square);
    /// Mean and (population) variance of `n` values from their sum and sum of squares.
    fn moments(total: (Self::Sum, Self::Square), n: u64) -> (f64, f64);
}

/// Values summed at once along a line by [`Accumulate::window`].
pub(crate) const WINDOW: usize = 16;

/// -1 in the middle third, 0 elsewhere: windows of it are lane masks.
static MASK_TABLE: [i32; 3 * WINDOW] = {
    let mut table = [0; 3 * WINDOW];
    let mut i = WINDOW;
    while i < 2 * WINDOW {
        table[i] = -1;
        i += 1;
    }
    table
};

/// Lane masks (-1 or 0) of `j >= lo` and of `j < hi` for lanes j of a window.
#[inline(always)]
pub(crate) fn lane_masks(lo: usize, hi: usize) -> (&'static [i32], &'static [i32]) {
    (
        &MASK_TABLE[WINDOW - lo..2 * WINDOW - lo],
        &MASK_TABLE[2 * WINDOW - hi..3 * WINDOW - hi],
    )
}

/// Integer sums in i64/u64: values of at most 2^16, squares of at most 2^32, over regions of
/// fewer than [`MAX_EXACT_REGION`] pixels, cannot overflow. A window sums in i32 lanes
/// (16 values of at most 2^16) and squares in u32 (at most 2^32 - 2^17 + 1) widened to u64.
macro_rules! exact {
    ($name:ty) => {
        impl Accumulate for $name {
            type Sum = i64;
            type Square = u64;
            #[inline(always)]
            fn value(bytes: &[u8]) -> (i64, u64) {
                let v = <$name>::get_i64(bytes);
                (v, v.unsigned_abs() * v.unsigned_abs())
            }
            #[inline(always)]
            fn window(window: &[u8], lo: usize, hi: usize) -> (i64, u64) {
                let (from, to) = $crate::accumulate::lane_masks(lo, hi);
                let mut lanes = [0i32; $crate::accumulate::WINDOW];
                for (((lane, v), &f), &t) in lanes
                    .iter_mut()
                    .zip(window.chunks_exact(<$name>::SIZE))
                    .zip(from)
                    .zip(to)
                {
                    *lane = (<$name>::get_i64(v) as i32) & f & t;
                }
                let sum: i32 = lanes.iter().sum();
                // |v| <= 2^16, so |v|^2 fits in u32; the sum of 16 of them does not.
                let square: u64 = lanes
                    .iter()
                    .map(|&v| u64::from(v.unsigned_abs() * v.unsigned_abs()))
                    .sum();
                (i64::from(sum), square)
            }
            fn moments((s, q): (i64, u64), n: u64) -> (f64, f64) {
                $crate::accumulate::exact_moments(i128::from(s), u128::from(q), n)
            }
        }
    };
}

/// Largest region (pixels) the exact sums take: beyond it, 64-bit sums of squares could overflow
/// (such regions are summed by the block reader instead).
pub(crate) const MAX_EXACT_REGION: u64 = 1 << 31;

/// Mean and (population) variance of `n` integers from their exact sum and sum of squares.
pub(crate) fn exact_moments(s: i128, q: u128, n: u64) -> (f64, f64) {
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let n128 = u128::from(n);
    // n * sum of squares - sum^2 = n^2 * variance, exactly (>= 0 by Cauchy-Schwarz).
    let spread = (n128 * q).saturating_sub(s.unsigned_abs() * s.unsigned_abs());
    // 64-bit conversions where the values fit (the usual case): u128 -> f64 is a slow library
    // call. Both round to nearest, so the results are the same.
    let sum = i64::try_from(s).map_or_else(|_| s as f64, |s| s as f64);
    let spread = u64::try_from(spread).map_or_else(|_| spread as f64, |v| v as f64);
    let n = n as f64;
    (sum / n, spread / (n * n))
}

/// NDVI values are summed in fixed point (units of 2^-48, rounded): integer sums, so the mean
/// NDVI has the same bits whatever the order of the pixels (readers, interleaves, threads).
pub(crate) const NDVI_UNIT: f64 = (1u64 << 48) as f64;

/// A pixel's NDVI in units of [`NDVI_UNIT`].
#[inline(always)]
pub(crate) fn ndvi_fixed(red: f32, nir: f32) -> i64 {
    (f64::from((nir - red) / (nir + red)) * NDVI_UNIT).round() as i64
}

/// Float sums in f64, lane by lane in order (the same bits on every machine).
macro_rules! float {
    ($name:ty) => {
        impl Accumulate for $name {
            type Sum = f64;
            type Square = f64;
            #[inline(always)]
            fn value(bytes: &[u8]) -> (f64, f64) {
                let v = <$name>::get_f64(bytes);
                (v, v * v)
            }
            #[inline(always)]
            fn window(window: &[u8], lo: usize, hi: usize) -> (f64, f64) {
                let (mut s, mut q) = (0.0, 0.0);
                for v in window[lo * <$name>::SIZE..hi * <$name>::SIZE].chunks_exact(<$name>::SIZE)
                {
                    let v = <$name>::get_f64(v);
                    s += v;
                    q += v * v;
                }
                (s, q)
            }
            fn moments((s, q): (f64, f64), n: u64) -> (f64, f64) {
                let n = n as f64;
                let mean = s / n;
                (mean, (q / n - mean * mean).max(0.0))
            }
        }
    };
}

pub(crate) use {exact, float};

/// Sum and sum of squares of samples `start..end` of one band's segment of a line (`samples`
/// stored values), a [`WINDOW`] at a time.
#[inline(always)]
pub(crate) fn run_sums<D: Accumulate>(
    segment: &[u8],
    start: usize,
    end: usize,
) -> (D::Sum, D::Square) {
    let samples = segment.len() / D::SIZE;
    let (mut s, mut q) = (D::Sum::default(), D::Square::default());
    if samples < WINDOW {
        for v in segment[start * D::SIZE..end * D::SIZE].chunks_exact(D::SIZE) {
            let (v, vq) = D::value(v);
            s += v;
            q += vq;
        }
        return (s, q);
    }
    let mut from = start;
    while from < end {
        // A window of WINDOW values inside the segment holding samples from..to.
        let to = end.min(from + WINDOW);
        let window = from.min(samples - WINDOW);
        let at = window * D::SIZE;
        let (ws, wq) = D::window(
            &segment[at..at + WINDOW * D::SIZE],
            from - window,
            to - window,
        );
        s += ws;
        q += wq;
        from = to;
    }
    (s, q)
}
