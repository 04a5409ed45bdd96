//! `[sms]`: how one-time login codes are sent.

use std::path::PathBuf;

use serde::Deserialize;

use super::SecretString;

/// Where codes go.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SmsProvider {
    /// Appended to a JSON-lines outbox (`path`): development and tests.
    File,
    /// POSTed to `url`, signed with `secret`.
    Webhook,
}

/// `[sms]`: how one-time codes and notices are sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    /// `file` (default) or `webhook`.
    #[serde(default = "defaults::sms_provider")]
    pub provider: SmsProvider,
    /// The `file` provider's outbox; relative to the config file (default `data/sms-outbox.jsonl`).
    #[serde(default = "defaults::sms_path")]
    pub path: PathBuf,
    /// The `webhook` provider's http(s) URL; required for it.
    pub url: Option<String>,
    /// The key the `webhook` provider signs with; required for it.
    pub secret: Option<SecretString>,
    /// Also print codes to the terminal (the demo sets this; never in production).
    #[serde(default)]
    pub echo: bool,
}

impl Default for SmsConfig {
    fn default() -> Self {
        SmsConfig {
            provider: SmsProvider::File,
            path: defaults::sms_path(),
            url: None,
            secret: None,
            echo: false,
        }
    }
}

impl SmsConfig {
    pub(super) fn validate<E>(&self, err: &impl Fn(&str, String) -> E) -> Result<(), E> {
        if self.provider == SmsProvider::Webhook {
            match &self.url {
                Some(u) if u.starts_with("http://") || u.starts_with("https://") => {}
                Some(u) => return Err(err("sms.url", format!("`{u}` is not an http(s) URL"))),
                None => {
                    return Err(err(
                        "sms.url",
                        "required when provider = \"webhook\"".into(),
                    ));
                }
            }
            if self.secret.as_ref().is_none_or(|s| s.expose().is_empty()) {
                return Err(err(
                    "sms.secret",
                    "required when provider = \"webhook\"".into(),
                ));
            }
        }
        Ok(())
    }
}

mod defaults {
    use std::path::PathBuf;

    use super::SmsProvider;

    pub fn sms_provider() -> SmsProvider {
        SmsProvider::File
    }
    pub fn sms_path() -> PathBuf {
        PathBuf::from("data/sms-outbox.jsonl")
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{BASE, load};

    #[test]
    fn webhook_needs_an_http_url_and_a_secret() {
        let webhook = |keys: &str| load(&format!("{BASE}\n[sms]\nprovider = \"webhook\"\n{keys}"));
        assert_eq!(webhook("").unwrap_err().key, "sms.url");
        assert_eq!(webhook("url = \"ftp://x\"\n").unwrap_err().key, "sms.url");
        let url = "url = \"https://sms.internal/send\"\n";
        assert_eq!(webhook(url).unwrap_err().key, "sms.secret");
        assert_eq!(
            webhook(&format!("{url}secret = \"\"\n")).unwrap_err().key,
            "sms.secret"
        );
        assert!(webhook(&format!("{url}secret = \"s\"\n")).is_ok());
    }
}
