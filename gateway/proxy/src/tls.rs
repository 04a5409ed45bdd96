//! rustls configuration from PEM files: the public listener's server side (ALPN h2 and
//! http/1.1) and the client side towards `https://` upstreams (CA, mutual TLS).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why a TLS configuration could not be built from the configured files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate file is unreadable, not PEM, or holds no certificate.
    #[error("cannot read certificates from `{path}`: {reason}")]
    Cert {
        /// The file named in the configuration.
        path: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A private key file is unreadable or holds no usable key.
    #[error("cannot read a private key from `{path}`: {reason}")]
    Key {
        /// The file named in the configuration.
        path: String,
        /// What was wrong with it.
        reason: String,
    },
    /// rustls refused to build a configuration from them (e.g. key and certificate differ).
    #[error("the certificate and key do not form a valid TLS configuration: {0}")]
    Config(String),
}

/// The process-wide crypto provider: ring, chosen explicitly so that no other provider pulled in
/// by a dependency can make rustls refuse to pick one at run time.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The public listener's TLS acceptor: the certificate chain and key from PEM files, ALPN `h2`
/// then `http/1.1`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs = read_certs(cert)?;
    let key = read_key(key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A listener's TLS acceptor that requires a client certificate chaining to `client_ca` (mutual
/// TLS, for callers on another host), ALPN `h2` then `http/1.1`.
pub fn mutual_acceptor(cert: &Path, key: &Path, client_ca: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs = read_certs(cert)?;
    let key = read_key(key)?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in read_certs(client_ca)? {
        roots.add(ca).map_err(|e| TlsError::Cert {
            path: client_ca.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The public listener's certificate, swappable while it serves: handshakes that begin after a
/// [`CertResolver::reload`] get the new certificate, those already under way finish with the
/// old one. A reload that fails leaves the current certificate in place.
pub struct CertResolver {
    current: arc_swap::ArcSwap<rustls::sign::CertifiedKey>,
}

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertResolver").finish_non_exhaustive()
    }
}

impl CertResolver {
    /// The certificate chain and key from PEM files, checked to belong together.
    pub fn load(cert: &Path, key: &Path) -> Result<CertResolver, TlsError> {
        Ok(CertResolver {
            current: arc_swap::ArcSwap::from_pointee(certified_key(cert, key)?),
        })
    }

    /// Read the files again and serve the new certificate from the next handshake on; on any
    /// error the current one stays.
    pub fn reload(&self, cert: &Path, key: &Path) -> Result<(), TlsError> {
        let fresh = certified_key(cert, key)?;
        self.current.store(Arc::new(fresh));
        Ok(())
    }
}

impl rustls::server::ResolvesServerCert for CertResolver {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn certified_key(cert: &Path, key: &Path) -> Result<rustls::sign::CertifiedKey, TlsError> {
    let certs = read_certs(cert)?;
    let key = read_key(key)?;
    rustls::sign::CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| TlsError::Config(e.to_string()))
}

/// The public listener's TLS acceptor over a [`CertResolver`] (ALPN `h2` then `http/1.1`), so
/// that the certificate can be renewed without a restart.
pub fn reloadable_acceptor(resolver: Arc<CertResolver>) -> Result<TlsAcceptor, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// rustls client configuration for one `https://` upstream: the server's certificate must chain
/// to `ca` (or the webpki roots when absent), a client certificate is presented when `cert` and
/// `key` are given (mutual TLS), and ALPN offers http/1.1 only (the upstream leg is HTTP/1.1).
pub fn client_config(
    ca: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(ca) => {
            for cert in read_certs(ca)? {
                roots.add(cert).map_err(|e| TlsError::Cert {
                    path: ca.display().to_string(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => {
            let chain = read_certs(cert)?;
            let key = read_key(key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Config(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: path.display().to_string(),
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}
