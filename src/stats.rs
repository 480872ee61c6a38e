//! Counters, gauges and the bounded list of recent delivery errors.
//!
//! Every event is accounted for: `enqueued + replayed = sent + rejected + failed + spooled +
//! queue_len + spool_pending` at any quiescent moment (without a spool, `replayed`,
//! `spooled` and `spool_pending` stay 0). Drops refused at the call (`dropped_queue_full`,
//! `dropped_too_large`, `dropped_invalid`) were never enqueued. `dropped_shutdown` counts
//! events still pending when a close deadline passed, and `dropped_spool_full` /
//! `dropped_spool_error` events the spool could not write; all three are included in
//! `failed`.

use crate::sync::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::circuit::CircuitState;
use crate::guard::{Guard, EVENT_OVERHEAD};
use crate::log::{self, Level};
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
    /// Delivery errors the ring of `max_recent_errors` dropped to make room for newer ones.
    pub errors_overwritten: u64,
    /// Events written to the spool (overflow, failed deliveries, pending at close).
    pub spooled: u64,
    /// Events read back from the spool into delivery.
    pub replayed: u64,
    /// Spooled events removed unsent for being older than `spool_max_age`.
    pub spool_expired: u64,
    /// Corrupt or torn records found in spool segments (skipped).
    pub spool_corrupt: u64,
    /// Events the spool could not take: `spool_max_bytes` reached or the disk full
    /// (included in `failed`).
    pub dropped_spool_full: u64,
    /// Events the spool could not write for another reason, such as an unwritable
    /// directory (included in `failed`).
    pub dropped_spool_error: u64,
    /// Overflow events accepted and waiting for the spool's writer (not in `queue_len`).
    pub spool_pending: u64,
    /// Bytes in the spool directory's segments (every writer's), as last seen.
    pub spool_bytes: u64,
    /// Records this client wrote or took over and has not yet replayed or expired.
    pub spool_records: u64,
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
    pub errors_overwritten: AtomicU64,
    pub spooled: AtomicU64,
    pub replayed: AtomicU64,
    pub spool_expired: AtomicU64,
    pub spool_corrupt: AtomicU64,
    pub dropped_spool_full: AtomicU64,
    pub dropped_spool_error: AtomicU64,
    pub spool_pending: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub spool_records: AtomicU64,
}

/// One line for the host's own logger (Ruby `Logger`, Python `logging`), read on a host
/// thread through `bulkhead_client_take_log`. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub level: Level,
    pub message: String,
}

/// The most notes kept unread; beyond it the oldest go (and that is said in the next one).
const MAX_NOTES: usize = 256;

/// What a flush found since the previous one: events that failed or were rejected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushOutcome {
    pub failed: u64,
    pub rejected: u64,
}

/// Host-side logging state of one client: unread notes and the "something to read" hint.
pub struct HostLog {
    notes: Mutex<VecDeque<Note>>,
    notes_lost: AtomicU64,
    /// Non-zero while notes or delivery errors wait to be read. Lives in the client handle
    /// (not per process generation) so a binding can read it through a fixed address.
    hint: Arc<AtomicU64>,
    /// The client's `log_level`, for the library's own sink (callback or stderr).
    level: Level,
    /// Set by the first queue-full drop (the one-time warning).
    drop_warned: AtomicBool,
    /// `dropped_queue_full` when the drops were last reported.
    drops_reported: AtomicU64,
    overwrite_warned: AtomicBool,
    /// The first-drop warning waits for a library thread to give it to the library's sink:
    /// the hot path that noticed the drop must not write to stderr or call the host's
    /// callback.
    drop_line_pending: AtomicBool,
}

impl HostLog {
    pub fn new(level: Level, hint: Arc<AtomicU64>) -> Self {
        Self {
            notes: Mutex::new(VecDeque::new()),
            notes_lost: AtomicU64::new(0),
            hint,
            level,
            drop_warned: AtomicBool::new(false),
            drops_reported: AtomicU64::new(0),
            overwrite_warned: AtomicBool::new(false),
            drop_line_pending: AtomicBool::new(false),
        }
    }
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
    pub host_log: HostLog,
    /// `failed` and `rejected` as the previous flush reported them.
    flush_seen_failed: AtomicU64,
    flush_seen_rejected: AtomicU64,
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
            host_log: HostLog::new(Level::Off, Arc::new(AtomicU64::new(0))),
            flush_seen_failed: AtomicU64::new(0),
            flush_seen_rejected: AtomicU64::new(0),
        }
    }

    /// With the client's host log (its `log_level` and the handle's hint counter).
    pub fn with_host_log(mut self, host_log: HostLog) -> Self {
        self.host_log = host_log;
        self
    }

    /// Logs `message` to the library's sink and keeps it for the host's logger.
    pub fn note(&self, level: Level, message: String) {
        log::log(self.host_log.level, level, format_args!("{message}"));
        self.keep_note(level, message);
    }

    /// Keeps `message` for the host's logger only.
    fn keep_note(&self, level: Level, message: String) {
        let h = &self.host_log;
        let mut notes = h.notes.lock();
        if notes.len() >= MAX_NOTES {
            notes.pop_front();
            h.notes_lost.fetch_add(1, Relaxed);
        }
        notes.push_back(Note { level, message });
        drop(notes);
        h.hint.fetch_add(1, Relaxed);
    }

    /// The one-time warning for the first event the guard dropped. An atomic load after
    /// the first, so a host in overload pays nothing more per dropped event.
    pub fn note_queue_full(&self, capacity: u64, max_bytes: u64) {
        let h = &self.host_log;
        if h.drop_warned.load(Relaxed) || h.drop_warned.swap(true, Relaxed) {
            return;
        }
        let dropped = self.counters.dropped_queue_full.load(Relaxed);
        h.drops_reported.store(dropped, Relaxed);
        self.keep_note(
            Level::Warn,
            format!(
                "queue full: dropping events (queue_capacity {capacity}, queue_max_bytes \
                 {max_bytes}); {dropped} dropped so far. Further drops are counted in \
                 dropped_queue_full and reported at flush, stats and close"
            ),
        );
        h.drop_line_pending.store(true, Relaxed);
    }

    /// On a library thread: gives the first-drop warning to the library's sink (stderr or
    /// the C callback) if the hot path left it pending. One relaxed load otherwise.
    fn emit_pending_lines(&self) {
        let h = &self.host_log;
        if h.drop_line_pending.load(Relaxed) && h.drop_line_pending.swap(false, Relaxed) {
            log::log(
                h.level,
                Level::Warn,
                format_args!(
                    "queue full: dropping events; {} dropped so far (counted in \
                     dropped_queue_full)",
                    self.counters.dropped_queue_full.load(Relaxed)
                ),
            );
        }
    }

    /// Takes the unread notes (oldest first), adding one for queue-full drops since the
    /// last report. `take` answers whether they were consumed (see `take_errors`).
    pub fn take_notes<T>(&self, take: impl FnOnce(&[Note]) -> (T, bool)) -> T {
        let h = &self.host_log;
        let dropped = self.counters.dropped_queue_full.load(Relaxed);
        let reported = h.drops_reported.load(Relaxed);
        if h.drop_warned.load(Relaxed)
            && dropped > reported
            && h.drops_reported
                .compare_exchange(reported, dropped, Relaxed, Relaxed)
                .is_ok()
        {
            self.note(
                Level::Warn,
                format!(
                    "queue full: {} more events dropped since the last report ({dropped} in all)",
                    dropped - reported
                ),
            );
        }
        h.hint.store(0, Relaxed);
        let mut notes = h.notes.lock();
        let lost = h.notes_lost.swap(0, Relaxed);
        if lost > 0 {
            notes.push_front(Note {
                level: Level::Warn,
                message: format!("{lost} older log lines were dropped unread"),
            });
        }
        let current: Vec<Note> = notes.iter().cloned().collect();
        let (result, took) = take(&current);
        if took {
            notes.clear();
        } else {
            if lost > 0 {
                notes.pop_front();
                h.notes_lost.fetch_add(lost, Relaxed);
            }
            if !notes.is_empty() {
                h.hint.fetch_add(1, Relaxed);
            }
        }
        result
    }

    /// Failed and rejected events since the previous call (each reported by one call).
    pub fn take_flush_outcome(&self) -> FlushOutcome {
        let c = &self.counters;
        let failed = c.failed.load(Relaxed);
        let rejected = c.rejected.load(Relaxed);
        FlushOutcome {
            failed: failed.saturating_sub(self.flush_seen_failed.fetch_max(failed, Relaxed)),
            rejected: rejected
                .saturating_sub(self.flush_seen_rejected.fetch_max(rejected, Relaxed)),
        }
    }

    /// Resolves `events` pending events holding `bytes` of JSON with `outcome`. Ignored
    /// when a close already gave up on them and counted them as failed.
    pub fn resolve(&self, outcome: Outcome, events: u64, bytes: u64) {
        if events == 0 {
            return;
        }
        self.emit_pending_lines();
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

    /// Releases events handed to the spool from the guard (the writer counts them once
    /// written). False when close already gave up on them (they were counted failed).
    pub fn release_for_spool(&self, events: u64, bytes: u64) -> bool {
        self.emit_pending_lines();
        self.guard.release(events, bytes + events * EVENT_OVERHEAD)
    }

    /// Closes the guard and counts everything still pending as failed (reason: shutdown).
    /// Counts once, however often it is called; says so (with `why`) when it gave any up.
    pub fn abandon_pending(&self, why: &str) -> u64 {
        let left = self.guard.abandon().events;
        let c = &self.counters;
        c.failed.fetch_add(left, Relaxed);
        c.dropped_shutdown.fetch_add(left, Relaxed);
        if left > 0 {
            self.note(
                Level::Warn,
                format!(
                    "{why}: {left} undelivered events were abandoned and counted as failed \
                     (dropped_shutdown)"
                ),
            );
        }
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
        self.emit_pending_lines();
        if self.max_errors == 0 {
            return;
        }
        let seq = self.error_seq.fetch_add(1, Relaxed) + 1;
        let mut errors = self.errors.lock();
        if errors.len() >= self.max_errors {
            errors.pop_front();
            self.counters.errors_overwritten.fetch_add(1, Relaxed);
            let h = &self.host_log;
            if !h.overwrite_warned.swap(true, Relaxed) {
                log::log(
                    h.level,
                    Level::Warn,
                    format_args!(
                        "more than max_recent_errors ({}) delivery errors: the oldest are \
                         overwritten (counted in errors_overwritten)",
                        self.max_errors
                    ),
                );
            }
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
        drop(errors);
        self.host_log.hint.fetch_add(1, Relaxed);
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
            // Errors between the last one taken and the first one kept were overwritten
            // before anyone read them: say how many, once.
            let unread = fresh[0].seq.saturating_sub(*taken + 1);
            *taken = last.seq;
            drop(taken);
            if unread > 0 {
                self.note(
                    Level::Warn,
                    format!(
                        "{unread} delivery errors were overwritten before they were read \
                         (max_recent_errors {}; see errors_overwritten)",
                        self.max_errors
                    ),
                );
            }
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
            errors_overwritten: c.errors_overwritten.load(Relaxed),
            spooled: c.spooled.load(Relaxed),
            replayed: c.replayed.load(Relaxed),
            spool_expired: c.spool_expired.load(Relaxed),
            spool_corrupt: c.spool_corrupt.load(Relaxed),
            dropped_spool_full: c.dropped_spool_full.load(Relaxed),
            dropped_spool_error: c.dropped_spool_error.load(Relaxed),
            spool_pending: c.spool_pending.load(Relaxed),
            spool_bytes: c.spool_bytes.load(Relaxed),
            spool_records: c.spool_records.load(Relaxed),
        }
    }
}

/// Renders notes as a JSON array of `{"level","message"}`.
pub fn notes_to_json(notes: &[Note]) -> String {
    let items: Vec<serde_json::Value> = notes
        .iter()
        .map(|n| serde_json::json!({"level": n.level.name(), "message": n.message}))
        .collect();
    serde_json::Value::Array(items).to_string()
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
                // null: there was no HTTP response (network error, timeout, circuit open).
                "http_status": (e.http_status != 0).then_some(e.http_status),
                "events": e.events,
                "outcome": e.outcome,
                "message": e.message,
            })
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}
