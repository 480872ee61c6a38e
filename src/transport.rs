//! HTTP: request bodies in Mixpanel's wire format, one POST, and the verdict on the answer.
//!
//! Form endpoints (`/track`, `/engage`, `/groups`) get `data=<JSON array>&verbose=1&ip=0`
//! and are judged by the `status` field of the verbose body (HTTP 200 with `status: 0` is a
//! rejection). `/import` gets a JSON array with `strict=1` and HTTP Basic credentials, and a
//! 400 with `failed_records` is a partial success.
//!
//! Only Mixpanel's own acceptance counts as sent: `{"status":1}` (or a bare `1`) on the
//! form endpoints, `{"code":200,"status":"OK",...}` on `/import`. Any other 2xx answer (an
//! HTML page, an empty or cut body) came from something else and is retried; a redirect is
//! not followed and fails the batch. At most [`MAX_RESPONSE_BODY`] bytes of an answer are read.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use reqwest::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};

use crate::config::ImportCredentials;
use crate::message::{Endpoint, Message};
use crate::retry::parse_retry_after;

/// The longest text we keep in an error message (cut after redaction).
pub(crate) const MAX_ERROR_TEXT: usize = 300;

/// The most of a response body we read: enough for any Mixpanel answer and its
/// `failed_records`, and a bound on what a hostile server can make us hold.
pub(crate) const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Mixpanel's cap on an uncompressed request body (the 413 example in its API reference).
/// Form encoding can make a body half as large again as its JSON, so this is checked on
/// the encoded body, before sending, rather than left to a 413 round trip.
pub(crate) const MAX_REQUEST_BODY: usize = 2 * 1024 * 1024;

/// How one HTTP attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// The whole batch was refused and must not be retried (400/401/403, `status: 0`).
    Rejected {
        status: u16,
        message: String,
    },
    /// `/import` stored some records and refused `failed` others.
    Partial {
        failed: u64,
        message: String,
    },
    /// 413: split and resend.
    TooLarge,
    /// Not delivered, and trying again would not help (a redirect).
    Fail {
        status: u16,
        message: String,
    },
    /// 429, 5xx, timeouts, network errors, and answers that are not Mixpanel's.
    Retry {
        status: u16,
        retry_after: Option<Duration>,
        message: String,
    },
}

/// A request body ready to send (and resend on retry without rebuilding).
#[derive(Debug, Clone)]
pub struct Body {
    pub bytes: Bytes,
    pub gzip: bool,
}

/// A batch whose encoded body is above [`MAX_REQUEST_BODY`]: split it before sending.
#[derive(Debug)]
pub struct Oversized;

/// Serialises a batch in the endpoint's wire format. When the body is compressed, the
/// uncompressed form is built in `scratch`, which the consumer keeps between batches.
/// `encoded_len`: the sum of [`encoded_len`] over `messages`, if the caller knows it.
/// A batch of several messages whose body would pass [`MAX_REQUEST_BODY`] is refused;
/// a single message is always encoded (the server has the last word on it).
pub fn encode(
    endpoint: Endpoint,
    messages: &[Message],
    gzip: bool,
    scratch: &mut Vec<u8>,
    encoded_len: Option<usize>,
) -> Result<Body, Oversized> {
    // Mixpanel's profile APIs do not take gzip: only /track and /import are compressed.
    let gzip = gzip && matches!(endpoint, Endpoint::Track | Endpoint::Import);
    let mut plain = if gzip {
        std::mem::take(scratch)
    } else {
        Vec::new()
    };
    plain.clear();
    match endpoint {
        Endpoint::Import => {
            plain.reserve(messages.iter().map(|m| m.json.len() + 1).sum::<usize>() + 1);
            plain.push(b'[');
            for (i, m) in messages.iter().enumerate() {
                if i > 0 {
                    plain.push(b',');
                }
                plain.extend_from_slice(&m.json);
            }
            plain.push(b']');
        }
        Endpoint::Track | Endpoint::Engage | Endpoint::Groups => {
            // The exact size, plus room for `form_encode_into` to write the largest message's
            // worst case before trimming it: the buffer never grows (and doubles) mid-way.
            let exact = encoded_len.unwrap_or_else(|| {
                messages
                    .iter()
                    .map(|m| self::encoded_len(endpoint, &m.json))
                    .sum()
            });
            let largest = messages.iter().map(|m| m.json.len()).max().unwrap_or(0);
            plain.reserve(FORM_FRAMING + exact + 2 * largest + 1);
            plain.extend_from_slice(b"data=%5B");
            for (i, m) in messages.iter().enumerate() {
                if i > 0 {
                    plain.extend_from_slice(b"%2C");
                }
                form_encode_into(&mut plain, &m.json);
            }
            plain.extend_from_slice(b"%5D&verbose=1&ip=0");
        }
    }
    if plain.len() > MAX_REQUEST_BODY && messages.len() > 1 {
        if gzip {
            *scratch = plain;
        }
        return Err(Oversized);
    }
    if !gzip {
        return Ok(Body {
            bytes: Bytes::from(plain),
            gzip: false,
        });
    }
    let mut encoder = GzEncoder::new(Vec::with_capacity(plain.len() / 4), Compression::fast());
    let compressed = encoder.write_all(&plain).and_then(|()| encoder.finish());
    let body = match compressed {
        Ok(bytes) => Body {
            bytes: Bytes::from(bytes),
            gzip: true,
        },
        // Compression into memory cannot really fail; if it does, send uncompressed.
        Err(_) => Body {
            bytes: Bytes::copy_from_slice(&plain),
            gzip: false,
        },
    };
    *scratch = plain;
    Ok(body)
}

/// Bytes that form encoding keeps as they are: ASCII letters, digits and `*-._`.
/// The form body's bytes besides the messages: `data=%5B` ... `%5D&verbose=1&ip=0`.
const FORM_FRAMING: usize = "data=%5B%5D&verbose=1&ip=0".len();

/// Whether form encoding escapes `b`: all but ASCII letters, digits and `*-._`. Written
/// with non-short-circuit operators so that counting over a message vectorises.
const fn escapes(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    let mark = (b == b'*') | (b == b'-') | (b == b'.') | (b == b'_');
    !(letter | digit | mark)
}

/// Each byte's form encoding packed little-endian in 3 bytes (itself, or `%XX`), with its
/// length (1 or 3) in the top byte.
static FORM: [u32; 256] = {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut table = [0u32; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = if escapes(b as u8) {
            b'%' as u32 | (HEX[b >> 4] as u32) << 8 | (HEX[b & 0xf] as u32) << 16 | 3 << 24
        } else {
            b as u32 | 1 << 24
        };
        b += 1;
    }
    table
};

/// How many bytes of `bytes` form encoding escapes.
fn count_escapes(bytes: &[u8]) -> usize {
    let (blocks, rest) = bytes.split_at(bytes.len() / 16 * 16);
    blocks.len() - count_kept(blocks) + rest.iter().filter(|&&b| escapes(b)).count()
}

/// How many bytes of `blocks` (a multiple of 16 long) form encoding keeps, 16 at a time with SSE2 (about one
/// instruction a byte, where the compiler's own vectorisation of [`escapes`] took three).
#[cfg(target_arch = "x86_64")]
fn count_kept(blocks: &[u8]) -> usize {
    use std::arch::x86_64::*;
    let mut kept = 0;
    // Each byte lane counts up to 255 blocks before it is summed.
    for group in blocks.chunks(255 * 16) {
        // SAFETY: SSE2 is part of the x86_64 baseline, so these intrinsics are always
        // available; each load reads exactly the 16 bytes of one chunk (unaligned load).
        kept += unsafe {
            let splat = |b: u8| _mm_set1_epi8(b as i8);
            let mut lanes = _mm_setzero_si128();
            for block in group.chunks_exact(16) {
                let v = _mm_loadu_si128(block.as_ptr().cast());
                // Signed compares: bytes from 0x80 are negative, never a letter or digit.
                let lower = _mm_or_si128(v, splat(0x20));
                let letter = _mm_and_si128(
                    _mm_cmpgt_epi8(lower, splat(b'a' - 1)),
                    _mm_cmplt_epi8(lower, splat(b'z' + 1)),
                );
                let digit = _mm_and_si128(
                    _mm_cmpgt_epi8(v, splat(b'0' - 1)),
                    _mm_cmplt_epi8(v, splat(b'9' + 1)),
                );
                let mark = _mm_or_si128(
                    _mm_or_si128(
                        _mm_cmpeq_epi8(v, splat(b'*')),
                        _mm_cmpeq_epi8(v, splat(b'-')),
                    ),
                    _mm_or_si128(
                        _mm_cmpeq_epi8(v, splat(b'.')),
                        _mm_cmpeq_epi8(v, splat(b'_')),
                    ),
                );
                let keep = _mm_or_si128(_mm_or_si128(letter, digit), mark);
                // A kept lane is -1: subtracting it counts one.
                lanes = _mm_sub_epi8(lanes, keep);
            }
            let sums = _mm_sad_epu8(lanes, _mm_setzero_si128());
            _mm_cvtsi128_si64(sums) as usize + _mm_cvtsi128_si64(_mm_srli_si128(sums, 8)) as usize
        };
    }
    kept
}

#[cfg(not(target_arch = "x86_64"))]
fn count_kept(blocks: &[u8]) -> usize {
    blocks.iter().filter(|&&b| !escapes(b)).count()
}

/// What one message adds to the body [`encode`] builds for `endpoint`, separator included:
/// so that batches are closed by the size of the request Mixpanel caps, not of their JSON.
pub fn encoded_len(endpoint: Endpoint, json: &[u8]) -> usize {
    match endpoint {
        Endpoint::Import => json.len() + 1,
        Endpoint::Track | Endpoint::Engage | Endpoint::Groups => {
            json.len() + 2 * count_escapes(json) + 3
        }
    }
}

/// `application/x-www-form-urlencoded` value encoding: bytes other than ASCII letters,
/// digits and `*-._` become `%XX`. This runs over every byte sent: per byte, one table
/// load and one 4-byte store, the cursor moving by the entry's length; no call, no branch
/// on the byte.
pub(crate) fn form_encode_into(out: &mut Vec<u8>, input: &[u8]) {
    let start = out.len();
    // Room for the worst case (every byte escaped) plus the last store's spare byte,
    // written without zeroing it first.
    out.reserve(3 * input.len() + 1);
    let base = out.spare_capacity_mut().as_mut_ptr().cast::<u8>();
    let mut at = 0;
    for &b in input {
        let entry = FORM[b as usize];
        // SAFETY: after `k` input bytes `at <= 3k`, so this 4-byte store ends at most at
        // `3 × input.len() + 1`, which the spare capacity holds (reserved above).
        unsafe {
            base.add(at)
                .cast::<[u8; 4]>()
                .write_unaligned(entry.to_le_bytes())
        };
        at += (entry >> 24) as usize;
    }
    // SAFETY: the first `at` spare bytes were written above (the 4-byte stores cover
    // every byte up to `at`), and `start + at` is within the capacity reserved.
    unsafe { out.set_len(start + at) };
}

/// The URL for a batch: `/import` carries `strict=1` and the project id.
pub fn url(base: &str, endpoint: Endpoint, credentials: &ImportCredentials) -> String {
    match endpoint {
        Endpoint::Import => {
            let mut url = format!("{base}/import?strict=1");
            if let Some(project) = &credentials.project_id {
                url.push_str("&project_id=");
                url.extend(form_urlencoded::byte_serialize(project.as_bytes()));
            }
            url
        }
        other => format!("{base}{}", other.path()),
    }
}

/// One POST with a deadline. Never panics; every failure becomes a [`Verdict`].
pub async fn post(
    http: &reqwest::Client,
    url: &str,
    endpoint: Endpoint,
    credentials: &ImportCredentials,
    body: &Body,
    timeout: Duration,
) -> Verdict {
    let content_type = match endpoint {
        Endpoint::Import => "application/json",
        _ => "application/x-www-form-urlencoded",
    };
    let mut request = http
        .post(url)
        .timeout(timeout)
        .header(CONTENT_TYPE, HeaderValue::from_static(content_type))
        .header("Accept", HeaderValue::from_static("application/json"))
        .body(body.bytes.clone());
    if body.gzip {
        request = request.header(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if endpoint == Endpoint::Import {
        request = request.basic_auth(&credentials.username, Some(&credentials.password));
    }
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(e) => return network_error(&e),
    };
    let status = response.status().as_u16();
    // A client that follows redirects would land elsewhere: that is not Mixpanel answering.
    if reqwest::Url::parse(url).is_ok_and(|asked| *response.url() != asked) {
        return Verdict::Fail {
            status,
            message: "redirected to another URL; redirects are not followed".into(),
        };
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_BODY - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= MAX_RESPONSE_BODY {
                    // Enough to judge; dropping the response closes the connection.
                    break;
                }
            }
            Ok(None) => break,
            // A success must arrive whole; for anything else the status says enough.
            Err(e) if (200..300).contains(&status) => return network_error(&e),
            Err(_) => break,
        }
    }
    judge(
        endpoint,
        status,
        retry_after,
        &String::from_utf8_lossy(&body),
    )
}

fn network_error(e: &reqwest::Error) -> Verdict {
    let kind = if e.is_timeout() {
        "request timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "network error"
    };
    // The host and port, never the whole URL (its query may name a project; the host is
    // what an operator needs to see).
    let to = e
        .url()
        .and_then(|u| {
            let host = u.host_str()?;
            Some(match u.port_or_known_default() {
                Some(port) => format!(" to {host}:{port}"),
                None => format!(" to {host}"),
            })
        })
        .unwrap_or_default();
    let cause = source_chain(e);
    let cause = if cause.is_empty() {
        String::new()
    } else {
        format!(": {cause}")
    };
    Verdict::Retry {
        status: 0,
        retry_after: None,
        message: format!("{kind}{to}{cause}"),
    }
}

/// The causes below `e`, outermost first, joined by ": " — without the wrappers' generic
/// words ("client error (Connect)", "error sending request") or a text repeated by the
/// next cause.
fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut texts: Vec<String> = Vec::new();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        let generic = text.starts_with("client error (") || text.starts_with("error sending");
        if !generic && !text.is_empty() && texts.last() != Some(&text) {
            texts.push(text);
        }
        next = cause.source();
    }
    // Drop a text that merely contains the next one ("tcp connect error: refused" and then
    // "refused"), keeping the more specific.
    let mut out: Vec<&str> = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let repeated = texts[i + 1..]
            .iter()
            .any(|later| text.ends_with(later.as_str()) && text != later);
        if !repeated {
            out.push(text);
        }
    }
    out.join(": ")
}

/// An error and its causes, for configuration errors built from reqwest's.
pub fn error_chain(e: &reqwest::Error) -> String {
    let chain = source_chain(e);
    if chain.is_empty() {
        e.to_string()
    } else {
        format!("{e}: {chain}")
    }
}

/// Classifies an HTTP answer. Pure, so it is tested without a server. Messages hold the
/// server's text whole: the caller redacts, then truncates.
pub fn judge(
    endpoint: Endpoint,
    status: u16,
    retry_after: Option<Duration>,
    text: &str,
) -> Verdict {
    let server_says = || server_error_text(text).unwrap_or_else(|| text.trim().to_owned());
    let not_mixpanel = || Verdict::Retry {
        status,
        retry_after,
        message: format!(
            "HTTP {status} without Mixpanel's acceptance in the body: {}",
            server_says()
        ),
    };
    match status {
        200..=299 if endpoint == Endpoint::Import => {
            if import_accepted(text) {
                Verdict::Accepted
            } else {
                not_mixpanel()
            }
        }
        200..=299 => match verbose_status(text) {
            Some(true) => Verdict::Accepted,
            Some(false) => Verdict::Rejected {
                status,
                message: format!("rejected with status 0: {}", server_says()),
            },
            None => not_mixpanel(),
        },
        300..=399 => Verdict::Fail {
            status,
            message: format!("HTTP {status}: redirects are not followed"),
        },
        400 if endpoint == Endpoint::Import => match failed_records(text) {
            Some(failed) => Verdict::Partial {
                failed,
                message: format!("{failed} records failed validation: {}", server_says()),
            },
            None => Verdict::Rejected {
                status,
                message: format!("HTTP 400: {}", server_says()),
            },
        },
        413 => Verdict::TooLarge,
        408 | 429 | 500..=599 => Verdict::Retry {
            status,
            retry_after,
            message: format!("HTTP {status}: {}", server_says()),
        },
        _ => Verdict::Rejected {
            status,
            message: format!("HTTP {status}: {}", server_says()),
        },
    }
}

/// `Some(true)` for `{"status":1}` or `1`, `Some(false)` for status 0, `None` for anything
/// else (not an answer from Mixpanel's form endpoints).
fn verbose_status(text: &str) -> Option<bool> {
    let trimmed = text.trim();
    match trimmed {
        "1" => return Some(true),
        "0" => return Some(false),
        _ => {}
    }
    let value: serde_json::Value = serde_json::from_str(trimmed).ok()?;
    match value.as_object()?.get("status")?.as_i64()? {
        1 => Some(true),
        0 => Some(false),
        _ => None,
    }
}

/// `/import`'s success: `{"code":200,"num_records_imported":N,"status":"OK"}`.
fn import_accepted(text: &str) -> bool {
    let Ok(serde_json::Value::Object(value)) = serde_json::from_str(text.trim()) else {
        return false;
    };
    value.get("status").and_then(|s| s.as_str()) == Some("OK")
        || value
            .get("num_records_imported")
            .is_some_and(serde_json::Value::is_u64)
}

fn server_error_text(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    match value.get("error")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn failed_records(text: &str) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    Some(value.get("failed_records")?.as_array()?.len() as u64)
}

/// Cuts `text` to `max` bytes (on a character boundary). Redact before.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_status_zero_is_a_rejection() {
        let v = judge(
            Endpoint::Track,
            200,
            None,
            r#"{"status":0,"error":"bad token"}"#,
        );
        assert!(matches!(v, Verdict::Rejected { message, .. } if message.contains("bad token")));
        assert_eq!(
            judge(Endpoint::Track, 200, None, r#"{"status":1,"error":null}"#),
            Verdict::Accepted
        );
        assert!(matches!(
            judge(Endpoint::Engage, 200, None, "0"),
            Verdict::Rejected { .. }
        ));
    }

    #[test]
    fn only_mixpanels_acceptance_is_accepted() {
        let retried = |endpoint, status, body: &str| {
            matches!(judge(endpoint, status, None, body), Verdict::Retry { .. })
        };
        for body in [
            "",
            "<html>hi</html>",
            "ok",
            r#"{"status":"OK"}"#,
            "[1]",
            r#"{"status":1"#,
        ] {
            assert!(retried(Endpoint::Track, 200, body), "{body:?}");
        }
        for body in ["", "1", r#"{"status":1}"#, "<html></html>"] {
            assert!(retried(Endpoint::Import, 200, body), "{body:?}");
        }
        assert!(retried(Endpoint::Track, 204, ""));
        assert_eq!(judge(Endpoint::Track, 200, None, " 1\n"), Verdict::Accepted);
        assert_eq!(
            judge(
                Endpoint::Import,
                200,
                None,
                r#"{"code":200,"num_records_imported":3,"status":"OK"}"#
            ),
            Verdict::Accepted
        );
        for status in [301, 302, 303, 307, 308] {
            assert!(matches!(
                judge(Endpoint::Track, status, None, r#"{"status":1}"#),
                Verdict::Fail { .. }
            ));
        }
    }

    #[test]
    fn import_partial_success() {
        let body = r#"{"code":400,"num_records_imported":1,"status":"Bad Request","failed_records":[{"index":1,"$insert_id":"a","field":"time","message":"x"}]}"#;
        assert!(matches!(
            judge(Endpoint::Import, 400, None, body),
            Verdict::Partial { failed: 1, .. }
        ));
    }

    #[test]
    fn retry_classes() {
        for status in [429, 500, 502, 503, 504] {
            assert!(matches!(
                judge(Endpoint::Track, status, None, ""),
                Verdict::Retry { .. }
            ));
        }
        for status in [400, 401, 403] {
            assert!(matches!(
                judge(Endpoint::Track, status, None, ""),
                Verdict::Rejected { .. }
            ));
        }
        assert_eq!(judge(Endpoint::Import, 413, None, ""), Verdict::TooLarge);
    }

    #[test]
    fn oversized_encoded_batches_are_refused_but_single_messages_are_not() {
        // 300 KB of quotes: 600 KB of JSON, 1.8 MB once form-encoded.
        let json = format!(r#"{{"q":"{}"}}"#, "\\\"".repeat(300_000)).into_bytes();
        let m = || Message {
            endpoint: Endpoint::Engage,
            credentials: None,
            json: json.clone(),
        };
        let mut scratch = Vec::new();
        assert!(encode(Endpoint::Engage, &[m(), m()], false, &mut scratch, None).is_err());
        assert!(encode(Endpoint::Engage, &[m()], false, &mut scratch, None).is_ok());
    }

    #[test]
    fn escapes_are_counted_as_one_byte_at_a_time_counts_them() {
        let mut rng = fastrand::Rng::with_seed(5);
        let every_byte: Vec<u8> = (0..=255).collect();
        assert_eq!(
            count_escapes(&every_byte),
            every_byte.iter().filter(|&&b| escapes(b)).count()
        );
        let long = vec![b'a'; 16 * 600 + 5];
        assert_eq!(count_escapes(&long), 0, "more than 255 blocks");
        // Fewer under Miri, which checks the SSE2 loads and runs about 1000 times slower.
        for _ in 0..if cfg!(miri) { 200 } else { 20_000 } {
            let bytes: Vec<u8> = (0..rng.usize(0..100)).map(|_| rng.u8(..)).collect();
            let expected = bytes.iter().filter(|&&b| escapes(b)).count();
            assert_eq!(count_escapes(&bytes), expected, "{bytes:?}");
        }
    }

    #[test]
    fn encoded_len_matches_the_encoder() {
        let messages: Vec<Message> = [r#"{"a":"b c"}"#, r#"{"q":"\"é%+"}"#, "{}"]
            .iter()
            .map(|j| Message {
                endpoint: Endpoint::Track,
                credentials: None,
                json: j.as_bytes().to_vec(),
            })
            .collect();
        for endpoint in [Endpoint::Track, Endpoint::Engage, Endpoint::Import] {
            let body = encode(endpoint, &messages, false, &mut Vec::new(), None).unwrap();
            let framing = match endpoint {
                Endpoint::Import => 1,
                _ => "data=%5B%5D&verbose=1&ip=0".len() - 3,
            };
            let predicted: usize = messages
                .iter()
                .map(|m| encoded_len(endpoint, &m.json))
                .sum();
            assert_eq!(body.bytes.len(), predicted + framing, "{endpoint:?}");
        }
    }

    #[test]
    fn form_encoding_matches_its_length_and_spec_at_every_size() {
        for b in 0..=255u8 {
            let kept = b.is_ascii_alphanumeric() || b"*-._".contains(&b);
            assert_eq!(escapes(b), !kept, "{b:#x}");
        }
        let mut rng = fastrand::Rng::with_seed(10);
        let lengths = if cfg!(miri) { 0..40 } else { 0..600 };
        for len in lengths.chain([765, 766, 1024]) {
            let input: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let mut out = b"prefix".to_vec();
            form_encode_into(&mut out, &input);
            let encoded = &out[6..];
            assert_eq!(&out[..6], b"prefix");
            assert_eq!(
                encoded.len() + 3,
                encoded_len(Endpoint::Track, &input),
                "{len}"
            );
            let mut want = Vec::new();
            for &b in &input {
                if escapes(b) {
                    want.extend_from_slice(format!("%{b:02X}").as_bytes());
                } else {
                    want.push(b);
                }
            }
            assert_eq!(encoded, &want[..], "{len}");
        }
    }

    #[test]
    fn form_encoding_round_trips_every_byte() {
        let input: Vec<u8> = (0u8..=255).collect();
        let mut out = Vec::new();
        form_encode_into(&mut out, &input);
        let decoded: Vec<u8> = form_urlencoded::parse(&[b"v=", &out[..]].concat())
            .next()
            .map(|(_, v)| v.into_owned().into_bytes())
            .unwrap();
        // Non-UTF-8 bytes decode lossily; compare the ASCII half exactly.
        assert_eq!(&decoded[..128], &input[..128]);
    }

    #[test]
    fn form_body_and_gzip_rules() {
        let m = Message {
            endpoint: Endpoint::Engage,
            credentials: None,
            json: br#"{"a":"b c"}"#.to_vec(),
        };
        let mut scratch = Vec::new();
        let body = encode(
            Endpoint::Engage,
            std::slice::from_ref(&m),
            true,
            &mut scratch,
            None,
        )
        .unwrap();
        assert!(!body.gzip, "never gzip /engage");
        let text = std::str::from_utf8(&body.bytes).unwrap();
        assert!(text.starts_with("data=%5B%7B"), "{text}");
        assert!(text.ends_with("&verbose=1&ip=0"));
        let parsed: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(parsed[0].1, r#"[{"a":"b c"}]"#);
        let track = encode(
            Endpoint::Track,
            std::slice::from_ref(&m),
            true,
            &mut scratch,
            None,
        )
        .unwrap();
        assert!(track.gzip);
    }
}
