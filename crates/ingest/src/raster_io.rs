//! Multi-band block reads through `GDALDatasetRasterIOEx`, which the safe gdal crate does not wrap.

use std::path::Path;

use crate::error::{Error, Result};

/// Read lines `first_line..first_line + line_count` of the given bands (0-based; all bands when
/// `None`) into `buffer` as f32, band sequential: value of (i-th band read, line l, sample s) at
/// `(i * line_count + l) * samples + s`.
pub(crate) fn read_block_f32(
    dataset: &gdal::Dataset,
    path: &Path,
    first_line: usize,
    line_count: usize,
    band_subset: Option<&[usize]>,
    buffer: &mut Vec<f32>,
) -> Result<()> {
    let (samples, lines) = dataset.raster_size();
    let all_bands = dataset.raster_count();
    let mut band_map: Option<Vec<i32>> = match band_subset {
        Some(subset) => {
            if let Some(&bad) = subset.iter().find(|&&b| b >= all_bands) {
                return Err(Error::invalid(
                    path,
                    format!("band {} does not exist ({all_bands} bands)", bad + 1),
                ));
            }
            Some(subset.iter().map(|&b| b as i32 + 1).collect())
        }
        None => None,
    };
    let bands = band_map.as_ref().map_or(all_bands, Vec::len);
    if first_line + line_count > lines {
        return Err(Error::invalid(
            path,
            format!(
                "block of lines {first_line}..{} is outside the {lines} lines",
                first_line + line_count
            ),
        ));
    }
    buffer.clear();
    buffer.resize(bands * line_count * samples, 0.0);
    let value_bytes = std::mem::size_of::<f32>() as i64;
    let line_space = value_bytes * samples as i64;
    let band_space = line_space * line_count as i64;
    // SAFETY: `buffer` holds exactly bands * line_count * samples f32 values and the spacings
    // describe that layout; the window lies inside the raster (checked above); the band map is
    // null (bands 1..=bands) or holds `bands` existing 1-based band numbers (checked above) and
    // outlives the call; the dataset handle is valid for `dataset`'s life.
    let status = unsafe {
        gdal_sys::GDALDatasetRasterIOEx(
            dataset.c_dataset(),
            gdal_sys::GDALRWFlag::GF_Read,
            0,
            first_line as i32,
            samples as i32,
            line_count as i32,
            buffer.as_mut_ptr().cast(),
            samples as i32,
            line_count as i32,
            gdal_sys::GDALDataType::GDT_Float32,
            bands as i32,
            band_map
                .as_mut()
                .map_or(std::ptr::null_mut(), |m| m.as_mut_ptr()),
            value_bytes,
            line_space,
            band_space,
            std::ptr::null_mut(),
        )
    };
    if status != gdal_sys::CPLErr::CE_None {
        return Err(Error::invalid(
            path,
            format!(
                "gdal could not read lines {first_line}..{}: {}",
                first_line + line_count,
                last_gdal_message()
            ),
        ));
    }
    Ok(())
}

fn last_gdal_message() -> String {
    // SAFETY: CPLGetLastErrorMsg returns a pointer to a thread-local, NUL-terminated string owned by
    // GDAL, valid until the next GDAL call on this thread; it is copied out at once.
    unsafe {
        let message = gdal_sys::CPLGetLastErrorMsg();
        if message.is_null() {
            return "unknown error".into();
        }
        std::ffi::CStr::from_ptr(message)
            .to_string_lossy()
            .into_owned()
    }
}
