//! The ENVI `.hdr` format, parsed by us rather than GDAL: GDAL 3.6 drops any header line over
//! 10,000 characters (a one-line `wavelength` list of a few hundred bands), and does not expose
//! `class names` of classification files in a usable form.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use domain::{ClassInfo, ClassSet, Interleave};

use crate::error::{Error, Result};

/// A parsed ENVI header: keys lowercased and with single spaces, values as written (braces
/// removed for lists).
#[derive(Debug, Clone)]
pub struct EnviHeader {
    path: PathBuf,
    fields: BTreeMap<String, String>,
    /// Header line where each field starts, for messages.
    lines: BTreeMap<String, usize>,
}

impl EnviHeader {
    /// Read and parse a header file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound { path: path.into() },
            _ => Error::io(path, "cannot read header", e),
        })?;
        let text = String::from_utf8_lossy(&bytes);
        Self::parse(path, &text)
    }

    /// Parse header text; `path` is used in messages only.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let syntax = |line: usize, message: String| Error::HeaderSyntax {
            path: path.into(),
            line,
            message,
        };
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        match lines.next() {
            Some((_, first)) if first.trim_start_matches('\u{feff}').trim() == "ENVI" => {}
            Some((_, first))
                if first
                    .trim_start_matches('\u{feff}')
                    .trim()
                    .eq_ignore_ascii_case("envi") => {}
            _ => {
                return Err(syntax(
                    1,
                    "an ENVI header starts with the line 'ENVI'".into(),
                ))
            }
        }
        let mut fields = BTreeMap::new();
        let mut field_lines = BTreeMap::new();
        while let Some((number, line)) = lines.next() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with(';') {
                continue;
            }
            let Some((key, value)) = trimmed.split_once('=') else {
                return Err(syntax(
                    number,
                    format!("expected 'key = value', found '{}'", clip(trimmed)),
                ));
            };
            let key = key
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase();
            if key.is_empty() {
                return Err(syntax(number, "a value without a key".into()));
            }
            let mut value = value.trim().to_string();
            if value.starts_with('{') {
                // A list: runs until the closing brace, possibly over many lines.
                while !value.contains('}') {
                    let Some((_, next)) = lines.next() else {
                        return Err(syntax(
                            number,
                            format!("'{key}' opens '{{' and never closes it"),
                        ));
                    };
                    let next = next.trim();
                    if next.starts_with(';') {
                        continue;
                    }
                    value.push(' ');
                    value.push_str(next);
                }
                let close = value
                    .rfind('}')
                    .expect("loop ends only once a '}' is present");
                value = value[1..close].trim().to_string();
            }
            field_lines.insert(key.clone(), number);
            fields.insert(key, value);
        }
        Ok(Self {
            path: path.into(),
            fields,
            lines: field_lines,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Raw value of a field (key in any case).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(&key.to_lowercase()).map(String::as_str)
    }

    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn error(&self, field: &str, message: impl Into<String>) -> Error {
        let message = message.into();
        let message = match self.lines.get(field) {
            Some(line) => format!("{message} (header line {line})"),
            None => message,
        };
        Error::field(&self.path, field, message)
    }

    fn required_usize(&self, field: &str) -> Result<usize> {
        let value = self
            .get(field)
            .ok_or_else(|| self.error(field, "missing; an ENVI header must give it"))?;
        value
            .trim()
            .parse::<usize>()
            .map_err(|_| self.error(field, format!("'{}' is not a whole number", clip(value))))
    }

    fn optional_f64(&self, field: &str) -> Result<Option<f64>> {
        self.get(field)
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| self.error(field, format!("'{}' is not a number", clip(v))))
            })
            .transpose()
    }

    pub fn samples(&self) -> Result<usize> {
        self.required_usize("samples")
    }

    pub fn lines(&self) -> Result<usize> {
        self.required_usize("lines")
    }

    pub fn bands(&self) -> Result<usize> {
        self.required_usize("bands")
    }

    /// ENVI data type code (1 byte, 2 int16, 3 int32, 4 float32, 5 float64, 12 uint16, 13 uint32,
    /// 14 int64, 15 uint64).
    pub fn data_type(&self) -> Result<u32> {
        let code = self.required_usize("data type")? as u32;
        match code {
            1 | 2 | 3 | 4 | 5 | 12 | 13 | 14 | 15 => Ok(code),
            6 | 9 => Err(self.error(
                "data type",
                format!("{code} is complex; spectra must be real"),
            )),
            _ => Err(self.error("data type", format!("{code} is not an ENVI data type"))),
        }
    }

    pub fn interleave(&self) -> Result<Interleave> {
        match self.get("interleave").map(|v| v.trim().to_lowercase()) {
            None => Err(self.error("interleave", "missing; expected bsq, bil or bip")),
            Some(v) if v == "bsq" => Ok(Interleave::Bsq),
            Some(v) if v == "bil" => Ok(Interleave::Bil),
            Some(v) if v == "bip" => Ok(Interleave::Bip),
            Some(v) => Err(self.error(
                "interleave",
                format!("'{}' is not bsq, bil or bip", clip(&v)),
            )),
        }
    }

    /// `byte order`: Some(false) little-endian, Some(true) big-endian, None when the header lacks it.
    pub fn big_endian(&self) -> Result<Option<bool>> {
        match self.get("byte order").map(str::trim) {
            None => Ok(None),
            Some("0") => Ok(Some(false)),
            Some("1") => Ok(Some(true)),
            Some(v) => Err(self.error("byte order", format!("'{}' is neither 0 nor 1", clip(v)))),
        }
    }

    /// `header offset` in bytes, None when missing.
    pub fn header_offset(&self) -> Result<Option<usize>> {
        self.get("header offset")
            .map(|v| {
                v.trim().parse::<usize>().map_err(|_| {
                    self.error(
                        "header offset",
                        format!("'{}' is not a whole number", clip(v)),
                    )
                })
            })
            .transpose()
    }

    /// A numeric list field (`wavelength`, `fwhm`, `bbl`, ...), checked against `expected` entries.
    pub fn number_list(&self, field: &str, expected: usize) -> Result<Option<Vec<f64>>> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let items = split_list(value);
        if items.len() != expected {
            return Err(self.error(
                field,
                format!(
                    "has {} values, expected one per band ({expected})",
                    items.len()
                ),
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| {
                        self.error(
                            field,
                            format!("value {} ('{}') is not a number", i + 1, clip(item)),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Wavelengths in nm, converted from the header's `wavelength units`.
    pub fn wavelengths_nm(&self, bands: usize) -> Result<Option<Vec<f64>>> {
        let Some(values) = self.number_list("wavelength", bands)? else {
            return Ok(None);
        };
        let factor = self.wavelength_unit_factor(&values)?;
        Ok(Some(values.into_iter().map(|w| w * factor).collect()))
    }

    /// FWHM in nm (same units as the wavelengths).
    pub fn fwhm_nm(&self, bands: usize) -> Result<Option<Vec<f64>>> {
        let Some(values) = self.number_list("fwhm", bands)? else {
            return Ok(None);
        };
        let wavelengths = self.number_list("wavelength", bands)?.unwrap_or_default();
        let factor = self.wavelength_unit_factor(&wavelengths)?;
        Ok(Some(values.into_iter().map(|w| w * factor).collect()))
    }

    fn wavelength_unit_factor(&self, wavelengths: &[f64]) -> Result<f64> {
        let units = self
            .get("wavelength units")
            .map(|u| u.trim().to_lowercase());
        match units.as_deref() {
            Some("nanometers" | "nanometer" | "nanometres" | "nanometre" | "nm") => Ok(1.0),
            Some(
                "micrometers" | "micrometer" | "micrometres" | "micrometre" | "microns" | "micron"
                | "um" | "µm",
            ) => Ok(1000.0),
            Some("millimeters" | "millimeter" | "mm") => Ok(1e6),
            Some("unknown") | None => {
                // Infer: values under 30 are micrometres, otherwise nanometres.
                let max = wavelengths.iter().copied().fold(0.0, f64::max);
                Ok(if max > 0.0 && max < 30.0 { 1000.0 } else { 1.0 })
            }
            Some(other) => Err(self.error(
                "wavelength units",
                format!(
                    "'{}' is not a wavelength unit (nanometers, micrometers)",
                    clip(other)
                ),
            )),
        }
    }

    pub fn reflectance_scale_factor(&self) -> Result<Option<f64>> {
        let factor = self.optional_f64("reflectance scale factor")?;
        if let Some(f) = factor {
            if f <= 0.0 {
                return Err(self.error("reflectance scale factor", format!("{f} must be positive")));
            }
        }
        Ok(factor)
    }

    pub fn data_ignore_value(&self) -> Result<Option<f64>> {
        self.optional_f64("data ignore value")
    }

    /// Class codes and names of an ENVI classification file: `class names` lists names for codes
    /// 0..classes-1 (0 being unclassified); `class values`, when present, gives sparse codes.
    pub fn classes(&self) -> Result<Option<ClassSet>> {
        let Some(names) = self.get("class names") else {
            return Ok(None);
        };
        let names = split_list(names);
        let codes: Vec<u32> = match self.get("class values") {
            Some(values) => split_list(values)
                .iter()
                .map(|v| {
                    v.parse::<u32>().map_err(|_| {
                        self.error("class values", format!("'{}' is not a class code", clip(v)))
                    })
                })
                .collect::<Result<_>>()?,
            None => (0..names.len() as u32).collect(),
        };
        if codes.len() != names.len() {
            return Err(self.error(
                "class names",
                format!("{} names for {} class values", names.len(), codes.len()),
            ));
        }
        let classes = codes
            .into_iter()
            .zip(names)
            .filter(|(code, _)| *code != 0)
            .map(|(code, name)| ClassInfo { code, name })
            .collect();
        ClassSet::new(classes)
            .map(Some)
            .map_err(|e| self.error("class names", e.to_string()))
    }
}

/// Split an ENVI list value on commas, trimming each item; an empty list has no items.
fn split_list(value: &str) -> Vec<String> {
    if value.trim().is_empty() {
        return Vec::new();
    }
    value.split(',').map(|s| s.trim().to_string()).collect()
}

fn clip(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Result<EnviHeader> {
        EnviHeader::parse(Path::new("x.hdr"), text)
    }

    #[test]
    fn lenient_real_header() {
        let text = "ENVI\n; made by a tool\ninterleave = bil\nSamples = 43\nlines = 31\nbands = 3\n\
                    data type = 12\nwavelength units = nm\nwavelength = {\n366.5,\n; comment\n367.6,\n368.7}\n";
        let h = parse(text).unwrap();
        assert_eq!(h.samples().unwrap(), 43);
        assert_eq!(h.interleave().unwrap(), Interleave::Bil);
        assert_eq!(h.big_endian().unwrap(), None);
        assert_eq!(h.header_offset().unwrap(), None);
        assert_eq!(
            h.wavelengths_nm(3).unwrap().unwrap(),
            vec![366.5, 367.6, 368.7]
        );
    }

    #[test]
    fn micrometres_are_converted() {
        let h = parse("ENVI\nwavelength units = Micrometers\nwavelength = {0.4, 2.5}\n").unwrap();
        assert_eq!(h.wavelengths_nm(2).unwrap().unwrap(), vec![400.0, 2500.0]);
    }

    #[test]
    fn errors_name_the_field() {
        let h = parse("ENVI\nsamples = 4x\nwavelength = {400, abc}\n").unwrap();
        let e = h.samples().unwrap_err().to_string();
        assert!(e.contains("'samples'") && e.contains("4x"), "{e}");
        let e = h.wavelengths_nm(2).unwrap_err().to_string();
        assert!(e.contains("'wavelength'") && e.contains("abc"), "{e}");
        let e = h.wavelengths_nm(3).unwrap_err().to_string();
        assert!(e.contains("has 2 values"), "{e}");
        assert!(parse("not a header").is_err());
        assert!(parse("ENVI\nwavelength = {400, 500\n").is_err());
    }

    #[test]
    fn class_names_skip_unclassified() {
        let h = parse("ENVI\nclasses = 3\nclass names = {Unclassified, healthy, rust}\n").unwrap();
        let classes = h.classes().unwrap().unwrap();
        assert_eq!(classes.names(), vec!["healthy", "rust"]);
        assert_eq!(classes.index_of_code(2), Some(1));
    }

    proptest! {
        /// Any text: parsing and every accessor return Ok or Err, never panic.
        #[test]
        fn never_panics(text in "ENVI\n(([a-z ]{0,12}=[ -~]{0,30}|\\{|\\}|;[ -~]{0,10})\n){0,12}") {
            if let Ok(h) = parse(&text) {
                let _ = h.samples();
                let _ = h.data_type();
                let _ = h.interleave();
                let _ = h.big_endian();
                let _ = h.wavelengths_nm(3);
                let _ = h.fwhm_nm(3);
                let _ = h.classes();
                let _ = h.reflectance_scale_factor();
            }
        }

        /// Lists written in any layout parse to the same numbers.
        #[test]
        fn lists_round_trip(values in proptest::collection::vec(1.0f64..3000.0, 1..50), per_line in 1usize..10) {
            let mut text = String::from("ENVI\nwavelength units = nm\nwavelength = {\n");
            for chunk in values.chunks(per_line) {
                let items: Vec<String> = chunk.iter().map(|v| format!("{v}")).collect();
                text.push_str(&items.join(", "));
                text.push_str(",\n");
            }
            text.truncate(text.len() - 2);
            text.push_str("}\n");
            let h = parse(&text).unwrap();
            prop_assert_eq!(h.wavelengths_nm(values.len()).unwrap().unwrap(), values);
        }
    }
}
