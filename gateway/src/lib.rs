//! taxgate: an authorization gateway for the new e-tax personal login.
//!
//! `proxy` serves connections and forwards; everything tax-specific enters through the
//! `pipeline` it calls: `session` resolves the caller, `authz` decides with the Cedar policies,
//! `audit` records every decision (`shadow` evaluates a candidate set beside the enforced one), and `endpoints` serves the gateway's own API (`authn` login
//! flows) and pages.

pub mod account;
pub mod admin;
pub mod api;
pub mod assertion;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod body;
pub mod config;
pub mod demo;
pub mod endpoints;
pub mod error;
pub mod health;
pub mod janitor;
pub mod metrics;
pub mod pipeline;
pub mod proxy;
pub mod routes;
pub mod run;
pub mod server;
pub mod session;
pub mod shadow;
pub mod web;
