//! Staging folders: each cube is written out of sight first, then moved into the dataset.

use std::path::{Path, PathBuf};

use super::file::sanitise;

/// The staging folder of this process for one cube: hidden (`.staging`), so dataset readers and
/// globs never see half-written files.
pub(super) fn staging_dir(out: &Path, key: &str) -> PathBuf {
    out.join(".staging")
        .join(format!("{key}.{}.{}", hostname(), std::process::id()))
}

/// This machine's name, without dots (they separate the parts of staging folder names).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| sanitise(h.trim()).replace('.', "_"))
        .unwrap_or_else(|_| "host".into())
}

/// Remove staging folders left by killed runs on this host (their process is gone).
pub(super) fn clean_stale_staging(out: &Path) {
    let Ok(entries) = std::fs::read_dir(out.join(".staging")) else {
        return;
    };
    let host = hostname();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut parts = name.rsplitn(3, '.');
        let (Some(pid), Some(h)) = (parts.next(), parts.next()) else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if h == host && !alive {
            tracing::info!(staging = %entry.path().display(), "removing what a killed run left");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
