//! External authorization (CONTRACT section 9): taxgate deciding for a proxy the operator already
//! runs — nginx `auth_request`, Caddy `forward_auth`, Traefik ForwardAuth, Envoy `ext_authz` over
//! HTTP or gRPC — and answering AuthZEN questions from backends.
//!
//! Every mode describes the original request (method, path and query, host, the client's
//! headers) and hands it to [`Gateway::judge`], the walk the public listener takes for its own
//! requests: the same path rules, routes, session, Cedar decision, audit, identity headers and
//! assertion. Only the shape of the answer differs per mode ([`forward`], [`grpc`]); AuthZEN
//! ([`authzen`]) asks the gate about the session a signed assertion names.
//!
//! The listeners are never the public one: they believe their caller's account of the request.
//! Callers on another host are held off by the shared token and mutual TLS.

mod authzen;
mod forward;
mod grpc;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::{ExtAuthzConfig, SecretString};
use crate::error::ApiError;
use crate::pipeline::{Ask, Gateway, Judgement};
use crate::rescue::Failure;
use crate::server::{Core, StartError};

/// How a downstream decision was asked: in its audit record (`"mode"`) and in
/// `taxgate_decisions_total{mode}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The public listener, for the request it carries.
    Inline,
    /// `/ext/forward-auth` (Traefik ForwardAuth, Caddy `forward_auth`).
    ForwardAuth,
    /// `/ext/auth-request` (nginx `auth_request`).
    AuthRequest,
    /// `/ext/envoy/…` (Envoy `ext_authz`, HTTP service).
    EnvoyHttp,
    /// `envoy.service.auth.v3.Authorization/Check` (Envoy `ext_authz`, gRPC).
    EnvoyGrpc,
    /// `/access/v1/evaluation(s)` (OpenID AuthZEN 1.0).
    Authzen,
}

impl Mode {
    /// Every mode, in the order the metrics list them.
    pub const ALL: [Mode; 6] = [
        Mode::Inline,
        Mode::ForwardAuth,
        Mode::AuthRequest,
        Mode::EnvoyHttp,
        Mode::EnvoyGrpc,
        Mode::Authzen,
    ];

    /// The contract's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Inline => "inline",
            Mode::ForwardAuth => "forward_auth",
            Mode::AuthRequest => "auth_request",
            Mode::EnvoyHttp => "envoy_http",
            Mode::EnvoyGrpc => "envoy_grpc",
            Mode::Authzen => "authzen",
        }
    }

    /// The audit record's detail of a downstream decision asked this way.
    pub fn detail(self) -> &'static str {
        match self {
            Mode::Inline => r#"{"mode":"inline"}"#,
            Mode::ForwardAuth => r#"{"mode":"forward_auth"}"#,
            Mode::AuthRequest => r#"{"mode":"auth_request"}"#,
            Mode::EnvoyHttp => r#"{"mode":"envoy_http"}"#,
            Mode::EnvoyGrpc => r#"{"mode":"envoy_grpc"}"#,
            Mode::Authzen => r#"{"mode":"authzen"}"#,
        }
    }

    fn slot(self) -> usize {
        Mode::ALL.iter().position(|m| *m == self).unwrap_or(0)
    }
}

/// `taxgate_decisions_total{mode="…"}`: downstream decisions by how they were asked.
pub struct Decisions {
    counts: [AtomicU64; Mode::ALL.len()],
}

/// Process-wide, like the other registered counters.
pub static DECISIONS: Decisions = Decisions {
    counts: [const { AtomicU64::new(0) }; Mode::ALL.len()],
};

impl Decisions {
    /// Count one decision asked by `mode`.
    pub fn inc(&self, mode: Mode) {
        if let Some(c) = self.counts.get(mode.slot()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Decisions asked by `mode` so far.
    pub fn get(&self, mode: Mode) -> u64 {
        self.counts
            .get(mode.slot())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The series, every mode present from start.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.push_str(
            "# HELP taxgate_decisions_total Downstream decisions, by how they were asked.\n",
        );
        out.push_str("# TYPE taxgate_decisions_total counter\n");
        for mode in Mode::ALL {
            let _ = writeln!(
                out,
                "taxgate_decisions_total{{mode=\"{}\"}} {}",
                mode.as_str(),
                self.get(mode)
            );
        }
    }
}

/// The header (HTTP) or metadata entry (gRPC) that carries `[ext_authz] token`.
pub const HEADER_EXT_TOKEN: &str = "x-taxgate-ext-token";
/// The real error code of a refusal, for callers that see only the status (nginx).
pub static HEADER_ERROR: HeaderName = HeaderName::from_static("x-taxgate-error");

/// The answer of the shared walk, in a form every mode can send.
pub(crate) enum Answer {
    /// Allowed: the identity headers for the upstream, and what else the upstream request
    /// must lose or have rewritten (the modes that can say so: Envoy).
    Allow {
        /// `x-taxgate-*` (with the decision id and the assertion).
        identity: Vec<(HeaderName, HeaderValue)>,
        /// The client headers the inline gateway would remove or rewrite.
        edits: Edits,
    },
    /// Refused: what the inline gateway would have answered.
    Deny(Denial),
}

/// A refusal as the inline gateway answers it.
pub(crate) struct Denial {
    /// Its status.
    pub status: StatusCode,
    /// The error code of its body.
    pub code: String,
    /// Headers of the answer: content type, `Location` for a browser without a session,
    /// `Allow` of a 405, `Retry-After`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The contract's JSON error body.
    pub body: Bytes,
}

impl Denial {
    /// No or no longer a live session.
    pub fn unauthenticated(&self) -> bool {
        self.status == StatusCode::UNAUTHORIZED
    }
}

/// The changes the inline gateway makes to the client's headers before forwarding
/// (`x-taxgate-*` in any spelling, the method and URL overrides, the session cookie and bearer
/// token), as a list a proxy can apply.
#[derive(Debug, Default)]
pub(crate) struct Edits {
    /// Header names to remove.
    pub remove: Vec<String>,
    /// Headers to overwrite with a new value (`Cookie` without the session cookie).
    pub set: Vec<(HeaderName, HeaderValue)>,
}

/// What the external-authorization listeners share.
pub struct ExtAuthz {
    gateway: Arc<Gateway>,
    core: Arc<Core>,
    token: Option<SecretString>,
}

impl ExtAuthz {
    /// Answers for `gateway` (the same routes and gate as the public listener).
    pub fn new(gateway: Arc<Gateway>, core: Arc<Core>, config: &ExtAuthzConfig) -> ExtAuthz {
        ExtAuthz {
            gateway,
            core,
            token: config.token.clone(),
        }
    }

    /// Whether the caller presented the configured token (always, when none is configured).
    /// Constant time in the token's content.
    pub(crate) fn caller_admitted(&self, presented: Option<&[u8]>) -> bool {
        match &self.token {
            None => true,
            Some(token) => {
                presented.is_some_and(|p| bool::from(p.ct_eq(token.expose().as_bytes())))
            }
        }
    }

    /// The shared walk for one original request, answered as the inline gateway would.
    pub(crate) async fn decide(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        client: IpAddr,
        mode: Mode,
    ) -> Answer {
        let ask = Ask {
            method,
            target,
            headers,
            client,
            mode,
        };
        match self.gateway.judge(&ask).await {
            Judgement::Allowed { identity, .. } => {
                let edits = edits(headers, &self.gateway.cookie_name, &identity);
                Answer::Allow { identity, edits }
            }
            Judgement::Refused(refused) => {
                let login =
                    refused.page.is_some() && matches!(refused.failure, Failure::LoginRequired(_));
                let error = self.gateway.rescue.error(refused.failure);
                let mut denial = denial(error).await;
                if let Some(allow) = refused.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
                    denial.headers.push((header::ALLOW, allow));
                }
                if login {
                    // The contract's answer for a browser: the proxy passes it on, and the
                    // gateway's `/login` (reached through the same proxy) takes over.
                    denial
                        .headers
                        .push((header::LOCATION, HeaderValue::from_static("/login")));
                }
                Answer::Deny(denial)
            }
        }
    }

    /// A refusal of the caller itself (no token, bad input), in the contract's form.
    pub(crate) async fn refuse(&self, error: ApiError) -> Denial {
        denial(error).await
    }
}

/// The contract's error answer of `error`, taken apart for the modes to reassemble.
async fn denial(error: ApiError) -> Denial {
    let code = error.code().to_string();
    let response = error.into_response();
    let status = response.status();
    let (parts, body) = response.into_parts();
    let headers = parts
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    // The error body is one in-memory chunk; it cannot fail.
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Denial {
        status,
        code,
        headers,
        body,
    }
}

/// What the inline gateway would remove or rewrite in `client` before forwarding (the proxy's
/// own hygiene, applied to a copy and compared), less the identity headers about to be set.
fn edits(client: &HeaderMap, cookie_name: &str, identity: &[(HeaderName, HeaderValue)]) -> Edits {
    let mut clean = client.clone();
    // Forwarding headers are the calling proxy's business (it set them): kept.
    taxgate_proxy::headers::strip_client_controlled(&mut clean, true);
    taxgate_proxy::headers::strip_session_tokens(&mut clean, cookie_name);
    let mut out = Edits::default();
    for name in client.keys() {
        let set_anyway = identity.iter().any(|(n, _)| n == name);
        if !clean.contains_key(name) && !set_anyway {
            out.remove.push(name.as_str().to_string());
        } else if clean.contains_key(name)
            && !clean.get_all(name).iter().eq(client.get_all(name).iter())
        {
            let joined = clean
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
                .join(if name == header::COOKIE { "; " } else { ", " });
            if let Ok(v) = HeaderValue::from_str(&joined) {
                out.set.push((name.clone(), v));
            }
        }
    }
    out
}

/// The right-most `X-Forwarded-For` entry (the one the calling proxy added), or the peer.
pub(crate) fn client_of(headers: &HeaderMap, peer: IpAddr) -> IpAddr {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse::<IpAddr>().ok())
        .unwrap_or(peer)
}

/// The bound external-authorization listeners, served by [`Bound::serve`].
pub struct Bound {
    http: TcpListener,
    grpc: Option<TcpListener>,
    tls: Option<TlsAcceptor>,
    ext: Arc<ExtAuthz>,
}

impl Bound {
    /// Bind `[ext_authz] listen` (and `grpc_listen`), and load the mutual-TLS configuration.
    pub async fn bind(ext: ExtAuthz, config: &ExtAuthzConfig) -> Result<Bound, StartError> {
        let tls = match &config.tls {
            Some(tls) => Some(
                taxgate_proxy::tls::mutual_acceptor(&tls.cert, &tls.key, &tls.client_ca).map_err(
                    |e| StartError::Config {
                        key: "ext_authz.tls".into(),
                        message: e.to_string(),
                    },
                )?,
            ),
            None => {
                if !config.listen.ip().is_loopback() && config.token.is_none() {
                    tracing::warn!(
                        listen = %config.listen,
                        "[ext_authz] on a non-loopback address without tls or token: anyone who \
                         reaches it can ask for decisions"
                    );
                }
                None
            }
        };
        let bind = |key: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { key, addr, source })
        };
        let http = bind("ext_authz.listen", config.listen).await?;
        let grpc = match config.grpc_listen {
            Some(addr) => Some(bind("ext_authz.grpc_listen", addr).await?),
            None => None,
        };
        Ok(Bound {
            http,
            grpc,
            tls,
            ext: Arc::new(ext),
        })
    }

    /// The HTTP listener's address (the port chosen, for port 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.local_addr().ok()
    }

    /// The gRPC listener's address, when configured.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serve both listeners until `shutdown` resolves.
    pub async fn serve(
        self,
        options: taxgate_proxy::ServeOptions,
        shutdown: impl Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    ) {
        let grpc = self.grpc.map(|listener| {
            tokio::spawn(grpc::serve(
                listener,
                self.tls.clone(),
                self.ext.clone(),
                shutdown(),
            ))
        });
        taxgate_proxy::serve(
            self.http,
            self.tls,
            Arc::new(forward::Listener::new(self.ext)),
            Arc::new(taxgate_proxy::ConnStats::default()),
            options,
            shutdown(),
        )
        .await;
        if let Some(grpc) = grpc {
            let _ = grpc.await;
        }
    }
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn every_mode_has_its_contract_name_and_detail() {
        let names: Vec<&str> = Mode::ALL.iter().map(|m| m.as_str()).collect();
        assert_eq!(
            names,
            [
                "inline",
                "forward_auth",
                "auth_request",
                "envoy_http",
                "envoy_grpc",
                "authzen"
            ]
        );
        for m in Mode::ALL {
            let v: serde_json::Value = serde_json::from_str(m.detail()).unwrap();
            assert_eq!(v["mode"], m.as_str());
        }
        let mut out = String::new();
        DECISIONS.render(&mut out);
        assert!(out.contains("taxgate_decisions_total{mode=\"envoy_grpc\"}"));
    }

    #[test]
    fn edits_are_the_inline_hygiene() {
        let mut h = HeaderMap::new();
        h.insert("x-taxgate-person", HeaderValue::from_static("spoof"));
        h.insert("x_taxgate_role", HeaderValue::from_static("admin"));
        h.insert("x-http-method-override", HeaderValue::from_static("DELETE"));
        h.insert("x-original-url", HeaderValue::from_static("/api/declare"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; taxgate_session=tok; b=2"),
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer tok"),
        );
        h.insert("accept", HeaderValue::from_static("*/*"));
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        let identity = vec![(
            HeaderName::from_static("x-taxgate-person"),
            HeaderValue::from_static("real"),
        )];
        let e = edits(&h, "taxgate_session", &identity);
        let mut removed = e.remove.clone();
        removed.sort();
        assert_eq!(
            removed,
            [
                "authorization",
                "x-http-method-override",
                "x-original-url",
                "x_taxgate_role"
            ]
        );
        assert_eq!(e.set.len(), 1);
        assert_eq!(e.set[0].0, header::COOKIE);
        assert_eq!(e.set[0].1, "a=1; b=2");
        let only_session = {
            let mut h = HeaderMap::new();
            h.insert(
                header::COOKIE,
                HeaderValue::from_static("taxgate_session=tok"),
            );
            h
        };
        assert_eq!(
            edits(&only_session, "taxgate_session", &[]).remove,
            ["cookie"]
        );
    }

    #[test]
    fn client_is_the_right_most_forwarded_entry() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(client_of(&h, peer), peer);
        h.append(
            "x-forwarded-for",
            HeaderValue::from_static("1.2.3.4, 203.0.113.7"),
        );
        assert_eq!(client_of(&h, peer).to_string(), "203.0.113.7");
        h.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(client_of(&h, peer), peer);
    }
}
