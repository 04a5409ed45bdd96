//! `[login]`: lockouts, SMS code budgets and rate limits of the login flows.

use serde::Deserialize;

use super::parse_rfc3339;

/// `[login]`: lockouts, SMS code budgets and rate limits of the login flows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// Wrong passwords in a row before the account locks (default 5).
    #[serde(default = "defaults::max_password_failures")]
    pub max_password_failures: u32,
    /// How long a locked account stays locked, in seconds (default 1800).
    #[serde(default = "defaults::lockout_secs")]
    pub lockout_secs: u64,
    /// Seconds before another code may go to the same number (default 60).
    #[serde(default = "defaults::sms_resend_secs")]
    pub sms_resend_secs: u64,
    /// How long a login step (the challenge after the first factor) lives, in seconds (default
    /// 300).
    #[serde(default = "defaults::challenge_ttl_secs")]
    pub challenge_ttl_secs: u64,
    /// Codes per number per day (429 `sms_daily_limit`; default 10).
    #[serde(default = "defaults::sms_daily_limit")]
    pub sms_daily_limit: u32,
    /// How long a code stays valid, in seconds (default 300).
    #[serde(default = "defaults::sms_code_ttl_secs")]
    pub sms_code_ttl_secs: u64,
    /// Wrong codes before the challenge ends (default 5).
    #[serde(default = "defaults::sms_max_attempts")]
    pub sms_max_attempts: u32,
    /// Requests to `/auth/*` per client address per minute, across instances (429 `rate_limited`;
    /// default 300).
    #[serde(default = "defaults::auth_requests_per_minute")]
    pub auth_requests_per_minute: u32,
    /// Codes per person per local day, whatever the number (429 `sms_daily_limit`).
    #[serde(default = "defaults::sms_per_person_daily")]
    pub sms_per_person_daily: u32,
    /// Codes per client address per hour (429 `sms_too_frequent`).
    #[serde(default = "defaults::sms_per_address_hourly")]
    pub sms_per_address_hourly: u32,
    /// Codes per minute from the whole deployment (429 `sms_too_frequent`).
    #[serde(default = "defaults::sms_global_per_minute")]
    pub sms_global_per_minute: u32,
    /// Failed password checks per client address per hour, across accounts (429 `rate_limited`).
    #[serde(default = "defaults::max_failures_per_address_hourly")]
    pub max_failures_per_address_hourly: u32,
    /// RFC 3339; absent: the legacy enterprise-password login is disabled.
    pub legacy_login_until: Option<String>,
    /// A login from a device (user-agent family and client network) the person has not used
    /// in 90 days sends a `login_notice` to their phone (CONTRACT section 11; default true).
    #[serde(default = "defaults::notify_new_device")]
    pub notify_new_device: bool,
}

impl Default for LoginConfig {
    fn default() -> Self {
        LoginConfig {
            max_password_failures: defaults::max_password_failures(),
            lockout_secs: defaults::lockout_secs(),
            sms_resend_secs: defaults::sms_resend_secs(),
            challenge_ttl_secs: defaults::challenge_ttl_secs(),
            sms_daily_limit: defaults::sms_daily_limit(),
            sms_code_ttl_secs: defaults::sms_code_ttl_secs(),
            sms_max_attempts: defaults::sms_max_attempts(),
            auth_requests_per_minute: defaults::auth_requests_per_minute(),
            sms_per_person_daily: defaults::sms_per_person_daily(),
            sms_per_address_hourly: defaults::sms_per_address_hourly(),
            sms_global_per_minute: defaults::sms_global_per_minute(),
            max_failures_per_address_hourly: defaults::max_failures_per_address_hourly(),
            legacy_login_until: None,
            notify_new_device: defaults::notify_new_device(),
        }
    }
}

impl LoginConfig {
    /// `legacy_login_until` as unix seconds (validated at load, so this cannot fail afterwards).
    pub fn legacy_until_unix(&self) -> Option<i64> {
        self.legacy_login_until
            .as_deref()
            .and_then(|s| parse_rfc3339(s).ok())
    }

    pub(super) fn validate<E>(&self, err: &impl Fn(&str, String) -> E) -> Result<(), E> {
        for (key, value) in [
            ("login.max_password_failures", self.max_password_failures),
            ("login.sms_daily_limit", self.sms_daily_limit),
            ("login.sms_max_attempts", self.sms_max_attempts),
            (
                "login.auth_requests_per_minute",
                self.auth_requests_per_minute,
            ),
            ("login.sms_per_person_daily", self.sms_per_person_daily),
            ("login.sms_per_address_hourly", self.sms_per_address_hourly),
            ("login.sms_global_per_minute", self.sms_global_per_minute),
            (
                "login.max_failures_per_address_hourly",
                self.max_failures_per_address_hourly,
            ),
        ] {
            if value == 0 {
                return Err(err(key, "must be at least 1".into()));
            }
        }
        if let Some(until) = &self.legacy_login_until
            && parse_rfc3339(until).is_err()
        {
            return Err(err(
                "login.legacy_login_until",
                format!("`{until}` is not an RFC 3339 time like `2026-12-31T23:59:59+08:00`"),
            ));
        }
        Ok(())
    }
}

mod defaults {
    pub fn notify_new_device() -> bool {
        true
    }
    pub fn max_password_failures() -> u32 {
        5
    }
    pub fn lockout_secs() -> u64 {
        1800
    }
    pub fn sms_resend_secs() -> u64 {
        60
    }
    pub fn challenge_ttl_secs() -> u64 {
        300
    }
    pub fn sms_daily_limit() -> u32 {
        10
    }
    pub fn sms_code_ttl_secs() -> u64 {
        300
    }
    pub fn sms_max_attempts() -> u32 {
        5
    }
    pub fn auth_requests_per_minute() -> u32 {
        300
    }
    pub fn sms_per_person_daily() -> u32 {
        20
    }
    pub fn sms_per_address_hourly() -> u32 {
        30
    }
    pub fn sms_global_per_minute() -> u32 {
        600
    }
    pub fn max_failures_per_address_hourly() -> u32 {
        100
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{BASE, load};

    #[test]
    fn bad_legacy_until_is_named() {
        let e = load(&format!(
            "{BASE}\n[login]\nlegacy_login_until = \"tomorrow\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "login.legacy_login_until");
    }

    #[test]
    fn login_limits_default_and_refuse_zero() {
        let c = load(BASE).unwrap();
        let l = &c.login;
        assert_eq!(
            (
                l.sms_per_person_daily,
                l.sms_per_address_hourly,
                l.sms_global_per_minute,
                l.max_failures_per_address_hourly
            ),
            (20, 30, 600, 100)
        );
        for key in [
            "sms_per_person_daily",
            "sms_per_address_hourly",
            "sms_global_per_minute",
            "max_failures_per_address_hourly",
        ] {
            let e = load(&format!("{BASE}\n[login]\n{key} = 0\n")).unwrap_err();
            assert_eq!(e.key, format!("login.{key}"));
        }
    }
}
