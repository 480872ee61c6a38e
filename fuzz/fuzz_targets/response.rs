//! Fuzz target `response`: see `fuzz/src/response.rs` for the input layout and the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulkhead_fuzz::response::run(data));
