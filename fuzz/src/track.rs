//! `bulkhead_track`, `bulkhead_import`, `bulkhead_people` and `bulkhead_group` with the
//! fuzzer's bytes, on a test-mode client. Input: one byte (bits 0-1 the client, 2-3 the
//! call, 4 a NULL properties/value), then the string arguments separated by NUL bytes:
//! track `distinct_id, event, properties`; import `distinct_id, event, time_ms, properties`;
//! people `distinct_id, operation, value`; group `group_key, group_id, operation, value`.

use std::collections::{BTreeMap, BTreeSet};

use bulkhead::ffi::*;

use super::capi::{self, cstr, Kind};
use super::{entries, json_string, members, raw, valid_insert_id, Pieces};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Track,
    Import,
    People,
    Group,
}

/// The `time_ms` of an import whose piece is not a number.
const DEFAULT_IMPORT_TIME: i64 = 1_500_000_000_000;

pub fn run(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let kind = Kind::pick(head);
    let call = [Call::Track, Call::Import, Call::People, Call::Group][usize::from((head >> 2) & 3)];
    let null_last = head & 0x10 != 0;
    let count = match call {
        Call::Track | Call::People => 3,
        Call::Import | Call::Group => 4,
    };
    let pieces = Pieces::new(rest, count);
    let args: Vec<&[u8]> = (0..count).map(|i| pieces.get(i)).collect();
    let status = call_and_check(kind, call, &args, null_last);
    // The same call on a client allowing larger events: only the size may have differed.
    if kind == Kind::Small && status == bulkhead_status::TooLarge {
        let again = call_and_check(Kind::Plain, call, &args, null_last);
        assert_eq!(
            again,
            bulkhead_status::Ok,
            "refused as too large, then for another reason"
        );
    }
}

/// Makes the call, checks its accounting and, when it succeeded, the message it built.
fn call_and_check(kind: Kind, call: Call, args: &[&[u8]], null_last: bool) -> bulkhead_status {
    let handle = capi::client(kind);
    capi::clear(handle);
    let before = capi::stats(handle);
    let status = invoke(handle, call, args, null_last);
    let after = capi::stats(handle);
    capi::check_accounting(status, 1, &before, &after);

    // A NULL last argument is not read at all; an import's time is a number, not text.
    let passed = if null_last {
        &args[..args.len() - 1]
    } else {
        args
    };
    let is_text = |i: usize| !(call == Call::Import && i == 2);
    let all_utf8 = passed
        .iter()
        .enumerate()
        .all(|(i, a)| !is_text(i) || std::str::from_utf8(a).is_ok());
    if !all_utf8 {
        assert_eq!(
            status,
            bulkhead_status::InvalidUtf8,
            "an argument is not UTF-8"
        );
        return status;
    }
    let texts: Vec<String> = passed
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert_ne!(
        status,
        bulkhead_status::InvalidUtf8,
        "every argument is UTF-8"
    );
    let list = capi::test_events(handle);
    let Some(kept) = capi::kept(&list) else {
        return status;
    };
    if status != bulkhead_status::Ok {
        assert!(kept.is_empty(), "a refused call kept {list}");
        return status;
    }
    assert_eq!(kept.len(), 1, "one call, one message: {list}");
    let (endpoint, message) = &kept[0];
    assert!(
        message.len() <= kind.max_event_bytes(),
        "above max_event_bytes"
    );
    let last = (!null_last).then(|| texts[texts.len() - 1].as_str());
    let arg = |i: usize| texts.get(i).map_or("", String::as_str);
    match call {
        Call::Track | Call::Import => {
            assert_ne!(
                kind,
                Kind::Tokenless,
                "a client without a token built an event"
            );
            let time_ms = (call == Call::Import).then(|| import_time(arg(2)));
            assert_eq!(
                endpoint,
                if time_ms.is_some() {
                    "imports"
                } else {
                    "events"
                }
            );
            check_event(arg(0), arg(1), time_ms, last, message);
        }
        Call::People => {
            assert_eq!(endpoint, "people");
            let ids = [("$distinct_id", arg(0))];
            check_update(&ids, arg(1), last, message);
        }
        Call::Group => {
            assert_eq!(endpoint, "groups");
            let ids = [("$group_key", arg(0)), ("$group_id", arg(1))];
            check_update(&ids, arg(2), last, message);
        }
    }
    status
}

fn import_time(text: &str) -> i64 {
    text.trim().parse().unwrap_or(DEFAULT_IMPORT_TIME)
}

fn invoke(handle: &capi::Handle, call: Call, args: &[&[u8]], null_last: bool) -> bulkhead_status {
    let c = handle.ptr();
    let (last, last_len) = match args.last() {
        Some(_) if null_last => (std::ptr::null(), 0),
        Some(a) => (cstr(a), a.len()),
        None => (std::ptr::null(), 0),
    };
    let a = |i: usize| (cstr(args[i]), args[i].len());
    // SAFETY: every (ptr, len) is a live slice or NULL with 0, and the handle is live.
    unsafe {
        match call {
            Call::Track => {
                let ((d, dl), (e, el)) = (a(0), a(1));
                bulkhead_track(c, d, dl, e, el, last, last_len)
            }
            Call::Import => {
                let ((d, dl), (e, el)) = (a(0), a(1));
                let time = import_time(&String::from_utf8_lossy(args[2]));
                bulkhead_import(c, d, dl, e, el, time, last, last_len)
            }
            Call::People => {
                let ((d, dl), (o, ol)) = (a(0), a(1));
                bulkhead_people(c, d, dl, o, ol, last, last_len)
            }
            Call::Group => {
                let ((k, kl), (g, gl), (o, ol)) = (a(0), a(1), a(2));
                bulkhead_group(c, k, kl, g, gl, o, ol, last, last_len)
            }
        }
    }
}

/// An event holds the name and the caller's properties exactly, each key once, plus the
/// fixed ones the caller did not give.
fn check_event(
    distinct_id: &str,
    event: &str,
    time_ms: Option<i64>,
    properties: Option<&str>,
    message: &str,
) {
    let top = members(message).expect("an event is a JSON object");
    let keys: Vec<&str> = top.keys().map(String::as_str).collect();
    assert_eq!(keys, ["event", "properties"], "{message}");
    assert_eq!(top["event"], json_string(event));
    let props_text = &top["properties"];
    let listed = entries(props_text).expect("properties is an object");
    let props: BTreeMap<String, String> = listed.iter().cloned().collect();
    assert_eq!(props.len(), listed.len(), "a repeated key in {props_text}");
    assert!(
        props.len() < 255,
        "Mixpanel takes fewer than 255 properties"
    );
    let caller = match properties.map(str::trim) {
        None | Some("") | Some("null") => BTreeMap::new(),
        Some(text) => members(text).expect("accepted properties are an object"),
    };
    for (key, value) in &caller {
        if key != "token" {
            assert_eq!(
                props.get(key),
                Some(value),
                "the caller's {key:?} in {message}"
            );
        }
    }
    assert_eq!(
        props["token"],
        json_string(capi::TOKEN),
        "the client's token wins"
    );
    let fixed = [
        "token",
        "distinct_id",
        "time",
        "$insert_id",
        "mp_lib",
        "$lib_version",
    ];
    let allowed: BTreeSet<&str> = caller.keys().map(String::as_str).chain(fixed).collect();
    for key in props.keys() {
        assert!(
            allowed.contains(key.as_str()),
            "{key:?} came from nowhere: {message}"
        );
    }
    if !caller.contains_key("distinct_id") {
        let expected = (!distinct_id.is_empty()).then(|| json_string(distinct_id));
        assert_eq!(props.get("distinct_id"), expected.as_ref(), "{message}");
    }
    if !caller.contains_key("time") {
        let time: i64 = props["time"].parse().expect("our time is an integer");
        if let Some(ms) = time_ms {
            assert_eq!(time, ms, "the import's time");
        }
    }
    if !caller.contains_key("$insert_id") {
        assert!(valid_insert_id(&props["$insert_id"]), "{message}");
    }
    if !caller.contains_key("mp_lib") {
        assert_eq!(props["mp_lib"], json_string(bulkhead::LIB_NAME));
    }
    if !caller.contains_key("$lib_version") {
        assert_eq!(props["$lib_version"], json_string(bulkhead::LIB_VERSION));
    }
    let bound = bulkhead::fuzzing::min_event_len(capi::TOKEN, distinct_id, event);
    assert!(
        bound <= message.len(),
        "min_event_len {bound} > {}",
        message.len()
    );
}

/// A profile or group update holds the token, the ids, a `$time` and the one operation.
fn check_update(ids: &[(&str, &str)], operation: &str, value: Option<&str>, message: &str) {
    let listed = entries(message).expect("an update is a JSON object");
    let fields: BTreeMap<String, String> = listed.iter().cloned().collect();
    assert_eq!(fields.len(), listed.len(), "a repeated key in {message}");
    assert_eq!(fields.len(), ids.len() + 3, "{message}");
    assert_eq!(fields["$token"], json_string(capi::TOKEN));
    for (key, id) in ids {
        assert!(!id.is_empty(), "an update with an empty {key}");
        assert_eq!(fields[*key], json_string(id));
    }
    fields["$time"].parse::<i64>().expect("$time is an integer");
    let expected = if operation == "$delete" {
        "\"\"".to_owned()
    } else {
        raw(value.expect("an operation with a value")).expect("an accepted value is JSON")
    };
    assert_eq!(fields.get(operation), Some(&expected), "{message}");
}
