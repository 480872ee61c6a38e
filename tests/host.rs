//! Behaviour a host expects (issue #8, part 2): failures that are not silent, test mode,
//! honest flush results, metrics, proxies. The core over real HTTP against the mock.

use std::time::Duration;

use bulkhead::{errors_to_json, Client, Config, ErrorKind, FlushOutcome, Note};
use bulkhead_mock::{DownMode, Fault, MockServer};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(30);

fn client_for(api_host: &str, extra: &str) -> Client {
    let mut config: serde_json::Map<String, Value> = serde_json::from_str(&format!(
        r#"{{"token":"host-token","api_host":"{api_host}","flush_interval_ms":50,
            "backoff_initial_ms":5,"backoff_max_ms":50,"request_timeout_ms":5000,
            "circuit_failure_threshold":0,"log_level":"off"}}"#
    ))
    .unwrap();
    let extra: serde_json::Map<String, Value> = serde_json::from_str(extra).unwrap();
    config.extend(extra);
    let json = Value::Object(config).to_string();
    Client::new(Config::from_json_with_env(&json, |_| None).unwrap()).unwrap()
}

fn client(mock: &MockServer, extra: &str) -> Client {
    client_for(&mock.url(), extra)
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn notes(c: &Client) -> Vec<Note> {
    c.take_notes(|n| (n.to_vec(), true))
}

#[test]
fn network_errors_name_the_host_and_the_cause() {
    let port = closed_port();
    let c = client_for(
        &format!("http://127.0.0.1:{port}"),
        r#"{"max_retries":0,"batch_size":1}"#,
    );
    c.track("u", "e", None).unwrap();
    c.flush(LONG).unwrap();
    let errors = c.errors(0);
    let message = &errors.last().expect("a delivery error").message;
    assert!(
        message.contains(&format!("could not connect to 127.0.0.1:{port}")),
        "{message}"
    );
    assert!(message.to_lowercase().contains("refused"), "{message}");
    assert!(!message.contains("client error (Connect)"), "{message}");
    // No response: http_status is null in the JSON, not 0.
    let json: Value = serde_json::from_str(&errors_to_json(&errors)).unwrap();
    assert!(json[0]["http_status"].is_null(), "{json}");
}

#[test]
fn test_mode_keeps_built_events_and_sends_nothing() {
    let mock = MockServer::start();
    let c = client(&mock, r#"{"test_mode":true,"test_mode_capacity":3}"#);
    c.track("u1", "Signed up", Some(r#"{"plan":"pro"}"#))
        .unwrap();
    c.people("u1", "$set", Some(r#"{"name":"A"}"#)).unwrap();
    // Validated exactly as in production.
    let err = c.track("u1", "bad", Some("[1]")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidJson);
    c.send(
        "events",
        r#"{"event":"pre","properties":{"distinct_id":"u2"}}"#,
        None,
        None,
    )
    .unwrap();
    // Beyond the capacity: refused as by a full queue, and counted.
    let full = c.track("u1", "one too many", None).unwrap_err();
    assert_eq!(full.kind(), ErrorKind::QueueFull);
    assert_eq!(c.flush(LONG), Ok(()));

    let events: Value = serde_json::from_str(&c.test_events_json().unwrap()).unwrap();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0]["endpoint"], "events");
    let props = &events[0]["data"]["properties"];
    assert_eq!(events[0]["data"]["event"], "Signed up");
    assert_eq!(props["token"], "host-token");
    assert_eq!(props["plan"], "pro");
    assert!(props["$insert_id"].is_string() && props["time"].is_number());
    assert_eq!(events[1]["endpoint"], "people");
    assert_eq!(events[1]["data"]["$set"]["name"], "A");
    assert_eq!(events[2]["data"]["event"], "pre");

    let s = c.stats();
    assert_eq!((s.dropped_queue_full, s.dropped_invalid), (1, 1));
    assert_eq!((s.enqueued, s.sent, s.requests), (0, 0, 0));
    assert_eq!(mock.stats().requests, 0, "nothing reached the network");

    assert!(c.clear_test_events());
    assert_eq!(c.test_events_json().as_deref(), Some("[]"));
    c.track("u1", "after clear", None).unwrap();
    assert!(c.test_events_json().unwrap().contains("after clear"));
    // Not in test mode: no list.
    let normal = client(&mock, "{}");
    assert_eq!(normal.test_events_json(), None);
    assert!(!normal.clear_test_events());
}

#[test]
fn flush_reports_failed_and_rejected_events_once() {
    let mock = MockServer::start();
    let c = client(&mock, r#"{"batch_size":1,"max_retries":0}"#);
    c.track("u", "ok", None).unwrap();
    assert_eq!(c.flush_outcome(LONG), Ok(FlushOutcome::default()));

    mock.control().push_fault(Fault::status(400));
    c.track("u", "refused", None).unwrap();
    let outcome = c.flush_outcome(LONG).unwrap();
    assert_eq!((outcome.failed, outcome.rejected), (0, 1));

    // Reported once: the next flush over clean deliveries is clean again.
    c.track("u", "ok again", None).unwrap();
    assert_eq!(c.flush_outcome(LONG), Ok(FlushOutcome::default()));

    // A network failure is a failure.
    mock.control().set_down(DownMode::Refuse);
    c.track("u", "lost", None).unwrap();
    let outcome = c.flush_outcome(LONG).unwrap();
    assert_eq!((outcome.failed, outcome.rejected), (1, 0));
}

#[test]
fn the_first_drop_abandoned_events_and_overwritten_errors_are_said() {
    let mock = MockServer::start();
    mock.control().set_down(DownMode::Hang);
    let c = client(&mock, r#"{"queue_capacity":1,"request_timeout_ms":60000}"#);
    c.track("u", "held", None).unwrap();
    assert_eq!(
        c.track("u", "dropped", None).unwrap_err().kind(),
        ErrorKind::QueueFull
    );
    assert!(c.log_hint().load(std::sync::atomic::Ordering::Relaxed) > 0);
    let first = notes(&c);
    assert_eq!(first.len(), 1, "one warning, not one per drop: {first:?}");
    assert!(first[0].message.contains("queue full"), "{first:?}");
    assert_eq!(c.log_hint().load(std::sync::atomic::Ordering::Relaxed), 0);
    // Later drops: an atomic count, reported at the next take with the count since.
    for _ in 0..3 {
        assert!(c.track("u", "dropped", None).is_err());
    }
    let since = notes(&c);
    assert_eq!(since.len(), 1, "{since:?}");
    assert!(
        since[0].message.contains("3 more events dropped"),
        "{since:?}"
    );
    assert!(notes(&c).is_empty());

    // A close that abandons events says how many and why.
    assert!(c.close(Duration::ZERO).is_err());
    let closed = notes(&c);
    assert!(
        closed.iter().any(
            |n| n.message.contains("1 undelivered events were abandoned")
                && n.message.contains("deadline")
        ),
        "{closed:?}"
    );

    // The error ring counts what it overwrites, and a reader learns what it missed.
    let mock = MockServer::start();
    let c = client(
        &mock,
        r#"{"batch_size":1,"max_retries":0,"max_recent_errors":2}"#,
    );
    for _ in 0..3 {
        mock.control().push_fault(Fault::status(400));
    }
    for i in 0..3 {
        c.track("u", &format!("e{i}"), None).unwrap();
        c.flush(LONG).unwrap();
    }
    assert_eq!(c.stats().errors_overwritten, 1);
    assert_eq!(c.take_errors(|e| (e.len(), true)), 2);
    let missed = notes(&c);
    assert!(
        missed
            .iter()
            .any(|n| n.message.contains("1 delivery errors were overwritten")),
        "{missed:?}"
    );
}

#[test]
fn metrics_text_has_counters_gauges_and_the_client_label() {
    let mock = MockServer::start();
    let c = client(&mock, r#"{"name":"web"}"#);
    c.track("u", "e", None).unwrap();
    c.flush(LONG).unwrap();
    let text = c.metrics_text();
    assert!(
        text.contains("# TYPE bulkhead_sent_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("bulkhead_sent_total{client=\"web\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("bulkhead_enqueued_total{client=\"web\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE bulkhead_queue_len gauge\n"), "{text}");
    assert!(
        text.contains("bulkhead_queue_len{client=\"web\"} 0\n"),
        "{text}"
    );
}

#[test]
fn the_proxy_key_sends_through_the_proxy() {
    // The mock plays an HTTP proxy: a request for an unreachable host arrives there.
    let mock = MockServer::start();
    let port = closed_port();
    let c = client_for(
        &format!("http://127.0.0.1:{port}"),
        &format!(r#"{{"proxy":"{}","max_retries":0}}"#, mock.url()),
    );
    c.track("u", "via proxy", None).unwrap();
    c.flush(LONG).unwrap();
    assert_eq!(c.stats().sent, 1, "{:?}", c.errors(0));
    assert_eq!(mock.events()[0]["event"], "via proxy");
    // `none` ignores the environment's proxies and connects directly.
    let direct = client_for(
        &format!("http://127.0.0.1:{port}"),
        r#"{"proxy":"none","max_retries":0}"#,
    );
    direct.track("u", "direct", None).unwrap();
    direct.flush(LONG).unwrap();
    assert_eq!(direct.stats().failed, 1);
}
