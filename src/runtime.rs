//! The one global tokio runtime, the shared HTTP client, the client registry, and fork.
//!
//! Fork protocol (see DESIGN.md): threads do not survive `fork()`, and locks they held stay
//! locked in the child. So the child never touches anything the parent's threads used:
//! a `pthread_atfork` child handler bumps [`generation`] and forgets the global state
//! (leaking it, never dropping it). The next call in the child builds a fresh runtime, and
//! each client rebuilds its queue and counters when it sees the new generation, so the
//! parent's queued events are delivered by the parent only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Once, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::runtime::{Handle, Runtime};

use crate::client::ClientHandle;
use crate::error::{Error, ErrorKind, Result};

/// Process state that a forked child must rebuild rather than reuse.
struct Global {
    handle: Handle,
    runtime: Mutex<Option<Runtime>>,
    http: Mutex<HashMap<Duration, reqwest::Client>>,
}

static GLOBAL: AtomicPtr<Global> = AtomicPtr::new(std::ptr::null_mut());
static GENERATION: AtomicU64 = AtomicU64::new(1);
static REGISTRY: Mutex<Vec<Weak<ClientHandle>>> = Mutex::new(Vec::new());
static ATFORK: Once = Once::new();

/// Changes in a forked child; state built under an older generation is not to be used.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

fn global() -> Result<&'static Global> {
    ATFORK.call_once(register_atfork);
    let current = GLOBAL.load(Ordering::Acquire);
    if !current.is_null() {
        // SAFETY: a non-null GLOBAL points at a leaked Box that is never freed.
        return Ok(unsafe { &*current });
    }
    let threads = std::env::var("BULKHEAD_RUNTIME_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("bulkhead-worker")
        // A peer that closes mid-request makes a vectored write raise SIGPIPE, whose default
        // action kills a C host. Blocked on our threads, the write fails with EPIPE instead.
        .on_thread_start(block_sigpipe)
        .enable_time()
        .enable_io()
        .build()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("could not start runtime: {e}")))?;
    let fresh = Box::into_raw(Box::new(Global {
        handle: runtime.handle().clone(),
        runtime: Mutex::new(Some(runtime)),
        http: Mutex::new(HashMap::new()),
    }));
    match GLOBAL.compare_exchange(
        std::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        // SAFETY: we just published `fresh`; it is never freed.
        Ok(_) => Ok(unsafe { &*fresh }),
        Err(winner) => {
            // SAFETY: `fresh` was never published, so we still own it.
            let lost = unsafe { Box::from_raw(fresh) };
            if let Some(rt) = lost.runtime.lock().take() {
                rt.shutdown_background();
            }
            // SAFETY: `winner` is a published, never-freed Global.
            Ok(unsafe { &*winner })
        }
    }
}

/// A handle to the global runtime, starting it if needed.
pub fn handle() -> Result<Handle> {
    Ok(global()?.handle.clone())
}

/// The shared reqwest client (rustls, keep-alive pool) for a connect timeout.
pub fn http_client(connect_timeout: Duration) -> Result<reqwest::Client> {
    let global = global()?;
    let mut clients = global.http.lock();
    if let Some(client) = clients.get(&connect_timeout) {
        return Ok(client.clone());
    }
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .https_only(false)
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .user_agent(concat!("bulkhead/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("could not build HTTP client: {e}"),
            )
        })?;
    clients.insert(connect_timeout, client.clone());
    Ok(client)
}

pub fn register(client: Weak<ClientHandle>) {
    let mut registry = REGISTRY.lock();
    registry.retain(|c| c.strong_count() > 0);
    registry.push(client);
}

/// The deadline a shutdown uses when the caller leaves it to configuration: the largest
/// `shutdown_timeout` of the open clients, or `fallback` when there are none.
pub fn configured_shutdown_timeout(fallback: Duration) -> Duration {
    REGISTRY
        .lock()
        .iter()
        .filter_map(Weak::upgrade)
        .filter(|c| !c.is_closed())
        .map(|c| c.shutdown_timeout())
        .max()
        .unwrap_or(fallback)
}

/// Closes every client within `timeout`, then stops the runtime within what is left.
/// Returns `false` if the deadline passed before everything was delivered.
pub fn shutdown(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let clients: Vec<_> = REGISTRY.lock().iter().filter_map(Weak::upgrade).collect();
    let mut complete = true;
    for client in clients {
        complete &= client.close_until(deadline).is_ok();
    }
    let current = GLOBAL.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if !current.is_null() {
        // SAFETY: published Globals are never freed; we only take the runtime out of it.
        let global = unsafe { &*current };
        if let Some(runtime) = global.runtime.lock().take() {
            if Handle::try_current().is_ok() {
                // Called from inside a runtime (a Rust user): never block a runtime thread.
                runtime.shutdown_background();
            } else {
                runtime.shutdown_timeout(deadline.saturating_duration_since(Instant::now()));
            }
        }
    }
    complete
}

/// Blocks SIGPIPE on the calling thread (the runtime's threads only, never the host's).
fn block_sigpipe() {
    // SAFETY: sigemptyset/sigaddset write to a local set; pthread_sigmask only changes this
    // thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn register_atfork() {
    // SAFETY: the three handlers are `extern "C"` functions with static lifetime that only
    // use atomics and a raw mutex, as the atfork contract requires.
    let rc = unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_parent),
            Some(after_fork_child),
        )
    };
    if rc != 0 {
        crate::log::log(
            crate::log::Level::Warn,
            crate::log::Level::Warn,
            format_args!("pthread_atfork failed ({rc}); fork() children must not use bulkhead"),
        );
    }
}

extern "C" fn before_fork() {
    // Hold the registry across fork so the child never inherits it locked by another thread.
    std::mem::forget(REGISTRY.lock());
}

extern "C" fn after_fork_parent() {
    // SAFETY: `before_fork` locked REGISTRY on this thread and forgot the guard.
    unsafe { REGISTRY.force_unlock() };
}

extern "C" fn after_fork_child() {
    // Forget, never drop: the parent's runtime threads do not exist here, and its locks may
    // be held forever. Leaking is the only safe thing to do with them.
    GLOBAL.store(std::ptr::null_mut(), Ordering::Release);
    GENERATION.fetch_add(1, Ordering::AcqRel);
    crate::message::reseed_insert_ids_after_fork();
    // SAFETY: `before_fork` locked REGISTRY in the parent on the thread that forked, which is
    // this thread's copy; no other thread exists in the child.
    unsafe { REGISTRY.force_unlock() };
}
