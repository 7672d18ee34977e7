//! `model::exp` against the machine's libm, bit for bit: `expf` on every f32, `exp` on every
//! f64 difference of two f32 logits that the softmax could form (sampled) and on a sweep of its
//! whole range. Prints how many values differ; exits non-zero if any does.
//!
//! `cargo run --release -p model --example exp_check [SAMPLES]` (SAMPLES of exp, default 2^30).
//! On glibc with FMA (x86-64 since Haswell) no value differs: `model::exp` is its algorithm.

use std::process::ExitCode;

fn main() -> ExitCode {
    let samples: u64 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 1 << 30,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("exp_check: SAMPLES must be a whole number: {e}");
            return ExitCode::FAILURE;
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let start = std::time::Instant::now();

    // expf: all 2^32 bit patterns, in blocks of 2^16.
    let blocks = 1u64 << 16;
    let expf_differ: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut differ = 0;
                    let mut values = vec![0f32; 1 << 16];
                    for block in (t..blocks).step_by(threads as usize) {
                        for (i, v) in values.iter_mut().enumerate() {
                            *v = f32::from_bits(((block << 16) | i as u64) as u32);
                        }
                        let mut ours = values.clone();
                        model::exp::expf_in_place(&mut ours);
                        for (x, y) in values.iter().zip(&ours) {
                            let libm = std::hint::black_box(*x).exp();
                            if libm.to_bits() != y.to_bits() {
                                if differ < 5 {
                                    eprintln!("expf({x:e}): {y:e}, libm {libm:e}");
                                }
                                differ += 1;
                            }
                        }
                    }
                    differ
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or(u64::MAX))
            .sum()
    });
    println!(
        "expf: {expf_differ} of 4294967296 f32 values differ from libm ({:.0} s)",
        start.elapsed().as_secs_f64()
    );

    // exp: f32 - f32 differences (SplitMix64 bit patterns, both finite) and a uniform sweep of
    // [-1100, 1100], in equal parts.
    let start = std::time::Instant::now();
    let per_thread = samples / threads;
    let (exp_differ, exp_values): (u64, u64) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut state = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(t + 1);
                    let mut next = move || {
                        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                        let mut z = state;
                        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                        z ^ (z >> 31)
                    };
                    let mut differ = 0;
                    let mut values = Vec::with_capacity(1 << 16);
                    let mut done = 0;
                    while done < per_thread {
                        values.clear();
                        while values.len() < 1 << 16 {
                            let bits = next();
                            let (a, b) = (
                                f32::from_bits(bits as u32),
                                f32::from_bits((bits >> 32) as u32),
                            );
                            if a.is_finite() && b.is_finite() {
                                values.push(a as f64 - b as f64);
                            }
                            let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
                            values.push(-1100.0 + 2200.0 * u);
                        }
                        let mut ours = values.clone();
                        model::exp::exp_in_place(&mut ours);
                        for (x, y) in values.iter().zip(&ours) {
                            let libm = std::hint::black_box(*x).exp();
                            if libm.to_bits() != y.to_bits() {
                                if differ < 5 {
                                    eprintln!("exp({x:e}): {y:e}, libm {libm:e}");
                                }
                                differ += 1;
                            }
                        }
                        done += values.len() as u64;
                    }
                    (differ, done)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or((u64::MAX, 0)))
            .fold((0, 0), |(d, n), (dw, nw)| (d + dw, n + nw))
    });
    println!(
        "exp: {exp_differ} of {exp_values} f64 values differ from libm ({:.0} s)",
        start.elapsed().as_secs_f64()
    );
    if expf_differ == 0 && exp_differ == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
