//! The bodies of the fuzz targets (`fuzz/`, run by `scripts/fuzz`), here so that the inputs that
//! once found bugs (`fuzz/regressions/`) are replayed by the ordinary test suite too. Each takes
//! arbitrary bytes and must end without a panic, a hang or an unbounded allocation.

use std::path::{Path, PathBuf};

use crate::{Cube, EnviHeader, EnviReader, PlantConfig, ReadConfig};

/// ENVI header text: parsing and every typed accessor.
pub fn envi_header(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(header) = EnviHeader::parse(Path::new("fuzz.hdr"), &text) else {
        return;
    };
    let bands = header.bands().unwrap_or(0).min(4096);
    let _ = header.samples();
    let _ = header.lines();
    let _ = header.data_type();
    let _ = header.interleave();
    let _ = header.big_endian();
    let _ = header.header_offset();
    let _ = header.wavelengths_nm(bands);
    let _ = header.fwhm_nm(bands);
    let _ = header.number_list("bbl", bands);
    let _ = header.reflectance_scale_factor();
    let _ = header.data_ignore_value();
    let _ = header.classes();
}

/// A wavelength file: the first byte is the cube's band count, the rest the file's text.
pub fn wavelength_file(data: &[u8]) {
    let Some((&bands, text)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    let _ = crate::parse_wavelengths(Path::new("fuzz.txt"), &text, bands as usize);
}

/// A header and a data file (the first two bytes give the header's length, little-endian),
/// written into `dir`, then opened with the raw reader, read block by block and searched for
/// plants.
pub fn raw_envi(data: &[u8], dir: &Path) {
    if data.len() < 2 {
        return;
    }
    let header_len = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (header, body) = data[2..].split_at(header_len);
    let (hdr, img): (PathBuf, PathBuf) = (dir.join("f.hdr"), dir.join("f.img"));
    if std::fs::write(&hdr, header).is_err() || std::fs::write(&img, body).is_err() {
        return;
    }
    let config = ReadConfig {
        block_bytes: 64,
        envi_reader: EnviReader::Raw,
        ..ReadConfig::default()
    };
    if let Ok(cube) = Cube::open(&hdr, &config) {
        let mut block = Vec::new();
        for (first, count) in cube.blocks() {
            let _ = cube.read_block(first, count, &mut block);
        }
        let _ = crate::find_plants(&cube, &PlantConfig::default());
        let _ = cube.describe();
    }
}
