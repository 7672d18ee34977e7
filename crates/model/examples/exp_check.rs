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

    // expf: all 2^32 bit patterns, in blocks of 2^16 dealt to the threads in turn.
    let start = std::time::Instant::now();
    let (expf_differ, expf_values) = on_threads(threads, |t| {
        let (mut differ, mut done) = (0, 0);
        let mut values = vec![0f32; 1 << 16];
        for block in (t..1 << 16).step_by(threads as usize) {
            for (i, v) in values.iter_mut().enumerate() {
                *v = f32::from_bits(((block << 16) | i as u64) as u32);
            }
            differ += differences(
                "expf",
                &values,
                model::exp::expf_in_place,
                f32::exp,
                f32::to_bits,
            );
            done += values.len() as u64;
        }
        (differ, done)
    });
    println!(
        "expf: {expf_differ} of {expf_values} f32 values differ from libm ({:.0} s)",
        start.elapsed().as_secs_f64()
    );

    // exp: f32 - f32 differences (SplitMix64 bit patterns, both finite) and a uniform sweep of
    // [-1100, 1100], in equal parts.
    let start = std::time::Instant::now();
    let per_thread = samples / threads;
    let (exp_differ, exp_values) = on_threads(threads, |t| {
        let mut state = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(t + 1);
        let mut next = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let (mut differ, mut done) = (0, 0);
        let mut values = Vec::with_capacity(1 << 16);
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
            differ += differences(
                "exp",
                &values,
                model::exp::exp_in_place,
                f64::exp,
                f64::to_bits,
            );
            done += values.len() as u64;
        }
        (differ, done)
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

/// `work(t)` -> (values that differ, values checked) on threads t = 0..threads, summed. A
/// thread that panics counts as one difference.
fn on_threads(threads: u64, work: impl Fn(u64) -> (u64, u64) + Sync) -> (u64, u64) {
    let work = &work;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads).map(|t| scope.spawn(move || work(t))).collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or((1, 0)))
            .fold((0, 0), |(d, n), (dw, nw)| (d + dw, n + nw))
    })
}

/// How many of `values` get other bits from `ours` (in place, on a copy) than from `libm`; the
/// first few are printed.
fn differences<T: Copy + std::fmt::LowerExp, B: PartialEq>(
    name: &str,
    values: &[T],
    ours: fn(&mut [T]),
    libm: fn(T) -> T,
    bits: fn(T) -> B,
) -> u64 {
    let mut computed = values.to_vec();
    ours(&mut computed);
    let mut differ = 0;
    for (&x, &y) in values.iter().zip(&computed) {
        let reference = libm(std::hint::black_box(x));
        if bits(reference) != bits(y) {
            if differ < 5 {
                eprintln!("{name}({x:e}): {y:e}, libm {reference:e}");
            }
            differ += 1;
        }
    }
    differ
}
