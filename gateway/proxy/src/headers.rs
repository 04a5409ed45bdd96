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

/// Whether `name` equals `target` (lower-case, with `-`) when read as the loosest upstreams
/// read header names: case-insensitively and with every byte that is not a letter or digit
/// taken for `-` (CGI and WSGI turn `_` into `_` like `-`; lighttpd, old Apache and PHP also
/// turn `.`, `~`, `+`, `!`… into `_`, so `x.taxgate.role` is `HTTP_X_TAXGATE_ROLE` there).
fn name_is(name: &[u8], target: &[u8]) -> bool {
    name.len() == target.len() && name_starts(name, target)
}

fn name_starts(name: &[u8], prefix: &[u8]) -> bool {
    name.len() >= prefix.len()
        && name.iter().zip(prefix).all(|(a, b)| {
            let a = a.to_ascii_lowercase();
            a == *b || (*b == b'-' && !a.is_ascii_alphanumeric())
        })
}

/// Whether the name holds a byte some upstream reads as `-` although it is not one.
fn loose(name: &[u8]) -> bool {
    name.iter()
        .any(|b| !b.is_ascii_alphanumeric() && *b != b'-')
}

/// Whether a header name belongs to the gateway's identity namespace: `x-taxgate-` in any
/// casing, with any other punctuation for a `-` (`x_taxgate_person`, `x.taxgate.role` too).
pub fn is_gateway_header(name: &HeaderName) -> bool {
    name_starts(name.as_str().as_bytes(), b"x-taxgate-")
}

/// Headers some frameworks and proxies take as a new method, URL or host for the request, or
/// as an authenticated user: a client could otherwise reach an action other than the one
/// decided, or be someone else to the upstream.
const OVERRIDES: [&str; 12] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-override-url",
    "x-envoy-original-path",
    "x-original-host",
    "x-host",
    "x-remote-user",
    "remote-user",
];

/// The first of `headers` that some framework takes as a new method, URL, host or user (any
/// spelling), other than `except` (a protocol header of the caller, in its exact spelling). A
/// proxy that asks taxgate through forward auth forwards the client's headers itself, so such
/// a header cannot be removed the way the inline gateway removes it: the request is refused.
pub fn override_header<'h>(headers: &'h HeaderMap, except: Option<&str>) -> Option<&'h HeaderName> {
    headers.keys().find(|n| {
        Some(n.as_str()) != except
            && OVERRIDES
                .iter()
                .any(|o| name_is(n.as_str().as_bytes(), o.as_bytes()))
    })
}

/// The forwarding headers the gateway sets itself (the first three) or that name the client,
/// its scheme, port or path prefix to some upstream. A client's values pass only from a trusted
/// proxy, and never in a loose spelling.
const FORWARDING: [&str; 16] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-real-ip",
    "x-forwarded-prefix",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-forwarded-path",
    "x-forwarded-uri",
    "true-client-ip",
    "cf-connecting-ip",
    "x-client-ip",
    "x-cluster-client-ip",
];

/// Remove every client-sent header the upstream must not take from the client: the gateway's
/// `x-taxgate-*` namespace and the override headers in any spelling, the forwarding headers
/// in a loose spelling, and the forwarding headers themselves unless the peer is a trusted
/// proxy.
pub fn strip_client_controlled(headers: &mut HeaderMap, trusted_peer: bool) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| {
            let raw = n.as_str().as_bytes();
            if is_gateway_header(n) || OVERRIDES.iter().any(|o| name_is(raw, o.as_bytes())) {
                return true;
            }
            FORWARDING
                .iter()
                .any(|f| name_is(raw, f.as_bytes()) && (!trusted_peer || loose(raw)))
        })
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Remove every `x-taxgate-*` header (any spelling), so identity can only come from the gateway.
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

/// Set `x-forwarded-for`, `-proto` and `-host` for the upstream. Behind a trusted proxy its
/// chain, scheme and host are kept and the peer appended; otherwise the client's values were
/// removed ([`strip_client_controlled`]) and the gateway's own stand.
pub fn set_forwarded(headers: &mut HeaderMap, peer: IpAddr, tls: bool, host: Option<HeaderValue>) {
    append_list(headers, "x-forwarded-for", &peer.to_string());
    let proto = HeaderName::from_static("x-forwarded-proto");
    if !headers.contains_key(&proto) {
        headers.insert(
            proto,
            HeaderValue::from_static(if tls { "https" } else { "http" }),
        );
    }
    let forwarded_host = HeaderName::from_static("x-forwarded-host");
    if let Some(host) = host
        && !headers.contains_key(&forwarded_host)
    {
        headers.insert(forwarded_host, host);
    }
}

/// The client's address: the peer, or behind a trusted proxy the right-most entry of
/// `x-forwarded-for` that is not itself a trusted proxy. An entry that does not parse ends the
/// walk at the trusted hop that appended it (a client cannot pick its address with garbage).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for entry in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        let Some(ip) = parse_forwarded_ip(entry.trim()) else {
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:5678`.
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// Remove from an upstream's response what only the gateway may say: `x-taxgate-*` headers,
/// and any `Set-Cookie` that would set (or clear) the gateway's own session cookie.
pub fn strip_upstream_response(headers: &mut HeaderMap, cookie_name: &str) {
    strip_gateway_headers(headers);
    if cookie_name.is_empty() {
        return;
    }
    let all: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    let total = all.len();
    let kept: Vec<HeaderValue> = all
        .into_iter()
        .filter(|v| {
            let name = v
                .as_bytes()
                .split(|b| *b == b'=' || *b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            // A nameless cookie (`=taxgate_session=x`) comes back from browsers as
            // `taxgate_session=x`: it goes too.
            !name.is_empty() && !cookie_name_matches(name, cookie_name)
        })
        .collect();
    if kept.len() != total {
        headers.remove(header::SET_COOKIE);
        for v in kept {
            headers.append(header::SET_COOKIE, v);
        }
    }
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
                .map(|(name, _)| !cookie_name_matches(name.trim().as_bytes(), cookie_name))
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

/// Whether a cookie name is the session cookie's as some upstream reads it: case-insensitively
/// (ASP.NET), percent-decoded and with punctuation for `_` (PHP). Used to strip, never to
/// recognise a session.
fn cookie_name_matches(name: &[u8], cookie_name: &str) -> bool {
    let mut decoded = Vec::with_capacity(name.len());
    let mut i = 0;
    while let Some(&b) = name.get(i) {
        let pair = name.get(i + 1..i + 3).and_then(|h| {
            std::str::from_utf8(h)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        });
        match (b, pair) {
            (b'%', Some(d)) => {
                decoded.push(d);
                i += 3;
            }
            _ => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let want = cookie_name.as_bytes();
    decoded.len() == want.len()
        && decoded.iter().zip(want).all(|(a, b)| {
            let a = a.to_ascii_lowercase();
            a == b.to_ascii_lowercase()
                || (!a.is_ascii_alphanumeric() && !b.is_ascii_alphanumeric())
        })
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

/// The token of `Authorization: Bearer <token>` in one header value.
fn bearer_of(v: &HeaderValue) -> Option<&str> {
    let (scheme, token) = v.to_str().ok()?.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The token of the first `Authorization: Bearer <token>`, if present.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .find_map(bearer_of)
}

/// Two different session tokens in one request: which one decides would be the gateway's
/// guess, and the other would reach the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmbiguousToken;

/// The one session token a request presents, in any of its `Cookie` headers (the cookie
/// `cookie_name`) or `Authorization: Bearer` headers. The same token twice is fine; two
/// different ones are refused.
pub fn session_token<'a>(
    headers: &'a HeaderMap,
    cookie_name: &str,
) -> Result<Option<&'a str>, AmbiguousToken> {
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        // Recognised strictly (`taxgate_session =x` is no session), stripped loosely
        // ([`strip_cookie`] also removes that one before forwarding).
        .filter(|(n, _)| *n == cookie_name)
        .map(|(_, v)| v.trim());
    let bearers = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(bearer_of);
    let mut found: Option<&str> = None;
    for token in cookies.chain(bearers) {
        match found {
            Some(t) if t != token => return Err(AmbiguousToken),
            _ => found = Some(token),
        }
    }
    Ok(found)
}

/// Remove the session cookie from every `Cookie` header and every bearer token (any
/// `Authorization` whose scheme is `Bearer`, or that is not text) from `Authorization`; other
/// schemes pass. The upstream never sees a session token.
pub fn strip_session_tokens(headers: &mut HeaderMap, cookie_name: &str) {
    strip_cookie(headers, cookie_name);
    let is_bearer = |v: &HeaderValue| {
        v.to_str().map_or(true, |s| {
            s.trim_start()
                .get(..6)
                .is_some_and(|p| p.eq_ignore_ascii_case("bearer"))
        })
    };
    let all: Vec<HeaderValue> = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .cloned()
        .collect();
    if all.iter().any(is_bearer) {
        headers.remove(header::AUTHORIZATION);
        for v in all.into_iter().filter(|v| !is_bearer(v)) {
            headers.append(header::AUTHORIZATION, v);
        }
    }
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests fail loudly")]
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
    fn forwarded_for_is_appended_to_a_trusted_chain() {
        let mut h = map(&[("x-forwarded-for", "10.0.0.1")]);
        set_forwarded(&mut h, "127.0.0.1".parse().unwrap(), true, None);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn underscore_and_case_variants_of_controlled_headers_go() {
        let mut h = map(&[
            ("x_taxgate_role", "legal_representative"),
            ("X_TAXGATE_PERSON", "spoof"),
            ("x-taxgate_enterprise", "spoof"),
            ("x-http-method-override", "DELETE"),
            ("x_http_method_override", "DELETE"),
            ("x-original-url", "/api/declare"),
            ("X-Rewrite-Url", "/api/declare"),
            ("x_forwarded_for", "1.2.3.4"),
            ("x-forwarded-for", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("x_taxgatex", "keep"),
            ("x-http-methodx", "keep"),
            ("accept", "*/*"),
        ]);
        strip_client_controlled(&mut h, false);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["accept", "x-http-methodx", "x_taxgatex"]);
        // a trusted proxy's forwarding headers pass, but not in an underscore spelling
        let mut t = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x_forwarded_for", "6.6.6.6"),
        ]);
        strip_client_controlled(&mut t, true);
        assert_eq!(t.len(), 1);
        assert_eq!(t["x-forwarded-for"], "1.2.3.4");
    }

    #[test]
    fn punctuation_variants_and_other_forwarding_headers_go() {
        let mut h = map(&[
            ("x.taxgate.person", "spoof"),
            ("x~taxgate~role", "spoof"),
            ("x+taxgate+role", "spoof"),
            ("x!taxgate!role", "spoof"),
            ("x.http.method.override", "DELETE"),
            ("x-forwarded-prefix", "/admin"),
            ("x-forwarded-port", "443"),
            ("true-client-ip", "6.6.6.6"),
            ("cf-connecting-ip", "6.6.6.6"),
            ("x-remote-user", "wangfang"),
            ("x.forwarded.for", "6.6.6.6"),
            ("x-taxgatez", "keep"),
            ("accept", "*/*"),
        ]);
        strip_client_controlled(&mut h, false);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["accept", "x-taxgatez"]);
        // From a trusted proxy the forwarding headers pass, loose spellings never.
        let mut t = map(&[
            ("x-forwarded-prefix", "/etax"),
            ("x.forwarded.prefix", "/x"),
        ]);
        strip_client_controlled(&mut t, true);
        assert_eq!(t.len(), 1);
        assert_eq!(t["x-forwarded-prefix"], "/etax");
    }

    #[test]
    fn session_cookie_name_variants_are_stripped_but_never_recognised() {
        let c = "taxgate_session";
        let mut h = map(&[(
            "cookie",
            "TAXGATE_SESSION=a; taxgate%5Fsession=b; taxgate.session=c; keep=1",
        )]);
        assert_eq!(session_token(&h, c), Ok(None));
        strip_cookie(&mut h, c);
        assert_eq!(h["cookie"], "keep=1");
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_hop() {
        let trusted: Vec<ipnet::IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ];
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let at = |xff: &[&str]| {
            let pairs: Vec<(&str, &str)> = xff.iter().map(|v| ("x-forwarded-for", *v)).collect();
            client_address(peer, &map(&pairs), &trusted).to_string()
        };
        assert_eq!(at(&["6.6.6.6, 203.0.113.7, 10.1.1.1"]), "203.0.113.7");
        assert_eq!(at(&["6.6.6.6", "203.0.113.7:4711"]), "203.0.113.7");
        assert_eq!(at(&["[2001:db8::5]:80"]), "2001:db8::5");
        assert_eq!(at(&["10.2.2.2, 10.1.1.1"]), "10.2.2.2");
        assert_eq!(at(&[]), "127.0.0.1");
        // garbage from the client stops at the trusted hop that appended it
        assert_eq!(at(&["203.0.113.7, garbage, 10.1.1.1"]), "10.1.1.1");
        // an untrusted peer's header is ignored
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        let h = map(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(client_address(other, &h, &trusted), other);
    }

    #[test]
    fn two_different_session_tokens_are_ambiguous() {
        let c = "taxgate_session";
        let tok =
            |pairs: &[(&str, &str)]| session_token(&map(pairs), c).map(|t| t.map(String::from));
        assert_eq!(
            tok(&[("cookie", "a=1; taxgate_session=T")]),
            Ok(Some("T".into()))
        );
        assert_eq!(
            tok(&[
                ("authorization", "Bearer T"),
                ("cookie", "taxgate_session=T")
            ]),
            Ok(Some("T".into()))
        );
        let ambiguous = [
            vec![("authorization", "Bearer T"), ("authorization", "Bearer U")],
            vec![
                ("cookie", "taxgate_session=T"),
                ("cookie", "taxgate_session=U"),
            ],
            vec![("cookie", "taxgate_session=T; taxgate_session=U")],
            vec![
                ("cookie", "taxgate_session=T"),
                ("authorization", "Bearer U"),
            ],
        ];
        for pairs in ambiguous {
            assert_eq!(tok(&pairs), Err(AmbiguousToken), "{pairs:?}");
        }
        assert_eq!(tok(&[("accept", "*/*")]), Ok(None));
    }

    #[test]
    fn every_session_token_is_stripped_other_credentials_pass() {
        let mut h = map(&[
            ("authorization", "Bearer T"),
            ("authorization", "bearer U"),
            ("authorization", "Basic dXNlcjpwdw=="),
            ("cookie", "taxgate_session=T; a=1"),
            ("cookie", "taxgate_session=U"),
        ]);
        strip_session_tokens(&mut h, "taxgate_session");
        let auth: Vec<&str> = h
            .get_all("authorization")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(auth, ["Basic dXNlcjpwdw=="]);
        assert_eq!(h["cookie"], "a=1");
    }

    #[test]
    fn an_upstream_cannot_set_the_session_cookie_or_identity_headers() {
        let mut h = map(&[
            ("set-cookie", "taxgate_session=EVIL; Path=/; HttpOnly"),
            ("set-cookie", "taxgate_session; Path=/"),
            ("set-cookie", " taxgate_session =x"),
            ("set-cookie", "=taxgate_session=EVIL; Path=/"),
            ("set-cookie", "TAXGATE_SESSION=x"),
            ("set-cookie", "other=1; Path=/"),
            ("x-taxgate-person", "spoof"),
            ("x_taxgate_role", "spoof"),
            ("content-type", "text/plain"),
        ]);
        strip_upstream_response(&mut h, "taxgate_session");
        let cookies: Vec<&str> = h
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(cookies, ["other=1; Path=/"]);
        assert_eq!(h.len(), 2);
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

#[cfg(test)]
mod override_tests {
    use super::override_header;
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn override_headers_are_found_in_any_spelling_but_the_callers_own() {
        let mut h = HeaderMap::new();
        h.insert("x-original-uri", HeaderValue::from_static("/api/declare"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        assert!(override_header(&h, Some("x-original-uri")).is_none());
        assert_eq!(
            override_header(&h, None).map(|n| n.as_str()),
            Some("x-original-uri")
        );
        for name in [
            "x-http-method-override",
            "x_http_method_override",
            "X-Remote-User",
            "x.original.url",
        ] {
            let mut h = HeaderMap::new();
            h.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap_or(http::header::ACCEPT),
                HeaderValue::from_static("DELETE"),
            );
            assert!(
                override_header(&h, Some("x-original-uri")).is_some(),
                "{name}"
            );
        }
    }
}
