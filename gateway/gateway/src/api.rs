//! Small helpers of the gateway's own JSON API: bounded body reading, typed field extraction that
//! names the field at fault, JSON answers and the session cookie.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use crate::error::{ApiError, Code};
use taxgate_proxy::body::{Body, empty, full};

/// Largest JSON body the gateway's own endpoints read.
pub const MAX_JSON_BYTES: usize = 16 * 1024;

/// Read a body of at most `limit` bytes.
pub async fn read_body(
    req: Request<Incoming>,
    limit: usize,
) -> Result<(http::request::Parts, Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok((parts, collected.to_bytes())),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Code::PayloadTooLarge.into())
        }
        Err(_) => Err(Code::InvalidInput.into()),
    }
}

/// A JSON object body. Requires `Content-Type: application/json`.
pub async fn read_json(req: Request<Incoming>) -> Result<(http::request::Parts, Json), ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false);
    if !is_json {
        return Err(Code::UnsupportedMediaType.into());
    }
    let (parts, bytes) = read_body(req, MAX_JSON_BYTES).await?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|_| ApiError::from(Code::InvalidInput))?;
    if !value.is_object() {
        return Err(Code::InvalidInput.into());
    }
    Ok((parts, Json(value)))
}

/// A parsed JSON object with field accessors whose errors name the field.
pub struct Json(pub Value);

impl Json {
    /// A required, non-empty string of at most `max` characters.
    pub fn str(&self, name: &str, max: usize) -> Result<&str, ApiError> {
        match self.0.get(name) {
            Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= max => Ok(s),
            _ => Err(ApiError::field(Code::InvalidInput, name)),
        }
    }

    /// An optional string (absent or null: `None`).
    pub fn opt_str(&self, name: &str, max: usize) -> Result<Option<&str>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s)),
            _ => Err(ApiError::field(Code::InvalidInput, name)),
        }
    }

    /// A required string parsed by `parse`.
    pub fn parse<T, E>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, ApiError> {
        let s = self.str(name, 64)?;
        parse(s).map_err(|_| ApiError::field(Code::InvalidInput, name))
    }

    /// An optional array of strings.
    pub fn opt_str_list(&self, name: &str) -> Result<Option<Vec<&str>>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) if items.len() <= 16 => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| ApiError::field(Code::InvalidInput, name))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            _ => Err(ApiError::field(Code::InvalidInput, name)),
        }
    }
}

/// Add `key: value` to an answer built as an object with `json!({ ... })`, replacing a field of
/// that name. `v[key] = value` would do the same but panics on a value that is neither an object
/// nor null; here a value that is not an object is left as it is (the answers are all objects).
pub(crate) fn set_field(v: &mut Value, key: &str, value: impl Into<Value>) {
    if let Some(fields) = v.as_object_mut() {
        fields.insert(key.to_owned(), value.into());
    }
}

/// A JSON answer with `status`, never cached (`no-store`).
pub fn json(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// [`json`] for an answer of a typed body (the schema types of [`crate::openapi::schemas`]).
pub fn typed<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    json(status, &serde_json::to_value(value).unwrap_or_default())
}

/// An empty `204 No Content`, never cached.
pub fn no_content() -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `Set-Cookie` for a new session token (`max_age` 0 clears it).
pub fn session_cookie(name: &str, token: &str, secure: bool, max_age: u64) -> Option<HeaderValue> {
    let mut c = format!("{name}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}");
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).ok()
}

/// RFC 3339 in UTC for a unix time.
pub fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_name_themselves() {
        let j = Json(serde_json::json!({"a": "x", "n": 3, "l": ["p", "q"], "e": ""}));
        assert_eq!(j.str("a", 5).unwrap(), "x");
        let e = j.str("n", 5).unwrap_err();
        assert_eq!(e, ApiError::field(Code::InvalidInput, "n"));
        assert!(j.str("e", 5).is_err(), "empty strings are refused");
        assert!(j.str("a", 0).is_err(), "too long");
        assert_eq!(j.opt_str("missing", 5).unwrap(), None);
        assert_eq!(j.opt_str_list("l").unwrap(), Some(vec!["p", "q"]));
        assert!(j.opt_str_list("a").is_err());
    }

    #[test]
    fn cookie_attributes() {
        let c = session_cookie("taxgate_session", "tok", true, 60).unwrap();
        let s = c.to_str().unwrap();
        assert!(s.starts_with("taxgate_session=tok;"));
        for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Max-Age=60"] {
            assert!(s.contains(attr), "{attr} missing from {s}");
        }
        let plain = session_cookie("taxgate_session", "tok", false, 60).unwrap();
        assert!(!plain.to_str().unwrap().contains("Secure"));
    }

    #[test]
    fn rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
