//! Checks on output paths, made before any work so that a refused output costs nothing.

use std::path::Path;

use anyhow::{bail, Result};

/// The output must not exist (unless `overwrite`) and its folder must.
pub fn check_writable(path: &Path, overwrite: bool) -> Result<()> {
    if path.exists() && !overwrite {
        bail!(
            "{}: output exists; pass --overwrite to replace it",
            path.display()
        );
    }
    if path.is_dir() {
        bail!(
            "{}: output is a folder, expected a file name",
            path.display()
        );
    }
    check_parent(path)
}

/// An output folder (written whole, e.g. a report) must not exist (unless `overwrite`), must be a
/// folder if it does, and its parent must exist.
pub fn check_writable_dir(dir: &Path, overwrite: bool) -> Result<()> {
    if dir.exists() && !overwrite {
        bail!(
            "{}: report folder exists; pass --overwrite to replace it",
            dir.display()
        );
    }
    if dir.exists() && !dir.is_dir() {
        bail!("{}: exists and is not a folder", dir.display());
    }
    check_parent(dir)
}

fn check_parent(path: &Path) -> Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!(
            "{}: output folder {} does not exist",
            path.display(),
            parent.display()
        );
    }
    Ok(())
}

/// Write bytes through a temporary name renamed into place.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_file_name(format!(
        "{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let result = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path));
    if let Err(error) = result {
        let _ = std::fs::remove_file(&tmp);
        bail!("{}: cannot write: {error}", path.display());
    }
    Ok(())
}
