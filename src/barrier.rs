//! Flush as a real barrier: "every event queued before this call is resolved".
//!
//! A flush puts a marker into the same FIFO as the events (the pattern of OpenTelemetry's
//! BatchSpanProcessor and sentry's transport). When the dispatcher reaches the marker,
//! every event queued before it is in a batch it has already handed out, so the marker's
//! [`Latch`] opens once every batch handed out so far has finished — tracked here by
//! [`Batches`], which numbers batches as the dispatcher hands them out.
//!
//! Counting resolved events instead is not a barrier: under steady traffic, later events
//! resolve in place of an earlier one that is still waiting out a `Retry-After`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::{Condvar, Mutex};
use tokio::sync::Notify;

/// A one-shot gate a host thread can block on (with a deadline) and a task can await.
#[derive(Default)]
pub struct Latch {
    open: Mutex<bool>,
    opened: Condvar,
    notify: Notify,
}

impl Latch {
    pub fn open(&self) {
        let mut open = self.open.lock();
        if !*open {
            *open = true;
            self.opened.notify_all();
            self.notify.notify_waiters();
        }
    }

    pub fn is_open(&self) -> bool {
        *self.open.lock()
    }

    /// Blocks until open or `deadline`; true if open.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        let mut open = self.open.lock();
        while !*open {
            let (guard, timed_out) = self.opened.wait_until(open, deadline);
            open = guard;
            if timed_out {
                return *open;
            }
        }
        true
    }

    /// Completes when open.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_open() {
                return;
            }
            notified.await;
        }
    }

    /// As [`Latch::wait`], giving up after `timeout`; true if open.
    pub async fn wait_for(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.wait()).await.is_ok()
    }
}

/// A flush waiting in the queue or behind batches. Dropping it opens its latch: it is
/// dropped unreached only when the client gave up, when everything pending was counted.
pub struct FlushMarker(Arc<Latch>);

impl FlushMarker {
    /// A marker and the latch it opens.
    pub fn new() -> (Self, Arc<Latch>) {
        let latch = Arc::new(Latch::default());
        (Self(latch.clone()), latch)
    }
}

impl Drop for FlushMarker {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// Batches handed out and not finished, and the flushes waiting for them.
#[derive(Default)]
pub struct Batches {
    inner: Mutex<BatchesInner>,
}

#[derive(Default)]
struct BatchesInner {
    next: u64,
    unfinished: BTreeSet<u64>,
    /// Each flush opens when no batch numbered below its target is unfinished.
    waiting: Vec<(u64, FlushMarker)>,
    /// Set when the client gave up: nothing more will finish, so nothing waits.
    given_up: bool,
}

impl BatchesInner {
    fn release_ready(&mut self) {
        let oldest = self.unfinished.first().copied().unwrap_or(u64::MAX);
        // Dropping a ready marker opens its latch.
        self.waiting.retain(|(target, _)| *target > oldest);
    }
}

impl Batches {
    /// Numbers a batch being handed out; pass the number to [`Batches::finish`].
    pub fn start(&self) -> u64 {
        let mut inner = self.inner.lock();
        let id = inner.next;
        inner.next += 1;
        inner.unfinished.insert(id);
        id
    }

    pub fn finish(&self, id: u64) {
        let mut inner = self.inner.lock();
        inner.unfinished.remove(&id);
        inner.release_ready();
    }

    /// Opens `marker` once every batch started so far has finished.
    pub fn open_after_started(&self, marker: FlushMarker) {
        let mut inner = self.inner.lock();
        if inner.given_up {
            return;
        }
        let target = inner.next;
        inner.waiting.push((target, marker));
        inner.release_ready();
    }

    /// Opens every waiting flush, now and later (the client gave up on its batches: nothing
    /// more to wait for, and their events were counted).
    pub fn release_all(&self) {
        let mut inner = self.inner.lock();
        inner.given_up = true;
        let released = std::mem::take(&mut inner.waiting);
        drop(inner);
        drop(released);
    }
}

/// Finishes its batch when dropped, so a batch task that ends in any way (including a
/// cancelled one) releases the flushes behind it.
pub struct BatchTicket {
    batches: Arc<Batches>,
    id: u64,
}

impl BatchTicket {
    pub fn new(batches: &Arc<Batches>) -> Self {
        Self {
            batches: batches.clone(),
            id: batches.start(),
        }
    }
}

impl Drop for BatchTicket {
    fn drop(&mut self) {
        self.batches.finish(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_waits_for_earlier_batches_only() {
        let batches = Arc::new(Batches::default());
        let first = BatchTicket::new(&batches);
        let second = BatchTicket::new(&batches);
        let (marker, flush) = FlushMarker::new();
        batches.open_after_started(marker);
        let later = BatchTicket::new(&batches);
        drop(second);
        assert!(!flush.is_open(), "the first batch is still out");
        drop(first);
        assert!(flush.is_open(), "a later batch must not hold the flush");
        drop(later);
    }

    #[test]
    fn a_flush_with_nothing_out_opens_at_once() {
        let batches = Arc::new(Batches::default());
        let (marker, flush) = FlushMarker::new();
        batches.open_after_started(marker);
        assert!(flush.wait_until(Instant::now()));
    }

    #[test]
    fn release_all_opens_waiters() {
        let batches = Arc::new(Batches::default());
        let _stuck = BatchTicket::new(&batches);
        let (marker, flush) = FlushMarker::new();
        batches.open_after_started(marker);
        assert!(!flush.wait_until(Instant::now() + Duration::from_millis(1)));
        batches.release_all();
        assert!(flush.is_open());
        // A flush the dispatcher registers after the client gave up does not wait.
        let (late, late_flush) = FlushMarker::new();
        batches.open_after_started(late);
        assert!(late_flush.is_open());
    }

    #[test]
    fn a_marker_dropped_unreached_opens_its_latch() {
        let (marker, flush) = FlushMarker::new();
        drop(marker);
        assert!(flush.is_open());
    }
}
