//! Helpers shared by the Rust integration tests (each test file compiles its own copy, so
//! not every file uses every helper).
#![allow(dead_code)]

use bulkhead::{Client, Config, Stats};
use bulkhead_mock::MockServer;
use serde_json::{Map, Value};

/// Test-friendly timings: short flush interval and backoff, no circuit breaker.
pub const QUICK: &str = r#"{"token":"test-token","flush_interval_ms":50,
    "backoff_initial_ms":5,"backoff_max_ms":50,"request_timeout_ms":2000,
    "circuit_failure_threshold":0}"#;

/// A client for `mock` configured by `defaults`, then `extra` (both JSON objects; `extra`
/// wins), ignoring the `BULKHEAD_*` environment.
pub fn client_with(mock: &MockServer, defaults: &str, extra: &str) -> Client {
    let mut config: Map<String, Value> = serde_json::from_str(defaults).unwrap();
    config.insert("api_host".into(), Value::String(mock.url()));
    let extra: Map<String, Value> = serde_json::from_str(extra).unwrap();
    config.extend(extra);
    let json = Value::Object(config).to_string();
    Client::new(Config::from_json_with_env(&json, |_| None).unwrap()).unwrap()
}

/// A client for `mock` with the [`QUICK`] timings; `extra` is merged into the config.
pub fn client(mock: &MockServer, extra: &str) -> Client {
    client_with(mock, QUICK, extra)
}

pub fn assert_accounted(s: &Stats) {
    assert_eq!(
        s.enqueued + s.replayed,
        s.sent + s.rejected + s.failed + s.spooled + s.queue_len + s.spool_pending,
        "every event accounted for: {s:?}"
    );
}
