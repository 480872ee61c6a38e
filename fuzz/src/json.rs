//! Target `json`: the hot path's own JSON reader (`src/json.rs`) against serde_json.
//! Input: any bytes; checked when they are UTF-8 (the C API refuses the rest first).
//!
//! Properties: the reader accepts a text as one JSON value exactly when serde_json does
//! (`IgnoredAny`); read as an object, it keeps exactly serde_json's members (the last of a
//! repeated key, each value's exact text); the members text it copies, when it does, is
//! the same object again.

use serde::de::IgnoredAny;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let serde = serde_json::from_str::<IgnoredAny>(text).is_ok();
    assert_eq!(
        bulkhead::fuzzing::json_value_accepted(text),
        serde,
        "the reader and serde_json disagree on {text:?}"
    );
    let ours = bulkhead::fuzzing::json_object(text);
    match super::members(text) {
        Some(expected) => {
            let (entries, members) = ours.unwrap_or_else(|e| {
                panic!("serde_json reads an object, the reader refuses ({e}): {text:?}")
            });
            let got: super::Members = entries.iter().cloned().collect();
            assert_eq!(got.len(), entries.len(), "a key kept twice: {text:?}");
            assert_eq!(got, expected, "different members: {text:?}");
            if let Some(members) = members {
                let again = super::members(&format!("{{{members}}}"));
                assert_eq!(again.as_ref(), Some(&expected), "members text: {text:?}");
            }
        }
        // serde_json also refuses keys with unpaired surrogates (no Rust string holds
        // one), which its IgnoredAny takes: either way no object is read.
        None => assert!(
            ours.is_err(),
            "the reader reads an object serde_json refuses: {text:?}"
        ),
    }
}
