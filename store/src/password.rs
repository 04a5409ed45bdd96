//! Password hashing: argon2id at OWASP's minimum (m = 19456 KiB, t = 2, p = 1). These are pure,
//! CPU-heavy functions (~10 ms each): call them on a blocking pool, never on an async worker.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::model::Secret;

/// argon2id memory cost in KiB.
pub const M_COST: u32 = 19_456;
/// argon2id iterations.
pub const T_COST: u32 = 2;
/// argon2id lanes.
pub const P_COST: u32 = 1;

/// Why a password could not be hashed (only a broken random source can cause it).
#[derive(Debug, thiserror::Error)]
#[error("cannot hash password: {0}")]
pub struct HashError(String);

fn hasher() -> Result<Argon2<'static>, HashError> {
    let params = Params::new(M_COST, T_COST, P_COST, None).map_err(|e| HashError(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hash a password with a fresh random salt into a PHC string (`$argon2id$v=19$m=19456,…`).
pub fn hash_password(password: &str) -> Result<Secret, HashError> {
    let hash = hasher()?
        .hash_password(password.as_bytes())
        .map_err(|e| HashError(e.to_string()))?;
    Ok(Secret(hash.to_string()))
}

/// True when `password` matches the PHC string. A malformed hash never matches. The parameters
/// come from the hash itself, so hashes made with older parameters keep working.
pub fn verify_password(hash: &Secret, password: &str) -> bool {
    let Ok(h) = hasher() else {
        return false;
    };
    h.verify_password(password.as_bytes(), hash.expose())
        .is_ok()
}

static DUMMY: LazyLock<Secret> = LazyLock::new(|| {
    // A hash of a random password nobody knows; if hashing is impossible the verify below
    // fails fast, which is no worse than refusing.
    let mut pw = [0u8; 16];
    let _ = getrandom::fill(&mut pw);
    hash_password(&hex::encode(pw)).unwrap_or_else(|_| Secret(String::new()))
});

/// A valid hash with the real parameters, to verify against when the account is unknown so the
/// answer takes as long as for a wrong password (no account enumeration by timing).
pub fn dummy_hash() -> &'static Secret {
    &DUMMY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("Chang3-Me!now").unwrap();
        assert!(h.expose().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password(&h, "Chang3-Me!now"));
        assert!(!verify_password(&h, "chang3-Me!now"));
        assert!(!verify_password(&Secret("garbage".into()), "x"));
        assert_ne!(h, hash_password("Chang3-Me!now").unwrap(), "salted");
        assert!(!format!("{h:?}").contains("argon2"));
    }

    #[test]
    fn dummy_hash_is_real_and_matches_nothing_known() {
        let d = dummy_hash();
        assert!(d.expose().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(!verify_password(d, ""));
        assert!(std::ptr::eq(d, dummy_hash()));
    }
}
