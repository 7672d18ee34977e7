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

/// Build a folder under a temporary name beside `dir` with `fill`, then rename it into place
/// (replacing an existing `dir` only with `overwrite`). A failure leaves nothing behind.
pub fn write_folder_atomically(
    dir: &Path,
    overwrite: bool,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    use anyhow::Context;
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = std::fs::create_dir(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))
        .and_then(|_| fill(&tmp));
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dir.exists() {
        if !overwrite {
            let _ = std::fs::remove_dir_all(&tmp);
            bail!("{}: folder appeared meanwhile; not replaced", dir.display());
        }
        let old = dir.with_file_name(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(dir, &old)
            .with_context(|| format!("moving the old {} aside", dir.display()))?;
        std::fs::rename(&tmp, dir).with_context(|| format!("renaming into {}", dir.display()))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, dir).with_context(|| format!("renaming into {}", dir.display()))?;
    }
    Ok(())
}
