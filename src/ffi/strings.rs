//! Borrowing `(ptr, len)` strings from C and copying text out into C buffers.

use std::ffi::c_char;

use super::status::{bulkhead_status, set_last_error};

/// A string argument that could not be borrowed.
pub struct BadString(pub bulkhead_status);

/// The `len` bytes at `ptr`, not validated; empty for NULL or an impossible length (which
/// [`borrow_str`] then refuses).
///
/// # Safety
/// As [`borrow_str`].
pub unsafe fn peek_bytes<'a>(ptr: *const c_char, len: usize) -> &'a [u8] {
    if ptr.is_null() || len > isize::MAX as usize {
        return &[];
    }
    // SAFETY: non-null and, per the caller's contract, valid for `len` bytes.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }
}

/// Borrows `len` bytes at `ptr` as UTF-8. NULL is allowed only with `len == 0` (→ "").
///
/// # Safety
/// `ptr` must be NULL or valid for reads of `len` bytes for the lifetime `'a`.
pub unsafe fn borrow_str<'a>(
    name: &str,
    ptr: *const c_char,
    len: usize,
) -> Result<&'a str, BadString> {
    if ptr.is_null() {
        if len == 0 {
            return Ok("");
        }
        set_last_error(&format!("`{name}` is NULL but its length is {len}"));
        return Err(BadString(bulkhead_status::InvalidArgument));
    }
    if len > isize::MAX as usize {
        set_last_error(&format!("`{name}` length is too large"));
        return Err(BadString(bulkhead_status::InvalidArgument));
    }
    // SAFETY: non-null and, per the caller's contract, valid for `len` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    std::str::from_utf8(bytes).map_err(|e| {
        set_last_error(&format!(
            "`{name}` is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ));
        BadString(bulkhead_status::InvalidUtf8)
    })
}

/// As [`borrow_str`], but NULL (with len 0) means "absent".
///
/// # Safety
/// As [`borrow_str`].
pub unsafe fn borrow_opt_str<'a>(
    name: &str,
    ptr: *const c_char,
    len: usize,
) -> Result<Option<&'a str>, BadString> {
    if ptr.is_null() && len == 0 {
        return Ok(None);
    }
    // SAFETY: forwarded caller contract.
    unsafe { borrow_str(name, ptr, len) }.map(Some)
}

/// Copies `text` plus a NUL into `buf[..len]`. With `truncate`, cuts to fit (on a UTF-8
/// boundary) and succeeds; without, answers `BufferTooSmall` and writes the needed size
/// (including the NUL) to `*written`. Otherwise `*written` is the length without the NUL.
/// A NULL `buf` with a non-zero `len` is `InvalidArgument`, with nothing written.
///
/// # Safety
/// `buf` must be NULL or valid for writes of `len` bytes; `written` NULL or writable.
pub unsafe fn copy_out(
    text: &[u8],
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
    truncate: bool,
) -> bulkhead_status {
    let write_len = |n: usize| {
        if !written.is_null() {
            // SAFETY: `written` is non-null and writable by the caller's contract.
            unsafe { *written = n };
        }
    };
    if buf.is_null() && len != 0 {
        // Not recorded as the last error: `bulkhead_last_error` must not replace the text
        // it is asked for, so callers record it themselves.
        return bulkhead_status::InvalidArgument;
    }
    if buf.is_null() || len == 0 {
        write_len(text.len() + 1);
        return if truncate && text.is_empty() {
            bulkhead_status::Ok
        } else {
            bulkhead_status::BufferTooSmall
        };
    }
    let mut n = text.len();
    if n + 1 > len {
        if !truncate {
            write_len(text.len() + 1);
            return bulkhead_status::BufferTooSmall;
        }
        n = len - 1;
        while n > 0 && (text[n] & 0xC0) == 0x80 {
            n -= 1;
        }
    }
    // SAFETY: `buf` is valid for `len >= n + 1` bytes; source and destination are distinct.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
    write_len(n);
    bulkhead_status::Ok
}

/// [`copy_out`] of a whole text (the `BUFFER_TOO_SMALL` protocol) for the functions that
/// hand out JSON or metrics: a NULL `buf` with a non-zero `len` is also recorded as this
/// thread's last error.
///
/// # Safety
/// As [`copy_out`].
pub unsafe fn copy_text_out(
    text: &str,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> bulkhead_status {
    // SAFETY: forwarded caller contract.
    let status = unsafe { copy_out(text.as_bytes(), buf, len, written, false) };
    if status == bulkhead_status::InvalidArgument {
        set_last_error("`buf` is NULL but its length is not 0");
    }
    status
}
