//! Streaming benchmark of the ingest path (read + vegetation mask + per-plant accumulation).
//!
//!   stream generate OUT.hdr LINES SAMPLES BANDS bsq|bil|bip   write a uint16 field cube
//!   stream run CUBE.hdr raw|gdal                                time find_plants, print JSON
//!
//! The generated scene: discs of vegetation (NDVI ~0.8) on soil (NDVI ~0.1), a spectrum per
//! pixel varying with position, 400-1000 nm. `scripts/bench-ingest` drives both and compares
//! with `cat FILE > /dev/null` in the same run.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use ingest::{find_plants, Cube, EnviReader, PlantConfig, ReadConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("generate") if args.len() == 7 => generate(
            Path::new(&args[2]),
            args[3].parse().expect("LINES"),
            args[4].parse().expect("SAMPLES"),
            args[5].parse().expect("BANDS"),
            &args[6],
        ),
        Some("run") if args.len() == 4 => run(Path::new(&args[2]), &args[3]),
        _ => {
            eprintln!("usage: stream generate OUT.hdr LINES SAMPLES BANDS bsq|bil|bip | stream run CUBE.hdr raw|gdal");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Stored value (reflectance x 10000) of band `b` at a pixel.
fn pixel_value(wavelength: f64, plant: bool, l: usize, s: usize) -> u16 {
    let texture = ((l * 7 + s * 13) % 17) as f64 * 0.002;
    let r = if plant {
        if wavelength < 700.0 {
            0.04 + texture
        } else {
            0.45 + texture
        }
    } else {
        0.15 + wavelength / 10_000.0 + texture
    };
    (r * 10_000.0) as u16
}

fn generate(
    out: &Path,
    lines: usize,
    samples: usize,
    bands: usize,
    interleave: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let wavelengths: Vec<f64> = (0..bands)
        .map(|b| 400.0 + 600.0 * b as f64 / (bands - 1) as f64)
        .collect();
    // Plants: discs of radius 9 on a 30-pixel grid.
    let plant = |l: usize, s: usize| {
        let (dl, ds) = ((l % 30) as i64 - 15, (s % 30) as i64 - 15);
        dl * dl + ds * ds <= 81
    };
    let data = out.with_extension("img");
    let mut w = BufWriter::with_capacity(8 << 20, std::fs::File::create(&data)?);
    let mut line = vec![0u8; samples * bands * 2];
    for l in 0..lines {
        match interleave {
            "bip" => {
                for s in 0..samples {
                    for (b, &wl) in wavelengths.iter().enumerate() {
                        let v = pixel_value(wl, plant(l, s), l, s).to_le_bytes();
                        line[(s * bands + b) * 2..(s * bands + b) * 2 + 2].copy_from_slice(&v);
                    }
                }
                w.write_all(&line)?;
            }
            "bil" => {
                for (b, &wl) in wavelengths.iter().enumerate() {
                    for s in 0..samples {
                        let v = pixel_value(wl, plant(l, s), l, s).to_le_bytes();
                        line[(b * samples + s) * 2..(b * samples + s) * 2 + 2].copy_from_slice(&v);
                    }
                }
                w.write_all(&line)?;
            }
            _ => {}
        }
    }
    if interleave == "bsq" {
        for &wl in &wavelengths {
            for l in 0..lines {
                for s in 0..samples {
                    w.write_all(&pixel_value(wl, plant(l, s), l, s).to_le_bytes())?;
                }
            }
        }
    }
    w.flush()?;
    let list: Vec<String> = wavelengths.iter().map(|w| format!("{w:.2}")).collect();
    std::fs::write(
        out,
        format!(
            "ENVI\nsamples = {samples}\nlines = {lines}\nbands = {bands}\nheader offset = 0\ndata type = 12\ninterleave = {interleave}\nbyte order = 0\nreflectance scale factor = 10000\nwavelength units = nm\nwavelength = {{{}}}\n",
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
