//! Routine changes without a restart. `SIGHUP` and `POST /admin/reload` reload, in this order,
//! the policy sets, the upstream-identity assertion keys and the public listener's TLS
//! certificate, each from the files the config names. Each part is checked whole before it is
//! swapped in (atomically, for the requests and handshakes that begin after it); a part that
//! fails keeps what it had, and its error is reported in the answer, the log and a metric.

use std::sync::Mutex;

use serde_json::{Value, json};

use crate::metrics::Counter;
use crate::server::Core;

/// Assertion-key reloads that failed (the keys in force stayed).
pub static KEY_RELOAD_FAILURES: Counter = Counter::new(
    "taxgate_assertion_key_reload_failures_total",
    "Reloads of the upstream-identity keys refused; the keys in force stayed.",
);
/// TLS certificate reloads that failed (the certificate in force stayed).
pub static TLS_RELOAD_FAILURES: Counter = Counter::new(
    "taxgate_tls_reload_failures_total",
    "Reloads of the public listener's certificate refused; the certificate in force stayed.",
);

/// When a part was last (re)loaded and why its last reload failed, if it did.
#[derive(Debug, Default, Clone)]
struct PartStatus {
    loaded_at: Option<String>,
    last_error: Option<String>,
}

/// The reload status of the keys and the certificate.
#[derive(Debug, Default)]
pub struct Reloads {
    keys: Mutex<PartStatus>,
    tls: Mutex<PartStatus>,
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Reloads {
    /// Both parts loaded now (at start).
    pub fn started() -> Reloads {
        let now = PartStatus {
            loaded_at: Some(now_rfc3339()),
            last_error: None,
        };
        Reloads {
            keys: Mutex::new(now.clone()),
            tls: Mutex::new(now),
        }
    }

    fn set(part: &Mutex<PartStatus>, result: Result<(), String>) {
        let mut p = part
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(()) => {
                p.loaded_at = Some(now_rfc3339());
                p.last_error = None;
            }
            Err(e) => p.last_error = Some(e),
        }
    }

    fn get(part: &Mutex<PartStatus>) -> PartStatus {
        part.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// 1 while the newest key files are not in force, for `/metrics`.
    pub fn keys_failed(&self) -> bool {
        Self::get(&self.keys).last_error.is_some()
    }

    /// 1 while the newest certificate files are not in force, for `/metrics`.
    pub fn tls_failed(&self) -> bool {
        Self::get(&self.tls).last_error.is_some()
    }
}

impl Core {
    /// Reload the policies, the assertion keys and the TLS certificate; answer what is in force
    /// afterwards. `ok` is false when any part kept its old state.
    pub async fn reload_all(&self) -> Value {
        self.reload_policies().await;
        self.reload_keys();
        self.reload_tls();
        self.reload_status()
    }

    fn reload_keys(&self) {
        let (Some(assertions), Some(config)) = (&self.assertions, self.config.signing_identity())
        else {
            return;
        };
        let result = match assertions.reload(config) {
            Ok(keys) => {
                tracing::info!(
                    kid = keys.key().kid(),
                    previous_kids = ?keys.previous_kids(),
                    "assertion keys reloaded"
                );
                Ok(())
            }
            Err((key, message)) => {
                KEY_RELOAD_FAILURES.inc();
                tracing::error!(key = %key, error = %message, "assertion keys not reloaded; the keys in force stay");
                Err(format!("{key}: {message}"))
            }
        };
        Reloads::set(&self.reloads.keys, result);
    }

    fn reload_tls(&self) {
        let (Some(resolver), Some(tls)) = (&self.tls, &self.config.server.tls) else {
            return;
        };
        let result = match resolver.reload(&tls.cert, &tls.key) {
            Ok(()) => {
                tracing::info!(cert = %tls.cert.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                TLS_RELOAD_FAILURES.inc();
                tracing::error!(error = %e, "TLS certificate not reloaded; the certificate in force stays");
                Err(format!("server.tls: {e}"))
            }
        };
        Reloads::set(&self.reloads.tls, result);
    }

    /// What `POST /admin/reload` answers.
    pub fn reload_status(&self) -> Value {
        let policies = serde_json::to_value(self.engine.status()).unwrap_or_default();
        let mut ok = policies.get("last_error").is_none_or(Value::is_null);
        let keys = self.assertions.as_ref().map(|a| {
            let set = a.keys();
            let part = Reloads::get(&self.reloads.keys);
            ok &= part.last_error.is_none();
            json!({
                "kid": set.key().kid(),
                "previous_kids": set.previous_kids(),
                "loaded_at": part.loaded_at,
                "last_error": part.last_error,
            })
        });
        let tls = self.tls.as_ref().map(|_| {
            let part = Reloads::get(&self.reloads.tls);
            ok &= part.last_error.is_none();
            json!({"loaded_at": part.loaded_at, "last_error": part.last_error})
        });
        json!({"ok": ok, "policies": policies, "assertion_keys": keys, "tls": tls})
    }
}
