//! Thin wrappers over internal functions, for the fuzz targets in `fuzz/` and the regression
//! tests in `tests/fuzz_regressions.rs`. NOT API: hidden from the docs, outside the semver
//! promise, absent from the C header. The targets drive `track` and `send` through the C API
//! itself; these wrappers reach what it cannot show (the HTTP verdict, the `/import`
//! credentials a prebuilt message ends up with, the lower bound the guard checks).

use std::time::{Duration, SystemTime};

use crate::config::{Config, ImportCredentials};
use crate::error::{Error, Result};
use crate::message::{credentials_from, Endpoint, Message, MessageBuilder};
use crate::redact::Redactor;
use crate::transport;
pub use crate::transport::Verdict;

/// `MessageBuilder::min_event_len`: the lower bound the guard checks before `track` builds.
pub fn min_event_len(token: &str, distinct_id: &str, event: &str) -> usize {
    MessageBuilder::new(token, u64::MAX).min_event_len(distinct_id.len(), event.len())
}

/// One message as `send` would queue it.
#[derive(Debug)]
pub struct Prebuilt {
    /// The endpoint's path (`/track`, ...).
    pub path: &'static str,
    pub json: Vec<u8>,
    /// The Basic username of its own `/import` credentials; `None`: the client's.
    pub import_username: Option<String>,
}

/// What `Client::send` builds (endpoint name, credentials for `/import`, then
/// `MessageBuilder::prebuilt`) for a client with `token` and `max_event_bytes`, and with
/// or without `/import` credentials of its own.
pub fn prebuilt(
    token: &str,
    max_event_bytes: u64,
    import_credentials_configured: bool,
    endpoint: &str,
    json: &str,
    api_key: Option<&str>,
    api_secret: Option<&str>,
) -> Result<Vec<Prebuilt>> {
    let endpoint = Endpoint::parse(endpoint)
        .ok_or_else(|| Error::invalid(format!("unknown endpoint `{endpoint}`")))?;
    let credentials = match endpoint {
        Endpoint::Import => {
            credentials_from(api_key.map(str::to_owned), api_secret.map(str::to_owned))
        }
        _ => None,
    };
    let builder = MessageBuilder::new(token, max_event_bytes)
        .with_import_credentials(import_credentials_configured);
    Ok(builder
        .prebuilt(endpoint, json, credentials)?
        .into_iter()
        .map(|m| Prebuilt {
            path: m.endpoint.path(),
            import_username: m.credentials.as_ref().map(|c| c.username.clone()),
            json: m.json,
        })
        .collect())
}

/// The request body `transport::encode` makes of `messages` for `endpoint` (uncompressed),
/// and the sum of `transport::encoded_len` over them, which batching relies on being its
/// exact size. `None` for an unknown endpoint or a batch refused as oversized.
pub fn encode(endpoint: &str, messages: &[Vec<u8>]) -> Option<(Vec<u8>, usize)> {
    let endpoint = Endpoint::parse(endpoint)?;
    let messages: Vec<Message> = messages
        .iter()
        .map(|json| Message {
            endpoint,
            credentials: None,
            json: json.clone(),
        })
        .collect();
    let predicted = messages
        .iter()
        .map(|m| transport::encoded_len(endpoint, &m.json))
        .sum();
    let body = transport::encode(endpoint, &messages, false, &mut Vec::new(), None).ok()?;
    Some((body.bytes.to_vec(), predicted))
}

/// How `transport::post` judges an answer once it has it: the `Retry-After` header parsed
/// at `now`, at most `MAX_RESPONSE_BODY` bytes of the body read as lossy UTF-8.
pub fn judge(
    endpoint: &str,
    status: u16,
    retry_after: Option<&str>,
    now: SystemTime,
    body: &[u8],
) -> Option<Verdict> {
    let endpoint = Endpoint::parse(endpoint)?;
    let retry_after = retry_after.and_then(|v| crate::retry::parse_retry_after(v, now));
    let body = &body[..body.len().min(transport::MAX_RESPONSE_BODY)];
    Some(transport::judge(
        endpoint,
        status,
        retry_after,
        &String::from_utf8_lossy(body),
    ))
}

/// `retry::parse_retry_after`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    crate::retry::parse_retry_after(value, now)
}

/// The server's text as a delivery error keeps it: the secrets of `config` and of the
/// batch's `/import` credentials redacted, then cut to `MAX_ERROR_TEXT` (the consumer's
/// order: redact first, so no half secret survives the cut).
pub fn server_text(config: &Config, import_username: Option<&str>, text: &str) -> String {
    let mut redactor = Redactor::for_config(config);
    if let Some(username) = import_username {
        redactor = redactor.with_credentials(&ImportCredentials {
            username: username.to_owned(),
            password: String::new(),
            project_id: None,
        });
    }
    transport::truncate(redactor.redact(text), transport::MAX_ERROR_TEXT)
}

/// `transport::MAX_ERROR_TEXT`, the cut [`server_text`] makes (before its `…`).
pub fn max_error_text() -> usize {
    transport::MAX_ERROR_TEXT
}

/// What a secret becomes in error texts.
pub fn redacted_marker() -> &'static str {
    crate::redact::REDACTED
}

/// Whether the hot path's JSON reader (`src/json.rs`) takes `text` as one JSON value.
pub fn json_value_accepted(text: &str) -> bool {
    crate::json::value(text).is_ok()
}

/// An object as the hot path reads it: each key once with the exact text of its value (the
/// last of repeated keys), and the members' text when it copies them as written.
pub type JsonObject = (Vec<(String, String)>, Option<String>);

/// The hot path's reading of `text` as a JSON object, as `track` reads properties.
pub fn json_object(text: &str) -> Result<JsonObject> {
    let fields = crate::fields::Fields::parse(text, "properties")?;
    let entries = fields
        .iter_plain()
        .map(|(key, _, value)| (key.to_owned(), value.get().to_owned()))
        .collect();
    Ok((entries, fields.members_text().map(str::to_owned)))
}
