//! The bounded queue and its size guard: the only thing the hot path touches.
//!
//! The guard caps *pending* events, wherever they are (queued, batching, or in a request),
//! by count and by bytes, so memory has a hard ceiling. When a push would pass either cap
//! the message is dropped, counted in `dropped_queue_full`, and the caller gets
//! [`ErrorKind::QueueFull`] at once. Nothing here waits or does I/O.
//!
//! The queue itself is a lock-free list that never wakes the dispatcher per message: a
//! wake-up is a system call, and at tens of thousands of events a second those would be the
//! most expensive part of `track`. The dispatcher polls on a timer while it has work, and
//! is woken only when it went idle, when `batch_size` more events arrived, or on flush.

use std::sync::atomic::Ordering::{AcqRel, Relaxed, SeqCst};
use std::sync::atomic::{fence, AtomicBool};
use std::sync::Arc;

use crossbeam_queue::SegQueue;
use tokio::sync::Notify;

use crate::error::{Error, ErrorKind, Result};
use crate::message::Message;
use crate::stats::Accounting;

/// What the producers and the dispatcher share.
struct Shared {
    items: SegQueue<Message>,
    wake: Notify,
    /// Set by the dispatcher before it parks with nothing to do; the next push wakes it.
    idle: AtomicBool,
}

/// The producers' side.
pub struct Queue {
    shared: Arc<Shared>,
    capacity: u64,
    max_bytes: u64,
    wake_every: u64,
}

/// The dispatcher's side.
pub struct Receiver {
    shared: Arc<Shared>,
}

impl Queue {
    /// `wake_every`: wake the dispatcher each time this many more events were queued.
    pub fn new(capacity: u64, max_bytes: u64, wake_every: u64) -> (Self, Receiver) {
        let shared = Arc::new(Shared {
            items: SegQueue::new(),
            wake: Notify::new(),
            idle: AtomicBool::new(true),
        });
        let queue = Self {
            shared: shared.clone(),
            capacity,
            max_bytes,
            wake_every: wake_every.max(1),
        };
        (queue, Receiver { shared })
    }

    /// Pushes all messages or none.
    pub fn push(&self, acc: &Accounting, messages: Vec<Message>) -> Result<()> {
        let count = messages.len() as u64;
        let bytes: u64 = messages.iter().map(|m| m.len() as u64).sum();
        self.reserve(acc, count, bytes)?;
        let before = acc.counters.enqueued.fetch_add(count, Relaxed);
        for message in messages {
            self.shared.items.push(message);
        }
        self.wake_if_needed(before, before + count);
        Ok(())
    }

    pub fn push_one(&self, acc: &Accounting, message: Message) -> Result<()> {
        self.reserve(acc, 1, message.len() as u64)?;
        let before = acc.counters.enqueued.fetch_add(1, Relaxed);
        self.shared.items.push(message);
        self.wake_if_needed(before, before + 1);
        Ok(())
    }

    fn wake_if_needed(&self, before: u64, after: u64) {
        let crossed = before / self.wake_every != after / self.wake_every;
        // Pairs with the fence in `Receiver::park_if_empty`: either the dispatcher sees
        // this message, or this push sees `idle` set (and wakes it).
        fence(SeqCst);
        let idle = self.shared.idle.load(Relaxed) && self.shared.idle.swap(false, AcqRel);
        if crossed || idle {
            self.shared.wake.notify_one();
        }
    }

    fn reserve(&self, acc: &Accounting, count: u64, bytes: u64) -> Result<()> {
        let c = &acc.counters;
        let before = c.pending.fetch_add(count, Relaxed);
        if before + count > self.capacity {
            c.pending.fetch_sub(count, Relaxed);
            return Err(full(
                acc,
                count,
                "queue full (queue_capacity reached): dropped and counted",
            ));
        }
        let before_bytes = c.pending_bytes.fetch_add(bytes, Relaxed);
        if before_bytes + bytes > self.max_bytes {
            c.pending_bytes.fetch_sub(bytes, Relaxed);
            c.pending.fetch_sub(count, Relaxed);
            return Err(full(
                acc,
                count,
                "queue full (queue_max_bytes reached): dropped and counted",
            ));
        }
        Ok(())
    }
}

impl Receiver {
    pub fn pop(&self) -> Option<Message> {
        self.shared.items.pop()
    }

    /// Marks the dispatcher idle if the queue is empty. Returns false (and stays awake)
    /// when a message is waiting.
    pub fn park_if_empty(&self) -> bool {
        self.shared.idle.store(true, Relaxed);
        fence(SeqCst);
        if self.shared.items.is_empty() {
            return true;
        }
        self.shared.idle.store(false, Relaxed);
        false
    }

    /// The dispatcher is running again: producers need not wake it.
    pub fn unpark(&self) {
        self.shared.idle.store(false, Relaxed);
    }

    /// Completes when a producer wakes the dispatcher.
    pub async fn woken(&self) {
        self.shared.wake.notified().await;
    }
}

fn full(acc: &Accounting, count: u64, message: &'static str) -> Error {
    acc.counters.dropped_queue_full.fetch_add(count, Relaxed);
    Error::new(ErrorKind::QueueFull, message)
}
