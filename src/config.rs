//! Client configuration: a JSON object whose keys are all optional except `token`.
//! `"token": null` (or `""`) makes a client without a token of its own, which only forwards
//! messages that carry theirs (the drop-in consumers); leaving the key out is an error.
//!
//! Every key can also come from the environment as `BULKHEAD_<KEY>` (upper case), which
//! gives a default that the JSON object overrides. An unknown key or a value of the wrong
//! type is an [`ErrorKind::InvalidArgument`] naming the key.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};
use crate::log::Level;

/// The largest batch Mixpanel accepts in one request.
pub(crate) const MAX_BATCH_SIZE: u64 = 2000;

/// Credentials for `/import` (HTTP Basic). Never printed: `Debug` redacts them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImportCredentials {
    pub username: String,
    pub password: String,
    pub project_id: Option<String>,
}

impl fmt::Debug for ImportCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportCredentials")
            .field("username", &"<redacted>")
            .field("password", &"<redacted>")
            .field("project_id", &self.project_id)
            .finish()
    }
}

/// Everything a [`crate::Client`] needs. Build it with [`Config::from_json`] or
/// [`Config::new`] and adjust the public fields.
#[derive(Clone)]
pub struct Config {
    /// The project token; empty for a client without one (`"token": null`), which refuses
    /// to build messages and only forwards prebuilt ones that carry their own token.
    pub token: String,
    pub api_host: String,
    pub allow_insecure_http: bool,
    pub queue_capacity: u64,
    pub queue_max_bytes: u64,
    pub pool_size: u64,
    pub batch_size: u64,
    pub batch_max_bytes: u64,
    pub flush_interval: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_retries: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub retry_budget: Duration,
    pub circuit_failure_threshold: u32,
    pub circuit_cooldown: Duration,
    /// The cooldown doubles per failed probe up to this.
    pub circuit_cooldown_max: Duration,
    pub gzip: bool,
    pub max_event_bytes: u64,
    pub shutdown_timeout: Duration,
    pub service_account_username: Option<String>,
    pub service_account_secret: Option<String>,
    pub project_id: Option<String>,
    pub api_secret: Option<String>,
    pub max_recent_errors: u64,
    /// For the library's own sink (stderr, unless a log callback is set). Default warn.
    pub log_level: Level,
    /// Keep events in memory for the host's tests instead of sending them.
    pub test_mode: bool,
    /// The most events `test_mode` keeps; beyond it they are dropped and counted.
    pub test_mode_capacity: u64,
    /// Mixpanel's data residency region; picks `api_host` unless that is given too.
    pub region: Option<Region>,
    /// An HTTP(S) proxy URL for every request (`none`: no proxy, not even the environment's).
    pub proxy: Option<String>,
    /// Trust the operating system's certificate store besides the bundled webpki roots.
    pub tls_system_roots: bool,
    /// A name for this client: the `client` label of its metrics.
    pub name: Option<String>,
    /// Where events the queue cannot hold (and those pending at close) are kept on disk;
    /// no spool when unset.
    pub spool_dir: Option<String>,
    /// The most the spool directory's segments may hold, in bytes.
    pub spool_max_bytes: u64,
    /// Spooled events older than this are expired (counted in `spool_expired`).
    pub spool_max_age: Duration,
    /// How often written spool data is made durable (fdatasync); 0: after every write.
    pub spool_sync_interval: Duration,
}

/// Mixpanel's ingestion hosts by data residency region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Region {
    Us,
    Eu,
    In,
}

impl Region {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "us" => Region::Us,
            "eu" => Region::Eu,
            "in" => Region::In,
            _ => return None,
        })
    }

    pub fn api_host(self) -> &'static str {
        match self {
            Region::Us => "https://api.mixpanel.com",
            Region::Eu => "https://api-eu.mixpanel.com",
            Region::In => "https://api-in.mixpanel.com",
        }
    }
}

impl fmt::Debug for Config {
    // Hand-written so that no secret can reach a log line through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("token", &"<redacted>")
            .field("api_host", &self.api_host)
            .field("queue_capacity", &self.queue_capacity)
            .field("pool_size", &self.pool_size)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

/// The keys [`Config::from_json`] accepts, in documentation order.
pub const KEYS: &[&str] = &[
    "token",
    "api_host",
    "allow_insecure_http",
    "queue_capacity",
    "queue_max_bytes",
    "pool_size",
    "batch_size",
    "batch_max_bytes",
    "flush_interval_ms",
    "connect_timeout_ms",
    "request_timeout_ms",
    "max_retries",
    "backoff_initial_ms",
    "backoff_max_ms",
    "retry_budget_ms",
    "circuit_failure_threshold",
    "circuit_cooldown_ms",
    "circuit_cooldown_max_ms",
    "gzip",
    "max_event_bytes",
    "shutdown_timeout_ms",
    "service_account_username",
    "service_account_secret",
    "project_id",
    "api_secret",
    "max_recent_errors",
    "log_level",
    "test_mode",
    "test_mode_capacity",
    "region",
    "proxy",
    "tls_system_roots",
    "name",
    "spool_dir",
    "spool_max_bytes",
    "spool_max_age_ms",
    "spool_sync_interval_ms",
];

/// A raw value for one key: from the JSON object, or from an environment variable.
enum Raw<'a> {
    Json(&'a Value),
    Env(&'a str),
}

impl Raw<'_> {
    fn u64(&self, key: &str) -> Result<u64> {
        let parsed = match self {
            Raw::Json(v) => v.as_u64(),
            Raw::Env(s) => s.trim().parse().ok(),
        };
        parsed.ok_or_else(|| self.wrong_type(key, "a non-negative integer"))
    }

    fn bool(&self, key: &str) -> Result<bool> {
        let parsed = match self {
            Raw::Json(v) => v.as_bool(),
            Raw::Env(s) => match s.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Some(true),
                "0" | "false" | "no" | "off" => Some(false),
                _ => None,
            },
        };
        parsed.ok_or_else(|| self.wrong_type(key, "a boolean"))
    }

    fn string(&self, key: &str) -> Result<String> {
        match self {
            Raw::Json(Value::String(s)) => Ok(s.clone()),
            Raw::Json(_) => Err(self.wrong_type(key, "a string")),
            Raw::Env(s) => Ok((*s).to_owned()),
        }
    }

    fn wrong_type(&self, key: &str, expected: &str) -> Error {
        let source = match self {
            Raw::Json(_) => format!("config key `{key}`"),
            Raw::Env(_) => format!("environment variable BULKHEAD_{}", key.to_uppercase()),
        };
        Error::invalid(format!("{source} must be {expected}"))
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

impl Config {
    /// Defaults for every key, with the given token. Ignores the environment.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            api_host: "https://api.mixpanel.com".into(),
            allow_insecure_http: false,
            queue_capacity: 100_000,
            queue_max_bytes: 64 * 1024 * 1024,
            pool_size: 8,
            batch_size: MAX_BATCH_SIZE,
            batch_max_bytes: 2_000_000,
            flush_interval: ms(1000),
            connect_timeout: ms(5000),
            request_timeout: ms(10_000),
            max_retries: 5,
            backoff_initial: ms(2000),
            backoff_max: ms(60_000),
            retry_budget: ms(120_000),
            circuit_failure_threshold: 5,
            circuit_cooldown: ms(1000),
            circuit_cooldown_max: ms(30_000),
            gzip: true,
            max_event_bytes: 1_000_000,
            shutdown_timeout: ms(2000),
            service_account_username: None,
            service_account_secret: None,
            project_id: None,
            api_secret: None,
            max_recent_errors: 32,
            log_level: Level::Warn,
            test_mode: false,
            test_mode_capacity: 10_000,
            region: None,
            proxy: None,
            tls_system_roots: false,
            name: None,
            spool_dir: None,
            spool_max_bytes: 1024 * 1024 * 1024,
            spool_max_age: ms(7 * 24 * 3600 * 1000),
            spool_sync_interval: ms(500),
        }
    }

    /// Parses a JSON object, taking defaults from `BULKHEAD_<KEY>` environment variables.
    pub fn from_json(json: &str) -> Result<Self> {
        Self::from_json_with_env(json, |key| std::env::var(key).ok())
    }

    /// As [`Config::from_json`], reading the environment through `env` (for tests).
    pub fn from_json_with_env(json: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let value: Value = if json.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(json)
                .map_err(|e| Error::json(format!("config is not valid JSON: {e}")))?
        };
        let Value::Object(map) = value else {
            return Err(Error::json("config must be a JSON object"));
        };
        let mut config = Self::new(String::new());
        let mut token_given = map.contains_key("token");
        let mut host_given = false;
        for key in KEYS {
            if let Some(text) = env(&format!("BULKHEAD_{}", key.to_uppercase())) {
                token_given |= *key == "token";
                host_given |= *key == "api_host";
                config.set(key, Raw::Env(&text))?;
            }
        }
        for (key, value) in &map {
            if !KEYS.contains(&key.as_str()) {
                return Err(Error::invalid(format!("unknown config key `{key}`")));
            }
            host_given |= key == "api_host";
            config.set(key, Raw::Json(value))?;
        }
        if !token_given {
            return Err(Error::invalid(
                "config key `token` is required (null for a client that only forwards \
                 messages carrying their own token)",
            ));
        }
        // `region` picks the host unless `api_host` was given (then the two must agree).
        if let (Some(region), false) = (config.region, host_given) {
            config.api_host = region.api_host().to_owned();
        }
        config.validate()?;
        Ok(config)
    }

    fn set(&mut self, key: &str, raw: Raw<'_>) -> Result<()> {
        match key {
            "token" => {
                self.token = match raw {
                    Raw::Json(Value::Null) => String::new(),
                    _ => raw.string(key)?,
                }
            }
            "api_host" => self.api_host = raw.string(key)?,
            "allow_insecure_http" => self.allow_insecure_http = raw.bool(key)?,
            "queue_capacity" => self.queue_capacity = raw.u64(key)?,
            "queue_max_bytes" => self.queue_max_bytes = raw.u64(key)?,
            "pool_size" => self.pool_size = raw.u64(key)?,
            "batch_size" => self.batch_size = raw.u64(key)?,
            "batch_max_bytes" => self.batch_max_bytes = raw.u64(key)?,
            "flush_interval_ms" => self.flush_interval = ms(raw.u64(key)?),
            "connect_timeout_ms" => self.connect_timeout = ms(raw.u64(key)?),
            "request_timeout_ms" => self.request_timeout = ms(raw.u64(key)?),
            "max_retries" => self.max_retries = to_u32(key, raw.u64(key)?)?,
            "backoff_initial_ms" => self.backoff_initial = ms(raw.u64(key)?),
            "backoff_max_ms" => self.backoff_max = ms(raw.u64(key)?),
            "retry_budget_ms" => self.retry_budget = ms(raw.u64(key)?),
            "circuit_failure_threshold" => {
                self.circuit_failure_threshold = to_u32(key, raw.u64(key)?)?
            }
            "circuit_cooldown_ms" => self.circuit_cooldown = ms(raw.u64(key)?),
            "circuit_cooldown_max_ms" => self.circuit_cooldown_max = ms(raw.u64(key)?),
            "gzip" => self.gzip = raw.bool(key)?,
            "max_event_bytes" => self.max_event_bytes = raw.u64(key)?,
            "shutdown_timeout_ms" => self.shutdown_timeout = ms(raw.u64(key)?),
            "service_account_username" => self.service_account_username = Some(raw.string(key)?),
            "service_account_secret" => self.service_account_secret = Some(raw.string(key)?),
            "project_id" => self.project_id = Some(raw.string(key)?),
            "api_secret" => self.api_secret = Some(raw.string(key)?),
            "max_recent_errors" => self.max_recent_errors = raw.u64(key)?,
            "test_mode" => self.test_mode = raw.bool(key)?,
            "test_mode_capacity" => self.test_mode_capacity = raw.u64(key)?,
            "region" => {
                let text = raw.string(key)?;
                self.region = Some(Region::parse(&text).ok_or_else(|| {
                    Error::invalid(format!(
                        "config key `region` must be one of us, eu, in (got `{text}`)"
                    ))
                })?)
            }
            "proxy" => self.proxy = Some(raw.string(key)?).filter(|p| !p.trim().is_empty()),
            "tls_system_roots" => self.tls_system_roots = raw.bool(key)?,
            "name" => self.name = Some(raw.string(key)?),
            "spool_dir" => {
                self.spool_dir = match raw {
                    Raw::Json(Value::Null) => None,
                    _ => Some(raw.string(key)?).filter(|d| !d.trim().is_empty()),
                }
            }
            "spool_max_bytes" => self.spool_max_bytes = raw.u64(key)?,
            "spool_max_age_ms" => self.spool_max_age = ms(raw.u64(key)?),
            "spool_sync_interval_ms" => self.spool_sync_interval = ms(raw.u64(key)?),
            "log_level" => {
                let text = raw.string(key)?;
                self.log_level = Level::parse(&text).ok_or_else(|| {
                    Error::invalid(format!(
                        "config key `log_level` must be one of off, error, warn, info, debug (got `{text}`)"
                    ))
                })?
            }
            _ => return Err(Error::invalid(format!("unknown config key `{key}`"))),
        }
        Ok(())
    }

    /// Checks ranges and the relations between keys.
    pub fn validate(&self) -> Result<()> {
        let ranged: [(&str, u64, u64, u64); 6] = [
            (
                "queue_capacity",
                self.queue_capacity,
                1,
                crate::guard::MAX_EVENTS,
            ),
            (
                "queue_max_bytes",
                self.queue_max_bytes,
                1024,
                crate::guard::MAX_BYTES,
            ),
            ("pool_size", self.pool_size, 1, 256),
            ("batch_size", self.batch_size, 1, MAX_BATCH_SIZE),
            (
                "batch_max_bytes",
                self.batch_max_bytes,
                1024,
                crate::transport::MAX_REQUEST_BODY as u64,
            ),
            ("max_event_bytes", self.max_event_bytes, 64, 10_000_000),
        ];
        for (key, value, min, max) in ranged {
            if value < min || value > max {
                return Err(Error::invalid(format!(
                    "config key `{key}` must be between {min} and {max} (got {value})"
                )));
            }
        }
        if self.test_mode_capacity > 10_000_000 {
            return Err(Error::invalid(
                "config key `test_mode_capacity` must be at most 10000000",
            ));
        }
        if let Some(region) = self.region {
            if self.base_url() != region.api_host() {
                return Err(Error::invalid(format!(
                    "config keys `region` ({}) and `api_host` ({}) disagree; give one of them",
                    region_name(region),
                    self.base_url()
                )));
            }
        }
        if let Some(proxy) = &self.proxy {
            let ok = proxy == "none"
                || ["http://", "https://", "socks5://", "socks5h://"]
                    .iter()
                    .any(|s| proxy.starts_with(s));
            if !ok {
                return Err(Error::invalid(
                    "config key `proxy` must be a URL (http://host:port, https://...) or `none`",
                ));
            }
        }
        if self.spool_dir.is_some() {
            if self.spool_max_bytes < 4096 {
                return Err(Error::invalid(
                    "config key `spool_max_bytes` must be at least 4096",
                ));
            }
            if self.spool_max_age.is_zero() {
                return Err(Error::invalid("config key `spool_max_age_ms` must be > 0"));
            }
        }
        if self.max_recent_errors > 10_000 {
            return Err(Error::invalid(
                "config key `max_recent_errors` must be at most 10000",
            ));
        }
        if self.flush_interval.is_zero() {
            return Err(Error::invalid("config key `flush_interval_ms` must be > 0"));
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::invalid(
                "config keys `request_timeout_ms` and `connect_timeout_ms` must be > 0",
            ));
        }
        if self.backoff_max < self.backoff_initial {
            return Err(Error::invalid(
                "config key `backoff_max_ms` must be >= `backoff_initial_ms`",
            ));
        }
        if self.circuit_cooldown_max < self.circuit_cooldown {
            return Err(Error::invalid(
                "config key `circuit_cooldown_max_ms` must be >= `circuit_cooldown_ms`",
            ));
        }
        if self.service_account_username.is_some() != self.service_account_secret.is_some() {
            return Err(Error::invalid(
                "config keys `service_account_username` and `service_account_secret` go together",
            ));
        }
        self.check_host()
    }

    fn check_host(&self) -> Result<()> {
        let host = self.api_host.trim_end_matches('/');
        let (scheme, rest) = host.split_once("://").ok_or_else(|| {
            Error::invalid("config key `api_host` must start with https:// or http://")
        })?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(Error::invalid("config key `api_host` has no host"));
        }
        match scheme {
            "https" => Ok(()),
            "http" if self.allow_insecure_http || is_loopback(authority) => Ok(()),
            "http" => Err(Error::invalid(
                "config key `api_host`: plain http:// is only allowed for loopback hosts \
                 unless `allow_insecure_http` is true",
            )),
            _ => Err(Error::invalid(
                "config key `api_host` must start with https:// or http://",
            )),
        }
    }

    /// The base URL without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.api_host.trim_end_matches('/')
    }

    /// Whether `/import` credentials beyond the token were configured.
    pub fn has_import_credentials(&self) -> bool {
        self.service_account_username.is_some() || self.api_secret.is_some()
    }

    /// The client-level `/import` credentials, if any were configured: a service account,
    /// else the legacy project secret, else the project token (Mixpanel accepts the token as
    /// Basic username with an empty password).
    pub fn import_credentials(&self) -> ImportCredentials {
        if let (Some(user), Some(secret)) =
            (&self.service_account_username, &self.service_account_secret)
        {
            return ImportCredentials {
                username: user.clone(),
                password: secret.clone(),
                project_id: self.project_id.clone(),
            };
        }
        ImportCredentials {
            username: self
                .api_secret
                .clone()
                .unwrap_or_else(|| self.token.clone()),
            password: String::new(),
            project_id: self.project_id.clone(),
        }
    }
}

fn region_name(region: Region) -> &'static str {
    match region {
        Region::Us => "us",
        Region::Eu => "eu",
        Region::In => "in",
    }
}

fn to_u32(key: &str, v: u64) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("config key `{key}` is too large"),
        )
    })
}

fn is_loopback(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config> {
        Config::from_json_with_env(json, |_| None)
    }

    #[test]
    fn token_is_required() {
        let err = parse("{}").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains("token"));
    }

    /// `"token": null` (or `""`) asks for a client without a token of its own; leaving the
    /// key out is still a mistake.
    #[test]
    fn token_may_be_null_but_not_forgotten() {
        for json in [r#"{"token":null}"#, r#"{"token":""}"#] {
            let c = parse(json).unwrap();
            assert!(c.token.is_empty());
        }
        assert!(parse(r#"{"queue_capacity":5}"#).is_err());
        assert!(parse(r#"{"token":5}"#).is_err());
        let env = |k: &str| (k == "BULKHEAD_TOKEN").then(|| "from-env".to_owned());
        let c = Config::from_json_with_env(r#"{"token":null}"#, env).unwrap();
        assert!(
            c.token.is_empty(),
            "an explicit null overrides the environment"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse(r#"{"token":"t","pool_sise":3}"#).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains("pool_sise"), "{}", err.message());
    }

    #[test]
    fn wrong_type_is_named() {
        let err = parse(r#"{"token":"t","pool_size":"8"}"#).unwrap_err();
        assert!(err.message().contains("pool_size"), "{}", err.message());
    }

    #[test]
    fn env_gives_defaults_and_json_overrides() {
        let env = |k: &str| match k {
            "BULKHEAD_POOL_SIZE" => Some("3".to_string()),
            "BULKHEAD_BATCH_SIZE" => Some("10".to_string()),
            _ => None,
        };
        let c = Config::from_json_with_env(r#"{"token":"t","batch_size":20}"#, env).unwrap();
        assert_eq!(c.pool_size, 3);
        assert_eq!(c.batch_size, 20);
    }

    #[test]
    fn bad_env_value_is_named() {
        let env = |k: &str| (k == "BULKHEAD_GZIP").then(|| "maybe".to_string());
        let err = Config::from_json_with_env(r#"{"token":"t"}"#, env).unwrap_err();
        assert!(err.message().contains("BULKHEAD_GZIP"), "{}", err.message());
    }

    #[test]
    fn plain_http_only_for_loopback() {
        assert!(parse(r#"{"token":"t","api_host":"http://127.0.0.1:9"}"#).is_ok());
        assert!(parse(r#"{"token":"t","api_host":"http://localhost:9"}"#).is_ok());
        assert!(parse(r#"{"token":"t","api_host":"http://[::1]:9"}"#).is_ok());
        assert!(parse(r#"{"token":"t","api_host":"http://example.com"}"#).is_err());
        assert!(parse(
            r#"{"token":"t","api_host":"http://example.com","allow_insecure_http":true}"#
        )
        .is_ok());
        assert!(parse(r#"{"token":"t","api_host":"ftp://x"}"#).is_err());
    }

    #[test]
    fn circuit_cooldown_max_is_a_key_and_bounds_the_cooldown() {
        let c = parse(r#"{"token":"t","circuit_cooldown_max_ms":5000}"#).unwrap();
        assert_eq!(c.circuit_cooldown_max, ms(5000));
        assert!(KEYS.contains(&"circuit_cooldown_max_ms"));
        let err =
            parse(r#"{"token":"t","circuit_cooldown_ms":9000,"circuit_cooldown_max_ms":5000}"#)
                .unwrap_err();
        assert!(
            err.message().contains("circuit_cooldown_max_ms"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn batch_size_is_capped() {
        assert!(parse(r#"{"token":"t","batch_size":2001}"#).is_err());
        assert!(parse(r#"{"token":"t","batch_size":0}"#).is_err());
    }

    #[test]
    fn region_picks_the_host_and_conflicts_are_refused() {
        let eu = parse(r#"{"token":"t","region":"eu"}"#).unwrap();
        assert_eq!(eu.base_url(), "https://api-eu.mixpanel.com");
        let india = parse(r#"{"token":"t","region":"IN"}"#).unwrap();
        assert_eq!(india.base_url(), "https://api-in.mixpanel.com");
        assert_eq!(
            parse(r#"{"token":"t"}"#).unwrap().base_url(),
            "https://api.mixpanel.com"
        );
        // Both given and agreeing is fine; disagreeing is an error naming both keys.
        assert!(
            parse(r#"{"token":"t","region":"eu","api_host":"https://api-eu.mixpanel.com/"}"#)
                .is_ok()
        );
        let err =
            parse(r#"{"token":"t","region":"eu","api_host":"http://127.0.0.1:9"}"#).unwrap_err();
        assert!(err.message().contains("region"), "{}", err.message());
        let err = parse(r#"{"token":"t","region":"mars"}"#).unwrap_err();
        assert!(err.message().contains("mars"), "{}", err.message());
        // The environment's api_host counts as given too.
        let env = |k: &str| (k == "BULKHEAD_API_HOST").then(|| "http://127.0.0.1:9".to_string());
        assert!(Config::from_json_with_env(r#"{"token":"t","region":"us"}"#, env).is_err());
    }

    #[test]
    fn new_keys_parse_and_validate() {
        let c = parse(
            r#"{"token":"t","test_mode":true,"test_mode_capacity":5,"proxy":"http://127.0.0.1:3128",
                "tls_system_roots":true,"name":"web"}"#,
        )
        .unwrap();
        assert!(c.test_mode && c.tls_system_roots);
        assert_eq!(c.test_mode_capacity, 5);
        assert_eq!(c.proxy.as_deref(), Some("http://127.0.0.1:3128"));
        assert_eq!(c.name.as_deref(), Some("web"));
        assert_eq!(c.log_level, Level::Warn, "warnings are on by default");
        assert!(parse(r#"{"token":"t","proxy":"127.0.0.1:3128"}"#).is_err());
        assert!(parse(r#"{"token":"t","proxy":"none"}"#).is_ok());
        assert!(parse(r#"{"token":"t","test_mode":"yes"}"#).is_err());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = parse(r#"{"token":"sekrit-token","api_secret":"sekrit-secret"}"#).unwrap();
        let text = format!("{c:?} {:?}", c.import_credentials());
        assert!(!text.contains("sekrit"), "{text}");
    }
}
