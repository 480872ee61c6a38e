//! JSON objects read in one pass without building a tree. [`Fields`] keeps every key
//! (borrowed when it has no escapes) with the raw text of its value; [`MessageScan`] reads a
//! prebuilt message and only remembers what bulkhead needs from it. This is what keeps
//! `track` and `send` cheap: the caller's values are validated once and copied through.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::{Error, Result};

/// Up to this many keys, duplicates are found pairwise (bounded work, no allocation);
/// above it, with a hash map of last positions. Either way parsing stays linear.
const PAIRWISE_LIMIT: usize = 32;

/// A JSON object's members, each key once (JSON allows repeats; the last one wins, at its
/// last position, as in serde).
#[derive(Default)]
pub struct Fields<'a> {
    entries: Vec<(Cow<'a, str>, &'a RawValue)>,
    /// The members' text as written (first key's quote to the end of the last value) when
    /// it can be copied as is: every key borrowed from the input, none repeated.
    members: Option<&'a str>,
}

impl<'a> Fields<'a> {
    /// Parses `json`, which must be one JSON object; `what` names it in errors.
    pub fn parse(json: &'a str, what: &str) -> Result<Self> {
        let mut fields: Fields<'a> = serde_json::from_str(json)
            .map_err(|e| Error::json(format!("{what} must be a valid JSON object: {e}")))?;
        if fields.drop_shadowed() {
            fields.members = members_text(json, &fields.entries);
        }
        Ok(fields)
    }

    /// The members as written in the input, ready to be copied into another object in one
    /// piece, when every key was borrowed and none repeated (`None` otherwise, and for `{}`).
    pub fn members_text(&self) -> Option<&'a str> {
        self.members
    }

    /// Removes every entry a later one with the same key overrides, in one pass; `true` when
    /// there was none.
    fn drop_shadowed(&mut self) -> bool {
        let n = self.entries.len();
        let keep: Vec<bool> = if n <= PAIRWISE_LIMIT {
            let e = &self.entries;
            if !(0..n).any(|i| (i + 1..n).any(|j| e[i].0 == e[j].0)) {
                return true;
            }
            (0..n)
                .map(|i| !(i + 1..n).any(|j| e[i].0 == e[j].0))
                .collect()
        } else {
            let mut last = std::collections::HashMap::with_capacity(n);
            for (i, (k, _)) in self.entries.iter().enumerate() {
                last.insert(k.as_ref(), i);
            }
            if last.len() == n {
                return true;
            }
            self.entries
                .iter()
                .enumerate()
                .map(|(i, (k, _))| last.get(k.as_ref()) == Some(&i))
                .collect()
        };
        let mut keep = keep.into_iter();
        self.entries.retain(|_| keep.next().unwrap_or(true));
        false
    }

    /// How many distinct keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The value of `key` (the last one if repeated). One scan: call it a fixed number of
    /// times per message, never per key.
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Every key once, in order; for repeated keys the last value, at its last position.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (&str, &'a RawValue)> + '_ {
        self.entries.iter().map(|(k, v)| (k.as_ref(), *v))
    }

    /// As [`Fields::iter`], with whether the key needs no escaping: a key borrowed from the
    /// input had no escape sequence, and valid JSON has no raw `"` or control byte in one.
    pub fn iter_plain(&self) -> impl Iterator<Item = (&str, bool, &'a RawValue)> + '_ {
        self.entries
            .iter()
            .map(|(k, v)| (k.as_ref(), matches!(k, Cow::Borrowed(_)), *v))
    }
}

/// `json[first key's opening quote .. end of the last value]`, when every key is borrowed
/// from `json` (so each sits between quotes in it, unescaped).
fn members_text<'a>(json: &'a str, entries: &[(Cow<'a, str>, &'a RawValue)]) -> Option<&'a str> {
    if entries.iter().any(|(k, _)| matches!(k, Cow::Owned(_))) {
        return None;
    }
    let (Cow::Borrowed(first), _) = entries.first()? else {
        return None;
    };
    let last = entries.last()?.1.get();
    let base = json.as_ptr() as usize;
    let start = (first.as_ptr() as usize)
        .checked_sub(base)?
        .checked_sub(1)?;
    let end = (last.as_ptr() as usize - base).checked_add(last.len())?;
    let text = json.get(start..end)?;
    text.starts_with('"').then_some(text)
}

/// A key that borrows from the input when it has no escape sequences.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(12));
                while let Some((key, value)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    entries.push((key.0, value));
                }
                Ok(Fields {
                    entries,
                    members: None,
                })
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// A prebuilt message (an event, an update, or a mixpanel-ruby envelope), read in one pass.
#[derive(Default)]
pub struct MessageScan<'a> {
    pub event: Option<&'a RawValue>,
    pub properties: Option<PropertiesScan<'a>>,
    pub data: Option<&'a RawValue>,
    pub api_key: Option<&'a RawValue>,
    pub api_secret: Option<&'a RawValue>,
    /// Any key besides the ones above.
    pub other_keys: bool,
}

/// What bulkhead needs from an event's `properties`, read without keeping the rest.
#[derive(Default)]
pub struct PropertiesScan<'a> {
    pub token: Option<&'a RawValue>,
    pub time: Option<&'a RawValue>,
    pub insert_id: Option<&'a RawValue>,
    pub has_distinct_id: bool,
    pub len: usize,
    /// Address of the first key's text when it was borrowed from the input: it locates
    /// the object's opening brace without a second pass.
    first_key_at: Option<usize>,
}

impl<'a> MessageScan<'a> {
    pub fn parse(json: &'a str) -> Result<Self> {
        serde_json::from_str(json)
            .map_err(|e| Error::json(format!("message must be a valid JSON object: {e}")))
    }

    /// A mixpanel-ruby envelope: `data` plus only `api_key`/`api_secret`.
    pub fn is_envelope(&self) -> bool {
        self.data.is_some() && self.event.is_none() && self.properties.is_none() && !self.other_keys
    }
}

impl PropertiesScan<'_> {
    /// The index just after the `{` of these properties within `item`, the text they were
    /// read from; `None` when that cannot be told from the scan alone.
    pub fn body_start(&self, item: &str) -> Option<usize> {
        let quote = self
            .first_key_at?
            .checked_sub(item.as_ptr() as usize)?
            .checked_sub(1)?;
        let bytes = item.as_bytes();
        if bytes.get(quote) != Some(&b'"') {
            return None;
        }
        // Only whitespace can stand between the brace and the first key of valid JSON.
        let brace = bytes[..quote]
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())?;
        (bytes[brace] == b'{').then_some(brace + 1)
    }
}

impl<'de> Deserialize<'de> for MessageScan<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScanVisitor;
        impl<'de> Visitor<'de> for ScanVisitor {
            type Value = MessageScan<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut scan = MessageScan::default();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    match key.0.as_ref() {
                        "event" => scan.event = Some(map.next_value()?),
                        "properties" => scan.properties = Some(map.next_value()?),
                        "data" => scan.data = Some(map.next_value()?),
                        "api_key" => scan.api_key = Some(map.next_value()?),
                        "api_secret" => scan.api_secret = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            scan.other_keys = true;
                        }
                    }
                }
                Ok(scan)
            }
        }
        deserializer.deserialize_map(ScanVisitor)
    }
}

impl<'de> Deserialize<'de> for PropertiesScan<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PropertiesVisitor;
        impl<'de> Visitor<'de> for PropertiesVisitor {
            type Value = PropertiesScan<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`properties` as a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut scan = PropertiesScan::default();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    if scan.len == 0 {
                        if let Cow::Borrowed(text) = key.0 {
                            scan.first_key_at = Some(text.as_ptr() as usize);
                        }
                    }
                    scan.len += 1;
                    // Repeated keys: the last one wins, as everywhere in serde.
                    match key.0.as_ref() {
                        "token" => scan.token = Some(map.next_value()?),
                        "time" => scan.time = Some(map.next_value()?),
                        "$insert_id" => scan.insert_id = Some(map.next_value()?),
                        other => {
                            scan.has_distinct_id |= other == "distinct_id";
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(scan)
            }
        }
        deserializer.deserialize_map(PropertiesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_keys_and_keeps_raw_values() {
        let f = Fields::parse(r#"{"a": [1, 2], "b\u0041": "x"}"#, "t").unwrap();
        assert_eq!(f.get("a").unwrap().get(), "[1, 2]");
        assert_eq!(f.get("bA").unwrap().get(), r#""x""#);
        assert!(matches!(f.entries[0].0, Cow::Borrowed(_)));
    }

    #[test]
    fn last_duplicate_wins_once() {
        let f = Fields::parse(r#"{"a":1,"b":2,"a":3}"#, "t").unwrap();
        let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k, v.get())).collect();
        assert_eq!(pairs, vec![("b", "2"), ("a", "3")]);
        assert_eq!(f.get("a").unwrap().get(), "3");
        // Above the pairwise limit too.
        let many: Vec<String> = (0..100).map(|i| format!(r#""k{}":{i}"#, i % 40)).collect();
        let text = format!("{{{}}}", many.join(","));
        let f = Fields::parse(&text, "t").unwrap();
        assert_eq!(f.len(), 40);
        assert_eq!(f.get("k0").unwrap().get(), "80");
        let keys: Vec<&str> = f.iter().map(|(k, _)| k).collect();
        assert_eq!((keys[0], keys[39]), ("k20", "k19"));
    }

    #[test]
    fn scan_finds_the_properties_brace() {
        let text = r#"{"event":"e", "properties": {  "a":1,"token":"t","time":2}}"#;
        let scan = MessageScan::parse(text).unwrap();
        let props = scan.properties.unwrap();
        let at = props.body_start(text).unwrap();
        assert_eq!(&text[at - 1..at], "{");
        assert_eq!(&text[at..at + 6], "  \"a\":");
        assert_eq!((props.len, props.time.unwrap().get()), (3, "2"));
        // An escaped first key cannot be located without a second pass.
        let escaped = r#"{"event":"e","properties":{"\u0061":1}}"#;
        let scan = MessageScan::parse(escaped).unwrap();
        assert_eq!(scan.properties.unwrap().body_start(escaped), None);
        assert!(MessageScan::parse(r#"{"event":"e","properties":[1]}"#).is_err());
    }

    #[test]
    fn members_text_is_the_members_as_written_or_none() {
        fn members(json: &str) -> Option<&str> {
            Fields::parse(json, "t").unwrap().members_text()
        }
        assert_eq!(
            members(r#"{"a":1,"b":[2,{"c":3}]}"#),
            Some(r#""a":1,"b":[2,{"c":3}]"#)
        );
        assert_eq!(
            members(" { \"a\" : \"x\" ,\n\"b\":null } "),
            Some("\"a\" : \"x\" ,\n\"b\":null")
        );
        // Nothing to copy, or not as written: an empty object, a repeated key, an escaped key.
        assert_eq!(members("{}"), None);
        assert_eq!(members(r#"{"a":1,"a":2}"#), None);
        assert_eq!(members(r#"{"a":1,"\u0062":2}"#), None);
        assert_eq!(members(r#"{"\u0062":2,"a":1}"#), None);
    }

    #[test]
    fn iter_plain_tells_escaped_keys() {
        let f = Fields::parse(r#"{"a":1,"b\n":2}"#, "t").unwrap();
        let plain: Vec<(&str, bool)> = f.iter_plain().map(|(k, p, _)| (k, p)).collect();
        assert_eq!(plain, vec![("a", true), ("b\n", false)]);
    }

    #[test]
    fn refuses_non_objects() {
        assert!(Fields::parse("[1]", "t").is_err());
        assert!(Fields::parse("{", "t").is_err());
        assert!(Fields::parse(r#"{"a":1} x"#, "t").is_err());
    }
}
