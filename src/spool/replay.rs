//! Replay: spooled events go back into delivery once the service answers, oldest first,
//! in chunks that use at most half of the queue's room, so fresh events always have the
//! other half.
//!
//! A chunk is read by the writer thread, queued (counted `replayed`), and followed by a
//! flush marker; once the marker opens, every event of the chunk was resolved (sent,
//! rejected, or spilled back to the spool if delivery failed again) and the writer may
//! forget the chunk's records. If the client closes first, the records stay on disk and
//! are read again later: an event may then be delivered twice, with the same `$insert_id`
//! and `time`, which Mixpanel deduplicates.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::{Command, Spool};
use crate::circuit::CircuitState;
use crate::consumer::DeliveryContext;
use crate::guard::Pending;
use crate::message::{Endpoint, Message};
use crate::queue::Queue;

/// Events read back together; acknowledged together.
pub struct Chunk {
    pub id: u64,
    pub messages: Vec<Message>,
}

const DAY_MS: i64 = 24 * 3600 * 1000;
/// `/track` refuses events older than five days. A spooled event's `time` is no later than
/// when it was spooled, so those spooled more than four days ago (a day of margin) go to
/// `/import`, which takes events of any age, rather than be refused.
pub(crate) const IMPORT_AFTER_MS: i64 = 4 * DAY_MS;

/// The most events and bytes in one chunk.
const CHUNK_EVENTS: u64 = 10_000;
const CHUNK_BYTES: u64 = 8 * 1024 * 1024;
/// The most events in a chunk while the circuit is not closed.
const PROBE_EVENTS: u64 = 20;

/// Waits between attempts: while the queue is busy, after a chunk that did not go
/// through (doubling up to the longest), and when the spool is empty.
const PAUSE_BUSY: Duration = Duration::from_millis(200);
const PAUSE_FAILED: Duration = Duration::from_secs(1);
const PAUSE_FAILED_MAX: Duration = Duration::from_secs(30);
const PAUSE_EMPTY: Duration = Duration::from_secs(1);

/// Where a spooled record is sent now.
pub fn endpoint_for(endpoint: Endpoint, created_ms: i64, now_ms: i64) -> Endpoint {
    if endpoint == Endpoint::Track && now_ms.saturating_sub(created_ms) >= IMPORT_AFTER_MS {
        Endpoint::Import
    } else {
        endpoint
    }
}

/// How much may be replayed now: never more than what leaves fresh events half of the
/// queue, and only a probe's worth while the circuit is not closed (with no fresh traffic,
/// replay is what probes the service and closes the circuit again).
pub fn room(
    circuit: CircuitState,
    pending: Pending,
    capacity: u64,
    max_bytes: u64,
) -> Option<(usize, usize)> {
    let most = match circuit {
        CircuitState::Closed => CHUNK_EVENTS,
        CircuitState::Open | CircuitState::HalfOpen => PROBE_EVENTS,
    };
    let events = (capacity / 2).checked_sub(pending.events)?.min(most);
    let bytes = (max_bytes / 2).checked_sub(pending.bytes)?.min(CHUNK_BYTES);
    (events > 0 && bytes > 0).then_some((events as usize, bytes as usize))
}

/// The replay task of one client (on the runtime); ends when the client is cancelled.
pub async fn run(spool: Arc<Spool>, queue: Queue, ctx: Arc<DeliveryContext>) {
    let acc = ctx.accounting.clone();
    let config = ctx.config.clone();
    let mut pause = Duration::ZERO;
    let mut failures = 0u32;
    let mut circuit = ctx.breaker.subscribe();
    loop {
        // A pause after failures ends early when the circuit closes (fresh events got
        // through): the service is back, so is replay.
        let until = tokio::time::Instant::now() + pause;
        loop {
            tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return,
                _ = tokio::time::sleep_until(until) => break,
                changed = circuit.changed(), if failures > 0 => {
                    if changed.is_err() || ctx.breaker.state() == CircuitState::Closed {
                        break;
                    }
                }
            }
        }
        let Some((events, bytes)) = room(
            ctx.breaker.state(),
            acc.guard.pending(),
            config.queue_capacity,
            config.queue_max_bytes,
        ) else {
            pause = PAUSE_BUSY;
            continue;
        };
        let (answer, chunk) = tokio::sync::oneshot::channel();
        spool.command(Command::Replay {
            events,
            bytes,
            answer,
        });
        let chunk = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return,
            chunk = chunk => chunk,
        };
        let Ok(Some(Chunk { id, messages })) = chunk else {
            pause = PAUSE_EMPTY;
            continue;
        };
        let sent_before = acc.counters.sent.load(Relaxed);
        let latch = match queue.push_replayed(&acc, messages) {
            Ok(()) => queue.push_flush().ok(),
            Err(_) => None,
        };
        let Some(latch) = latch else {
            spool.command(Command::Ack { id, done: false });
            pause = PAUSE_BUSY;
            continue;
        };
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => {}
            _ = latch.wait() => {}
        }
        // Opened by a close that gave up: the records stay on disk for later.
        let done = !ctx.cancel.is_cancelled();
        spool.command(Command::Ack { id, done });
        if !done {
            return;
        }
        let went_through = acc.counters.sent.load(Relaxed) > sent_before
            && ctx.breaker.state() == CircuitState::Closed;
        if went_through {
            failures = 0;
            pause = Duration::ZERO;
        } else {
            failures = failures.saturating_add(1);
            pause = PAUSE_FAILED
                .saturating_mul(1 << failures.min(5))
                .min(PAUSE_FAILED_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_events_go_to_import() {
        let now = 10 * DAY_MS;
        assert_eq!(
            endpoint_for(Endpoint::Track, now - 1000, now),
            Endpoint::Track
        );
        assert_eq!(
            endpoint_for(Endpoint::Track, now - IMPORT_AFTER_MS, now),
            Endpoint::Import
        );
        assert_eq!(
            endpoint_for(Endpoint::Engage, now - 9 * DAY_MS, now),
            Endpoint::Engage
        );
        assert_eq!(endpoint_for(Endpoint::Track, now + 5, now), Endpoint::Track);
    }

    #[test]
    fn replay_leaves_fresh_events_half_the_queue() {
        let p = |events, bytes| Pending { events, bytes };
        assert_eq!(
            room(CircuitState::Open, p(0, 0), 100, 10_000),
            Some((20, 5000))
        );
        assert_eq!(
            room(CircuitState::HalfOpen, p(45, 0), 100, 10_000),
            Some((5, 5000))
        );
        assert_eq!(room(CircuitState::Open, p(50, 0), 100, 10_000), None);
        assert_eq!(
            room(CircuitState::Closed, p(0, 0), 100, 10_000),
            Some((50, 5000))
        );
        assert_eq!(
            room(CircuitState::Closed, p(40, 0), 100, 10_000),
            Some((10, 5000))
        );
        assert_eq!(room(CircuitState::Closed, p(50, 0), 100, 10_000), None);
        assert_eq!(room(CircuitState::Closed, p(60, 0), 100, 10_000), None);
        assert_eq!(
            room(CircuitState::Closed, p(1, 4999), 100, 10_000),
            Some((49, 1))
        );
        assert_eq!(
            room(CircuitState::Closed, p(0, 0), 1 << 20, 1 << 40),
            Some((CHUNK_EVENTS as usize, CHUNK_BYTES as usize))
        );
    }
}
