//! Finding an ENVI header and its data file from either path.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The files of one raster on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RasterFiles {
    /// The file GDAL opens (ENVI data file, GeoTIFF, ...).
    pub data: PathBuf,
    /// The ENVI header, when there is one.
    pub header: Option<PathBuf>,
}

const DATA_EXTENSIONS: [&str; 6] = ["img", "dat", "raw", "bil", "bsq", "bip"];

fn is_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Resolve what the user named (a header or a data file) into the raster's files.
///
/// - `x.hdr`: data file `x`, or `x.img`/`x.dat`/`x.raw`/`x.bil`/`x.bsq`/`x.bip`; exactly one must exist.
/// - `x.tif`/`x.tiff`: the GeoTIFF; an ENVI-style `x.hdr` beside it is noted as a sidecar.
/// - any other file: its header is `x.hdr` (`x` without extension) or `x.ext.hdr`, if present.
pub fn locate(path: &Path) -> Result<RasterFiles> {
    check_file(path)?;
    if is_extension(path, &["hdr"]) {
        let stem = path.with_extension("");
        let mut candidates = vec![stem.clone()];
        candidates.extend(DATA_EXTENSIONS.iter().map(|e| stem.with_extension(e)));
        let found: Vec<PathBuf> = candidates.into_iter().filter(|p| p.is_file()).collect();
        return match found.as_slice() {
            [] => Err(Error::Locate {
                path: path.into(),
                message: format!(
                    "header has no data file beside it (looked for {} with no extension or .{})",
                    stem.display(),
                    DATA_EXTENSIONS.join("/.")
                ),
            }),
            [data] => Ok(RasterFiles {
                data: data.clone(),
                header: Some(path.into()),
            }),
            several => Err(Error::Locate {
                path: path.into(),
                message: format!(
                    "several data files match this header ({}); name the data file instead",
                    several
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        };
    }
    let with_hdr = PathBuf::from(format!("{}.hdr", path.display()));
    let replaced = path.with_extension("hdr");
    let header = [replaced, with_hdr].into_iter().find(|p| p.is_file());
    Ok(RasterFiles {
        data: path.into(),
        header,
    })
}

/// ELOOP on Linux and the BSDs' ELOOP (62 on macOS): too many levels of symbolic links.
fn is_symlink_loop(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(40) if cfg!(target_os = "linux"))
        || matches!(error.raw_os_error(), Some(62) if cfg!(target_os = "macos"))
}

/// `path` is a file we can open, or an error that says in words what it is instead: missing, a
/// folder, a symbolic link loop, a link to nothing, not readable.
pub fn check_file(path: &Path) -> Result<()> {
    let located = |message: String| Error::Locate {
        path: path.into(),
        message,
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(located(
            "is a directory, not a cube: name its header (.hdr), its data file or a GeoTIFF (for a folder of cubes, use a glob in a pipeline file)".into(),
        )),
        Ok(meta) if !meta.is_file() => Err(located(
            "is not a regular file (a device, socket or pipe)".into(),
        )),
        Ok(_) => match std::fs::File::open(path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(located("permission denied: cannot open it for reading".into()))
            }
            Err(e) => Err(Error::io(path, "cannot open", e)),
        },
        Err(e) if is_symlink_loop(&e) => Err(located(
            "is a symbolic link loop (too many levels of symbolic links)".into(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match std::fs::read_link(path) {
                Ok(target) => Err(located(format!(
                    "is a symbolic link to {}, which does not exist",
                    target.display()
                ))),
                Err(_) => Err(Error::NotFound { path: path.into() }),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(located(
            "permission denied: a folder on the way cannot be searched".into(),
        )),
        Err(e) => Err(Error::io(path, "cannot open", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_to_data_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let hdr = dir.path().join("field.hdr");
        let raw = dir.path().join("field.raw");
        std::fs::write(&hdr, "ENVI\n").unwrap();
        let err = locate(&hdr).unwrap_err().to_string();
        assert!(err.contains("no data file"), "{err}");
        std::fs::write(&raw, [0u8; 4]).unwrap();
        assert_eq!(locate(&hdr).unwrap().data, raw);
        assert_eq!(locate(&raw).unwrap().header, Some(hdr.clone()));
        std::fs::write(dir.path().join("field.img"), [0u8; 4]).unwrap();
        let err = locate(&hdr).unwrap_err().to_string();
        assert!(err.contains("several data files"), "{err}");
    }

    #[test]
    fn double_extension_header() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("scan.img");
        std::fs::write(&img, [0u8; 4]).unwrap();
        std::fs::write(dir.path().join("scan.img.hdr"), "ENVI\n").unwrap();
        assert_eq!(
            locate(&img).unwrap().header,
            Some(dir.path().join("scan.img.hdr"))
        );
    }

    #[test]
    fn os_level_failures_say_what_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let looped = dir.path().join("loop.hdr");
        std::os::unix::fs::symlink(&looped, &looped).unwrap();
        let err = locate(&looped).unwrap_err().to_string();
        assert!(err.contains("symbolic link loop"), "{err}");
        let dangling = dir.path().join("gone.hdr");
        std::os::unix::fs::symlink(dir.path().join("nowhere.hdr"), &dangling).unwrap();
        let err = locate(&dangling).unwrap_err().to_string();
        assert!(err.contains("nowhere.hdr, which does not exist"), "{err}");
        for folder in ["cubes", "cubes.hdr"] {
            let sub = dir.path().join(folder);
            std::fs::create_dir(&sub).unwrap();
            let err = locate(&sub).unwrap_err().to_string();
            assert!(err.contains("is a directory"), "{err}");
        }
    }

    #[test]
    fn missing_file() {
        let err = locate(Path::new("/nonexistent/x.hdr"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent/x.hdr") && err.contains("not found"),
            "{err}"
        );
    }
}
