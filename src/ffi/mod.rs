//! The C ABI. Only conversion lives here: pointers and lengths in, statuses and
//! out-parameters out, every body inside `panic::boundary`. The logic is in the pure-Rust core.
//!
//! Conventions (also in the README and the header):
//! - Strings in are `(const char *ptr, size_t len)` UTF-8, borrowed for the call only.
//!   `ptr` may be NULL only when `len` is 0.
//! - Fallible functions return a `bulkhead_status`; out-parameters are written only on
//!   `BULKHEAD_STATUS_OK`.
//! - The text of the last failing call on the calling thread is available from
//!   `bulkhead_last_error`.
//! - Every function is thread-safe.

#![allow(non_camel_case_types)]
// Functions taking pointers are `unsafe` (each has a `# Safety` section); inside them every
// unsafe operation still needs its own block and `SAFETY:` comment.
#![deny(unsafe_op_in_unsafe_fn)]

mod client;
mod log;
mod panic;
mod status;
mod strings;

pub use client::*;
pub use log::*;
pub use status::*;

#[cfg(test)]
mod tests {
    /// The committed header must be exactly what build.rs generates from this source.
    #[test]
    fn committed_header_is_current() {
        let generated = include_str!(concat!(env!("OUT_DIR"), "/bulkhead.h"));
        let committed =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/bulkhead.h"))
                .unwrap_or_default();
        assert!(
            generated == committed,
            "include/bulkhead.h is out of date: run `make header` and commit it"
        );
    }
}
