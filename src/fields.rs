//! JSON objects read in one pass without building a tree. [`Fields`] keeps every key
//! (borrowed when it has no escapes) with the raw text of its value; [`MessageScan`] reads a
//! prebuilt message and only remembers what bulkhead needs from it. This is what keeps
//! `track` and `send` cheap: the caller's values are validated once and copied through.

use std::borrow::Cow;

use crate::error::Result;
use crate::json::{Raw, Reader};

/// Up to this many keys, duplicates are found pairwise (bounded work, no allocation);
/// above it, with a hash map of last positions. Either way parsing stays linear.
const PAIRWISE_LIMIT: usize = 32;

/// A JSON object's members, each key once (JSON allows repeats; the last one wins, at its
/// last position, as in serde).
#[derive(Default)]
pub struct Fields<'a> {
    entries: Vec<(Cow<'a, str>, Raw<'a>)>,
    /// The members' text as written (first key's quote to the end of the last value) when
    /// it can be copied as is: every key borrowed from the input, none repeated.
    members: Option<&'a str>,
}

impl<'a> Fields<'a> {
    /// Parses `json`, which must be one JSON object; `what` names it in errors.
    pub fn parse(json: &'a str, what: &str) -> Result<Self> {
        let mut entries = Vec::with_capacity(12);
        let (mut first_quote, mut all_borrowed) = (None, true);
        let mut seen = KeySketch::default();
        let mut reader = Reader::new(json);
        reader
            .object(|r, key| {
                first_quote.get_or_insert(key.quote);
                all_borrowed &= matches!(key.name, Cow::Borrowed(_));
                seen.add(&key.name);
                entries.push((key.name, r.value()?));
                Ok(())
            })
            .and_then(|()| reader.end())
            .map_err(|e| e.error(json, &format!("{what} must be a valid JSON object")))?;
        let mut fields = Fields {
            entries,
            members: None,
        };
        let unique = !seen.maybe_repeated || fields.drop_shadowed();
        if unique && all_borrowed {
            fields.members = members_text(json, first_quote, fields.entries.last());
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
    pub fn get(&self, key: &str) -> Option<Raw<'a>> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Every key once, in order; for repeated keys the last value, at its last position.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (&str, Raw<'a>)> + '_ {
        self.entries.iter().map(|(k, v)| (k.as_ref(), *v))
    }

    /// As [`Fields::iter`], with whether the key needs no escaping: a key borrowed from the
    /// input had no escape sequence, and valid JSON has no raw `"` or control byte in one.
    pub fn iter_plain(&self) -> impl Iterator<Item = (&str, bool, Raw<'a>)> + '_ {
        self.entries
            .iter()
            .map(|(k, v)| (k.as_ref(), matches!(k, Cow::Borrowed(_)), *v))
    }
}

/// A 256-bit sketch of the keys seen (length, first and last byte): a key that finds its
/// bit unset is surely new, so the usual object, all keys distinct, skips the pairwise
/// search for repeats.
#[derive(Default)]
struct KeySketch {
    bits: [u64; 4],
    maybe_repeated: bool,
}

impl KeySketch {
    fn add(&mut self, key: &str) {
        let b = key.as_bytes();
        let (first, last) = (b.first().copied(), b.last().copied());
        let h = b
            .len()
            .wrapping_mul(31)
            .wrapping_add(usize::from(first.unwrap_or(0)).wrapping_mul(7))
            .wrapping_add(usize::from(last.unwrap_or(0)).wrapping_mul(131));
        let (word, bit) = ((h >> 6) & 3, 1u64 << (h & 63));
        self.maybe_repeated |= self.bits[word] & bit != 0;
        self.bits[word] |= bit;
    }
}

/// `json[first key's opening quote .. end of the last value]`: both are slices of `json`.
fn members_text<'a>(
    json: &'a str,
    first_quote: Option<usize>,
    last: Option<&(Cow<'a, str>, Raw<'a>)>,
) -> Option<&'a str> {
    let last = last?.1.get();
    let end = last.as_ptr() as usize - json.as_ptr() as usize + last.len();
    json.get(first_quote?..end)
}

/// A prebuilt message (an event, an update, or a mixpanel-ruby envelope), read in one pass.
#[derive(Default)]
pub struct MessageScan<'a> {
    pub event: Option<Raw<'a>>,
    pub properties: Option<PropertiesScan<'a>>,
    pub data: Option<Raw<'a>>,
    pub api_key: Option<Raw<'a>>,
    pub api_secret: Option<Raw<'a>>,
    /// Any key besides the ones above.
    pub other_keys: bool,
}

/// What bulkhead needs from an event's `properties`, read without keeping the rest.
#[derive(Default)]
pub struct PropertiesScan<'a> {
    pub token: Option<Raw<'a>>,
    pub time: Option<Raw<'a>>,
    pub insert_id: Option<Raw<'a>>,
    pub has_distinct_id: bool,
    /// Keys, each repeat counted.
    pub len: usize,
    /// The index just after the object's `{` in the scanned text.
    pub body_start: usize,
}

impl<'a> MessageScan<'a> {
    pub fn parse(json: &'a str) -> Result<Self> {
        let mut scan = MessageScan::default();
        let mut reader = Reader::new(json);
        reader
            .object(|r, key| {
                // Repeated keys: the last one wins, as in serde.
                match key.name.as_ref() {
                    "event" => scan.event = Some(r.value()?),
                    "properties" => scan.properties = Some(PropertiesScan::read(r)?),
                    "data" => scan.data = Some(r.value()?),
                    "api_key" => scan.api_key = Some(r.value()?),
                    "api_secret" => scan.api_secret = Some(r.value()?),
                    _ => {
                        r.value()?;
                        scan.other_keys = true;
                    }
                }
                Ok(())
            })
            .and_then(|()| reader.end())
            .map_err(|e| e.error(json, "message must be a valid JSON object"))?;
        Ok(scan)
    }

    /// A mixpanel-ruby envelope: `data` plus only `api_key`/`api_secret`.
    pub fn is_envelope(&self) -> bool {
        self.data.is_some() && self.event.is_none() && self.properties.is_none() && !self.other_keys
    }
}

impl<'a> PropertiesScan<'a> {
    fn read(reader: &mut Reader<'a>) -> std::result::Result<Self, crate::json::Invalid> {
        let mut scan = PropertiesScan::default();
        if reader.peek_token() == Some(b'{') {
            scan.body_start = reader.position() + 1;
        }
        reader.object(|r, key| {
            scan.len += 1;
            match key.name.as_ref() {
                "token" => scan.token = Some(r.value()?),
                "time" => scan.time = Some(r.value()?),
                "$insert_id" => scan.insert_id = Some(r.value()?),
                other => {
                    scan.has_distinct_id |= other == "distinct_id";
                    r.value()?;
                }
            }
            Ok(())
        })?;
        Ok(scan)
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
        let at = props.body_start;
        assert_eq!(&text[at - 1..at], "{");
        assert_eq!(&text[at..at + 6], "  \"a\":");
        assert_eq!((props.len, props.time.unwrap().get()), (3, "2"));
        // An escaped first key too.
        let escaped = r#"{"event":"e","properties": {"\u0061":1}}"#;
        let scan = MessageScan::parse(escaped).unwrap();
        assert_eq!(
            &escaped[..scan.properties.unwrap().body_start],
            r#"{"event":"e","properties": {"#
        );
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

    /// Random objects, repeated and escaped keys included: the members serde_json reads,
    /// the last of a repeated key, and a members text that is the same object again.
    #[test]
    fn random_objects_read_as_serde_json_reads_them() {
        use serde_json::{Map, Value};
        const KEYS: &[&str] = &["a", "b", "token", "\"q\"", "é", "\n", "time", "😀"];
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..20_000 {
            let members: Vec<String> = (0..rng.usize(0..8))
                .map(|_| {
                    let key = serde_json::to_string(KEYS[rng.usize(..KEYS.len())]).unwrap();
                    let key = if rng.u8(..8) == 0 {
                        key.replace('a', "\\u0061")
                    } else {
                        key
                    };
                    let value = crate::message::tests::random_value(&mut rng, 0);
                    format!("{key}{}:{}", [" ", ""][rng.usize(..2)], value)
                })
                .collect();
            let text = format!("{{{}}}", members.join(","));
            let expected: Map<String, Value> = serde_json::from_str(&text).unwrap();
            let fields = Fields::parse(&text, "t").unwrap();
            assert_eq!(fields.len(), expected.len(), "{text}");
            for (key, value) in fields.iter() {
                let value: Value = serde_json::from_str(value.get()).unwrap();
                assert_eq!(Some(&value), expected.get(key), "{key} in {text}");
            }
            if let Some(members) = fields.members_text() {
                let again: Map<String, Value> =
                    serde_json::from_str(&format!("{{{members}}}")).unwrap();
                assert_eq!(again, expected, "{text}");
            }
        }
    }

    #[test]
    fn refuses_non_objects() {
        assert!(Fields::parse("[1]", "t").is_err());
        assert!(Fields::parse("{", "t").is_err());
        assert!(Fields::parse(r#"{"a":1} x"#, "t").is_err());
    }
}
