//! `[policies]`: the Cedar policy set, its reloads, its shadow candidate and the widening gate.

use std::path::PathBuf;

use serde::Deserialize;

/// `[policies]`: where the enforced Cedar set is read, its reloads, its shadow candidate and
/// the widening gate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoliciesConfig {
    /// The directory of the enforced set (`*.cedar`, the schema, `reasons.toml`); relative to the
    /// config file (default `policies`).
    #[serde(default = "defaults::policies_dir")]
    pub dir: PathBuf,
    /// Reload the set when its files change (default on). A set that fails validation is refused
    /// and the last good one stays.
    #[serde(default = "super::yes")]
    pub watch: bool,
    /// A candidate set evaluated beside the enforced one on live traffic, off the response
    /// path; disagreements are counted and audited, never enforced. Reloaded like `dir`.
    pub shadow_dir: Option<PathBuf>,
    /// Refuse a reload whose replay over the last `gate_window_hours` of decisions finds a
    /// deny→allow flip (the last good set stays active).
    #[serde(default)]
    pub gate_on_widening: bool,
    /// How far back the widening gate replays decisions, in hours (1 to 8784; default 24).
    #[serde(default = "defaults::gate_window_hours")]
    pub gate_window_hours: u32,
    /// The gate replays at most this many of the most recent decisions, so reloads stay fast.
    #[serde(default = "defaults::gate_max_decisions")]
    pub gate_max_decisions: u32,
}

impl Default for PoliciesConfig {
    fn default() -> Self {
        PoliciesConfig {
            dir: defaults::policies_dir(),
            watch: true,
            shadow_dir: None,
            gate_on_widening: false,
            gate_window_hours: defaults::gate_window_hours(),
            gate_max_decisions: defaults::gate_max_decisions(),
        }
    }
}

impl PoliciesConfig {
    pub(super) fn validate<E>(&self, err: &impl Fn(&str, String) -> E) -> Result<(), E> {
        if self.gate_window_hours == 0 || self.gate_window_hours > 24 * 366 {
            return Err(err(
                "policies.gate_window_hours",
                "must be between 1 and 8784 (a year)".into(),
            ));
        }
        if self.gate_max_decisions == 0 || self.gate_max_decisions > 1_000_000 {
            return Err(err(
                "policies.gate_max_decisions",
                "must be between 1 and 1000000".into(),
            ));
        }
        if let Some(shadow) = &self.shadow_dir
            && shadow == &self.dir
        {
            return Err(err(
                "policies.shadow_dir",
                "must differ from policies.dir: a shadow set is a candidate beside the enforced one"
                    .into(),
            ));
        }
        Ok(())
    }
}

mod defaults {
    use std::path::PathBuf;

    pub fn policies_dir() -> PathBuf {
        PathBuf::from("policies")
    }
    pub fn gate_window_hours() -> u32 {
        24
    }
    pub fn gate_max_decisions() -> u32 {
        10_000
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::config::tests::{BASE, load};

    #[test]
    fn replay_settings_default_and_errors_name_the_key() {
        let c = load(BASE).unwrap();
        assert_eq!(c.audit.retention_days, 0);
        assert!(!c.policies.gate_on_widening);
        assert_eq!(c.policies.gate_window_hours, 24);
        assert_eq!(c.policies.shadow_dir, None);
        let c = load(&format!("{BASE}\n[audit]\nretention_days = 7\n")).unwrap();
        assert_eq!(c.audit.retention_days, 7);
        let text = BASE.replace(
            "[store]",
            "[policies]\nshadow_dir = \"candidate\"\ngate_on_widening = true\n\n[store]",
        );
        let c = load(&text).unwrap();
        assert_eq!(
            c.policies.shadow_dir,
            Some(PathBuf::from("/etc/taxgate/candidate"))
        );
        assert!(c.policies.gate_on_widening);
        let e = load(&BASE.replace("[store]", "[policies]\ngate_window_hours = 0\n\n[store]"))
            .unwrap_err();
        assert_eq!(e.key, "policies.gate_window_hours");
        let e = load(&format!("{BASE}\n[audit]\nretention_days = 99999\n")).unwrap_err();
        assert_eq!(e.key, "audit.retention_days");
        let e = load(&format!("{BASE}\n[audit]\nretention_days = -1\n")).unwrap_err();
        assert!(e.key.starts_with("audit"), "{e}");
        let e = load(&BASE.replace(
            "[store]",
            "[policies]\ndir = \"p\"\nshadow_dir = \"p\"\n\n[store]",
        ))
        .unwrap_err();
        assert_eq!(e.key, "policies.shadow_dir");
    }
}
