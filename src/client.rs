//! [`Client`]: the Rust API that the C API wraps.
//!
//! ```no_run
//! use bulkhead::{Client, Config};
//! use std::time::Duration;
//!
//! let client = Client::new(Config::from_json(r#"{"token":"YOUR_TOKEN"}"#)?)?;
//! client.track("user-1", "Signed up", Some(r#"{"plan":"pro"}"#))?; // never blocks
//! client.close(Duration::from_secs(2))?;                          // bounded
//! # Ok::<(), bulkhead::Error>(())
//! ```

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::barrier::{Batches, Latch};
use crate::config::Config;
use crate::consumer::{new_pool, DeliveryContext};
use crate::dispatcher::Dispatcher;
use crate::error::{Error, ErrorKind, Result};
use crate::guard::Refusal;
use crate::message::{credentials_from, Endpoint, Message, MessageBuilder};
use crate::queue::{Queue, Receiver};
use crate::runtime;
use crate::spool::{self, Spool};
use crate::stats::{Accounting, DeliveryError, FlushOutcome, HostLog, Note, Stats};
use crate::test_mode::TestEvents;

/// A thread-safe handle; clones share one client.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientHandle>,
}

/// The state of one client in one process generation. A forked child builds a new one and
/// leaks the parent's (whose locks and tasks belong to threads that do not exist there).
struct Core {
    generation: u64,
    queue: Queue,
    ctx: Arc<DeliveryContext>,
    batches: Arc<Batches>,
    /// `test_mode`: where events go instead of the queue.
    test_events: Option<TestEvents>,
}

pub struct ClientHandle {
    config: Arc<Config>,
    builder: MessageBuilder,
    core: AtomicPtr<Core>,
    /// Set by the first close; later calls that queue are refused without touching the core.
    closed: AtomicBool,
    me: Weak<ClientHandle>,
    /// Non-zero while log notes or delivery errors wait to be read (see `log_hint`).
    log_hint: Arc<AtomicU64>,
}

impl Core {
    fn new(config: &Arc<Config>, log_hint: &Arc<AtomicU64>) -> Result<(Core, Receiver)> {
        let http = runtime::http_client(&runtime::HttpOptions::of(config))?;
        let accounting = Arc::new(
            Accounting::new(
                config.max_recent_errors as usize,
                config.queue_capacity,
                config.queue_max_bytes,
            )
            .with_host_log(HostLog::new(config.log_level, log_hint.clone())),
        );
        let spool = match config.test_mode {
            true => None,
            false => Spool::start(config, accounting.clone())?,
        };
        let ctx =
            Arc::new(DeliveryContext::new(config.clone(), accounting, http).with_spool(spool));
        let (queue, rx) = Queue::new(config.batch_size);
        let core = Core {
            generation: runtime::generation(),
            queue,
            ctx,
            batches: Arc::new(Batches::default()),
            test_events: config
                .test_mode
                .then(|| TestEvents::new(config.test_mode_capacity)),
        };
        Ok((core, rx))
    }

    fn start(&self, rx: Receiver, handle: Weak<ClientHandle>) -> Result<()> {
        let pool = new_pool(self.ctx.config.pool_size as usize);
        let dispatcher = Dispatcher::new(rx, self.ctx.clone(), pool, self.batches.clone());
        let replay = self
            .ctx
            .spool
            .clone()
            .map(|s| spool::replay_task(s, self.queue.clone(), self.ctx.clone()));
        runtime::start_client(handle, async move {
            let replay = async {
                if let Some(replay) = replay {
                    replay.await;
                }
            };
            tokio::join!(dispatcher.run(), replay);
        })
    }

    /// With a spool, close keeps this much of its time for handing what is still pending
    /// to the spool's writer and making it durable.
    fn spill_grace(&self, left: Duration) -> Duration {
        match self.ctx.spool {
            Some(_) => (left / 4).min(Duration::from_millis(500)),
            None => Duration::ZERO,
        }
    }

    /// Stops delivery and hands everything pending to the spool (queued here; batching and
    /// in a request, by the tasks the cancellation stops). False without a spool.
    fn start_spill(&self) -> bool {
        if !self.ctx.start_spilling() {
            return false;
        }
        self.ctx.cancel.cancel();
        if let Some(spool) = &self.ctx.spool {
            spool.spill(self.queue.take_messages());
        }
        true
    }

    /// Whether something is still pending that the spool's writer has not taken yet.
    fn spilling_until(&self, deadline: Instant) -> bool {
        self.ctx.accounting.guard.pending().events > 0 && Instant::now() < deadline
    }

    /// [`Core::start_spill`], then waits until the writer took it all or `deadline`.
    fn spill_pending(&self, deadline: Instant) {
        if self.start_spill() {
            while self.spilling_until(deadline) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// As [`Core::spill_pending`], on the runtime.
    async fn spill_pending_async(&self, deadline: Instant) {
        if self.start_spill() {
            while self.spilling_until(deadline) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// Takes events the guard refused to the spool's hand-off; when that is full too they
    /// are dropped and counted as without a spool.
    fn overflow(&self, spool: &Spool, messages: Vec<Message>) -> Result<()> {
        let acc = &self.ctx.accounting;
        spool.offer(acc, messages).map_err(|messages| {
            acc.counters
                .dropped_queue_full
                .fetch_add(messages.len() as u64, Ordering::Relaxed);
            Error::new(
                ErrorKind::QueueFull,
                "queue full and the spool's hand-off full: dropped and counted",
            )
        })
    }

    /// Queues a flush marker; `None` if the client already gave up (nothing is pending).
    fn barrier(&self) -> Result<Option<Arc<Latch>>> {
        if self.ctx.accounting.guard.is_abandoned() {
            return Ok(None);
        }
        let latch = self.queue.push_flush()?;
        if self.ctx.accounting.guard.is_abandoned() {
            // Gave up while we queued: nobody will reach the marker, so open it here.
            self.queue.discard_all();
        }
        Ok(Some(latch))
    }

    /// Stops delivery: counts what is pending as failed (dropped_shutdown), stops the
    /// dispatcher and the batches in flight, frees what is queued, releases flushes.
    fn give_up(&self) {
        self.ctx
            .accounting
            .abandon_pending("client released before its events were delivered");
        self.ctx.cancel.cancel();
        self.queue.discard_all();
        self.batches.release_all();
        if let Some(spool) = &self.ctx.spool {
            spool.stop_in_background(Instant::now() + self.ctx.config.shutdown_timeout);
        }
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        let core = self.core.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if core.is_null() {
            return;
        }
        // SAFETY: non-null cores are published Boxes owned by this handle; `&mut self`
        // means no other thread is using the handle.
        let generation = unsafe { &*core }.generation;
        if generation != runtime::generation() {
            // The parent's core in a forked child: leak it, touch nothing inside.
            return;
        }
        // SAFETY: as above; only this handle frees its core, once.
        let core = unsafe { Box::from_raw(core) };
        core.give_up();
    }
}

impl ClientHandle {
    fn core(&self) -> Result<&Core> {
        loop {
            let ptr = self.core.load(Ordering::Acquire);
            // SAFETY: `core` is non-null from construction until drop, and a replaced core
            // is leaked, never freed, so the reference stays valid for `&self`'s lifetime.
            let core = unsafe { &*ptr };
            if core.generation == runtime::generation() {
                return Ok(core);
            }
            self.rebuild_after_fork(ptr)?;
        }
    }

    #[cold]
    fn rebuild_after_fork(&self, old: *mut Core) -> Result<()> {
        let (core, rx) = Core::new(&self.config, &self.log_hint)?;
        let fresh = Box::into_raw(Box::new(core));
        match self
            .core
            .compare_exchange(old, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                // The old core is deliberately leaked (see the module docs of `runtime`).
                // SAFETY: `fresh` is now published and owned by this handle.
                unsafe { &*fresh }.start(rx, self.me.clone())
            }
            Err(_) => {
                // Another thread rebuilt first; ours was never published.
                // SAFETY: `fresh` came from Box::into_raw above and was not shared.
                drop(unsafe { Box::from_raw(fresh) });
                Ok(())
            }
        }
    }

    /// Refuses at once when the guard has no room for an event of at least `min_len` bytes;
    /// only then builds the message.
    fn enqueue(
        &self,
        min_len: usize,
        built: impl FnOnce(&MessageBuilder) -> Result<Message>,
    ) -> Result<()> {
        let core = self.open_core()?;
        if let Some(test) = &core.test_events {
            let message = built(&self.builder).inspect_err(|e| count_refusal(core, e))?;
            return test.push(&core.ctx.accounting, vec![message]);
        }
        if let Some(spool) = &core.ctx.spool {
            let acc = &core.ctx.accounting;
            if core.queue.would_refuse(acc, min_len) && !spool.has_room(min_len) {
                core.queue
                    .precheck(acc, min_len)
                    .inspect_err(|e| self.note_drop(core, e))?;
            }
            let message = built(&self.builder).inspect_err(|e| count_refusal(core, e))?;
            return match core.queue.try_push_one(acc, message) {
                Ok(()) => Ok(()),
                Err((Refusal::Closed, _)) => Err(Error::new(ErrorKind::Closed, "client is closed")),
                Err((_, message)) => core
                    .overflow(spool, vec![message])
                    .inspect_err(|e| self.note_drop(core, e)),
            };
        }
        core.queue
            .precheck(&core.ctx.accounting, min_len)
            .inspect_err(|e| self.note_drop(core, e))?;
        let message = built(&self.builder).inspect_err(|e| count_refusal(core, e))?;
        core.queue
            .push_one(&core.ctx.accounting, message)
            .inspect_err(|e| self.note_drop(core, e))
    }

    /// The one-time warning when the guard first drops (an atomic load after that).
    fn note_drop(&self, core: &Core, error: &Error) {
        if error.kind() == ErrorKind::QueueFull {
            core.ctx
                .accounting
                .note_queue_full(self.config.queue_capacity, self.config.queue_max_bytes);
        }
    }

    fn open_core(&self) -> Result<&Core> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::Closed, "client is closed"));
        }
        self.core()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn shutdown_timeout(&self) -> Duration {
        self.config.shutdown_timeout
    }

    /// The core of this process generation, if it exists yet. Read-only calls and close
    /// use this so that a forked child that never queued anything starts nothing for them.
    fn current_core(&self) -> Option<&Core> {
        let ptr = self.core.load(Ordering::Acquire);
        // SAFETY: as in `core`.
        let core = unsafe { &*ptr };
        (core.generation == runtime::generation()).then_some(core)
    }

    /// Closes: refuses new events, waits until everything queued is resolved or
    /// `deadline`, then gives up on the rest (counted as failed).
    pub(crate) fn close_until(&self, deadline: Instant) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        // A child that never used this client has nothing of its own to deliver.
        let Some(core) = self.current_core() else {
            return Ok(());
        };
        core.ctx.accounting.guard.close();
        let grace = core.spill_grace(deadline.saturating_duration_since(Instant::now()));
        let finished = match core.barrier() {
            Ok(Some(latch)) => latch.wait_until(deadline - grace),
            Ok(None) => true,
            Err(_) => false,
        };
        // With a spool, what was not delivered by now is on disk, which counts as done.
        let mut finished = finished;
        if let Some(spool) = &core.ctx.spool {
            if !finished {
                core.spill_pending(deadline);
            }
            finished = spool.stop(deadline);
        }
        let abandoned = core
            .ctx
            .accounting
            .abandon_pending("close or shutdown deadline passed");
        core.give_up();
        match (finished, abandoned) {
            (true, 0) => Ok(()),
            (_, n) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "close deadline passed: {n} undelivered events were counted as failed \
                     (dropped_shutdown)"
                ),
            )),
        }
    }

    /// Closes without blocking the caller: a task on the runtime does what `close_until`
    /// does, within `shutdown_timeout`. No thread per client, and none at all in a forked
    /// child that never used the client.
    fn close_in_background(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(core) = self.current_core() else {
            return;
        };
        core.ctx.accounting.guard.close();
        let latch = match core.barrier() {
            Ok(Some(latch)) => latch,
            Ok(None) | Err(_) => return core.give_up(),
        };
        let Some(handle) = self.me.upgrade() else {
            return core.give_up();
        };
        let timeout = self.config.shutdown_timeout;
        let grace = core.spill_grace(timeout);
        match runtime::handle() {
            Ok(rt) => {
                rt.spawn(async move {
                    let deadline = Instant::now() + timeout;
                    let finished = latch.wait_for(timeout - grace).await;
                    if let Some(core) = handle.current_core() {
                        if !finished {
                            core.spill_pending_async(deadline).await;
                        }
                        if let Some(spool) = &core.ctx.spool {
                            spool.stop_in_background(deadline);
                        }
                        core.give_up();
                    }
                });
            }
            Err(_) => core.give_up(),
        }
    }
}

/// A JSON object with no `"data"` key anywhere: one message, never an envelope of several.
/// Surely one message: an object that is no mixpanel-ruby envelope (which may hold an
/// array); read as bytes, so that it can be told before the text is validated.
fn is_single_message(json: &[u8]) -> bool {
    // Built once: a searcher costs more to set up than to run over a 300-byte message.
    static DATA_KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"data\""));
    json.trim_ascii_start().starts_with(b"{") && DATA_KEY.find(json).is_none()
}

fn count_refusal(core: &Core, error: &Error) {
    let c = &core.ctx.accounting.counters;
    let counter = match error.kind() {
        ErrorKind::TooLarge => &c.dropped_too_large,
        ErrorKind::InvalidArgument | ErrorKind::InvalidJson | ErrorKind::InvalidUtf8 => {
            &c.dropped_invalid
        }
        _ => return,
    };
    // Per event: a refused array counts each of its events.
    counter.fetch_add(error.events(), Ordering::Relaxed);
}

impl Client {
    /// Starts a client (and the global runtime, the first time). Never does network I/O.
    pub fn new(config: Config) -> Result<Client> {
        config.validate()?;
        let config = Arc::new(config);
        let log_hint = Arc::new(AtomicU64::new(0));
        let (core, rx) = Core::new(&config, &log_hint)?;
        let builder = MessageBuilder::new(&config.token, config.max_event_bytes)
            .with_import_credentials(config.has_import_credentials());
        let handle = Arc::new_cyclic(|me| ClientHandle {
            config,
            builder,
            core: AtomicPtr::new(Box::into_raw(Box::new(core))),
            closed: AtomicBool::new(false),
            me: me.clone(),
            log_hint,
        });
        handle.core()?.start(rx, Arc::downgrade(&handle))?;
        Ok(Client { inner: handle })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Refuses a `track` or `import` with text of these lengths when the guard could not take
    /// it, before the text is validated or the event built, so that a dropped call costs
    /// next to nothing; the drop is counted. `Ok` when the call should go on.
    pub(crate) fn refuse_if_full(&self, distinct_id_len: usize, event_len: usize) -> Result<()> {
        let core = self.inner.open_core()?;
        if core.test_events.is_some() {
            return Ok(());
        }
        let min_len = self.inner.builder.min_event_len(distinct_id_len, event_len);
        if core.ctx.spool.as_ref().is_some_and(|s| s.has_room(min_len)) {
            return Ok(());
        }
        core.queue
            .precheck(&core.ctx.accounting, min_len)
            .inspect_err(|e| self.inner.note_drop(core, e))
    }

    /// As [`Client::refuse_if_full`] for `send`, with its text as bytes not yet validated:
    /// refuses what is surely one message (an array is read first, so that a refusal counts
    /// each of its events).
    pub(crate) fn refuse_send_if_full(&self, json: &[u8]) -> Result<()> {
        let core = self.inner.open_core()?;
        let acc = &core.ctx.accounting;
        if core.test_events.is_some()
            || !core.queue.would_refuse(acc, 0)
            || core.ctx.spool.as_ref().is_some_and(|s| s.has_room(0))
            || !is_single_message(json)
        {
            return Ok(());
        }
        core.queue
            .precheck(acc, 0)
            .inspect_err(|e| self.inner.note_drop(core, e))
    }

    /// Queues an event for `/track`. Returns at once; [`ErrorKind::QueueFull`] when the guard
    /// dropped it.
    pub fn track(&self, distinct_id: &str, event: &str, properties: Option<&str>) -> Result<()> {
        let min_len = self
            .inner
            .builder
            .min_event_len(distinct_id.len(), event.len());
        self.inner
            .enqueue(min_len, |b| b.event(distinct_id, event, properties))
    }

    /// Queues an event for `/import` with an explicit time in milliseconds.
    pub fn import(
        &self,
        distinct_id: &str,
        event: &str,
        time_ms: i64,
        properties: Option<&str>,
    ) -> Result<()> {
        let min_len = self
            .inner
            .builder
            .min_event_len(distinct_id.len(), event.len());
        self.inner.enqueue(min_len, |b| {
            b.import(distinct_id, event, time_ms, properties)
        })
    }

    /// Queues a user profile update (`operation` is `$set`, `$set_once`, `$add`, ...).
    pub fn people(&self, distinct_id: &str, operation: &str, value: Option<&str>) -> Result<()> {
        self.inner
            .enqueue(0, |b| b.people(distinct_id, operation, value))
    }

    /// Queues a group profile update.
    pub fn group(
        &self,
        group_key: &str,
        group_id: &str,
        operation: &str,
        value: Option<&str>,
    ) -> Result<()> {
        self.inner
            .enqueue(0, |b| b.group(group_key, group_id, operation, value))
    }

    /// Queues messages built by another SDK (see `MessageBuilder::prebuilt`). All or none
    /// of an array are queued. `api_key`/`api_secret` are `/import` credentials.
    pub fn send(
        &self,
        endpoint: &str,
        json: &str,
        api_key: Option<&str>,
        api_secret: Option<&str>,
    ) -> Result<()> {
        let core = self.inner.open_core()?;
        // The cheap refusal of one message (the C API asks before validating the text).
        self.refuse_send_if_full(json.as_bytes())?;
        let result = Endpoint::parse(endpoint)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown endpoint `{endpoint}`; expected events, people, groups or imports"
                ))
            })
            .and_then(|endpoint| {
                let credentials = match endpoint {
                    Endpoint::Import => {
                        credentials_from(api_key.map(str::to_owned), api_secret.map(str::to_owned))
                    }
                    _ => None,
                };
                self.inner.builder.prebuilt(endpoint, json, credentials)
            });
        let mut messages = result.inspect_err(|e| count_refusal(core, e))?;
        if let Some(test) = &core.test_events {
            return test.push(&core.ctx.accounting, messages);
        }
        if let Some(spool) = &core.ctx.spool {
            return match core.queue.try_push(&core.ctx.accounting, messages) {
                Ok(()) => Ok(()),
                Err((Refusal::Closed, _)) => Err(Error::new(ErrorKind::Closed, "client is closed")),
                Err((_, messages)) => core
                    .overflow(spool, messages)
                    .inspect_err(|e| self.inner.note_drop(core, e)),
            };
        }
        if messages.len() == 1 {
            if let Some(message) = messages.pop() {
                return core
                    .queue
                    .push_one(&core.ctx.accounting, message)
                    .inspect_err(|e| self.inner.note_drop(core, e));
            }
        }
        core.queue
            .push(&core.ctx.accounting, messages)
            .inspect_err(|e| self.inner.note_drop(core, e))
    }

    /// Counts a call refused before it reached the client (NULL pointer, bad UTF-8).
    pub fn note_invalid_call(&self) {
        if let Some(core) = self.inner.current_core() {
            core.ctx
                .accounting
                .counters
                .dropped_invalid
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends everything queued before this call and waits until each of those events is
    /// resolved (sent, rejected or failed), at most `timeout`. A barrier: events queued
    /// later neither hold it up nor count towards it. [`ErrorKind::Timeout`] if the
    /// deadline passed first (the events stay queued).
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        let Some(core) = self.inner.current_core() else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        match core.barrier()? {
            Some(latch) if !latch.wait_until(deadline) => Err(Error::new(
                ErrorKind::Timeout,
                "flush deadline passed before every event queued before it was resolved",
            )),
            _ => Ok(()),
        }
    }

    /// As [`Client::flush`], and says how delivery went: the events that failed or were
    /// rejected since the previous flush returned (each such event is reported by exactly
    /// one flush, whichever thread calls it). [`ErrorKind::Timeout`] if the deadline passed
    /// first; then nothing is reported, so the next flush reports it.
    pub fn flush_outcome(&self, timeout: Duration) -> Result<FlushOutcome> {
        self.flush(timeout)?;
        Ok(match self.inner.current_core() {
            Some(core) => core.ctx.accounting.take_flush_outcome(),
            None => FlushOutcome::default(),
        })
    }

    /// Flushes within `timeout`, then stops; what is still pending is counted as failed
    /// (`dropped_shutdown`), or, with `spool_dir`, handed to the spool (`spooled`) in the
    /// last quarter of `timeout` (at most 500 ms of it). Idempotent; later calls that queue return [`ErrorKind::Closed`].
    pub fn close(&self, timeout: Duration) -> Result<()> {
        self.inner.close_until(Instant::now() + timeout)
    }

    /// Closes without waiting: queued events get `shutdown_timeout` to be delivered by a
    /// task on the runtime (and [`shutdown`] still waits for them), then what is left is
    /// counted as failed. For releasing a handle from a finalizer or `free`.
    pub fn close_in_background(&self) {
        self.inner.close_in_background();
    }

    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// A snapshot of the counters (all zero in a forked child until it queues something).
    pub fn stats(&self) -> Stats {
        match self.inner.current_core() {
            Some(core) => core.ctx.accounting.snapshot(core.ctx.breaker.state()),
            None => Stats::default(),
        }
    }

    /// Events accepted and not yet resolved.
    pub fn queue_len(&self) -> u64 {
        self.stats().queue_len
    }

    /// Hands `take` the kept delivery errors not handed out before (per process generation:
    /// a forked child starts with none taken). They count as handed out only if `take`
    /// returns `true` with its result.
    pub fn take_errors<T>(&self, take: impl FnOnce(&[DeliveryError]) -> (T, bool)) -> T {
        match self.inner.current_core() {
            Some(core) => core.ctx.accounting.take_errors(take),
            None => take(&[]).0,
        }
    }

    /// Takes the log notes for the host's logger not taken before (see
    /// [`Client::take_errors`] for `take`).
    pub fn take_notes<T>(&self, take: impl FnOnce(&[Note]) -> (T, bool)) -> T {
        match self.inner.current_core() {
            Some(core) => core.ctx.accounting.take_notes(take),
            None => {
                self.inner.log_hint.store(0, Ordering::Relaxed);
                take(&[]).0
            }
        }
    }

    /// The address of a counter that is non-zero while log notes or delivery errors wait
    /// to be taken: a binding reads it on every call and takes them only then. Valid as
    /// long as this client.
    pub fn log_hint(&self) -> &AtomicU64 {
        &self.inner.log_hint
    }

    /// Whether the client runs in `test_mode`.
    pub fn is_test_mode(&self) -> bool {
        self.inner.config.test_mode
    }

    /// In `test_mode`, the events kept so far as a JSON array (see `TestEvents`); `None`
    /// otherwise.
    pub fn test_events_json(&self) -> Option<String> {
        if !self.inner.config.test_mode {
            return None;
        }
        Some(match self.inner.current_core() {
            Some(core) => core
                .test_events
                .as_ref()
                .map_or_else(|| "[]".to_owned(), TestEvents::to_json),
            None => "[]".to_owned(),
        })
    }

    /// In `test_mode`, forgets the events kept so far; false otherwise.
    pub fn clear_test_events(&self) -> bool {
        if !self.inner.config.test_mode {
            return false;
        }
        if let Some(test) = self
            .inner
            .current_core()
            .and_then(|c| c.test_events.as_ref())
        {
            test.clear();
        }
        true
    }

    /// The counters in the Prometheus/OpenMetrics text format (see `crate::metrics`).
    pub fn metrics_text(&self) -> String {
        crate::metrics::render(&self.stats(), self.inner.config.name.as_deref())
    }

    /// Recent delivery errors with `seq > after_seq` (0 for all that are kept).
    pub fn errors(&self, after_seq: u64) -> Vec<DeliveryError> {
        match self.inner.current_core() {
            Some(core) => core.ctx.accounting.errors_after(after_seq),
            None => Vec::new(),
        }
    }
}

/// The default deadline of [`shutdown`]: the largest `shutdown_timeout` of the open
/// clients (2 s when there are none). What the bindings' exit hooks use.
pub fn configured_shutdown_timeout() -> Duration {
    runtime::configured_shutdown_timeout(Duration::from_millis(2000))
}

/// Closes every client and stops the runtime, all within `timeout`.
pub fn shutdown(timeout: Duration) -> Result<()> {
    if runtime::shutdown(timeout) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Timeout,
            "shutdown deadline passed; undelivered events were counted as failed",
        ))
    }
}
