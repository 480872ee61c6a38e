//! Test-mode clients made and driven through the C API, as a C host would: events are
//! validated and built exactly as in production, then kept in memory instead of sent.

use std::ffi::c_char;
use std::sync::OnceLock;

use bulkhead::ffi::*;

/// The token of the clients that have one.
pub const TOKEN: &str = "fuzz-token";
/// The `api_secret` of the client with `/import` credentials of its own.
pub const API_SECRET: &str = "fuzz-api-secret";

/// The clients a target picks from, by the low bits of its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A token and the default `max_event_bytes` (1 MB).
    Plain,
    /// A token and `max_event_bytes` 300, so that the size refusal is reached.
    Small,
    /// `"token": null`: builds nothing, forwards prebuilt messages carrying a token.
    Tokenless,
    /// A token and an `api_secret`: `/import` credentials of its own.
    WithSecret,
}

impl Kind {
    pub fn pick(byte: u8) -> Self {
        [Kind::Plain, Kind::Small, Kind::Tokenless, Kind::WithSecret][usize::from(byte & 3)]
    }

    pub fn token(self) -> &'static str {
        if self == Kind::Tokenless {
            ""
        } else {
            TOKEN
        }
    }

    pub fn max_event_bytes(self) -> usize {
        if self == Kind::Small {
            300
        } else {
            1_000_000
        }
    }

    fn config(self) -> String {
        let base = r#""test_mode":true,"test_mode_capacity":100000"#;
        match self {
            Kind::Plain => format!(r#"{{"token":"{TOKEN}",{base}}}"#),
            Kind::Small => format!(r#"{{"token":"{TOKEN}","max_event_bytes":300,{base}}}"#),
            Kind::Tokenless => format!(r#"{{"token":null,{base}}}"#),
            Kind::WithSecret => {
                format!(r#"{{"token":"{TOKEN}","api_secret":"{API_SECRET}",{base}}}"#)
            }
        }
    }
}

/// A client handle shared by every run of a target (the library is thread-safe).
pub struct Handle(*mut bulkhead_client);
// SAFETY: bulkhead_client is documented thread-safe; the handle is never freed.
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

impl Handle {
    pub fn ptr(&self) -> *const bulkhead_client {
        self.0
    }
}

/// The one client of `kind`, made on first use.
pub fn client(kind: Kind) -> &'static Handle {
    static CLIENTS: [OnceLock<Handle>; 4] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    CLIENTS[kind as usize].get_or_init(|| {
        let config = kind.config();
        let mut out = std::ptr::null_mut();
        // SAFETY: a valid (ptr, len) string and a writable out-pointer.
        let status =
            unsafe { bulkhead_client_new(cstr(config.as_bytes()), config.len(), &mut out) };
        assert_eq!(status, bulkhead_status::Ok, "{config}: {}", last_error());
        Handle(out)
    })
}

/// `bytes` as the C API's `(ptr, len)` pointer. Never NULL, so an empty piece is "".
pub fn cstr(bytes: &[u8]) -> *const c_char {
    if bytes.is_empty() {
        c"".as_ptr()
    } else {
        bytes.as_ptr().cast()
    }
}

/// The text of the calling thread's last error.
pub fn last_error() -> String {
    read_text(|buf, len, written| unsafe { bulkhead_last_error(buf, len, written) })
        .unwrap_or_default()
}

/// Reads text through the buffer protocol: ask the size with an empty buffer, then copy.
fn read_text(call: impl Fn(*mut c_char, usize, *mut usize) -> bulkhead_status) -> Option<String> {
    let mut needed = 0usize;
    let first = call(std::ptr::null_mut(), 0, &mut needed);
    if first == bulkhead_status::Ok {
        return Some(String::new());
    }
    assert_eq!(first, bulkhead_status::BufferTooSmall, "asking the size");
    let mut buf = vec![0u8; needed];
    let mut written = 0usize;
    let status = call(buf.as_mut_ptr().cast(), buf.len(), &mut written);
    assert_eq!(status, bulkhead_status::Ok, "copying {needed} bytes");
    assert_eq!(written + 1, needed, "written excludes the NUL");
    assert_eq!(buf[written], 0, "NUL-terminated");
    buf.truncate(written);
    Some(String::from_utf8(buf).expect("the library hands out UTF-8"))
}

/// The events the client keeps (a JSON array), through `bulkhead_client_test_events`.
pub fn test_events(handle: &Handle) -> String {
    read_text(|buf, len, written| unsafe {
        bulkhead_client_test_events(handle.ptr(), buf, len, written)
    })
    .expect("a test_mode client lists its events")
}

/// Forgets the kept events.
pub fn clear(handle: &Handle) {
    // SAFETY: a live handle.
    let status = unsafe { bulkhead_client_test_clear(handle.ptr()) };
    assert_eq!(status, bulkhead_status::Ok);
}

pub fn stats(handle: &Handle) -> bulkhead_stats {
    let mut stats = bulkhead_stats::default();
    // SAFETY: a live handle and a writable struct.
    let status = unsafe { bulkhead_client_stats(handle.ptr(), &mut stats) };
    assert_eq!(status, bulkhead_status::Ok);
    stats
}

/// The counters a refusal moves, as (invalid, too large, queue full).
pub fn refusals(s: &bulkhead_stats) -> (u64, u64, u64) {
    (s.dropped_invalid, s.dropped_too_large, s.dropped_queue_full)
}

/// Checks that a call refused with `status` counted `events` refused events in the
/// counter its status names, and nothing else; and that a success counted nothing.
pub fn check_accounting(
    status: bulkhead_status,
    events: u64,
    before: &bulkhead_stats,
    after: &bulkhead_stats,
) {
    let (i0, t0, q0) = refusals(before);
    let (i1, t1, q1) = refusals(after);
    let moved = (i1 - i0, t1 - t0, q1 - q0);
    let expected = match status {
        bulkhead_status::Ok => (0, 0, 0),
        bulkhead_status::InvalidArgument
        | bulkhead_status::InvalidUtf8
        | bulkhead_status::InvalidJson => (events, 0, 0),
        bulkhead_status::TooLarge => (0, events, 0),
        bulkhead_status::QueueFull => (0, 0, events),
        other => panic!("a call answered {other:?}: {}", last_error()),
    };
    assert_eq!(
        moved, expected,
        "{status:?} for {events} events moved (invalid, too_large, queue_full) by {moved:?}"
    );
    // Test mode keeps events out of the delivery counters.
    assert_eq!(after.enqueued, before.enqueued);
}

/// The messages of a test-event list, each as its endpoint name and the exact text of
/// its `data`; `None` if the list nests too deep to be read back (see [`super::members`]).
pub fn kept(list: &str) -> Option<Vec<(String, String)>> {
    type Kept<'a> = std::collections::BTreeMap<String, &'a serde_json::value::RawValue>;
    match serde_json::from_str::<Vec<Kept<'_>>>(list) {
        Ok(items) => Some(
            items
                .into_iter()
                .map(|k| {
                    assert_eq!(k.len(), 2, "endpoint and data only: {list}");
                    let endpoint: String = serde_json::from_str(k["endpoint"].get())
                        .expect("the endpoint is a string");
                    (endpoint, k["data"].get().to_owned())
                })
                .collect(),
        ),
        Err(_) if super::too_deep(list) => None,
        Err(e) => panic!("the test-event list is not the documented JSON: {e}\n{list}"),
    }
}
