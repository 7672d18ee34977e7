//! ENVI header text: parsing and every typed accessor end in a value or an error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingest::fuzzing::envi_header(data));
