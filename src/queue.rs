//! The bounded queue: the only thing the hot path touches.
//!
//! A push first asks the [guard](crate::guard) for room (one compare-and-swap); when either
//! cap would be passed the message is dropped, counted in `dropped_queue_full`, and the
//! caller gets [`ErrorKind::QueueFull`] at once. Nothing here waits or does I/O.
//!
//! The queue itself is a lock-free list that never wakes the dispatcher per message: a
//! wake-up is a system call, and at tens of thousands of events a second those would be the
//! most expensive part of `track`. The dispatcher polls on a timer while it has work, and
//! is woken only when it went idle, when `batch_size` more events arrived, or on flush.
//!
//! Flush markers travel through the same list, so a flush is ordered with the events.

use std::sync::atomic::Ordering::{AcqRel, Relaxed, SeqCst};
use std::sync::atomic::{fence, AtomicBool, AtomicU64};
use std::sync::Arc;

use crossbeam_queue::SegQueue;
use tokio::sync::Notify;

use crate::barrier::{FlushMarker, Latch};
use crate::error::{Error, ErrorKind, Result};
use crate::guard::{Guard, Refusal};
use crate::message::Message;
use crate::stats::Accounting;

/// Flush markers that may wait in the queue at once; more flushes are refused at once
/// (only reachable by many threads flushing through a long outage).
const MAX_MARKERS: u64 = 1024;

/// What travels through the queue.
pub enum Item {
    Message(Message),
    /// A flush: open its latch once everything queued before it is resolved.
    Flush(FlushMarker),
}

/// What the producers and the dispatcher share.
struct Shared {
    items: SegQueue<Item>,
    wake: Notify,
    /// Set by the dispatcher before it parks with nothing to do; the next push wakes it.
    idle: AtomicBool,
    markers: AtomicU64,
}

/// The producers' side.
#[derive(Clone)]
pub struct Queue {
    shared: Arc<Shared>,
    wake_every: u64,
}

/// The dispatcher's side.
pub struct Receiver {
    shared: Arc<Shared>,
}

impl Queue {
    /// `wake_every`: wake the dispatcher each time this many more events were queued.
    pub fn new(wake_every: u64) -> (Self, Receiver) {
        let shared = Arc::new(Shared {
            items: SegQueue::new(),
            wake: Notify::new(),
            idle: AtomicBool::new(true),
            markers: AtomicU64::new(0),
        });
        let queue = Self {
            shared: shared.clone(),
            wake_every: wake_every.max(1),
        };
        (queue, Receiver { shared })
    }

    /// Refuses at once, without building anything, when the guard cannot take even an
    /// event of `min_len` bytes.
    pub fn precheck(&self, acc: &Accounting, min_len: usize) -> Result<()> {
        acc.guard
            .precheck(1, Guard::charge(min_len))
            .map_err(|r| refused(acc, r, 1))
    }

    /// Whether [`Queue::precheck`] would refuse; nothing is counted.
    pub fn would_refuse(&self, acc: &Accounting, min_len: usize) -> bool {
        acc.guard.precheck(1, Guard::charge(min_len)).is_err()
    }

    /// Pushes all messages or none.
    pub fn push(&self, acc: &Accounting, messages: Vec<Message>) -> Result<()> {
        self.try_push(acc, messages)
            .map_err(|(refusal, messages)| refused(acc, refusal, messages.len() as u64))
    }

    pub fn push_one(&self, acc: &Accounting, message: Message) -> Result<()> {
        self.try_push_one(acc, message)
            .map_err(|(refusal, _)| refused(acc, refusal, 1))
    }

    /// As [`Queue::push_one`], but a refusal is neither counted nor the message dropped:
    /// it comes back to the caller (to go to the spool instead).
    pub fn try_push_one(
        &self,
        acc: &Accounting,
        message: Message,
    ) -> std::result::Result<(), (Refusal, Message)> {
        if let Err(refusal) = acc.guard.reserve(1, Guard::charge(message.len())) {
            return Err((refusal, message));
        }
        let before = acc.counters.enqueued.fetch_add(1, Relaxed);
        self.shared.items.push(Item::Message(message));
        self.wake_if_needed(before, before + 1);
        Ok(())
    }

    /// As [`Queue::push`], refusals coming back uncounted with the messages.
    pub fn try_push(
        &self,
        acc: &Accounting,
        messages: Vec<Message>,
    ) -> std::result::Result<(), (Refusal, Vec<Message>)> {
        let count = messages.len() as u64;
        let bytes: u64 = messages.iter().map(|m| Guard::charge(m.len())).sum();
        if let Err(refusal) = acc.guard.reserve(count, bytes) {
            return Err((refusal, messages));
        }
        let before = acc.counters.enqueued.fetch_add(count, Relaxed);
        for message in messages {
            self.shared.items.push(Item::Message(message));
        }
        self.wake_if_needed(before, before + count);
        Ok(())
    }

    /// Queues events read back from the spool (counted `replayed`, not `enqueued`), all
    /// or none; they come back if the guard has no room.
    pub fn push_replayed(
        &self,
        acc: &Accounting,
        messages: Vec<Message>,
    ) -> std::result::Result<(), Vec<Message>> {
        let count = messages.len() as u64;
        let bytes: u64 = messages.iter().map(|m| Guard::charge(m.len())).sum();
        if acc.guard.reserve(count, bytes).is_err() {
            return Err(messages);
        }
        acc.counters.replayed.fetch_add(count, Relaxed);
        for message in messages {
            self.shared.items.push(Item::Message(message));
        }
        // Replay is never the hot path: wake the dispatcher now.
        self.shared.idle.store(false, Relaxed);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Queues a flush marker behind every event queued so far and wakes the dispatcher.
    pub fn push_flush(&self) -> Result<Arc<Latch>> {
        if self.shared.markers.fetch_add(1, AcqRel) >= MAX_MARKERS {
            self.shared.markers.fetch_sub(1, AcqRel);
            return Err(Error::new(
                ErrorKind::Timeout,
                "too many flushes are already waiting for the service",
            ));
        }
        let (marker, latch) = FlushMarker::new();
        self.shared.items.push(Item::Flush(marker));
        self.shared.idle.store(false, Relaxed);
        self.shared.wake.notify_one();
        Ok(latch)
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

    /// Takes every queued message (still charged to the guard) for the spool, opening the
    /// flush markers it meets.
    pub fn take_messages(&self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(item) = self.shared.items.pop() {
            match item {
                Item::Message(m) => out.push(m),
                Item::Flush(_) => {
                    self.shared.markers.fetch_sub(1, AcqRel);
                }
            }
        }
        out
    }

    /// Empties the queue after the client gave up (its events were counted by the
    /// abandon): frees their memory and opens the flush markers (by dropping them).
    pub fn discard_all(&self) {
        while let Some(item) = self.shared.items.pop() {
            if matches!(item, Item::Flush(_)) {
                self.shared.markers.fetch_sub(1, AcqRel);
            }
        }
    }
}

impl Receiver {
    pub fn pop(&self) -> Option<Item> {
        let item = self.shared.items.pop()?;
        if matches!(item, Item::Flush(_)) {
            self.shared.markers.fetch_sub(1, AcqRel);
        }
        Some(item)
    }

    /// Marks the dispatcher idle if the queue is empty. Returns false (and stays awake)
    /// when an item is waiting.
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

fn refused(acc: &Accounting, refusal: Refusal, count: u64) -> Error {
    let message = match refusal {
        Refusal::Closed => return Error::new(ErrorKind::Closed, "client is closed"),
        Refusal::FullEvents => "queue full (queue_capacity reached): dropped and counted",
        Refusal::FullBytes => "queue full (queue_max_bytes reached): dropped and counted",
    };
    acc.counters.dropped_queue_full.fetch_add(count, Relaxed);
    Error::new(ErrorKind::QueueFull, message)
}
