//! Keeps secrets out of error messages and log lines.
//!
//! A [`Redactor`] knows every secret of a client (token, api secret, service-account
//! secret) plus the credentials of the batch at hand (per-call `api_key`/`api_secret`, or a
//! message's own token used as Basic username), and removes each in every encoding the
//! library itself gives it on the wire: raw, JSON-escaped, form-encoded (`%XX` with `%20`
//! or `+` for space) and the base64 `username:password` of an HTTP Basic header. Redact
//! first, truncate after: a secret cut in half by a length limit could not be found.

use base64::Engine as _;

use crate::config::{Config, ImportCredentials};

/// What a secret becomes.
pub(crate) const REDACTED: &str = "<redacted>";

/// Secrets shorter than this are not searched for: they would mangle ordinary text.
const MIN_SECRET_LEN: usize = 4;

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so that no needle is left half-replaced by a shorter one.
    needles: Vec<String>,
}

impl Redactor {
    /// The client-wide secrets of `config`.
    pub fn for_config(config: &Config) -> Self {
        let mut r = Redactor::default();
        for secret in [
            Some(&config.token),
            config.api_secret.as_ref(),
            config.service_account_secret.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            r.add_secret(secret);
        }
        r.add_credentials(&config.import_credentials());
        // A proxy URL's password (and user) may come back in a connection error.
        if let Some(proxy) = config
            .proxy
            .as_deref()
            .and_then(|p| reqwest::Url::parse(p).ok())
        {
            if let Some(password) = proxy.password() {
                r.add_secret(password);
                // The URL keeps it percent-encoded; an error may quote it decoded.
                let decoded = form_urlencoded::parse(format!("p={password}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned());
                if let Some(decoded) = decoded {
                    r.add_secret(&decoded);
                }
            }
            if !proxy.username().is_empty() {
                r.add_secret(proxy.username());
            }
        }
        // The Basic values the library builds from the token or the api secret alone.
        r.add_basic(&config.token, "");
        if let Some(secret) = &config.api_secret {
            r.add_basic(secret, "");
        }
        r.sort();
        r
    }

    /// This redactor plus one batch's `/import` credentials.
    pub fn with_credentials(&self, credentials: &ImportCredentials) -> Self {
        let mut r = self.clone();
        r.add_credentials(credentials);
        r.sort();
        r
    }

    fn add_credentials(&mut self, c: &ImportCredentials) {
        // The username is a secret too when it is an api secret, api key or token.
        self.add_secret(&c.username);
        self.add_secret(&c.password);
        self.add_basic(&c.username, &c.password);
    }

    fn add_basic(&mut self, username: &str, password: &str) {
        if username.len() + password.len() >= MIN_SECRET_LEN {
            let value =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            self.push(value);
        }
    }

    fn add_secret(&mut self, secret: &str) {
        if secret.len() < MIN_SECRET_LEN {
            return;
        }
        self.push(secret.to_owned());
        if let Ok(json) = serde_json::to_string(secret) {
            self.push(json[1..json.len() - 1].to_owned());
        }
        self.push(form_urlencoded::byte_serialize(secret.as_bytes()).collect());
        let mut percent = Vec::new();
        crate::transport::form_encode_into(&mut percent, secret.as_bytes());
        self.push(String::from_utf8_lossy(&percent).into_owned());
    }

    fn push(&mut self, needle: String) {
        if !self.needles.contains(&needle) {
            self.needles.push(needle);
        }
    }

    fn sort(&mut self) {
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    /// `text` with every known secret replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), REDACTED);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_proxy_password_is_redacted() {
        let mut config = crate::config::Config::new("tok-token");
        config.proxy = Some("http://user1:p%40ss-word@127.0.0.1:3128".into());
        let r = super::Redactor::for_config(&config);
        let text = r.redact("proxy said p@ss-word and p%40ss-word to user1");
        assert!(
            !text.contains("ss-word") && !text.contains("user1"),
            "{text}"
        );
    }

    use super::*;

    #[test]
    fn every_encoding_of_every_secret() {
        let mut config = Config::new("tok\"en/1 2+3");
        config.api_secret = Some("api-secret x".into());
        config.service_account_username = Some("sa-user".into());
        config.service_account_secret = Some("sa/secret".into());
        let call = ImportCredentials {
            username: "call-secret".into(),
            password: String::new(),
            project_id: None,
        };
        let r = Redactor::for_config(&config).with_credentials(&call);
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let leaks = [
            "tok\"en/1 2+3".to_string(),
            "tok\\\"en/1 2+3".to_string(),
            "tok%22en%2F1+2%2B3".to_string(),
            "tok%22en%2F1%202%2B3".to_string(),
            "api-secret+x".to_string(),
            "api-secret%20x".to_string(),
            "sa%2Fsecret".to_string(),
            b64("sa-user:sa/secret"),
            b64("call-secret:"),
            b64("api-secret x:"),
            "call-secret".to_string(),
        ];
        for leak in leaks {
            let text = format!("before {leak} after");
            let out = r.redact(&text);
            assert_eq!(out, format!("before {REDACTED} after"), "{leak:?}");
        }
    }

    #[test]
    fn short_secrets_are_left_alone() {
        let r = Redactor::for_config(&Config::new("ab"));
        assert_eq!(r.redact("abc ab"), "abc ab");
    }
}
