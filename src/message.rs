//! Building and validating messages on the caller's thread.
//!
//! A [`Message`] is one event or profile/group update, already serialised to the JSON that
//! goes on the wire, so the background only concatenates. Everything a retry needs to stay
//! idempotent (`$insert_id`, `time`) is fixed here, before the first attempt.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::ImportCredentials;
use crate::error::{Error, ErrorKind, Result};
use crate::fields::{Fields, MessageScan};
use crate::json::{self, Raw};

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
///
/// An empty token means the client has none (`"token": null`): it builds nothing itself and
/// forwards only prebuilt messages that carry their own token.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    token: String,
    /// The token written as a JSON string (quotes and escapes included), copied as is into
    /// every message.
    token_json: Box<str>,
    max_event_bytes: usize,
    /// Whether the client has its own `/import` credentials (service account or secret).
    /// Without them, a prebuilt `/import` event authenticates with its own token.
    import_credentials_configured: bool,
}

impl MessageBuilder {
    pub fn new(token: &str, max_event_bytes: u64) -> Self {
        Self {
            token: token.to_owned(),
            token_json: serde_json::to_string(token)
                .unwrap_or_default()
                .into_boxed_str(),
            max_event_bytes: usize::try_from(max_event_bytes).unwrap_or(usize::MAX),
            import_credentials_configured: false,
        }
    }

    /// Records that the client has `/import` credentials of its own.
    pub fn with_import_credentials(mut self, configured: bool) -> Self {
        self.import_credentials_configured = configured;
        self
    }

    /// A cheap lower bound on the bytes of the JSON [`MessageBuilder::event`] builds for
    /// `distinct_id` and `event`, whatever the properties: each fixed key is counted with the
    /// shortest value it can have (the caller may supply its own), no caller property is.
    // For the client's guard, which checks it before building the event.
    // Takes lengths only, so that the guard can be asked before the text is even validated.
    pub fn min_event_len(&self, distinct_id_len: usize, event_len: usize) -> usize {
        let distinct = if distinct_id_len == 0 {
            0
        } else {
            DISTINCT_ID.len() + 1
        };
        EVENT_OPEN.len()
            + event_len
            + 2
            + PROPERTIES_TOKEN.len()
            + self.token_json.len()
            + distinct
            + TIME.len()
            + 1
            + INSERT_ID.len()
            + 3
            + MP_LIB.len()
            + 1
            + LIB_VERSION_KEY.len()
            + 1
            + EVENT_CLOSE.len()
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
        let json = self.event_json(Endpoint::Track, distinct_id, event, None, &props)?;
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
        let json = self.event_json(Endpoint::Import, distinct_id, event, Some(time_ms), &props)?;
        self.finish(Endpoint::Import, json)
    }

    /// A user profile update for `/engage`.
    pub fn people(
        &self,
        distinct_id: &str,
        operation: &str,
        value: Option<&str>,
    ) -> Result<Message> {
        self.check_own_token()?;
        if distinct_id.is_empty() {
            return Err(Error::invalid(
                "profile updates need a non-empty distinct_id",
            ));
        }
        let tail = UpdateTail::new(operation, value)?;
        let len = PEOPLE_OPEN.len()
            + self.token_json.len()
            + PEOPLE_DISTINCT_ID.len()
            + json_str_len(distinct_id)
            + tail.len();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(PEOPLE_OPEN);
        out.extend_from_slice(self.token_json.as_bytes());
        out.extend_from_slice(PEOPLE_DISTINCT_ID);
        write_str(&mut out, distinct_id);
        tail.write(&mut out);
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
        self.check_own_token()?;
        if group_key.is_empty() || group_id.is_empty() {
            return Err(Error::invalid(
                "group updates need a non-empty group_key and group_id",
            ));
        }
        let tail = UpdateTail::new(operation, value)?;
        let len = PEOPLE_OPEN.len()
            + self.token_json.len()
            + GROUP_KEY.len()
            + json_str_len(group_key)
            + GROUP_ID.len()
            + json_str_len(group_id)
            + tail.len();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(PEOPLE_OPEN);
        out.extend_from_slice(self.token_json.as_bytes());
        out.extend_from_slice(GROUP_KEY);
        write_str(&mut out, group_key);
        out.extend_from_slice(GROUP_ID);
        write_str(&mut out, group_id);
        tail.write(&mut out);
        self.finish(Endpoint::Groups, out)
    }

    /// Messages already built by another SDK: a bare message, an array of them, or a
    /// mixpanel-ruby envelope `{"data": ..., "api_key": ...}`. Events lacking `$insert_id`,
    /// `time` or `token` get them; updates pass through untouched. `/import` events need a
    /// `distinct_id` and a `time`, except `$merge` (mixpanel-python's `merge`), which needs
    /// `$distinct_ids` (two ids) instead and gets a `time` when it has none.
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
                            optional_string("api_key", scan.api_key)?.map(Cow::into_owned),
                            optional_string("api_secret", scan.api_secret)?.map(Cow::into_owned),
                        );
                    }
                    match data.first_byte() {
                        b'[' => parse_array(data.get())?,
                        b'{' => vec![(data.get(), None)],
                        _ => return Err(Error::json("`data` must be a JSON object or array")),
                    }
                }
                // The usual case, one bare message: no list of items to build.
                _ => {
                    let message = self.prebuilt_item(endpoint, trimmed, Some(scan), &credentials);
                    return message.map(|m| vec![m]);
                }
            }
        } else {
            return Err(Error::json("message must be a JSON object or array"));
        };
        if items.is_empty() {
            return Err(Error::invalid("message array is empty"));
        }
        // An array is refused whole: the refusal counts every event in it.
        let count = items.len() as u64;
        items
            .into_iter()
            .map(|(item, scan)| self.prebuilt_item(endpoint, item, scan, &credentials))
            .collect::<Result<Vec<Message>>>()
            .map_err(|e| e.with_events(count))
    }

    /// One message of [`MessageBuilder::prebuilt`], with its scan if it was read already.
    fn prebuilt_item(
        &self,
        endpoint: Endpoint,
        item: &str,
        scan: Option<MessageScan<'_>>,
        credentials: &Option<Arc<ImportCredentials>>,
    ) -> Result<Message> {
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
    }

    fn event_json(
        &self,
        endpoint: Endpoint,
        distinct_id: &str,
        event: &str,
        time_ms: Option<i64>,
        props: &Fields<'_>,
    ) -> Result<Vec<u8>> {
        self.check_own_token()?;
        if event.is_empty() {
            return Err(Error::invalid("event name must not be empty"));
        }
        // One pass over the caller's properties: which fixed ones they supply, and the
        // exact bytes theirs will take.
        let (mut has_distinct_id, mut has_mp_lib, mut has_lib_version) = (false, false, false);
        let (mut time, mut insert_id) = (None, None);
        let (mut count, mut props_len, mut has_token) = (0usize, 0usize, false);
        for (key, plain, value) in props.iter_plain() {
            match key {
                "token" => {
                    has_token = true;
                    continue;
                }
                "distinct_id" => has_distinct_id = true,
                "time" => time = Some(value),
                "$insert_id" => insert_id = Some(value),
                "mp_lib" => has_mp_lib = true,
                "$lib_version" => has_lib_version = true,
                _ => {}
            }
            count += 1;
            let key_len = if plain {
                key.len() + 2
            } else {
                json_str_len(key)
            };
            props_len += 2 + key_len + value.get().len();
        }
        // The caller's members in one copy, as written, unless one must be left out.
        let members = props.members_text().filter(|_| !has_token);
        if let Some(text) = members {
            props_len = 1 + text.len();
        }
        let add_distinct_id = !distinct_id.is_empty() && !has_distinct_id;
        let mut time_text = itoa::Buffer::new();
        let own_time = match time {
            Some(t) => {
                check_time(endpoint, t)?;
                None
            }
            None => Some(time_text.format(time_ms.unwrap_or_else(now_ms))),
        };
        if let Some(id) = insert_id {
            check_insert_id(id)?;
        }
        // token and whichever fixed properties the caller left to us.
        let ours = [
            true,
            add_distinct_id,
            own_time.is_some(),
            insert_id.is_none(),
            !has_mp_lib,
            !has_lib_version,
        ];
        check_property_count(count + ours.iter().filter(|&&b| b).count())?;

        // Each string is scanned once: its JSON length also tells whether it needs escaping.
        let event_json_len = json_str_len(event);
        let distinct_id_json_len = if add_distinct_id {
            json_str_len(distinct_id)
        } else {
            0
        };
        let len = EVENT_OPEN.len()
            + event_json_len
            + PROPERTIES_TOKEN.len()
            + self.token_json.len()
            + if add_distinct_id {
                DISTINCT_ID.len() + distinct_id_json_len
            } else {
                0
            }
            + own_time.map_or(0, |t| TIME.len() + t.len())
            + if insert_id.is_none() {
                INSERT_ID.len() + INSERT_ID_LEN + 2
            } else {
                0
            }
            + if has_mp_lib {
                0
            } else {
                MP_LIB.len() + LIB_NAME.len() + 2
            }
            + if has_lib_version {
                0
            } else {
                LIB_VERSION_KEY.len() + LIB_VERSION.len() + 2
            }
            + props_len
            + EVENT_CLOSE.len();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(EVENT_OPEN);
        write_measured_str(&mut out, event, event_json_len);
        out.extend_from_slice(PROPERTIES_TOKEN);
        out.extend_from_slice(self.token_json.as_bytes());
        if add_distinct_id {
            out.extend_from_slice(DISTINCT_ID);
            write_measured_str(&mut out, distinct_id, distinct_id_json_len);
        }
        if let Some(t) = own_time {
            out.extend_from_slice(TIME);
            out.extend_from_slice(t.as_bytes());
        }
        if insert_id.is_none() {
            out.extend_from_slice(INSERT_ID);
            out.push(b'"');
            write_insert_id(&mut out);
            out.push(b'"');
        }
        if !has_mp_lib {
            out.extend_from_slice(MP_LIB);
            write_plain_str(&mut out, LIB_NAME);
        }
        if !has_lib_version {
            out.extend_from_slice(LIB_VERSION_KEY);
            write_plain_str(&mut out, LIB_VERSION);
        }
        if let Some(text) = members {
            out.push(b',');
            out.extend_from_slice(text.as_bytes());
        } else {
            for (key, plain, value) in props.iter_plain() {
                if key == "token" {
                    continue;
                }
                out.push(b',');
                if plain {
                    write_plain_str(&mut out, key);
                } else {
                    write_str(&mut out, key);
                }
                out.push(b':');
                out.extend_from_slice(value.get().as_bytes());
            }
        }
        out.extend_from_slice(EVENT_CLOSE);
        debug_assert_eq!(out.len(), len, "the event's length was computed exactly");
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
            let json = self.event_json(endpoint, "", &name, None, &Fields::default())?;
            return Ok((json, None));
        };
        if endpoint == Endpoint::Import {
            if name == MERGE_EVENT {
                // mixpanel-python's `merge`: no distinct_id, no time; the two ids instead.
                check_merge_ids(item)?;
            } else if props.time.is_none() || !props.has_distinct_id {
                return Err(Error::invalid(
                    "an /import event needs properties.time and properties.distinct_id",
                ));
            }
        }
        if props.token.is_none() && self.token.is_empty() {
            return Err(Error::invalid(
                "the event has no properties.token and this client has no token of its own",
            ));
        }
        if let Some(t) = props.time {
            check_time(endpoint, t)?;
        }
        if let Some(id) = props.insert_id {
            check_insert_id(id)?;
        }
        let added = usize::from(props.token.is_none())
            + usize::from(props.time.is_none())
            + usize::from(props.insert_id.is_none());
        // The scan counts repeated keys each time: count them once only when it matters.
        if props.len + added >= MAX_PROPERTIES {
            check_property_count(distinct_properties(item)? + added)?;
        }
        let token = props.token.and_then(|t| match t.as_str() {
            Some(Cow::Borrowed(t)) => Some(t),
            _ => None,
        });
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
            add(b"\"token\":", &|out| {
                out.extend_from_slice(self.token_json.as_bytes())
            });
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
        let open = props.body_start;
        let mut out = Vec::with_capacity(text.len() + missing.len() + usize::from(props.len > 0));
        out.extend_from_slice(&text[..open]);
        out.extend_from_slice(&missing);
        if props.len > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&text[open..]);
        Ok((out, token))
    }

    /// Refuses to build a message when the client has no token of its own.
    fn check_own_token(&self) -> Result<()> {
        if self.token.is_empty() {
            return Err(Error::invalid(
                "this client has no token (it was made with \"token\": null): it only \
                 forwards messages carrying their own token",
            ));
        }
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

/// The end of a profile or group update: `,"$time":T,"<operation>":<value>}`, validated
/// before anything is written so that its exact length is known.
struct UpdateTail<'a> {
    time: itoa::Buffer,
    time_ms: i64,
    operation: &'a str,
    /// `None` for `$delete`, whose value is always `""`.
    value: Option<Raw<'a>>,
}

impl<'a> UpdateTail<'a> {
    fn new(operation: &'a str, value: Option<&'a str>) -> Result<Self> {
        if !OPERATIONS.contains(&operation) {
            return Err(Error::invalid(format!(
                "unknown operation `{operation}`; expected one of {}",
                OPERATIONS.join(" ")
            )));
        }
        let value = if operation == "$delete" {
            None
        } else {
            let value =
                value.ok_or_else(|| Error::invalid(format!("{operation} needs a value")))?;
            let raw = json::value(value)
                .map_err(|e| e.error(value, &format!("{operation} value is not valid JSON")))?;
            let expected = if operation == "$unset" { b'[' } else { b'{' };
            if raw.first_byte() != expected {
                let what = if expected == b'[' {
                    "an array of property names"
                } else {
                    "a JSON object"
                };
                return Err(Error::json(format!("{operation} value must be {what}")));
            }
            Some(raw)
        };
        Ok(Self {
            time: itoa::Buffer::new(),
            time_ms: now_ms(),
            operation,
            value,
        })
    }

    fn len(&self) -> usize {
        let time = itoa::Buffer::new().format(self.time_ms).len();
        UPDATE_TIME.len()
            + time
            + 1
            + json_str_len(self.operation)
            + 1
            + self.value.map_or(2, |v| v.get().len())
            + 1
    }

    fn write(mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(UPDATE_TIME);
        out.extend_from_slice(self.time.format(self.time_ms).as_bytes());
        out.push(b',');
        write_str(out, self.operation);
        out.push(b':');
        match self.value {
            Some(raw) => out.extend_from_slice(raw.get().as_bytes()),
            None => out.extend_from_slice(b"\"\""),
        }
        out.push(b'}');
    }
}

/// The fixed pieces of the JSON bulkhead writes, shared by the writers and the length sums.
const EVENT_OPEN: &[u8] = b"{\"event\":";
const PROPERTIES_TOKEN: &[u8] = b",\"properties\":{\"token\":";
const DISTINCT_ID: &[u8] = b",\"distinct_id\":";
const TIME: &[u8] = b",\"time\":";
const INSERT_ID: &[u8] = b",\"$insert_id\":";
const MP_LIB: &[u8] = b",\"mp_lib\":";
const LIB_VERSION_KEY: &[u8] = b",\"$lib_version\":";
const EVENT_CLOSE: &[u8] = b"}}";
const PEOPLE_OPEN: &[u8] = b"{\"$token\":";
const PEOPLE_DISTINCT_ID: &[u8] = b",\"$distinct_id\":";
const GROUP_KEY: &[u8] = b",\"$group_key\":";
const GROUP_ID: &[u8] = b",\"$group_id\":";
const UPDATE_TIME: &[u8] = b",\"$time\":";
/// The length of a generated `$insert_id` (32 hex digits).
const INSERT_ID_LEN: usize = 32;

/// Mixpanel refuses events with this many properties or more.
const MAX_PROPERTIES: usize = 255;
/// `/track` refuses events older than this (`/import` takes any age).
const TRACK_MAX_AGE_MS: i64 = 5 * 24 * 60 * 60 * 1000;

fn check_property_count(count: usize) -> Result<()> {
    if count < MAX_PROPERTIES {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "event has {count} properties; Mixpanel takes fewer than {MAX_PROPERTIES}"
        )))
    }
}

/// The event mixpanel-python's `merge` sends to `/import`.
const MERGE_EVENT: &str = "$merge";

/// A `$merge` event must name exactly two non-empty ids in `properties.$distinct_ids`
/// (a second pass, for a rare event).
fn check_merge_ids(item: &str) -> Result<()> {
    let raw = Fields::parse(item, "event")?
        .get("properties")
        .ok_or_else(|| Error::json("an event needs `properties`"))?;
    let ids = Fields::parse(raw.get(), "properties")?
        .get("$distinct_ids")
        .and_then(|ids| serde_json::from_str::<Vec<Cow<'_, str>>>(ids.get()).ok());
    match ids {
        Some(ids) if ids.len() == 2 && ids.iter().all(|id| !id.is_empty()) => Ok(()),
        _ => Err(Error::invalid(
            "a $merge event needs properties.$distinct_ids: an array of two non-empty ids",
        )),
    }
}

/// The number of distinct keys in a prebuilt event's `properties` (a second, rare pass).
fn distinct_properties(item: &str) -> Result<usize> {
    let raw = Fields::parse(item, "event")?
        .get("properties")
        .ok_or_else(|| Error::json("an event needs `properties`"))?;
    Ok(Fields::parse(raw.get(), "properties")?.len())
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
    let items = json::array(json)?;
    Ok(items.into_iter().map(|i| (i.get(), None)).collect())
}

/// A string field of a prebuilt message: `Ok(None)` when absent or null.
/// Borrowed unless it has escapes.
fn optional_string<'a>(key: &str, raw: Option<Raw<'a>>) -> Result<Option<Cow<'a, str>>> {
    let Some(raw) = raw.filter(|r| !r.is_null()) else {
        return Ok(None);
    };
    raw.as_str()
        .map(Some)
        .ok_or_else(|| Error::json(format!("`{key}` must be a string")))
}

/// `time` must be a non-negative number of seconds or milliseconds; for `/track` also at
/// most 5 days old (a future time is fine: clocks differ).
fn check_time(endpoint: Endpoint, raw: Raw<'_>) -> Result<()> {
    // A plain integer (what every SDK sends) without the float parser.
    let integer = raw.get().parse::<u64>().ok().filter(|t| *t < 1 << 53);
    let parsed = integer.map_or_else(
        || serde_json::from_str::<f64>(raw.get()).ok(),
        |t| Some(t as f64),
    );
    let t = match parsed {
        Some(t) if t.is_finite() && t >= 0.0 => t,
        _ => {
            return Err(Error::invalid(
                "property `time` must be a non-negative number (seconds or ms)",
            ))
        }
    };
    if endpoint != Endpoint::Track {
        return Ok(());
    }
    // Below 1e11 it is seconds (1e11 s is the year 5138; 1e11 ms is 1973).
    let t_ms = if t < 1e11 { t * 1000.0 } else { t };
    if t_ms < (now_ms() - TRACK_MAX_AGE_MS) as f64 {
        return Err(Error::invalid(
            "property `time` is more than 5 days old: /track takes only the last 5 days; \
             send older events to /import (bulkhead_import, or the `imports` endpoint)",
        ));
    }
    Ok(())
}

fn check_insert_id(raw: Raw<'_>) -> Result<()> {
    // A valid id has no escapes, so it is the borrowed text between the quotes.
    let id = match raw.as_str() {
        Some(Cow::Borrowed(id)) => id,
        _ => "",
    };
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
    if is_plain(s) {
        write_plain_str(out, s);
    } else {
        // Writing a &str to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// As [`write_str`], for a string whose [`json_str_len`] is known: escaping only ever adds
/// bytes, so a JSON length of the string's own plus the quotes means it needs none.
fn write_measured_str(out: &mut Vec<u8>, s: &str, json_len: usize) {
    if json_len == s.len() + 2 {
        write_plain_str(out, s);
    } else {
        write_str(out, s);
    }
}

/// Whether `s` needs no escaping in a JSON string (no `"`, backslash or control byte): the
/// common case, copied as is. No early exit, so the loop is branch-free and vectorised.
fn is_plain(s: &str) -> bool {
    !s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

/// Writes `s`, which needs no escaping, as a JSON string.
fn write_plain_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// The length of `s` written as a JSON string by serde_json (quotes included): `"` and
/// backslash and the short control escapes take 2 bytes, other control bytes (`\u00XX`) 6.
fn json_str_len(s: &str) -> usize {
    if is_plain(s) {
        return 2 + s.len();
    }
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | 0x09 | 0x0a | 0x0c | 0x0d => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
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
    let (random, salt) = (fastrand::u64(..), salt());
    let words = [splitmix64(salt ^ random), random ^ salt.rotate_left(29)];
    let mut id = [0u8; INSERT_ID_LEN];
    for (digits, word) in id.chunks_exact_mut(16).zip(words) {
        for (i, digit) in digits.iter_mut().enumerate() {
            *digit = HEX[((word >> ((15 - i) * 4)) & 0xf) as usize];
        }
    }
    out.extend_from_slice(&id);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{json, Value};

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
                Some(&format!(
                    r#"{{"time":{},"$insert_id":"abc-1","distinct_id":"u2","token":"evil"}}"#,
                    now_ms() + 123
                )),
            )
            .unwrap();
        let text = String::from_utf8(m.json.clone()).unwrap();
        for key in ["\"time\"", "\"$insert_id\"", "\"distinct_id\"", "\"token\""] {
            assert_eq!(text.matches(key).count(), 1, "{key} in {text}");
        }
        let p = &parse(&m)["properties"];
        assert!(p["time"].as_i64().unwrap() > now_ms());
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

        let bare = &format!(
            r#"{{"event":"x","properties":{{"token":"tok","time":{},"$insert_id":"abc"}}}}"#,
            now_ms()
        );
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
    pub(crate) fn random_value(rng: &mut fastrand::Rng, depth: u32) -> serde_json::Value {
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

    const DAY_MS: i64 = 86_400_000;

    /// A JSON object with `n` distinct keys.
    fn props_with(n: usize) -> String {
        let body: Vec<String> = (0..n).map(|i| format!(r#""p{i}":{i}"#)).collect();
        format!("{{{}}}", body.join(","))
    }

    #[test]
    fn fewer_than_255_final_properties() {
        let b = builder();
        // token, distinct_id, time, $insert_id, mp_lib, $lib_version + the caller's.
        assert!(b.event("u", "e", Some(&props_with(248))).is_ok());
        let err = b.event("u", "e", Some(&props_with(249))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        // A repeated key is one property; a caller's `token` replaces ours.
        let repeated = format!(r#"{{"token":"x","p0":1,{}"#, &props_with(248)[1..]);
        assert!(b.event("u", "e", Some(&repeated)).is_ok());
        // Prebuilt: token, time and $insert_id are added.
        let pre = |n| format!(r#"{{"event":"e","properties":{}}}"#, props_with(n));
        assert!(b.prebuilt(Endpoint::Track, &pre(251), None).is_ok());
        let err = b.prebuilt(Endpoint::Track, &pre(252), None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        let repeated = format!(
            r#"{{"event":"e","properties":{{"p0":0,"p0":1,{}}}"#,
            &props_with(251)[1..]
        );
        assert!(b.prebuilt(Endpoint::Track, &repeated, None).is_ok());
        assert!(b.prebuilt(Endpoint::Import, &pre(300), None).is_err());
    }

    #[test]
    fn track_refuses_events_older_than_five_days() {
        let b = builder();
        let with_time = |t: i64| format!(r#"{{"time":{t}}}"#);
        let old = now_ms() - 6 * DAY_MS;
        for t in [old, old / 1000] {
            let err = b.event("u", "e", Some(&with_time(t))).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
            assert!(err.message().contains("/import"), "{err}");
            let pre = format!(r#"{{"event":"e","properties":{{"time":{t}}}}}"#);
            let err = b.prebuilt(Endpoint::Track, &pre, None).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
            // /import takes old events.
            let pre = format!(r#"{{"event":"e","properties":{{"time":{t},"distinct_id":"u"}}}}"#);
            assert!(b.prebuilt(Endpoint::Import, &pre, None).is_ok());
            assert!(b.import("u", "e", 1, Some(&with_time(t))).is_ok());
        }
        // Recent (in s or ms) and future times are fine.
        let recent = now_ms() - 4 * DAY_MS;
        let future = now_ms() + 30 * DAY_MS;
        for t in [recent, recent / 1000, future, future / 1000] {
            assert!(b.event("u", "e", Some(&with_time(t))).is_ok(), "{t}");
        }
    }

    /// A hang detector, not a timing claim: a quadratic pass over this input takes hours.
    fn finishes_within_a_minute<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(work());
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("still running after 60 s: work is not linear in the input")
    }

    #[test]
    fn repeated_keys_are_linear() {
        const N: usize = 200_000;
        // One key repeated N times: one property, the last value.
        let same: Vec<String> = (0..N).map(|i| format!(r#""k":{i}"#)).collect();
        let same = format!("{{{}}}", same.join(","));
        // N distinct keys and one repeat: refused (too many), in linear time too.
        let mut many: Vec<String> = (0..N).map(|i| format!(r#""k{i}":{i}"#)).collect();
        many.push(r#""k0":"last""#.to_owned());
        let many = format!("{{{}}}", many.join(","));
        let last = (N - 1).to_string();
        finishes_within_a_minute(move || {
            let b = MessageBuilder::new("tok", 100_000_000);
            let m = b.event("u", "e", Some(&same)).unwrap();
            assert_eq!(parse(&m)["properties"]["k"].to_string(), last);
            let m = b.import("u", "e", 1, Some(&same)).unwrap();
            assert_eq!(parse(&m)["properties"]["k"].to_string(), last);
            // An escaped first key takes the second pass that locates the brace.
            let pre = format!(
                r#"{{"event":"e","properties":{{"\u006b":0,{}}}"#,
                &same[1..]
            );
            let m = b.prebuilt(Endpoint::Track, &pre, None).unwrap();
            assert_eq!(parse(&m[0])["properties"]["k"].to_string(), last);

            for result in [
                b.event("u", "e", Some(&many)).map(|_| ()),
                b.import("u", "e", 1, Some(&many)).map(|_| ()),
                b.prebuilt(
                    Endpoint::Track,
                    &format!(r#"{{"event":"e","properties":{many}}}"#),
                    None,
                )
                .map(|_| ()),
            ] {
                assert_eq!(result.unwrap_err().kind(), ErrorKind::InvalidArgument);
            }
        });
    }

    fn assert_exact(m: &Message, what: &str) {
        assert_eq!(
            m.json.capacity(),
            m.json.len(),
            "{what}: {}",
            String::from_utf8_lossy(&m.json)
        );
    }

    #[test]
    fn every_message_has_exact_capacity() {
        let mut rng = fastrand::Rng::with_seed(13);
        for token in [
            "tok",
            "0123456789abcdef0123456789abcdef",
            "t\"o\\k\u{1}\té😀",
        ] {
            let b = MessageBuilder::new(token, 10_000_000);
            for round in 0..400 {
                let mut props = serde_json::Map::new();
                for _ in 0..rng.usize(0..8) {
                    props.insert(random_key(&mut rng), random_value(&mut rng, 0));
                }
                props.remove("time");
                props.remove("$insert_id");
                let mut text = Value::Object(props).to_string();
                // Sometimes the caller's own ids and a repeated key.
                if round % 3 == 0 {
                    let extra = format!(
                        r#"{{"time":{},"$insert_id":"id-{round}","dup":1,"dup":2,"#,
                        now_ms()
                    );
                    text = if text == "{}" {
                        format!("{}}}", extra.trim_end_matches(','))
                    } else {
                        format!("{extra}{}", &text[1..])
                    };
                }
                let id = random_key(&mut rng);
                let name = format!("e{}", random_key(&mut rng));
                let m = b.event(&id, &name, Some(&text)).unwrap();
                assert_exact(&m, "event");
                assert_exact(&b.event(&id, &name, None).unwrap(), "bare event");
                let m = b.import(&format!("u{id}"), &name, 1, Some(&text)).unwrap();
                assert_exact(&m, "import");
                let m = b.people(&format!("u{id}"), "$set", Some(&text)).unwrap();
                assert_exact(&m, "people");
                let m = b.people(&format!("u{id}"), "$delete", None).unwrap();
                assert_exact(&m, "people $delete");
                let m = b
                    .group(&format!("k{id}"), &name, "$unset", Some(r#"["a"]"#))
                    .unwrap();
                assert_exact(&m, "group");
                for props in [text.as_str(), "{}"] {
                    let pre = format!(
                        r#"{{"event":{},"properties":{props}}}"#,
                        Value::from(name.clone())
                    );
                    for m in b.prebuilt(Endpoint::Track, &pre, None).unwrap() {
                        assert_exact(&m, "prebuilt");
                    }
                }
                let arr = format!(r#"[{{"$token":"t","$distinct_id":"a","$set":{text}}}]"#);
                assert_exact(
                    &b.prebuilt(Endpoint::Engage, &arr, None).unwrap()[0],
                    "update",
                );
            }
        }
    }

    #[test]
    fn caller_properties_are_kept_whichever_way_they_are_copied() {
        let b = builder();
        // One copy as written (plain keys, any whitespace), or member by member (a `token`
        // to leave out, a repeated key, an escaped key).
        for (props, want) in [
            (
                r#"{"a":1,"b":[2,{"c":"d"}]}"#,
                json!({"a":1,"b":[2,{"c":"d"}]}),
            ),
            (
                " {\n \"a\" : \"x\" ,\t\"é\":null } ",
                json!({"a":"x","é":null}),
            ),
            (r#"{"token":"theirs","a":1}"#, json!({"a":1})),
            (r#"{"a":1,"b":2,"a":3}"#, json!({"b":2,"a":3})),
            (
                r#"{"\u0061\n":1,"b":"\"q\""}"#,
                json!({"a\n":1,"b":"\"q\""}),
            ),
        ] {
            let m = b.event("u1", "E", Some(props)).unwrap();
            let v = parse(&m);
            let got = v["properties"].as_object().unwrap();
            assert_eq!(got["token"], "tok", "{props}");
            assert_eq!(got["distinct_id"], "u1", "{props}");
            for (k, val) in want.as_object().unwrap() {
                assert_eq!(&got[k], val, "{props}: {k}");
            }
            // Ours (token, distinct_id, time, $insert_id, mp_lib, $lib_version) and theirs.
            assert_eq!(
                got.len(),
                6 + want.as_object().unwrap().len(),
                "{props}: {v}"
            );
            assert_eq!(m.json.len(), m.json.capacity(), "exact size: {props}");
        }
    }

    #[test]
    fn min_event_len_is_a_lower_bound() {
        let mut rng = fastrand::Rng::with_seed(5);
        let shortest = format!(
            r#"{{"distinct_id":0,"time":{},"$insert_id":"a","mp_lib":0,"$lib_version":0}}"#,
            now_ms() / 1000
        );
        for token in ["t", "0123456789abcdef0123456789abcdef", "t\"\u{1}"] {
            let b = MessageBuilder::new(token, 10_000_000);
            for _ in 0..500 {
                let id = random_key(&mut rng);
                let name = format!("e{}", random_key(&mut rng));
                let min = b.min_event_len(id.len(), name.len());
                assert!(min >= name.len() + token.len());
                for props in [None, Some(shortest.as_str())] {
                    let built = b.event(&id, &name, props).unwrap().len();
                    assert!(
                        min <= built,
                        "{min} > {built} for {id:?} {name:?} {props:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn refused_arrays_count_every_event() {
        let b = builder();
        let ok = r#"{"event":"a","properties":{}}"#;
        let bad = r#"{"event":"b","properties":{"$insert_id":"not valid"}}"#;
        let three = format!("[{ok},{ok},{bad}]");
        assert_eq!(
            b.prebuilt(Endpoint::Track, &three, None)
                .unwrap_err()
                .events(),
            3
        );
        let two = format!(r#"{{"data":[{ok},{bad}]}}"#);
        assert_eq!(
            b.prebuilt(Endpoint::Track, &two, None)
                .unwrap_err()
                .events(),
            2
        );
        assert_eq!(
            b.prebuilt(Endpoint::Track, bad, None).unwrap_err().events(),
            1
        );
        assert_eq!(b.event("u", "", None).unwrap_err().events(), 1);
    }

    /// mixpanel-python 5.x `Mixpanel.merge`: `/import`, no `time`, no `distinct_id`, no
    /// `$insert_id`; Mixpanel's /import takes it (its own reference example has neither).
    #[test]
    fn merge_events_are_completed_for_import() {
        let b = builder();
        let merge = r#"{"event":"$merge","properties":{"$distinct_ids":["a","b"],"token":"mp"}}"#;
        let ms = b.prebuilt(Endpoint::Import, merge, None).unwrap();
        assert_eq!(ms.len(), 1);
        let v = parse(&ms[0]);
        let p = &v["properties"];
        assert_eq!(v["event"], "$merge");
        assert_eq!(p["$distinct_ids"], serde_json::json!(["a", "b"]));
        assert_eq!(p["token"], "mp");
        assert!(p["time"].as_i64().unwrap() > 1_600_000_000_000);
        assert!(valid_insert_id(p["$insert_id"].as_str().unwrap()));
        // No distinct_id is invented: Mixpanel merges the two ids it names.
        assert!(p.get("distinct_id").is_none(), "{v}");
        // Authenticated with its own token when nothing else is given, as other imports.
        assert_eq!(ms[0].credentials.as_ref().unwrap().username, "mp");
        assert_exact(&ms[0], "merge");
        // In mixpanel-ruby's envelope, with a time of its own, and with per-call credentials.
        let ruby = r#"{"data":{"event":"$merge","properties":{"$distinct_ids":["a","b"],"time":1500000000}},"api_key":"k"}"#;
        let ms = b.prebuilt(Endpoint::Import, ruby, None).unwrap();
        assert_eq!(parse(&ms[0])["properties"]["time"], 1_500_000_000);
        assert_eq!(ms[0].credentials.as_ref().unwrap().username, "k");
        assert_eq!(parse(&ms[0])["properties"]["token"], "tok");

        // Still refused: a merge that does not name exactly two ids, and other events
        // without a distinct_id or a time.
        for bad in [
            r#"{"event":"$merge","properties":{"token":"mp"}}"#,
            r#"{"event":"$merge","properties":{"$distinct_ids":["a"]}}"#,
            r#"{"event":"$merge","properties":{"$distinct_ids":["a","b","c"]}}"#,
            r#"{"event":"$merge","properties":{"$distinct_ids":["a",""]}}"#,
            r#"{"event":"$merge","properties":{"$distinct_ids":["a",2]}}"#,
            r#"{"event":"$merge","properties":{"$distinct_ids":"a,b"}}"#,
            r#"{"event":"$merge"}"#,
            r#"{"event":"Other","properties":{"$distinct_ids":["a","b"],"time":1}}"#,
            r#"{"event":"Other","properties":{"distinct_id":"u"}}"#,
        ] {
            let err = b.prebuilt(Endpoint::Import, bad, None).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}: {err}");
        }
    }

    /// A client made with `"token": null` has no token of its own: it forwards messages
    /// that carry theirs and refuses to build any.
    #[test]
    fn a_builder_without_a_token_only_forwards() {
        let b = MessageBuilder::new("", 1_000_000);
        let errors = [
            b.event("u", "e", None).unwrap_err(),
            b.import("u", "e", 1, None).unwrap_err(),
            b.people("u", "$set", Some("{}")).unwrap_err(),
            b.group("k", "g", "$delete", None).unwrap_err(),
            b.prebuilt(Endpoint::Track, r#"{"event":"e","properties":{}}"#, None)
                .unwrap_err(),
            b.prebuilt(Endpoint::Track, r#"{"event":"e"}"#, None)
                .unwrap_err(),
            b.prebuilt(
                Endpoint::Import,
                r#"{"event":"e","properties":{"distinct_id":"u","time":1}}"#,
                None,
            )
            .unwrap_err(),
        ];
        for err in errors {
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
            assert!(err.message().contains("token"), "{err}");
        }
        let with_token = r#"{"event":"e","properties":{"token":"mp","distinct_id":"u"}}"#;
        let v = parse(&b.prebuilt(Endpoint::Track, with_token, None).unwrap()[0]);
        assert_eq!(v["properties"]["token"], "mp");
        let update = r#"{"$token":"mp","$distinct_id":"u","$set":{}}"#;
        assert!(b.prebuilt(Endpoint::Engage, update, None).is_ok());
        let ruby_import =
            r#"{"data":{"event":"e","properties":{"token":"mp","distinct_id":"u","time":1}}}"#;
        let m = &b.prebuilt(Endpoint::Import, ruby_import, None).unwrap()[0];
        assert_eq!(m.credentials.as_ref().unwrap().username, "mp");
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
