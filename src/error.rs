//! The one error type of the pure-Rust core. The FFI layer maps [`ErrorKind`] onto
//! `bulkhead_status`; the bindings map it onto exceptions or return values.

use std::borrow::Cow;
use std::fmt;

/// What went wrong, coarsely: one kind per status a caller may want to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The queue-size guard dropped the event (counted in `dropped_queue_full`).
    QueueFull,
    /// A bad argument: missing value, unknown key, wrong type, unknown endpoint.
    InvalidArgument,
    /// Text that is not UTF-8.
    InvalidUtf8,
    /// Text that is not the JSON the call needs.
    InvalidJson,
    /// An event above `max_event_bytes` (counted in `dropped_too_large`).
    TooLarge,
    /// The client (or the whole library) was closed.
    Closed,
    /// A deadline passed before the work finished.
    Timeout,
    /// Something that should not happen (runtime could not start, ...).
    Internal,
}

/// An error with a human-readable message that never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    // Static text needs no allocation: the guard's drop path builds one of these per event.
    message: Cow<'static, str>,
    /// How many events the refused call carried (an array refused whole counts each).
    events: u64,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            events: 1,
        }
    }

    /// The same error, for a call that carried `events` events (at least 1).
    pub fn with_events(mut self, events: u64) -> Self {
        self.events = events.max(1);
        self
    }

    /// How many events this error refused: 1 unless set by [`Error::with_events`].
    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    pub(crate) fn json(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidJson, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
