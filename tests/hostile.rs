//! Delivery against a hostile or broken server (issue #7): redirects, answers that are not
//! Mixpanel's, endless bodies, one bad event in a batch, outages, and servers echoing
//! secrets. Real HTTP against the project's mock on loopback; no timed assertions (a flush
//! deadline is a watchdog that fails a hung test).

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use bulkhead_mock::{DownMode, Endpoint, Fault, MockServer};

mod common;
use common::{assert_accounted, client};

const LONG: Duration = Duration::from_secs(30);

#[test]
fn a_redirect_is_a_failure_not_a_delivery() {
    let mock = MockServer::start();
    mock.push_fault(Fault::redirect());
    let c = client(&mock, r#"{"flush_interval_ms":60000}"#);
    for _ in 0..3 {
        c.track("u", "e", None).unwrap();
    }
    c.flush(LONG).unwrap();
    let s = c.stats();
    assert_eq!((s.sent, s.failed, s.rejected), (0, 3, 0), "{s:?}");
    assert_eq!(s.retries, 0, "a redirect is not retried: {s:?}");
    assert_eq!(mock.stats().events, 0);
    assert_accounted(&s);
}

/// Needs `.redirect(reqwest::redirect::Policy::none())` on the shared client (runtime.rs).
#[test]
fn redirects_are_not_followed() {
    let mock = MockServer::start();
    mock.push_fault(Fault::Redirect {
        status: 307,
        location: "/_mock/landing".into(),
    });
    let c = client(&mock, "{}");
    c.track("u", "e", None).unwrap();
    c.flush(LONG).unwrap();
    assert_eq!(c.stats().failed, 1);
    assert_eq!(mock.stats().landing_hits, 0, "the redirect was followed");
}

#[test]
fn only_mixpanels_acceptance_counts_as_sent() {
    let not_mixpanel = [
        "<!doctype html><html><body>Welcome</body></html>",
        "",
        "ok",
        r#"{"status":"OK"}"#,
        r#"{"status":1"#,
        "[1]",
    ];
    for body in not_mixpanel {
        let mock = MockServer::start();
        // Every attempt gets the same answer.
        for _ in 0..2 {
            mock.push_fault(Fault::body(200, body));
        }
        let c = client(&mock, r#"{"max_retries":1}"#);
        c.track("u", "e", None).unwrap();
        c.flush(LONG).unwrap();
        let s = c.stats();
        assert_eq!(
            (s.sent, s.failed, s.requests, s.retries),
            (0, 1, 2, 1),
            "{body:?}: {s:?}"
        );
        assert_accounted(&s);
    }
    // /import: its own success shape only.
    for body in ["", r#"{"status":1}"#, "<html></html>"] {
        let mock = MockServer::start();
        mock.push_fault(Fault::body(200, body));
        let c = client(&mock, r#"{"max_retries":0}"#);
        c.import("u", "old", 1_500_000_000_000, None).unwrap();
        c.flush(LONG).unwrap();
        let s = c.stats();
        assert_eq!((s.sent, s.failed), (0, 1), "/import {body:?}: {s:?}");
    }
    // A body cut short is retried, and the retry's real answer counts.
    let mock = MockServer::start();
    mock.push_fault(Fault::TruncatedBody);
    let c = client(&mock, "{}");
    c.track("u", "e", None).unwrap();
    c.import("u", "old", 1_500_000_000_000, None).unwrap();
    c.flush(LONG).unwrap();
    let s = c.stats();
    assert_eq!((s.sent, s.failed, s.retries), (2, 0, 1), "{s:?}");
    assert_eq!(mock.stats().events, 2);
}

#[test]
fn one_bad_event_costs_only_itself() {
    for (endpoint, status) in [
        (Endpoint::Track, 200),
        (Endpoint::Track, 400),
        (Endpoint::Engage, 200),
        (Endpoint::Groups, 400),
    ] {
        let mock = MockServer::start();
        mock.set_reject_property(Some("bad".into()), status);
        let c = client(&mock, r#"{"batch_size":100,"flush_interval_ms":60000}"#);
        for i in 0..100 {
            let props = if i == 37 {
                r#"{"bad":true}"#.to_string()
            } else {
                format!(r#"{{"i":{i}}}"#)
            };
            match endpoint {
                Endpoint::Track => c.track("u", "e", Some(&props)).unwrap(),
                Endpoint::Engage => c.people(&format!("u{i}"), "$set", Some(&props)).unwrap(),
                _ => c
                    .group("company", &format!("g{i}"), "$set", Some(&props))
                    .unwrap(),
            }
        }
        c.flush(LONG).unwrap();
        let s = c.stats();
        assert_eq!(
            (s.sent, s.rejected, s.failed),
            (99, 1, 0),
            "{endpoint:?} {status}: {s:?}"
        );
        let m = mock.stats();
        assert_eq!(m.events + m.updates, 99, "{endpoint:?} {status}");
        let errors = c.errors(0);
        let rejected: u64 = errors
            .iter()
            .filter(|e| e.outcome == "rejected")
            .map(|e| e.events)
            .sum();
        assert_eq!(rejected, 1, "{errors:?}");
        assert_accounted(&s);
    }
}

#[test]
fn credentials_problems_are_not_bisected() {
    for status in [401, 403] {
        let mock = MockServer::start();
        mock.push_fault(Fault::status(status));
        let c = client(&mock, r#"{"batch_size":10,"flush_interval_ms":60000}"#);
        for _ in 0..10 {
            c.track("u", "e", None).unwrap();
        }
        c.flush(LONG).unwrap();
        let s = c.stats();
        assert_eq!((s.rejected, s.requests), (10, 1), "{status}: {s:?}");
    }
}

#[test]
fn the_retry_budget_is_a_hard_deadline() {
    let mock = MockServer::start();
    mock.set_down(DownMode::Hang);
    // A request may take a minute, but the batch may only take 300 ms in all.
    let c = client(
        &mock,
        r#"{"request_timeout_ms":60000,"retry_budget_ms":300,"max_retries":100}"#,
    );
    c.track("u", "e", None).unwrap();
    c.flush(LONG).unwrap();
    let s = c.stats();
    assert_eq!((s.failed, s.sent), (1, 0), "{s:?}");
    assert_accounted(&s);
}

#[test]
fn endless_response_bodies_are_cut_short() {
    let mock = MockServer::start();
    mock.push_fault(Fault::EndlessBody { status: 500 });
    let c = client(&mock, r#"{"max_retries":0,"request_timeout_ms":20000}"#);
    c.track("u", "e", None).unwrap();
    c.flush(LONG).unwrap();
    let errors = c.errors(0);
    assert_eq!(errors.len(), 1, "{errors:?}");
    // Judged on the first bytes, not after waiting for an end that never comes.
    assert_eq!(errors[0].http_status, 500, "{errors:?}");
    assert!(errors[0].message.starts_with("HTTP 500"), "{errors:?}");
    assert!(
        errors[0].message.contains("xxxxxxxx"),
        "the body's start: {errors:?}"
    );
    assert!(errors[0].message.len() < 1024, "{errors:?}");
}

#[test]
fn a_sleeping_retry_wakes_when_the_circuit_closes() {
    let mock = MockServer::start();
    mock.set_down(DownMode::Refuse);
    // A minute of backoff: only the circuit closing can bring the first event back in time.
    let c = client(
        &mock,
        r#"{"backoff_initial_ms":60000,"backoff_max_ms":60000,"retry_budget_ms":600000,
            "max_retries":10,"circuit_failure_threshold":1,"circuit_cooldown_ms":50}"#,
    );
    c.track("u", "first", None).unwrap();
    assert!(
        mock.wait_for_requests(1, LONG),
        "the first event never went out"
    );
    let retrying = (0..3000).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        c.stats().retries >= 1
    });
    assert!(retrying, "{:?}", c.stats());
    mock.set_down(DownMode::Up);
    // This one probes the circuit and closes it.
    c.track("u", "second", None).unwrap();
    c.flush(LONG).unwrap();
    let s = c.stats();
    assert_eq!((s.sent, s.failed), (2, 0), "{s:?}");
    assert_eq!(mock.stats().events, 2);
}

// --- secrets ------------------------------------------------------------------------------

const CHILD_ENV: &str = "HOSTILE_SECRETS_CHILD";

struct Secrets {
    token: &'static str,
    api_secret: &'static str,
    sa_user: &'static str,
    sa_secret: &'static str,
    call_key: &'static str,
    call_secret: &'static str,
    own_token: &'static str,
}

const S: Secrets = Secrets {
    token: "TOKENSECRET-a\"b/c d+e&f=g-0001",
    api_secret: "APISECRET-h\"i/j k+l&m=n-0002",
    sa_user: "sa-user-0003",
    sa_secret: "SASECRET-o\"p/q r+s-0004",
    call_key: "CALLKEY-t\"u/v w-0005",
    call_secret: "CALLSECRET-x\"y/z w-0006",
    // No JSON escape in it: message.rs reads the token as a borrowed str.
    own_token: "OWNTOKEN-q/r s+t-0007",
};

/// Every form the library itself gives a secret: raw, JSON-escaped, form-encoded (`%20`
/// or `+` for space).
fn encodings_of(s: &str) -> Vec<String> {
    let json = serde_json::to_string(s).unwrap();
    let pct: String = s
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"*-._".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    vec![
        s.to_string(),
        json[1..json.len() - 1].to_string(),
        form_urlencoded::byte_serialize(s.as_bytes()).collect(),
        pct,
    ]
}

/// The value of an HTTP Basic header the library builds.
fn basic(user: &str, pass: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

/// What client A (all client-level secrets) can have sent.
fn secrets_a() -> Vec<String> {
    let mut out: Vec<String> = [S.token, S.api_secret, S.sa_secret]
        .iter()
        .flat_map(|s| encodings_of(s))
        .collect();
    out.extend([
        basic(S.sa_user, S.sa_secret),
        basic(S.api_secret, ""),
        basic(S.token, ""),
    ]);
    out
}

/// What client B can have sent in one import authenticated by `user` (a per-call api key
/// or secret, or the message's own token).
fn secrets_b(user: &str) -> Vec<String> {
    let mut out: Vec<String> = [S.token, user]
        .iter()
        .flat_map(|s| encodings_of(s))
        .collect();
    out.extend([basic(S.token, ""), basic(user, "")]);
    out
}

/// Every needle to look for in the output.
fn encodings() -> Vec<String> {
    let mut all = secrets_a();
    for user in [S.own_token, S.call_key, S.call_secret] {
        all.extend(secrets_b(user));
    }
    all
}

/// A server answer echoing `needles`. After the "HTTP 400: " prefix, `first` starts at
/// byte 290 of the error message: it straddles the 300-byte cut.
fn echo(first: &str, needles: &[String]) -> String {
    format!("{}{first} {}", "x".repeat(280), needles.join(" | "))
}

/// Answers every request with an echo of `secrets`: a 503 first, then 400s, plain text and
/// JSON (whose `error` the library decodes) in turn.
fn push_echoes(mock: &MockServer, first: &str, needles: &[String]) {
    let plain = echo(first, needles);
    let json = serde_json::json!({ "error": plain, "status": 0 }).to_string();
    mock.clear_faults();
    mock.push_fault(Fault::body(503, plain.clone()));
    for i in 0..20 {
        mock.push_fault(Fault::body(400, if i % 2 == 0 { &plain } else { &json }));
    }
}

/// Run in a child process (stderr is captured there): clients that meet echoing faults
/// with debug logging on, then print their errors and stats. A server can only echo what it
/// was sent, so each client meets the secrets it knows.
#[test]
fn secrets_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let mock = MockServer::start();
    let a = client(
        &mock,
        &serde_json::json!({
            "token": S.token, "api_secret": S.api_secret,
            "service_account_username": S.sa_user, "service_account_secret": S.sa_secret,
            "log_level": "debug", "max_retries": 1, "batch_size": 1,
        })
        .to_string(),
    );
    push_echoes(&mock, S.token, &secrets_a());
    a.track("u", "e", None).unwrap();
    a.import("u", "old", 1_500_000_000_000, None).unwrap();
    a.people("u", "$set", Some(r#"{"k":1}"#)).unwrap();
    a.flush(LONG).unwrap();
    // Imports authenticated by per-call credentials, or by the message's own token.
    let b = client(
        &mock,
        &serde_json::json!({"token": S.token, "log_level": "debug", "max_retries": 1,
            "batch_size": 1})
        .to_string(),
    );
    let own = serde_json::json!({"event": "own",
        "properties": {"token": S.own_token, "distinct_id": "u", "time": 1_500_000_000}})
    .to_string();
    // The Basic username is the api secret if given, else the api key, else the token.
    for (key, secret, user) in [
        (None, None, S.own_token),
        (Some(S.call_key), None, S.call_key),
        (Some(S.call_key), Some(S.call_secret), S.call_secret),
    ] {
        push_echoes(&mock, user, &secrets_b(user));
        b.send("imports", &own, key, secret).unwrap();
        b.flush(LONG).unwrap();
    }
    for c in [&a, &b] {
        println!("errors: {}", bulkhead::errors_to_json(&c.errors(0)));
        for e in c.errors(0) {
            println!("message: {}", e.message);
        }
        println!("stats: {:?}", c.stats());
    }
}

#[test]
fn secrets_never_reach_errors_logs_or_stats() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "secrets_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let all = format!("{stdout}\n{stderr}");
    // The echo did reach every channel (so its absence below means something).
    assert!(stderr.contains("bulkhead info:"), "{stderr}");
    assert!(stderr.contains("bulkhead warn:"), "{stderr}");
    assert!(stdout.contains("message: HTTP 400"), "{stdout}");
    assert!(all.contains("<redacted>"), "{all}");
    for needle in encodings() {
        assert!(!all.contains(&needle), "{needle:?} leaked:\n{all}");
        // A secret cut in the middle leaks its start.
        let start: String = needle.chars().take(10).collect();
        assert!(!all.contains(&start), "{start:?} leaked:\n{all}");
    }
}
