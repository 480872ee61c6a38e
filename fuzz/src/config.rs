//! The configuration a client is made from: a JSON object, over defaults taken from
//! `BULKHEAD_<KEY>=value` environment variables. Input: the environment as `key=value`
//! lines (the key without its `BULKHEAD_` prefix, any case), a NUL byte, then the JSON.
//! With no environment lines, the same JSON also goes through `bulkhead_client_new`.

use bulkhead::ffi::*;
use bulkhead::{Config, ErrorKind};

use super::capi::cstr;
use super::{members, Pieces};

pub fn run(data: &[u8]) {
    let pieces = Pieces::new(data, 2);
    let (env_text, json) = if pieces.has(1) {
        (String::from_utf8_lossy(pieces.get(0)), pieces.get(1))
    } else {
        (Default::default(), pieces.get(0))
    };
    let Ok(json) = std::str::from_utf8(json) else {
        return;
    };
    let env: Vec<(String, &str)> = env_text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (format!("BULKHEAD_{}", k.trim().to_uppercase()), v))
        .collect();
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| (*v).to_owned())
    };
    let parsed = Config::from_json_with_env(json, lookup);
    match &parsed {
        Ok(config) => check_config(config, json),
        Err(e) => {
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::InvalidArgument | ErrorKind::InvalidJson
                ),
                "{:?}: {}",
                e.kind(),
                e.message()
            );
            assert!(!e.message().is_empty());
        }
    }
    let real_env_is_clean =
        std::env::vars_os().all(|(k, _)| !k.to_string_lossy().starts_with("BULKHEAD_"));
    if env.is_empty() && real_env_is_clean {
        check_c_api(json, parsed.as_ref().map_err(|e| e.kind()).err());
    }
}

/// A configuration that parsed is valid, keeps what the JSON said over the environment,
/// and never shows a secret in its `Debug` text.
fn check_config(config: &Config, json: &str) {
    config.validate().expect("a parsed configuration validates");
    let url = config.base_url();
    assert!(!url.ends_with('/'));
    assert!(
        url.starts_with("https://") || url.starts_with("http://"),
        "{url}"
    );
    assert!((1..=256).contains(&config.pool_size));
    assert!((1..=2000).contains(&config.batch_size));
    if let Some(given) = members(json.trim()) {
        match given
            .get("token")
            .map(|t| serde_json::from_str::<Option<String>>(t))
        {
            Some(Ok(token)) => assert_eq!(config.token, token.unwrap_or_default()),
            Some(Err(_)) => panic!("a token that is not a string or null was accepted"),
            None => {}
        }
        if let Some(host) = given.get("api_host") {
            let host: String = serde_json::from_str(host).expect("api_host is a string");
            assert_eq!(config.api_host, host, "the JSON's api_host wins");
        }
    }
    let mut other = config.clone();
    other.token = "another token".into();
    other.api_secret = other.api_secret.as_ref().map(|_| "another secret".into());
    other.service_account_secret = other.service_account_secret.as_ref().map(|_| "x".into());
    assert_eq!(
        format!("{config:?}"),
        format!("{other:?}"),
        "Debug shows a secret"
    );
}

/// `bulkhead_client_new` agrees with the parser: refused with the parser's status, or made
/// (a valid configuration may still be refused when its proxy cannot be used).
fn check_c_api(json: &str, refused: Option<ErrorKind>) {
    // A fuzzed `spool_dir` would make directories wherever the input points.
    if refused.is_none() && json.contains("spool_dir") {
        return;
    }
    let mut client = std::ptr::null_mut();
    // SAFETY: a live (ptr, len) string and a writable out-pointer.
    let status = unsafe { bulkhead_client_new(cstr(json.as_bytes()), json.len(), &mut client) };
    match refused {
        Some(kind) => {
            assert_eq!(status, bulkhead_status::from(kind));
            assert!(client.is_null());
        }
        None => {
            assert!(
                status == bulkhead_status::Ok || status == bulkhead_status::InvalidArgument,
                "a valid configuration answered {status:?}"
            );
            // SAFETY: NULL or a handle just made, freed once.
            unsafe { bulkhead_client_free(client) };
        }
    }
}
