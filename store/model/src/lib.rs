//! taxgate-model: the domain every layer speaks — people, enterprises, bindings, sessions and
//! their slices, the validated identifiers (ID number, unified social credit code, phone), and
//! the records the store reads and writes. Plain data with serde; no I/O, no async runtime, so
//! the policy crate can build entity slices from it without pulling in the store's drivers.

pub mod ids;
pub mod model;
pub mod records;

pub use ids::{IdError, IdNumber, Phone, TaxpayerId};
pub use model::*;
pub use records::*;
