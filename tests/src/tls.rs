//! Test certificates (a CA that issues leaves as PEM files), rustls server configs for TLS
//! upstreams, and an HTTP/2-over-TLS client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::client::{Answer, TestBody, read};

/// A CA and a leaf certificate for `localhost` / 127.0.0.1, as PEM files in `dir`.
pub struct TestPki {
    pub ca_der: rustls::pki_types::CertificateDer<'static>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn test_pki(dir: &Path) -> TestPki {
    let ca = self_signed_ca("taxgate test CA");
    let (cert, key) = issue_leaf(&ca, dir, "gw", &["localhost", "127.0.0.1"]);
    TestPki {
        ca_der: ca.der().clone(),
        cert,
        key,
    }
}

/// A CA certificate and its key, able to sign leaves.
type Issuer = rcgen::CertifiedIssuer<'static, rcgen::KeyPair>;

/// A fresh self-signed CA whose common name is `name`.
fn self_signed_ca(name: &str) -> Issuer {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    rcgen::CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf for `names` signed by `issuer`, written as `<stem>.pem` and `<stem>.key` in `dir`.
fn issue_leaf(issuer: &Issuer, dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    let (c, k) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// An HTTP/2 request over TLS (ALPN h2) trusting `ca`.
pub async fn send_h2_tls(
    addr: SocketAddr,
    ca: &rustls::pki_types::CertificateDer<'static>,
    req: Request<TestBody>,
) -> Answer {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    send_h2_over(tls, req).await
}

/// An HTTP/2 request over `io`, a connection already made (TCP for h2c, TLS for h2).
pub async fn send_h2_over<IO>(io: IO, req: Request<TestBody>) -> Answer
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    read(resp).await
}

/// A certificate authority for tests, writing PEM files into a directory.
pub struct TestCa {
    issuer: Issuer,
    /// The CA certificate as a PEM file.
    pub pem: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let issuer = self_signed_ca(name);
        let pem = dir.join(format!("{name}.ca.pem"));
        std::fs::write(&pem, issuer.pem()).unwrap();
        TestCa { issuer, pem }
    }

    pub fn der(&self) -> rustls::pki_types::CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A leaf for `names` (server and client use), written as `<stem>.pem` and `<stem>.key`.
    pub fn issue(&self, dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        issue_leaf(&self.issuer, dir, stem, names)
    }
}

/// A rustls server config with `cert`/`key`, requiring client certificates from `client_ca`
/// when given.
pub fn tls_server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&TestCa>,
) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}
