//! Authentication: credentials and factors, sessions, lockout and limits. Rust establishes the
//! facts here; whether a person may log in for an enterprise is a policy decision (`authz`).

pub mod device;
pub mod face;
pub mod login;
pub mod password_rules;
pub mod ratelimit;
pub mod sms;
pub mod token;
