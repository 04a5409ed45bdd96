//! Header hygiene between client and upstream (RFC 9110 section 7.6.1).

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Remove the hop-by-hop headers, including every header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Whether a header name belongs to the gateway's identity namespace (any casing: names are
/// lower-cased by the parser already, `eq_ignore_ascii_case` keeps this true for any input).
pub fn is_gateway_header(name: &HeaderName) -> bool {
    let n = name.as_str().as_bytes();
    n.len() >= 10 && n[..10].eq_ignore_ascii_case(b"x-taxgate-")
}

/// Remove every client-sent `x-taxgate-*` header, so identity can only come from the gateway.
pub fn strip_gateway_headers(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_gateway_header(n))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Append the client's address to `x-forwarded-for` and the scheme to `x-forwarded-proto`.
pub fn append_forwarded(headers: &mut HeaderMap, client: IpAddr, tls: bool) {
    append_list(headers, "x-forwarded-for", &client.to_string());
    append_list(
        headers,
        "x-forwarded-proto",
        if tls { "https" } else { "http" },
    );
}

fn append_list(headers: &mut HeaderMap, name: &'static str, item: &str) {
    let name = HeaderName::from_static(name);
    let existing: Vec<&str> = headers
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let value = if existing.is_empty() {
        item.to_string()
    } else {
        format!("{}, {item}", existing.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(name, v);
    }
}

/// Remove the gateway's own session cookie from `Cookie`, keeping the others.
pub fn strip_cookie(headers: &mut HeaderMap, cookie_name: &str) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            pair.split_once('=')
                .map(|(name, _)| name.trim() != cookie_name)
                .unwrap_or(true)
        })
        .map(str::to_string)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
}

/// The value of one cookie, if present.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
}

/// The token of `Authorization: Bearer <token>`, if present.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn gateway_headers_go_in_any_casing() {
        let mut h = map(&[
            ("X-Taxgate-Person", "spoof"),
            ("x-taxgate-role", "admin"),
            ("x-taxgate-role", "admin2"),
            ("x-taxgatex", "keep"),
        ]);
        strip_gateway_headers(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-taxgatex"));
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut h = map(&[("x-forwarded-for", "10.0.0.1")]);
        append_forwarded(&mut h, "127.0.0.1".parse().unwrap(), true);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn session_cookie_removed_others_kept() {
        let mut h = map(&[("cookie", "a=1; taxgate_session=SECRET; b=2")]);
        assert_eq!(cookie(&h, "taxgate_session"), Some("SECRET"));
        strip_cookie(&mut h, "taxgate_session");
        assert_eq!(h["cookie"], "a=1; b=2");
        let mut only = map(&[("cookie", "taxgate_session=SECRET")]);
        strip_cookie(&mut only, "taxgate_session");
        assert!(!only.contains_key("cookie"));
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(
            bearer(&map(&[("authorization", "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            bearer(&map(&[("authorization", "bearer abc")])),
            Some("abc")
        );
        assert_eq!(bearer(&map(&[("authorization", "Basic abc")])), None);
        assert_eq!(bearer(&map(&[("authorization", "Bearer ")])), None);
    }
}
