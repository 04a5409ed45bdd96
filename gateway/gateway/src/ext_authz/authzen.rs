//! OpenID AuthZEN Authorization API 1.0 (CONTRACT section 9): a backend that received a request
//! from taxgate asks a finer question — may the subject of the `x-taxgate-assertion` it got do
//! `action` on `resource`? The assertion is verified with the gateway's own keys, the session it
//! names is read afresh from the store (a revocation on any instance is honoured at once), and
//! the question goes through the gate like every other ([`Gate::decide`], audited with mode
//! `authzen`).
//!
//! The resource must be the one the session acts for (its enterprise, or the person in person
//! entry): the session's entity slice holds only that one, and a session never acts for another
//! resource without a switch, which is itself a decision.

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};
use taxgate_proxy::body::{Body, full};

use super::{ExtAuthz, Mode};
use crate::error::{ApiError, Code};
use crate::gate::{Asker, Question};
use crate::pipeline::unix_now;
use crate::rescue::Failure;
use crate::session::Lookup;

/// `POST`: one evaluation.
pub(super) const EVALUATION: &str = "/access/v1/evaluation";
/// `POST`: a batch of evaluations.
pub(super) const EVALUATIONS: &str = "/access/v1/evaluations";
/// `GET`: the PDP's metadata.
pub(super) const CONFIGURATION: &str = "/.well-known/authzen-configuration";

/// The subject type whose id is an `x-taxgate-assertion`.
const SUBJECT_TYPE: &str = "taxgate_assertion";
/// Largest request body read.
const MAX_BODY: usize = 256 * 1024;
/// Most evaluations in one batch.
const MAX_EVALUATIONS: usize = 64;

#[derive(Debug, Default, Clone, Deserialize)]
struct Subject {
    #[serde(rename = "type")]
    kind: String,
    id: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
struct Action {
    name: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
struct Resource {
    #[serde(rename = "type")]
    kind: String,
    id: String,
}

/// One evaluation, or the defaults of a batch (every part optional there).
#[derive(Debug, Default, Clone, Deserialize)]
struct Evaluation {
    subject: Option<Subject>,
    action: Option<Action>,
    resource: Option<Resource>,
    // `context` is accepted (serde ignores it): no policy reads a caller's context yet.
}

#[derive(Debug, Default, Deserialize)]
struct Options {
    evaluations_semantic: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Batch {
    #[serde(flatten)]
    defaults: Evaluation,
    evaluations: Option<Vec<Evaluation>>,
    #[serde(default)]
    options: Options,
}

/// How a batch runs (AuthZEN 1.0 section 7.1.2).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Semantic {
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

/// Answer `POST /access/v1/evaluation(s)`.
pub(super) async fn evaluate(
    ext: &ExtAuthz,
    req: Request<Incoming>,
    client: IpAddr,
) -> Response<Body> {
    match evaluate_inner(ext, req, client).await {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(failure) => ext.gateway.rescue.respond(failure, false),
    }
}

async fn evaluate_inner(
    ext: &ExtAuthz,
    req: Request<Incoming>,
    client: IpAddr,
) -> Result<Value, Failure> {
    if req.method() != Method::POST {
        return Err(Code::MethodNotAllowed.into());
    }
    let json_body = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !json_body {
        return Err(Code::UnsupportedMediaType.into());
    }
    let batch = req.uri().path() == EVALUATIONS;
    let bytes: Bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| Failure::from(Code::PayloadTooLarge))?
        .to_bytes();
    if !batch {
        let one: Evaluation = serde_json::from_slice(&bytes)
            .map_err(|_| Failure::from(ApiError::field(Code::InvalidInput, "body")))?;
        return decide_one(ext, &one, client).await;
    }
    let request: Batch = serde_json::from_slice(&bytes)
        .map_err(|_| Failure::from(ApiError::field(Code::InvalidInput, "body")))?;
    let semantic = match request.options.evaluations_semantic.as_deref() {
        None | Some("execute_all") => Semantic::ExecuteAll,
        Some("deny_on_first_deny") => Semantic::DenyOnFirstDeny,
        Some("permit_on_first_permit") => Semantic::PermitOnFirstPermit,
        Some(_) => {
            return Err(ApiError::field(Code::InvalidInput, "options.evaluations_semantic").into());
        }
    };
    let items = match request.evaluations {
        // No list: a single evaluation of the defaults, answered as one.
        None => return decide_one(ext, &request.defaults, client).await,
        Some(items) if items.is_empty() => {
            return decide_one(ext, &request.defaults, client).await;
        }
        Some(items) => items,
    };
    if items.len() > MAX_EVALUATIONS {
        return Err(ApiError::field(Code::InvalidInput, "evaluations").into());
    }
    let mut answers = Vec::with_capacity(items.len());
    for item in &items {
        let merged = Evaluation {
            subject: item
                .subject
                .clone()
                .or_else(|| request.defaults.subject.clone()),
            action: item
                .action
                .clone()
                .or_else(|| request.defaults.action.clone()),
            resource: item
                .resource
                .clone()
                .or_else(|| request.defaults.resource.clone()),
        };
        let answer = decide_one(ext, &merged, client).await?;
        let decision = answer
            .get("decision")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        answers.push(answer);
        let stop = match semantic {
            Semantic::ExecuteAll => false,
            Semantic::DenyOnFirstDeny => !decision,
            Semantic::PermitOnFirstPermit => decision,
        };
        if stop {
            break;
        }
    }
    Ok(json!({ "evaluations": answers }))
}

/// One evaluation: verify the subject, re-read its session, ask the gate.
async fn decide_one(ext: &ExtAuthz, e: &Evaluation, client: IpAddr) -> Result<Value, Failure> {
    let subject = e
        .subject
        .as_ref()
        .ok_or_else(|| ApiError::field(Code::InvalidInput, "subject"))?;
    if subject.kind != SUBJECT_TYPE {
        return Err(ApiError::field(Code::InvalidInput, "subject.type").into());
    }
    let action = e
        .action
        .as_ref()
        .ok_or_else(|| ApiError::field(Code::InvalidInput, "action"))?;
    let resource = e
        .resource
        .as_ref()
        .ok_or_else(|| ApiError::field(Code::InvalidInput, "resource"))?;
    let engine = ext.core.engine.clone();
    if !engine.downstream_actions().contains(&action.name) {
        return Err(ApiError::field(Code::InvalidInput, "action.name").into());
    }
    let Some(assertions) = &ext.core.assertions else {
        // Without signing keys no assertion can verify.
        return Err(Code::InvalidAssertion.into());
    };
    let verified = assertions.verify(&subject.id).map_err(|e| {
        tracing::debug!(error = %e, "authzen: subject refused");
        Failure::from(Code::InvalidAssertion)
    })?;
    let sid = verified
        .sid
        .as_deref()
        .ok_or(Failure::from(Code::InvalidAssertion))?;
    if !ext.core.health.is_up() {
        return Err(Code::StoreUnavailable.into());
    }
    let now = unix_now();
    let session = match ext.core.sessions.resolve_id(sid, now).await {
        Ok(Lookup::Live(s)) => s,
        Ok(Lookup::Missing) => return Ok(refusal(Code::LoginRequired.as_str(), None)),
        Ok(Lookup::Expired) => return Ok(refusal(Code::SessionExpired.as_str(), None)),
        Err(e) => return Err(e.into()),
    };
    let acts_for = match resource.kind.as_str() {
        "enterprise" => session.session.enterprise.as_ref().map(|t| t.as_str()),
        "person" => session.session.person.as_ref().map(|p| p.as_str()),
        _ => return Err(ApiError::field(Code::InvalidInput, "resource.type").into()),
    };
    if acts_for != Some(resource.id.as_str()) {
        return Err(ApiError::field(Code::InvalidInput, "resource.id").into());
    }
    let asker = Asker {
        downstream: true,
        mode: Mode::Authzen,
        ..Asker::session(now, client, &session)
    };
    let question = Question::Session {
        session: &session,
        action: &action.name,
    };
    let verdict = ext.core.gate.decide(question, asker).await?;
    if verdict.allowed() {
        return Ok(json!({ "decision": true, "context": { "decision_id": verdict.id } }));
    }
    let reason = verdict
        .decision
        .reason
        .clone()
        .unwrap_or_else(|| taxgate_policy::NOT_PERMITTED.to_string());
    Ok(refusal(&reason, Some(&verdict.id)))
}

fn refusal(reason: &str, decision_id: Option<&str>) -> Value {
    let mut context = json!({ "reason": reason });
    if let (Some(id), Some(map)) = (decision_id, context.as_object_mut()) {
        map.insert("decision_id".into(), Value::String(id.to_string()));
    }
    json!({ "decision": false, "context": context })
}

/// `GET /.well-known/authzen-configuration`: where the evaluation endpoints are, on the
/// authority the caller used.
pub(super) fn configuration(req: &Request<Incoming>, tls: bool) -> Response<Body> {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "localhost".into());
    let base = format!("{}://{host}", if tls { "https" } else { "http" });
    json_response(
        StatusCode::OK,
        &json!({
            "policy_decision_point": base,
            "access_evaluation_endpoint": format!("{base}{EVALUATION}"),
            "access_evaluations_endpoint": format!("{base}{EVALUATIONS}"),
        }),
    )
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
