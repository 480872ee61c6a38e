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

use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::config::Config;
use crate::consumer::{new_pool, DeliveryContext};
use crate::dispatcher::Dispatcher;
use crate::error::{Error, ErrorKind, Result};
use crate::message::{credentials_from, Endpoint, Message, MessageBuilder};
use crate::queue::{Queue, Receiver};
use crate::runtime;
use crate::stats::{Accounting, DeliveryError, Stats};

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
    flush: Arc<Notify>,
}

pub struct ClientHandle {
    config: Arc<Config>,
    builder: MessageBuilder,
    core: AtomicPtr<Core>,
    closed: AtomicBool,
}

impl Core {
    fn new(config: &Arc<Config>) -> Result<(Core, Receiver)> {
        let http = runtime::http_client(config.connect_timeout)?;
        let accounting = Arc::new(Accounting::new(config.max_recent_errors as usize));
        let ctx = Arc::new(DeliveryContext::new(config.clone(), accounting, http));
        let (queue, rx) = Queue::new(
            config.queue_capacity,
            config.queue_max_bytes,
            config.batch_size,
        );
        let core = Core {
            generation: runtime::generation(),
            queue,
            ctx,
            flush: Arc::new(Notify::new()),
        };
        Ok((core, rx))
    }

    fn start(&self, rx: Receiver) -> Result<()> {
        let pool = new_pool(self.ctx.config.pool_size as usize);
        let dispatcher = Dispatcher::new(rx, self.ctx.clone(), pool, self.flush.clone());
        runtime::handle()?.spawn(dispatcher.run());
        Ok(())
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        let core = self.core.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !core.is_null() {
            // SAFETY: the current core is owned by this handle and nobody else frees it;
            // `&mut self` means no other thread is using the handle.
            let core = unsafe { Box::from_raw(core) };
            core.ctx.cancel.cancel();
        }
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
        let (core, rx) = Core::new(&self.config)?;
        let fresh = Box::into_raw(Box::new(core));
        match self
            .core
            .compare_exchange(old, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                // The old core is deliberately leaked (see module docs of `runtime`).
                // SAFETY: `fresh` is now published and owned by this handle.
                unsafe { &*fresh }.start(rx)
            }
            Err(_) => {
                // Another thread rebuilt first; ours was never published.
                // SAFETY: `fresh` came from Box::into_raw above and was not shared.
                drop(unsafe { Box::from_raw(fresh) });
                Ok(())
            }
        }
    }

    fn enqueue(&self, built: impl FnOnce(&MessageBuilder) -> Result<Message>) -> Result<()> {
        let core = self.open_core()?;
        let message = built(&self.builder).inspect_err(|e| count_refusal(core, e))?;
        core.queue.push_one(&core.ctx.accounting, message)
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

    /// The core of this process generation, if it exists yet. Read-only calls use this so
    /// that a forked child that never queued anything does not start a runtime for them.
    fn current_core(&self) -> Option<&Core> {
        let ptr = self.core.load(Ordering::Acquire);
        // SAFETY: as in `core`.
        let core = unsafe { &*ptr };
        (core.generation == runtime::generation()).then_some(core)
    }

    pub(crate) fn close_until(&self, deadline: Instant) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        // A child that never used this client has nothing of its own to deliver.
        let Some(core) = self.current_core() else {
            return Ok(());
        };
        core.flush.notify_one();
        let finished = core.ctx.accounting.wait_resolved(deadline);
        core.ctx.cancel.cancel();
        // Also counts a straggler queued by a call that raced with close.
        core.ctx.accounting.abandon_pending();
        if finished {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Timeout,
                "close deadline passed; undelivered events were counted as failed (shutdown)",
            ))
        }
    }
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
        let (core, rx) = Core::new(&config)?;
        let builder = MessageBuilder::new(&config.token, config.max_event_bytes)
            .with_import_credentials(config.has_import_credentials());
        let handle = Arc::new(ClientHandle {
            config,
            builder,
            core: AtomicPtr::new(Box::into_raw(Box::new(core))),
            closed: AtomicBool::new(false),
        });
        handle.core()?.start(rx)?;
        runtime::register(Arc::downgrade(&handle));
        Ok(Client { inner: handle })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Queues an event for `/track`. Returns at once; [`ErrorKind::QueueFull`] when the guard
    /// dropped it.
    pub fn track(&self, distinct_id: &str, event: &str, properties: Option<&str>) -> Result<()> {
        self.inner
            .enqueue(|b| b.event(distinct_id, event, properties))
    }

    /// Queues an event for `/import` with an explicit time in milliseconds.
    pub fn import(
        &self,
        distinct_id: &str,
        event: &str,
        time_ms: i64,
        properties: Option<&str>,
    ) -> Result<()> {
        self.inner
            .enqueue(|b| b.import(distinct_id, event, time_ms, properties))
    }

    /// Queues a user profile update (`operation` is `$set`, `$set_once`, `$add`, ...).
    pub fn people(&self, distinct_id: &str, operation: &str, value: Option<&str>) -> Result<()> {
        self.inner
            .enqueue(|b| b.people(distinct_id, operation, value))
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
            .enqueue(|b| b.group(group_key, group_id, operation, value))
    }

    /// Queues messages built by another SDK (see [`MessageBuilder::prebuilt`]). All or none
    /// of an array are queued. `api_key`/`api_secret` are `/import` credentials.
    pub fn send(
        &self,
        endpoint: &str,
        json: &str,
        api_key: Option<&str>,
        api_secret: Option<&str>,
    ) -> Result<()> {
        let core = self.inner.open_core()?;
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
        if messages.len() == 1 {
            if let Some(message) = messages.pop() {
                return core.queue.push_one(&core.ctx.accounting, message);
            }
        }
        core.queue.push(&core.ctx.accounting, messages)
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

    /// Sends everything queued so far and waits for it, at most `timeout`.
    /// [`ErrorKind::Timeout`] if the deadline passed first (the events stay queued).
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        let Some(core) = self.inner.current_core() else {
            return Ok(());
        };
        core.flush.notify_one();
        if core.ctx.accounting.wait_resolved(Instant::now() + timeout) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Timeout,
                "flush deadline passed before every event was resolved",
            ))
        }
    }

    /// Flushes within `timeout`, then stops; what is still pending is counted as failed
    /// (`dropped_shutdown`). Idempotent; later calls that queue return [`ErrorKind::Closed`].
    pub fn close(&self, timeout: Duration) -> Result<()> {
        self.inner.close_until(Instant::now() + timeout)
    }

    /// Closes without waiting: queued events get `shutdown_timeout` to be delivered on a
    /// background thread (and [`shutdown`] still waits for them), then what is left is
    /// counted as failed. For releasing a handle from a finalizer or `free`.
    pub fn close_in_background(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let handle = self.inner.clone();
        let deadline = Instant::now() + self.inner.config.shutdown_timeout;
        match runtime::handle() {
            Ok(rt) => {
                rt.spawn_blocking(move || {
                    let _ = handle.close_until(deadline);
                });
            }
            Err(_) => {
                let _ = handle.close_until(Instant::now());
            }
        }
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
