//! A JSON object read in one pass without building a tree: its keys (borrowed when they
//! have no escapes) and the raw text of each value. This is what keeps `track` and `send`
//! cheap: the caller's values are validated once and copied through untouched.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::{Error, Result};

/// Above this many keys, duplicates are found with a hash set instead of pairwise.
const PAIRWISE_LIMIT: usize = 32;

#[derive(Default)]
pub struct Fields<'a> {
    entries: Vec<(Cow<'a, str>, &'a RawValue)>,
    /// Whether some key appears twice (JSON allows it; the last one wins, as in serde).
    has_duplicates: bool,
}

impl<'a> Fields<'a> {
    /// Parses `json`, which must be one JSON object; `what` names it in errors.
    pub fn parse(json: &'a str, what: &str) -> Result<Self> {
        let mut fields: Fields<'a> = serde_json::from_str(json)
            .map_err(|e| Error::json(format!("{what} must be a valid JSON object: {e}")))?;
        fields.has_duplicates = fields.find_duplicates();
        Ok(fields)
    }

    fn find_duplicates(&self) -> bool {
        let n = self.entries.len();
        if n <= PAIRWISE_LIMIT {
            (0..n).any(|i| (i + 1..n).any(|j| self.entries[i].0 == self.entries[j].0))
        } else {
            let mut seen = std::collections::HashSet::with_capacity(n);
            !self.entries.iter().all(|(k, _)| seen.insert(k.as_ref()))
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key` (the last one if repeated).
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    /// The string value of `key`: `Ok(None)` when absent or null, an error if not a string.
    pub fn string(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) if raw.get() == "null" => Ok(None),
            Some(raw) => serde_json::from_str::<&str>(raw.get())
                .map(Some)
                .map_err(|_| Error::json(format!("`{key}` must be a plain string"))),
        }
    }

    /// A mixpanel-ruby envelope: `data` plus only `api_key`/`api_secret`.
    pub fn is_envelope(&self) -> bool {
        self.contains_key("data")
            && self
                .entries
                .iter()
                .all(|(k, _)| matches!(k.as_ref(), "data" | "api_key" | "api_secret"))
    }

    /// Every key once, in order; for repeated keys the last value, at its last position.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &'a RawValue)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(move |(i, (k, v))| {
                let shadowed = self.has_duplicates
                    && self.entries[i + 1..].iter().any(|(later, _)| later == k);
                (!shadowed).then_some((k.as_ref(), *v))
            })
    }
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
                    has_duplicates: false,
                })
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_keys_and_keeps_raw_values() {
        let f = Fields::parse(r#"{"a": [1, 2], "b\u0041": "x"}"#, "t").unwrap();
        assert_eq!(f.get("a").unwrap().get(), "[1, 2]");
        assert_eq!(f.string("bA").unwrap(), Some("x"));
        assert!(matches!(f.entries[0].0, Cow::Borrowed(_)));
    }

    #[test]
    fn last_duplicate_wins_once() {
        let f = Fields::parse(r#"{"a":1,"b":2,"a":3}"#, "t").unwrap();
        let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k, v.get())).collect();
        assert_eq!(pairs, vec![("b", "2"), ("a", "3")]);
        assert_eq!(f.get("a").unwrap().get(), "3");
    }

    #[test]
    fn refuses_non_objects() {
        assert!(Fields::parse("[1]", "t").is_err());
        assert!(Fields::parse("{", "t").is_err());
        assert!(Fields::parse(r#"{"a":1} x"#, "t").is_err());
    }
}
