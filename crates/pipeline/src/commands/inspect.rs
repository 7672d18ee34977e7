//! `pipeline inspect`: what is in a cube, before running anything on it.

use anyhow::{Context, Result};
use ingest::Cube;

use crate::cli::InspectArgs;
use crate::output::check_writable;

pub fn run(args: InspectArgs) -> Result<()> {
    if let Some(path) = &args.quicklook {
        check_writable(path, args.overwrite)?;
    }
    let cube = Cube::open(&args.cube, &args.read.config())
        .with_context(|| format!("opening cube {}", args.cube.display()))?;
    let d = cube
        .describe()
        .with_context(|| format!("describing {}", args.cube.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        let or_none = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        println!("data file        {}", d.data_path);
        println!("header           {}", or_none(d.header_path.clone()));
        println!("format           {}", d.driver);
        println!(
            "size             {} lines x {} samples x {} bands",
            d.lines, d.samples, d.bands
        );
        println!("data type        {}", d.data_type);
        println!("interleave       {}", or_none(d.interleave.clone()));
        println!("byte order       {}", or_none(d.byte_order.clone()));
        println!(
            "wavelengths      {:.1}-{:.1} nm{}{}",
            d.wavelength_min_nm,
            d.wavelength_max_nm,
            if d.wavelengths_sorted {
                ""
            } else {
                ", not sorted"
            },
            if d.fwhm_known { ", FWHM known" } else { "" }
        );
        println!(
            "bad bands        {}",
            match &d.bad_bands {
                None => "- (no bbl)".to_string(),
                Some(b) if b.is_empty() => "none".to_string(),
                Some(b) => format!(
                    "{} ({})",
                    b.len(),
                    b.iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        );
        println!(
            "scale factor     {}",
            or_none(d.reflectance_scale_factor.map(|v| v.to_string()))
        );
        println!(
            "ignore value     {}",
            or_none(d.data_ignore_value.map(|v| v.to_string()))
        );
        println!("CRS              {}", or_none(d.crs.clone()));
        println!(
            "pixel size       {}",
            or_none(d.pixel_size.map(|(x, y)| format!("{x} x {y}")))
        );
    }
    if let Some(path) = &args.quicklook {
        let (width, height, rgb) = cube
            .quicklook_rgb(args.quicklook_max_px)
            .with_context(|| format!("quicklook of {}", args.cube.display()))?;
        report::write_png_rgb(path, width, height, &rgb)?;
        eprintln!("quicklook {width} x {height} written to {}", path.display());
    }
    Ok(())
}
