//! Fuzz target `json`: see `fuzz/src/json.rs` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulkhead_fuzz::json::run(data));
