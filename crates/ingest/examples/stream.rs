//! Streaming benchmark of the ingest path (read + vegetation mask + per-plant accumulation).
//!
//!   stream generate OUT.hdr LINES SAMPLES BANDS bsq|bil|bip [le|be]   write a uint16 field cube
//!   stream run CUBE.hdr raw|gdal                                        time find_plants, print JSON
//!
//! The generated scene (run from the repository root: it reads `crates/synth/library`): plants
//! with the canopy library's spectra on the soil library's, see [`generate`]. `scripts/bench-ingest` drives both and compares
//! with `cat FILE > /dev/null` in the same run.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use ingest::{find_plants, Cube, EnviReader, PlantConfig, ReadConfig};

fn main() {
    // RUST_LOG=ingest=debug shows the plant stage's timings.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("generate") if (7..=8).contains(&args.len()) => generate(
            Path::new(&args[2]),
            (
                args[3].parse().expect("LINES"),
                args[4].parse().expect("SAMPLES"),
                args[5].parse().expect("BANDS"),
            ),
            &args[6],
            args.get(7).is_some_and(|o| o == "be"),
            Path::new("crates/synth/library"),
        ),
        Some("run") if args.len() == 4 => run(Path::new(&args[2]), &args[3]),
        _ => {
            eprintln!("usage: stream generate OUT.hdr LINES SAMPLES BANDS bsq|bil|bip [le|be] | stream run CUBE.hdr raw|gdal");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Spectra of a spectral library file (`samples = 1`, one spectrum per line, 1 nm from 400 nm,
/// f32 BSQ as in `crates/synth/library`) at `wavelengths`, as stored values (reflectance x 10000).
fn library_spectra(
    path: &Path,
    wavelengths: &[f64],
) -> Result<Vec<Vec<u16>>, Box<dyn std::error::Error>> {
    let header = std::fs::read_to_string(path.with_extension("hdr"))?;
    let field = |key: &str| -> Result<usize, Box<dyn std::error::Error>> {
        let line = header
            .lines()
            .find(|l| l.split('=').next().is_some_and(|k| k.trim() == key))
            .ok_or(format!("{}: no '{key}'", path.display()))?;
        Ok(line.split('=').nth(1).unwrap_or("").trim().parse()?)
    };
    let (lines, bands) = (field("lines")?, field("bands")?);
    let bytes = std::fs::read(path.with_extension("img"))?;
    let value = |b: usize, l: usize| {
        let at = (b * lines + l) * 4;
        f32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
    };
    Ok((0..lines)
        .map(|l| {
            wavelengths
                .iter()
                .map(|&w| {
                    let b = ((w - 400.0).round() as usize).min(bands - 1);
                    (f64::from(value(b, l)) * 10_000.0)
                        .round()
                        .clamp(0.0, 65_535.0) as u16
                })
                .collect()
        })
        .collect())
}

/// A well-mixed 64-bit hash (SplitMix64's finaliser) of a few numbers.
fn hash(values: &[u64]) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for &v in values {
        h ^= v.wrapping_add(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
    }
    h
}

/// Write a uint16 field cube: plants (discs of radius 7 px on a 21-pixel grid, each one canopy
/// spectrum of the library: healthy, rust or blight) on soil (library soils in 64-pixel patches),
/// a per-pixel brightness texture of +-2%, 400-1000 nm; little- or big-endian.
fn generate(
    out: &Path,
    (lines, samples, bands): (usize, usize, usize),
    interleave: &str,
    big_endian: bool,
    library: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let wavelengths: Vec<f64> = (0..bands)
        .map(|b| 400.0 + 600.0 * b as f64 / (bands - 1) as f64)
        .collect();
    let canopy = library_spectra(&library.join("canopy.img"), &wavelengths)?;
    let soil = library_spectra(&library.join("soil.img"), &wavelengths)?;
    const PITCH: usize = 21;
    // The spectrum and brightness (in 1/1000) of a pixel.
    let pixel = |l: usize, s: usize| -> (&[u16], u64) {
        let (dl, ds) = ((l % PITCH) as i64 - 10, (s % PITCH) as i64 - 10);
        let texture = 980 + hash(&[l as u64, s as u64]) % 41;
        if dl * dl + ds * ds <= 49 {
            let cell = hash(&[(l / PITCH) as u64, (s / PITCH) as u64, 1]);
            (&canopy[(cell % canopy.len() as u64) as usize], texture)
        } else {
            let patch = hash(&[(l / 64) as u64, (s / 64) as u64, 2]);
            (&soil[(patch % soil.len() as u64) as usize], texture)
        }
    };
    let encode = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let value = |spectrum: &[u16], texture: u64, b: usize| {
        encode((u64::from(spectrum[b]) * texture / 1000).min(65_535) as u16)
    };
    let data = out.with_extension("img");
    let mut w = BufWriter::with_capacity(8 << 20, std::fs::File::create(&data)?);
    let mut line = vec![0u8; samples * bands * 2];
    if interleave == "bsq" {
        let mut plane = vec![0u8; lines * samples * 2];
        let pixels: Vec<(&[u16], u64)> = (0..lines * samples)
            .map(|p| pixel(p / samples, p % samples))
            .collect();
        for b in 0..bands {
            for (p, &(spectrum, texture)) in pixels.iter().enumerate() {
                plane[p * 2..p * 2 + 2].copy_from_slice(&value(spectrum, texture, b));
            }
            w.write_all(&plane)?;
        }
    } else {
        for l in 0..lines {
            for s in 0..samples {
                let (spectrum, texture) = pixel(l, s);
                for b in 0..bands {
                    let at = if interleave == "bip" {
                        s * bands + b
                    } else {
                        b * samples + s
                    };
                    line[at * 2..at * 2 + 2].copy_from_slice(&value(spectrum, texture, b));
                }
            }
            w.write_all(&line)?;
        }
    }
    w.flush()?;
    let list: Vec<String> = wavelengths.iter().map(|w| format!("{w:.2}")).collect();
    std::fs::write(
        out,
        format!(
            "ENVI\nsamples = {samples}\nlines = {lines}\nbands = {bands}\nheader offset = 0\ndata type = 12\ninterleave = {interleave}\nbyte order = {}\nreflectance scale factor = 10000\nwavelength units = nm\nwavelength = {{{}}}\n",
            u8::from(big_endian),
            list.join(", ")
        ),
    )?;
    Ok(())
}

/// Peak resident set size of this process, from /proc/self/status (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn run(cube_path: &Path, reader: &str) -> Result<(), Box<dyn std::error::Error>> {
    let config = ReadConfig {
        envi_reader: match reader {
            "gdal" => EnviReader::Gdal,
            _ => EnviReader::Raw,
        },
        block_bytes: std::env::var("BLOCK_BYTES")
            .ok()
            .and_then(|b| b.parse().ok())
            .unwrap_or(ReadConfig::default().block_bytes),
        ..ReadConfig::default()
    };
    if let Some(threads) = std::env::var("THREADS").ok().and_then(|t| t.parse().ok()) {
        ingest::set_scan_threads(threads);
    }
    let start = Instant::now();
    let cube = Cube::open(cube_path, &config)?;
    let plants = find_plants(&cube, &PlantConfig::default())?;
    let seconds = start.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(cube.data_path())?.len() as f64;
    println!(
        "{{\"cube\": \"{}\", \"interleave\": \"{}\", \"reader\": \"{reader}\", \"bytes\": {bytes}, \"seconds\": {seconds:.3}, \"mb_per_s\": {:.1}, \"plants\": {}, \"peak_rss_mib\": {:.1}}}",
        cube_path.display(),
        cube.interleave().map_or("?", |i| i.as_str()),
        bytes / 1e6 / seconds,
        plants.plants.len(),
        peak_rss_mib()
    );
    Ok(())
}
