//! The domain records, defined in taxgate-model.
pub use taxgate_model::model::*;
