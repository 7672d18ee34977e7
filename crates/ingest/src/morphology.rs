//! Binary morphology on the whole-scene mask and Otsu's threshold on an index histogram.

use crate::parallel::{in_parts, in_parts_of};

/// Opening (erosion, then dilation) with a `(2 radius + 1)` square: removes vegetation specks and
/// one-pixel bridges narrower than the square while keeping the shape of larger regions. Outside
/// the scene counts as vegetation for the erosion (plants at the edge keep their edge pixels) and
/// as background for the dilation.
pub fn open_mask(mask: &mut [u32], lines: usize, samples: usize, radius: usize) {
    if radius == 0 || mask.is_empty() {
        return;
    }
    assert_eq!(mask.len(), lines * samples, "mask has the scene's size");
    // One scene-sized buffer besides the mask.
    let mut rows = vec![0u32; mask.len()];
    filter(mask, &mut rows, lines, samples, radius, true);
    filter(mask, &mut rows, lines, samples, radius, false);
}

/// Separable square min (`erode`) or max filter of a 0/1 raster in place (`rows` is scratch of
/// the same size); outside pixels are ignored. Each pass combines whole shifted rows, which
/// compiles to vector instructions.
fn filter(
    mask: &mut [u32],
    rows: &mut [u32],
    lines: usize,
    samples: usize,
    radius: usize,
    erode: bool,
) {
    let combine = |out: &mut [u32], other: &[u32]| {
        if erode {
            out.iter_mut().zip(other).for_each(|(o, &v)| *o &= v);
        } else {
            out.iter_mut().zip(other).for_each(|(o, &v)| *o |= v);
        }
    };
    // Along lines: the pixel and its neighbours up to `radius` either side within the line.
    let source: &[u32] = mask;
    in_parts(rows, samples, |first, part| {
        part.copy_from_slice(&source[first..first + part.len()]);
        for (row, source) in part
            .chunks_mut(samples)
            .zip(source[first..].chunks(samples))
        {
            for d in 1..=radius.min(samples.saturating_sub(1)) {
                combine(&mut row[..samples - d], &source[d..]);
                combine(&mut row[d..], &source[..samples - d]);
            }
        }
    });
    // Across lines: the lines up to `radius` above and below within the scene.
    let rows: &[u32] = rows;
    in_parts(mask, samples, |first, part| {
        part.copy_from_slice(&rows[first..first + part.len()]);
        for (l, target) in part.chunks_mut(samples).enumerate() {
            let line = first / samples + l;
            let (lo, hi) = (line.saturating_sub(radius), (line + radius).min(lines - 1));
            for other in (lo..=hi).filter(|&o| o != line) {
                combine(target, &rows[other * samples..(other + 1) * samples]);
            }
        }
    });
}

/// Otsu's threshold of the finite values in `[lo, hi]`, from a histogram of `bins` bins: the bin
/// edge that maximises the between-class variance. `None` when fewer than two bins are occupied.
pub fn otsu_threshold(values: &[f32], lo: f32, hi: f32, bins: usize) -> Option<f32> {
    let width = (hi - lo) / bins as f32;
    // Counts of parts of the values in parallel, added: integers, the same in any order.
    let mut histogram = vec![0u64; bins];
    for part in in_parts_of(values, 1, |_, part| {
        let mut counts = vec![0u64; bins];
        for &v in part {
            if v.is_finite() && v >= lo && v <= hi {
                let bin = (((v - lo) / width) as usize).min(bins - 1);
                counts[bin] += 1;
            }
        }
        counts
    }) {
        histogram.iter_mut().zip(part).for_each(|(h, c)| *h += c);
    }
    if histogram.iter().filter(|&&c| c > 0).count() < 2 {
        return None;
    }
    let centre = |b: usize| lo as f64 + (b as f64 + 0.5) * width as f64;
    let total: u64 = histogram.iter().sum();
    let total_sum: f64 = histogram
        .iter()
        .enumerate()
        .map(|(b, &c)| c as f64 * centre(b))
        .sum();
    let (mut below, mut below_sum) = (0u64, 0f64);
    // Between-class variance of the cut after bin b: bins 0..=b below, the rest above.
    let mut between = vec![f64::NEG_INFINITY; bins - 1];
    for (b, &count) in histogram.iter().enumerate().take(bins - 1) {
        below += count;
        below_sum += count as f64 * centre(b);
        let above = total - below;
        if below == 0 || above == 0 {
            continue;
        }
        let mean_below = below_sum / below as f64;
        let mean_above = (total_sum - below_sum) / above as f64;
        between[b] = below as f64 * above as f64 * (mean_below - mean_above).powi(2);
    }
    let best = between.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // Every cut inside a run of empty bins scores the same: take the middle of the first best run.
    let tied = |v: f64| v >= best - best.abs() * 1e-12;
    let first = between.iter().position(|&v| tied(v))?;
    let run = between[first..].iter().take_while(|&&v| tied(v)).count();
    let cut = first + (run - 1) / 2;
    Some(lo + (cut + 1) as f32 * width)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Independent opening: for every pixel, is it covered by a square that fits in the mask?
    fn naive_opening(mask: &[u32], lines: usize, samples: usize, r: usize) -> Vec<u32> {
        let (r, lines_i, samples_i) = (r as i64, lines as i64, samples as i64);
        let inside_or_out = |l: i64, s: i64| {
            l < 0
                || s < 0
                || l >= lines_i
                || s >= samples_i
                || mask[(l * samples_i + s) as usize] != 0
        };
        // A square centred at (l, s) fits when every pixel of it is vegetation or outside.
        let fits = |l: i64, s: i64| {
            (l - r..=l + r).all(|ll| (s - r..=s + r).all(|ss| inside_or_out(ll, ss)))
        };
        let mut out = vec![0u32; mask.len()];
        for l in 0..lines_i {
            for s in 0..samples_i {
                let covered = (l - r..=l + r).any(|cl| {
                    (s - r..=s + r).any(|cs| {
                        cl >= 0 && cs >= 0 && cl < lines_i && cs < samples_i && fits(cl, cs)
                    })
                });
                out[(l * samples_i + s) as usize] = u32::from(covered);
            }
        }
        out
    }

    proptest! {
        #[test]
        fn opening_matches_naive(
            lines in 1usize..12,
            samples in 1usize..12,
            radius in 1usize..3,
            seed in any::<u64>(),
        ) {
            let mut state = seed;
            let mask: Vec<u32> = (0..lines * samples)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    u32::from((state >> 33) % 3 != 0)
                })
                .collect();
            let mut opened = mask.clone();
            open_mask(&mut opened, lines, samples, radius);
            prop_assert_eq!(opened, naive_opening(&mask, lines, samples, radius));
        }
    }

    #[test]
    fn opening_removes_a_bridge_and_a_speck() {
        #[rustfmt::skip]
        let mut mask = vec![
            1, 1, 1, 0, 0, 0, 1, 1, 1,
            1, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 0, 0, 0, 1, 1, 1,
            0, 0, 0, 0, 1, 0, 0, 0, 0,
        ];
        open_mask(&mut mask, 4, 9, 1);
        #[rustfmt::skip]
        let expected = vec![
            1, 1, 1, 0, 0, 0, 1, 1, 1,
            1, 1, 1, 0, 0, 0, 1, 1, 1,
            1, 1, 1, 0, 0, 0, 1, 1, 1,
            0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(mask, expected);
    }

    /// Independent Otsu: every cut between sorted distinct bin centres, between-class variance
    /// computed from the raw values.
    #[test]
    fn otsu_matches_exhaustive_search_on_a_bimodal_sample() {
        let mut state = 7u64;
        let mut uniform = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut values = Vec::new();
        for _ in 0..3000 {
            values.push((0.12 + 0.1 * (uniform() - 0.5)) as f32);
        }
        for _ in 0..1000 {
            values.push((0.78 + 0.16 * (uniform() - 0.5)) as f32);
        }
        let bins = 200;
        let t = otsu_threshold(&values, -1.0, 1.0, bins).unwrap();
        let width = 2.0 / bins as f64;
        let quantised: Vec<f64> = values
            .iter()
            .map(|&v| -1.0 + (((v as f64 + 1.0) / width).floor() + 0.5) * width)
            .collect();
        let score = |cut: f64| {
            let (a, b): (Vec<f64>, Vec<f64>) = quantised.iter().partition(|&&v| v < cut);
            if a.is_empty() || b.is_empty() {
                return f64::NEG_INFINITY;
            }
            let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
            a.len() as f64 * b.len() as f64 * (mean(&a) - mean(&b)).powi(2)
        };
        let best = (1..bins)
            .map(|k| -1.0 + k as f64 * width)
            .max_by(|x, y| score(*x).total_cmp(&score(*y)))
            .unwrap();
        // Cuts anywhere in the empty gap between the modes score the same: compare scores.
        let (ours, theirs) = (score(t as f64), score(best));
        assert!(
            ours >= theirs * (1.0 - 1e-9),
            "otsu {t} scores {ours}, exhaustive {best} {theirs}"
        );
        assert!(t > 0.17 && t < 0.7, "threshold {t} separates the modes");
        assert_eq!(otsu_threshold(&[0.3; 10], -1.0, 1.0, 100), None);
    }
}
