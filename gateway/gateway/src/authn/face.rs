//! Signed callbacks from the mobile-app backend (CONTRACT section 6):
//! `x-taxgate-signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>`,
//! `x-taxgate-timestamp: <unix seconds>`, refused when more than 300 s off.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::ratelimit::RateLimiter;

type HmacSha256 = Hmac<Sha256>;

/// The budgets a face callback is counted against (issue 21 point 11): a callback whose
/// signature verified counts against `signed` (`[face] callbacks_per_minute`), so an app
/// backend is not throttled like a browser; any other counts against the per-address `/auth/*`
/// budget, so an unsigned flood is.
pub struct CallbackBudget<'a> {
    /// The per-address `/auth/*` budget, for callbacks whose signature did not verify.
    pub unsigned: &'a RateLimiter,
    /// The `[face] callbacks_per_minute` budget, for callbacks whose signature verified.
    pub signed: &'a RateLimiter,
}

/// How far a callback's timestamp may be from our clock.
pub const MAX_SKEW_SECS: i64 = 300;

/// Why [`verify`] refused a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The timestamp or the signature header is absent.
    Missing,
    /// The timestamp is not an integer, or the signature is not `sha256=<hex>`.
    Malformed,
    /// The timestamp is more than [`MAX_SKEW_SECS`] from our clock.
    Stale,
    /// The signature is not the HMAC of this timestamp and body.
    Mismatch,
}

/// `sha256=<hex>` over `timestamp.body` with `secret`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC accepts keys of any length; this arm cannot be taken.
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Verify a callback's timestamp window and signature, in constant time.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed)?;
    if (now - ts).abs() > MAX_SKEW_SECS {
        return Err(SignatureError::Stale);
    }
    let hex_sig = signature
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let given = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(timestamp.trim().as_bytes());
    mac.update(b".");
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let body = br#"{"nonce":"n","id_number":"140105199001011238","result":"pass"}"#;
        let sig = sign(b"k", "1000", body);
        assert_eq!(verify(b"k", Some("1000"), Some(&sig), body, 1100), Ok(()));
        assert_eq!(
            verify(b"k", Some("1000"), Some(&sig), body, 1000 + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(b"other", Some("1000"), Some(&sig), body, 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"k", Some("1000"), Some(&sig), b"{}", 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"k", Some("1001"), Some(&sig), body, 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"k", None, Some(&sig), body, 1000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(b"k", Some("1000"), Some("md5=00"), body, 1000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"k", Some("x"), Some(&sig), body, 1000),
            Err(SignatureError::Malformed)
        );
    }
}
