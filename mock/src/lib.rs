//! `bulkhead-mock`: a mock Mixpanel ingestion server for tests, demos and benchmarks.
//!
//! It speaks the wire format of `/track`, `/engage`, `/groups` (form bodies with a `data=`
//! field holding plain or base64 JSON) and `/import` (JSON body, HTTP Basic auth, `strict=1`),
//! records what it receives, deduplicates events on `(event, distinct_id, $insert_id)`, and can
//! be told to misbehave: be down (refuse or hang), add latency, answer scripted faults, reject
//! bodies over a size, or reject `/import` records carrying a given property.
//!
//! For side-by-side benchmarks it also counts the events of two peer SDKs: Segment's
//! `POST /v1/batch` and PostHog's `POST /batch/` (JSON `{"batch":[...]}`, plain or gzip),
//! deduplicated on Segment's `messageId` / PostHog's `uuid`; down, latency and faults apply.
//!
//! It binds `127.0.0.1` only. Use [`MockServer::start`] in-process (Rust tests) or the
//! `bulkhead-mock` binary (other languages), which is driven through `/_mock/*` endpoints.
//!
//! Control endpoints (always answered, even while "down"; mutations answer `{"ok":true}`):
//! - `GET /_mock/stats` ([`MockStats`]), `GET /_mock/events`, `GET /_mock/updates`,
//!   `GET /_mock/requests` (JSON arrays)
//! - `POST /_mock/down?mode=refuse|hang`, `POST /_mock/up`, `POST /_mock/latency?ms=N`
//! - `POST /_mock/fault?status=503&count=3[&retry_after=1][&body=..][&endpoint=track]`,
//!   `POST /_mock/fault?kind=reject|hang|drop[&error=..][&count=N][&endpoint=..]`,
//!   `POST /_mock/fault?kind=early_close[&status=413]` (answer before reading the body, close),
//!   `kind=reset_mid_body` (close while the body arrives), `kind=redirect[&status=302]
//!   [&location=/_mock/landing]`, `kind=endless[&status=500]` (a body that never ends),
//!   `kind=truncated` (200 announcing more body than it sends), `POST /_mock/clear_faults`
//! - `POST /_mock/reject_property?name=X[&status=200|400]`: on `/track`, `/engage`, `/groups`,
//!   refuse any batch holding a record with property `X` (200 `status: 0`, or HTTP 400)
//! - `GET|POST /_mock/landing`: an HTML page (a redirect target; counted in `landing_hits`)
//! - `POST /_mock/max_body_bytes?bytes=N` (0 = off), `POST /_mock/import_reject_property?name=X`
//!   (no name = off), `POST /_mock/store?on=0|1`, `POST /_mock/reset`
//! - `GET /_mock/wait_events?n=N&timeout_ms=M` → `{"ok":bool,"events":count}`

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// How long a "hung" request waits before the server gives up on it itself.
const HANG_FOR: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// An ingestion endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    Track,
    Engage,
    Groups,
    Import,
    /// Segment's `/v1/batch` (benchmark peer).
    Segment,
    /// PostHog's `/batch/` (benchmark peer).
    Posthog,
}

impl Endpoint {
    /// The endpoint for a request path (`/track`, `/engage/`, ...), if it is one.
    pub fn from_path(path: &str) -> Option<Endpoint> {
        match path.trim_end_matches('/') {
            "/track" => Some(Endpoint::Track),
            "/engage" => Some(Endpoint::Engage),
            "/groups" => Some(Endpoint::Groups),
            "/import" => Some(Endpoint::Import),
            "/v1/batch" => Some(Endpoint::Segment),
            "/batch" => Some(Endpoint::Posthog),
            _ => None,
        }
    }

    /// The endpoint for a name (`track`, `engage`, `groups`, `import`).
    pub fn from_name(name: &str) -> Option<Endpoint> {
        Endpoint::from_path(&format!("/{name}"))
    }

    fn is_event(self) -> bool {
        !self.is_form() || self == Endpoint::Track
    }

    /// Mixpanel's form endpoints (`data=` bodies, `status: 0` rejections).
    fn is_form(self) -> bool {
        matches!(self, Endpoint::Track | Endpoint::Engage | Endpoint::Groups)
    }
}

/// Whether ingestion endpoints answer. Control endpoints (`/_mock/*`) always answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DownMode {
    /// Normal service.
    #[default]
    Up,
    /// Read the request, then close the connection with no response (a network error).
    Refuse,
    /// Accept the request and never answer; the connection is held until the client gives up.
    Hang,
}

/// A scripted misbehaviour, consumed by one ingestion request (before normal handling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this HTTP status and body, with an optional `Retry-After: N` header.
    Status {
        status: u16,
        body: String,
        retry_after: Option<u64>,
    },
    /// Reject the data: HTTP 200 `{"status":0,"error":..}` on form endpoints, HTTP 400 on `/import`.
    /// On form endpoints the batch's first record is taken to be the bad one: any later batch
    /// holding it is refused too, so a client that bisects ends with just that one rejected.
    Reject { error: String },
    /// Never answer (like [`DownMode::Hang`], for one request).
    Hang,
    /// Close the connection without answering (like [`DownMode::Refuse`], for one request).
    Drop,
    /// Answer `status` before reading the request body, then close the connection: the
    /// client may still be writing a large body (SIGPIPE territory).
    EarlyClose { status: u16 },
    /// Read part of the request body, then close the connection while the rest arrives.
    ResetMidBody,
    /// A redirect (`status` 3xx) to `location` (a path on the mock or any URL).
    Redirect { status: u16, location: String },
    /// HTTP `status` with a body that never ends ([`ENDLESS_BYTES`] bytes, then it stalls).
    EndlessBody { status: u16 },
    /// HTTP 200 whose `Content-Length` promises more body than is sent before closing.
    TruncatedBody,
}

/// How much of an endless body is sent before it stalls (never ending).
pub const ENDLESS_BYTES: usize = 16 * 1024 * 1024;

/// How much of the body `Fault::ResetMidBody` reads before closing.
const RESET_AFTER_BYTES: usize = 64 * 1024;

impl Fault {
    /// A `Fault::Status` with a JSON body in Mixpanel's error shape.
    pub fn status(status: u16) -> Fault {
        Fault::Status {
            status,
            body: format!(r#"{{"error":"mock fault {status}","status":0}}"#),
            retry_after: None,
        }
    }

    /// A 429 with `Retry-After: secs`.
    pub fn rate_limited(secs: u64) -> Fault {
        Fault::Status {
            status: 429,
            body: r#"{"error":"rate limited by mock","status":0}"#.to_string(),
            retry_after: Some(secs),
        }
    }

    /// HTTP `status` with exactly this body (HTML, empty, garbage...).
    pub fn body(status: u16, body: impl Into<String>) -> Fault {
        Fault::Status {
            status,
            body: body.into(),
            retry_after: None,
        }
    }

    /// A 302 to the mock's HTML landing page.
    pub fn redirect() -> Fault {
        Fault::Redirect {
            status: 302,
            location: "/_mock/landing".into(),
        }
    }

    fn name(&self) -> String {
        match self {
            Fault::Status { status, .. } => format!("status {status}"),
            Fault::Reject { .. } => "reject".into(),
            Fault::Hang => "hang".into(),
            Fault::Drop => "drop".into(),
            Fault::EarlyClose { status } => format!("early close {status}"),
            Fault::ResetMidBody => "reset mid body".into(),
            Fault::Redirect { status, .. } => format!("redirect {status}"),
            Fault::EndlessBody { status } => format!("endless body {status}"),
            Fault::TruncatedBody => "truncated body".into(),
        }
    }
}

/// Counts per ingestion endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerEndpoint {
    pub track: u64,
    pub engage: u64,
    pub groups: u64,
    pub import: u64,
    #[serde(default)]
    pub segment: u64,
    #[serde(default)]
    pub posthog: u64,
}

impl PerEndpoint {
    fn get_mut(&mut self, e: Endpoint) -> &mut u64 {
        match e {
            Endpoint::Track => &mut self.track,
            Endpoint::Engage => &mut self.engage,
            Endpoint::Groups => &mut self.groups,
            Endpoint::Import => &mut self.import,
            Endpoint::Segment => &mut self.segment,
            Endpoint::Posthog => &mut self.posthog,
        }
    }

    /// The count for one endpoint.
    pub fn get(&self, e: Endpoint) -> u64 {
        match e {
            Endpoint::Track => self.track,
            Endpoint::Engage => self.engage,
            Endpoint::Groups => self.groups,
            Endpoint::Import => self.import,
            Endpoint::Segment => self.segment,
            Endpoint::Posthog => self.posthog,
        }
    }
}

/// A snapshot of the server's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockStats {
    /// Ingestion requests received (including ones answered by a fault, refused or hung).
    pub requests: u64,
    pub requests_by_endpoint: PerEndpoint,
    /// Unique events accepted on `/track` and `/import`.
    pub events: u64,
    /// Unique updates accepted on `/engage` and `/groups`.
    pub updates: u64,
    /// Accepted records whose dedup key was seen before (not counted in `events`/`updates`).
    pub duplicates: u64,
    /// Records the mock rejected (invalid data, `/import` failed_records). Requests answered
    /// by a scripted fault are not parsed, so their records count only in `faults_served`.
    pub rejected: u64,
    /// Request body bytes as received on the wire (compressed when gzip).
    pub bytes_received: u64,
    /// Requests with `Content-Encoding: gzip`.
    pub gzip_requests: u64,
    /// Requests answered by a scripted fault.
    pub faults_served: u64,
    /// Requests answered 413 because of `max_body_bytes`.
    pub too_large: u64,
    /// Requests being held unanswered right now (down mode hang or `Fault::Hang`); a held
    /// request is released when its client closes the connection.
    pub hanging: u64,
    /// Requests to `/_mock/landing` (a followed redirect lands there).
    pub landing_hits: u64,
}

/// What the mock saw of one ingestion request and what it answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The raw query string, empty when none.
    pub query: String,
    pub content_type: Option<String>,
    /// `Some("gzip")` or `None`.
    pub content_encoding: Option<String>,
    /// HTTP Basic auth, decoded.
    pub auth_username: Option<String>,
    pub auth_password: Option<String>,
    /// Records in the body (0 when the request was answered by a fault or before parsing).
    pub records: usize,
    /// HTTP status answered; 0 when the connection was closed or held without an answer.
    pub status: u16,
    /// Whether the `data=` field was base64 (form endpoints).
    pub data_base64: bool,
    /// Body bytes on the wire.
    pub body_bytes: usize,
    /// Body bytes after gzip decoding.
    pub decoded_bytes: usize,
    /// The scripted fault that answered this request, if any.
    pub fault: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct FaultRule {
    endpoint: Option<Endpoint>,
    fault: Fault,
}

#[derive(Debug)]
struct Config {
    down: DownMode,
    latency: Duration,
    faults: VecDeque<FaultRule>,
    max_body_bytes: Option<usize>,
    import_reject_property: Option<String>,
    reject_property: Option<(String, u16)>,
    store: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            down: DownMode::Up,
            latency: Duration::ZERO,
            faults: VecDeque::new(),
            max_body_bytes: None,
            import_reject_property: None,
            reject_property: None,
            store: true,
        }
    }
}

#[derive(Debug, Default)]
struct Data {
    stats: MockStats,
    // Raw JSON text of each stored record: cheap to keep, parsed on demand.
    events: Vec<Box<RawValue>>,
    updates: Vec<Box<RawValue>>,
    requests: Vec<RequestRecord>,
    event_keys: HashSet<u64>,
    /// `$insert_id`s of records a scripted `Fault::Reject` refused: refused again later.
    poisoned: HashSet<String>,
    update_keys: HashSet<u64>,
}

#[derive(Debug, Default)]
struct Shared {
    config: Mutex<Config>,
    data: Mutex<Data>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Thread-safe handle that configures and inspects a mock server. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Control {
    shared: Arc<Shared>,
}

impl Control {
    /// A fresh control with default settings (up, no latency, storing records).
    pub fn new() -> Control {
        Control::default()
    }

    pub fn set_down(&self, mode: DownMode) {
        lock(&self.shared.config).down = mode;
    }

    pub fn down_mode(&self) -> DownMode {
        lock(&self.shared.config).down
    }

    /// Delay added before every ingestion response.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.shared.config).latency = latency;
    }

    /// Queue a fault for the next ingestion request on any endpoint.
    pub fn push_fault(&self, fault: Fault) {
        self.push_fault_rule(None, fault);
    }

    /// Queue a fault for the next ingestion request on `endpoint`.
    pub fn push_fault_for(&self, endpoint: Endpoint, fault: Fault) {
        self.push_fault_rule(Some(endpoint), fault);
    }

    fn push_fault_rule(&self, endpoint: Option<Endpoint>, fault: Fault) {
        lock(&self.shared.config)
            .faults
            .push_back(FaultRule { endpoint, fault });
    }

    /// Faults queued and not yet consumed.
    pub fn pending_faults(&self) -> usize {
        lock(&self.shared.config).faults.len()
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.config).faults.clear();
    }

    /// Answer 413 when the decoded (uncompressed) body exceeds this many bytes.
    pub fn set_max_body_bytes(&self, max: Option<usize>) {
        lock(&self.shared.config).max_body_bytes = max;
    }

    /// On `/import`, records whose `properties` contain this key are listed in `failed_records`.
    pub fn set_import_reject_property(&self, name: Option<String>) {
        lock(&self.shared.config).import_reject_property = name;
    }

    /// On `/track`, `/engage`, `/groups`: refuse any batch holding a record whose properties
    /// (or the update itself) contain `name`, with `status` 200 (`{"status":0}`) or 400.
    pub fn set_reject_property(&self, name: Option<String>, status: u16) {
        lock(&self.shared.config).reject_property = name.map(|n| (n, status));
    }

    /// When false, keep only counters and dedup keys (no events, updates or request records).
    pub fn set_store(&self, store: bool) {
        lock(&self.shared.config).store = store;
    }

    pub fn stats(&self) -> MockStats {
        lock(&self.shared.data).stats.clone()
    }

    /// Every unique event received on `/track` and `/import`, in arrival order.
    pub fn events(&self) -> Vec<Value> {
        parse_all(&lock(&self.shared.data).events)
    }

    /// Every unique profile update (`/engage`) and group update (`/groups`), in arrival order.
    pub fn updates(&self) -> Vec<Value> {
        parse_all(&lock(&self.shared.data).updates)
    }

    /// Every ingestion request, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.data).requests.clone()
    }

    /// Clear records, faults and stats; back to up, no latency, no size limit, storing.
    pub fn reset(&self) {
        *lock(&self.shared.config) = Config::default();
        let mut d = lock(&self.shared.data);
        let hanging = d.stats.hanging;
        *d = Data::default();
        d.stats.hanging = hanging; // a gauge of live connections, not a record
    }

    /// Wait until at least `n` unique events were received; false on timeout.
    pub fn wait_for_events(&self, n: u64, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.events >= n)
    }

    /// Wait until at least `n` unique updates were received; false on timeout.
    pub fn wait_for_updates(&self, n: u64, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.updates >= n)
    }

    /// Wait until at least `n` ingestion requests were received; false on timeout.
    pub fn wait_for_requests(&self, n: u64, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.requests >= n)
    }

    /// Wait until `pred` holds for the stats; false on timeout.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&MockStats) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&lock(&self.shared.data).stats) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn plan(&self, endpoint: Endpoint) -> Plan {
        let mut c = lock(&self.shared.config);
        let fault = if c.down == DownMode::Up {
            c.faults
                .iter()
                .position(|r| r.endpoint.is_none_or(|e| e == endpoint))
                .and_then(|i| c.faults.remove(i))
                .map(|r| r.fault)
        } else {
            None
        };
        Plan {
            down: c.down,
            fault,
            latency: c.latency,
            max_body_bytes: c.max_body_bytes,
            import_reject_property: c.import_reject_property.clone(),
            reject_property: c.reject_property.clone(),
            store: c.store,
        }
    }
}

fn parse_all(raw: &[Box<RawValue>]) -> Vec<Value> {
    raw.iter()
        .map(|r| serde_json::from_str(r.get()).unwrap_or(Value::Null))
        .collect()
}

struct Plan {
    down: DownMode,
    fault: Option<Fault>,
    latency: Duration,
    max_body_bytes: Option<usize>,
    import_reject_property: Option<String>,
    reject_property: Option<(String, u16)>,
    store: bool,
}

// ---------------------------------------------------------------------------------------------
// MockServer
// ---------------------------------------------------------------------------------------------

/// A mock server running on its own tokio runtime in a background thread.
/// Dropping it shuts the server down and closes every connection.
pub struct MockServer {
    addr: SocketAddr,
    control: Control,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockServer {
    /// Start on a free port of 127.0.0.1. Usable from plain (sync) `#[test]` functions.
    pub fn start() -> MockServer {
        MockServer::start_on(0).expect("bulkhead-mock: cannot start")
    }

    /// Start on `port` of 127.0.0.1 (0 picks a free one).
    pub fn start_on(port: u16) -> std::io::Result<MockServer> {
        MockServer::serve_control(bind(port)?, Control::new())
    }

    /// Kill the server (every connection closes, answered or not, like a crashed process) and
    /// start it again on the same port with the same store and settings, like a service that
    /// restarts on durable storage. Binding is retried for up to 5 s while the port is busy.
    pub fn restart(self) -> std::io::Result<MockServer> {
        let (port, control) = (self.addr.port(), self.control.clone());
        drop(self);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match bind(port) {
                Ok(listener) => return MockServer::serve_control(listener, control),
                Err(e) if std::time::Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn serve_control(
        listener: std::net::TcpListener,
        control: Control,
    ) -> std::io::Result<MockServer> {
        let addr = listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bulkhead-mock")
            .enable_all()
            .build()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let ctl = control.clone();
        let thread = std::thread::Builder::new()
            .name("bulkhead-mock-main".into())
            .spawn(move || {
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => {
                            serve(l, ctl, async {
                                let _ = rx.await;
                            })
                            .await
                        }
                        Err(e) => eprintln!("bulkhead-mock: {e}"),
                    }
                });
                rt.shutdown_timeout(Duration::from_millis(200));
            })?;
        Ok(MockServer {
            addr,
            control,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn control(&self) -> &Control {
        &self.control
    }
}

impl std::ops::Deref for MockServer {
    type Target = Control;
    fn deref(&self) -> &Control {
        &self.control
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Bind a non-blocking std listener on 127.0.0.1:`port` (never any other address).
pub fn bind(port: u16) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serve connections from `listener` until `shutdown` completes. Connections already accepted
/// live on as tasks of the current runtime (they end when it is dropped).
pub async fn serve(
    listener: tokio::net::TcpListener,
    control: Control,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let ctl = control.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| handle(ctl.clone(), req));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(None)
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
                // e.g. out of file descriptors: back off a little.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request handling
// ---------------------------------------------------------------------------------------------

type Resp = Response<MockBody>;

/// A response body: a whole one, or one that never ends.
pub enum MockBody {
    Full(Full<Bytes>),
    /// Repeats `chunk` until `left` bytes were sent, then stalls forever.
    Endless {
        chunk: Bytes,
        left: usize,
    },
}

impl hyper::body::Body for MockBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            MockBody::Full(full) => std::pin::Pin::new(full).poll_frame(cx),
            // Never woken: the connection task ends when the client goes away or the
            // server shuts down.
            MockBody::Endless { left: 0, .. } => std::task::Poll::Pending,
            MockBody::Endless { chunk, left } => {
                let n = chunk.len().min(*left);
                *left -= n;
                std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk.slice(..n)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            MockBody::Full(full) => full.is_end_stream(),
            MockBody::Endless { .. } => false,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            MockBody::Full(full) => full.size_hint(),
            MockBody::Endless { .. } => hyper::body::SizeHint::default(),
        }
    }
}

/// Returned by the service to make hyper close the connection without answering.
#[derive(Debug)]
struct CloseConnection;

impl std::fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed by mock")
    }
}

impl std::error::Error for CloseConnection {}

fn respond(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(MockBody::Full(Full::new(body.into())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_resp(status: u16, v: &impl Serialize) -> Resp {
    respond(
        status,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

async fn handle(ctl: Control, req: Request<Incoming>) -> Result<Resp, CloseConnection> {
    let path = req.uri().path().to_string();
    if path == "/_mock/landing" {
        lock(&ctl.shared.data).stats.landing_hits += 1;
        return Ok(respond(
            200,
            "text/html",
            "<!doctype html><html><body>Sign in to continue</body></html>",
        ));
    }
    if let Some(cmd) = path.strip_prefix("/_mock/") {
        let query = req.uri().query().unwrap_or("").to_string();
        return Ok(control_endpoint(&ctl, cmd.trim_end_matches('/'), &query).await);
    }
    let Some(endpoint) = Endpoint::from_path(&path) else {
        return Ok(json_resp(
            404,
            &json!({"error": format!("no such endpoint: {path}"), "status": 0}),
        ));
    };
    if req.method() != Method::POST {
        let mut r = json_resp(405, &json!({"error": "method not allowed", "status": 0}));
        r.headers_mut()
            .insert("allow", HeaderValue::from_static("POST"));
        return Ok(r);
    }
    ingest(ctl, endpoint, req).await
}

fn header(req: &hyper::http::request::Parts, name: hyper::header::HeaderName) -> Option<String> {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn basic_auth(value: Option<&str>) -> Option<(String, String)> {
    let v = value?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':').unwrap_or((&s, ""));
    Some((u.to_string(), p.to_string()))
}

async fn ingest(
    ctl: Control,
    endpoint: Endpoint,
    req: Request<Incoming>,
) -> Result<Resp, CloseConnection> {
    let (parts, mut body) = req.into_parts();
    let mut plan = ctl.plan(endpoint);
    // Faults that act before the body is read.
    match plan.fault {
        Some(Fault::EarlyClose { status }) => {
            let fault = Fault::EarlyClose { status };
            early_record(&ctl, &parts, endpoint, &plan, &fault, status);
            let mut r = json_resp(
                status,
                &json!({"code": status, "error": "refused before reading the body", "status": 0}),
            );
            r.headers_mut()
                .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
            return Ok(r);
        }
        Some(Fault::ResetMidBody) => {
            early_record(&ctl, &parts, endpoint, &plan, &Fault::ResetMidBody, 0);
            let mut read = 0;
            while read < RESET_AFTER_BYTES {
                match body.frame().await {
                    Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                    _ => break,
                }
            }
            return Err(CloseConnection);
        }
        _ => {}
    }
    let body = body
        .collect()
        .await
        .map_err(|_| CloseConnection)?
        .to_bytes();
    let content_encoding = header(&parts, hyper::header::CONTENT_ENCODING);
    let gzip = content_encoding
        .as_deref()
        .is_some_and(|e| e.to_ascii_lowercase().contains("gzip"));
    let auth = basic_auth(
        parts
            .headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    );
    let mut rec = RequestRecord {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        content_type: header(&parts, CONTENT_TYPE),
        content_encoding: gzip.then(|| "gzip".to_string()),
        auth_username: auth.as_ref().map(|a| a.0.clone()),
        auth_password: auth.as_ref().map(|a| a.1.clone()),
        body_bytes: body.len(),
        ..Default::default()
    };
    {
        let mut d = lock(&ctl.shared.data);
        let s = &mut d.stats;
        s.requests += 1;
        *s.requests_by_endpoint.get_mut(endpoint) += 1;
        s.bytes_received += body.len() as u64;
        if gzip {
            s.gzip_requests += 1;
        }
        if plan.fault.is_some() {
            s.faults_served += 1;
        }
    }
    let finish = |rec: RequestRecord| {
        if plan.store {
            lock(&ctl.shared.data).requests.push(rec);
        }
    };

    match plan.down {
        DownMode::Up => {}
        DownMode::Refuse => {
            finish(rec);
            return Err(CloseConnection);
        }
        DownMode::Hang => {
            finish(rec);
            hang(&ctl).await;
            return Err(CloseConnection);
        }
    }

    if !plan.latency.is_zero() {
        tokio::time::sleep(plan.latency).await;
    }

    let mut reject_first = None;
    let fault = match plan.fault.take() {
        // Needs the records: answered by `handle_form`.
        Some(Fault::Reject { error }) if endpoint.is_form() => {
            rec.fault = Some("reject".into());
            reject_first = Some(error);
            None
        }
        other => other,
    };
    if let Some(fault) = fault {
        rec.fault = Some(fault.name());
        let resp = match fault {
            Fault::Status {
                status,
                body,
                retry_after,
            } => {
                let mut r = respond(status, "application/json", body);
                if let Some(secs) = retry_after {
                    r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
                }
                r
            }
            Fault::Reject { error } => {
                if !endpoint.is_form() {
                    json_resp(
                        400,
                        &json!({"code": 400, "error": error, "num_records_imported": 0, "status": "Bad Request"}),
                    )
                } else {
                    json_resp(200, &json!({"status": 0, "error": error}))
                }
            }
            Fault::Hang => {
                finish(rec);
                hang(&ctl).await;
                return Err(CloseConnection);
            }
            Fault::Drop => {
                finish(rec);
                return Err(CloseConnection);
            }
            Fault::Redirect { status, location } => {
                let mut r = respond(status, "text/html", "<html><body>Moved</body></html>");
                if let Ok(v) = HeaderValue::from_str(&location) {
                    r.headers_mut().insert(hyper::header::LOCATION, v);
                }
                r
            }
            Fault::EndlessBody { status } => {
                let mut r = Response::new(MockBody::Endless {
                    chunk: Bytes::from(vec![b'x'; 64 * 1024]),
                    left: ENDLESS_BYTES,
                });
                *r.status_mut() =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                r
            }
            Fault::TruncatedBody => {
                let mut r = respond(200, "application/json", r#"{"sta"#);
                r.headers_mut()
                    .insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(1000u32));
                r
            }
            // Handled before the body was read.
            Fault::EarlyClose { .. } | Fault::ResetMidBody => respond(500, "text/plain", ""),
        };
        rec.status = resp.status().as_u16();
        finish(rec);
        return Ok(resp);
    }

    // Decode the body.
    let decoded: Bytes = if gzip {
        let mut out = Vec::with_capacity(body.len() * 4);
        match flate2::read::MultiGzDecoder::new(&body[..]).read_to_end(&mut out) {
            Ok(_) => Bytes::from(out),
            Err(e) => {
                let r = json_resp(
                    400,
                    &json!({"code": 400, "error": format!("invalid gzip body: {e}"), "status": 0}),
                );
                rec.status = 400;
                finish(rec);
                return Ok(r);
            }
        }
    } else {
        body
    };
    rec.decoded_bytes = decoded.len();
    if plan.max_body_bytes.is_some_and(|max| decoded.len() > max) {
        lock(&ctl.shared.data).stats.too_large += 1;
        let r = json_resp(
            413,
            &json!({"code": 413, "error": format!("request body of {} bytes is over the mock's limit of {} bytes", decoded.len(), plan.max_body_bytes.unwrap_or(0)), "status": "Payload Too Large"}),
        );
        rec.status = 413;
        finish(rec);
        return Ok(r);
    }

    let resp = if endpoint == Endpoint::Import {
        handle_import(&ctl, &plan, &decoded, auth.as_ref(), &mut rec)
    } else if !endpoint.is_form() {
        handle_peer_batch(&ctl, &plan, endpoint, &decoded, &mut rec)
    } else {
        handle_form(
            &ctl,
            &plan,
            endpoint,
            &decoded,
            &mut rec,
            reject_first.as_deref(),
        )
    };
    rec.status = resp.status().as_u16();
    finish(rec);
    Ok(resp)
}

/// Counts and records a request answered by a fault before its body was read.
fn early_record(
    ctl: &Control,
    parts: &hyper::http::request::Parts,
    endpoint: Endpoint,
    plan: &Plan,
    fault: &Fault,
    status: u16,
) {
    let mut d = lock(&ctl.shared.data);
    d.stats.requests += 1;
    *d.stats.requests_by_endpoint.get_mut(endpoint) += 1;
    d.stats.faults_served += 1;
    if plan.store {
        d.requests.push(RequestRecord {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or("").to_string(),
            content_type: header(parts, CONTENT_TYPE),
            status,
            fault: Some(fault.name()),
            ..Default::default()
        });
    }
}

/// Hold a request unanswered. The future is dropped when the client closes the connection.
async fn hang(ctl: &Control) {
    struct Held<'a>(&'a Control);
    impl Drop for Held<'_> {
        fn drop(&mut self) {
            let mut d = lock(&self.0.shared.data);
            d.stats.hanging = d.stats.hanging.saturating_sub(1);
        }
    }
    lock(&ctl.shared.data).stats.hanging += 1;
    let _held = Held(ctl);
    tokio::time::sleep(HANG_FOR).await;
}

// --- record parsing ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct EventLite<'a> {
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    #[serde(borrow, default)]
    properties: Option<PropsLite<'a>>,
}

#[derive(Deserialize)]
struct PropsLite<'a> {
    #[serde(borrow, default)]
    token: Option<&'a RawValue>,
    #[serde(borrow, default)]
    distinct_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    time: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "$insert_id")]
    insert_id: Option<&'a RawValue>,
    /// `$merge` events name the two ids instead of a `distinct_id`.
    #[serde(borrow, default, rename = "$distinct_ids")]
    distinct_ids: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct UpdateLite<'a> {
    #[serde(borrow, default, rename = "$token")]
    token: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "$distinct_id")]
    distinct_id: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "$group_key")]
    group_key: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "$group_id")]
    group_id: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "$insert_id")]
    insert_id: Option<&'a RawValue>,
}

/// Top-level JSON: an array of records or a single record.
fn split_records(json: &str) -> Result<Vec<&RawValue>, String> {
    let t = json.trim_start();
    if t.starts_with('[') {
        serde_json::from_str::<Vec<&RawValue>>(t).map_err(|e| format!("invalid JSON: {e}"))
    } else {
        serde_json::from_str::<&RawValue>(t)
            .map(|r| vec![r])
            .map_err(|e| format!("invalid JSON: {e}"))
    }
}

fn nonempty_string(v: Option<&RawValue>) -> bool {
    v.is_some_and(|r| {
        let s = r.get();
        s.starts_with('"') && s.len() > 2
    })
}

fn present(v: Option<&RawValue>) -> bool {
    v.is_some_and(|r| r.get() != "\"\"")
}

fn key_of(parts: &[&str]) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// A record that passed validation: its dedup key (None = never a duplicate) and its JSON.
struct Valid<'a> {
    key: Option<u64>,
    raw: &'a RawValue,
}

/// Validate a record for `endpoint`. Err is (field, message).
fn validate<'a>(
    endpoint: Endpoint,
    raw: &'a RawValue,
) -> Result<Valid<'a>, (&'static str, String)> {
    match endpoint {
        Endpoint::Track | Endpoint::Import => {
            let ev: EventLite = serde_json::from_str(raw.get())
                .map_err(|e| ("event", format!("not an event object: {e}")))?;
            if !nonempty_string(ev.event) {
                return Err(("event", "'event' must be a non-empty string".into()));
            }
            let Some(p) = ev.properties else {
                return Err(("properties", "'properties' is missing".into()));
            };
            if endpoint == Endpoint::Track {
                if !present(p.token) {
                    return Err(("properties.token", "'properties.token' is missing".into()));
                }
            } else {
                if !present(p.time) {
                    return Err(("properties.time", "'properties.time' is missing".into()));
                }
                let merge = ev.event.is_some_and(|e| e.get() == "\"$merge\"")
                    && p.distinct_ids.is_some_and(|ids| ids.get().starts_with('['));
                if !present(p.distinct_id) && !merge {
                    return Err((
                        "properties.distinct_id",
                        "'properties.distinct_id' is missing".into(),
                    ));
                }
                if !present(p.insert_id) {
                    return Err((
                        "properties.$insert_id",
                        "'properties.$insert_id' is missing".into(),
                    ));
                }
            }
            let key = p.insert_id.map(|id| {
                key_of(&[
                    ev.event.map_or("", |r| r.get()),
                    p.distinct_id.map_or("", |r| r.get()),
                    id.get(),
                ])
            });
            Ok(Valid { key, raw })
        }
        Endpoint::Engage | Endpoint::Groups => {
            let u: UpdateLite = serde_json::from_str(raw.get())
                .map_err(|e| ("$token", format!("not an update object: {e}")))?;
            if !present(u.token) {
                return Err(("$token", "'$token' is missing".into()));
            }
            if endpoint == Endpoint::Engage {
                if !present(u.distinct_id) {
                    return Err(("$distinct_id", "'$distinct_id' is missing".into()));
                }
            } else {
                if !present(u.group_key) {
                    return Err(("$group_key", "'$group_key' is missing".into()));
                }
                if !present(u.group_id) {
                    return Err(("$group_id", "'$group_id' is missing".into()));
                }
            }
            let key = u.insert_id.map(|id| {
                let ep = if endpoint == Endpoint::Engage {
                    "e"
                } else {
                    "g"
                };
                key_of(&[
                    ep,
                    u.distinct_id.map_or("", |r| r.get()),
                    u.group_key.map_or("", |r| r.get()),
                    u.group_id.map_or("", |r| r.get()),
                    id.get(),
                ])
            });
            Ok(Valid { key, raw })
        }
        // Peers' messages are not checked, only counted (by id when they carry one).
        Endpoint::Segment | Endpoint::Posthog => {
            let m = serde_json::from_str::<PeerMessage>(raw.get()).ok();
            let peer = if endpoint == Endpoint::Segment {
                "s"
            } else {
                "p"
            };
            let key = m
                .and_then(|m| m.message_id.or(m.uuid))
                .map(|id| key_of(&[peer, id.get()]));
            Ok(Valid { key, raw })
        }
    }
}

/// Record valid records: dedup, count and (when storing) keep them.
fn commit(ctl: &Control, endpoint: Endpoint, valid: &[Valid<'_>], store: bool) {
    let values: Vec<Option<Box<RawValue>>> = valid
        .iter()
        .map(|v| store.then(|| v.raw.to_owned()))
        .collect();
    let mut d = lock(&ctl.shared.data);
    let d = &mut *d;
    for (v, value) in valid.iter().zip(values) {
        let keys = if endpoint.is_event() {
            &mut d.event_keys
        } else {
            &mut d.update_keys
        };
        if let Some(k) = v.key {
            if !keys.insert(k) {
                d.stats.duplicates += 1;
                continue;
            }
        }
        if endpoint.is_event() {
            d.stats.events += 1;
            if let Some(value) = value {
                d.events.push(value);
            }
        } else {
            d.stats.updates += 1;
            if let Some(value) = value {
                d.updates.push(value);
            }
        }
    }
}

fn reject(ctl: &Control, n: usize) {
    lock(&ctl.shared.data).stats.rejected += n as u64;
}

// --- /track, /engage, /groups ----------------------------------------------------------------

fn decode_data(data: &str) -> Result<(String, bool), String> {
    let t = data.trim();
    if t.starts_with('{') || t.starts_with('[') {
        return Ok((t.to_string(), false));
    }
    // Base64; '+' may have become ' ' through form decoding, and line breaks may be present.
    let cleaned: String = t
        .chars()
        .filter(|c| *c != '\n' && *c != '\r')
        .map(|c| if c == ' ' { '+' } else { c })
        .collect();
    let cfg = base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent);
    let std = base64::engine::GeneralPurpose::new(&base64::alphabet::STANDARD, cfg);
    let url = base64::engine::GeneralPurpose::new(&base64::alphabet::URL_SAFE, cfg);
    let raw = std
        .decode(&cleaned)
        .or_else(|_| url.decode(&cleaned))
        .map_err(|e| format!("data is neither JSON nor base64: {e}"))?;
    let s = String::from_utf8(raw).map_err(|_| "base64 data is not UTF-8".to_string())?;
    Ok((s, true))
}

fn handle_form(
    ctl: &Control,
    plan: &Plan,
    endpoint: Endpoint,
    body: &[u8],
    rec: &mut RequestRecord,
    reject_first: Option<&str>,
) -> Resp {
    let mut data: Option<String> = None;
    let mut verbose = false;
    let query = rec.query.clone();
    for (k, v) in form_urlencoded::parse(query.as_bytes()).chain(form_urlencoded::parse(body)) {
        match &*k {
            "data" => data = Some(v.into_owned()),
            "verbose" => verbose = v == "1" || v.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    let answer = |ok: bool, error: Option<String>| -> Resp {
        if verbose {
            json_resp(200, &json!({"status": u8::from(ok), "error": error}))
        } else {
            respond(200, "text/plain", if ok { "1" } else { "0" })
        }
    };
    let Some(data) = data.filter(|d| !d.trim().is_empty()) else {
        return answer(false, Some("data, missing or empty".into()));
    };
    let (json, b64) = match decode_data(&data) {
        Ok(x) => x,
        Err(e) => return answer(false, Some(e)),
    };
    rec.data_base64 = b64;
    let records = match split_records(&json) {
        Ok(r) => r,
        Err(e) => return answer(false, Some(e)),
    };
    rec.records = records.len();
    if let Some(error) = reject_first {
        if let Some(id) = records.first().and_then(|r| insert_id_of(r)) {
            lock(&ctl.shared.data).poisoned.insert(id);
        }
        reject(ctl, records.len());
        return answer(false, Some(error.to_string()));
    }
    let poisoned = {
        let d = lock(&ctl.shared.data);
        records
            .iter()
            .position(|r| insert_id_of(r).is_some_and(|id| d.poisoned.contains(&id)))
    };
    if let Some(i) = poisoned {
        reject(ctl, records.len());
        return answer(false, Some(format!("record {i}: rejected by mock before")));
    }
    if let Some((name, status)) = &plan.reject_property {
        if let Some(i) = records.iter().position(|r| has_property(r, name)) {
            reject(ctl, records.len());
            let error = format!("record {i}: property '{name}' rejected by mock");
            return if *status == 200 {
                answer(false, Some(error))
            } else {
                json_resp(*status, &json!({"error": error, "status": 0}))
            };
        }
    }
    let mut valid = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        match validate(endpoint, r) {
            Ok(v) => valid.push(v),
            Err((_, msg)) => {
                reject(ctl, records.len());
                return answer(false, Some(format!("record {i}: {msg}")));
            }
        }
    }
    commit(ctl, endpoint, &valid, plan.store);
    answer(true, None)
}

/// A record's `$insert_id` (an event's, or an update's), as JSON text.
fn insert_id_of(raw: &RawValue) -> Option<String> {
    let v: Value = serde_json::from_str(raw.get()).ok()?;
    v.pointer("/properties/$insert_id")
        .or_else(|| v.get("$insert_id"))
        .map(Value::to_string)
}

/// Whether a record, or an object one level down in it (an event's `properties`, an
/// update's `$set`...), holds the key `name`.
fn has_property(raw: &RawValue, name: &str) -> bool {
    let Ok(Value::Object(record)) = serde_json::from_str::<Value>(raw.get()) else {
        return false;
    };
    record.contains_key(name)
        || record
            .values()
            .any(|v| v.as_object().is_some_and(|o| o.contains_key(name)))
}

// --- /import ----------------------------------------------------------------------------------

fn handle_import(
    ctl: &Control,
    plan: &Plan,
    body: &[u8],
    auth: Option<&(String, String)>,
    rec: &mut RequestRecord,
) -> Resp {
    if auth.is_none_or(|(u, _)| u.is_empty()) {
        return json_resp(
            401,
            &json!({"error": "Invalid credentials: HTTP Basic authentication is required", "status": "error"}),
        );
    }
    let strict = form_urlencoded::parse(rec.query.as_bytes())
        .any(|(k, v)| k == "strict" && (v == "1" || v.eq_ignore_ascii_case("true")));
    let bad = |msg: String| {
        json_resp(
            400,
            &json!({"code": 400, "error": msg, "num_records_imported": 0, "status": "Bad Request"}),
        )
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return bad("body is not UTF-8".into());
    };
    let records = match split_records(text) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    rec.records = records.len();
    let mut valid = Vec::with_capacity(records.len());
    let mut failed = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut result = validate(Endpoint::Import, r);
        if let (Ok(_), Some(name)) = (&result, &plan.import_reject_property) {
            let has = serde_json::from_str::<Value>(r.get())
                .ok()
                .and_then(|v| v.get("properties").map(|p| p.get(name).is_some()))
                .unwrap_or(false);
            if has {
                result = Err(("properties", format!("property '{name}' rejected by mock")));
            }
        }
        match result {
            Ok(v) => valid.push(v),
            Err((field, message)) => {
                let insert_id = serde_json::from_str::<Value>(r.get())
                    .ok()
                    .and_then(|v| v.pointer("/properties/$insert_id").cloned())
                    .unwrap_or(Value::Null);
                failed.push(json!({"index": i, "$insert_id": insert_id, "field": field, "message": message}));
            }
        }
    }
    reject(ctl, failed.len());
    commit(ctl, Endpoint::Import, &valid, plan.store);
    if failed.is_empty() || !strict {
        json_resp(
            200,
            &json!({"code": 200, "num_records_imported": valid.len(), "status": "OK"}),
        )
    } else {
        json_resp(
            400,
            &json!({"code": 400, "error": "some data points in the request failed validation",
                    "failed_records": failed, "num_records_imported": valid.len(), "status": "Bad Request"}),
        )
    }
}

// --- peers: Segment /v1/batch, PostHog /batch/ ------------------------------------------------

#[derive(Deserialize)]
struct PeerBatch<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct PeerMessage<'a> {
    #[serde(borrow, default, rename = "messageId")]
    message_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    uuid: Option<&'a RawValue>,
}

/// Count a peer SDK's batch as events, deduplicated on its message id when it has one, and
/// answer what that SDK expects (Segment `{}`, PostHog `{"status":1}`).
fn handle_peer_batch(
    ctl: &Control,
    plan: &Plan,
    endpoint: Endpoint,
    body: &[u8],
    rec: &mut RequestRecord,
) -> Resp {
    let batch = match serde_json::from_slice::<PeerBatch>(body) {
        Ok(b) => b.batch,
        Err(e) => return json_resp(400, &json!({"error": format!("invalid batch: {e}")})),
    };
    rec.records = batch.len();
    let valid: Vec<Valid> = batch
        .into_iter()
        .filter_map(|raw| validate(endpoint, raw).ok())
        .collect();
    commit(ctl, endpoint, &valid, plan.store);
    if endpoint == Endpoint::Segment {
        json_resp(200, &json!({}))
    } else {
        json_resp(200, &json!({"status": 1}))
    }
}

// --- /_mock/* -----------------------------------------------------------------------------------

fn ok() -> Resp {
    json_resp(200, &json!({"ok": true}))
}

fn bad_param(msg: impl Into<String>) -> Resp {
    json_resp(400, &json!({"ok": false, "error": msg.into()}))
}

async fn control_endpoint(ctl: &Control, cmd: &str, query: &str) -> Resp {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let num = |name: &str| -> Result<Option<u64>, String> {
        match param(name) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("{name} must be a number")),
        }
    };
    macro_rules! num {
        ($name:expr) => {
            match num($name) {
                Ok(v) => v,
                Err(e) => return bad_param(e),
            }
        };
    }
    match cmd {
        "stats" => json_resp(200, &ctl.stats()),
        "events" => json_resp(200, &lock(&ctl.shared.data).events),
        "updates" => json_resp(200, &lock(&ctl.shared.data).updates),
        "requests" => json_resp(200, &ctl.requests()),
        "up" => {
            ctl.set_down(DownMode::Up);
            ok()
        }
        "down" => {
            let mode = match param("mode").unwrap_or("refuse") {
                "refuse" => DownMode::Refuse,
                "hang" => DownMode::Hang,
                "up" => DownMode::Up,
                m => return bad_param(format!("unknown mode {m:?} (refuse|hang|up)")),
            };
            ctl.set_down(mode);
            ok()
        }
        "latency" => {
            ctl.set_latency(Duration::from_millis(num!("ms").unwrap_or(0)));
            ok()
        }
        "fault" => {
            let count = num!("count").unwrap_or(1);
            let endpoint = match param("endpoint") {
                None | Some("") => None,
                Some(e) => match Endpoint::from_name(e) {
                    Some(e) => Some(e),
                    None => return bad_param(format!("unknown endpoint {e:?}")),
                },
            };
            let status = num!("status");
            let retry_after = num!("retry_after");
            let kind = param("kind").unwrap_or(if status.is_some() { "status" } else { "" });
            let fault = match kind {
                "status" => {
                    let Some(status) = status.filter(|s| (100..=999).contains(s)) else {
                        return bad_param("status=NNN is required");
                    };
                    let body = param("body").map(str::to_string).unwrap_or_else(|| {
                        format!(r#"{{"error":"mock fault {status}","status":0}}"#)
                    });
                    Fault::Status {
                        status: status as u16,
                        body,
                        retry_after,
                    }
                }
                "reject" => Fault::Reject {
                    error: param("error").unwrap_or("rejected by mock").to_string(),
                },
                "hang" => Fault::Hang,
                "drop" => Fault::Drop,
                "early_close" => Fault::EarlyClose {
                    status: status.unwrap_or(413) as u16,
                },
                "reset_mid_body" => Fault::ResetMidBody,
                "redirect" => Fault::Redirect {
                    status: status.unwrap_or(302) as u16,
                    location: param("location").unwrap_or("/_mock/landing").to_string(),
                },
                "endless" => Fault::EndlessBody {
                    status: status.unwrap_or(500) as u16,
                },
                "truncated" => Fault::TruncatedBody,
                k => {
                    return bad_param(format!(
                        "unknown fault kind {k:?} (status|reject|hang|drop|early_close|\
                         reset_mid_body|redirect|endless|truncated)"
                    ))
                }
            };
            for _ in 0..count {
                ctl.push_fault_rule(endpoint, fault.clone());
            }
            ok()
        }
        "clear_faults" => {
            ctl.clear_faults();
            ok()
        }
        "max_body_bytes" => {
            ctl.set_max_body_bytes(num!("bytes").filter(|b| *b > 0).map(|b| b as usize));
            ok()
        }
        "import_reject_property" => {
            ctl.set_import_reject_property(
                param("name").filter(|n| !n.is_empty()).map(str::to_string),
            );
            ok()
        }
        "reject_property" => {
            let status = num!("status").unwrap_or(200) as u16;
            ctl.set_reject_property(
                param("name").filter(|n| !n.is_empty()).map(str::to_string),
                status,
            );
            ok()
        }
        "store" => {
            ctl.set_store(!matches!(param("on"), Some("0" | "false" | "off")));
            ok()
        }
        "reset" => {
            ctl.reset();
            ok()
        }
        "wait_events" => {
            let n = num!("n").unwrap_or(1);
            let timeout = Duration::from_millis(num!("timeout_ms").unwrap_or(5000));
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let events = ctl.stats().events;
                if events >= n {
                    return json_resp(200, &json!({"ok": true, "events": events}));
                }
                if tokio::time::Instant::now() >= deadline {
                    return json_resp(200, &json!({"ok": false, "events": events}));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        _ => json_resp(
            404,
            &json!({"ok": false, "error": format!("unknown control endpoint /_mock/{cmd}")}),
        ),
    }
}
