//! The disk spool (opt-in with `spool_dir`): where events go instead of being dropped or
//! abandoned, and where they come back from once the service answers again.
//!
//! - **Overflow**: an event the queue-size guard refuses is handed to the spool through a
//!   bounded, lock-free hand-off ([`HANDOFF_MAX_BYTES`]); only when that is full too is it
//!   dropped (`dropped_queue_full`, as without a spool). The caller's thread never touches
//!   the disk.
//! - **Failed deliveries** (out of retries, retry budget or circuit patience) and events
//!   still pending when a close deadline nears are **spilled**: handed over still charged to
//!   the guard, so the memory bound is the same as without a spool.
//! - One **writer thread** per client ([`worker`]) owns every file: it appends records to
//!   its own segments, makes them durable every `spool_sync_interval_ms`, enforces
//!   `spool_max_bytes` and `spool_max_age`, adopts the segments of dead writers, and reads
//!   segments back for the [`replay`] task.
//!
//! Accounting, per client: `enqueued + replayed = sent + rejected + failed + spooled +
//! queue_len + spool_pending` when quiescent, and for the directory: what was spooled is
//! replayed, expired, corrupt or still on disk.

mod dir;
mod format;
mod replay;
mod worker;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::sync::Mutex;
use crossbeam_queue::SegQueue;

use crate::barrier::Latch;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::guard::Guard;
use crate::message::Message;
use crate::stats::Accounting;

pub use dir::close_inherited_locks;
pub use replay::run as replay_task;

/// Overflow events waiting for the writer at most hold this much (their JSON plus
/// the per-event overhead): the spool's addition to the memory bound.
pub(crate) const HANDOFF_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// What the hot path and the delivery side hand to the writer.
enum Handoff {
    /// Refused by the guard; charged to the hand-off's own cap.
    Overflow(Message),
    /// Still charged to the guard (a failed delivery, or pending at close).
    Spill(Vec<Message>),
}

/// A request from the replay task or the client, read by the writer thread.
enum Command {
    /// Read the next chunk of at most this many events and bytes.
    Replay {
        events: usize,
        bytes: usize,
        answer: tokio::sync::oneshot::Sender<Option<replay::Chunk>>,
    },
    /// A chunk's events were all resolved (`done`) or not (they stay on disk).
    Ack { id: u64, done: bool },
    /// Write what was handed over, make it durable and stop, by `deadline`.
    Stop { deadline: Instant },
}

struct Shared {
    handoff: SegQueue<Handoff>,
    /// Bytes of overflow events in the hand-off (capped at [`HANDOFF_MAX_BYTES`]).
    overflow_bytes: AtomicU64,
    commands: Mutex<VecDeque<Command>>,
    /// The writer thread, for waking it (set once it started; no lock on the hot path).
    thread: OnceLock<std::thread::Thread>,
    /// Opened when the writer has finished after a stop.
    stopped: Latch,
    /// Events the stopping writer could not write before its deadline.
    lost_at_stop: AtomicU64,
    acc: Arc<Accounting>,
}

/// A client's spool: the handle the hot path, the consumers and close share.
pub struct Spool {
    shared: Arc<Shared>,
}

/// Settings the writer needs, from the client's config.
#[derive(Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub max_age: Duration,
    pub sync_interval: Duration,
    pub token: String,
}

impl Settings {
    pub fn of(config: &Config) -> Option<Self> {
        Some(Self {
            dir: PathBuf::from(config.spool_dir.as_ref()?),
            max_bytes: config.spool_max_bytes,
            max_age: config.spool_max_age,
            sync_interval: config.spool_sync_interval,
            token: config.token.clone(),
        })
    }
}

impl Spool {
    /// Starts the writer thread for a client with `spool_dir` set; `None` otherwise. A
    /// directory that cannot be used is not an error here: the writer says so in the log
    /// and counts what it cannot write (`dropped_spool_error`), retrying as it goes.
    pub fn start(config: &Config, acc: Arc<Accounting>) -> Result<Option<Arc<Spool>>> {
        let Some(settings) = Settings::of(config) else {
            return Ok(None);
        };
        let shared = Arc::new(Shared {
            handoff: SegQueue::new(),
            overflow_bytes: AtomicU64::new(0),
            commands: Mutex::new(VecDeque::new()),
            thread: OnceLock::new(),
            stopped: Latch::default(),
            lost_at_stop: AtomicU64::new(0),
            acc,
        });
        let worker = worker::Worker::new(settings, shared.clone());
        let handle = std::thread::Builder::new()
            .name("bulkhead-spool".into())
            .spawn(move || worker.run())
            .map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    format!("could not start the spool writer thread: {e}"),
                )
            })?;
        let _ = shared.thread.set(handle.thread().clone());
        Ok(Some(Arc::new(Spool { shared })))
    }

    fn wake(&self) {
        if let Some(t) = self.shared.thread.get() {
            t.unpark();
        }
    }

    /// Whether the hand-off has room for an overflow event of `len` bytes of JSON. A read
    /// only, for refusing before the event is built.
    pub fn has_room(&self, len: usize) -> bool {
        self.shared.overflow_bytes.load(Relaxed) + Guard::charge(len) <= HANDOFF_MAX_BYTES
    }

    /// Takes events the guard refused, all or none; they count as `enqueued` (and
    /// `spool_pending` until written). `Err` with the messages when the hand-off is full.
    pub fn offer(&self, acc: &Accounting, messages: Vec<Message>) -> Result<(), Vec<Message>> {
        let count = messages.len() as u64;
        let bytes: u64 = messages.iter().map(|m| Guard::charge(m.len())).sum();
        let mut current = self.shared.overflow_bytes.load(Relaxed);
        loop {
            if current + bytes > HANDOFF_MAX_BYTES {
                return Err(messages);
            }
            match self.shared.overflow_bytes.compare_exchange_weak(
                current,
                current + bytes,
                AcqRel,
                Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        acc.counters.enqueued.fetch_add(count, Relaxed);
        acc.counters.spool_pending.fetch_add(count, Relaxed);
        for message in messages {
            self.shared.handoff.push(Handoff::Overflow(message));
        }
        // Wake the writer at the start of a burst and when the hand-off is half full;
        // otherwise it finds the events on its next tick.
        let half = HANDOFF_MAX_BYTES / 2;
        if current == 0 || (current < half && current + bytes >= half) {
            self.wake();
        }
        Ok(())
    }

    /// Hands over events still charged to the guard; the writer releases them once written
    /// (`spooled`) or counts them failed if it cannot write them.
    pub fn spill(&self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        self.shared.handoff.push(Handoff::Spill(messages));
        self.wake();
    }

    fn command(&self, command: Command) {
        self.shared.commands.lock().push_back(command);
        self.wake();
    }

    /// Asks the writer to write what it holds, make it durable and stop, by `deadline`;
    /// waits for it at most until then (plus a little, for the last write to finish).
    /// True if everything handed over reached the disk.
    pub fn stop(&self, deadline: Instant) -> bool {
        self.command(Command::Stop { deadline });
        self.shared
            .stopped
            .wait_until(deadline + Duration::from_millis(50))
            && self.shared.lost_at_stop.load(Relaxed) == 0
    }

    /// As [`Spool::stop`], without waiting.
    pub fn stop_in_background(&self, deadline: Instant) {
        self.command(Command::Stop { deadline });
    }
}
