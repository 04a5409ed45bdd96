//! taxgate-gateway: the tax-specific service behind the proxy. The proxy
//! ([`taxgate_proxy`]) hands every request to [`pipeline::Gateway`]: `routes` picks the route by
//! the canonical path, `session` resolves the caller and its entity slice, the policy crate
//! ([`taxgate_policy`]) decides, `audit` records every decision before anything is forwarded
//! (`shadow` evaluates a candidate set beside the enforced one), and the gateway's own paths go
//! to `endpoints`: the login factors (`authn`), the account centre (`account`) and the pages
//! (`web`). Failures of every layer become answers in one place (`rescue`). `server` and `run`
//! assemble it; `admin` serves the operator's listener. It names neither sqlx (the store crate
//! does) nor cedar-policy (the policy crate does).

pub mod account;
pub mod admin;
pub mod api;
pub mod assertion;
pub mod audit;
pub mod authn;
pub mod config;
pub mod endpoints;
pub mod error;
pub mod ext_authz;
pub mod gate;
pub mod health;
pub mod janitor;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod reload;
pub mod rescue;
pub mod routes;
pub mod run;
pub mod security;
pub mod server;
pub mod session;
pub mod telemetry;
pub use gate::shadow;
pub mod web;
pub mod widening;
