//! The assertion keys' cryptography, and jsonwebtoken's, backed by aws-lc-rs.
//!
//! The gateway signs assertions itself with a key parsed once at start ([`ParsedKey`],
//! `Assertions::sign`); jsonwebtoken is used to verify them (AuthZEN) and to compute key
//! thumbprints. jsonwebtoken 11 delegates its cryptography to a process-wide `CryptoProvider`;
//! its built-in aws-lc-rs provider would re-parse the PKCS#8 key on every `encode` (a scalar
//! multiplication), and its other one pulls the RustCrypto stack including `rsa`, which we never
//! use. This one does Ed25519 and ECDSA P-256 with fixed-size signatures, which is all an
//! assertion needs. aws-lc-rs rather than ring (the rustls provider here): its Ed25519 signature
//! takes 8 µs on the benchmark machine against ring's 20, and every forwarded request carries one.
//!
//! Keys parsed at start are registered here and looked up by their DER, so a jsonwebtoken
//! `encode` with one of them (tests) does not parse it again; an unregistered key is still parsed
//! (and works), just slowly.

use std::sync::{Arc, RwLock};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, UnparsedPublicKey,
};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result as JwtResult};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature;
use jsonwebtoken::{DecodingKey, EncodingKey};

use super::Algorithm;

/// A private key parsed once, ready to sign.
pub enum ParsedKey {
    /// An EdDSA key.
    Ed25519(Ed25519KeyPair),
    /// An ES256 key, with the random generator its signatures need.
    P256(EcdsaKeyPair, SystemRandom),
}

impl ParsedKey {
    /// Parse a PKCS#8 DER private key for `alg`.
    pub fn parse(der: &[u8], alg: Algorithm) -> Result<ParsedKey, aws_lc_rs::error::KeyRejected> {
        match alg {
            // v1 documents (OpenSSL's) carry no public key; v2 do and are checked.
            Algorithm::EdDSA => {
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map(ParsedKey::Ed25519)
            }
            Algorithm::ES256 => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                .map(|k| ParsedKey::P256(k, SystemRandom::new())),
        }
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            ParsedKey::Ed25519(_) => Algorithm::EdDSA,
            ParsedKey::P256(..) => Algorithm::ES256,
        }
    }

    /// Ed25519: the 32-byte point; P-256: the uncompressed SEC1 point (`04 || x || y`).
    pub fn public_key(&self) -> &[u8] {
        match self {
            ParsedKey::Ed25519(k) => k.public_key().as_ref(),
            ParsedKey::P256(k, _) => k.public_key().as_ref(),
        }
    }

    /// The JWS signature: 64 bytes for both algorithms (ES256 is `r || s`, RFC 7518 §3.4).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        let mut out = Vec::with_capacity(64);
        self.sign_into(message, &mut out)?;
        Ok(out)
    }

    /// [`ParsedKey::sign`], appending the signature to `out`.
    pub fn sign_into(
        &self,
        message: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), aws_lc_rs::error::Unspecified> {
        match self {
            ParsedKey::Ed25519(k) => out.extend_from_slice(k.sign(message).as_ref()),
            ParsedKey::P256(k, rng) => out.extend_from_slice(k.sign(rng, message)?.as_ref()),
        }
        Ok(())
    }
}

/// Keys parsed at start, by their PKCS#8 DER. Append-only: a process holds a handful (the
/// signing key, and in tests one per gateway started).
static PARSED: RwLock<Vec<Registered>> = RwLock::new(Vec::new());

/// A key's PKCS#8 DER and the key parsed from it.
type Registered = (Box<[u8]>, Arc<ParsedKey>);

/// Make `key` (parsed from `der`) the one used whenever jsonwebtoken signs with `der`.
pub fn register(der: &[u8], key: Arc<ParsedKey>) {
    let mut parsed = PARSED.write().unwrap_or_else(|p| p.into_inner());
    if !parsed.iter().any(|(d, _)| **d == *der) {
        parsed.push((der.into(), key));
    }
}

fn lookup(der: &[u8]) -> Option<Arc<ParsedKey>> {
    let parsed = PARSED.read().unwrap_or_else(|p| p.into_inner());
    parsed
        .iter()
        .find(|(d, _)| **d == *der)
        .map(|(_, k)| Arc::clone(k))
}

fn ours(alg: &jsonwebtoken::Algorithm) -> JwtResult<Algorithm> {
    match alg {
        jsonwebtoken::Algorithm::EdDSA => Ok(Algorithm::EdDSA),
        jsonwebtoken::Algorithm::ES256 => Ok(Algorithm::ES256),
        _ => Err(ErrorKind::UnsupportedAlgorithm.into()),
    }
}

fn rejected(alg: Algorithm) -> ErrorKind {
    match alg {
        Algorithm::EdDSA => ErrorKind::InvalidEddsaKey,
        Algorithm::ES256 => ErrorKind::InvalidEcdsaKey,
    }
}

struct Signer(Arc<ParsedKey>);

impl signature::Signer<Vec<u8>> for Signer {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        self.0.sign(msg).map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Signer {
    fn algorithm(&self) -> jsonwebtoken::Algorithm {
        self.0.algorithm().jwt()
    }
}

fn signer_factory(
    alg: &jsonwebtoken::Algorithm,
    key: &EncodingKey,
) -> JwtResult<Box<dyn JwtSigner>> {
    let alg = ours(alg)?;
    let der = key.as_bytes();
    let parsed = match lookup(der) {
        Some(k) => k,
        None => Arc::new(ParsedKey::parse(der, alg).map_err(|_| rejected(alg))?),
    };
    if parsed.algorithm() != alg {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Box::new(Signer(parsed)))
}

struct Verifier(UnparsedPublicKey<Vec<u8>>, Algorithm);

impl signature::Verifier<Vec<u8>> for Verifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        self.0
            .verify(msg, signature)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Verifier {
    fn algorithm(&self) -> jsonwebtoken::Algorithm {
        self.1.jwt()
    }
}

fn verifier_factory(
    alg: &jsonwebtoken::Algorithm,
    key: &DecodingKey,
) -> JwtResult<Box<dyn JwtVerifier>> {
    let ours = ours(alg)?;
    let bytes = key.try_get_as_bytes()?.to_vec();
    let algorithm: &'static dyn aws_lc_rs::signature::VerificationAlgorithm = match ours {
        Algorithm::EdDSA => &ED25519,
        Algorithm::ES256 => &ECDSA_P256_SHA256_FIXED,
    };
    Ok(Box::new(Verifier(
        UnparsedPublicKey::new(algorithm, bytes),
        ours,
    )))
}

fn no_rsa(_: &[u8]) -> JwtResult<(Vec<u8>, Vec<u8>)> {
    Err(ErrorKind::UnsupportedAlgorithm.into())
}

fn ec_components(
    der: &[u8],
    alg: jsonwebtoken::Algorithm,
) -> JwtResult<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    if alg != jsonwebtoken::Algorithm::ES256 {
        return Err(ErrorKind::UnsupportedAlgorithm.into());
    }
    let key = ParsedKey::parse(der, Algorithm::ES256).map_err(|_| ErrorKind::InvalidEcdsaKey)?;
    let (x, y) = split_p256_point(key.public_key()).ok_or(ErrorKind::InvalidEcdsaKey)?;
    Ok((EllipticCurve::P256, x.to_vec(), y.to_vec()))
}

fn ed_components(der: &[u8], curve: &EllipticCurve) -> JwtResult<Vec<u8>> {
    if *curve != EllipticCurve::Ed25519 {
        return Err(ErrorKind::UnsupportedAlgorithm.into());
    }
    let key = ParsedKey::parse(der, Algorithm::EdDSA).map_err(|_| ErrorKind::InvalidEddsaKey)?;
    Ok(key.public_key().to_vec())
}

fn digest(data: &[u8], hash: ThumbprintHash) -> JwtResult<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &aws_lc_rs::digest::SHA256,
        ThumbprintHash::SHA384 => &aws_lc_rs::digest::SHA384,
        ThumbprintHash::SHA512 => &aws_lc_rs::digest::SHA512,
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    Ok(aws_lc_rs::digest::digest(algorithm, data).as_ref().to_vec())
}

/// `04 || x || y` of a P-256 point into `(x, y)`.
pub fn split_p256_point(point: &[u8]) -> Option<(&[u8], &[u8])> {
    match point {
        [4, rest @ ..] if rest.len() == 64 => Some(rest.split_at(32)),
        _ => None,
    }
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory,
    verifier_factory,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: no_rsa,
        rsa_pub_components_from_public_key: no_rsa,
        ec_pub_components_from_private_key: ec_components,
        ed_pub_components_from_private_key: ed_components,
        compute_digest: digest,
    },
};

/// Install this provider as jsonwebtoken's process default (idempotent). Fails only when
/// something else in the process installed another one first.
pub fn install() -> Result<(), String> {
    match PROVIDER.install_default() {
        Ok(()) => Ok(()),
        Err(existing) if std::ptr::eq(existing, &PROVIDER) => Ok(()),
        Err(_) => Err("another jsonwebtoken crypto provider is installed in this process".into()),
    }
}
