//! Building and validating messages on the caller's thread.
//!
//! A [`Message`] is one event or profile/group update, already serialised to the JSON that
//! goes on the wire, so the background only concatenates. Everything a retry needs to stay
//! idempotent (`$insert_id`, `time`) is fixed here, before the first attempt.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::value::RawValue;

use crate::config::ImportCredentials;
use crate::error::{Error, ErrorKind, Result};
use crate::fields::{Fields, MessageScan};

/// The value of `mp_lib` in every event this library builds.
pub const LIB_NAME: &str = "bulkhead";
/// The value of `$lib_version`.
pub const LIB_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The four ingestion endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Track,
    Engage,
    Groups,
    Import,
}

impl Endpoint {
    /// Accepts mixpanel-python's names (`events`, `people`, `groups`, `imports`),
    /// mixpanel-ruby's (`event`, `profile_update`, `group_update`, `import`) and the paths.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.trim_start_matches('/') {
            "events" | "event" | "track" => Endpoint::Track,
            "people" | "profile_update" | "engage" => Endpoint::Engage,
            "groups" | "group_update" => Endpoint::Groups,
            "imports" | "import" => Endpoint::Import,
            _ => return None,
        })
    }

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Track => "/track",
            Endpoint::Engage => "/engage",
            Endpoint::Groups => "/groups",
            Endpoint::Import => "/import",
        }
    }
}

/// One queued event or update. `credentials` is set only for `/import` messages that
/// carried their own (mixpanel-ruby's `api_key`, mixpanel-python's `api_key`/`api_secret`).
#[derive(Debug)]
pub struct Message {
    pub endpoint: Endpoint,
    pub credentials: Option<Arc<ImportCredentials>>,
    pub json: Vec<u8>,
}

impl Message {
    pub fn len(&self) -> usize {
        self.json.len()
    }
}

/// Profile and group operations Mixpanel accepts; exactly one per update.
pub const OPERATIONS: &[&str] = &[
    "$set",
    "$set_once",
    "$add",
    "$append",
    "$union",
    "$remove",
    "$unset",
    "$delete",
];

/// Builds messages for one project token, enforcing `max_event_bytes`.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    token: String,
    max_event_bytes: usize,
    /// Whether the client has its own `/import` credentials (service account or secret).
    /// Without them, a prebuilt `/import` event authenticates with its own token.
    import_credentials_configured: bool,
}

impl MessageBuilder {
    pub fn new(token: &str, max_event_bytes: u64) -> Self {
        Self {
            token: token.to_owned(),
            max_event_bytes: usize::try_from(max_event_bytes).unwrap_or(usize::MAX),
            import_credentials_configured: false,
        }
    }

    /// Records that the client has `/import` credentials of its own.
    pub fn with_import_credentials(mut self, configured: bool) -> Self {
        self.import_credentials_configured = configured;
        self
    }

    /// An event for `/track`: our fixed properties first, then the caller's, which win for
    /// every key except `token`.
    pub fn event(
        &self,
        distinct_id: &str,
        event: &str,
        properties: Option<&str>,
    ) -> Result<Message> {
        let props = parse_properties(properties)?;
        let json = self.event_json(distinct_id, event, None, &props)?;
        self.finish(Endpoint::Track, json)
    }

    /// An event for `/import`, whose `time` (ms) is required; a `time` property still wins.
    pub fn import(
        &self,
        distinct_id: &str,
        event: &str,
        time_ms: i64,
        properties: Option<&str>,
    ) -> Result<Message> {
        if distinct_id.is_empty() {
            return Err(Error::invalid("import needs a non-empty distinct_id"));
        }
        let props = parse_properties(properties)?;
        let json = self.event_json(distinct_id, event, Some(time_ms), &props)?;
        self.finish(Endpoint::Import, json)
    }

    /// A user profile update for `/engage`.
    pub fn people(
        &self,
        distinct_id: &str,
        operation: &str,
        value: Option<&str>,
    ) -> Result<Message> {
        if distinct_id.is_empty() {
            return Err(Error::invalid(
                "profile updates need a non-empty distinct_id",
            ));
        }
        let mut out = Vec::with_capacity(96 + value.map_or(0, str::len));
        out.extend_from_slice(b"{\"$token\":");
        write_str(&mut out, &self.token);
        out.extend_from_slice(b",\"$distinct_id\":");
        write_str(&mut out, distinct_id);
        self.update_tail(&mut out, operation, value)?;
        self.finish(Endpoint::Engage, out)
    }

    /// A group profile update for `/groups`.
    pub fn group(
        &self,
        group_key: &str,
        group_id: &str,
        operation: &str,
        value: Option<&str>,
    ) -> Result<Message> {
        if group_key.is_empty() || group_id.is_empty() {
            return Err(Error::invalid(
                "group updates need a non-empty group_key and group_id",
            ));
        }
        let mut out = Vec::with_capacity(112 + value.map_or(0, str::len));
        out.extend_from_slice(b"{\"$token\":");
        write_str(&mut out, &self.token);
        out.extend_from_slice(b",\"$group_key\":");
        write_str(&mut out, group_key);
        out.extend_from_slice(b",\"$group_id\":");
        write_str(&mut out, group_id);
        self.update_tail(&mut out, operation, value)?;
        self.finish(Endpoint::Groups, out)
    }

    /// Messages already built by another SDK: a bare message, an array of them, or a
    /// mixpanel-ruby envelope `{"data": ..., "api_key": ...}`. Events lacking `$insert_id`,
    /// `time` or `token` get them; updates pass through untouched.
    pub fn prebuilt(
        &self,
        endpoint: Endpoint,
        json: &str,
        credentials: Option<Arc<ImportCredentials>>,
    ) -> Result<Vec<Message>> {
        let mut credentials = credentials;
        let trimmed = json.trim();
        // Each item with its scan when it was already read (a bare message: one pass).
        let items: Vec<(&str, Option<MessageScan<'_>>)> = if trimmed.starts_with('[') {
            parse_array(trimmed)?
        } else if trimmed.starts_with('{') {
            let scan = MessageScan::parse(trimmed)?;
            match scan.data {
                Some(data) if scan.is_envelope() => {
                    if endpoint == Endpoint::Import && credentials.is_none() {
                        credentials = credentials_from(
                            optional_string("api_key", scan.api_key)?.map(str::to_owned),
                            optional_string("api_secret", scan.api_secret)?.map(str::to_owned),
                        );
                    }
                    match first_byte(data) {
                        b'[' => parse_array(data.get())?,
                        b'{' => vec![(data.get(), None)],
                        _ => return Err(Error::json("`data` must be a JSON object or array")),
                    }
                }
                _ => vec![(trimmed, Some(scan))],
            }
        } else {
            return Err(Error::json("message must be a JSON object or array"));
        };
        if items.is_empty() {
            return Err(Error::invalid("message array is empty"));
        }
        items
            .into_iter()
            .map(|(item, scan)| {
                if !item.starts_with('{') {
                    return Err(Error::json("each message must be a JSON object"));
                }
                let mut own_credentials = None;
                let json = match endpoint {
                    Endpoint::Track | Endpoint::Import => {
                        let scan = match scan {
                            Some(s) => s,
                            None => MessageScan::parse(item)?,
                        };
                        let (json, token) = self.complete_event(endpoint, item, &scan)?;
                        // mixpanel-python/-ruby imports carry the project token: with no
                        // credentials given or configured, it is the Basic username.
                        if endpoint == Endpoint::Import
                            && credentials.is_none()
                            && !self.import_credentials_configured
                        {
                            own_credentials = credentials_from(token.map(str::to_owned), None);
                        }
                        json
                    }
                    // Validated as JSON already (by the scan or the array parse).
                    Endpoint::Engage | Endpoint::Groups => item.as_bytes().to_vec(),
                };
                let mut message = self.finish(endpoint, json)?;
                message.credentials = own_credentials.or_else(|| credentials.clone());
                Ok(message)
            })
            .collect()
    }

    fn event_json(
        &self,
        distinct_id: &str,
        event: &str,
        time_ms: Option<i64>,
        props: &Fields<'_>,
    ) -> Result<Vec<u8>> {
        if event.is_empty() {
            return Err(Error::invalid("event name must not be empty"));
        }
        let props_len: usize = props.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum();
        let mut out = Vec::with_capacity(192 + event.len() + distinct_id.len() + props_len);
        out.extend_from_slice(b"{\"event\":");
        write_str(&mut out, event);
        out.extend_from_slice(b",\"properties\":{\"token\":");
        write_str(&mut out, &self.token);
        if !distinct_id.is_empty() && !props.contains_key("distinct_id") {
            out.extend_from_slice(b",\"distinct_id\":");
            write_str(&mut out, distinct_id);
        }
        match props.get("time") {
            Some(t) => check_time(t)?,
            None => {
                out.extend_from_slice(b",\"time\":");
                write_int(&mut out, time_ms.unwrap_or_else(now_ms));
            }
        }
        match props.get("$insert_id") {
            Some(id) => check_insert_id(id)?,
            None => {
                out.extend_from_slice(b",\"$insert_id\":\"");
                write_insert_id(&mut out);
                out.push(b'"');
            }
        }
        if !props.contains_key("mp_lib") {
            out.extend_from_slice(b",\"mp_lib\":\"");
            out.extend_from_slice(LIB_NAME.as_bytes());
            out.push(b'"');
        }
        if !props.contains_key("$lib_version") {
            out.extend_from_slice(b",\"$lib_version\":\"");
            out.extend_from_slice(LIB_VERSION.as_bytes());
            out.push(b'"');
        }
        for (key, value) in props.iter() {
            if key == "token" {
                continue;
            }
            out.push(b',');
            write_str(&mut out, key);
            out.push(b':');
            out.extend_from_slice(value.get().as_bytes());
        }
        out.extend_from_slice(b"}}");
        Ok(out)
    }

    /// Makes a prebuilt event idempotent: adds `$insert_id`, `time` (and `token`) when
    /// missing by splicing them into the caller's bytes, which are otherwise kept as is.
    /// Also returns the event's own `token`, if it has one.
    fn complete_event<'a>(
        &self,
        endpoint: Endpoint,
        item: &'a str,
        scan: &MessageScan<'a>,
    ) -> Result<(Vec<u8>, Option<&'a str>)> {
        let name = optional_string("event", scan.event)?
            .ok_or_else(|| Error::json("an event needs `event` and `properties`"))?;
        let Some(props) = &scan.properties else {
            if endpoint == Endpoint::Import {
                return Err(Error::invalid("an /import event needs `properties`"));
            }
            return Ok((self.event_json("", name, None, &Fields::default())?, None));
        };
        if endpoint == Endpoint::Import && (props.time.is_none() || !props.has_distinct_id) {
            return Err(Error::invalid(
                "an /import event needs properties.time and properties.distinct_id",
            ));
        }
        if let Some(t) = props.time {
            check_time(t)?;
        }
        if let Some(id) = props.insert_id {
            check_insert_id(id)?;
        }
        let token = props
            .token
            .and_then(|t| serde_json::from_str::<&str>(t.get()).ok());
        // What the event lacks of what makes a retry idempotent, spliced in at the front.
        let mut missing: Vec<u8> = Vec::new();
        let mut add = |key: &[u8], write: &dyn Fn(&mut Vec<u8>)| {
            if !missing.is_empty() {
                missing.push(b',');
            }
            missing.extend_from_slice(key);
            write(&mut missing);
        };
        if props.token.is_none() {
            add(b"\"token\":", &|out| write_str(out, &self.token));
        }
        if props.time.is_none() {
            add(b"\"time\":", &|out| write_int(out, now_ms()));
        }
        if props.insert_id.is_none() {
            add(b"\"$insert_id\":", &|out| {
                out.push(b'"');
                write_insert_id(out);
                out.push(b'"');
            });
        }
        let text = item.as_bytes();
        if missing.is_empty() {
            return Ok((text.to_vec(), token));
        }
        let open = match props.body_start(item) {
            Some(at) => at,
            // Empty properties or an escaped first key: find the brace with a second pass.
            None => {
                let raw = Fields::parse(item, "event")?
                    .get("properties")
                    .ok_or_else(|| Error::json("an event needs `properties`"))?;
                // Both slices borrow `item`, so the offset is within `text`.
                raw.get().as_ptr() as usize - text.as_ptr() as usize + 1
            }
        };
        let mut out = Vec::with_capacity(text.len() + missing.len() + 1);
        out.extend_from_slice(&text[..open]);
        out.extend_from_slice(&missing);
        if props.len > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&text[open..]);
        Ok((out, token))
    }

    fn update_tail(&self, out: &mut Vec<u8>, operation: &str, value: Option<&str>) -> Result<()> {
        if !OPERATIONS.contains(&operation) {
            return Err(Error::invalid(format!(
                "unknown operation `{operation}`; expected one of {}",
                OPERATIONS.join(" ")
            )));
        }
        out.extend_from_slice(b",\"$time\":");
        write_int(out, now_ms());
        out.push(b',');
        write_str(out, operation);
        out.push(b':');
        if operation == "$delete" {
            out.extend_from_slice(b"\"\"}");
            return Ok(());
        }
        let value = value.ok_or_else(|| Error::invalid(format!("{operation} needs a value")))?;
        let raw: &RawValue = serde_json::from_str(value)
            .map_err(|e| Error::json(format!("{operation} value is not valid JSON: {e}")))?;
        let expected = if operation == "$unset" { b'[' } else { b'{' };
        if first_byte(raw) != expected {
            let what = if expected == b'[' {
                "an array of property names"
            } else {
                "a JSON object"
            };
            return Err(Error::json(format!("{operation} value must be {what}")));
        }
        out.extend_from_slice(raw.get().as_bytes());
        out.push(b'}');
        Ok(())
    }

    fn finish(&self, endpoint: Endpoint, json: Vec<u8>) -> Result<Message> {
        if json.len() > self.max_event_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "message is {} bytes, above max_event_bytes ({})",
                    json.len(),
                    self.max_event_bytes
                ),
            ));
        }
        Ok(Message {
            endpoint,
            credentials: None,
            json,
        })
    }
}

/// mixpanel-python and mixpanel-ruby semantics: the secret as Basic username if given,
/// else the key; empty password.
pub fn credentials_from(
    api_key: Option<String>,
    api_secret: Option<String>,
) -> Option<Arc<ImportCredentials>> {
    let username = api_secret
        .filter(|s| !s.is_empty())
        .or(api_key.filter(|s| !s.is_empty()))?;
    Some(Arc::new(ImportCredentials {
        username,
        password: String::new(),
        project_id: None,
    }))
}

fn parse_properties(json: Option<&str>) -> Result<Fields<'_>> {
    let Some(json) = json
        .map(str::trim)
        .filter(|j| !j.is_empty() && *j != "null")
    else {
        return Ok(Fields::default());
    };
    if !json.starts_with('{') {
        return Err(Error::json("properties must be a JSON object"));
    }
    Fields::parse(json, "properties")
}

fn parse_array(json: &str) -> Result<Vec<(&str, Option<MessageScan<'_>>)>> {
    let items: Vec<&RawValue> = serde_json::from_str(json)
        .map_err(|e| Error::json(format!("message array is invalid: {e}")))?;
    Ok(items.into_iter().map(|i| (i.get(), None)).collect())
}

/// A string field of a prebuilt message: `Ok(None)` when absent or null.
fn optional_string<'a>(key: &str, raw: Option<&'a RawValue>) -> Result<Option<&'a str>> {
    match raw {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => serde_json::from_str::<&str>(raw.get())
            .map(Some)
            .map_err(|_| Error::json(format!("`{key}` must be a plain string"))),
    }
}

fn first_byte(raw: &RawValue) -> u8 {
    raw.get().bytes().next().unwrap_or(b' ')
}

fn check_time(raw: &RawValue) -> Result<()> {
    match serde_json::from_str::<f64>(raw.get()) {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(()),
        _ => Err(Error::invalid(
            "property `time` must be a non-negative number (seconds or ms)",
        )),
    }
}

fn check_insert_id(raw: &RawValue) -> Result<()> {
    let id: &str = serde_json::from_str(raw.get()).unwrap_or("");
    if valid_insert_id(id) {
        Ok(())
    } else {
        Err(Error::invalid(
            "property `$insert_id` must be 1-36 bytes of letters, digits and `-`",
        ))
    }
}

/// Mixpanel's rule: at most 36 bytes of ASCII letters, digits and `-`.
pub fn valid_insert_id(id: &str) -> bool {
    (1..=36).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_int(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Per-process salt mixed into every generated `$insert_id`, so a forked child never
/// repeats its parent's ids even though it inherits the parent's random state.
static INSERT_ID_SALT: AtomicU64 = AtomicU64::new(0);

fn salt() -> u64 {
    let current = INSERT_ID_SALT.load(Ordering::Relaxed);
    if current != 0 {
        return current;
    }
    let fresh = fastrand::u64(..) | 1;
    match INSERT_ID_SALT.compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => fresh,
        Err(existing) => existing,
    }
}

/// Called in a forked child (async-signal-safe: atomics and getpid only).
pub(crate) fn reseed_insert_ids_after_fork() {
    // SAFETY: getpid has no preconditions and is async-signal-safe.
    let pid = unsafe { libc::getpid() } as u64;
    let old = INSERT_ID_SALT.load(Ordering::Relaxed);
    INSERT_ID_SALT.store(
        splitmix64(old ^ (pid << 17) ^ 0x9e37_79b9) | 1,
        Ordering::Relaxed,
    );
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 32 lowercase hex digits: the process salt and a fresh random word, both scrambled.
fn write_insert_id(out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let random = fastrand::u64(..);
    for word in [splitmix64(salt() ^ random), random ^ salt().rotate_left(29)] {
        for shift in (0..16).rev() {
            out.push(HEX[((word >> (shift * 4)) & 0xf) as usize]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn builder() -> MessageBuilder {
        MessageBuilder::new("tok", 1_000_000)
    }

    fn parse(m: &Message) -> Value {
        serde_json::from_slice(&m.json).unwrap()
    }

    #[test]
    fn event_has_fixed_properties() {
        let m = builder()
            .event("u1", "Signed up", Some(r#"{"plan":"pro"}"#))
            .unwrap();
        let v = parse(&m);
        let p = &v["properties"];
        assert_eq!(v["event"], "Signed up");
        assert_eq!(p["token"], "tok");
        assert_eq!(p["distinct_id"], "u1");
        assert_eq!(p["mp_lib"], LIB_NAME);
        assert_eq!(p["plan"], "pro");
        assert!(p["time"].as_i64().unwrap() > 1_600_000_000_000);
        assert!(valid_insert_id(p["$insert_id"].as_str().unwrap()));
    }

    #[test]
    fn caller_properties_win_without_duplicates() {
        let m = builder()
            .event(
                "u1",
                "e",
                Some(r#"{"time":123,"$insert_id":"abc-1","distinct_id":"u2","token":"evil"}"#),
            )
            .unwrap();
        let text = String::from_utf8(m.json.clone()).unwrap();
        for key in ["\"time\"", "\"$insert_id\"", "\"distinct_id\"", "\"token\""] {
            assert_eq!(text.matches(key).count(), 1, "{key} in {text}");
        }
        let p = &parse(&m)["properties"];
        assert_eq!(p["time"], 123);
        assert_eq!(p["$insert_id"], "abc-1");
        assert_eq!(p["distinct_id"], "u2");
        assert_eq!(p["token"], "tok");
    }

    #[test]
    fn bad_properties_are_refused() {
        let b = builder();
        assert_eq!(
            b.event("u", "e", Some("[1]")).unwrap_err().kind(),
            ErrorKind::InvalidJson
        );
        assert_eq!(
            b.event("u", "e", Some("{")).unwrap_err().kind(),
            ErrorKind::InvalidJson
        );
        let bad_id = b.event("u", "e", Some(r#"{"$insert_id":"has space"}"#));
        assert_eq!(bad_id.unwrap_err().kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            b.event("u", "", None).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn too_large_is_refused() {
        let b = MessageBuilder::new("tok", 100);
        let props = format!(r#"{{"x":"{}"}}"#, "a".repeat(200));
        assert_eq!(
            b.event("u", "e", Some(&props)).unwrap_err().kind(),
            ErrorKind::TooLarge
        );
    }

    #[test]
    fn insert_ids_differ() {
        let a = builder().event("u", "e", None).unwrap();
        let b = builder().event("u", "e", None).unwrap();
        assert_ne!(
            parse(&a)["properties"]["$insert_id"],
            parse(&b)["properties"]["$insert_id"]
        );
    }

    #[test]
    fn people_and_groups() {
        let p = parse(&builder().people("u1", "$set", Some(r#"{"a":1}"#)).unwrap());
        assert_eq!(p["$token"], "tok");
        assert_eq!(p["$distinct_id"], "u1");
        assert_eq!(p["$set"]["a"], 1);
        let g = parse(
            &builder()
                .group("company", "acme", "$unset", Some(r#"["a"]"#))
                .unwrap(),
        );
        assert_eq!(g["$group_key"], "company");
        assert_eq!(g["$unset"][0], "a");
        let d = parse(&builder().people("u1", "$delete", None).unwrap());
        assert_eq!(d["$delete"], "");
        assert!(builder().people("u1", "$frob", Some("{}")).is_err());
        assert!(builder().people("u1", "$unset", Some("{}")).is_err());
    }

    #[test]
    fn prebuilt_envelope_and_arrays() {
        let b = builder();
        let ruby = r#"{"data":{"event":"Old","properties":{"distinct_id":"u1","token":"tok","time":1500000000}},"api_key":"apikey"}"#;
        let ms = b.prebuilt(Endpoint::Import, ruby, None).unwrap();
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].credentials.as_ref().unwrap().username, "apikey");
        let v = parse(&ms[0]);
        assert_eq!(v["event"], "Old");
        assert!(valid_insert_id(
            v["properties"]["$insert_id"].as_str().unwrap()
        ));

        let arr = r#"{"data":[{"$token":"t","$distinct_id":"a","$set":{}},{"$token":"t","$distinct_id":"b","$set":{}}]}"#;
        assert_eq!(b.prebuilt(Endpoint::Engage, arr, None).unwrap().len(), 2);

        let bare = r#"{"event":"x","properties":{"token":"tok","time":1,"$insert_id":"abc"}}"#;
        let m = b.prebuilt(Endpoint::Track, bare, None).unwrap();
        assert_eq!(m[0].json, bare.as_bytes());

        let bare_no_time = r#"{"event":"x","properties":{"distinct_id":"u"}}"#;
        let v = parse(&b.prebuilt(Endpoint::Track, bare_no_time, None).unwrap()[0]);
        assert!(v["properties"]["time"].as_i64().unwrap() > 1_600_000_000_000);
        assert_eq!(v["properties"]["token"], "tok");
        assert_eq!(v["properties"]["distinct_id"], "u");
        let empty_props = r#"{"event":"x","properties":{}}"#;
        let v = parse(&b.prebuilt(Endpoint::Track, empty_props, None).unwrap()[0]);
        assert!(valid_insert_id(
            v["properties"]["$insert_id"].as_str().unwrap()
        ));

        assert!(b.prebuilt(Endpoint::Track, "[]", None).is_err());
        assert!(b.prebuilt(Endpoint::Track, "3", None).is_err());
        assert!(b
            .prebuilt(Endpoint::Import, r#"{"event":"x","properties":{}}"#, None)
            .is_err());
    }

    /// Random JSON text for property values and keys, escapes and unicode included.
    fn random_value(rng: &mut fastrand::Rng, depth: u32) -> serde_json::Value {
        match rng.u32(0..if depth > 2 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => Value::Bool(rng.bool()),
            2 => Value::from(rng.i64(..)),
            3 => Value::from(rng.f64() * 1e6),
            4 => Value::String(random_key(rng)),
            5 => (0..rng.usize(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
            _ => Value::Object(
                (0..rng.usize(0..4))
                    .map(|_| (random_key(rng), random_value(rng, depth + 1)))
                    .collect(),
            ),
        }
    }

    fn random_key(rng: &mut fastrand::Rng) -> String {
        const PIECES: &[&str] = &[
            "a",
            "Z",
            "time",
            "token",
            "\"",
            "\\",
            "\n",
            "é",
            "😀",
            " ",
            "$insert_id",
            "\u{1}",
        ];
        (0..rng.usize(0..4))
            .map(|_| PIECES[rng.usize(..PIECES.len())])
            .collect()
    }

    #[test]
    fn random_properties_always_give_valid_events() {
        let b = builder();
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let mut props = serde_json::Map::new();
            for _ in 0..rng.usize(0..8) {
                props.insert(random_key(&mut rng), random_value(&mut rng, 0));
            }
            // Keys whose values bulkhead checks must stay valid for the event to be accepted.
            props.remove("time");
            props.remove("$insert_id");
            let props_text = Value::Object(props).to_string();
            // Compare with the text re-read (serde_json's float parsing is not exact).
            let props: serde_json::Map<String, Value> = serde_json::from_str(&props_text).unwrap();
            let m = b.event("u", "e", Some(&props_text)).unwrap();
            let v = parse(&m);
            for (k, val) in &props {
                if k != "token" {
                    assert_eq!(&v["properties"][k], val, "{k} in {props_text}");
                }
            }
            assert_eq!(v["properties"]["token"], "tok");
            // The same event handed over prebuilt, without $insert_id/time: spliced, valid.
            let prebuilt = format!(r#"{{"event":"e","properties":{props_text}}}"#);
            let out = b.prebuilt(Endpoint::Track, &prebuilt, None).unwrap();
            let v = parse(&out[0]);
            assert!(valid_insert_id(
                v["properties"]["$insert_id"].as_str().unwrap()
            ));
            assert!(v["properties"]["time"].is_i64());
            for (k, val) in &props {
                if k != "token" {
                    assert_eq!(&v["properties"][k], val, "{k} in {prebuilt}");
                }
            }
        }
    }

    #[test]
    fn endpoint_names() {
        assert_eq!(Endpoint::parse("events"), Some(Endpoint::Track));
        assert_eq!(Endpoint::parse("profile_update"), Some(Endpoint::Engage));
        assert_eq!(Endpoint::parse("group_update"), Some(Endpoint::Groups));
        assert_eq!(Endpoint::parse("imports"), Some(Endpoint::Import));
        assert_eq!(Endpoint::parse("nope"), None);
    }
}
