//! SMS delivery behind one trait. `file` appends the outbox of CONTRACT section 5 (dev and
//! tests); `webhook` POSTs the same JSON to an SMS service, signed like the face callbacks
//! (section 6), with a timeout and retries.

use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::config::{SecretString, SmsConfig, SmsProvider};
use taxgate_proxy::body::{Body, full};

/// What a message is for; `purpose` in the outbox and the webhook's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// The code of a login's second factor.
    Login,
    /// The code proving a new number before it is bound to the account.
    BindPhone,
    /// The code to the new number when an account is recovered through its phone.
    RecoverPhone,
    /// A notice without a code: the number of an account changed (CONTRACT section 5).
    PhoneChanged,
    /// The code of a forgotten-password reset (CONTRACT section 13).
    ResetPassword,
    /// A notice without a code: the account's password was reset (CONTRACT section 13).
    PasswordChanged,
    /// A notice without a code: an enterprise changed the person's binding (CONTRACT section 3).
    BindingChanged,
    /// The code of a step-up: a fresh second factor for a live session (CONTRACT section 10).
    StepUp,
    /// A notice without a code: a login from a device not seen for 90 days (section 11).
    LoginNotice,
}

impl Purpose {
    /// The snake_case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Login => "login",
            Purpose::BindPhone => "bind_phone",
            Purpose::RecoverPhone => "recover_phone",
            Purpose::PhoneChanged => "phone_changed",
            Purpose::ResetPassword => "reset_password",
            Purpose::PasswordChanged => "password_changed",
            Purpose::BindingChanged => "binding_changed",
            Purpose::StepUp => "step_up",
            Purpose::LoginNotice => "login_notice",
        }
    }
}

/// One message, as written to the outbox or posted to the webhook.
#[derive(Serialize)]
pub struct SmsMessage<'a> {
    /// The phone number it goes to.
    pub to: &'a str,
    /// `None` for a notice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'a str>,
    /// What it is for.
    pub purpose: Purpose,
    /// When it was sent, RFC 3339 in UTC.
    pub at: String,
}

/// A message could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    /// The `file` provider could not append to its outbox.
    #[error("cannot append to the sms outbox `{path}`: {source}")]
    Outbox {
        /// The outbox file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Every attempt of the `webhook` provider failed.
    #[error("sms webhook failed after {attempts} attempts: {last}")]
    Webhook {
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's failure.
        last: String,
    },
}

/// What [`SmsSender::send`] returns: a boxed future, so the trait stays object-safe.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SmsError>> + Send + 'a>>;

/// An SMS provider (`[sms] provider`).
pub trait SmsSender: Send + Sync {
    /// Deliver one message; `Ok` once the provider has taken it.
    fn send<'a>(&'a self, message: &'a SmsMessage<'a>) -> SendFuture<'a>;
}

/// Build the configured provider.
pub fn from_config(config: &SmsConfig) -> Result<Arc<dyn SmsSender>, String> {
    let sender: Arc<dyn SmsSender> = match config.provider {
        SmsProvider::File => Arc::new(FileOutbox::new(config.path.clone(), config.echo)),
        SmsProvider::Webhook => {
            let url = config.url.clone().ok_or("sms.url is required")?;
            let secret = config.secret.clone().ok_or("sms.secret is required")?;
            Arc::new(Webhook::new(url, secret)?)
        }
    };
    Ok(sender)
}

/// Appends one JSON object per line. Each line goes out in a single `write` on a file opened
/// with `O_APPEND`, under a lock, so concurrent sends never interleave.
pub struct FileOutbox {
    path: PathBuf,
    echo: bool,
    lock: tokio::sync::Mutex<()>,
}

impl FileOutbox {
    /// An outbox at `path` (its directory is made on the first send). `echo` also prints each
    /// message to stdout, for `taxgate demo` only.
    pub fn new(path: PathBuf, echo: bool) -> Self {
        FileOutbox {
            path,
            echo,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    fn append(path: &std::path::Path, line: &[u8]) -> std::io::Result<()> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        file.write_all(line)?;
        file.flush()
    }
}

impl SmsSender for FileOutbox {
    fn send<'a>(&'a self, message: &'a SmsMessage<'a>) -> SendFuture<'a> {
        Box::pin(async move {
            let mut line = serde_json::to_vec(message).unwrap_or_default();
            line.push(b'\n');
            let _guard = self.lock.lock().await;
            let path = self.path.clone();
            let result = tokio::task::spawn_blocking(move || Self::append(&path, &line))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            result.map_err(|source| SmsError::Outbox {
                path: self.path.display().to_string(),
                source,
            })?;
            if self.echo {
                // Development only (`taxgate demo`): the terminal is the phone.
                println!(
                    "[sms] to {} ({}): {}",
                    message.to,
                    message.purpose.as_str(),
                    message
                        .code
                        .map_or("notice".to_string(), |c| format!("code {c}"))
                );
            }
            Ok(())
        })
    }
}

/// POSTs each message as JSON to `[sms] url`, signed with `x-taxgate-signature` and
/// `x-taxgate-timestamp` like the face callbacks; three attempts of five seconds each, with a pause
/// between.
pub struct Webhook {
    url: http::Uri,
    secret: SecretString,
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Body,
    >,
    timeout: Duration,
    attempts: u32,
}

impl Webhook {
    /// A webhook to `url` (http or https, webpki roots) signing with `secret`. `Err` names what is
    /// wrong with the URL or the TLS setup.
    pub fn new(url: String, secret: SecretString) -> Result<Self, String> {
        let url: http::Uri = url.parse().map_err(|e| format!("sms.url: {e}"))?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(taxgate_proxy::tls::provider())
            .map_err(|e| format!("sms webhook tls: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Webhook {
            url,
            secret,
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout: Duration::from_secs(5),
            attempts: 3,
        })
    }

    async fn attempt(&self, body: &Bytes, timestamp: &str) -> Result<(), String> {
        let signature = super::face::sign(self.secret.expose().as_bytes(), timestamp, body);
        let req = Request::post(self.url.clone())
            .header("content-type", "application/json")
            .header("x-taxgate-timestamp", timestamp)
            .header("x-taxgate-signature", signature)
            .body(full(body.clone()))
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
            Ok(Ok(resp)) => Err(format!("status {}", resp.status())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer in {} s", self.timeout.as_secs())),
        }
    }
}

impl SmsSender for Webhook {
    fn send<'a>(&'a self, message: &'a SmsMessage<'a>) -> SendFuture<'a> {
        Box::pin(async move {
            let body = Bytes::from(serde_json::to_vec(message).unwrap_or_default());
            let mut last = String::new();
            for attempt in 0..self.attempts {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                let timestamp = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
                match self.attempt(&body, &timestamp).await {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        tracing::warn!(attempt = attempt + 1, error = %e, "sms webhook attempt failed");
                        last = e;
                    }
                }
            }
            Err(SmsError::Webhook {
                attempts: self.attempts,
                last,
            })
        })
    }
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_outbox_appends_whole_lines_concurrently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/outbox.jsonl");
        let outbox = Arc::new(FileOutbox::new(path.clone(), false));
        let mut tasks = Vec::new();
        for i in 0..50 {
            let outbox = outbox.clone();
            tasks.push(tokio::spawn(async move {
                let code = format!("{i:06}");
                let msg = SmsMessage {
                    to: "13800138000",
                    code: Some(&code),
                    purpose: Purpose::Login,
                    at: "2026-11-27T12:00:00+08:00".into(),
                };
                outbox.send(&msg).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 50);
        for line in lines {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["to"], "13800138000");
            assert_eq!(v["purpose"], "login");
            assert_eq!(v["code"].as_str().unwrap().len(), 6);
            assert!(v["at"].is_string());
        }
    }
}
