//! The browser pages `GET /login` and `GET /account` and their assets under `/assets/`, embedded
//! in the binary so the gateway needs no files at run time.
//!
//! The pages talk only to the JSON API (CONTRACT section 3). Every answer carries a strict
//! Content-Security-Policy: the assets hold no inline script or style, which the tests check by
//! scanning the embedded files. HTML is `no-store` (it may carry the legacy-login marker, which
//! changes at the sunset); assets are revalidated on every use against a content-hash ETag, because
//! their names carry no hash.

use std::sync::LazyLock;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, Code};
use taxgate_proxy::body::{Body, empty, full};

/// The Content-Security-Policy of every page and asset.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The marker in `login.html` that the page reads to show the legacy (enterprise password) tab.
const LEGACY_OFF: &str = r#"<meta name="taxgate-legacy" content="0">"#;
const LEGACY_ON: &str = r#"<meta name="taxgate-legacy" content="1">"#;

const LOGIN_HTML: &str = include_str!("../assets/login.html");
const ACCOUNT_HTML: &str = include_str!("../assets/account.html");

const HTML: &str = "text/html; charset=utf-8";

/// A static file under `/assets/`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../assets/app.css"),
    },
    Asset {
        name: "i18n.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/i18n.js"),
    },
    Asset {
        name: "common.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/common.js"),
    },
    Asset {
        name: "login.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/login.js"),
    },
    Asset {
        name: "account.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/account.js"),
    },
    Asset {
        name: "security.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/security.js"),
    },
];

/// Content-hash ETags of [`ASSETS`], in the same order, computed once.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            // The first 12 of SHA-256's 32 bytes.
            let head: Vec<u8> = Sha256::digest(a.bytes).into_iter().take(12).collect();
            format!("\"{}\"", hex::encode(head))
        })
        .collect()
});

/// `login.html` with the legacy marker switched on, built once.
static LOGIN_LEGACY: LazyLock<Bytes> =
    LazyLock::new(|| Bytes::from(LOGIN_HTML.replacen(LEGACY_OFF, LEGACY_ON, 1)));

/// The marker in `login.html` that tells the page where a login lands without `next`.
const HOME_DEFAULT: &str = r#"<meta name="taxgate-home" content="/account">"#;

/// A path a login may return to (`next`, `[pages] home_url`; CONTRACT section 13): on the
/// gateway's own origin, so it starts with exactly one `/` and never `//` or `/\`. Stricter than
/// the contract on purpose: no backslash, whitespace or control character anywhere, no encoded
/// slash, backslash or percent (`%2f`, `%5c`, `%25`, which a second decoding could turn into
/// `//`), no `..` segment, and only the characters of a plain path and query — so the value can
/// also stand in an HTML attribute unescaped. The login page applies the same rule.
pub fn safe_return_path(p: &str) -> bool {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-._~/?=&%+,:@".contains(c);
    let lower = p.to_ascii_lowercase();
    p.len() <= 512
        && p.starts_with('/')
        && !p.starts_with("//")
        && p.chars().all(plain)
        && !["%2f", "%5c", "%25", "%00"]
            .iter()
            .any(|e| lower.contains(e))
        && !p
            .split(['/', '?'])
            .any(|seg| seg == ".." || seg == "." || seg == "%2e%2e" || seg == "%2e")
        && !lower.contains("%2e")
}

/// The marker in `login.html` that turns 模拟扫码 on (`taxgate demo` only).
const DEMO_OFF: &str = r#"<meta name="taxgate-demo" content="0">"#;
const DEMO_ON: &str = r#"<meta name="taxgate-demo" content="1">"#;

/// What a page path resolves to.
enum Target {
    Html(Bytes),
    /// The asset and its position in [`ASSETS`] (and so in [`ETAGS`]).
    Asset(usize, &'static Asset),
    Missing,
}

fn resolve(path: &str, legacy_allowed: bool) -> Option<Target> {
    match path {
        "/login" if legacy_allowed => Some(Target::Html(LOGIN_LEGACY.clone())),
        "/login" => Some(Target::Html(Bytes::from_static(LOGIN_HTML.as_bytes()))),
        "/account" => Some(Target::Html(Bytes::from_static(ACCOUNT_HTML.as_bytes()))),
        "/assets" => Some(Target::Missing),
        _ => {
            let name = path.strip_prefix("/assets/")?;
            Some(
                ASSETS
                    .iter()
                    .enumerate()
                    .find(|(_, a)| a.name == name)
                    .map_or(Target::Missing, |(i, asset)| Target::Asset(i, asset)),
            )
        }
    }
}

/// `GET` of a page path: `/login`, `/account` or `/assets/<name>` (`path` without the query).
/// `None` means "not a page path". An unknown name under `/assets/` is a 404 error answer.
/// `legacy_allowed` is whether the legacy enterprise-password login is still open (before
/// `login.legacy_login_until`): the login page then shows its tab.
pub fn page(path: &str, legacy_allowed: bool) -> Option<Response<Body>> {
    let options = PageOptions {
        legacy_allowed,
        home_url: "/account",
        demo: false,
    };
    serve(&Method::GET, path, &HeaderMap::new(), &options)
}

/// What the login page is told about this gateway.
#[derive(Debug, Clone, Copy)]
pub struct PageOptions<'a> {
    /// The legacy (enterprise password) login is still open: the page shows its tab.
    pub legacy_allowed: bool,
    /// `[pages] home_url`: where a login lands without `next`.
    pub home_url: &'a str,
    /// `taxgate demo`: the face step offers 模拟扫码.
    pub demo: bool,
}

/// Like [`page`] for any method: `HEAD` answers the same headers without a body, an asset whose
/// ETag matches `If-None-Match` answers 304, other methods 405. `options` says what the login
/// page is told: where a login lands, and whether this is `taxgate demo`.
pub fn serve(
    method: &Method,
    path: &str,
    request_headers: &HeaderMap,
    options: &PageOptions<'_>,
) -> Option<Response<Body>> {
    let mut target = resolve(path, options.legacy_allowed)?;
    let custom_home = options.home_url != "/account" && safe_return_path(options.home_url);
    if let Target::Html(bytes) = &target
        && path == "/login"
        && (custom_home || options.demo)
    {
        let mut html = String::from_utf8_lossy(bytes).into_owned();
        if custom_home {
            let home = format!(
                r#"<meta name="taxgate-home" content="{}">"#,
                options.home_url
            );
            html = html.replacen(HOME_DEFAULT, &home, 1);
        }
        if options.demo {
            html = html.replacen(DEMO_OFF, DEMO_ON, 1);
        }
        target = Target::Html(Bytes::from(html));
    }
    if method != Method::GET && method != Method::HEAD {
        let mut resp = ApiError::from(Code::MethodNotAllowed).into_response();
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Some(secured(resp));
    }
    let resp = match target {
        Target::Missing => ApiError::from(Code::NotFound).into_response(),
        Target::Html(bytes) => ok(method, bytes, HTML, "no-store", None),
        Target::Asset(i, asset) => {
            let etag = ETAGS.get(i).map(String::as_str);
            if etag.is_some_and(|tag| etag_matches(request_headers, tag)) {
                let mut resp = Response::new(empty());
                *resp.status_mut() = StatusCode::NOT_MODIFIED;
                set_validators(resp.headers_mut(), "no-cache", etag);
                resp
            } else {
                ok(
                    method,
                    Bytes::from_static(asset.bytes),
                    asset.content_type,
                    "no-cache",
                    etag,
                )
            }
        }
    };
    Some(secured(resp))
}

fn ok(
    method: &Method,
    bytes: Bytes,
    content_type: &'static str,
    cache: &'static str,
    etag: Option<&str>,
) -> Response<Body> {
    let len = bytes.len();
    let body = if method == Method::HEAD {
        empty()
    } else {
        full(bytes)
    };
    let mut resp = Response::new(body);
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    set_validators(headers, cache, etag);
    resp
}

fn set_validators(headers: &mut HeaderMap, cache: &'static str, etag: Option<&str>) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Some(value) = etag.and_then(|tag| HeaderValue::from_str(tag).ok()) {
        headers.insert(header::ETAG, value);
    }
}

/// `If-None-Match` holding `tag` (or `*`), weak or strong: a GET only needs the weak comparison.
fn etag_matches(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|candidate| candidate.trim())
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == tag)
}

/// The headers every page, asset and error answer of this module carries.
fn secured(mut resp: Response<Body>) -> Response<Body> {
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    const PLAIN: PageOptions<'static> = PageOptions {
        legacy_allowed: false,
        home_url: "/account",
        demo: false,
    };

    #[test]
    fn return_paths_stay_on_this_origin() {
        for ok in [
            "/account",
            "/",
            "/api/declare/vat?year=2026&q=a%20b",
            "/etax/home",
        ] {
            assert!(safe_return_path(ok), "{ok}");
        }
        for bad in [
            "",
            "account",
            "//evil.example",
            "/\\evil.example",
            "/\\/evil",
            "https://evil.example/",
            "/%2f%2fevil.example",
            "/%2F/evil",
            "/%5cevil",
            "/%252f%252fevil",
            "/a/../b",
            "/a/%2e%2e/b",
            "/./x",
            "/a b",
            "/a\tb",
            "/a\"b",
            "/a<b",
            "/javascript:alert(1)//",
        ] {
            assert!(!safe_return_path(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_login_page_carries_home_url_and_the_demo_marker() {
        let custom = PageOptions {
            home_url: "/etax/home",
            demo: true,
            ..PLAIN
        };
        let page = serve(&Method::GET, "/login", &HeaderMap::new(), &custom).unwrap();
        let body = body_of(page).await;
        assert!(body.contains(r#"<meta name="taxgate-home" content="/etax/home">"#));
        assert!(body.contains(r#"<meta name="taxgate-demo" content="1">"#));
        let plain = body_of(page_of("/login")).await;
        assert!(plain.contains(r#"<meta name="taxgate-home" content="/account">"#));
        assert!(plain.contains(r#"<meta name="taxgate-demo" content="0">"#));
        // A home_url that is not a safe path never reaches the page.
        let hostile = PageOptions {
            home_url: "/\"><script>",
            ..PLAIN
        };
        let page = serve(&Method::GET, "/login", &HeaderMap::new(), &hostile).unwrap();
        assert!(!body_of(page).await.contains("<script>"));
    }

    fn page_of(path: &str) -> Response<Body> {
        page(path, false).unwrap()
    }

    async fn body_of(resp: Response<Body>) -> String {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn assert_secured(resp: &Response<Body>) {
        let h = resp.headers();
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
    }

    fn html_files() -> [(&'static str, &'static str); 2] {
        [("login.html", LOGIN_HTML), ("account.html", ACCOUNT_HTML)]
    }

    #[tokio::test]
    async fn pages_are_html_with_csp_and_no_store() {
        for path in ["/login", "/account"] {
            let resp = page(path, false).unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            assert_secured(&resp);
            assert_eq!(resp.headers()[header::CONTENT_TYPE], HTML);
            assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
            let body = body_of(resp).await;
            assert!(body.starts_with("<!doctype html>"), "{path}");
        }
    }

    #[tokio::test]
    async fn every_asset_is_served_with_its_type_and_etag() {
        let expected = [
            ("app.css", "text/css; charset=utf-8"),
            ("i18n.js", "text/javascript; charset=utf-8"),
            ("common.js", "text/javascript; charset=utf-8"),
            ("login.js", "text/javascript; charset=utf-8"),
            ("account.js", "text/javascript; charset=utf-8"),
            ("security.js", "text/javascript; charset=utf-8"),
        ];
        assert_eq!(expected.len(), ASSETS.len());
        for (name, content_type) in expected {
            let resp = page(&format!("/assets/{name}"), false).unwrap();
            assert_eq!(resp.status(), 200, "{name}");
            assert_secured(&resp);
            assert_eq!(resp.headers()[header::CONTENT_TYPE], content_type);
            assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-cache");
            let etag = resp.headers()[header::ETAG].to_str().unwrap().to_string();
            assert!(etag.starts_with('"') && etag.len() == 26, "{etag}");
            assert!(!body_of(resp).await.is_empty());
        }
    }

    #[tokio::test]
    async fn unknown_assets_are_404() {
        for path in [
            "/assets",
            "/assets/",
            "/assets/nope.js",
            "/assets/../src/web.rs",
            "/assets/app.css/x",
        ] {
            let resp = page(path, false).unwrap();
            assert_eq!(resp.status(), 404, "{path}");
            assert_secured(&resp);
            let body = body_of(resp).await;
            assert!(body.contains("\"not_found\""), "{path}: {body}");
        }
    }

    #[test]
    fn other_paths_are_not_pages() {
        for path in [
            "/",
            "/auth/login",
            "/account/identities",
            "/loginx",
            "/api/declare",
            "/login/",
        ] {
            assert!(page(path, true).is_none(), "{path}");
        }
    }

    #[tokio::test]
    async fn head_has_headers_without_body() {
        let get = page("/assets/login.js", false).unwrap();
        let head = serve(&Method::HEAD, "/assets/login.js", &HeaderMap::new(), &PLAIN).unwrap();
        assert_eq!(head.status(), 200);
        assert_secured(&head);
        assert_eq!(
            head.headers()[header::CONTENT_LENGTH],
            get.headers()[header::CONTENT_LENGTH]
        );
        assert!(body_of(head).await.is_empty());
        let head = serve(&Method::HEAD, "/login", &HeaderMap::new(), &PLAIN).unwrap();
        assert_eq!(head.headers()[header::CONTENT_TYPE], HTML);
        assert!(body_of(head).await.is_empty());
    }

    #[tokio::test]
    async fn matching_etag_is_not_modified() {
        let etag = page("/assets/app.css", false).unwrap().headers()[header::ETAG].clone();
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, etag.clone());
        let resp = serve(&Method::GET, "/assets/app.css", &headers, &PLAIN).unwrap();
        assert_eq!(resp.status(), 304);
        assert_eq!(resp.headers()[header::ETAG], etag);
        assert!(body_of(resp).await.is_empty());

        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"stale\""));
        let resp = serve(&Method::GET, "/assets/app.css", &headers, &PLAIN).unwrap();
        assert_eq!(resp.status(), 200);
    }

    #[tokio::test]
    async fn other_methods_are_405() {
        let resp = serve(&Method::POST, "/login", &HeaderMap::new(), &PLAIN).unwrap();
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()[header::ALLOW], "GET, HEAD");
        assert_secured(&resp);
    }

    #[tokio::test]
    async fn legacy_marker_only_when_allowed() {
        assert!(
            LOGIN_HTML.contains(LEGACY_OFF),
            "the marker to switch is in login.html"
        );
        let on = body_of(page("/login", true).unwrap()).await;
        assert!(on.contains(LEGACY_ON));
        assert!(!on.contains(LEGACY_OFF));
        let off = body_of(page("/login", false).unwrap()).await;
        assert!(off.contains(LEGACY_OFF));
        assert!(!off.contains(LEGACY_ON));
        // The tab itself starts hidden: without the marker the page never shows it.
        assert!(off.contains(r#"id="tab-legacy""#));
        let account = body_of(page("/account", true).unwrap()).await;
        assert!(!account.contains("taxgate-legacy"));
    }

    /// Every `<tag ...>` of an HTML file, lower-cased.
    fn tags(html: &str) -> Vec<String> {
        html.split('<')
            .skip(1)
            .filter_map(|rest| {
                rest.split_once('>')
                    .map(|(tag, _)| tag.to_ascii_lowercase())
            })
            .collect()
    }

    #[test]
    fn html_has_no_inline_script_or_style() {
        for (name, html) in html_files() {
            for tag in tags(html) {
                if tag.starts_with("script") {
                    assert!(tag.contains(" src=\"/assets/"), "{name}: inline <{tag}>");
                }
                assert!(!tag.starts_with("style"), "{name}: <style> element");
                assert!(
                    !tag.contains("style="),
                    "{name}: style attribute in <{tag}>"
                );
                assert!(
                    !tag.contains("javascript:"),
                    "{name}: javascript: URL in <{tag}>"
                );
                let handler = tag
                    .split_whitespace()
                    .any(|attr| attr.starts_with("on") && attr.contains('='));
                assert!(!handler, "{name}: event handler attribute in <{tag}>");
            }
            // Scripts are empty elements with a src: nothing between the tags.
            assert!(!html.contains("<script>"), "{name}");
            for piece in html.split("</script>").filter(|p| p.contains("<script")) {
                let after_open = piece.rsplit_once('>').map(|(_, rest)| rest).unwrap_or("");
                assert!(after_open.trim().is_empty(), "{name}: script body");
            }
        }
    }

    #[test]
    fn assets_load_only_from_self() {
        for (name, html) in html_files() {
            assert!(
                !html.contains("http://") && !html.contains("https://"),
                "{name}"
            );
            for tag in tags(html) {
                for attr in ["src=\"", "href=\""] {
                    if let Some((_, rest)) = tag.split_once(attr) {
                        let url = rest.split('"').next().unwrap();
                        if url == "data:," {
                            continue; // the empty favicon: no request at all
                        }
                        let asset = url.strip_prefix("/assets/");
                        assert!(asset.is_some(), "{name}: {url} is not under /assets/");
                        assert!(
                            ASSETS.iter().any(|a| Some(a.name) == asset),
                            "{name}: {url}"
                        );
                    }
                }
            }
        }
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.bytes).unwrap();
            assert!(!text.contains(".innerHTML"), "{}: innerHTML", asset.name);
            assert!(!text.contains("eval("), "{}: eval", asset.name);
            assert!(
                !text.contains("localStorage.setItem('taxgate.token"),
                "{}",
                asset.name
            );
        }
    }

    /// Every `attr="value"` in `text`.
    fn attr_values<'a>(text: &'a str, attr: &str) -> Vec<&'a str> {
        let needle = format!(" {attr}=\"");
        text.match_indices(&needle)
            .filter_map(|(i, _)| text[i + needle.len()..].split('"').next())
            .collect()
    }

    #[test]
    fn every_translated_string_has_english() {
        let i18n = std::str::from_utf8(ASSETS[1].bytes).unwrap();
        assert_eq!(ASSETS[1].name, "i18n.js");
        for (name, html) in html_files() {
            for attr in [
                "data-i18n",
                "data-i18n-aria-label",
                "data-i18n-alt",
                "data-i18n-placeholder",
            ] {
                for key in attr_values(html, attr) {
                    assert!(
                        i18n.contains(&format!("'{key}':")),
                        "{name}: no English for `{key}`"
                    );
                }
            }
        }
    }

    #[test]
    fn ids_the_scripts_use_exist() {
        let pages = [("login.js", LOGIN_HTML), ("account.js", ACCOUNT_HTML)];
        for (script, html) in pages {
            let asset = ASSETS.iter().find(|a| a.name == script).unwrap();
            let js = std::str::from_utf8(asset.bytes).unwrap();
            let ids = attr_values(html, "id");
            for (i, _) in js.match_indices("$('") {
                let rest = &js[i + 3..];
                let Some((id, after)) = rest.split_once('\'') else {
                    continue;
                };
                if !after.starts_with(')') {
                    continue; // built from pieces, e.g. $('step-' + name)
                }
                assert!(
                    ids.contains(&id),
                    "{script} uses #{id}, missing from the page"
                );
            }
        }
    }

    #[test]
    fn ids_are_unique() {
        for (name, html) in html_files() {
            let mut ids = attr_values(html, "id");
            let total = ids.len();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), total, "{name}: duplicate id");
        }
    }
}
