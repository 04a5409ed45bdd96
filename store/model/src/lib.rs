//! taxgate-model: the domain every layer speaks — people, enterprises, bindings, sessions and
//! their slices, the validated identifiers (ID number, unified social credit code, phone), and
//! the records the store reads and writes. Plain data with serde; no I/O, no async runtime, so
//! the policy crate can build entity slices from it without pulling in the store's drivers.

#![deny(
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unreachable,
    clippy::allow_attributes_without_reason,
    missing_docs
)]

pub mod ids;
pub mod model;
pub mod records;

pub use ids::{IdError, IdNumber, Phone, TaxpayerId};
pub use model::*;
pub use records::*;
