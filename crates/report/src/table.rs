//! A plain columnar table for the small outputs (training history, sweeps) that other crates
//! build without knowing polars.

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::{Error, Result};

/// One column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    F64(Vec<f64>),
    /// Missing values are null.
    OptionalF64(Vec<Option<f64>>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
    Str(Vec<String>),
    /// Missing values are null.
    OptionalStr(Vec<Option<String>>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::F64(v) => v.len(),
            Values::OptionalF64(v) => v.len(),
            Values::U64(v) => v.len(),
            Values::Bool(v) => v.len(),
            Values::Str(v) => v.len(),
            Values::OptionalStr(v) => v.len(),
        }
    }

    fn column(&self, name: &str) -> Column {
        let name: PlSmallStr = name.into();
        match self {
            Values::F64(v) => Column::new(name, v),
            Values::OptionalF64(v) => Column::new(name, v),
            Values::U64(v) => Column::new(name, v),
            Values::Bool(v) => Column::new(name, v),
            Values::Str(v) => Column::new(name, v),
            Values::OptionalStr(v) => Column::new(name, v),
        }
    }
}

/// Named columns of equal length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<(String, Values)>,
}

impl Table {
    pub fn push(&mut self, name: &str, values: Values) -> &mut Self {
        self.columns.push((name.to_string(), values));
        self
    }
}

/// Write `frame` as zstd Parquet with full statistics through a temporary file renamed into place.
pub(crate) fn write_frame(
    path: &Path,
    frame: &mut DataFrame,
    metadata: Vec<(String, String)>,
) -> Result<()> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let result = File::create(&tmp)
        .map_err(|source| Error::Io {
            path: tmp.clone(),
            message: "cannot create".into(),
            source,
        })
        .and_then(|file| {
            ParquetWriter::new(file)
                .with_compression(ParquetCompression::Zstd(None))
                .with_statistics(StatisticsOptions::full())
                .with_key_value_metadata(Some(KeyValueMetadata::from_static(metadata)))
                .finish(frame)
                .map_err(|source| Error::Table {
                    path: path.into(),
                    source,
                })
        })
        .and_then(|_| {
            std::fs::rename(&tmp, path).map_err(|source| Error::Io {
                path: path.into(),
                message: "cannot rename into place".into(),
                source,
            })
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Write a [`Table`] as Parquet; `metadata` goes to the file's key-value metadata.
pub fn write_table(path: &Path, table: &Table, metadata: &[(String, String)]) -> Result<()> {
    let height = table.columns.first().map_or(0, |(_, v)| v.len());
    if let Some((name, values)) = table.columns.iter().find(|(_, v)| v.len() != height) {
        return Err(Error::Invalid {
            path: path.into(),
            message: format!(
                "column {name} has {} values, the first column {height}",
                values.len()
            ),
        });
    }
    let columns = table
        .columns
        .iter()
        .map(|(name, values)| values.column(name))
        .collect();
    let mut frame = DataFrame::new(height, columns).map_err(|source| Error::Table {
        path: path.into(),
        source,
    })?;
    write_frame(path, &mut frame, metadata.to_vec())
}

/// Write bytes through a temporary name renamed into place.
pub(crate) fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let result = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path));
    result.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io {
            path: path.into(),
            message: "cannot write".into(),
            source,
        }
    })
}
