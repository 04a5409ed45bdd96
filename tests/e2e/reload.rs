//! Issue 20: routine changes without a restart. `POST /admin/reload` and SIGHUP reload the
//! assertion keys (rotation) and the TLS certificate (renewal) while requests are in flight;
//! a broken file keeps what was in force and is reported.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use jwt_simple::prelude::*;
use serde_json::Value;

use taxgate_e2e::{
    Env, Gateway, ServeChild, TestBody, TestCa, Upstream, config_text, empty, get, read, seed_json,
    try_send, unix_now,
};
use taxgate_gateway::assertion::{Algorithm, write_new_key};

const IN_FLIGHT: usize = 200;

async fn post_admin(admin: SocketAddr, path: &str) -> Value {
    let req = Request::post(path).body(empty()).unwrap();
    let a = try_send(admin, req).await.unwrap();
    assert_eq!(a.status, StatusCode::OK, "{path}");
    a.json()
}

async fn jwks_kids(admin: SocketAddr) -> Vec<String> {
    let a = get(admin, "/.well-known/jwks.json").await;
    assert_eq!(a.status, StatusCode::OK);
    a.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

fn kid_of(assertion: &str) -> String {
    Token::decode_metadata(assertion)
        .unwrap()
        .key_id()
        .unwrap()
        .to_string()
}

async fn metric(admin: SocketAddr, name: &str) -> u64 {
    let a = get(admin, "/metrics").await;
    let text = String::from_utf8_lossy(&a.body).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// `IN_FLIGHT` clients sending requests made by `make` on fresh connections until stopped;
/// each answer's status is checked by the caller through the returned counters.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start<F, Fut>(send: F) -> Load
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<StatusCode, String>> + Send,
    {
        let send = Arc::new(send);
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = (0..IN_FLIGHT)
            .map(|_| {
                let (send, stop, ok, failed) =
                    (send.clone(), stop.clone(), ok.clone(), failed.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match send().await {
                            Ok(StatusCode::OK) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(status) => failed.lock().unwrap().push(status.to_string()),
                            Err(e) => failed.lock().unwrap().push(e),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    /// Wait until at least `n` more requests were answered 200.
    async fn answered(&self, n: u64) {
        let target = self.ok.load(Ordering::Relaxed) + n;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.ok.load(Ordering::Relaxed) < target {
            assert!(std::time::Instant::now() < deadline, "load stalled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assertion_keys_rotate_under_load_and_a_broken_key_keeps_the_old_one() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("assertion.pem");
    write_new_key(&key, Algorithm::EdDSA, false).unwrap();
    // The per-address connection cap is for clients; this one test client opens hundreds.
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let text = config_text(
        dir.path(),
        &up.url(),
        &format!("[upstream_identity]\nsigning_key = \"{}\"\n", key.display()),
    )
    .replacen(
        "shutdown_grace_secs = 5\n",
        "shutdown_grace_secs = 5\nmax_connections_per_address = 0\n",
        1,
    );
    let gw = Gateway::start(&text, dir.path()).await;
    taxgate_store::import_seed(&gw.core.store, &seed_json().to_string(), unix_now())
        .await
        .unwrap();
    let mut env = Env { dir, gw, up };
    let (token, _) = env.login_wang().await;
    let (public, admin) = (env.gw.public, env.gw.admin);
    let old_kids = jwks_kids(admin).await;
    assert_eq!(old_kids.len(), 1);
    let old = old_kids[0].clone();

    let cookie = format!("taxgate_session={token}");
    let load = Load::start(move || {
        let req = Request::get("/api/declare/load")
            .header("host", "gw.test")
            .header("cookie", cookie.clone())
            .body(empty())
            .unwrap();
        async move {
            try_send(public, req)
                .await
                .map(|a| a.status)
                .map_err(|e| format!("{e:?}"))
        }
    });
    load.answered(300).await;

    // Rotation: the new key replaces the file (atomically), then a reload.
    write_new_key(&key, Algorithm::ES256, true).unwrap();
    let status = post_admin(admin, "/admin/reload").await;
    assert_eq!(status["ok"], true, "{status}");
    let new = status["assertion_keys"]["kid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new, old);
    assert_eq!(
        status["assertion_keys"]["previous_kids"],
        serde_json::json!([old])
    );
    assert!(status["assertion_keys"]["last_error"].is_null());
    assert_eq!(jwks_kids(admin).await, [new.clone(), old.clone()]);
    load.answered(300).await;

    // A broken key file: refused, the new key stays in force, reported three ways.
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let status = post_admin(admin, "/admin/reload").await;
    assert_eq!(status["ok"], false, "{status}");
    assert_eq!(status["assertion_keys"]["kid"], new.as_str());
    let error = status["assertion_keys"]["last_error"].as_str().unwrap();
    assert!(
        error.starts_with("upstream_identity.signing_key"),
        "{error}"
    );
    assert_eq!(
        metric(admin, "taxgate_assertion_key_reload_failures_total").await,
        1
    );
    assert_eq!(
        metric(admin, "taxgate_assertion_keys_last_reload_failed").await,
        1
    );
    load.answered(300).await;

    let (ok, failed) = load.finish().await;
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        ok,
        &failed[..failed.len().min(5)]
    );

    // Every assertion the upstream saw was signed by the old key before the rotation and the
    // new one after it, never by anything else; the last ones by the new key.
    let mut kids = Vec::new();
    while let Ok(seen) = env.up.seen.try_recv() {
        kids.push(kid_of(seen.header("x-taxgate-assertion").unwrap()));
    }
    assert!(kids.len() as u64 >= ok);
    let first_new = kids.iter().position(|k| *k == new).unwrap();
    assert!(kids[..first_new].iter().all(|k| *k == old));
    assert!(kids[first_new..].iter().filter(|k| **k == old).count() <= IN_FLIGHT);
    assert_eq!(kids.last(), Some(&new));
    assert_eq!(jwks_kids(admin).await, [new.clone(), old.clone()]);
    env.gw.stop().await;
}

/// A TLS client trusting `ca`, answering the status and the certificate the server showed.
async fn https_get(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    path: &str,
) -> Result<(StatusCode, Vec<u8>), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req: Request<TestBody> = Request::get(path)
        .header("host", "localhost")
        .body(empty())
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    Ok((read(resp).await.status, cert))
}

fn connector(ca: &TestCa) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    // Every connection a full handshake: a resumed session shows the certificate it began with.
    let mut config = config;
    config.resumption = rustls::client::Resumption::disabled();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

fn der_of(pem: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(pem)
        .unwrap()
        .to_vec()
}

/// Replace `to` by `from` the way certbot and cert-manager do: a rename, never a half file.
fn replace(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_renews_under_load_and_a_broken_one_keeps_the_old() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let (cert, key) = ca.issue(dir.path(), "gw", &["localhost", "127.0.0.1"]);
    let (renewed_cert, renewed_key) = ca.issue(dir.path(), "renewed", &["localhost", "127.0.0.1"]);
    let first = der_of(&cert);
    let renewed = der_of(&renewed_cert);
    let text = config_text(dir.path(), &up.url(), "\n[dev]\nallow_all = true\n").replace(
        "shutdown_grace_secs = 5\n",
        &format!(
            "shutdown_grace_secs = 5\nmax_connections_per_address = 0\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let gw = Gateway::start(&text, dir.path()).await;
    let tls = connector(&ca);
    let (status, served) = https_get(gw.public, &tls, "/api/declare/x").await.unwrap();
    assert_eq!((status, served == first), (StatusCode::OK, true));

    let public = gw.public;
    let load_tls = tls.clone();
    let load = Load::start(move || {
        let tls = load_tls.clone();
        async move {
            https_get(public, &tls, "/api/declare/load")
                .await
                .map(|(s, _)| s)
        }
    });
    load.answered(300).await;

    // Renewal: both files replaced, then a reload; new handshakes get the new certificate.
    replace(&renewed_key, &key);
    replace(&renewed_cert, &cert);
    let status = post_admin(gw.admin, "/admin/reload").await;
    assert_eq!(status["ok"], true, "{status}");
    assert!(status["tls"]["last_error"].is_null());
    let (_, served) = https_get(gw.public, &tls, "/api/declare/x").await.unwrap();
    assert!(served == renewed, "the renewed certificate is served");
    load.answered(300).await;

    // A broken certificate file: refused; the renewed certificate stays in force.
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let status = post_admin(gw.admin, "/admin/reload").await;
    assert_eq!(status["ok"], false, "{status}");
    let error = status["tls"]["last_error"].as_str().unwrap();
    assert!(error.starts_with("server.tls"), "{error}");
    // A key that does not belong to the certificate: refused too.
    replace(&renewed_cert, &cert);
    let (_, other_key) = ca.issue(dir.path(), "other", &["localhost"]);
    replace(&other_key, &key);
    let status = post_admin(gw.admin, "/admin/reload").await;
    assert_eq!(status["ok"], false, "{status}");
    assert_eq!(
        metric(gw.admin, "taxgate_tls_reload_failures_total").await,
        2
    );
    assert_eq!(metric(gw.admin, "taxgate_tls_last_reload_failed").await, 1);
    let (status, served) = https_get(gw.public, &tls, "/api/declare/x").await.unwrap();
    assert_eq!((status, served == renewed), (StatusCode::OK, true));
    load.answered(300).await;

    let (ok, failed) = load.finish().await;
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        ok,
        &failed[..failed.len().min(5)]
    );
    gw.stop().await;
}

#[tokio::test]
async fn sighup_rotates_the_assertion_key_of_the_real_binary() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("assertion.pem");
    write_new_key(&key, Algorithm::EdDSA, false).unwrap();
    let text = config_text(
        dir.path(),
        &up.url(),
        &format!("[upstream_identity]\nsigning_key = \"{}\"\n", key.display()),
    );
    let gw = ServeChild::start(dir.path(), "gw", &text).await;
    let old = jwks_kids(gw.admin).await;
    write_new_key(&key, Algorithm::EdDSA, true).unwrap();
    gw.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let kids = jwks_kids(gw.admin).await;
        if kids.len() == 2 {
            assert_eq!(kids[1], old[0], "the retired key stays published");
            assert_ne!(kids[0], old[0]);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not rotate: {kids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
