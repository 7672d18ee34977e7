//! The raw ENVI reader on a header and data file made from the input.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

/// One scratch folder per fuzzing process (in /dev/shm when there is one), reused.
fn folder() -> &'static PathBuf {
    static FOLDER: OnceLock<PathBuf> = OnceLock::new();
    FOLDER.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("ingest-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch folder for the fuzzer");
        dir
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingest::fuzzing::raw_envi(data, folder()));
