//! `bulkhead_send` / `bulkhead_send_with_credentials` (prebuilt messages from another SDK:
//! a message, an array, a mixpanel-ruby `{"data": ..., "api_key": ...}` envelope) on a
//! test-mode client, then the request body those messages make. Input: one byte (bits 0-1
//! the client, 2-4 the endpoint name, 5 with credentials), then `message, api_key,
//! api_secret` separated by NUL bytes (a missing credential piece is NULL).

use std::collections::BTreeMap;

use bulkhead::ffi::*;
use bulkhead::fuzzing::{self, Prebuilt};

use super::capi::{self, cstr, Kind};
use super::{entries, json_string, members, valid_insert_id, Members, Pieces};

const ENDPOINTS: [&str; 8] = [
    "events",
    "people",
    "groups",
    "imports",
    "import",
    "profile_update",
    "/track",
    "nowhere",
];

/// What a prebuilt event gets when it lacks it.
const ADDED: [&str; 3] = ["token", "time", "$insert_id"];

struct Call<'a> {
    endpoint: &'a str,
    message: &'a [u8],
    api_key: Option<&'a [u8]>,
    api_secret: Option<&'a [u8]>,
}

pub fn run(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let kind = Kind::pick(head);
    let endpoint = ENDPOINTS[usize::from((head >> 2) & 7)];
    let pieces = Pieces::new(rest, 3);
    let with_credentials = head & 0x20 != 0;
    let credential = |i| (with_credentials && pieces.has(i)).then(|| pieces.get(i));
    let call = Call {
        endpoint,
        message: pieces.get(0),
        api_key: credential(1),
        api_secret: credential(2),
    };
    let status = call_and_check(kind, &call, with_credentials);
    // The same call on a client allowing larger events. An array is refused whole for its
    // first bad item: after a too large one, a later item may be refused for another reason.
    if kind == Kind::Small && status == bulkhead_status::TooLarge {
        let again = call_and_check(Kind::Plain, &call, with_credentials);
        assert_ne!(again, bulkhead_status::TooLarge, "too large for 1 MB");
        // An object with no "data" key anywhere is one message, never an envelope.
        let message = std::str::from_utf8(call.message).unwrap_or_default();
        if message.trim_start().starts_with('{') && !message.contains("\"data\"") {
            assert_eq!(
                again,
                bulkhead_status::Ok,
                "one message, too large, then refused"
            );
        }
    }
}

fn call_and_check(kind: Kind, call: &Call<'_>, with_credentials: bool) -> bulkhead_status {
    let handle = capi::client(kind);
    capi::clear(handle);
    let before = capi::stats(handle);
    let status = invoke(handle, call, with_credentials);
    let after = capi::stats(handle);

    fn text(b: Option<&[u8]>) -> Result<Option<&str>, std::str::Utf8Error> {
        b.map(std::str::from_utf8).transpose()
    }
    let (Ok(message), Ok(api_key), Ok(api_secret)) = (
        std::str::from_utf8(call.message),
        text(call.api_key),
        text(call.api_secret),
    ) else {
        assert_eq!(
            status,
            bulkhead_status::InvalidUtf8,
            "an argument is not UTF-8"
        );
        capi::check_accounting(status, 1, &before, &after);
        return status;
    };
    // What the client's builder makes of it, with the credentials each message gets.
    let built = fuzzing::prebuilt(
        kind.token(),
        kind.max_event_bytes() as u64,
        kind == Kind::WithSecret,
        call.endpoint,
        message,
        api_key,
        api_secret,
    );
    let built = match built {
        Err(e) => {
            assert_eq!(status, bulkhead_status::from(e.kind()), "{}", e.message());
            capi::check_accounting(status, e.events(), &before, &after);
            return status;
        }
        Ok(built) => built,
    };
    assert_eq!(status, bulkhead_status::Ok, "{}", capi::last_error());
    capi::check_accounting(status, 0, &before, &after);
    let list = capi::test_events(handle);
    let Some(kept) = capi::kept(&list) else {
        return status;
    };
    assert_eq!(kept.len(), built.len(), "{list}");
    let Some((items, envelope)) = items_of(message) else {
        return status;
    };
    assert_eq!(items.len(), kept.len(), "one message per item: {list}");
    let path = built[0].path;
    for ((name, sent), (item, one)) in kept.iter().zip(items.iter().zip(&built)) {
        assert_eq!(one.path, path);
        assert!(sent.len() <= kind.max_event_bytes());
        assert_eq!(endpoint_path(name), path);
        match path {
            "/engage" | "/groups" => {
                assert_eq!(sent, item, "updates pass through untouched");
                assert_eq!(one.json, item.as_bytes());
            }
            _ => check_event(kind, item, sent),
        }
        let expected = (path == "/import")
            .then(|| import_username(kind, api_key, api_secret, envelope.as_ref(), item))
            .flatten();
        assert_eq!(
            one.import_username, expected,
            "the /import credentials of {item}"
        );
    }
    check_body(call.endpoint, &built);
    status
}

fn invoke(handle: &capi::Handle, call: &Call<'_>, with_credentials: bool) -> bulkhead_status {
    let c = handle.ptr();
    let (e, el) = (cstr(call.endpoint.as_bytes()), call.endpoint.len());
    let (m, ml) = (cstr(call.message), call.message.len());
    let opt = |b: Option<&[u8]>| b.map_or((std::ptr::null(), 0), |b| (cstr(b), b.len()));
    let ((k, kl), (s, sl)) = (opt(call.api_key), opt(call.api_secret));
    // SAFETY: every (ptr, len) is a live slice or NULL with 0, and the handle is live.
    unsafe {
        if with_credentials {
            bulkhead_send_with_credentials(c, e, el, m, ml, k, kl, s, sl)
        } else {
            bulkhead_send(c, e, el, m, ml)
        }
    }
}

fn endpoint_path(name: &str) -> &'static str {
    match name {
        "events" => "/track",
        "people" => "/engage",
        "groups" => "/groups",
        "imports" => "/import",
        other => panic!("unknown endpoint name {other:?} in the test-event list"),
    }
}

/// The messages an accepted input holds, read independently of the library: an array's
/// items, an envelope's `data` (and the envelope's members), or the one object.
/// `None` when it nests too deep to be read here.
fn items_of(message: &str) -> Option<(Vec<String>, Option<Members>)> {
    let trimmed = message.trim();
    let array = |text: &str| -> Option<Vec<String>> {
        let items: Vec<&serde_json::value::RawValue> = serde_json::from_str(text).ok()?;
        Some(items.iter().map(|i| i.get().to_owned()).collect())
    };
    if trimmed.starts_with('[') {
        return Some((array(trimmed)?, None));
    }
    let top = members(trimmed)?;
    let envelope = top.contains_key("data")
        && top
            .keys()
            .all(|k| ["data", "api_key", "api_secret"].contains(&k.as_str()));
    if !envelope {
        return Some((vec![trimmed.to_owned()], None));
    }
    let data = &top["data"];
    let items = if data.starts_with('[') {
        array(data)?
    } else {
        vec![data.clone()]
    };
    Some((items, Some(top)))
}

/// A prebuilt event keeps every member and property it had, byte for byte, each key once,
/// and gains only the token, time and `$insert_id` it lacked.
fn check_event(kind: Kind, item: &str, sent: &str) {
    let Some(before) = members(item) else {
        return;
    };
    let after = members(sent).expect("a kept event is an object");
    let Some(props_before) = before.get("properties") else {
        // No properties: the event is built from its name alone.
        let keys: Vec<&str> = after.keys().map(String::as_str).collect();
        assert_eq!(keys, ["event", "properties"], "{sent}");
        let name: String = serde_json::from_str(&before["event"]).expect("the name is a string");
        assert_eq!(after["event"], json_string(&name));
        let props = members(&after["properties"]).expect("properties");
        assert_eq!(props["token"], json_string(kind.token()));
        assert!(valid_insert_id(&props["$insert_id"]));
        props["time"].parse::<i64>().expect("time");
        return;
    };
    for (key, value) in &before {
        if key != "properties" {
            assert_eq!(after.get(key), Some(value), "member {key:?} of {sent}");
        }
    }
    assert_eq!(after.len(), before.len(), "members added to {sent}");
    let listed_before = entries(props_before).expect("properties is an object");
    let listed_after = entries(&after["properties"]).expect("properties is an object");
    let props_before: BTreeMap<_, _> = listed_before.iter().cloned().collect();
    let props_after: BTreeMap<_, _> = listed_after.iter().cloned().collect();
    for (key, value) in &props_before {
        assert_eq!(
            props_after.get(key),
            Some(value),
            "property {key:?} of {sent}"
        );
    }
    let added: Vec<&str> = ADDED
        .into_iter()
        .filter(|k| !props_before.contains_key(*k))
        .collect();
    assert_eq!(
        listed_after.len(),
        listed_before.len() + added.len(),
        "only {added:?} are added, once each: {sent}"
    );
    for key in added {
        let value = &props_after[key];
        match key {
            "token" => assert_eq!(value, &json_string(kind.token())),
            "time" => {
                value.parse::<i64>().expect("time");
            }
            _ => assert!(valid_insert_id(value), "{sent}"),
        }
    }
}

/// The Basic username a prebuilt `/import` message authenticates with, `None` for the
/// client's own credentials: the call's secret, else its key, else the envelope's secret,
/// else its key, else (when the client has no credentials of its own) the event's token.
fn import_username(
    kind: Kind,
    api_key: Option<&str>,
    api_secret: Option<&str>,
    envelope: Option<&Members>,
    item: &str,
) -> Option<String> {
    let given = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_owned);
    let from_envelope = |key: &str| -> Option<String> {
        let value = envelope?.get(key)?;
        serde_json::from_str::<Option<String>>(value)
            .ok()?
            .filter(|s| !s.is_empty())
    };
    given(api_secret)
        .or_else(|| given(api_key))
        .or_else(|| from_envelope("api_secret"))
        .or_else(|| from_envelope("api_key"))
        .or_else(|| {
            if kind == Kind::WithSecret {
                return None;
            }
            let props = members(members(item)?.get("properties")?)?;
            serde_json::from_str::<String>(props.get("token")?)
                .ok()
                .filter(|t| !t.is_empty())
        })
}

/// The request body of these messages holds them exactly, and `encoded_len` (which closes
/// batches by size) predicted its size to the byte.
fn check_body(endpoint: &str, built: &[Prebuilt]) {
    let jsons: Vec<Vec<u8>> = built.iter().map(|m| m.json.clone()).collect();
    let Some((body, predicted)) = fuzzing::encode(endpoint, &jsons) else {
        return;
    };
    let array = {
        let mut out = b"[".to_vec();
        out.extend_from_slice(&jsons.join(&b","[..]));
        out.push(b']');
        out
    };
    if built[0].path == "/import" {
        assert_eq!(body, array, "the /import body is the JSON array");
        assert_eq!(body.len(), predicted + 1);
        return;
    }
    const PREFIX: &[u8] = b"data=";
    const SUFFIX: &[u8] = b"&verbose=1&ip=0";
    assert!(body.starts_with(PREFIX) && body.ends_with(SUFFIX));
    let value = &body[PREFIX.len()..body.len() - SUFFIX.len()];
    assert!(
        value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"*-._%".contains(b)),
        "form encoding leaves only unreserved bytes"
    );
    assert_eq!(
        percent_decode(value),
        array,
        "the form body decodes to the array"
    );
    // Each message adds its encoding and a separator ("%2C"); the array's brackets
    // ("%5B", "%5D") stand for the first missing separator and the rest is fixed text.
    assert_eq!(body.len(), predicted - 3 + PREFIX.len() + 6 + SUFFIX.len());
}

fn percent_decode(value: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).expect("a hex digit") as u8;
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'%' {
            out.push(hex(value[i + 1]) << 4 | hex(value[i + 2]));
            i += 3;
        } else {
            out.push(value[i]);
            i += 1;
        }
    }
    out
}
