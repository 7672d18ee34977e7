//! Spectral tables as field-spectrometer libraries are exchanged: one row per spectrum, one column
//! per band named by its wavelength in nm (`505`, `515.5`), a label column, optionally a group column.
//! CSV or Parquet.

use std::path::Path;

use polars::prelude::*;

use crate::error::{Error, Result};

/// The table's spectra, labels as written (strings), and groups.
#[derive(Debug, Clone, PartialEq)]
pub struct SpectralTable {
    /// Band wavelengths in nm, in column order.
    pub wavelength_nm: Vec<f64>,
    /// Row-major `rows x bands`.
    pub spectra: Vec<f32>,
    pub labels: Vec<String>,
    /// Group of each row (plant, leaf), when a group column was named.
    pub groups: Option<Vec<String>>,
}

fn invalid(path: &Path, message: impl Into<String>) -> Error {
    Error::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// A column name that is a wavelength in nm.
fn wavelength_of(name: &str) -> Option<f64> {
    name.trim()
        .parse::<f64>()
        .ok()
        .filter(|w| w.is_finite() && *w > 0.0)
}

/// Read a spectral table (labels empty when `label_column` is `None`); `.parquet` by Parquet, anything else as CSV (comma-separated, header row).
pub fn read_spectral_table(
    path: &Path,
    label_column: Option<&str>,
    group_column: Option<&str>,
) -> Result<SpectralTable> {
    let is_parquet = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    let (names, columns) = if is_parquet {
        parquet_columns(path)?
    } else {
        csv_columns(path)?
    };
    let find = |wanted: &str| {
        names.iter().position(|n| n == wanted).ok_or_else(|| {
            invalid(
                path,
                format!("no column '{wanted}' (columns: {})", preview(&names)),
            )
        })
    };
    let label_index = label_column.map(find).transpose()?;
    let group_index = group_column.map(find).transpose()?;
    let band_columns: Vec<(usize, f64)> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != label_index && Some(*i) != group_index)
        .filter_map(|(i, n)| wavelength_of(n).map(|w| (i, w)))
        .collect();
    if band_columns.len() < 2 {
        return Err(invalid(
            path,
            format!(
                "fewer than 2 columns named by a wavelength in nm (columns: {})",
                preview(&names)
            ),
        ));
    }
    let rows = columns[band_columns[0].0].len();
    if rows == 0 {
        return Err(invalid(path, "no rows"));
    }
    let mut spectra = vec![0f32; rows * band_columns.len()];
    for (b, &(column, wavelength)) in band_columns.iter().enumerate() {
        for (row, cell) in columns[column].iter().enumerate() {
            let value = cell
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    invalid(
                        path,
                        format!(
                            "row {} column '{}' ({wavelength} nm): '{cell}' is not a number",
                            row + 1,
                            names[column]
                        ),
                    )
                })?;
            spectra[row * band_columns.len() + b] = value as f32;
        }
    }
    let labels: Vec<String> = match label_index {
        Some(index) => columns[index]
            .iter()
            .map(|s| s.trim().to_string())
            .collect(),
        None => vec![String::new(); rows],
    };
    if let (Some(column), Some(row)) = (label_column, labels.iter().position(String::is_empty)) {
        return Err(invalid(
            path,
            format!("row {}: empty label in column '{column}'", row + 1),
        ));
    }
    Ok(SpectralTable {
        wavelength_nm: band_columns.iter().map(|&(_, w)| w).collect(),
        spectra,
        labels,
        groups: group_index.map(|g| columns[g].iter().map(|s| s.trim().to_string()).collect()),
    })
}

fn preview(names: &[String]) -> String {
    let mut shown: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
    if names.len() > 8 {
        shown.push("...");
    }
    shown.join(", ")
}

/// Column names and cells as text, from a CSV with a header row. Quoted fields may hold commas.
fn csv_columns(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.into(),
        message: "cannot read spectral table".into(),
        source,
    })?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| invalid(path, "empty file"))?;
    let names: Vec<String> = split_csv_line(header)
        .into_iter()
        .map(|n| n.trim().to_string())
        .collect();
    let mut columns = vec![Vec::new(); names.len()];
    for (number, line) in lines {
        let cells = split_csv_line(line);
        if cells.len() != names.len() {
            return Err(invalid(
                path,
                format!(
                    "line {}: {} fields, the header has {}",
                    number + 1,
                    cells.len(),
                    names.len()
                ),
            ));
        }
        for (column, cell) in columns.iter_mut().zip(cells) {
            column.push(cell);
        }
    }
    Ok((names, columns))
}

fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// Column names and cells as text, from Parquet.
fn parquet_columns(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.into(),
        message: "cannot open spectral table".into(),
        source,
    })?;
    let frame = ParquetReader::new(file)
        .finish()
        .map_err(|source| Error::Table {
            path: path.into(),
            source,
        })?;
    let mut names = Vec::new();
    let mut columns = Vec::new();
    for column in frame.columns() {
        names.push(column.name().to_string());
        let as_text = column
            .cast(&DataType::String)
            .map_err(|source| Error::Table {
                path: path.into(),
                source,
            })?;
        let strings = as_text.str().map_err(|source| Error::Table {
            path: path.into(),
            source,
        })?;
        columns.push(
            strings
                .iter()
                .map(|v| v.unwrap_or("").to_string())
                .collect(),
        );
    }
    Ok((names, columns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_extra_and_quoted_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lib.csv");
        std::fs::write(
            &path,
            "id,disease,505,515.5,note,plant\n1,rust,0.1,0.2,\"a, b\",p1\n2,healthy,0.3,0.4,x,p2\n",
        )
        .unwrap();
        let table = read_spectral_table(&path, Some("disease"), Some("plant")).unwrap();
        assert_eq!(table.wavelength_nm, vec![505.0, 515.5]);
        assert_eq!(table.spectra, vec![0.1, 0.2, 0.3, 0.4]);
        assert_eq!(table.labels, vec!["rust", "healthy"]);
        assert_eq!(table.groups, Some(vec!["p1".into(), "p2".into()]));
        let err = read_spectral_table(&path, Some("class"), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lib.csv") && err.contains("no column 'class'"),
            "{err}"
        );
        std::fs::write(&path, "label,505,515\nrust,0.1,abc\n").unwrap();
        let err = read_spectral_table(&path, Some("label"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 1") && err.contains("'abc'"), "{err}");
    }
}
