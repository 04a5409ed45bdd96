//! `[audit]`: how long the audit trail is kept and where decisions are journalled first.

use std::path::PathBuf;

use serde::Deserialize;

/// `[audit]`: how long the audit trail is kept and where decisions are journalled first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Audit events (and the entity slices only they refer to) older than this many days are
    /// deleted by the janitor. 0 keeps them forever.
    #[serde(default = "defaults::audit_retention_days")]
    pub retention_days: u32,
    /// Where each decision is appended before its request is forwarded, so a crash of the
    /// process cannot lose it; shipped to the store behind it and recovered at start. Relative
    /// to the config file. Each instance writes files of its own (several may share the
    /// directory); put it on local storage.
    #[serde(default = "defaults::audit_journal_dir")]
    pub journal_dir: PathBuf,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention_days: defaults::audit_retention_days(),
            journal_dir: defaults::audit_journal_dir(),
        }
    }
}

impl AuditConfig {
    pub(super) fn validate<E>(&self, err: &impl Fn(&str, String) -> E) -> Result<(), E> {
        if self.retention_days > 36_500 {
            return Err(err(
                "audit.retention_days",
                "must be at most 36500 (0 keeps audit events forever)".into(),
            ));
        }
        Ok(())
    }
}

mod defaults {
    use std::path::PathBuf;

    pub fn audit_journal_dir() -> PathBuf {
        PathBuf::from("audit-journal")
    }
    /// Keep everything unless the operator chooses a period: an audit trail of who acted on
    /// whose tax records must not start vanishing after an upgrade.
    pub fn audit_retention_days() -> u32 {
        0
    }
}
