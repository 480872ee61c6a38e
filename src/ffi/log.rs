//! `bulkhead_set_log_callback`: where the library's log lines go.

use std::ffi::{c_char, c_void};

use crate::log::{set_callback, Level};

use super::panic::boundary;
use super::status::{bulkhead_status, set_last_error};

/// Log levels, for `bulkhead_set_log_callback` and the callback's `level` argument.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum bulkhead_log_level {
    /// Nothing.
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

/// A log callback: `level` is a `bulkhead_log_level`; `msg` is `len` bytes of UTF-8 (also
/// NUL-terminated), borrowed for the call only; `user_data` is what was registered.
/// Called from library threads (and from a host thread inside `bulkhead_client_close` or
/// `bulkhead_shutdown`), possibly from several at once: it must be thread-safe, return
/// quickly, and must not call back into bulkhead.
pub type bulkhead_log_callback = Option<
    unsafe extern "C" fn(level: u32, msg: *const c_char, len: usize, user_data: *mut c_void),
>;

/// Sends the library's log lines at `level` (a `bulkhead_log_level`) and more severe to
/// `callback`, for the whole process, instead of stderr. `callback` NULL restores the
/// default: each client writes lines enabled by its `log_level` key (default warn) to
/// stderr. `user_data` is passed to every call. The callback may be called from library
/// threads at any time until it is replaced, and once more by a thread that was already
/// about to call it: keep `user_data` valid for the life of the process.
/// `BULKHEAD_STATUS_INVALID_ARGUMENT` for an unknown level.
///
/// # Safety
/// `callback` must be NULL or a function safe to call from any thread, at any time, with
/// `user_data`.
#[no_mangle]
pub unsafe extern "C" fn bulkhead_set_log_callback(
    level: u32,
    callback: bulkhead_log_callback,
    user_data: *mut c_void,
) -> bulkhead_status {
    boundary(|| {
        let Some(level) = Level::from_u32(level) else {
            set_last_error("unknown log level; expected 0 (off) to 4 (debug)");
            return bulkhead_status::InvalidArgument;
        };
        set_callback(level, callback, user_data);
        bulkhead_status::Ok
    })
}
