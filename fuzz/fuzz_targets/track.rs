//! Fuzz target `track`: see `fuzz/src/track.rs` for the input layout and the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulkhead_fuzz::track::run(data));
