//! taxgate: an authorization gateway for the new e-tax personal login.
//!
//! `proxy` serves connections and forwards; everything tax-specific enters through the
//! `pipeline` it calls.

pub mod admin;
pub mod body;
pub mod config;
pub mod error;
pub mod metrics;
pub mod pipeline;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod web;
