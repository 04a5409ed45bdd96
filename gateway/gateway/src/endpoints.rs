//! The gateway's own HTTP endpoints: `/auth/*` (login), `/account/*` (account centre) and the
//! pages. Cross-cutting checks live here: the per-address rate limit on `/auth/*` and the
//! cross-site check on POSTs (CONTRACT section 3).

use std::pin::Pin;
use std::sync::Arc;

use http::{Method, Request, Response, header};
use hyper::body::Incoming;
use taxgate_store::ChallengePurpose;

use crate::account::{self, Account};
use crate::api;
use crate::authn::login::Auth;
use crate::authn::login::SecondFactor::{FaceComplete, FaceStart, SmsSend, SmsVerify};
use crate::authn::ratelimit::RateLimiter;
use crate::error::{ApiError, Code};
use crate::pipeline::{Endpoints, unix_now};
use crate::rescue::Handled;
use crate::server::Core;
use taxgate_proxy::ConnInfo;
use taxgate_proxy::body::Body;

/// The gateway's own [`Endpoints`]: routes `/auth/*`, `/account/*` and the pages to their handlers
/// after the rate limit and the cross-site check.
pub struct Own {
    core: Arc<Core>,
    auth: Auth,
    account: Account,
    limiter: RateLimiter,
    /// Signed face callbacks' own budget (`[face] callbacks_per_minute`).
    callbacks: RateLimiter,
}

impl Own {
    /// Endpoints with fresh per-address budgets from `[login] auth_requests_per_minute` and `[face]
    /// callbacks_per_minute`.
    pub fn new(core: Arc<Core>, auth: Auth) -> Self {
        let limiter = RateLimiter::new(core.config.login.auth_requests_per_minute);
        let callbacks = RateLimiter::new(core.config.face.callbacks_per_minute);
        Own {
            callbacks,
            account: Account::new(core.clone()),
            core,
            auth,
            limiter,
        }
    }

    /// POSTs to `/auth/*` and `/account/*` from another site are refused: `Origin` must be the
    /// configured `public_origin` when both are present, and browsers' `Sec-Fetch-Site` must not
    /// say `cross-site`. (The face callback comes from a server and is signed instead.)
    fn cross_site(&self, req: &Request<Incoming>) -> bool {
        if req.method() != Method::POST || req.uri().path() == "/auth/face/callback" {
            return false;
        }
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        if let (Some(expected), Some(origin)) = (&self.core.config.server.public_origin, origin)
            && origin.trim_end_matches('/') != expected.trim_end_matches('/')
        {
            return true;
        }
        req.headers()
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
    }

    async fn dispatch(&self, req: Request<Incoming>, conn: ConnInfo) -> Handled {
        let path = req.uri().path().to_string();
        // A face callback is counted once its signature is known (see `Auth::face_callback`).
        let callback = req.method() == Method::POST && path == "/auth/face/callback";
        if path.starts_with("/auth/") && !callback {
            let store = &self.core.store;
            self.limiter
                .check(store, conn.remote.ip(), unix_now())
                .await?;
        }
        if self.cross_site(&req) {
            return Err(Code::CrossSite.into());
        }
        let legacy_allowed = self
            .core
            .config
            .login
            .legacy_until_unix()
            .is_some_and(|until| unix_now() < until);
        let options = crate::web::PageOptions {
            legacy_allowed,
            home_url: &self.core.config.pages.home_url,
            demo: self.core.config.demo,
        };
        if let Some(page) = crate::web::serve(req.method(), &path, req.headers(), &options) {
            return Ok(page);
        }
        let auth = &self.auth;
        match (req.method().clone(), path.as_str()) {
            (Method::POST, "/auth/login") => auth.login(body(req).await?, conn).await,
            (Method::POST, "/auth/sms/send") => auth.second_factor(SmsSend, req, conn).await,
            (Method::POST, "/auth/sms/verify") => auth.second_factor(SmsVerify, req, conn).await,
            (Method::POST, "/auth/face/start") => auth.second_factor(FaceStart, req, conn).await,
            (Method::POST, "/auth/face/callback") => {
                let budget = crate::authn::face::CallbackBudget {
                    unsigned: &self.limiter,
                    signed: &self.callbacks,
                };
                auth.face_callback(req, conn, budget).await
            }
            (Method::POST, "/auth/face/complete") => {
                auth.second_factor(FaceComplete, req, conn).await
            }
            (Method::POST, "/auth/step-up") => auth.step_up(req, conn).await,
            (_, p) if crate::security::serves(p) => {
                crate::security::dispatch(&self.core, auth, req, conn).await
            }
            (Method::GET, "/auth/face/qr") => Ok(face_qr(&req)?),
            (Method::POST, "/auth/face/demo-sign") if self.core.config.demo => {
                auth.face_demo_sign(body(req).await?, conn).await
            }
            (Method::POST, "/auth/phone/recover") => {
                auth.phone_recover(body(req).await?, conn).await
            }
            (Method::POST, "/auth/phone/recover/verify") => {
                auth.phone_verify(body(req).await?, conn, ChallengePurpose::RecoverPhone)
                    .await
            }
            (Method::POST, "/auth/password/reset") => {
                auth.password_reset(body(req).await?, conn).await
            }
            (Method::POST, "/auth/password/reset/complete") => {
                auth.password_reset_complete(body(req).await?, conn).await
            }
            (Method::GET, "/auth/session") => auth.session(req, conn).await,
            (Method::POST, "/auth/password") => auth.change_password(req, conn).await,
            (Method::POST, "/auth/logout") => auth.logout(req, conn).await,
            (_, p) if p == "/account" || p.starts_with("/account/") => {
                account::dispatch(&self.account, auth, req, conn).await
            }
            (_, p) if known_path(p) => Err(Code::MethodNotAllowed.into()),
            _ => Err(Code::NotFound.into()),
        }
    }
}

fn known_path(p: &str) -> bool {
    matches!(
        p,
        "/auth/login"
            | "/auth/sms/send"
            | "/auth/sms/verify"
            | "/auth/face/start"
            | "/auth/face/callback"
            | "/auth/face/complete"
            | "/auth/face/qr"
            | "/auth/phone/recover"
            | "/auth/phone/recover/verify"
            | "/auth/password/reset"
            | "/auth/password/reset/complete"
            | "/auth/session"
            | "/auth/password"
            | "/auth/logout"
            | "/auth/step-up"
    )
}

async fn body(req: Request<Incoming>) -> Result<api::Json, ApiError> {
    api::read_json(req).await.map(|(_, j)| j)
}

/// `GET /auth/face/qr?nonce=…`: the QR payload as an SVG image for the login page.
fn face_qr(req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let nonce = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("nonce=")))
        .filter(|n| crate::authn::token::well_formed(n))
        .ok_or_else(|| ApiError::field(Code::InvalidInput, "nonce"))?;
    let payload = format!("taxgate-face://v1?nonce={nonce}");
    let code =
        qrcode::QrCode::new(payload.as_bytes()).map_err(|_| ApiError::from(Code::Internal))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build();
    let mut r = Response::new(taxgate_proxy::body::full(svg));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("image/svg+xml"),
    );
    h.insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

impl Endpoints for Own {
    fn handle<'a>(
        &'a self,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send + 'a>> {
        Box::pin(async move {
            let page = crate::rescue::wants_page(req.method(), req.headers());
            match self.dispatch(req, conn).await {
                Ok(r) => r,
                Err(failure) => self.core.rescue.respond(failure, page),
            }
        })
    }
}
