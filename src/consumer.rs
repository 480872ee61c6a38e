//! Buffered consumers: a deadpool pool of `pool_size` senders. Each takes one batch (one
//! endpoint, one set of credentials), sends it with bounded retries through the circuit
//! breaker, splits it on 413, and resolves every event in it exactly once. The pool size
//! bounds the number of requests in flight.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::circuit::{CircuitBreaker, Permit};
use crate::config::{Config, ImportCredentials};
use crate::log::{log, Level};
use crate::message::{Endpoint, Message};
use crate::retry::backoff;
use crate::stats::{Accounting, Outcome};
use crate::transport::{self, Body, Verdict};

/// Everything a consumer needs, shared by the dispatcher and every in-flight batch.
pub struct DeliveryContext {
    pub config: Arc<Config>,
    pub accounting: Arc<Accounting>,
    pub breaker: CircuitBreaker,
    pub http: reqwest::Client,
    pub default_credentials: Arc<ImportCredentials>,
    pub cancel: CancellationToken,
    secrets: Vec<String>,
}

impl DeliveryContext {
    pub fn new(config: Arc<Config>, accounting: Arc<Accounting>, http: reqwest::Client) -> Self {
        let secrets = [
            Some(config.token.clone()),
            config.api_secret.clone(),
            config.service_account_secret.clone(),
        ]
        .into_iter()
        .flatten()
        .filter(|s| s.len() >= 4)
        .collect();
        Self {
            breaker: CircuitBreaker::new(config.circuit_failure_threshold, config.circuit_cooldown),
            default_credentials: Arc::new(config.import_credentials()),
            config,
            accounting,
            http,
            cancel: CancellationToken::new(),
            secrets,
        }
    }

    /// Removes any configured secret from text that came from outside (server bodies).
    fn redact(&self, mut text: String) -> String {
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "<redacted>");
            }
        }
        text
    }

    fn error(
        &self,
        endpoint: Endpoint,
        status: u16,
        events: u64,
        outcome: &'static str,
        message: String,
    ) {
        let message = self.redact(message);
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
}

/// One pooled consumer. It keeps its serialisation buffer between batches.
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
        let credentials = batch
            .credentials
            .unwrap_or_else(|| ctx.default_credentials.clone());
        let url = transport::url(ctx.config.base_url(), batch.endpoint, &credentials);
        let mut work = vec![batch.messages];
        while let Some(messages) = work.pop() {
            let count = messages.len() as u64;
            let bytes: u64 = messages.iter().map(|m| m.len() as u64).sum();
            let body = match transport::encode(
                batch.endpoint,
                &messages,
                ctx.config.gzip,
                &mut self.scratch,
            ) {
                Ok(body) => body,
                // Too big once encoded: split now instead of paying for a 413.
                Err(transport::Oversized) => {
                    split_into(&mut work, messages);
                    continue;
                }
            };
            ctx.accounting.counters.in_flight.fetch_add(count, Relaxed);
            let result =
                attempt_until_done(ctx, &url, batch.endpoint, &credentials, &body, count).await;
            ctx.accounting.counters.in_flight.fetch_sub(count, Relaxed);
            let acc = &ctx.accounting;
            match result {
                Delivery::Accepted => acc.resolve(Outcome::Sent, count, bytes),
                Delivery::Rejected { status, message } => {
                    ctx.error(batch.endpoint, status, count, "rejected", message);
                    acc.resolve(Outcome::Rejected, count, bytes);
                }
                Delivery::Partial { failed, message } => {
                    let failed = failed.min(count);
                    ctx.error(batch.endpoint, 400, failed, "rejected", message);
                    acc.resolve(Outcome::Sent, count - failed, bytes);
                    acc.resolve(Outcome::Rejected, failed, 0);
                }
                Delivery::TooLarge if messages.len() > 1 => split_into(&mut work, messages),
                Delivery::TooLarge => {
                    ctx.error(
                        batch.endpoint,
                        413,
                        count,
                        "rejected",
                        "a single event is too large for the server (HTTP 413)".into(),
                    );
                    acc.resolve(Outcome::Rejected, count, bytes);
                }
                Delivery::Failed { status, message } => {
                    ctx.error(batch.endpoint, status, count, "failed", message);
                    acc.resolve(Outcome::Failed, count, bytes);
                }
                // Close gave up on the client and already counted these as failed.
                Delivery::Cancelled => return,
            }
        }
    }
}

/// Queues the two halves of `messages`, first half on top.
fn split_into(work: &mut Vec<Vec<Message>>, mut messages: Vec<Message>) {
    let second = messages.split_off(messages.len() / 2);
    work.push(second);
    work.push(messages);
}

/// Attempts one body until it is accepted, refused, too large, or out of retries/budget.
async fn attempt_until_done(
    ctx: &DeliveryContext,
    url: &str,
    endpoint: Endpoint,
    credentials: &ImportCredentials,
    body: &Body,
    count: u64,
) -> Delivery {
    let config = &ctx.config;
    let started = Instant::now();
    let budget_end = started + config.retry_budget;
    let mut attempt: u32 = 0;
    loop {
        // Wait for the circuit, within the retry budget.
        loop {
            match ctx.breaker.permit() {
                Permit::Go => break,
                Permit::WaitUntil(when) if when > budget_end => {
                    return Delivery::Failed {
                        status: 0,
                        message: "circuit breaker open past the retry budget".into(),
                    };
                }
                Permit::WaitUntil(when) => {
                    if !sleep_or_cancel(ctx, when).await {
                        return Delivery::Cancelled;
                    }
                }
            }
        }
        ctx.accounting.counters.requests.fetch_add(1, Relaxed);
        ctx.accounting
            .counters
            .bytes_sent
            .fetch_add(body.bytes.len() as u64, Relaxed);
        let verdict = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return Delivery::Cancelled,
            v = transport::post(&ctx.http, url, endpoint, credentials, body, config.request_timeout) => v,
        };
        // Any answer, even a refusal, shows the service is up.
        let answered = |delivery: Delivery| {
            ctx.breaker.on_success();
            delivery
        };
        let (status, retry_after, message) = match verdict {
            Verdict::Accepted => return answered(Delivery::Accepted),
            Verdict::Rejected { status, message } => {
                return answered(Delivery::Rejected { status, message })
            }
            Verdict::Partial { failed, message } => {
                return answered(Delivery::Partial { failed, message })
            }
            Verdict::TooLarge => return answered(Delivery::TooLarge),
            Verdict::Retry {
                status,
                retry_after,
                message,
            } => (status, retry_after, message),
        };
        if ctx.breaker.on_failure() {
            log(
                config.log_level,
                Level::Warn,
                format_args!("circuit breaker opened after repeated failures"),
            );
        }
        if attempt >= config.max_retries {
            return Delivery::Failed {
                status,
                message: format!("{message} (gave up after {} attempts)", attempt + 1),
            };
        }
        let delay = backoff(
            attempt,
            config.backoff_initial,
            config.backoff_max,
            retry_after,
        );
        let wake = Instant::now() + delay;
        if wake > budget_end {
            return Delivery::Failed {
                status,
                message: format!(
                    "{message} (retry budget of {:?} exhausted)",
                    config.retry_budget
                ),
            };
        }
        ctx.accounting.counters.retries.fetch_add(1, Relaxed);
        ctx.error(endpoint, status, count, "retrying", message);
        if !sleep_or_cancel(ctx, wake).await {
            return Delivery::Cancelled;
        }
        attempt += 1;
    }
}

/// Sleeps until `when`; false if the client was cancelled first.
async fn sleep_or_cancel(ctx: &DeliveryContext, when: Instant) -> bool {
    let delay = when
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    tokio::select! {
        biased;
        _ = ctx.cancel.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}
