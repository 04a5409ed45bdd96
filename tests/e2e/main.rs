//! End-to-end tests: the real gateway on loopback, in front of real upstreams.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod account;
mod adversarial;
mod audit_walk;
mod browser;
mod cli;
mod decisions;
mod escalation;
mod faults;
mod hostile;
mod login;
mod multi;
mod policy_safety;
mod proxy;
mod races;
mod recovery;
mod reload;
mod slow_upload;
mod telemetry;
mod trust;
