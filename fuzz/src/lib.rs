//! The fuzz targets' bodies. Each takes arbitrary bytes, feeds them to one parser of outside
//! input, and checks the properties that must hold whatever the input: no panic, and what the
//! parser accepts is well formed (round trips, no token leaks past the header hygiene).

use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue, header};

/// Split `data` at the first `0xff` bytes into up to `N` parts (the rest are empty).
fn parts<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut out = [&data[..0]; N];
    let mut rest = data;
    for slot in out.iter_mut().take(N - 1) {
        match rest.iter().position(|b| *b == 0xff) {
            Some(i) => {
                *slot = &rest[..i];
                rest = &rest[i + 1..];
            }
            None => {
                *slot = rest;
                rest = &rest[rest.len()..];
            }
        }
    }
    out[N - 1] = rest;
    out
}

/// `IdNumber`, `TaxpayerId`, `Phone`: whatever parses is normalised, and parses again to itself.
pub fn ids(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = taxgate_store::IdNumber::parse(s) {
        let again = taxgate_store::IdNumber::parse(id.as_str());
        assert!(
            again.as_ref().is_ok_and(|a| a == &id),
            "IdNumber round trip: {s:?}"
        );
        assert_eq!(id.as_str().len(), 18);
        let _ = id.masked();
        let _ = id.last_six();
    }
    if let Ok(t) = taxgate_store::TaxpayerId::parse(s) {
        let again = taxgate_store::TaxpayerId::parse(t.as_str());
        assert!(
            again.as_ref().is_ok_and(|a| a == &t),
            "TaxpayerId round trip: {s:?}"
        );
        assert!(t.as_str().is_ascii());
    }
    if let Ok(p) = taxgate_store::Phone::parse(s) {
        let again = taxgate_store::Phone::parse(p.as_str());
        assert!(
            again.as_ref().is_ok_and(|a| a == &p),
            "Phone round trip: {s:?}"
        );
        assert!(p.masked().contains("****"));
    }
}

/// `Config::from_toml`: any text is accepted or refused with an error naming the file; never a
/// panic. Relative paths resolve under a directory that does not exist, so nothing is created.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = Path::new("/nonexistent/taxgate-fuzz");
    if let Err(e) = taxgate_gateway::config::Config::from_toml(text, "fuzz.toml", base) {
        assert!(
            e.to_string().contains("fuzz.toml"),
            "error without the file: {e}"
        );
    }
}

/// Face-callback verification: arbitrary secret, timestamp, signature and body never panic and
/// never verify unless the signature is the real one; the real one always verifies.
pub fn face_verify(data: &[u8]) {
    use taxgate_gateway::authn::face::{sign, verify};
    let [secret, ts, sig, body] = parts::<4>(data);
    let ts = String::from_utf8_lossy(ts);
    let sig = String::from_utf8_lossy(sig);
    let now = 1_800_000_000;
    let real = sign(secret, ts.trim(), body);
    if verify(secret, Some(&ts), Some(&sig), body, now).is_ok() {
        assert_eq!(
            sig.trim().to_ascii_lowercase(),
            real,
            "a signature other than the real one verified"
        );
    }
    if let Ok(t) = ts.trim().parse::<i64>()
        && (now - t).abs() <= 300
    {
        assert!(verify(secret, Some(&ts), Some(&real), body, now).is_ok());
    }
}

/// Cookie and bearer parsing over arbitrary header bytes: the token found is a plain value, and
/// after stripping, no `taxgate_session` cookie nor the token is left for the upstream.
pub fn session_headers(data: &[u8]) {
    use taxgate_proxy::headers::{bearer, cookie, strip_cookie};
    let [c1, c2, auth] = parts::<3>(data);
    let mut h = HeaderMap::new();
    for v in [c1, c2] {
        if let Ok(v) = HeaderValue::from_bytes(v) {
            h.append(header::COOKIE, v);
        }
    }
    if let Ok(v) = HeaderValue::from_bytes(auth) {
        h.insert(header::AUTHORIZATION, v);
    }
    let name = "taxgate_session";
    if let Some(token) = cookie(&h, name) {
        assert!(!token.contains(';'), "cookie value spans pairs: {token:?}");
        assert_eq!(token, token.trim());
    }
    if let Some(token) = bearer(&h) {
        assert!(!token.is_empty());
        assert_eq!(token, token.trim());
    }
    let _ = taxgate_proxy::headers::session_token(&h, name);
    strip_cookie(&mut h, name);
    assert!(
        cookie(&h, name).is_none(),
        "the session cookie survived stripping"
    );
    for v in h.get_all(header::COOKIE) {
        let v = v.to_str().unwrap_or("");
        assert!(
            !v.split(';')
                .any(|p| p.split_once('=').is_some_and(|(n, _)| n.trim() == name)),
            "stripped Cookie still names the session: {v:?}"
        );
    }
    // Every session token goes before forwarding: none is left to find.
    taxgate_proxy::headers::strip_session_tokens(&mut h, name);
    assert_eq!(
        taxgate_proxy::headers::session_token(&h, name),
        Ok(None),
        "a session token survived stripping"
    );
    // The gateway's own namespace is recognised in any casing and with any punctuation for
    // `-`, as the loosest CGI backends read names.
    let read_as_cgi = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect()
    };
    if let Ok(n) = HeaderName::from_bytes(c1) {
        let read = read_as_cgi(n.as_str());
        assert_eq!(
            taxgate_proxy::headers::is_gateway_header(&n),
            read.starts_with("x-taxgate-")
        );
        // After the request hygiene (untrusted peer), no name a backend reads as ours, as a
        // method/URL override or as a forwarding header is left.
        let mut fwd = HeaderMap::new();
        fwd.append(n, HeaderValue::from_static("x"));
        taxgate_proxy::headers::strip_client_controlled(&mut fwd, false);
        const CONTROLLED: [&str; 11] = [
            "x-http-method-override",
            "x-http-method",
            "x-method-override",
            "x-original-url",
            "x-original-uri",
            "x-rewrite-url",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "forwarded",
            "x-real-ip",
        ];
        for k in fwd.keys() {
            let read = read_as_cgi(k.as_str());
            assert!(
                !read.starts_with("x-taxgate-") && !CONTROLLED.contains(&read.as_str()),
                "`{k}` reached the upstream"
            );
        }
    }
}

/// `api::Json` accessors on any JSON object: never a panic, and what they return obeys the
/// limits they were given.
pub fn json_fields(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if !value.is_object() {
        return;
    }
    let j = taxgate_gateway::api::Json(value);
    for name in [
        "entry",
        "account",
        "password",
        "challenge",
        "code",
        "nonce",
        "id_number",
        "x",
    ] {
        if let Ok(s) = j.str(name, 64) {
            assert!(!s.is_empty() && s.chars().count() <= 64);
        }
        if let Ok(Some(s)) = j.opt_str(name, 8) {
            assert!(s.chars().count() <= 8);
        }
        let _ = j.parse(name, taxgate_store::IdNumber::parse);
        let _ = j.parse(name, taxgate_store::TaxpayerId::parse);
        if let Ok(Some(list)) = j.opt_str_list(name) {
            assert!(list.len() <= 16);
        }
        // Login entry, role and permission names round trip through their one spelling.
        if let Ok(s) = j.str(name, 64) {
            use taxgate_store::{Entry, PermissionGroup, Role};
            if let Some(e) = Entry::parse(s) {
                assert_eq!(e.as_str(), s);
            }
            if let Some(r) = Role::parse(s) {
                assert_eq!(r.as_str(), s);
            }
            if let Some(g) = PermissionGroup::parse(s) {
                assert_eq!(g.as_str(), s);
            }
        }
    }
    // The grant of `POST /account/personnel` and of an application: what passes is a role an
    // enterprise may grant, enterprise permission groups without repeats, and a real time.
    if let Ok(req) = taxgate_gateway::account::Account::parse_binding_request(&j) {
        use taxgate_store::{PermissionGroup, Role};
        assert!(!matches!(req.role, Role::Agent | Role::LegacyEnterprise));
        if let Some(groups) = &req.permissions {
            assert!(!groups.contains(&PermissionGroup::PersonalTax));
            for (i, g) in groups.iter().enumerate() {
                assert!(!groups[..i].contains(g), "repeated group {g:?}");
            }
        }
        assert_eq!(
            req.valid_until.is_some(),
            j.0.get("valid_until").is_some_and(|v| !v.is_null())
        );
    }
}

/// The seed file of `taxgate import`, checked without a store: never a panic; every error names
/// a JSON path inside the file and says something; a file without errors kept every row.
pub fn seed(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let check = taxgate_store::check_seed_file(text);
    for e in &check.errors {
        assert!(!e.path.trim().is_empty(), "error without a path: {e:?}");
        assert!(!e.reason.trim().is_empty(), "error without a reason: {e:?}");
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        assert_eq!(
            check.errors.len(),
            1,
            "invalid JSON is one error: {check:?}"
        );
        return;
    };
    if check.errors.is_empty() {
        let len = |k: &str| value.get(k).and_then(|v| v.as_array()).map_or(0, Vec::len);
        assert_eq!(
            (
                check.persons,
                check.enterprises,
                check.bindings,
                check.agreements
            ),
            (
                len("persons"),
                len("enterprises"),
                len("bindings"),
                len("agency_agreements")
            ),
            "a clean file lost rows"
        );
    }
}

/// The request-path check (`taxgate_proxy::path`): whatever it accepts is canonical (checking
/// it again changes nothing), starts with `/`, and once percent-decoded holds no dot segment
/// (also before a `;parameter`), no empty segment, no backslash, no control and no further
/// percent-encoding: no backend's reading of a forwarded path can climb out of its route.
pub fn request_path(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(canonical) = taxgate_proxy::path::canonical(path) else {
        return;
    };
    let again = taxgate_proxy::path::canonical(&canonical);
    assert_eq!(
        again.as_deref(),
        Ok(&*canonical),
        "not idempotent: {path:?}"
    );
    assert!(canonical.starts_with('/'), "{path:?}");
    let b = canonical.as_bytes();
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("ascii hex");
            decoded.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
            i += 3;
        } else {
            decoded.push(b[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(decoded).expect("decodes to UTF-8");
    assert!(
        !decoded.contains('\\') && !decoded.chars().any(|c| c.is_ascii_control()),
        "{path:?}"
    );
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    for (n, seg) in segments.iter().enumerate() {
        let name = seg.split(';').next().unwrap_or(seg);
        assert!(name != "." && name != "..", "dot segment through: {path:?}");
        assert!(
            !seg.is_empty() || n == segments.len() - 1,
            "empty segment through: {path:?}"
        );
        let w = seg.as_bytes();
        assert!(
            !w.windows(3).any(|x| x[0] == b'%'
                && x[1].is_ascii_hexdigit()
                && x[2].is_ascii_hexdigit()),
            "double encoding through: {path:?}"
        );
    }
}
