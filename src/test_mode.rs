//! `test_mode`: events are validated and built exactly as in production, then kept in a
//! bounded in-memory list for the host's own tests instead of being queued. Nothing is
//! sent and no connection is made.
//!
//! Beyond `test_mode_capacity` kept events, new ones are refused as by a full queue
//! (`QueueFull`, counted in `dropped_queue_full`), all or none for an array. Kept events
//! are not counted as enqueued or sent: the delivery counters stay as they were.

use crate::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;

use crate::error::{Error, ErrorKind, Result};
use crate::message::{Endpoint, Message};
use crate::stats::Accounting;

pub struct TestEvents {
    capacity: usize,
    events: Mutex<Vec<Message>>,
}

/// The name `send` takes for an endpoint (and the test list reports).
fn endpoint_name(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Track => "events",
        Endpoint::Engage => "people",
        Endpoint::Groups => "groups",
        Endpoint::Import => "imports",
    }
}

impl TestEvents {
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            events: Mutex::new(Vec::new()),
        }
    }

    /// Keeps all of `messages`, or none of them when that would pass the capacity.
    pub fn push(&self, acc: &Accounting, messages: Vec<Message>) -> Result<()> {
        let mut events = self.events.lock();
        if events.len().saturating_add(messages.len()) > self.capacity {
            drop(events);
            acc.counters
                .dropped_queue_full
                .fetch_add(messages.len() as u64, Relaxed);
            return Err(Error::new(
                ErrorKind::QueueFull,
                format!(
                    "test_mode: {} events are kept already (test_mode_capacity); clear them",
                    self.capacity
                ),
            ));
        }
        events.extend(messages);
        Ok(())
    }

    pub fn clear(&self) {
        self.events.lock().clear();
    }

    /// `[{"endpoint": "events"|"people"|"groups"|"imports", "data": <message>}, ...]`,
    /// oldest first; `data` is the message exactly as it would have been sent.
    pub fn to_json(&self) -> String {
        let events = self.events.lock();
        let mut out = String::with_capacity(2 + events.iter().map(|m| m.len() + 32).sum::<usize>());
        out.push('[');
        for (i, message) in events.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"endpoint\":\"");
            out.push_str(endpoint_name(message.endpoint));
            out.push_str("\",\"data\":");
            out.push_str(&String::from_utf8_lossy(&message.json));
            out.push('}');
        }
        out.push(']');
        out
    }
}
