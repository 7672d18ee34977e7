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
    /// [`Accumulate::window`] with AVX2 instructions, where a type has a faster exact form.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn window_avx2(window: &[u8], lo: usize, hi: usize) -> (Self::Sum, Self::Square) {
        Self::window(window, lo, hi)
    }
    /// Mean and (population) variance of `n` values from their sum and sum of squares.
    fn moments(total: (Self::Sum, Self::Square), n: u64) -> (f64, f64);
}

/// Values summed at once along a line by [`Accumulate::window`].
pub(crate) const WINDOW: usize = 16;

/// -1 in the middle third, 0 elsewhere (in lanes of `$lane`): windows of it are lane masks.
macro_rules! mask_table {
    ($lane:ty) => {{
        let mut table: [$lane; 3 * WINDOW] = [0; 3 * WINDOW];
        let mut i = WINDOW;
        while i < 2 * WINDOW {
            table[i] = -1;
            i += 1;
        }
        table
    }};
}

/// Masks of 32-bit lanes.
static MASK_TABLE: [i32; 3 * WINDOW] = mask_table!(i32);

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
        $crate::accumulate::exact!($name, {});
    };
    // Unsigned 16-bit values, `$big_endian` stored.
    ($name:ty, u16 $big_endian:literal) => {
        $crate::accumulate::exact!($name, {
            #[cfg(target_arch = "x86_64")]
            #[inline(always)]
            unsafe fn window_avx2(window: &[u8], lo: usize, hi: usize) -> (i64, u64) {
                // SAFETY: the caller's CPU has AVX2.
                unsafe { $crate::accumulate::u16_window_avx2::<$big_endian>(window, lo, hi) }
                    .unwrap_or_else(|| <$name as $crate::accumulate::Accumulate>::window(window, lo, hi))
            }
        });
    };
    ($name:ty, { $($extra:tt)* }) => {
        impl Accumulate for $name {
            $($extra)*
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

/// Masks of 16-bit lanes.
#[cfg(target_arch = "x86_64")]
static MASK_TABLE_16: [i16; 3 * WINDOW] = mask_table!(i16);

/// [`Accumulate::window`] of 16 unsigned 16-bit values when every one of them is below 2^15
/// (`None` otherwise): multiply-adds of 16-bit pairs (`vpmaddwd`) give the pairs' sums and sums
/// of squares in 32-bit lanes, exactly (2 (2^15 - 1)^2 < 2^31), instead of widening every value
/// and squaring it in 32-bit lanes. The same integers as [`Accumulate::window`], so the same
/// bits.
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn u16_window_avx2<const BIG_ENDIAN: bool>(
    window: &[u8],
    lo: usize,
    hi: usize,
) -> Option<(i64, u64)> {
    use std::arch::x86_64::*;
    assert!(window.len() >= 2 * WINDOW && lo <= hi && hi <= WINDOW);
    // SAFETY: 32 bytes of `window` (asserted), and windows of 16 lanes inside the mask table
    // (lo, hi <= WINDOW).
    let (values, from, to) = unsafe {
        (
            _mm256_loadu_si256(window.as_ptr().cast()),
            _mm256_loadu_si256(MASK_TABLE_16[WINDOW - lo..].as_ptr().cast()),
            _mm256_loadu_si256(MASK_TABLE_16[2 * WINDOW - hi..].as_ptr().cast()),
        )
    };
    let values = if BIG_ENDIAN {
        let swap = _mm256_setr_epi8(
            1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11,
            10, 13, 12, 15, 14,
        );
        _mm256_shuffle_epi8(values, swap)
    } else {
        values
    };
    let values = _mm256_and_si256(values, _mm256_and_si256(from, to));
    // Any value of 2^15 or more: its top bit is the sign bit of a 16-bit lane.
    if _mm256_movemask_epi8(values) & 0xAAAA_AAAAu32 as i32 != 0 {
        return None;
    }
    // 8 lanes of v0 + v1 (< 2^16) and of v0^2 + v1^2 (< 2^31).
    let sums = _mm256_madd_epi16(values, _mm256_set1_epi16(1));
    let squares = _mm256_madd_epi16(values, values);
    // 4 lanes each: sums < 2^17, squares < 2^32 (unsigned).
    let sums = _mm_add_epi32(
        _mm256_castsi256_si128(sums),
        _mm256_extracti128_si256::<1>(sums),
    );
    let squares = _mm_add_epi32(
        _mm256_castsi256_si128(squares),
        _mm256_extracti128_si256::<1>(squares),
    );
    let sums = _mm_add_epi32(sums, _mm_unpackhi_epi64(sums, sums));
    let sum = _mm_cvtsi128_si32(sums) + _mm_extract_epi32::<1>(sums);
    // Unsigned to 64 bits, then the 4 lanes added.
    let squares = _mm256_cvtepu32_epi64(squares);
    let squares = _mm_add_epi64(
        _mm256_castsi256_si128(squares),
        _mm256_extracti128_si256::<1>(squares),
    );
    let square = _mm_cvtsi128_si64(squares) as u64
        + _mm_cvtsi128_si64(_mm_unpackhi_epi64(squares, squares)) as u64;
    Some((i64::from(sum), square))
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
/// With `AVX2` (the CPU has it), through [`Accumulate::window_avx2`].
#[inline(always)]
pub(crate) fn run_sums<D: Accumulate, const AVX2: bool>(
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
        let values = &segment[at..at + WINDOW * D::SIZE];
        #[cfg(target_arch = "x86_64")]
        let (ws, wq) = if AVX2 {
            // SAFETY: AVX2 is only set where the CPU has it.
            unsafe { D::window_avx2(values, from - window, to - window) }
        } else {
            D::window(values, from - window, to - window)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let (ws, wq) = D::window(values, from - window, to - window);
        s += ws;
        q += wq;
        from = to;
    }
    (s, q)
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::raw_envi::{U16Be, U16Le};

    /// The AVX2 windows of unsigned 16-bit values (both byte orders) against the plain ones, on
    /// windows of small values (the fast path, which must be taken), of any values (a value of
    /// 2^15 or more among the summed lanes must fall back), every (lo, hi).
    #[test]
    fn avx2_u16_windows_are_the_plain_sums() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            eprintln!("no AVX2 on this CPU: nothing to compare");
            return;
        }
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut fast, mut fallback) = (0, 0);
        for trial in 0..3000 {
            let small = trial % 2 == 0;
            let window: Vec<u8> = (0..2 * WINDOW)
                .map(|_| next() as u8)
                .enumerate()
                .map(|(i, b)| if small && i % 2 == 1 { b & 0x7F } else { b })
                .collect();
            let lo = (next() % (WINDOW as u64 + 1)) as usize;
            let hi = lo + (next() % ((WINDOW - lo) as u64 + 1)) as usize;
            // SAFETY: the CPU has AVX2 (checked above).
            unsafe {
                let le = u16_window_avx2::<false>(&window, lo, hi);
                let be = u16_window_avx2::<true>(&window, lo, hi);
                for (got, plain) in [
                    (le, U16Le::window(&window, lo, hi)),
                    (be, U16Be::window(&window, lo, hi)),
                ] {
                    match got {
                        Some(sums) => {
                            fast += 1;
                            assert_eq!(sums, plain, "window {window:?}, lanes {lo}..{hi}");
                        }
                        None => fallback += 1,
                    }
                }
                assert_eq!(
                    U16Le::window_avx2(&window, lo, hi),
                    U16Le::window(&window, lo, hi)
                );
                assert_eq!(
                    U16Be::window_avx2(&window, lo, hi),
                    U16Be::window(&window, lo, hi)
                );
            }
            if small {
                // Little-endian: every high byte below 0x80, so every value below 2^15.
                // SAFETY: as above.
                assert!(unsafe { u16_window_avx2::<false>(&window, lo, hi) }.is_some());
            }
        }
        assert!(
            fast > 1000 && fallback > 500,
            "fast {fast}, fallback {fallback}"
        );
    }
}
