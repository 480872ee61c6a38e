//! Fuzz target `config`: see `fuzz/src/config.rs` for the input layout and the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulkhead_fuzz::config::run(data));
