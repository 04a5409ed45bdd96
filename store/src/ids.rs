//! The validated identifiers, defined in taxgate-model.
pub use taxgate_model::ids::*;
