//! Writers for cubes and label rasters: ENVI (our own, byte-exact and reproducible) and GeoTIFF
//! (through GDAL). Each writes to temporary names and renames, so a failure leaves no partial file.

use std::io::Write;
use std::path::{Path, PathBuf};

use domain::{GeoReference, Interleave, LabelRaster, RasterCube};
use gdal::Metadata;

use crate::error::{Error, Result};

fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temporary(path);
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, "cannot write", e)
    })
}

fn format_list(values: impl Iterator<Item = String>, per_line: usize) -> String {
    let values: Vec<String> = values.collect();
    let lines: Vec<String> = values.chunks(per_line).map(|c| c.join(", ")).collect();
    format!("{{\n  {}}}", lines.join(",\n  "))
}

fn map_info_lines(georeference: &GeoReference) -> String {
    let mut text = String::new();
    if let Some(zone) = georeference.epsg.and_then(|e| match e {
        32601..=32660 => Some((e - 32600, "North")),
        32701..=32760 => Some((e - 32700, "South")),
        _ => None,
    }) {
        text.push_str(&format!(
            "map info = {{UTM, 1, 1, {}, {}, {}, {}, {}, {}, WGS-84, units=Meters}}\n",
            georeference.origin_x,
            georeference.origin_y,
            georeference.pixel_width,
            georeference.pixel_height,
            zone.0,
            zone.1
        ));
    }
    if !georeference.crs_wkt.is_empty() {
        text.push_str(&format!(
            "coordinate system string = {{{}}}\n",
            georeference.crs_wkt
        ));
    }
    text
}

/// Write `cube` as ENVI uint16 (`base` is the data file; the header is `base` with `.hdr`).
pub fn write_envi_cube(base: &Path, cube: &RasterCube, interleave: Interleave) -> Result<()> {
    let (lines, samples, bands) = (cube.lines, cube.samples, cube.bands());
    if cube.values_bsq.len() != lines * samples * bands {
        return Err(Error::invalid(base, "cube values do not match its size"));
    }
    let mut header = format!(
        "ENVI\ndescription = {{{}}}\nsamples = {samples}\nlines = {lines}\nbands = {bands}\nheader offset = 0\n\
         file type = ENVI Standard\ndata type = 12\ninterleave = {}\nbyte order = 0\n\
         reflectance scale factor = {}\nwavelength units = Nanometers\n",
        cube.description,
        interleave.as_str(),
        cube.reflectance_scale_factor
    );
    if let Some(georeference) = &cube.georeference {
        header.push_str(&map_info_lines(georeference));
    }
    header.push_str(&format!(
        "wavelength = {}\n",
        format_list(
            cube.axis.wavelength_nm().iter().map(|w| format!("{w:.2}")),
            10
        )
    ));
    if let Some(fwhm) = cube.axis.fwhm_nm() {
        header.push_str(&format!(
            "fwhm = {}\n",
            format_list(fwhm.iter().map(|w| format!("{w:.2}")), 10)
        ));
    }
    let mut data = Vec::with_capacity(cube.values_bsq.len() * 2);
    let at = |b: usize, l: usize, s: usize| cube.values_bsq[(b * lines + l) * samples + s];
    match interleave {
        Interleave::Bsq => cube
            .values_bsq
            .iter()
            .for_each(|v| data.extend_from_slice(&v.to_le_bytes())),
        Interleave::Bil => {
            for l in 0..lines {
                for b in 0..bands {
                    for s in 0..samples {
                        data.extend_from_slice(&at(b, l, s).to_le_bytes());
                    }
                }
            }
        }
        Interleave::Bip => {
            for l in 0..lines {
                for s in 0..samples {
                    for b in 0..bands {
                        data.extend_from_slice(&at(b, l, s).to_le_bytes());
                    }
                }
            }
        }
    }
    write_atomically(base, &data)?;
    write_atomically(&base.with_extension("hdr"), header.as_bytes())
}

/// Write a label raster as an ENVI classification (uint8 when codes fit, else uint16).
pub fn write_envi_labels(base: &Path, labels: &LabelRaster) -> Result<()> {
    let max_code = labels.codes.iter().copied().max().unwrap_or(0);
    if max_code > u16::MAX as u32 {
        return Err(Error::invalid(
            base,
            format!("label code {max_code} does not fit uint16"),
        ));
    }
    let (data_type, data): (u32, Vec<u8>) = if max_code <= u8::MAX as u32 {
        (1, labels.codes.iter().map(|&c| c as u8).collect())
    } else {
        (
            2,
            labels
                .codes
                .iter()
                .flat_map(|&c| (c as u16).to_le_bytes())
                .collect(),
        )
    };
    let mut codes = vec![0u32];
    let mut names = vec!["Unclassified".to_string()];
    for class in labels.classes.iter() {
        codes.push(class.code);
        names.push(class.name.clone());
    }
    let mut header = format!(
        "ENVI\ndescription = {{plant-level ground truth}}\nsamples = {}\nlines = {}\nbands = 1\nheader offset = 0\n\
         file type = ENVI Classification\ndata type = {data_type}\ninterleave = bsq\nbyte order = 0\n\
         classes = {}\nclass names = {{{}}}\nclass values = {{{}}}\n",
        labels.samples,
        labels.lines,
        names.len(),
        names.join(", "),
        codes.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
    );
    if let Some(georeference) = &labels.georeference {
        header.push_str(&map_info_lines(georeference));
    }
    write_atomically(base, &data)?;
    write_atomically(&base.with_extension("hdr"), header.as_bytes())
}

fn set_georeference(
    dataset: &mut gdal::Dataset,
    georeference: &GeoReference,
    path: &Path,
) -> Result<()> {
    dataset
        .set_geo_transform(&[
            georeference.origin_x,
            georeference.pixel_width,
            0.0,
            georeference.origin_y,
            0.0,
            -georeference.pixel_height,
        ])
        .map_err(|e| Error::gdal(path, "set the geotransform", e))?;
    if !georeference.crs_wkt.is_empty() {
        dataset
            .set_projection(&georeference.crs_wkt)
            .map_err(|e| Error::gdal(path, "set the CRS", e))?;
    }
    Ok(())
}

/// Write `cube` as a band-interleaved, deflate-compressed uint16 GeoTIFF with band scale
/// 1 / reflectance scale factor and `wavelength`/`fwhm`/`wavelength_units` band metadata.
pub fn write_geotiff_cube(path: &Path, cube: &RasterCube) -> Result<()> {
    let tmp = temporary(path);
    let result = (|| {
        let driver = gdal::DriverManager::get_driver_by_name("GTiff")
            .map_err(|e| Error::gdal(path, "find the GTiff driver", e))?;
        let options = gdal::raster::RasterCreationOptions::from_iter([
            "INTERLEAVE=BAND",
            "COMPRESS=DEFLATE",
            "PREDICTOR=2",
            "TILED=NO",
        ]);
        let mut dataset = driver
            .create_with_band_type_with_options::<u16, _>(
                &tmp,
                cube.samples,
                cube.lines,
                cube.bands(),
                &options,
            )
            .map_err(|e| Error::gdal(path, "create the GeoTIFF", e))?;
        if let Some(georeference) = &cube.georeference {
            set_georeference(&mut dataset, georeference, path)?;
        }
        dataset
            .set_description(&cube.description)
            .map_err(|e| Error::gdal(path, "set the description", e))?;
        let plane = cube.lines * cube.samples;
        for b in 0..cube.bands() {
            let mut band = dataset
                .rasterband(b + 1)
                .map_err(|e| Error::gdal(path, "open a band", e))?;
            let wavelength = cube.axis.wavelength_nm()[b];
            band.set_metadata_item("wavelength", &format!("{wavelength:.2}"), "")
                .and_then(|_| band.set_metadata_item("wavelength_units", "nm", ""))
                .map_err(|e| Error::gdal(path, "set band metadata", e))?;
            if let Some(fwhm) = cube.axis.fwhm_nm() {
                band.set_metadata_item("fwhm", &format!("{:.2}", fwhm[b]), "")
                    .map_err(|e| Error::gdal(path, "set band metadata", e))?;
            }
            band.set_scale(1.0 / cube.reflectance_scale_factor)
                .and_then(|_| band.set_offset(0.0))
                .map_err(|e| Error::gdal(path, "set the band scale", e))?;
            let mut buffer = gdal::raster::Buffer::new(
                (cube.samples, cube.lines),
                cube.values_bsq[b * plane..(b + 1) * plane].to_vec(),
            );
            band.write((0, 0), (cube.samples, cube.lines), &mut buffer)
                .map_err(|e| Error::gdal(path, "write a band", e))?;
        }
        dataset
            .close()
            .map_err(|e| Error::gdal(path, "close the GeoTIFF", e))
    })();
    finish(result, &tmp, path)
}

/// Write a label raster as a uint16 GeoTIFF with GDAL category names.
pub fn write_geotiff_labels(path: &Path, labels: &LabelRaster) -> Result<()> {
    write_coded_geotiff(path, labels, None)
}

/// A class map: [`write_geotiff_labels`] plus a colour table (`colours[k]` for the class at output
/// index k of `labels.classes`; 0 = no plant, transparent) and 0 as nodata.
pub fn write_class_map(path: &Path, labels: &LabelRaster, colours: &[[u8; 3]]) -> Result<()> {
    write_coded_geotiff(path, labels, Some(colours))
}

fn write_coded_geotiff(
    path: &Path,
    labels: &LabelRaster,
    colours: Option<&[[u8; 3]]>,
) -> Result<()> {
    let tmp = temporary(path);
    let result = (|| {
        let max_code = labels.codes.iter().copied().max().unwrap_or(0);
        if max_code > u16::MAX as u32 {
            return Err(Error::invalid(
                path,
                format!("label code {max_code} does not fit uint16"),
            ));
        }
        let driver = gdal::DriverManager::get_driver_by_name("GTiff")
            .map_err(|e| Error::gdal(path, "find the GTiff driver", e))?;
        let options = gdal::raster::RasterCreationOptions::from_iter(["COMPRESS=DEFLATE"]);
        // Class maps with codes up to 255 as bytes: a colour table then has 256 entries, not
        // 65536. Label rasters stay uint16 (the sample cubes' files are compared byte for byte).
        let byte = colours.is_some() && max_code <= u32::from(u8::MAX);
        let created = if byte {
            driver.create_with_band_type_with_options::<u8, _>(
                &tmp,
                labels.samples,
                labels.lines,
                1,
                &options,
            )
        } else {
            driver.create_with_band_type_with_options::<u16, _>(
                &tmp,
                labels.samples,
                labels.lines,
                1,
                &options,
            )
        };
        let mut dataset = created.map_err(|e| Error::gdal(path, "create the GeoTIFF", e))?;
        if let Some(georeference) = &labels.georeference {
            set_georeference(&mut dataset, georeference, path)?;
        }
        let mut band = dataset
            .rasterband(1)
            .map_err(|e| Error::gdal(path, "open band 1", e))?;
        let mut names = vec![String::new(); max_code as usize + 1];
        names[0] = "Unclassified".into();
        for class in labels.classes.iter() {
            if let Some(slot) = names.get_mut(class.code as usize) {
                *slot = class.name.clone();
            }
        }
        set_category_names(&mut band, &names);
        if let Some(colours) = colours {
            use gdal::raster::{ColorEntry, ColorTable, PaletteInterpretation};
            let mut table = ColorTable::new(PaletteInterpretation::Rgba);
            table.set_color_entry(0, &ColorEntry::rgba(0, 0, 0, 0));
            for (k, class) in labels.classes.iter().enumerate() {
                let [r, g, b] = colours.get(k).copied().unwrap_or([128, 128, 128]);
                table.set_color_entry(
                    class.code as u16,
                    &ColorEntry::rgba(r.into(), g.into(), b.into(), 255),
                );
            }
            band.set_color_table(&table);
            band.set_no_data_value(Some(0.0))
                .map_err(|e| Error::gdal(path, "set nodata", e))?;
        }
        let size = (labels.samples, labels.lines);
        let written = if byte {
            let mut buffer =
                gdal::raster::Buffer::new(size, labels.codes.iter().map(|&c| c as u8).collect());
            band.write((0, 0), size, &mut buffer)
        } else {
            let mut buffer =
                gdal::raster::Buffer::new(size, labels.codes.iter().map(|&c| c as u16).collect());
            band.write((0, 0), size, &mut buffer)
        };
        written.map_err(|e| Error::gdal(path, "write the labels", e))?;
        dataset
            .close()
            .map_err(|e| Error::gdal(path, "close the GeoTIFF", e))
    })();
    finish(result, &tmp, path)
}

fn set_category_names(band: &mut gdal::raster::RasterBand<'_>, names: &[String]) {
    let owned: Vec<std::ffi::CString> = names
        .iter()
        .map(|n| std::ffi::CString::new(n.replace('\0', "")).expect("NUL bytes were removed"))
        .collect();
    let mut pointers: Vec<*mut std::ffi::c_char> =
        owned.iter().map(|c| c.as_ptr().cast_mut()).collect();
    pointers.push(std::ptr::null_mut());
    // SAFETY: `pointers` is a NULL-terminated list of valid C strings that outlive the call; GDAL
    // copies the list and does not write through the pointers.
    unsafe {
        gdal_sys::GDALSetRasterCategoryNames(band.c_rasterband(), pointers.as_mut_ptr());
    }
}

/// Rename the finished file into place, with the `.aux.xml` sidecar where GDAL keeps what the
/// format cannot hold (category names in a GeoTIFF).
fn finish(result: Result<()>, tmp: &Path, path: &Path) -> Result<()> {
    let aux = |p: &Path| PathBuf::from(format!("{}.aux.xml", p.display()));
    let renamed = result.and_then(|_| {
        if aux(tmp).exists() {
            std::fs::rename(aux(tmp), aux(path))
                .map_err(|e| Error::io(path, "cannot rename the .aux.xml sidecar into place", e))?;
        } else if aux(path).exists() {
            std::fs::remove_file(aux(path))
                .map_err(|e| Error::io(path, "cannot remove a stale .aux.xml sidecar", e))?;
        }
        std::fs::rename(tmp, path).map_err(|e| Error::io(path, "cannot rename into place", e))
    });
    if renamed.is_err() {
        let _ = std::fs::remove_file(tmp);
        let _ = std::fs::remove_file(aux(tmp));
    }
    renamed
}

/// A one-band float32 GeoTIFF (e.g. each plant's KL on its pixels), NaN as nodata.
pub fn write_float_map(
    path: &Path,
    (lines, samples): (usize, usize),
    values: &[f32],
    georeference: Option<&GeoReference>,
    description: &str,
) -> Result<()> {
    if values.len() != lines * samples {
        return Err(Error::invalid(
            path,
            format!("{} values for {lines} x {samples} pixels", values.len()),
        ));
    }
    let tmp = temporary(path);
    let result = (|| {
        let driver = gdal::DriverManager::get_driver_by_name("GTiff")
            .map_err(|e| Error::gdal(path, "find the GTiff driver", e))?;
        let options =
            gdal::raster::RasterCreationOptions::from_iter(["COMPRESS=DEFLATE", "PREDICTOR=3"]);
        let mut dataset = driver
            .create_with_band_type_with_options::<f32, _>(&tmp, samples, lines, 1, &options)
            .map_err(|e| Error::gdal(path, "create the GeoTIFF", e))?;
        if let Some(georeference) = georeference {
            set_georeference(&mut dataset, georeference, path)?;
        }
        let mut band = dataset
            .rasterband(1)
            .map_err(|e| Error::gdal(path, "open band 1", e))?;
        band.set_description(description)
            .map_err(|e| Error::gdal(path, "set the band description", e))?;
        band.set_no_data_value(Some(f64::NAN))
            .map_err(|e| Error::gdal(path, "set nodata", e))?;
        let mut buffer = gdal::raster::Buffer::new((samples, lines), values.to_vec());
        band.write((0, 0), (samples, lines), &mut buffer)
            .map_err(|e| Error::gdal(path, "write the values", e))?;
        dataset
            .close()
            .map_err(|e| Error::gdal(path, "close the GeoTIFF", e))
    })();
    finish(result, &tmp, path)
}
