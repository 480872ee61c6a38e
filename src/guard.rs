//! The queue-size guard: the one owner of "how much is pending".
//!
//! One atomic word holds the pending event count, the pending bytes and two flags, so a
//! reservation, a release, a close and an abandon are each a single compare-and-swap:
//! a reservation never overshoots a cap (nothing to roll back), a reservation after
//! close is impossible, and a release after abandon cannot be counted twice.
//!
//! ```text
//! bit 63      62          61..38          37..0
//!     CLOSED  ABANDONED   events (24 b)   bytes (38 b)
//! ```
//!
//! "Pending" means accepted and not yet resolved, wherever the event is: queued, in a
//! batch, in a request or waiting to retry. Bytes are what the events hold in memory (their
//! JSON plus [`EVENT_OVERHEAD`]).

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

/// The largest `queue_capacity` the guard can represent.
pub(crate) const MAX_EVENTS: u64 = (1 << 24) - 1;
/// The largest `queue_max_bytes` the guard can represent (256 GiB).
pub(crate) const MAX_BYTES: u64 = (1 << 38) - 1;
/// Memory an event holds beyond its JSON: the message header in the queue and in its batch,
/// and the allocator's rounding. Charged so that the byte cap bounds real memory.
pub(crate) const EVENT_OVERHEAD: u64 = 128;

const CLOSED: u64 = 1 << 63;
const ABANDONED: u64 = 1 << 62;
const EVENT_SHIFT: u32 = 38;
const BYTES_MASK: u64 = MAX_BYTES;

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Closed,
    FullEvents,
    FullBytes,
}

/// What is pending right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pending {
    pub events: u64,
    pub bytes: u64,
}

pub struct Guard {
    word: AtomicU64,
    capacity: u64,
    max_bytes: u64,
}

fn unpack(word: u64) -> Pending {
    Pending {
        events: (word >> EVENT_SHIFT) & MAX_EVENTS,
        bytes: word & BYTES_MASK,
    }
}

fn pack(events: u64, bytes: u64) -> u64 {
    (events << EVENT_SHIFT) | bytes
}

impl Guard {
    /// Caps above what the word holds are clamped (config validation refuses them first).
    pub fn new(capacity: u64, max_bytes: u64) -> Self {
        Self {
            word: AtomicU64::new(0),
            capacity: capacity.min(MAX_EVENTS),
            max_bytes: max_bytes.min(MAX_BYTES),
        }
    }

    /// The bytes an event of `json_len` bytes is charged.
    pub fn charge(json_len: usize) -> u64 {
        json_len as u64 + EVENT_OVERHEAD
    }

    fn check(&self, word: u64, events: u64, bytes: u64) -> Result<u64, Refusal> {
        if word & CLOSED != 0 {
            return Err(Refusal::Closed);
        }
        let now = unpack(word);
        if now.events + events > self.capacity {
            return Err(Refusal::FullEvents);
        }
        if now.bytes + bytes > self.max_bytes {
            return Err(Refusal::FullBytes);
        }
        Ok(word + pack(events, bytes))
    }

    /// Would a reservation of `events` holding at least `bytes` be refused right now? A
    /// read only: lets the hot path refuse before it builds anything.
    pub fn precheck(&self, events: u64, bytes: u64) -> Result<(), Refusal> {
        self.check(self.word.load(Relaxed), events, bytes)
            .map(|_| ())
    }

    /// Reserves room for `events` holding `bytes`, or refuses without changing anything.
    pub fn reserve(&self, events: u64, bytes: u64) -> Result<(), Refusal> {
        let mut current = self.word.load(Relaxed);
        loop {
            let next = self.check(current, events, bytes)?;
            match self
                .word
                .compare_exchange_weak(current, next, AcqRel, Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// Releases resolved events. False when close already abandoned them (and counted
    /// them), in which case the caller must not count them again.
    pub fn release(&self, events: u64, bytes: u64) -> bool {
        let mut current = self.word.load(Relaxed);
        loop {
            if current & ABANDONED != 0 {
                return false;
            }
            let now = unpack(current);
            // Cannot underflow while every release matches a reservation; saturate anyway
            // so that a bug shows as a wrong count, never as a wrapped one.
            let next = (current & (CLOSED | ABANDONED))
                | pack(
                    now.events.saturating_sub(events),
                    now.bytes.saturating_sub(bytes),
                );
            match self
                .word
                .compare_exchange_weak(current, next, AcqRel, Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Refuses every later reservation. Idempotent.
    pub fn close(&self) {
        self.word.fetch_or(CLOSED, AcqRel);
    }

    /// Closes, empties the guard and returns what was pending, exactly once: later calls
    /// return nothing, and later releases are refused.
    pub fn abandon(&self) -> Pending {
        let previous = self.word.swap(CLOSED | ABANDONED, AcqRel);
        if previous & ABANDONED != 0 {
            return Pending::default();
        }
        unpack(previous)
    }

    pub fn is_abandoned(&self) -> bool {
        self.word.load(Acquire) & ABANDONED != 0
    }

    pub fn pending(&self) -> Pending {
        unpack(self.word.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    #[test]
    fn caps_by_events_and_bytes_without_overshoot() {
        let g = Guard::new(2, 100);
        assert_eq!(g.reserve(1, 60), Ok(()));
        assert_eq!(g.reserve(1, 60), Err(Refusal::FullBytes));
        assert_eq!(g.reserve(1, 40), Ok(()));
        assert_eq!(g.reserve(1, 0), Err(Refusal::FullEvents));
        assert_eq!(
            g.pending(),
            Pending {
                events: 2,
                bytes: 100
            }
        );
        assert!(g.release(1, 60));
        assert_eq!(
            g.pending(),
            Pending {
                events: 1,
                bytes: 40
            }
        );
        assert_eq!(g.precheck(1, 61), Err(Refusal::FullBytes));
        assert_eq!(g.precheck(1, 60), Ok(()));
    }

    #[test]
    fn close_refuses_and_abandon_counts_once() {
        let g = Guard::new(10, 1000);
        g.reserve(3, 30).unwrap();
        g.close();
        assert_eq!(g.reserve(1, 1), Err(Refusal::Closed));
        assert_eq!(g.precheck(1, 1), Err(Refusal::Closed));
        // Still pending after close until resolved or abandoned.
        assert!(g.release(1, 10));
        assert_eq!(
            g.abandon(),
            Pending {
                events: 2,
                bytes: 20
            }
        );
        assert_eq!(g.abandon(), Pending::default());
        assert!(!g.release(2, 20), "a release after abandon must not count");
        assert_eq!(g.pending(), Pending::default());
        assert!(g.is_abandoned());
    }

    /// Many threads reserve, release and one abandons: what was reserved equals what was
    /// released plus what abandon returned, and nothing ever wraps.
    #[test]
    fn concurrent_reserve_release_abandon_balances() {
        for round in 0..50 {
            let g = Arc::new(Guard::new(64, 64 * 10));
            let reserved = Arc::new(AtomicU64::new(0));
            let released = Arc::new(AtomicU64::new(0));
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (g, reserved, released) = (g.clone(), reserved.clone(), released.clone());
                    std::thread::spawn(move || {
                        for i in 0..2000 {
                            match g.reserve(1, 10) {
                                Ok(()) => {
                                    reserved.fetch_add(1, Relaxed);
                                    if i % 2 == 0 && g.release(1, 10) {
                                        released.fetch_add(1, Relaxed);
                                    }
                                }
                                Err(Refusal::Closed) => return,
                                Err(_) => {}
                            }
                            assert!(g.pending().events <= 64);
                        }
                    })
                })
                .collect();
            std::thread::yield_now();
            let abandoned = if round % 2 == 0 {
                g.abandon()
            } else {
                Pending::default()
            };
            for t in threads {
                t.join().unwrap();
            }
            let rest = g.abandon();
            let total = abandoned.events + rest.events + released.load(Relaxed);
            assert_eq!(total, reserved.load(Relaxed), "round {round}");
        }
    }
}
