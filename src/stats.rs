//! Counters, gauges and the bounded list of recent delivery errors.
//!
//! Every event is accounted for: `enqueued = sent + rejected + failed + queue_len` at any
//! quiescent moment. Drops refused at the call (`dropped_queue_full`, `dropped_too_large`,
//! `dropped_invalid`) were never enqueued. `dropped_shutdown` counts events still pending
//! when a close deadline passed; they are included in `failed`.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::circuit::CircuitState;
use crate::guard::{Guard, EVENT_OVERHEAD};
use crate::message::{now_ms, Endpoint};

/// A point-in-time copy of a client's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub enqueued: u64,
    pub dropped_queue_full: u64,
    pub dropped_too_large: u64,
    pub dropped_invalid: u64,
    pub dropped_shutdown: u64,
    pub sent: u64,
    pub rejected: u64,
    pub failed: u64,
    pub retries: u64,
    pub requests: u64,
    pub bytes_sent: u64,
    /// Events accepted and not yet resolved: queued, batching or in a request.
    pub queue_len: u64,
    /// Memory those events hold: their JSON plus a fixed per-event overhead.
    pub queue_bytes: u64,
    /// Events being delivered: in an HTTP request or waiting to retry one.
    pub in_flight: u64,
    pub circuit_state: CircuitState,
}

/// How a batch of events ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Rejected,
    Failed,
}

/// One delivery problem, kept for the host to read. `message` never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    /// Increases by one per error over the life of the client (for "new since" reads).
    pub seq: u64,
    pub time_ms: i64,
    pub endpoint: Endpoint,
    /// HTTP status, or 0 when there was no response (network error, timeout, circuit).
    pub http_status: u16,
    pub events: u64,
    /// What happened to the events: sent partly, rejected, retrying, failed.
    pub outcome: &'static str,
    pub message: String,
}

#[derive(Default)]
pub struct Counters {
    pub enqueued: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_too_large: AtomicU64,
    pub dropped_invalid: AtomicU64,
    pub dropped_shutdown: AtomicU64,
    pub sent: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
    pub retries: AtomicU64,
    pub requests: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub in_flight: AtomicU64,
}

/// Counters plus the guard, which owns what is pending; events are resolved through here
/// exactly once.
pub struct Accounting {
    pub counters: Counters,
    pub guard: Guard,
    errors: Mutex<VecDeque<DeliveryError>>,
    error_seq: AtomicU64,
    max_errors: usize,
    /// The `seq` of the last error handed out by [`Accounting::take_errors`]; the lock also
    /// makes concurrent takers hand out each error once.
    taken_seq: Mutex<u64>,
}

impl Accounting {
    pub fn new(max_errors: usize, capacity: u64, max_bytes: u64) -> Self {
        Self {
            counters: Counters::default(),
            guard: Guard::new(capacity, max_bytes),
            errors: Mutex::new(VecDeque::new()),
            error_seq: AtomicU64::new(0),
            max_errors,
            taken_seq: Mutex::new(0),
        }
    }

    /// Resolves `events` pending events holding `bytes` of JSON with `outcome`. Ignored
    /// when a close already gave up on them and counted them as failed.
    pub fn resolve(&self, outcome: Outcome, events: u64, bytes: u64) {
        if events == 0 {
            return;
        }
        let charged = bytes + events * EVENT_OVERHEAD;
        if !self.guard.release(events, charged) {
            return;
        }
        let c = &self.counters;
        let counter = match outcome {
            Outcome::Sent => &c.sent,
            Outcome::Rejected => &c.rejected,
            Outcome::Failed => &c.failed,
        };
        counter.fetch_add(events, Relaxed);
    }

    /// Closes the guard and counts everything still pending as failed (reason: shutdown).
    /// Counts once, however often it is called.
    pub fn abandon_pending(&self) -> u64 {
        let left = self.guard.abandon().events;
        let c = &self.counters;
        c.failed.fetch_add(left, Relaxed);
        c.dropped_shutdown.fetch_add(left, Relaxed);
        left
    }

    pub fn record_error(
        &self,
        endpoint: Endpoint,
        http_status: u16,
        events: u64,
        outcome: &'static str,
        message: String,
    ) {
        if self.max_errors == 0 {
            return;
        }
        let seq = self.error_seq.fetch_add(1, Relaxed) + 1;
        let mut errors = self.errors.lock();
        if errors.len() >= self.max_errors {
            errors.pop_front();
        }
        errors.push_back(DeliveryError {
            seq,
            time_ms: now_ms(),
            endpoint,
            http_status,
            events,
            outcome,
            message,
        });
    }

    /// Recent errors with `seq > after_seq`, oldest first.
    pub fn errors_after(&self, after_seq: u64) -> Vec<DeliveryError> {
        self.errors
            .lock()
            .iter()
            .filter(|e| e.seq > after_seq)
            .cloned()
            .collect()
    }

    /// Calls `take` with the errors after the last one taken; if it answers `true`, they
    /// are taken (a caller whose buffer was too small answers `false` and sees them again).
    pub fn take_errors<T>(&self, take: impl FnOnce(&[DeliveryError]) -> (T, bool)) -> T {
        let mut taken = self.taken_seq.lock();
        let fresh = self.errors_after(*taken);
        let (result, took) = take(&fresh);
        if let (true, Some(last)) = (took, fresh.last()) {
            *taken = last.seq;
        }
        result
    }

    pub fn snapshot(&self, circuit_state: CircuitState) -> Stats {
        let c = &self.counters;
        let pending = self.guard.pending();
        Stats {
            enqueued: c.enqueued.load(Relaxed),
            dropped_queue_full: c.dropped_queue_full.load(Relaxed),
            dropped_too_large: c.dropped_too_large.load(Relaxed),
            dropped_invalid: c.dropped_invalid.load(Relaxed),
            dropped_shutdown: c.dropped_shutdown.load(Relaxed),
            sent: c.sent.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            failed: c.failed.load(Relaxed),
            retries: c.retries.load(Relaxed),
            requests: c.requests.load(Relaxed),
            bytes_sent: c.bytes_sent.load(Relaxed),
            queue_len: pending.events,
            queue_bytes: pending.bytes,
            in_flight: c.in_flight.load(Relaxed),
            circuit_state,
        }
    }
}

/// Renders errors as a JSON array (what the C API hands out).
pub fn errors_to_json(errors: &[DeliveryError]) -> String {
    let items: Vec<serde_json::Value> = errors
        .iter()
        .map(|e| {
            serde_json::json!({
                "seq": e.seq,
                "time_ms": e.time_ms,
                "endpoint": e.endpoint.path(),
                "http_status": e.http_status,
                "events": e.events,
                "outcome": e.outcome,
                "message": e.message,
            })
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}
