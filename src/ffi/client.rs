//! `bulkhead_client` and everything called on it, plus `bulkhead_shutdown`.

use std::ffi::c_char;
use std::time::Duration;

use crate::client::Client;
use crate::config::Config;
use crate::stats::{errors_to_json, notes_to_json};

use super::panic::{boundary, boundary_or};
use super::status::{bulkhead_status, fail, set_last_error, status_of};
use super::strings::{borrow_opt_str, borrow_str, copy_text_out, peek_bytes, BadString};

/// An opaque client: a queue, its guard, a pool of buffered consumers and their counters.
/// Made by `bulkhead_client_new`, released by `bulkhead_client_free`. Thread-safe.
pub struct bulkhead_client {
    client: Client,
}

/// A snapshot of a client's counters and gauges. Invariant when quiescent:
/// `enqueued + replayed == sent + rejected + failed + spooled + queue_len + spool_pending`
/// (the spool's counters stay 0 without `spool_dir`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct bulkhead_stats {
    /// Events accepted into the queue.
    pub enqueued: u64,
    /// Refused because the queue-size guard was full (never enqueued).
    pub dropped_queue_full: u64,
    /// Refused for exceeding `max_event_bytes` (never enqueued).
    pub dropped_too_large: u64,
    /// Refused as invalid: bad JSON, bad arguments (never enqueued).
    pub dropped_invalid: u64,
    /// Still pending when a close/shutdown deadline passed; included in `failed`.
    pub dropped_shutdown: u64,
    /// Accepted by the server.
    pub sent: u64,
    /// Refused by the server (400/401/403, `status: 0`, `/import` failed records); not retried.
    pub rejected: u64,
    /// Given up after retries, the retry budget, or at shutdown.
    pub failed: u64,
    /// Retry attempts made.
    pub retries: u64,
    /// HTTP requests made.
    pub requests: u64,
    /// Request body bytes sent (after compression).
    pub bytes_sent: u64,
    /// Events accepted and not yet resolved (queued, batching or in flight).
    pub queue_len: u64,
    /// Bytes of JSON held by those events.
    pub queue_bytes: u64,
    /// Events being delivered: in an HTTP request or waiting to retry one.
    pub in_flight: u64,
    /// 0 closed, 1 open, 2 half-open.
    pub circuit_state: u32,
    /// Delivery errors dropped from the ring of `max_recent_errors` to make room for newer
    /// ones (appended: fields are only ever added at the end).
    pub errors_overwritten: u64,
    /// Events written to the disk spool (`spool_dir`): overflow, failed deliveries, and
    /// events pending at close.
    pub spooled: u64,
    /// Events read back from the spool into delivery.
    pub replayed: u64,
    /// Spooled events removed unsent for being older than `spool_max_age_ms`.
    pub spool_expired: u64,
    /// Corrupt or torn records found in spool segments (skipped).
    pub spool_corrupt: u64,
    /// Events the spool could not take (`spool_max_bytes` reached, disk full); in `failed`.
    pub dropped_spool_full: u64,
    /// Events the spool could not write for another reason (unwritable directory); in
    /// `failed`.
    pub dropped_spool_error: u64,
    /// Overflow events accepted and waiting for the spool's writer (not in `queue_len`).
    pub spool_pending: u64,
    /// Bytes of the spool directory's segments (every writer's), as last seen.
    pub spool_bytes: u64,
    /// Records this client wrote or took over and has not replayed or expired yet.
    pub spool_records: u64,
}

/// What `bulkhead_client_flush_ex` found: the events that failed or were rejected since
/// the previous `bulkhead_client_flush_ex` on this client returned (each such event is
/// reported by exactly one call, whichever thread makes it).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct bulkhead_flush_result {
    /// Given up after retries, the retry budget, or at shutdown.
    pub failed: u64,
    /// Refused by the server.
    pub rejected: u64,
}

/// Borrows a string argument or returns its status from the enclosing function.
macro_rules! text {
    ($client:expr, $name:literal, $ptr:expr, $len:expr) => {
        // SAFETY: the caller guarantees `(ptr, len)` is NULL with 0, or readable, for the call.
        match unsafe { borrow_str($name, $ptr, $len) } {
            Ok(s) => s,
            Err(BadString(status)) => {
                $client.note_invalid_call();
                return status;
            }
        }
    };
}

/// As `text!`, NULL with length 0 meaning "absent".
macro_rules! opt_text {
    ($client:expr, $name:literal, $ptr:expr, $len:expr) => {
        // SAFETY: as for `text!`.
        match unsafe { borrow_opt_str($name, $ptr, $len) } {
            Ok(s) => s,
            Err(BadString(status)) => {
                $client.note_invalid_call();
                return status;
            }
        }
    };
}

/// The client behind a handle, or the status to return for NULL.
macro_rules! client {
    ($ptr:expr) => {{
        // SAFETY: a non-NULL handle came from `bulkhead_client_new` and has not been freed
        // (the documented contract); `Client` is internally synchronised.
        match unsafe { $ptr.as_ref() } {
            Some(handle) => &handle.client,
            None => {
                set_last_error("client is NULL");
                return bulkhead_status::InvalidArgument;
            }
        }
    }};
}

/// Passed as `timeout_ms` to `bulkhead_client_close` or `bulkhead_shutdown`: use the
/// configured `shutdown_timeout_ms` (for shutdown, the largest among open clients; 2000
/// when there are none).
pub const BULKHEAD_TIMEOUT_CONFIGURED: u32 = u32::MAX;

fn ms(timeout_ms: u32) -> Duration {
    Duration::from_millis(u64::from(timeout_ms))
}

/// Creates a client from a JSON configuration object (see the README for keys; `token`
/// is required, `BULKHEAD_<KEY>` environment variables give defaults). Starts the global
/// runtime on first use; does no network I/O. On success writes a new handle to
/// `*client_out`, which the caller must release with `bulkhead_client_free`.
///
/// # Safety
/// `(config_json, config_len)` must be NULL with 0, or `config_len` readable bytes;
/// `client_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn bulkhead_client_new(
    config_json: *const c_char,
    config_len: usize,
    client_out: *mut *mut bulkhead_client,
) -> bulkhead_status {
    boundary(|| {
        if client_out.is_null() {
            set_last_error("client_out is NULL");
            return bulkhead_status::InvalidArgument;
        }
        // SAFETY: caller contract for `(config_json, config_len)`.
        let json = match unsafe { borrow_str("config_json", config_json, config_len) } {
            Ok(s) => s,
            Err(BadString(status)) => return status,
        };
        let client = match Config::from_json(json).and_then(Client::new) {
            Ok(c) => c,
            Err(e) => return fail(&e),
        };
        let handle = Box::into_raw(Box::new(bulkhead_client { client }));
        // SAFETY: `client_out` is non-null and writable per the contract.
        unsafe { *client_out = handle };
        bulkhead_status::Ok
    })
}

/// Releases a client without waiting. If it is still open it is closed in the background:
/// its queued events get up to `shutdown_timeout_ms` to be delivered (and
/// `bulkhead_shutdown` waits for them too), then what is left is counted as failed. Call
/// `bulkhead_client_close` first to wait for delivery or read final stats. NULL is a no-op.
/// The handle must not be used by any thread after this call.
///
/// # Safety
/// `client` must be NULL or a handle from `bulkhead_client_new` not freed before; no thread
/// may use it during or after this call.
#[no_mangle]
pub unsafe extern "C" fn bulkhead_client_free(client: *mut bulkhead_client) {
    boundary_or((), || {
        if client.is_null() {
            return;
        }
        // SAFETY: a non-NULL handle came from `bulkhead_client_new` and is freed only here,
        // once, per the contract.
        let handle = unsafe { Box::from_raw(client) };
        handle.client.close_in_background();
        drop(handle);
    })
}

/// Queues an event for `/track`. `distinct_id` may be empty; `properties_json` is a JSON
/// object or NULL/0. Adds `token`, `distinct_id`, `time` (ms), `$insert_id`, `mp_lib` and
/// `$lib_version`; a caller's `time`, `$insert_id`, `distinct_id` (and any other key
/// but `token`) win. Never blocks: `BULKHEAD_STATUS_QUEUE_FULL` when the guard dropped it
/// (asked first, before the text is read, so that a dropped call stays cheap).
///
/// # Safety
/// `client` must be NULL or a live handle from `bulkhead_client_new` (not yet freed). Each
/// `(ptr, len)` string must be NULL with length 0, or point to `len` readable bytes for the
/// duration of the call.
#[no_mangle]
pub unsafe extern "C" fn bulkhead_track(
    client: *const bulkhead_client,
    distinct_id: *const c_char,
    distinct_id_len: usize,
    event: *const c_char,
    event_len: usize,
    properties_json: *const c_char,
    properties_len: usize,
) -> bulkhead_status {
    boundary(|| {
        let c = client!(client);
        // A full guard refuses before the text is read: a dropped call stays cheap.
        if let Err(e) = c.refuse_if_full(distinct_id_len, event_len) {
            return status_of(Err(e));
        }
        let distinct_id = text!(c, "distinct_id", distinct_id, distinct_id_len);
        let event = text!(c, "event", event, event_len);
        let properties = opt_text!(c, "properties_json", properties_json, properties_len);
        status_of(c.track(distinct_id, event, properties))
    })
}

/// Queues an event for `/import` with its time in milliseconds since the epoch. Sent with
/// `strict=1` and the client's import credentials (service account, else `api_secret`,
/// else the token).
///
/// # Safety
/// `client` must be NULL or a live handle from `bulkhead_client_new` (not yet freed). Each
/// `(ptr, len)` string must be NULL with length 0, or point to `len` readable bytes for the
/// duration of the call.
#[no_mangle]
pub unsafe extern "C" fn bulkhead_import(
    client: *const bulkhead_client,
    distinct_id: *const c_char,
    distinct_id_len: usize,
    event: *const c_char,
    event_len: usize,
    time_ms: i64,
    properties_json: *const c_char,
    properties_len: usize,
) -> bulkhead_status {
    boundary(|| {
        let c = client!(client);
        // A full guard refuses before the text is read: a dropped call stays cheap.
        if let Err(e) = c.refuse_if_full(distinct_id_len, event_len) {
            return status_of(Err(e));
        }
        let distinct_id = text!(c, "distinct_id", distinct_id, distinct_id_len);
        let event = text!(c, "event", event, event_len);
        let properties = opt_text!(c, "properties_json", properties_json, properties_len);
        status_of(c.import(distinct_id, event, time_ms, properties))
    })
}

/// Queues a user profile update for `/engage`. `operation` is one of `$set $set_once $add
/// $append $union $remove $unset $delete`; `value_json` is a JSON object (an array of names
/// for `$unset`; ignored, may be NULL, for `$delete`).
///
/// # Safety
/// `client` must be NULL or a live handle from `bulkhead_client_new` (not yet freed). Each
/// `(ptr, len)` string must be NULL with length 0, or point to `len` readable bytes for the
/// duration of the call.
#[no_mangle]
pub unsafe extern "C" fn bulkhead_people(
    client: *const bulkhead_client,
    distinct_id: *const c_char,
    distinct_id_len: usize,
    operation: *const c_char,
    operation_len: usize,
    value_json: *const c_char,
    value_len: usize,
) -> bulkhead_status {
    boundary(|| {
        let c = client!(client);
        let distinct_id = text!(c, "distinct_id", distinct_id, distinct_id_len);
        let operation = text!(c, "operation", operation, operation_len);
        let value = opt_text!(c, "value_json", value_json, value_len);
        status_of(c.people(distinct_id, operation, value))
    })
}

/// Queues a group profile update for `/groups`; operations as for `bulkhead_people`.
///
/// # Safety
/// `client` must be NULL or a live handle from `bulkhead_client_new` (not yet freed). Each
/// `(ptr, len)` string must be NULL with length 0, or point to `len` readable bytes for the
/// duration of the call.
#[no_mangle]
pub unsafe extern "C" fn bulkhead_group(
    client: *const bulkhead_client,
    group_key: *const c_char,
    group_key_len: usize,
    group_id: *const c_char,
    group_id_len: usize,
    operation: *const c_char,
    operation_len: usize,
    value_json: *const c_char,
    value_len: usize,
) -> bulkhead_status {
    boundary(|| {
        let c = client!(client);
        let group_key = text!(c, "group_key", group_key, group_key_len);
        let group_id = text!(c, "group_id", group_id, group_id_len);
        let operation = text!(c, "operation", operation, operation_len);
        let value = opt_text!(c, "value_json", value_json, value_len);
        status_of(c.group(group_key, group_id, operation, value))
    })
}

/// Queues messages already built by another SDK. `endpoint` is `events`, `people`, `groups`
/// or `imports` (mixpanel-ruby's `event`, `profile_update`, `group_update`, `import` too).
/// `message_json` is one message, an array of them, or a mixpanel-ruby envelope
/// `{"data": ..., "api_key": ...}`. Events without `$insert_id` get one. An array is
/// queued whole or not at all. `BULKHEAD_STATUS_QUEUE_FULL` when the guard dropped it;
/// one message is refused before its text is read, so that a dropped call stays cheap.
///
/// # Safety
/// `client` must be NULL or a live handle from `bulkhead_client_new` (not yet freed). Each
/// `(ptr, len)` string must be NULL with length 0, or point to `len` readable bytes for the
/// duration of the call.
#[no_mangle]
pub unsafe extern "C" fn bulkhead_send(
    client: *const bulkhead_client,
    endpoint: *const c_char,
    endpoint_len: usize,
    message_json: *const c_char,
    message_len: usize,
) -> bulkhead_status {
    boundary(|| {
        let c = client!(client);
        // SAFETY: the caller guarantees `(ptr, len)` is NULL with 0, or readable, for the call.
        let bytes = unsafe { peek_bytes(message_json, message_len) };
        // A full guard refuses one message before its text is read: a dropped call stays cheap.
        if let Err(e) = c.refuse_send_if_full(bytes) {
            return status_of(Err(e));
        }
        let endpoint = text!(c, "endpoint", endpoint, endpoint_len);
        let message = text!(c, "message_json", message_json, message_len);
        status_of(c.send(endpoint, message, None, None))
    })
}

/// As `bulkhead_send`, with `/import` credentials for these messages (mixpanel-python's
/// `api_key`/`api_secret`; the secret, else the key, is the Basic username). Each may be
/// NULL/0. Ignored for endpoints other than imports.
///
/// # Safety
/// `client` must be NULL or a live handle from `bulkhead_client_new` (not yet freed). Each
/// `(ptr, len)` string must be NULL with length 0, or point to `len` readable bytes for the
/// duration of the call.
#[no_mangle]
pub unsafe extern "C" fn bulkhead_send_with_credentials(
    client: *const bulkhead_client,
    endpoint: *const c_char,
    endpoint_len: usize,
    message_json: *const c_char,
    message_len: usize,
    api_key: *const c_char,
    api_key_len: usize,
    api_secret: *const c_char,
    api_secret_len: usize,
) -> bulkhead_status {
    boundary(|| {
        let c = client!(client);
        // SAFETY: as in `bulkhead_send`.
        let bytes = unsafe { peek_bytes(message_json, message_len) };
        if let Err(e) = c.refuse_send_if_full(bytes) {
            return status_of(Err(e));
        }
        let endpoint = text!(c, "endpoint", endpoint, endpoint_len);
        let message = text!(c, "message_json", message_json, message_len);
        let key = opt_text!(c, "api_key", api_key, api_key_len);
        let secret = opt_text!(c, "api_secret", api_secret, api_secret_len);
        status_of(c.send(endpoint, message, key, secret))
    })
}

/// Sends everything queued so far and waits for it to be resolved, at most `timeout_ms`.
/// `BULKHEAD_STATUS_TIMEOUT` if the deadline passed first (events stay queued).
///
/// # Safety
/// `client` must be NULL or a live handle from `bulkhead_client_new` (not yet freed).
#[no_mangle]
pub unsafe extern "C" fn bulkhead_client_flush(
    client: *const bulkhead_client,
    timeout_ms: u32,
) -> bulkhead_status {
    boundary(|| status_of(client!(client).flush(ms(timeout_ms))))
}

/// Flushes for at most `timeout_ms` (`BULKHEAD_TIMEOUT_CONFIGURED`: the client's
/// `shutdown_timeout_ms`), then stops the client; events still pending are counted as
/// failed (`dropped_shutdown`) and `BULKHEAD_STATUS_TIMEOUT` is returned. Idempotent. Later
/// calls that queue return `BULKHEAD_STATUS_CLOSED`. The handle must still be freed.
///
/// # Safety
/// `client` must be NULL or a live handle from `bulkhead_client_new` (not yet freed).
#[no_mangle]
pub unsafe extern "C" fn bulkhead_client_close(
    client: *const bulkhead_client,
    timeout_ms: u32,
) -> bulkhead_status {
    boundary(|| {
        let c = client!(client);
        let timeout = match timeout_ms {
            BULKHEAD_TIMEOUT_CONFIGURED => c.config().shutdown_timeout,
            other => ms(other),
        };
        status_of(c.close(timeout))
    })
}

/// Closes every client and stops the global runtime, all within `timeout_ms`
/// (`BULKHEAD_TIMEOUT_CONFIGURED`: the largest `shutdown_timeout_ms` of the open clients,
/// 2000 if none). Call it once before the process exits (the Ruby and Python bindings do so
/// at exit). Handles must still be freed. A client made afterwards starts a new runtime.
#[no_mangle]
pub extern "C" fn bulkhead_shutdown(timeout_ms: u32) -> bulkhead_status {
    boundary(|| {
        let timeout = match timeout_ms {
            BULKHEAD_TIMEOUT_CONFIGURED => crate::client::configured_shutdown_timeout(),
            other => ms(other),
        };
        status_of(crate::client::shutdown(timeout))
    })
}

/// Writes a snapshot of the client's counters to `*stats_out`.
///
/// # Safety
/// `client` must be NULL or a live handle from `bulkhead_client_new` (not yet freed).
/// `stats_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn bulkhead_client_stats(
    client: *const bulkhead_client,
    stats_out: *mut bulkhead_stats,
) -> bulkhead_status {
    boundary(|| {
        let c = client!(client);
        if stats_out.is_null() {
            set_last_error("stats_out is NULL");
            return bulkhead_status::InvalidArgument;
        }
        let s = c.stats();
        let out = bulkhead_stats {
            enqueued: s.enqueued,
            dropped_queue_full: s.dropped_queue_full,
            dropped_too_large: s.dropped_too_large,
            dropped_invalid: s.dropped_invalid,
            dropped_shutdown: s.dropped_shutdown,
            sent: s.sent,
            rejected: s.rejected,
            failed: s.failed,
            retries: s.retries,
            requests: s.requests,
            bytes_sent: s.bytes_sent,
            queue_len: s.queue_len,
            queue_bytes: s.queue_bytes,
            in_flight: s.in_flight,
            circuit_state: s.circuit_state as u32,
            errors_overwritten: s.errors_overwritten,
            spooled: s.spooled,
            replayed: s.replayed,
            spool_expired: s.spool_expired,
            spool_corrupt: s.spool_corrupt,
            dropped_spool_full: s.dropped_spool_full,
            dropped_spool_error: s.dropped_spool_error,
            spool_pending: s.spool_pending,
            spool_bytes: s.spool_bytes,
            spool_records: s.spool_records,
        };
        // SAFETY: non-null and writable per the contract.
        unsafe { *stats_out = out };
        bulkhead_status::Ok
    })
}

/// Events accepted and not yet resolved; 0 for a NULL client.
///
/// # Safety
/// `client` must be NULL or a live handle from `bulkhead_client_new` (not yet freed).
#[no_mangle]
pub unsafe extern "C" fn bulkhead_client_queue_len(client: *const bulkhead_client) -> u64 {
    boundary_or(0, || {
        // SAFETY: as in `client!`.
        unsafe { client.as_ref() }.map_or(0, |h| h.client.queue_len())
    })
}

/// Copies the recent delivery errors with `seq > after_seq` into `buf` as a NUL-terminated
/// JSON array of `{"seq","time_ms","endpoint","http_status","events","outcome","message"}`
/// (oldest first; at most `max_recent_errors` are kept; messages never hold secrets).
/// `*written` gets the length without the NUL. If `buf` is too small (or NULL with `len`
/// 0), returns `BULKHEAD_STATUS_BUFFER_TOO_SMALL` with the size needed, NUL included, in
/// `*written`.
///
/// # Safety
/// `client` must be NULL or a live handle from `bulkhead_client_new` (not yet freed). `buf`
/// must be NULL or writable for `len` bytes; `written` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn bulkhead_client_errors(
    client: *const bulkhead_client,
    after_seq: u64,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> bulkhead_status {
    boundary(|| {
        let c = client!(client);
        let json = errors_to_json(&c.errors(after_seq));
        // SAFETY: the caller promises `buf` holds `len` writable bytes (or is NULL with 0)
        // and `written` is NULL or writable.
        unsafe { copy_text_out(&json, buf, len, written) }
    })
}

/// Copies the delivery errors not handed out before by this function into `buf`, in the
/// format of `bulkhead_client_errors`, and marks them handed out: each error is returned
/// once (among those kept, at most `max_recent_errors`). A forked child starts afresh with
/// its own errors. On `BULKHEAD_STATUS_BUFFER_TOO_SMALL` (the size needed, NUL included,
/// is in `*written`) nothing is marked: call again with a larger buffer. This is how the
/// bindings surface errors to the host.
///
/// # Safety
/// `client` must be NULL or a live handle from `bulkhead_client_new` (not yet freed).
/// `buf` must be NULL or writable for `len` bytes; `written` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn bulkhead_client_take_errors(
    client: *const bulkhead_client,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> bulkhead_status {
    boundary(|| {
        let c = client!(client);
        c.take_errors(|errors| {
            let json = errors_to_json(errors);
            // SAFETY: as for `bulkhead_client_errors`.
            let status = unsafe { copy_text_out(&json, buf, len, written) };
            (status, status == bulkhead_status::Ok)
        })
    })
}

/// As `bulkhead_client_flush`, and says how delivery went. `BULKHEAD_STATUS_OK`: every
/// event resolved since the previous `bulkhead_client_flush_ex` was delivered.
/// `BULKHEAD_STATUS_INCOMPLETE`: finished, but some events failed or were rejected since
/// then. Both write `*result_out` (may be NULL). `BULKHEAD_STATUS_TIMEOUT`: the deadline
/// passed first; nothing is written and the counts are kept for the next call.
///
/// # Safety
/// `client` must be NULL or a live handle from `bulkhead_client_new` (not yet freed).
/// `result_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn bulkhead_client_flush_ex(
    client: *const bulkhead_client,
    timeout_ms: u32,
    result_out: *mut bulkhead_flush_result,
) -> bulkhead_status {
    boundary(|| {
        let c = client!(client);
        let outcome = match c.flush_outcome(ms(timeout_ms)) {
            Ok(o) => o,
            Err(e) => return fail(&e),
        };
        if !result_out.is_null() {
            // SAFETY: non-null and writable per the contract.
            unsafe {
                *result_out = bulkhead_flush_result {
                    failed: outcome.failed,
                    rejected: outcome.rejected,
                }
            };
        }
        if outcome.failed + outcome.rejected == 0 {
            bulkhead_status::Ok
        } else {
            set_last_error(&format!(
                "flush finished: {} events failed and {} were rejected since the previous flush",
                outcome.failed, outcome.rejected
            ));
            bulkhead_status::Incomplete
        }
    })
}

/// The address of a counter that is non-zero while log lines (`bulkhead_client_take_log`)
/// or delivery errors (`bulkhead_client_take_errors`) wait to be taken. Bindings read it
/// (an aligned 64-bit load) on every call and take only when it is non-zero, which keeps
/// their hot path free of extra calls. Valid until the client is freed; NULL for a NULL
/// client.
///
/// # Safety
/// `client` must be NULL or a live handle from `bulkhead_client_new` (not yet freed).
#[no_mangle]
pub unsafe extern "C" fn bulkhead_client_log_hint(client: *const bulkhead_client) -> *const u64 {
    boundary_or(std::ptr::null(), || {
        // SAFETY: as in `client!`.
        unsafe { client.as_ref() }.map_or(std::ptr::null(), |h| h.client.log_hint().as_ptr())
    })
}

/// Copies the log lines for the host's logger not taken before into `buf` as a
/// NUL-terminated JSON array of `{"level":"warn","message":"..."}` (oldest first), and
/// marks them taken; resets the `bulkhead_client_log_hint` counter. The lines: the first
/// time the queue-size guard drops an event (and at each later take, how many more were
/// dropped since), events abandoned by a close or shutdown deadline, delivery errors
/// overwritten before they were read. Delivery errors themselves come from
/// `bulkhead_client_take_errors`. Buffer protocol as for `bulkhead_client_take_errors`.
///
/// # Safety
/// `client` must be NULL or a live handle from `bulkhead_client_new` (not yet freed).
/// `buf` must be NULL or writable for `len` bytes; `written` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn bulkhead_client_take_log(
    client: *const bulkhead_client,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> bulkhead_status {
    boundary(|| {
        let c = client!(client);
        c.take_notes(|notes| {
            let json = notes_to_json(notes);
            // SAFETY: as for `bulkhead_client_errors`.
            let status = unsafe { copy_text_out(&json, buf, len, written) };
            (status, status == bulkhead_status::Ok)
        })
    })
}

/// In `test_mode`, copies the events kept so far into `buf` as a NUL-terminated JSON array
/// of `{"endpoint":"events"|"people"|"groups"|"imports","data":{...}}`, oldest first,
/// `data` being the message exactly as it would have been sent. Buffer protocol as for
/// `bulkhead_client_errors`. `BULKHEAD_STATUS_INVALID_ARGUMENT` if the client is not in
/// `test_mode`.
///
/// # Safety
/// `client` must be NULL or a live handle from `bulkhead_client_new` (not yet freed).
/// `buf` must be NULL or writable for `len` bytes; `written` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn bulkhead_client_test_events(
    client: *const bulkhead_client,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> bulkhead_status {
    boundary(|| {
        let c = client!(client);
        let Some(json) = c.test_events_json() else {
            set_last_error("the client is not in test_mode");
            return bulkhead_status::InvalidArgument;
        };
        // SAFETY: as for `bulkhead_client_errors`.
        unsafe { copy_text_out(&json, buf, len, written) }
    })
}

/// In `test_mode`, forgets the events kept so far. `BULKHEAD_STATUS_INVALID_ARGUMENT` if
/// the client is not in `test_mode`.
///
/// # Safety
/// `client` must be NULL or a live handle from `bulkhead_client_new` (not yet freed).
#[no_mangle]
pub unsafe extern "C" fn bulkhead_client_test_clear(
    client: *const bulkhead_client,
) -> bulkhead_status {
    boundary(|| {
        if client!(client).clear_test_events() {
            bulkhead_status::Ok
        } else {
            set_last_error("the client is not in test_mode");
            bulkhead_status::InvalidArgument
        }
    })
}

/// Copies the client's counters and gauges into `buf` in the Prometheus text format
/// (0.0.4): `# HELP`/`# TYPE` lines, counters as `bulkhead_<name>_total`, gauges
/// (`bulkhead_queue_len`, `bulkhead_queue_bytes`, `bulkhead_in_flight`,
/// `bulkhead_circuit_state`), labelled `client="<name>"` when the `name` key is set.
/// NUL-terminated; buffer protocol as for `bulkhead_client_errors`.
///
/// # Safety
/// `client` must be NULL or a live handle from `bulkhead_client_new` (not yet freed).
/// `buf` must be NULL or writable for `len` bytes; `written` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn bulkhead_client_metrics(
    client: *const bulkhead_client,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> bulkhead_status {
    boundary(|| {
        let c = client!(client);
        let text = c.metrics_text();
        // SAFETY: as for `bulkhead_client_errors`.
        unsafe { copy_text_out(&text, buf, len, written) }
    })
}
