//! `pipeline merge`: combine batch output folders (one per shard) into one dataset.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::manifest::{manifest_path, read_manifest, sha256_file, Manifest};

/// `pipeline merge`: copy every complete cube (one with a manifest whose outputs all match their
/// checksums) of each folder into `out`; a cube in two folders must have the same outputs.
pub fn merge(args: crate::cli::MergeArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let (mut copied, mut same) = (0usize, 0usize);
    for dir in &args.dirs {
        let manifests = dir.join("manifests");
        let entries = std::fs::read_dir(&manifests)
            .with_context(|| format!("{}: not a batch output (no manifests/)", dir.display()))?;
        let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        for path in names
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
        {
            let text = std::fs::read_to_string(&path)?;
            let manifest: Manifest = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a manifest", path.display()))?;
            for o in &manifest.outputs {
                let file = dir.join(&o.path);
                if sha256_file(&file)? != o.sha256 {
                    bail!(
                        "{}: checksum differs from its manifest {}",
                        file.display(),
                        path.display()
                    );
                }
            }
            if let Some(existing) = read_manifest(&args.out, &manifest.key) {
                if existing.outputs == manifest.outputs {
                    same += 1;
                    continue;
                }
                bail!(
                    "cube {} is in {} and already in {} with other outputs (settings {} vs {})",
                    manifest.key,
                    dir.display(),
                    args.out.display(),
                    &manifest.config_hash[..12],
                    &existing.config_hash[..12]
                );
            }
            // Files first through hidden temporary names, the manifest last.
            for o in &manifest.outputs {
                let to = args.out.join(&o.path);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let tmp = to.with_file_name(format!(
                    ".{}.merge-{}",
                    to.file_name().unwrap_or_default().to_string_lossy(),
                    std::process::id()
                ));
                std::fs::copy(dir.join(&o.path), &tmp)?;
                std::fs::rename(&tmp, &to)?;
            }
            let to = manifest_path(&args.out, &manifest.key);
            std::fs::create_dir_all(args.out.join("manifests"))?;
            let tmp = to.with_file_name(format!(".{}.merge-{}", manifest.key, std::process::id()));
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &to)?;
            copied += 1;
        }
    }
    println!(
        "merge        {copied} cube(s) copied, {same} already present, into {}",
        args.out.display()
    );
    Ok(())
}
