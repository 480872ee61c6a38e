//! The panic boundary: no unwind may cross into C.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::status::{bulkhead_status, set_last_error};

/// Runs `body`; a panic becomes `BULKHEAD_STATUS_PANIC` with its message as last error.
pub fn boundary(body: impl FnOnce() -> bulkhead_status) -> bulkhead_status {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        set_last_error(&format!("internal panic: {}", panic_message(&payload)));
        bulkhead_status::Panic
    })
}

/// For functions that return a value rather than a status: a panic yields `fallback`.
pub fn boundary_or<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        set_last_error(&format!("internal panic: {}", panic_message(&payload)));
        fallback
    })
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "unknown"
    }
}
