//! The one global tokio runtime, the shared HTTP client, the client registry, and fork.
//!
//! Everything process-wide lives in a [`Slot`] that belongs to one process generation.
//! Fork protocol: threads do not survive `fork()`, and locks they held stay locked in the
//! child. So nothing is held across `fork()`, and a child never touches anything of an
//! older generation: the `pthread_atfork` child handler only bumps [`generation`] (atomics
//! only), and the child's first call that needs process state finds the slot of the old
//! generation and replaces it with a fresh one, leaking the old one without looking inside
//! (its locks may be held forever, its runtime's threads do not exist). Each client
//! rebuilds its own state the same way, so the parent's queued events are delivered by the
//! parent only.
//!
//! Within a generation nothing leaks: `shutdown` stops the runtime and drops it with the
//! HTTP clients, and the next client starts a new one in the same slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Once, Weak};
use std::time::{Duration, Instant};

use crate::sync::Mutex;
use tokio::runtime::{Handle, Runtime};

use crate::client::ClientHandle;
use crate::error::{Error, ErrorKind, Result};

/// Process state of one generation.
struct Slot {
    generation: u64,
    services: Mutex<Option<Services>>,
    registry: Mutex<Vec<Weak<ClientHandle>>>,
}

/// What `shutdown` stops and drops.
struct Services {
    runtime: Runtime,
    http: HashMap<HttpOptions, reqwest::Client>,
}

/// Everything that changes the HTTP client; clients with equal options share one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpOptions {
    pub connect_timeout: Duration,
    /// A proxy for every request; `none` for none at all; `None` for the environment's
    /// (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, as reqwest reads them).
    pub proxy: Option<String>,
    /// Trust the system's certificate store besides the bundled webpki roots.
    pub tls_system_roots: bool,
}

impl HttpOptions {
    pub fn of(config: &crate::config::Config) -> Self {
        Self {
            connect_timeout: config.connect_timeout,
            proxy: config.proxy.clone(),
            tls_system_roots: config.tls_system_roots,
        }
    }
}

static SLOT: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());
static GENERATION: AtomicU64 = AtomicU64::new(1);
static ATFORK: Once = Once::new();

/// Changes in a forked child; state built under an older generation is not to be used.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// The slot of this generation, made on first use (in a forked child: replacing, and
/// leaking, the parent's).
fn slot() -> &'static Slot {
    ATFORK.call_once(register_atfork);
    loop {
        let generation = generation();
        let current = SLOT.load(Ordering::Acquire);
        // SAFETY: a non-null SLOT points at a leaked Box that is never freed.
        if let Some(slot) = unsafe { current.as_ref() } {
            if slot.generation == generation {
                return slot;
            }
        }
        let fresh = Box::into_raw(Box::new(Slot {
            generation,
            services: Mutex::new(None),
            registry: Mutex::new(Vec::new()),
        }));
        match SLOT.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
            // The old slot, if any, is leaked on purpose.
            // SAFETY: `fresh` is published now and never freed.
            Ok(_) => return unsafe { &*fresh },
            // SAFETY: `fresh` was never published, so it is still ours to free.
            Err(_) => drop(unsafe { Box::from_raw(fresh) }),
        }
    }
}

fn start_runtime() -> Result<Runtime> {
    let threads = std::env::var("BULKHEAD_RUNTIME_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("bulkhead-worker")
        // A peer that closes mid-request makes a vectored write raise SIGPIPE, whose default
        // action kills a C host. Blocked on our threads, the write fails with EPIPE instead.
        .on_thread_start(block_sigpipe)
        .enable_time()
        .enable_io()
        .build()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("could not start runtime: {e}")))
}

fn with_services<T>(use_them: impl FnOnce(&mut Services) -> Result<T>) -> Result<T> {
    let mut services = slot().services.lock();
    let services = match &mut *services {
        Some(s) => s,
        empty => empty.insert(Services {
            runtime: start_runtime()?,
            http: HashMap::new(),
        }),
    };
    use_them(services)
}

/// A handle to the global runtime, starting it if needed.
pub fn handle() -> Result<Handle> {
    with_services(|s| Ok(s.runtime.handle().clone()))
}

/// The shared reqwest client (rustls, keep-alive pool) for these options.
pub fn http_client(options: &HttpOptions) -> Result<reqwest::Client> {
    with_services(|services| {
        if let Some(client) = services.http.get(options) {
            return Ok(client.clone());
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_webpki_certs(true)
            .tls_built_in_native_certs(options.tls_system_roots);
        match options.proxy.as_deref() {
            // Without the key reqwest reads the environment's proxy variables.
            None => {}
            Some("none") => builder = builder.no_proxy(),
            Some(url) => {
                // The key wins over HTTPS_PROXY/HTTP_PROXY; NO_PROXY still applies.
                let proxy = reqwest::Proxy::all(url)
                    .map_err(|e| {
                        Error::invalid(format!(
                            "config key `proxy` is not a usable proxy URL: {}",
                            crate::transport::error_chain(&e)
                        ))
                    })?
                    .no_proxy(reqwest::NoProxy::from_env());
                builder = builder.proxy(proxy);
            }
        }
        let client = builder
            // A redirect is not an acceptance: never follow one (it would resend as a GET).
            .redirect(reqwest::redirect::Policy::none())
            .https_only(false)
            .connect_timeout(options.connect_timeout)
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
        services.http.insert(options.clone(), client.clone());
        Ok(client)
    })
}

/// Spawns a client's dispatcher and registers the client so that `shutdown` closes it, both
/// under the lock `shutdown` takes the runtime with: a client is either on a runtime that
/// a later shutdown will see it on, or on the next runtime.
pub fn start_client(
    client: Weak<ClientHandle>,
    dispatcher: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    with_services(|services| {
        services.runtime.spawn(dispatcher);
        let mut registry = slot().registry.lock();
        registry.retain(|c| c.strong_count() > 0);
        registry.push(client);
        Ok(())
    })
}

fn registered() -> Vec<std::sync::Arc<ClientHandle>> {
    slot()
        .registry
        .lock()
        .iter()
        .filter_map(Weak::upgrade)
        .collect()
}

/// The deadline a shutdown uses when the caller leaves it to configuration: the largest
/// `shutdown_timeout` of the open clients, or `fallback` when there are none.
pub fn configured_shutdown_timeout(fallback: Duration) -> Duration {
    registered()
        .iter()
        .filter(|c| !c.is_closed())
        .map(|c| c.shutdown_timeout())
        .max()
        .unwrap_or(fallback)
}

/// Closes every client within `timeout`, then stops the runtime within what is left.
/// Returns `false` if the deadline passed before everything was delivered.
pub fn shutdown(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut complete = true;
    for client in registered() {
        complete &= client.close_until(deadline).is_ok();
    }
    let Some(services) = slot().services.lock().take() else {
        return complete;
    };
    // Clients started on this runtime while the others were closing: close them too
    // (already past the deadline), rather than leave them on a stopped runtime.
    for client in registered() {
        if !client.is_closed() {
            complete &= client.close_until(Instant::now()).is_ok();
        }
    }
    if Handle::try_current().is_ok() {
        // Called from inside a runtime (a Rust user): never block a runtime thread.
        services.runtime.shutdown_background();
    } else {
        services
            .runtime
            .shutdown_timeout(deadline.saturating_duration_since(Instant::now()));
    }
    // The HTTP clients (connection pools, TLS configuration) go with it.
    drop(services.http);
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
    // SAFETY: the handler is an `extern "C"` function with static lifetime that only uses
    // atomics and getpid, which is what may run in a forked child.
    let rc = unsafe { libc::pthread_atfork(None, None, Some(after_fork_child)) };
    if rc != 0 {
        crate::log::log(
            crate::log::Level::Warn,
            crate::log::Level::Warn,
            format_args!("pthread_atfork failed ({rc}); fork() children must not use bulkhead"),
        );
    }
}

extern "C" fn after_fork_child() {
    // Atomics only: the child's next call replaces the slot and each client's state.
    GENERATION.fetch_add(1, Ordering::AcqRel);
    crate::message::reseed_insert_ids_after_fork();
    crate::spool::close_inherited_locks();
}
