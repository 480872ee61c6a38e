//! Buffered consumers: a deadpool pool of `pool_size` senders. Each takes one batch (one
//! endpoint, one set of credentials), sends it with bounded retries through the circuit
//! breaker, splits it on 413, and resolves every event in it exactly once. The pool size
//! bounds the number of requests in flight.
//!
//! A batch the server refuses as a whole (`{"status":0}` or HTTP 400 on `/track`,
//! `/engage`, `/groups`) is bisected like a 413 down to single events, so one bad event
//! costs only itself. 401/403 are about credentials and are not bisected.
//!
//! Memory per in-flight batch, beyond its messages (at most `batch_max_bytes` of JSON):
//! the encoded body, at most [`MAX_REQUEST_BODY`] (2 MiB) unless the batch is one message
//! (then up to three times `max_event_bytes`, the worst case of form encoding); with gzip,
//! also the uncompressed body in the consumer's scratch buffer beside the compressed one
//! (no larger than it); and at most [`MAX_RESPONSE_BODY`] (64 KiB) of the answer. So at
//! most `2 × max(2 MiB, 3 × max_event_bytes) + 64 KiB`: 4.1 MiB for a batch of many events,
//! 6.1 MB for one 1 MB event at worst, with the defaults; `pool_size` batches at a time.
//! Between batches a consumer keeps at most [`SCRATCH_KEEP`] (256 KiB) of scratch.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::circuit::{CircuitBreaker, Permit};
use crate::config::{Config, ImportCredentials};
use crate::log::{log, Level};
use crate::message::{Endpoint, Message};
use crate::redact::Redactor;
use crate::retry::{self, GiveUp, Step};
use crate::spool::Spool;
use crate::stats::{Accounting, Outcome};
use crate::transport::{self, Body, Verdict};
#[cfg(doc)]
use crate::transport::{MAX_REQUEST_BODY, MAX_RESPONSE_BODY};

/// The longest error message kept: server text (cut first) plus our own words.
const MAX_MESSAGE: usize = 512;

/// The largest scratch buffer a consumer keeps between batches.
pub(crate) const SCRATCH_KEEP: usize = 256 * 1024;

/// Everything a consumer needs, shared by the dispatcher and every in-flight batch.
pub struct DeliveryContext {
    pub config: Arc<Config>,
    pub accounting: Arc<Accounting>,
    pub breaker: CircuitBreaker,
    pub http: reqwest::Client,
    pub default_credentials: Arc<ImportCredentials>,
    pub cancel: CancellationToken,
    redactor: Redactor,
    /// Where failed deliveries go, and what a closing client hands over, with `spool_dir`.
    pub spool: Option<Arc<Spool>>,
    /// Set by a close that hands pending events to the spool: what the cancellation stops
    /// is spilled there instead of dropped.
    spilling: AtomicBool,
}

impl DeliveryContext {
    pub fn new(config: Arc<Config>, accounting: Arc<Accounting>, http: reqwest::Client) -> Self {
        Self {
            breaker: CircuitBreaker::new(
                config.circuit_failure_threshold,
                config.circuit_cooldown,
                config.circuit_cooldown_max,
            ),
            default_credentials: Arc::new(config.import_credentials()),
            redactor: Redactor::for_config(&config),
            config,
            accounting,
            http,
            cancel: CancellationToken::new(),
            spool: None,
            spilling: AtomicBool::new(false),
        }
    }

    pub fn with_spool(mut self, spool: Option<Arc<Spool>>) -> Self {
        self.spool = spool;
        self
    }

    /// A closing client is about to cancel delivery and hand what is pending to the spool.
    /// False (and nothing changes) without a spool.
    pub fn start_spilling(&self) -> bool {
        if self.spool.is_none() {
            return false;
        }
        self.spilling.store(true, Release);
        true
    }

    /// Hands `messages` (still charged to the guard) to the spool if a close asked for it;
    /// otherwise they are dropped here, already counted by the close.
    pub fn spill_if_closing(&self, messages: Vec<Message>) {
        if let (true, Some(spool)) = (self.spilling.load(Acquire), &self.spool) {
            spool.spill(messages);
        }
    }

    /// Records and logs a delivery problem: secrets redacted first, then cut to length
    /// (server text was already cut to [`transport::MAX_ERROR_TEXT`]; this caps the rest).
    fn error(
        &self,
        redactor: &Redactor,
        endpoint: Endpoint,
        status: u16,
        events: u64,
        outcome: &'static str,
        message: String,
    ) {
        let message = transport::truncate(redactor.redact(&message), MAX_MESSAGE);
        log(
            self.config.log_level,
            if outcome == "retrying" {
                Level::Info
            } else {
                Level::Warn
            },
            format_args!("{} {} events {outcome}: {message}", endpoint.path(), events),
        );
        self.accounting
            .record_error(endpoint, status, events, outcome, message);
    }
}

/// A batch closed by the dispatcher.
pub struct Batch {
    pub endpoint: Endpoint,
    pub credentials: Option<Arc<ImportCredentials>>,
    pub messages: Vec<Message>,
    pub bytes: u64,
    /// The sum of [`transport::encoded_len`] over `messages`, when the dispatcher counted
    /// it already (so that `encode` need not count again).
    pub encoded_len: Option<usize>,
}

/// One pooled consumer. It keeps its serialisation buffer between batches (up to
/// [`SCRATCH_KEEP`]).
#[derive(Default)]
pub struct BufferedConsumer {
    scratch: Vec<u8>,
}

pub type ConsumerPool = deadpool::unmanaged::Pool<BufferedConsumer>;

pub fn new_pool(size: usize) -> ConsumerPool {
    let pool = ConsumerPool::new(size);
    for _ in 0..size {
        // Cannot fail: the pool was made with room for exactly `size` objects.
        let _ = pool.try_add(BufferedConsumer::default());
    }
    pool
}

/// How a series of attempts for one body ended.
enum Delivery {
    Accepted,
    /// Refused by the server; not to be retried.
    Rejected {
        status: u16,
        message: String,
    },
    /// `/import` stored some records and refused `failed` others.
    Partial {
        failed: u64,
        message: String,
    },
    TooLarge,
    /// Out of retries, retry budget, or circuit-breaker patience.
    Failed {
        status: u16,
        message: String,
    },
    /// The client was closed and gave up on these events (already counted).
    Cancelled,
}

impl BufferedConsumer {
    /// Sends `batch`, resolving every event in it (unless the client is abandoned).
    /// Errors are recorded before events are resolved, so a flush that returns sees them.
    pub async fn deliver(&mut self, ctx: &DeliveryContext, batch: Batch) {
        self.deliver_all(ctx, batch).await;
        // A big batch must not pin its buffer until the next one.
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
    }

    async fn deliver_all(&mut self, ctx: &DeliveryContext, batch: Batch) {
        let credentials = batch
            .credentials
            .unwrap_or_else(|| ctx.default_credentials.clone());
        let redactor = ctx.redactor.with_credentials(&credentials);
        let url = transport::url(ctx.config.base_url(), batch.endpoint, &credentials);
        let endpoint = batch.endpoint;
        // A batch split in parts has its parts' lengths counted again.
        let mut encoded_len = batch.encoded_len;
        let mut work = vec![batch.messages];
        while let Some(messages) = work.pop() {
            let count = messages.len() as u64;
            let bytes: u64 = messages.iter().map(|m| m.len() as u64).sum();
            let known = encoded_len.take();
            let gzip = ctx.config.gzip;
            let body = match transport::encode(endpoint, &messages, gzip, &mut self.scratch, known)
            {
                Ok(body) => body,
                // Too big once encoded: split now instead of paying for a 413.
                Err(transport::Oversized) => {
                    split_into(&mut work, messages);
                    continue;
                }
            };
            ctx.accounting.counters.in_flight.fetch_add(count, Relaxed);
            let target = Target {
                url: &url,
                endpoint,
                credentials: &credentials,
                redactor: &redactor,
            };
            let result = attempt_until_done(ctx, &target, &body, count).await;
            drop(body);
            ctx.accounting.counters.in_flight.fetch_sub(count, Relaxed);
            let acc = &ctx.accounting;
            match result {
                Delivery::Accepted => acc.resolve(Outcome::Sent, count, bytes),
                // Refused as a whole: find the bad events by halves (not /import, whose
                // answer names them; not 401/403, which are about credentials).
                Delivery::Rejected { status, .. }
                    if messages.len() > 1
                        && endpoint != Endpoint::Import
                        && matches!(status, 200 | 400) =>
                {
                    log(
                        ctx.config.log_level,
                        Level::Debug,
                        format_args!(
                            "{} {count} events refused as a whole (HTTP {status}); splitting",
                            endpoint.path()
                        ),
                    );
                    split_into(&mut work, messages);
                }
                Delivery::Rejected { status, message } => {
                    ctx.error(&redactor, endpoint, status, count, "rejected", message);
                    acc.resolve(Outcome::Rejected, count, bytes);
                }
                Delivery::Partial { failed, message } => {
                    let failed = failed.min(count);
                    ctx.error(&redactor, endpoint, 400, failed, "rejected", message);
                    acc.resolve(Outcome::Sent, count - failed, bytes);
                    acc.resolve(Outcome::Rejected, failed, 0);
                }
                Delivery::TooLarge if messages.len() > 1 => split_into(&mut work, messages),
                Delivery::TooLarge => {
                    ctx.error(
                        &redactor,
                        endpoint,
                        413,
                        count,
                        "rejected",
                        "a single event is too large for the server (HTTP 413)".into(),
                    );
                    acc.resolve(Outcome::Rejected, count, bytes);
                }
                // With a spool, kept on disk for when the service is back.
                Delivery::Failed { status, message } if ctx.spool.is_some() => {
                    ctx.error(&redactor, endpoint, status, count, "spooled", message);
                    if let Some(spool) = &ctx.spool {
                        spool.spill(messages);
                    }
                }
                Delivery::Failed { status, message } => {
                    ctx.error(&redactor, endpoint, status, count, "failed", message);
                    acc.resolve(Outcome::Failed, count, bytes);
                }
                // Close gave up on the client: these and the rest of the batch go to the
                // spool if it asked for that, else they were already counted as failed.
                Delivery::Cancelled => {
                    ctx.spill_if_closing(messages);
                    for rest in work.drain(..) {
                        ctx.spill_if_closing(rest);
                    }
                    return;
                }
            }
        }
    }
}

/// Where one batch goes, and what to keep out of its error messages.
struct Target<'a> {
    url: &'a str,
    endpoint: Endpoint,
    credentials: &'a ImportCredentials,
    redactor: &'a Redactor,
}

/// Queues the two halves of `messages`, first half on top.
fn split_into(work: &mut Vec<Vec<Message>>, mut messages: Vec<Message>) {
    let second = messages.split_off(messages.len() / 2);
    work.push(second);
    work.push(messages);
}

/// Attempts one body until it is accepted, refused, too large, or out of retries/budget.
/// The retry budget is a hard deadline: no attempt starts after it, none runs past it.
async fn attempt_until_done(
    ctx: &DeliveryContext,
    target: &Target<'_>,
    body: &Body,
    count: u64,
) -> Delivery {
    let config = &ctx.config;
    let policy = retry::Policy {
        max_retries: config.max_retries,
        backoff_initial: config.backoff_initial,
        backoff_max: config.backoff_max,
    };
    let budget_end = Instant::now() + config.retry_budget;
    let out_of_budget = |status: u16, message: &str| Delivery::Failed {
        status,
        message: format!(
            "{message} (retry budget of {:?} exhausted)",
            config.retry_budget
        ),
    };
    let mut retry: u32 = 0;
    let mut last = (0u16, String::from("circuit breaker open"));
    loop {
        // Wait for the circuit, within the retry budget.
        let timeout = loop {
            let Some(timeout) =
                retry::attempt_timeout(config.request_timeout, Instant::now(), budget_end)
            else {
                return out_of_budget(last.0, &last.1);
            };
            let mut changes = ctx.breaker.subscribe();
            match ctx.breaker.permit(Instant::now()) {
                Permit::Go => break timeout,
                Permit::WaitUntil(when) if when >= budget_end => {
                    return out_of_budget(last.0, "circuit breaker open past the retry budget");
                }
                Permit::WaitUntil(when) => {
                    if !sleep_or_cancel(ctx, when, None).await {
                        return Delivery::Cancelled;
                    }
                }
                // Someone is probing: wait for its result (or the end of the budget).
                Permit::WaitForProbe => {
                    let changed = async {
                        let _ = changes.changed().await;
                    };
                    if !sleep_or_cancel(ctx, budget_end, Some(Box::pin(changed))).await {
                        return Delivery::Cancelled;
                    }
                }
            }
        };
        ctx.accounting.counters.requests.fetch_add(1, Relaxed);
        ctx.accounting
            .counters
            .bytes_sent
            .fetch_add(body.bytes.len() as u64, Relaxed);
        let verdict = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return Delivery::Cancelled,
            v = transport::post(
                &ctx.http,
                target.url,
                target.endpoint,
                target.credentials,
                body,
                timeout,
            ) => v,
        };
        // Any answer from Mixpanel, even a refusal, shows the service is up.
        let answered = |delivery: Delivery| {
            ctx.breaker.on_success();
            delivery
        };
        // Server text: redacted, then cut, before our own words are added to it.
        let clean = |message: String| {
            transport::truncate(target.redactor.redact(&message), transport::MAX_ERROR_TEXT)
        };
        let (status, retry_after, message) = match verdict {
            Verdict::Accepted => return answered(Delivery::Accepted),
            Verdict::Rejected { status, message } => {
                return answered(Delivery::Rejected {
                    status,
                    message: clean(message),
                })
            }
            Verdict::Partial { failed, message } => {
                return answered(Delivery::Partial {
                    failed,
                    message: clean(message),
                })
            }
            Verdict::TooLarge => return answered(Delivery::TooLarge),
            Verdict::Fail { status, message } => {
                // Something other than Mixpanel answered.
                ctx.breaker.on_failure(Instant::now());
                return Delivery::Failed {
                    status,
                    message: clean(message),
                };
            }
            Verdict::Retry {
                status,
                retry_after,
                message,
            } => (status, retry_after, clean(message)),
        };
        if ctx.breaker.on_failure(Instant::now()) {
            // To the library's sink and to the host's logger (Ruby, Python).
            ctx.accounting.note(
                Level::Warn,
                "circuit breaker opened after repeated failures: nothing is sent for the \
                 cooldown, then one probe"
                    .into(),
            );
        }
        let now = Instant::now();
        let at = match retry::next_step(
            &policy,
            retry,
            now,
            budget_end,
            retry_after,
            fastrand::f64(),
        ) {
            Step::RetryAt(at) => at,
            Step::GiveUp(GiveUp::OutOfRetries) => {
                return Delivery::Failed {
                    status,
                    message: format!("{message} (gave up after {} attempts)", retry + 1),
                };
            }
            Step::GiveUp(GiveUp::OutOfBudget) => return out_of_budget(status, &message),
        };
        ctx.accounting.counters.retries.fetch_add(1, Relaxed);
        // After a network error or 5xx (not a rate limit), the breaker closing proves the
        // service is back: retry then rather than sleep out the backoff.
        let mut changes = ctx.breaker.subscribe();
        let closes = ctx.breaker.closes();
        let rate_limited = status == 429 || retry_after.is_some();
        ctx.error(
            target.redactor,
            target.endpoint,
            status,
            count,
            "retrying",
            message.clone(),
        );
        last = (status, message);
        let woken = async move {
            if rate_limited {
                std::future::pending::<()>().await;
            }
            let _ = changes.wait_for(|b| b.closes() > closes).await.is_ok();
        };
        if !sleep_or_cancel(ctx, at, Some(Box::pin(woken))).await {
            return Delivery::Cancelled;
        }
        retry += 1;
    }
}

type Wake<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

/// Sleeps until `when` or until `wake` completes; false if the client was cancelled first.
async fn sleep_or_cancel(ctx: &DeliveryContext, when: Instant, wake: Option<Wake<'_>>) -> bool {
    let wake = async {
        match wake {
            Some(w) => w.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        _ = ctx.cancel.cancelled() => false,
        _ = tokio::time::sleep_until(when.into()) => true,
        _ = wake => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_big_batch_does_not_leave_a_big_scratch_buffer() {
        let mock = bulkhead_mock::MockServer::start();
        let mut config = Config::new("t");
        config.api_host = mock.url();
        let accounting = Arc::new(Accounting::new(8, 1000, 1 << 30));
        let ctx =
            DeliveryContext::new(Arc::new(config), accounting.clone(), reqwest::Client::new());
        let pad = "x".repeat(50_000);
        let messages: Vec<Message> = (0..20)
            .map(|i| Message {
                endpoint: Endpoint::Track,
                credentials: None,
                json: format!(
                    r#"{{"event":"e","properties":{{"token":"t","distinct_id":"u","$insert_id":"i{i}","pad":"{pad}"}}}}"#
                )
                .into_bytes(),
            })
            .collect();
        let bytes = messages.iter().map(|m| m.len() as u64).sum();
        let charged: u64 = messages
            .iter()
            .map(|m| crate::guard::Guard::charge(m.len()))
            .sum();
        accounting.guard.reserve(20, charged).unwrap();
        let batch = Batch {
            endpoint: Endpoint::Track,
            credentials: None,
            messages,
            bytes,
            encoded_len: None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut consumer = BufferedConsumer::default();
        rt.block_on(consumer.deliver(&ctx, batch));
        assert_eq!(accounting.counters.sent.load(Relaxed), 20);
        assert_eq!(
            mock.stats().gzip_requests,
            1,
            "the batch went out compressed"
        );
        assert!(
            consumer.scratch.capacity() <= SCRATCH_KEEP,
            "{} bytes kept",
            consumer.scratch.capacity()
        );
    }
}
