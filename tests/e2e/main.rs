//! End-to-end tests: the real gateway on loopback, in front of real upstreams.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod account;
mod adversarial;
mod audit_walk;
mod browser;
mod cli;
mod decisions;
mod docs;
mod escalation;
mod ext_authz;
mod faults;
mod hostile;
mod login;
mod multi;
mod openapi;
mod personnel_update;
mod policy_safety;
mod proxy;
mod races;
mod recovery;
mod reload;
mod reset;
mod sessions;
mod slow_upload;
mod stepup;
mod telemetry;
mod trust;
