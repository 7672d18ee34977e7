//! Wavelength files (`--wavelengths FILE`): the first byte is the cube's band count.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingest::fuzzing::wavelength_file(data));
