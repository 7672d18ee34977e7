//! `pipeline-torch` is the command line with libtorch (that `pipeline` links none, and hands
//! training over to this binary, is tested end to end in `tests/e2e`).

use std::path::Path;
use std::process::Command;

/// Shared libraries a binary names in its dynamic section (`readelf -d`).
fn needed(binary: &Path) -> Vec<String> {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(binary)
        .output()
        .expect("readelf (binutils) runs");
    assert!(out.status.success(), "readelf -d {}", binary.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next().map(str::to_string))
        .collect()
}

#[test]
fn links_libtorch() {
    let libs = needed(Path::new(env!("CARGO_BIN_EXE_pipeline-torch")));
    assert!(libs.iter().any(|l| l.starts_with("libtorch_cpu")), "{libs:?}");
}

#[test]
fn runs_the_same_command_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline-torch"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pipeline 0.1.0");
}
