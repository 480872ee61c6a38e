//! bulkhead: isolates an application from its analytics service.
//!
//! `track()` never blocks, memory never grows past its cap, exit never hangs, and every
//! event is accounted for (delivered, rejected, failed, dropped by the guard, or pending).
//! See `docs/architecture.md` and the README for the architecture; [`Client`] is the entry point.

// A panic is caught at the FFI boundary, but none should happen: no unwrap/expect/panic.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod barrier;
mod circuit;
mod client;
mod config;
mod consumer;
mod dispatcher;
mod error;
pub mod ffi;
mod fields;
/// Internal functions for the fuzz targets (`fuzz/`). Not API: no stability promise.
#[doc(hidden)]
pub mod fuzzing;
mod guard;
mod json;
mod log;
mod message;
mod metrics;
mod queue;
mod redact;
mod retry;
mod runtime;
mod spool;
mod stats;
mod sync;
mod test_mode;
mod transport;

pub use circuit::CircuitState;
pub use client::{configured_shutdown_timeout, shutdown, Client};
pub use config::{Config, ImportCredentials, Region, KEYS as CONFIG_KEYS};
pub use error::{Error, ErrorKind, Result};
pub use log::Level as LogLevel;
pub use message::{valid_insert_id, Endpoint, LIB_NAME, LIB_VERSION};
pub use stats::{errors_to_json, notes_to_json, DeliveryError, FlushOutcome, Note, Stats};
