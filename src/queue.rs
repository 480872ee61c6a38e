//! The bounded queue and its size guard: the only thing the hot path touches.
//!
//! The guard caps *pending* events, wherever they are (queued, batching, or in a request),
//! by count and by bytes, so memory has a hard ceiling. When a push would pass either cap
//! the message is dropped, counted in `dropped_queue_full`, and the caller gets
//! [`ErrorKind::QueueFull`] at once. Nothing here waits or does I/O.

use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::mpsc;

use crate::error::{Error, ErrorKind, Result};
use crate::message::Message;
use crate::stats::Accounting;

pub struct Queue {
    tx: mpsc::UnboundedSender<Message>,
    capacity: u64,
    max_bytes: u64,
}

pub type Receiver = mpsc::UnboundedReceiver<Message>;

impl Queue {
    pub fn new(capacity: u64, max_bytes: u64) -> (Self, Receiver) {
        // Unbounded channel, bounded by the guard: the guard counts everything pending,
        // which a channel capacity alone could not.
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Self {
            tx,
            capacity,
            max_bytes,
        };
        (queue, rx)
    }

    /// Pushes all messages or none.
    pub fn push(&self, acc: &Accounting, messages: Vec<Message>) -> Result<()> {
        let count = messages.len() as u64;
        let mut bytes: u64 = messages.iter().map(|m| m.len() as u64).sum();
        self.reserve(acc, count, bytes)?;
        acc.counters.enqueued.fetch_add(count, Relaxed);
        let mut left = count;
        for message in messages {
            let size = message.len() as u64;
            if self.tx.send(message).is_err() {
                // The dispatcher is gone (closed under us): these were never queued.
                rollback(acc, left, bytes);
                return Err(closed());
            }
            left -= 1;
            bytes -= size;
        }
        Ok(())
    }

    pub fn push_one(&self, acc: &Accounting, message: Message) -> Result<()> {
        let bytes = message.len() as u64;
        self.reserve(acc, 1, bytes)?;
        acc.counters.enqueued.fetch_add(1, Relaxed);
        if self.tx.send(message).is_err() {
            rollback(acc, 1, bytes);
            return Err(closed());
        }
        Ok(())
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

fn rollback(acc: &Accounting, count: u64, bytes: u64) {
    let c = &acc.counters;
    c.enqueued.fetch_sub(count, Relaxed);
    c.pending.fetch_sub(count, Relaxed);
    c.pending_bytes.fetch_sub(bytes, Relaxed);
}

fn closed() -> Error {
    Error::new(ErrorKind::Closed, "client is closed")
}

fn full(acc: &Accounting, count: u64, message: &'static str) -> Error {
    acc.counters.dropped_queue_full.fetch_add(count, Relaxed);
    Error::new(ErrorKind::QueueFull, message)
}
