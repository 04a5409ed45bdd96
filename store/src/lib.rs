//! taxgate-store: domain records, validated identifiers and the store backends.
//! The only crate of the workspace that names sqlx.

pub mod ids;
pub mod model;

pub use ids::{IdError, IdNumber, Phone, TaxpayerId};
pub use model::*;
