//! The records the store reads and writes, defined in taxgate-model; and fresh ids.
pub use taxgate_model::records::*;

/// A fresh random id: 16 bytes as 32 hex characters.
pub fn new_id() -> Result<String, crate::StoreError> {
    let mut buf = [0u8; 16];
    getrandom::fill(&mut buf)
        .map_err(|e| crate::StoreError::Internal(format!("no randomness: {e}")))?;
    Ok(hex::encode(buf))
}
