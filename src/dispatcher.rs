//! The dispatcher: one task per client on the global runtime. It drains the queue into
//! open batches (one per endpoint and credentials), closes a batch at `batch_size`,
//! `batch_max_bytes`, `flush_interval` or on flush, and hands it to a pooled consumer.
//! Waiting for a free consumer is the back-pressure: while every consumer is busy (a slow or
//! dead service), the queue fills and the guard starts dropping.
//!
//! A flush marker closes every open batch and then waits, through [`Batches`], for every
//! batch handed out before it (see [`crate::barrier`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::barrier::{BatchTicket, Batches, FlushMarker};
use crate::config::ImportCredentials;
use crate::consumer::{Batch, ConsumerPool, DeliveryContext};
use crate::message::{Endpoint, Message};
use crate::queue::{Item, Receiver};
use crate::transport;

/// Messages taken from the queue before the dispatcher checks its timers again.
const DRAIN_BUDGET: usize = 4096;

/// A body's bytes beyond its messages' (the form prefix and suffix, the largest framing).
const BODY_FRAMING: u64 = "data=%5B%5D&verbose=1&ip=0".len() as u64;

struct OpenBatch {
    batch: Batch,
    /// The request body it would make, before compression: what `batch_max_bytes` caps.
    body_bytes: u64,
    opened: Instant,
}

impl OpenBatch {
    /// The batch to send, with the length of its messages' encoding, counted as it grew.
    fn close(self) -> Batch {
        let encoded_len = (self.body_bytes - BODY_FRAMING) as usize;
        Batch {
            encoded_len: Some(encoded_len),
            ..self.batch
        }
    }
}

pub struct Dispatcher {
    rx: Receiver,
    ctx: Arc<DeliveryContext>,
    pool: ConsumerPool,
    batches: Arc<Batches>,
    open: Vec<OpenBatch>,
    batch_size: usize,
    batch_max_bytes: u64,
    interval: Duration,
    /// How often the queue is polled while batches are open (producers do not wake it).
    tick: Duration,
}

/// How a drain of the queue ended.
enum Drained {
    Empty,
    BudgetSpent,
    Cancelled,
}

impl Dispatcher {
    pub fn new(
        rx: Receiver,
        ctx: Arc<DeliveryContext>,
        pool: ConsumerPool,
        batches: Arc<Batches>,
    ) -> Self {
        let config = ctx.config.clone();
        let interval = config.flush_interval;
        Self {
            rx,
            ctx,
            pool,
            batches,
            open: Vec::new(),
            batch_size: config.batch_size as usize,
            batch_max_bytes: config.batch_max_bytes,
            interval,
            tick: (interval / 4).clamp(Duration::from_millis(1), Duration::from_millis(250)),
        }
    }

    /// Runs until the client is cancelled; then hands its open batches to the spool if the
    /// close asked for that.
    pub async fn run(mut self) {
        self.run_until_cancelled().await;
        for open in std::mem::take(&mut self.open) {
            self.ctx.spill_if_closing(open.batch.messages);
        }
    }

    async fn run_until_cancelled(&mut self) {
        let cancel = self.ctx.cancel.clone();
        let timer = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(timer);
        loop {
            let drained = self.drain(DRAIN_BUDGET).await;
            let now = Instant::now();
            let interval = self.interval;
            if matches!(drained, Drained::Cancelled)
                || !self.dispatch_where(|b| b.opened + interval <= now).await
            {
                return;
            }
            if matches!(drained, Drained::BudgetSpent) {
                // More is queued: keep going, but let other tasks run in between.
                tokio::task::yield_now().await;
                continue;
            }
            // With batches open, poll on a timer; with nothing at all, park until a
            // producer wakes us (unless a message slipped in meanwhile).
            let next_due = self.open.iter().map(|b| b.opened + self.interval).min();
            let parked = match next_due {
                Some(due) => {
                    timer.as_mut().reset(due.min(now + self.tick));
                    false
                }
                None if self.rx.park_if_empty() => true,
                None => continue,
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = &mut timer, if !parked => {}
                _ = self.rx.woken() => {}
            }
            if parked {
                self.rx.unpark();
            }
        }
    }

    /// Moves up to `budget` queued items into batches, sending the ones that fill up.
    async fn drain(&mut self, budget: usize) -> Drained {
        for _ in 0..budget {
            let added = match self.rx.pop() {
                None => return Drained::Empty,
                Some(Item::Message(message)) => self.add(message).await,
                Some(Item::Flush(latch)) => self.flush(latch).await,
            };
            if !added {
                return Drained::Cancelled;
            }
        }
        Drained::BudgetSpent
    }

    /// Everything queued before the marker is in an open batch or already handed out:
    /// hand out the open ones, then wait for all of them.
    async fn flush(&mut self, marker: FlushMarker) -> bool {
        if !self.dispatch_where(|_| true).await {
            return false;
        }
        self.batches.open_after_started(marker);
        true
    }

    /// Adds a message to its open batch, sending the batch first if the message would
    /// take its encoded body past `batch_max_bytes`, and after if it reaches `batch_size`.
    async fn add(&mut self, message: Message) -> bool {
        let size = message.len() as u64;
        let body_size = transport::encoded_len(message.endpoint, &message.json) as u64;
        if let Some(i) = self.find(message.endpoint, &message.credentials) {
            if self.open[i].body_bytes + body_size > self.batch_max_bytes {
                let full = self.open.swap_remove(i);
                if !self.dispatch(full.close()).await {
                    return false;
                }
            }
        }
        let index = match self.find(message.endpoint, &message.credentials) {
            Some(i) => i,
            None => {
                self.open.push(OpenBatch {
                    batch: Batch {
                        endpoint: message.endpoint,
                        credentials: message.credentials.clone(),
                        messages: Vec::with_capacity(self.batch_size.min(256)),
                        bytes: 0,
                        encoded_len: None,
                    },
                    body_bytes: BODY_FRAMING,
                    opened: Instant::now(),
                });
                self.open.len() - 1
            }
        };
        let open = &mut self.open[index];
        open.batch.bytes += size;
        open.body_bytes += body_size;
        open.batch.messages.push(message);
        if open.batch.messages.len() >= self.batch_size {
            let full = self.open.swap_remove(index);
            return self.dispatch(full.close()).await;
        }
        true
    }

    fn find(
        &self,
        endpoint: Endpoint,
        credentials: &Option<Arc<ImportCredentials>>,
    ) -> Option<usize> {
        self.open.iter().position(|o| {
            o.batch.endpoint == endpoint
                && match (&o.batch.credentials, credentials) {
                    (None, None) => true,
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                    _ => false,
                }
        })
    }

    async fn dispatch_where(&mut self, due: impl Fn(&OpenBatch) -> bool) -> bool {
        let mut i = 0;
        while i < self.open.len() {
            if due(&self.open[i]) {
                let open = self.open.swap_remove(i);
                if !self.dispatch(open.close()).await {
                    return false;
                }
            } else {
                i += 1;
            }
        }
        true
    }

    /// Waits for a free consumer (the back-pressure point) and starts the send.
    async fn dispatch(&mut self, batch: Batch) -> bool {
        let consumer = tokio::select! {
            biased;
            _ = self.ctx.cancel.cancelled() => None,
            c = self.pool.get() => c.ok(),
        };
        let Some(mut consumer) = consumer else {
            self.ctx.spill_if_closing(batch.messages);
            return false;
        };
        let ctx = self.ctx.clone();
        let ticket = BatchTicket::new(&self.batches);
        tokio::spawn(async move {
            consumer.deliver(&ctx, batch).await;
            // Dropping `consumer` returns it to the pool; dropping the ticket (also if the
            // task is dropped unfinished) releases the flushes waiting for this batch.
            drop(ticket);
        });
        true
    }
}
