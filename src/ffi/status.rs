//! `bulkhead_status`, the last-error text, and the small informational functions.

use std::cell::RefCell;
use std::ffi::c_char;

use crate::error::{Error, ErrorKind};

use super::panic::{boundary, boundary_or};
use super::strings::copy_out;

/// The result of every fallible bulkhead function. 0 is success.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum bulkhead_status {
    /// Success.
    Ok = 0,
    /// The queue-size guard dropped the event (counted in `dropped_queue_full`).
    QueueFull = 1,
    /// A NULL handle or pointer, an unknown key, endpoint or operation, a bad value.
    InvalidArgument = 2,
    /// A string that is not valid UTF-8.
    InvalidUtf8 = 3,
    /// JSON that does not parse or has the wrong shape.
    InvalidJson = 4,
    /// An event above `max_event_bytes` (counted in `dropped_too_large`).
    TooLarge = 5,
    /// The client, or the library after `bulkhead_shutdown`, is closed.
    Closed = 6,
    /// A deadline passed first (flush, close, shutdown).
    Timeout = 7,
    /// The caller's buffer is too small; the needed size was written to `*written`.
    BufferTooSmall = 8,
    /// A bug inside bulkhead was caught at the boundary; the process is unharmed.
    Panic = 9,
    /// An internal failure (for example the runtime could not start).
    Internal = 10,
    /// `bulkhead_client_flush_ex`: finished, but some events failed or were rejected (the
    /// counts are in the result).
    Incomplete = 11,
}

impl From<ErrorKind> for bulkhead_status {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::QueueFull => Self::QueueFull,
            ErrorKind::InvalidArgument => Self::InvalidArgument,
            ErrorKind::InvalidUtf8 => Self::InvalidUtf8,
            ErrorKind::InvalidJson => Self::InvalidJson,
            ErrorKind::TooLarge => Self::TooLarge,
            ErrorKind::Closed => Self::Closed,
            ErrorKind::Timeout => Self::Timeout,
            ErrorKind::Internal => Self::Internal,
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Never panics: during thread-local teardown, or while the text is being read, the new
/// text is dropped rather than unwinding out of an error path.
pub(crate) fn set_last_error(text: &str) {
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut e) = e.try_borrow_mut() {
            e.clear();
            e.push_str(text);
        }
    });
}

/// Records `error` as this thread's last error and returns its status.
pub(crate) fn fail(error: &Error) -> bulkhead_status {
    set_last_error(error.message());
    error.kind().into()
}

/// Maps a core result onto a status, recording the error text.
pub(crate) fn status_of(result: crate::Result<()>) -> bulkhead_status {
    match result {
        Ok(()) => bulkhead_status::Ok,
        Err(e) => fail(&e),
    }
}

/// Copies the text of the last failing call on this thread into `buf` (NUL-terminated,
/// truncated to fit) and writes its length without the NUL to `*written` (may be NULL).
/// An empty string if no call has failed on this thread. With `buf` NULL and `len` 0 it
/// returns `BULKHEAD_STATUS_BUFFER_TOO_SMALL` (OK if there is no text) and writes the size
/// needed, NUL included, to `*written`. `buf` NULL with `len` > 0 is
/// `BULKHEAD_STATUS_INVALID_ARGUMENT` and leaves the stored text as it was.
///
/// # Safety
/// `buf` must be NULL or writable for `len` bytes; `written` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn bulkhead_last_error(
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> bulkhead_status {
    boundary(|| {
        if buf.is_null() && len != 0 {
            // Refused without recording it: that would replace the text asked for.
            return bulkhead_status::InvalidArgument;
        }
        let copied = LAST_ERROR.try_with(|e| {
            e.try_borrow().ok().map(|text| {
                // SAFETY: the caller promises `buf` has room for `len` bytes and `written`
                // is NULL or writable, as documented.
                unsafe { copy_out(text.as_bytes(), buf, len, written, true) }
            })
        });
        match copied {
            Ok(Some(status)) => status,
            // Thread-local teardown: there is no text any more.
            // SAFETY: as above.
            _ => unsafe { copy_out(b"", buf, len, written, true) },
        }
    })
}

/// A static, NUL-terminated English name for a `bulkhead_status` value ("ok",
/// "queue full: event dropped", ...); "unknown status" for any other number. Takes an
/// integer so that a value from a newer header is safe to pass. Never NULL; never free it.
#[no_mangle]
pub extern "C" fn bulkhead_status_str(status: u32) -> *const c_char {
    boundary_or(c"unknown status".as_ptr(), || {
        let text: &'static std::ffi::CStr = match status {
            0 => c"ok",
            1 => c"queue full: event dropped",
            2 => c"invalid argument",
            3 => c"invalid UTF-8",
            4 => c"invalid JSON",
            5 => c"event too large",
            6 => c"closed",
            7 => c"timed out",
            8 => c"buffer too small",
            9 => c"internal panic",
            10 => c"internal error",
            11 => c"finished, but some events failed or were rejected",
            _ => c"unknown status",
        };
        text.as_ptr()
    })
}

/// The library version as a static NUL-terminated string ("0.1.0"). Never free it.
#[no_mangle]
pub extern "C" fn bulkhead_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
