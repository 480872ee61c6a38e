//! The fuzz targets' bodies, shared with the regression tests: `tests/fuzz_regressions.rs`
//! includes this file with `#[path]` and replays every kept input through the same checks.
//! Only `bulkhead` and `serde_json` (with `raw_value`) may be used here.
//!
//! Each target panics when a property fails, not only when the library panics: an event
//! built from the caller's input is valid JSON holding exactly what was given, every
//! refusal is counted once, a response classification is total and consistent.

pub mod capi;
pub mod config;
pub mod json;
pub mod response;
pub mod send;
pub mod track;

use std::collections::BTreeMap;

/// The input cut at NUL bytes (which no C string argument can hold): the pieces of one
/// call. Missing pieces are empty.
pub struct Pieces<'a> {
    parts: Vec<&'a [u8]>,
}

impl<'a> Pieces<'a> {
    pub fn new(data: &'a [u8], max: usize) -> Self {
        Self {
            parts: data.splitn(max, |&b| b == 0).collect(),
        }
    }

    pub fn get(&self, i: usize) -> &'a [u8] {
        self.parts.get(i).copied().unwrap_or(&[])
    }

    /// Whether piece `i` was present at all (even empty).
    pub fn has(&self, i: usize) -> bool {
        i < self.parts.len()
    }
}

/// Parses `text` as a JSON object into its members in order, repeated keys kept, each
/// value's exact text. `None` when it is not one.
pub fn entries(text: &str) -> Option<Vec<(String, String)>> {
    struct Entries;
    impl<'de> serde::de::Visitor<'de> for Entries {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<M: serde::de::MapAccess<'de>>(
            self,
            mut map: M,
        ) -> Result<Self::Value, M::Error> {
            let mut out = Vec::new();
            while let Some((k, v)) = map.next_entry::<String, &'de serde_json::value::RawValue>()? {
                out.push((k, v.get().to_owned()));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let out = serde::Deserializer::deserialize_map(&mut de, Entries).ok()?;
    de.end().ok()?;
    Some(out)
}

/// A JSON object's members: key to the exact text of its value.
pub type Members = BTreeMap<String, String>;

/// [`entries`] with the last of each repeated key winning, as in the library.
pub fn members(text: &str) -> Option<Members> {
    entries(text).map(|e| e.into_iter().collect())
}

/// The exact text serde_json keeps of one JSON value (whitespace around it dropped).
pub fn raw(text: &str) -> Option<String> {
    serde_json::from_str::<&serde_json::value::RawValue>(text)
        .ok()
        .map(|v| v.get().to_owned())
}

/// `s` as a JSON string.
pub fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// Whether serde_json refuses `text` only for its nesting depth.
pub fn too_deep(text: &str) -> bool {
    match serde_json::from_str::<&serde_json::value::RawValue>(text) {
        Err(e) => e.to_string().contains("recursion limit"),
        Ok(_) => false,
    }
}

/// Mixpanel's `$insert_id` rule, as the library states it.
pub fn valid_insert_id(text: &str) -> bool {
    serde_json::from_str::<String>(text).is_ok_and(|id| bulkhead::valid_insert_id(&id))
}
