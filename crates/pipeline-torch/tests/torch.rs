//! `pipeline-torch` is the command line with libtorch. What it links, and that `pipeline` hands
//! training over to it, are tested end to end in `tests/e2e` (`libtorch_only_where_training_needs_it`);
//! this test also makes `cargo test` build the binary there.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::process::Command;

#[test]
fn runs_the_same_command_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline-torch"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pipeline 0.1.0"
    );
}
