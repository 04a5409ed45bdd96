//! taxgate-store: domain records, validated identifiers and the store backends.
//! The only crate of the workspace that names sqlx.
//!
//! - [`Store`]: the storage trait (domain verbs), implemented by [`SqliteStore`], [`PgStore`]
//!   and [`AnyStore`] (chosen by URL: `sqlite://path`, `sqlite::memory:`, `postgres://…`).
//! - [`password`]: argon2id hashing. [`seed`]: the `taxgate import` seed file.

mod any;
pub mod bus;
mod decode;
pub mod error;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod ids;
pub mod model;
pub mod password;
pub mod postgres;
pub mod records;
pub mod seed;
mod sql_impl;
pub mod sqlite;
pub mod store_api;

pub use any::AnyStore;
pub use bus::{InvalidationBus, InvalidationHook};
pub use error::StoreError;
pub use ids::{IdError, IdNumber, Phone, TaxpayerId};
pub use model::*;
pub use postgres::PgStore;
pub use records::*;
pub use seed::{ImportError, ImportSummary, RowError, SeedFileCheck, check_seed_file, import_seed};
pub use sqlite::SqliteStore;
pub use store_api::{SessionIdentity, Store, StoreResult};
