//! Signed identity assertions for upstreams (`x-taxgate-assertion`).
//!
//! The identity headers are only as trustworthy as the network between taxgate and a upstream:
//! anyone who reaches the upstream directly can send `x-taxgate-person`. Every forwarded request
//! therefore also carries a short-lived JWT (compact JWS, EdDSA or ES256) holding the same identity,
//! which the upstream verifies against the JWKS published at `/.well-known/jwks.json`.
//!
//! Keys are parsed once at start, and the JWS header of each key is encoded once: signing a
//! request costs the claims' JSON, one base64 encoding and one signature (see
//! `benches/benches/assertion.rs`).

pub mod provider;

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use jsonwebtoken::Header;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, JwkSet, OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
    ThumbprintHash,
};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use crate::config::UpstreamIdentityConfig;
use crate::session::{HEADER_AGENCY, HEADER_ENTERPRISE, HEADER_ENTRY, HEADER_PERSON, HEADER_ROLE};
use provider::ParsedKey;

/// The request header carrying the assertion.
pub static HEADER_ASSERTION: HeaderName = HeaderName::from_static("x-taxgate-assertion");

/// The path of the public keys, on the admin listener (and the public one when configured).
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// A JWS algorithm taxgate signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Algorithm {
    /// Ed25519 (RFC 8037).
    EdDSA,
    /// ECDSA P-256 with SHA-256 (RFC 7518 §3.4).
    ES256,
}

impl Algorithm {
    /// The JWS `alg` name (`EdDSA`, `ES256`), as in the config and the JWKS.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::EdDSA => "EdDSA",
            Algorithm::ES256 => "ES256",
        }
    }

    /// The same algorithm as jsonwebtoken names it.
    pub fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "EdDSA" => Ok(Algorithm::EdDSA),
            "ES256" => Ok(Algorithm::ES256),
            other => Err(format!("`{other}` is not `EdDSA` or `ES256`")),
        }
    }
}

/// Why a signing key could not be loaded, generated or written. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cannot read `{path}`: {reason}")]
    Read {
        /// The file, as given.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The file is not a PEM PKCS#8 private key (a PKCS#1 or SEC1 PEM included).
    #[error(
        "`{path}` holds no PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`): {reason}; \
         convert one with `openssl pkcs8 -topk8 -nocrypt -in OLD -out NEW`"
    )]
    NotPkcs8 {
        /// The file, as given.
        path: String,
        /// What the PEM holds instead, or why it does not parse.
        reason: String,
    },
    /// The key is not a valid key for the algorithm the config names.
    #[error("`{path}` is not a valid {algorithm} private key: {reason}")]
    Rejected {
        /// The file, as given (or `(generated key)`).
        path: String,
        /// The algorithm asked for.
        algorithm: Algorithm,
        /// ring's reason for rejecting the key.
        reason: String,
    },
    /// No algorithm was named and the key is neither Ed25519 nor P-256.
    #[error(
        "`{path}` is neither an Ed25519 nor a P-256 private key (RSA and other curves are not supported)"
    )]
    Unsupported {
        /// The file, as given.
        path: String,
    },
    /// The target file exists and replacing it was not asked for (`--force`).
    #[error("`{path}` already exists; pass --force to replace it")]
    Exists {
        /// The file, as given.
        path: String,
    },
    /// The new key, or its directory, could not be written.
    #[error("cannot write `{path}`: {reason}")]
    Write {
        /// The file, as given.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The crypto layer failed: provider install, key id, or the random generator.
    #[error("{0}")]
    Crypto(String),
}

/// A signing key, parsed and registered. `Debug` shows the kid and algorithm only.
pub struct Key {
    algorithm: Algorithm,
    kid: String,
    jwk: Jwk,
    signer: Arc<ParsedKey>,
    /// The compact JWS's first part and its dot: `base64url(header JSON) "."`.
    prefix: String,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// Read a PKCS#8 PEM private key; the algorithm is inferred when `algorithm` is `None`.
    pub fn load(path: &Path, algorithm: Option<Algorithm>) -> Result<Key, KeyError> {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|e| KeyError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let der = match PrivateKeyDer::from_pem_slice(&pem) {
            Ok(PrivateKeyDer::Pkcs8(der)) => der,
            Ok(_) => {
                return Err(KeyError::NotPkcs8 {
                    path: shown,
                    reason: "it is a PKCS#1 or SEC1 key".into(),
                });
            }
            Err(e) => {
                return Err(KeyError::NotPkcs8 {
                    path: shown,
                    reason: e.to_string(),
                });
            }
        };
        Key::from_pkcs8_der(der.secret_pkcs8_der(), algorithm, &shown)
    }

    /// Parse PKCS#8 DER; `shown` names the key's origin in errors.
    pub fn from_pkcs8_der(
        der: &[u8],
        algorithm: Option<Algorithm>,
        shown: &str,
    ) -> Result<Key, KeyError> {
        provider::install().map_err(KeyError::Crypto)?;
        let parsed = match algorithm {
            Some(alg) => ParsedKey::parse(der, alg).map_err(|e| KeyError::Rejected {
                path: shown.to_string(),
                algorithm: alg,
                reason: e.to_string(),
            })?,
            None => ParsedKey::parse(der, Algorithm::EdDSA)
                .or_else(|_| ParsedKey::parse(der, Algorithm::ES256))
                .map_err(|_| KeyError::Unsupported {
                    path: shown.to_string(),
                })?,
        };
        let algorithm = parsed.algorithm();
        let mut jwk = public_jwk(&parsed).ok_or_else(|| KeyError::Unsupported {
            path: shown.to_string(),
        })?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| KeyError::Crypto(format!("cannot compute the key id: {e}")))?;
        jwk.common.key_id = Some(kid.clone());
        let signer = Arc::new(parsed);
        provider::register(der, Arc::clone(&signer));
        let mut header = Header::new(algorithm.jwt());
        header.kid = Some(kid.clone());
        let header = serde_json::to_vec(&header)
            .map_err(|e| KeyError::Crypto(format!("cannot serialise the JWS header: {e}")))?;
        let mut prefix = URL_SAFE_NO_PAD.encode(header);
        prefix.push('.');
        Ok(Key {
            algorithm,
            kid,
            jwk,
            signer,
            prefix,
        })
    }

    /// A fresh key pair: the key and its PKCS#8 PEM.
    pub fn generate(algorithm: Algorithm) -> Result<(Key, Secret), KeyError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let document = match algorithm {
            Algorithm::EdDSA => aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng),
            Algorithm::ES256 => aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &rng,
            ),
        }
        .map_err(|_| KeyError::Crypto("the system random generator failed".into()))?;
        let der = document.as_ref();
        let key = Key::from_pkcs8_der(der, Some(algorithm), "(generated key)")?;
        Ok((key, Secret(pem("PRIVATE KEY", der))))
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// RFC 7638 thumbprint (SHA-256, base64url) of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (`kid`, `use: "sig"`, `alg`).
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }
}

/// Private key material: no `Debug`, no `Display`.
pub struct Secret(String);

impl Secret {
    /// The PEM text, for writing to the key file only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

fn public_jwk(key: &ParsedKey) -> Option<Jwk> {
    let public = key.public_key();
    let (algorithm, alg) = match key {
        ParsedKey::Ed25519(_) => (
            AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: URL_SAFE_NO_PAD.encode(public),
            }),
            Algorithm::EdDSA,
        ),
        ParsedKey::P256(..) => {
            let (x, y) = provider::split_p256_point(public)?;
            (
                AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                    key_type: EllipticCurveKeyType::EC,
                    curve: EllipticCurve::P256,
                    x: URL_SAFE_NO_PAD.encode(x),
                    y: URL_SAFE_NO_PAD.encode(y),
                }),
                Algorithm::ES256,
            )
        }
    };
    Some(Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(alg.jwt().into()),
            ..Default::default()
        },
        algorithm,
    })
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Write a new private key to `path` (mode 0600), refusing to replace an existing file unless
/// `force`. A forced write goes through a temporary file and a rename, so a crash never leaves
/// a half-written key.
pub fn write_new_key(path: &Path, algorithm: Algorithm, force: bool) -> Result<Key, KeyError> {
    let shown = path.display().to_string();
    let write_err = |e: std::io::Error| KeyError::Write {
        path: shown.clone(),
        reason: e.to_string(),
    };
    if !force && path.exists() {
        return Err(KeyError::Exists { path: shown });
    }
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(write_err)?;
    }
    let (key, secret) = Key::generate(algorithm)?;
    let target = if force {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::path::PathBuf::from(tmp)
    } else {
        path.to_path_buf()
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&target).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists && !force {
            KeyError::Exists {
                path: shown.clone(),
            }
        } else {
            write_err(e)
        }
    })?;
    file.write_all(secret.expose().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_err)?;
    if force {
        std::fs::rename(&target, path).map_err(write_err)?;
    }
    Ok(key)
}

/// The claims of one assertion. Identity claims are absent exactly when the matching
/// `x-taxgate-*` header is.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims<'a> {
    /// Issuer: `[upstream_identity] issuer`.
    pub iss: &'a str,
    /// Audience: the name of the upstream the request goes to.
    pub aud: &'a str,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expiry, unix seconds: `iat` plus `[upstream_identity] ttl_secs`.
    pub exp: i64,
    /// Unique per assertion: a random per-process prefix and a counter.
    pub jti: &'a str,
    /// `x-taxgate-person`: the person's ID number.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub person: Option<&'a str>,
    /// `x-taxgate-enterprise`: the taxpayer id acted for.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub enterprise: Option<&'a str>,
    /// `x-taxgate-role`: the role in that enterprise.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub role: Option<&'a str>,
    /// `x-taxgate-entry`: the login entry of the session.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub entry: Option<&'a str>,
    /// `x-taxgate-agency`: the tax-service agency acting, for an agent.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agency: Option<&'a str>,
    /// `x-taxgate-decision`: the id of the audit record of the decision that let the request
    /// through.
    pub decision: &'a str,
    /// Version of the policy set that decided.
    pub policy_version: &'a str,
    /// The public id of the session the request came with (not a credential): what an AuthZEN
    /// evaluation re-reads to check the session is still live.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sid: Option<&'a str>,
}

/// The claims of an assertion that verified ([`Assertions::verify`]).
#[derive(Debug, Deserialize)]
pub struct Verified {
    /// The audience it was issued for (an upstream's name).
    pub aud: String,
    /// The decision that let the request through.
    pub decision: String,
    /// The session's public id; absent in assertions made before it was added.
    #[serde(default)]
    pub sid: Option<String>,
    /// `x-taxgate-person`.
    #[serde(default)]
    pub person: Option<String>,
    /// `x-taxgate-enterprise`.
    #[serde(default)]
    pub enterprise: Option<String>,
}

/// An assertion that does not verify: bad form, unknown key, bad signature, other issuer,
/// expired. Only the kind is said; the token is never logged.
#[derive(Debug, thiserror::Error)]
#[error("the identity assertion does not verify: {0}")]
pub struct VerifyError(String);

/// The JWKS could not be built, the random generator failed, or a token could not be signed; the
/// gateway then refuses the request (fail closed).
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the identity assertion: {0}")]
pub struct SignError(String);

/// The keys in force: the one that signs, the ones only published (the configured
/// `previous_key`, and a key a reload retired), and the JWKS of them all.
pub struct KeySet {
    key: Key,
    published: Vec<Jwk>,
    jwks: Bytes,
}

impl KeySet {
    fn new(key: Key, published: Vec<Jwk>) -> Result<KeySet, SignError> {
        let mut keys = vec![key.jwk.clone()];
        for jwk in &published {
            if jwk.common.key_id != key.jwk.common.key_id
                && !keys.iter().any(|k| k.common.key_id == jwk.common.key_id)
            {
                keys.push(jwk.clone());
            }
        }
        let jwks = serde_json::to_vec(&JwkSet { keys: keys.clone() })
            .map_err(|e| SignError(format!("cannot serialise the JWKS: {e}")))?;
        Ok(KeySet {
            key,
            published: keys.into_iter().skip(1).collect(),
            jwks: Bytes::from(jwks),
        })
    }

    /// The key that signs.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The key ids published beside the signing key (never used to sign).
    pub fn previous_kids(&self) -> Vec<&str> {
        self.published
            .iter()
            .filter_map(|j| j.common.key_id.as_deref())
            .collect()
    }
}

/// Signs assertions with the current key and serves the JWKS (current and previous keys). The
/// keys can be reloaded while requests are signed ([`Assertions::reload`]).
pub struct Assertions {
    keys: arc_swap::ArcSwap<KeySet>,
    issuer: String,
    ttl_secs: i64,
    /// Unique `jti`s without a system call per request: a random per-process prefix and a counter.
    jti_prefix: String,
    jti_counter: AtomicU64,
}

impl fmt::Debug for Assertions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assertions")
            .field("key", &self.keys.load().key)
            .field("issuer", &self.issuer)
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl Assertions {
    /// A signer for `issuer` whose assertions live `ttl_secs`. `previous` is published in the JWKS
    /// beside `key` (unless it is the same key) but never signs.
    pub fn new(
        key: Key,
        previous: Option<Key>,
        issuer: &str,
        ttl_secs: u64,
    ) -> Result<Assertions, SignError> {
        let keys = KeySet::new(key, previous.map(|p| p.jwk).into_iter().collect())?;
        let mut prefix = [0u8; 9];
        getrandom::fill(&mut prefix)
            .map_err(|e| SignError(format!("the system random generator failed: {e}")))?;
        Ok(Assertions {
            keys: arc_swap::ArcSwap::from_pointee(keys),
            issuer: issuer.to_string(),
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX),
            jti_prefix: URL_SAFE_NO_PAD.encode(prefix),
            jti_counter: AtomicU64::new(0),
        })
    }

    /// Load the keys named by `[upstream_identity]`; errors carry the config key at fault.
    pub fn from_config(config: &UpstreamIdentityConfig) -> Result<Assertions, (String, String)> {
        let (key, previous) = load_keys(config)?;
        Assertions::new(key, previous, &config.issuer, config.ttl_secs)
            .map_err(|e| ("upstream_identity".to_string(), e.to_string()))
    }

    /// Read the key files of `[upstream_identity]` again (SIGHUP, `POST /admin/reload`). The
    /// new signing key signs from the next request on. A signing key that changed is kept in
    /// the JWKS as a previous key until the next reload that changes it again, so assertions
    /// it signed still verify while they live; `previous_key`, when configured, stays
    /// published too. On any error nothing changes. Returns the keys now in force.
    pub fn reload(&self, config: &UpstreamIdentityConfig) -> Result<Arc<KeySet>, (String, String)> {
        let (key, previous) = load_keys(config)?;
        let current = self.keys.load_full();
        let mut published: Vec<Jwk> = previous.map(|p| p.jwk).into_iter().collect();
        if key.kid != current.key.kid {
            published.push(current.key.jwk.clone());
        } else {
            published.extend(current.published.iter().cloned());
        }
        let fresh = Arc::new(
            KeySet::new(key, published)
                .map_err(|e| ("upstream_identity".to_string(), e.to_string()))?,
        );
        self.keys.store(fresh.clone());
        Ok(fresh)
    }

    /// The keys in force now.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// `{"keys": [...]}`: the signing key first, then the previous ones.
    pub fn jwks(&self) -> Bytes {
        self.keys.load().jwks.clone()
    }

    /// The assertion for one forwarded request, from the identity headers the request carries.
    pub fn sign(
        &self,
        identity: &[(HeaderName, HeaderValue)],
        decision: &str,
        policy_version: &str,
        audience: &str,
        now: i64,
    ) -> Result<HeaderValue, SignError> {
        self.sign_claims(identity, None, decision, policy_version, audience, now)
    }

    /// [`Assertions::sign`], also naming the session (`sid`) so that the assertion can be asked
    /// about later (AuthZEN, CONTRACT section 9).
    pub fn sign_for_session(
        &self,
        identity: &[(HeaderName, HeaderValue)],
        session: &str,
        decision: &str,
        policy_version: &str,
        audience: &str,
        now: i64,
    ) -> Result<HeaderValue, SignError> {
        self.sign_claims(
            identity,
            Some(session),
            decision,
            policy_version,
            audience,
            now,
        )
    }

    /// Verify an assertion this gateway signed (with its current or previous key, for its
    /// issuer, not expired), whatever its audience.
    pub fn verify(&self, token: &str) -> Result<Verified, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| VerifyError(e.to_string()))?;
        // The signing key or one the JWKS still publishes (a key retired by a reload): the
        // algorithm follows from the key's type, never from the token's header.
        let keys = self.keys.load();
        let jwk = std::iter::once(&keys.key.jwk)
            .chain(keys.published.iter())
            .find(|j| header.kid.is_some() && j.common.key_id == header.kid)
            .ok_or_else(|| VerifyError("unknown key id".into()))?;
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
            AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
            _ => return Err(VerifyError("unsupported key type".into())),
        };
        let decoding =
            jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| VerifyError(e.to_string()))?;
        let mut validation = jsonwebtoken::Validation::new(algorithm.jwt());
        validation.set_issuer(&[&self.issuer]);
        validation.validate_aud = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        jsonwebtoken::decode::<Verified>(token, &decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| VerifyError(e.to_string()))
    }

    fn sign_claims(
        &self,
        identity: &[(HeaderName, HeaderValue)],
        sid: Option<&str>,
        decision: &str,
        policy_version: &str,
        audience: &str,
        now: i64,
    ) -> Result<HeaderValue, SignError> {
        let n = self.jti_counter.fetch_add(1, Ordering::Relaxed);
        let jti = format!("{}{n:x}", self.jti_prefix);
        let mut claims = Claims {
            iss: &self.issuer,
            aud: audience,
            iat: now,
            exp: now.saturating_add(self.ttl_secs),
            jti: &jti,
            person: None,
            enterprise: None,
            role: None,
            entry: None,
            agency: None,
            decision,
            policy_version,
            sid,
        };
        for (name, value) in identity {
            let Ok(value) = value.to_str() else { continue };
            let slot = if name == HEADER_PERSON {
                &mut claims.person
            } else if name == HEADER_ENTERPRISE {
                &mut claims.enterprise
            } else if name == HEADER_ROLE {
                &mut claims.role
            } else if name == HEADER_ENTRY {
                &mut claims.entry
            } else if name == HEADER_AGENCY {
                &mut claims.agency
            } else {
                continue;
            };
            *slot = Some(value);
        }
        let keys = self.keys.load();
        let key = &keys.key;
        let body = serde_json::to_vec(&claims).map_err(|e| SignError(e.to_string()))?;
        // RFC 7515 §7.1: header "." payload, signed as ASCII, then "." signature.
        let mut token = String::with_capacity(key.prefix.len() + body.len() * 4 / 3 + 92);
        token.push_str(&key.prefix);
        URL_SAFE_NO_PAD.encode_string(&body, &mut token);
        let mut signature = Vec::with_capacity(64);
        key.signer
            .sign_into(token.as_bytes(), &mut signature)
            .map_err(|_| SignError("the signature failed".into()))?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        HeaderValue::try_from(token).map_err(|e| SignError(e.to_string()))
    }
}

/// The signing key and the configured previous key of `[upstream_identity]`.
fn load_keys(config: &UpstreamIdentityConfig) -> Result<(Key, Option<Key>), (String, String)> {
    let key = Key::load(&config.signing_key, config.algorithm)
        .map_err(|e| ("upstream_identity.signing_key".to_string(), e.to_string()))?;
    let previous = match &config.previous_key {
        Some(path) => Some(
            Key::load(path, None)
                .map_err(|e| ("upstream_identity.previous_key".to_string(), e.to_string()))?,
        ),
        None => None,
    };
    Ok((key, previous))
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests fail loudly")]
mod tests;
