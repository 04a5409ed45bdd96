//! End-to-end tests: the real gateway on loopback, in front of real upstreams.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod account;
mod cli;
mod decisions;
mod login;
mod proxy;
mod trust;
