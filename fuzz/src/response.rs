//! Mixpanel's answers: the verdict on (endpoint, HTTP status, `Retry-After`, body), and the
//! server text a delivery error keeps (secrets redacted, then cut). Input: one byte (bits
//! 0-1 the endpoint), two bytes of HTTP status (big-endian), then `retry_after, username,
//! body` separated by NUL bytes (the body may hold NULs and any bytes).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bulkhead::fuzzing::{self, Verdict};
use bulkhead::Config;
use serde_json::Value;

use super::Pieces;

const ENDPOINTS: [&str; 4] = ["events", "people", "groups", "imports"];
/// The client's secrets: its token and its api secret.
const TOKEN: &str = "tok-secret-9f3a";
const API_SECRET: &str = "sec/ret+\"quoted\"";

pub fn run(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let endpoint = ENDPOINTS[usize::from(data[0] & 3)];
    let status = u16::from_be_bytes([data[1], data[2]]);
    let pieces = Pieces::new(&data[3..], 3);
    // Only a header value of visible ASCII reaches the parser (`HeaderValue::to_str`).
    let retry_after = std::str::from_utf8(pieces.get(0))
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)));
    let username = std::str::from_utf8(pieces.get(1))
        .ok()
        .filter(|u| !u.is_empty());
    let body = pieces.get(2);
    // A fixed clock, so that a kept input replays the same way.
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);

    let verdict =
        fuzzing::judge(endpoint, status, retry_after, now, body).expect("a known endpoint");
    let parsed_retry = retry_after.and_then(|v| fuzzing::parse_retry_after(v, now));
    if let Some(value) = retry_after {
        check_retry_after(value, now, parsed_retry);
    }
    check_verdict(endpoint, status, parsed_retry, body, &verdict);

    let message = match &verdict {
        Verdict::Rejected { message, .. }
        | Verdict::Partial { message, .. }
        | Verdict::Fail { message, .. }
        | Verdict::Retry { message, .. } => message,
        Verdict::Accepted | Verdict::TooLarge => return,
    };
    check_server_text(username, message);
}

/// Delay-seconds (a non-negative finite number, fractions allowed) or an HTTP date.
fn check_retry_after(value: &str, now: SystemTime, parsed: Option<Duration>) {
    match value.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => {
            let expected = Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX);
            assert_eq!(parsed, Some(expected), "delay-seconds {value:?}");
        }
        Ok(_) => assert_eq!(parsed, None, "a negative or non-finite delay {value:?}"),
        Err(_) => {
            // A date: never before now, and only if it is one.
            if let Some(delay) = parsed {
                assert!(delay < Duration::from_secs(300 * 365 * 86_400), "{value:?}");
                let date = std::time::SystemTime::checked_add(&now, delay);
                assert!(date.is_some(), "{value:?}");
            }
        }
    }
}

fn json(body: &str) -> Option<Value> {
    serde_json::from_str(body.trim()).ok()
}

/// Every (endpoint, status, body) gets exactly one verdict, by the documented rules.
fn check_verdict(
    endpoint: &str,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    verdict: &Verdict,
) {
    let import = endpoint == "imports";
    let cut = &body[..body.len().min(64 * 1024)];
    let text = String::from_utf8_lossy(cut);
    let carried = |s: u16| assert_eq!(s, status, "{verdict:?} for HTTP {status}");
    match (status, verdict) {
        (200..=299, Verdict::Accepted) if import => {
            let ok = json(&text)
                .and_then(|v| v.as_object().cloned())
                .is_some_and(|o| {
                    o.get("status").and_then(Value::as_str) == Some("OK")
                        || o.get("num_records_imported").is_some_and(Value::is_u64)
                });
            assert!(
                ok,
                "accepted an /import answer that is not Mixpanel's: {text:?}"
            );
        }
        (200..=299, Verdict::Accepted) => {
            let ok = text.trim() == "1"
                || json(&text).is_some_and(|v| v.get("status").and_then(Value::as_i64) == Some(1));
            assert!(
                ok,
                "accepted a form answer that is not Mixpanel's: {text:?}"
            );
        }
        (200..=299, Verdict::Rejected { status: s, .. }) if !import => {
            carried(*s);
            let zero = text.trim() == "0"
                || json(&text).is_some_and(|v| v.get("status").and_then(Value::as_i64) == Some(0));
            assert!(zero, "a 2xx rejection without status 0: {text:?}");
        }
        (
            200..=299,
            Verdict::Retry {
                status: s,
                retry_after: r,
                ..
            },
        ) => {
            carried(*s);
            assert_eq!(*r, retry_after);
            if !import {
                assert_ne!(text.trim(), "1", "Mixpanel's acceptance retried");
            }
        }
        (300..=399, Verdict::Fail { status: s, .. }) => carried(*s),
        (400, Verdict::Partial { failed, .. }) if import => {
            let records = json(&text)
                .and_then(|v| v.get("failed_records")?.as_array().map(Vec::len))
                .expect("a partial success names its failed records");
            assert_eq!(*failed, records as u64);
        }
        (413, Verdict::TooLarge) => {}
        (
            408 | 429 | 500..=599,
            Verdict::Retry {
                status: s,
                retry_after: r,
                ..
            },
        ) => {
            carried(*s);
            assert_eq!(*r, retry_after, "the Retry-After delay is kept");
        }
        (300..=399 | 408 | 413 | 429 | 500..=599 | 200..=299, _) => {
            panic!("HTTP {status} on {endpoint} judged {verdict:?}")
        }
        (_, Verdict::Rejected { status: s, .. }) => carried(*s),
        _ => panic!("HTTP {status} on {endpoint} judged {verdict:?}"),
    }
}

/// The kept text is at most `MAX_ERROR_TEXT` bytes (and a `…`), and no secret of the client
/// or of the batch is left in it, raw or JSON-escaped, outside a redaction marker.
fn check_server_text(username: Option<&str>, message: &str) {
    let mut config = Config::new(TOKEN);
    config.api_secret = Some(API_SECRET.into());
    let kept = fuzzing::server_text(&config, username, message);
    assert!(
        kept.len() <= fuzzing::max_error_text() + '…'.len_utf8(),
        "{} bytes",
        kept.len()
    );
    let marker = fuzzing::redacted_marker();
    // A marker stands for one byte no secret below has, so no secret can span one.
    let outside = kept.replace(marker, "\u{1}");
    let mut secrets = vec![TOKEN.to_owned(), API_SECRET.to_owned()];
    secrets.extend(username.map(str::to_owned));
    for secret in secrets {
        let escaped = serde_json::to_string(&secret).expect("a string serialises");
        for form in [secret.as_str(), &escaped[1..escaped.len() - 1]] {
            let checkable =
                secret.len() >= 4 && !form.contains(['<', '>', '\u{1}']) && !marker.contains(form);
            assert!(
                !checkable || !outside.contains(form),
                "secret {form:?} left in {kept:?}"
            );
        }
    }
}
