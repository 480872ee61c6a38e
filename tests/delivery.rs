//! The core over real HTTP against the project's mock ingestion server on loopback.

use std::time::{Duration, Instant};

use bulkhead::{CircuitState, Config, ErrorKind, Stats};
use bulkhead_mock::{DownMode, Fault, MockServer};

mod common;
use common::{assert_accounted, client};

const LONG: Duration = Duration::from_secs(30);

#[test]
fn track_wire_shape() {
    let mock = MockServer::start();
    let c = client(&mock, "{}");
    c.track("u1", "Signed up", Some(r#"{"plan":"pro","n":3}"#))
        .unwrap();
    c.flush(LONG).unwrap();
    let events = mock.events();
    assert_eq!(events.len(), 1);
    let p = &events[0]["properties"];
    assert_eq!(events[0]["event"], "Signed up");
    assert_eq!(p["token"], "test-token");
    assert_eq!(p["distinct_id"], "u1");
    assert_eq!(p["plan"], "pro");
    assert_eq!(p["n"], 3);
    assert_eq!(p["mp_lib"], "bulkhead");
    assert!(p["$insert_id"].is_string());
    let req = &mock.requests()[0];
    assert_eq!(req.path, "/track");
    assert_eq!(req.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(
        req.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert!(!req.data_base64);
    let s = c.stats();
    assert_eq!((s.enqueued, s.sent, s.requests), (1, 1, 1));
    assert_accounted(&s);
}

#[test]
fn people_and_group_wire_shape_never_gzipped() {
    let mock = MockServer::start();
    let c = client(&mock, "{}");
    c.people("u1", "$set", Some(r#"{"$email":"a@b.c"}"#))
        .unwrap();
    c.group("company", "acme", "$set_once", Some(r#"{"size":5}"#))
        .unwrap();
    c.people("u1", "$unset", Some(r#"["old"]"#)).unwrap();
    c.flush(LONG).unwrap();
    let updates = mock.updates();
    assert_eq!(updates.len(), 3);
    let person = updates.iter().find(|u| u.get("$set").is_some()).unwrap();
    assert_eq!(person["$token"], "test-token");
    assert_eq!(person["$distinct_id"], "u1");
    assert_eq!(person["$set"]["$email"], "a@b.c");
    let group = updates
        .iter()
        .find(|u| u.get("$group_key").is_some())
        .unwrap();
    assert_eq!(group["$group_id"], "acme");
    assert_eq!(group["$set_once"]["size"], 5);
    for req in mock.requests() {
        assert!(req.path == "/engage" || req.path == "/groups");
        assert_eq!(req.content_encoding, None, "profile APIs are never gzipped");
        assert_eq!(req.status, 200);
    }
}

#[test]
fn import_uses_basic_auth_strict_and_project_id() {
    let mock = MockServer::start();
    let c = client(
        &mock,
        r#"{"service_account_username":"sa-user","service_account_secret":"sa-secret","project_id":"42"}"#,
    );
    c.import("u1", "Old event", 1_500_000_000_000, Some(r#"{"k":"v"}"#))
        .unwrap();
    c.flush(LONG).unwrap();
    let events = mock.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["properties"]["time"], 1_500_000_000_000i64);
    let req = &mock.requests()[0];
    assert_eq!(req.path, "/import");
    assert!(
        req.query.contains("strict=1") && req.query.contains("project_id=42"),
        "{}",
        req.query
    );
    assert_eq!(req.auth_username.as_deref(), Some("sa-user"));
    assert_eq!(req.auth_password.as_deref(), Some("sa-secret"));
    assert_eq!(req.content_type.as_deref(), Some("application/json"));
}

#[test]
fn send_accepts_both_sdks_shapes() {
    let mock = MockServer::start();
    let c = client(&mock, "{}");
    // mixpanel-ruby envelopes, verbatim (the shape its Tracker hands a consumer).
    c.send("event", r#"{"data":{"event":"Signed up","properties":{"distinct_id":"u1","token":"tok","time":4102444800000,"mp_lib":"ruby","$lib_version":"2.3.1","plan":"pro"}}}"#, None, None).unwrap();
    c.send("profile_update", r#"{"data":{"$token":"tok","$time":1795739207818,"$distinct_id":"u1","$set":{"$name":"x"}}}"#, None, None).unwrap();
    c.send("group_update", r#"{"data":{"$token":"tok","$time":1795739207818,"$group_key":"company","$group_id":"acme","$set":{"size":5}}}"#, None, None).unwrap();
    c.send("import", r#"{"data":{"event":"Old","properties":{"distinct_id":"u1","token":"tok","time":1500000000,"mp_lib":"ruby","$lib_version":"2.3.1"}},"api_key":"apikey"}"#, None, None).unwrap();
    // mixpanel-python: bare messages, and a buffered array.
    c.send("events", r#"[{"event":"a","properties":{"token":"tok","distinct_id":"u2","$insert_id":"id-a"}},{"event":"b","properties":{"token":"tok","distinct_id":"u2","$insert_id":"id-b"}}]"#, None, None).unwrap();
    c.send(
        "imports",
        r#"{"event":"imp","properties":{"token":"tok","distinct_id":"u3","time":1500000000}}"#,
        Some("key"),
        Some("secret"),
    )
    .unwrap();
    // No credentials given or configured: the message's own token authenticates it.
    c.send(
        "imports",
        r#"{"event":"own","properties":{"token":"msg-token","distinct_id":"u4","time":1500000000}}"#,
        None,
        None,
    )
    .unwrap();
    c.flush(LONG).unwrap();
    let events = mock.events();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for name in ["Signed up", "Old", "a", "b", "imp"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let signed_up = events.iter().find(|e| e["event"] == "Signed up").unwrap();
    assert_eq!(
        signed_up["properties"]["mp_lib"], "ruby",
        "prebuilt events keep their properties"
    );
    assert!(
        signed_up["properties"]["$insert_id"].is_string(),
        "an $insert_id is added"
    );
    assert_eq!(mock.updates().len(), 2);
    let users: Vec<Option<String>> = mock
        .requests()
        .iter()
        .filter(|r| r.path == "/import")
        .map(|r| r.auth_username.clone())
        .collect();
    assert!(users.contains(&Some("apikey".into())), "{users:?}");
    assert!(users.contains(&Some("secret".into())), "{users:?}");
    assert!(users.contains(&Some("msg-token".into())), "{users:?}");
    assert_accounted(&c.stats());
}

#[test]
fn guard_drops_and_counts_when_full() {
    let mock = MockServer::start();
    mock.set_down(DownMode::Hang);
    let c = client(
        &mock,
        r#"{"queue_capacity":10,"pool_size":1,"request_timeout_ms":60000}"#,
    );
    let mut dropped = 0;
    for i in 0..50 {
        match c.track("u", &format!("e{i}"), None) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::QueueFull => dropped += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let s = c.stats();
    assert_eq!(dropped, 40);
    assert_eq!(s.dropped_queue_full, 40);
    assert_eq!(s.enqueued, 10);
    assert_eq!(s.queue_len, 10);
    assert_accounted(&s);
}

#[test]
fn flush_and_close_return_within_deadline_against_a_hung_server() {
    let mock = MockServer::start();
    mock.set_down(DownMode::Hang);
    let c = client(&mock, r#"{"request_timeout_ms":60000}"#);
    for _ in 0..100 {
        c.track("u", "e", None).unwrap();
    }
    let err = c.flush(Duration::from_millis(200)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(
        c.stats().queue_len,
        100,
        "a timed-out flush keeps the events"
    );
    let started = Instant::now();
    let err = c.close(Duration::from_millis(200)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(started.elapsed() < LONG, "close is bounded");
    let s = c.stats();
    assert_eq!((s.failed, s.dropped_shutdown, s.queue_len), (100, 100, 0));
    assert_accounted(&s);
    assert_eq!(
        c.track("u", "late", None).unwrap_err().kind(),
        ErrorKind::Closed
    );
    // Idempotent.
    assert!(c.close(Duration::from_millis(10)).is_ok());
}

#[test]
fn retries_then_succeeds_keeping_insert_id() {
    let mock = MockServer::start();
    mock.push_fault(Fault::status(503));
    mock.push_fault(Fault::rate_limited(0));
    let c = client(&mock, "{}");
    c.track("u", "e", None).unwrap();
    c.flush(LONG).unwrap();
    let s = c.stats();
    assert_eq!((s.sent, s.retries, s.requests, s.failed), (1, 2, 3, 0));
    assert_eq!(mock.stats().events, 1);
    let errors = c.errors(0);
    assert_eq!(errors.len(), 2);
    assert!(errors.iter().all(|e| e.outcome == "retrying"));
    assert_eq!(errors[0].http_status, 503);
}

#[test]
fn network_errors_are_retried_until_the_limit() {
    let mock = MockServer::start();
    mock.set_down(DownMode::Refuse);
    let c = client(&mock, r#"{"max_retries":2}"#);
    c.track("u", "e", None).unwrap();
    c.flush(LONG).unwrap();
    let s = c.stats();
    assert_eq!((s.failed, s.requests, s.retries), (1, 3, 2));
    let last = c.errors(0).pop().unwrap();
    assert_eq!((last.outcome, last.http_status), ("failed", 0));
    assert_accounted(&s);
}

#[test]
fn client_errors_are_not_retried_and_secrets_stay_out() {
    // A 400 refusing the whole batch is bisected (issue #7 item 8): the pair, then each
    // event alone, three requests; 401/403 are about credentials and end at once.
    for (status, requests) in [(400, 3), (401, 1), (403, 1)] {
        let mock = MockServer::start();
        for _ in 0..requests {
            mock.push_fault(Fault::Status {
                status,
                body: r#"{"error":"bad token test-token","status":0}"#.into(),
                retry_after: None,
            });
        }
        let c = client(&mock, r#"{"flush_interval_ms":60000}"#);
        c.track("u", "e", None).unwrap();
        c.track("u", "f", None).unwrap();
        c.flush(LONG).unwrap();
        let s = c.stats();
        assert_eq!(
            (s.rejected, s.requests, s.retries),
            (2, requests, 0),
            "HTTP {status}"
        );
        let err = &c.errors(0)[0];
        assert_eq!(err.http_status, status);
        assert!(!err.message.contains("test-token"), "{}", err.message);
    }
}

#[test]
fn status_zero_is_a_rejection() {
    let mock = MockServer::start();
    // Every request refuses: the batch of 3, then its halves down to single events (5).
    for _ in 0..5 {
        mock.push_fault(Fault::Reject {
            error: "some data was invalid".into(),
        });
    }
    let c = client(&mock, r#"{"flush_interval_ms":60000}"#);
    for _ in 0..3 {
        c.track("u", "e", None).unwrap();
    }
    c.flush(LONG).unwrap();
    let s = c.stats();
    assert_eq!((s.rejected, s.sent, s.requests), (3, 0, 5));
    assert!(c.errors(0)[0].message.contains("some data was invalid"));
}

#[test]
fn too_large_batches_are_split_down_to_single_events() {
    let mock = MockServer::start();
    mock.set_max_body_bytes(Some(1500));
    let c = client(&mock, r#"{"gzip":false,"flush_interval_ms":60000}"#);
    let filler = format!(r#"{{"pad":"{}"}}"#, "x".repeat(300));
    for i in 0..8 {
        c.track("u", &format!("e{i}"), Some(&filler)).unwrap();
    }
    // One event that is too large even alone.
    c.track(
        "u",
        "huge",
        Some(&format!(r#"{{"pad":"{}"}}"#, "y".repeat(3000))),
    )
    .unwrap();
    c.flush(LONG).unwrap();
    let s = c.stats();
    assert_eq!((s.sent, s.rejected), (8, 1), "{s:?}");
    assert_eq!(mock.stats().events, 8);
    assert!(mock.stats().too_large >= 1);
    assert_accounted(&s);
}

#[test]
fn import_partial_success_counts_failed_records_as_rejected() {
    let mock = MockServer::start();
    mock.set_import_reject_property(Some("bad".into()));
    let c = client(&mock, "{}");
    c.import("u", "ok1", 1_500_000_000_000, None).unwrap();
    c.import("u", "bad", 1_500_000_000_000, Some(r#"{"bad":true}"#))
        .unwrap();
    c.import("u", "ok2", 1_500_000_000_000, None).unwrap();
    c.flush(LONG).unwrap();
    let s = c.stats();
    assert_eq!(
        (s.sent, s.rejected, s.requests, s.retries),
        (2, 1, 1, 0),
        "{s:?}"
    );
    assert_eq!(mock.stats().events, 2);
}

#[test]
fn circuit_opens_during_an_outage_and_closes_after() {
    let mock = MockServer::start();
    mock.set_down(DownMode::Refuse);
    let c = client(
        &mock,
        r#"{"circuit_failure_threshold":2,"circuit_cooldown_ms":100,"max_retries":1000,"retry_budget_ms":600000}"#,
    );
    c.track("u", "e", None).unwrap();
    let opened = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        c.stats().circuit_state != CircuitState::Closed
    });
    assert!(opened, "circuit never left closed: {:?}", c.stats());
    mock.set_down(DownMode::Up);
    c.flush(LONG).unwrap();
    let s = c.stats();
    assert_eq!((s.sent, s.circuit_state), (1, CircuitState::Closed));
    assert_eq!(mock.stats().events, 1);
}

#[test]
fn bad_input_is_refused_and_counted() {
    let mock = MockServer::start();
    let c = client(&mock, r#"{"max_event_bytes":200}"#);
    let kind = |r: bulkhead::Result<()>| r.unwrap_err().kind();
    assert_eq!(
        kind(c.track("u", "e", Some("{nope"))),
        ErrorKind::InvalidJson
    );
    assert_eq!(
        kind(c.track("u", "e", Some("[1,2]"))),
        ErrorKind::InvalidJson
    );
    assert_eq!(kind(c.track("u", "", None)), ErrorKind::InvalidArgument);
    assert_eq!(
        kind(c.people("u", "$explode", Some("{}"))),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind(c.send("nowhere", "{}", None, None)),
        ErrorKind::InvalidArgument
    );
    let big = format!(r#"{{"x":"{}"}}"#, "z".repeat(500));
    assert_eq!(kind(c.track("u", "e", Some(&big))), ErrorKind::TooLarge);
    let s = c.stats();
    assert_eq!(
        (s.dropped_invalid, s.dropped_too_large, s.enqueued),
        (5, 1, 0)
    );
    let bad = Config::from_json_with_env(r#"{"token":"t","colour":"blue"}"#, |_| None).unwrap_err();
    assert!(bad.message().contains("colour"));
}

#[test]
fn many_threads_all_accounted() {
    let mock = MockServer::start();
    let c = client(&mock, r#"{"batch_size":100}"#);
    std::thread::scope(|s| {
        for t in 0..8 {
            let c = c.clone();
            s.spawn(move || {
                for i in 0..2000 {
                    c.track(&format!("t{t}"), "e", Some(&format!(r#"{{"i":{i}}}"#)))
                        .unwrap();
                }
            });
        }
    });
    c.flush(LONG).unwrap();
    let s = c.stats();
    assert_eq!((s.enqueued, s.sent), (16_000, 16_000));
    assert_eq!(mock.stats().events, 16_000);
    assert_eq!(mock.stats().duplicates, 0);
    assert_accounted(&s);
}

#[test]
fn batches_respect_batch_size() {
    let mock = MockServer::start();
    let c = client(&mock, r#"{"batch_size":7,"flush_interval_ms":60000}"#);
    for _ in 0..20 {
        c.track("u", "e", None).unwrap();
    }
    c.flush(LONG).unwrap();
    let sizes: Vec<usize> = mock.requests().iter().map(|r| r.records).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 20);
    assert!(sizes.iter().all(|&n| n <= 7), "{sizes:?}");
}

#[test]
fn background_close_delivers_then_gives_up_without_blocking_the_caller() {
    let mock = MockServer::start();
    mock.set_down(DownMode::Hang);
    let c = client(
        &mock,
        r#"{"shutdown_timeout_ms":100,"request_timeout_ms":60000}"#,
    );
    for _ in 0..5 {
        c.track("u", "e", None).unwrap();
    }
    c.close_in_background();
    assert_eq!(
        c.track("u", "late", None).unwrap_err().kind(),
        ErrorKind::Closed
    );
    let gave_up = (0..3000).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        c.stats().dropped_shutdown == 5
    });
    assert!(gave_up, "{:?}", c.stats());
    assert_accounted(&c.stats());
}

#[test]
fn a_quiet_endpoint_is_sent_on_time_under_a_steady_stream_elsewhere() {
    let mock = MockServer::start();
    let c = client(
        &mock,
        r#"{"flush_interval_ms":50,"queue_capacity":1000000}"#,
    );
    c.people("u", "$set", Some(r#"{"a":1}"#)).unwrap();
    // Keep the channel busy with events while waiting for the update, without flushing.
    let mut arrived = false;
    for _ in 0..20_000 {
        for _ in 0..100 {
            let _ = c.track("u", "busy", None);
        }
        if mock.stats().updates == 1 {
            arrived = true;
            break;
        }
    }
    assert!(arrived, "the /engage batch waited behind /track traffic");
}

#[test]
fn a_fresh_client_reports_zero_and_closes_cleanly() {
    let mock = MockServer::start();
    let c = client(&mock, "{}");
    assert_eq!(c.stats(), Stats::default());
    assert!(c.flush(Duration::from_millis(10)).is_ok());
    assert!(c.close(Duration::from_millis(10)).is_ok());
    assert_eq!(c.stats().enqueued, 0);
}

#[test]
fn batches_too_big_once_form_encoded_are_split_before_sending() {
    let mock = MockServer::start();
    // Mixpanel's 2 MiB cap on the uncompressed body.
    mock.set_max_body_bytes(Some(2 * 1024 * 1024));
    let c = client(&mock, r#"{"flush_interval_ms":60000}"#);
    // 600 KB of JSON each (escaped quotes), 1.8 MB each once form-encoded.
    let value = format!(r#"{{"q":"{}"}}"#, "\\\"".repeat(300_000));
    for i in 0..3 {
        c.people(&format!("u{i}"), "$set", Some(&value)).unwrap();
    }
    c.flush(LONG).unwrap();
    let s = c.stats();
    assert_eq!((s.sent, s.rejected), (3, 0), "{s:?}");
    assert_eq!(
        mock.stats().too_large,
        0,
        "split before sending, not after a 413"
    );
    assert_eq!(mock.stats().updates, 3);
}

#[test]
fn close_with_the_configured_timeout_uses_shutdown_timeout_ms() {
    use bulkhead::ffi::{
        bulkhead_client_close, bulkhead_client_free, bulkhead_client_new, bulkhead_client_stats,
        bulkhead_stats, bulkhead_status, bulkhead_track, BULKHEAD_TIMEOUT_CONFIGURED,
    };
    let mock = MockServer::start();
    mock.set_down(DownMode::Hang);
    let config = format!(
        r#"{{"token":"t","api_host":"{}","shutdown_timeout_ms":100,"request_timeout_ms":60000}}"#,
        mock.url()
    );
    let mut handle = std::ptr::null_mut();
    // SAFETY: `config` is readable for its length and `handle` is writable.
    let st = unsafe { bulkhead_client_new(config.as_ptr().cast(), config.len(), &mut handle) };
    assert_eq!(st, bulkhead_status::Ok);
    // SAFETY: `handle` is live; the strings are readable for the lengths given.
    let st = unsafe {
        bulkhead_track(
            handle,
            "u".as_ptr().cast(),
            1,
            "e".as_ptr().cast(),
            1,
            std::ptr::null(),
            0,
        )
    };
    assert_eq!(st, bulkhead_status::Ok);
    // Not u32::MAX milliseconds: the client's own 100 ms.
    // SAFETY: `handle` is live.
    let st = unsafe { bulkhead_client_close(handle, BULKHEAD_TIMEOUT_CONFIGURED) };
    assert_eq!(st, bulkhead_status::Timeout);
    let mut stats = bulkhead_stats::default();
    // SAFETY: `handle` is live and `stats` writable.
    let st = unsafe { bulkhead_client_stats(handle, &mut stats) };
    assert_eq!(st, bulkhead_status::Ok);
    assert_eq!((stats.failed, stats.dropped_shutdown), (1, 1));
    // SAFETY: `handle` came from bulkhead_client_new and is freed once, here.
    unsafe { bulkhead_client_free(handle) };
}

#[test]
fn batches_respect_batch_max_bytes() {
    let mock = MockServer::start();
    let c = client(
        &mock,
        r#"{"batch_max_bytes":2048,"flush_interval_ms":60000}"#,
    );
    let pad = format!(r#"{{"pad":"{}"}}"#, "x".repeat(400));
    for _ in 0..10 {
        c.track("u", "e", Some(&pad)).unwrap();
    }
    c.flush(LONG).unwrap();
    let sizes: Vec<usize> = mock.requests().iter().map(|r| r.records).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 10);
    // About 550 bytes of JSON per event: at most 3 fit in 2048.
    assert!(sizes.iter().all(|&n| (1..=3).contains(&n)), "{sizes:?}");
}
