//! The route table: the route is chosen by the path alone, the longest prefix on path-segment
//! boundaries; a method that route does not list is refused (405), never handed to a shorter
//! route. A request matching no route is never proxied.

use std::sync::Arc;

use http::Method;

use crate::config::RouteConfig;
use taxgate_proxy::Upstream;

/// One `[[routes]]` entry, resolved: its methods parsed and its upstream found.
pub struct Route {
    /// Position in the config, which also names the route in metrics and outcomes.
    pub index: usize,
    /// The path prefix, matched on segment boundaries.
    pub prefix: String,
    /// The methods it accepts; `None`: every method.
    pub methods: Option<Vec<Method>>,
    /// The downstream action of the policy schema this route's requests are decided as.
    pub action: String,
    /// Where its allowed requests go.
    pub upstream: Arc<Upstream>,
}

/// What the route table says of a request.
pub enum Selected<'a> {
    /// The route of the path, and it lists the method.
    Route(&'a Route),
    /// The path's route does not list the method: 405 with `Allow`, never a shorter route.
    MethodNotAllowed(&'a Route),
    /// Another reading of the path selects another route: 400 `invalid_path`.
    Ambiguous,
    /// No route's prefix matches: 404 `route_not_found`, never proxied.
    NoRoute,
}

impl Route {
    /// Methods compare case-sensitively (`post` is not `POST`); `HEAD` counts as `GET` only
    /// where `GET` is listed.
    pub fn allows(&self, method: &Method) -> bool {
        match &self.methods {
            None => true,
            Some(ms) => {
                ms.contains(method) || (method == Method::HEAD && ms.contains(&Method::GET))
            }
        }
    }

    /// The `Allow` header of a 405: the listed methods, with `HEAD` where `GET` is listed.
    pub fn allow_header(&self) -> String {
        let Some(ms) = &self.methods else {
            return String::new();
        };
        let mut names: Vec<&str> = ms.iter().map(Method::as_str).collect();
        if ms.contains(&Method::GET) && !ms.contains(&Method::HEAD) {
            names.push("HEAD");
        }
        names.join(", ")
    }
}

/// Every route, longest prefix first (config order between equal lengths).
pub struct RouteTable {
    /// Sorted by prefix length, longest first.
    routes: Vec<Route>,
}

impl RouteTable {
    /// `upstreams` are looked up by name; the config was validated, so every name resolves.
    pub fn new(configs: &[RouteConfig], upstreams: &[Arc<Upstream>]) -> Result<Self, String> {
        let mut routes = Vec::with_capacity(configs.len());
        for (index, c) in configs.iter().enumerate() {
            let upstream = upstreams
                .iter()
                .find(|u| *u.name == *c.upstream)
                .cloned()
                .ok_or_else(|| format!("routes[{index}].upstream: unknown `{}`", c.upstream))?;
            let methods = match &c.methods {
                Some(ms) => Some(
                    ms.iter()
                        .map(|m| Method::from_bytes(m.as_bytes()))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| format!("routes[{index}].methods: {e}"))?,
                ),
                None => None,
            };
            routes.push(Route {
                index,
                prefix: c.prefix.clone(),
                methods,
                action: c.action.clone(),
                upstream,
            });
        }
        routes.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then(a.index.cmp(&b.index))
        });
        Ok(RouteTable { routes })
    }

    /// The route of a canonical path (see [`taxgate_proxy::path`]): the longest prefix,
    /// whatever the method.
    pub fn lookup(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| prefix_matches(&r.prefix, path))
    }

    /// The route of a path as a upstream with another reading of paths would choose it
    /// (prefixes read the same way).
    fn lookup_read(&self, read: taxgate_proxy::path::Reading, path: &str) -> Option<usize> {
        self.routes
            .iter()
            .find(|r| {
                let prefix = read(&r.prefix).unwrap_or_else(|| r.prefix.clone());
                prefix_matches(&prefix, path)
            })
            .map(|r| r.index)
    }

    /// The route of a request (its canonical path), checked against its method. A path that
    /// another reading (see [`taxgate_proxy::path::READINGS`]: `;parameters` stripped, case
    /// folded, trailing dots and spaces trimmed) would move to another route is ambiguous.
    pub fn select(&self, path: &str, method: &Method) -> Selected<'_> {
        let found = self.lookup(path);
        for (_, read) in taxgate_proxy::path::READINGS {
            if let Some(other) = read(path)
                && self.lookup_read(read, &other) != found.map(|r| r.index)
            {
                return Selected::Ambiguous;
            }
        }
        let Some(route) = found else {
            return Selected::NoRoute;
        };
        if route.allows(method) {
            Selected::Route(route)
        } else {
            Selected::MethodNotAllowed(route)
        }
    }

    /// Route prefixes by index, for metrics labels.
    pub fn names(configs: &[RouteConfig]) -> Vec<String> {
        configs.iter().map(|c| c.prefix.clone()).collect()
    }
}

/// `/api/declare` matches `/api/declare` and `/api/declare/x`, not `/api/declarex`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    fn table() -> RouteTable {
        let up = Arc::new(
            Upstream::new(
                0,
                &taxgate_proxy::UpstreamOptions {
                    name: "etax".into(),
                    url: "http://127.0.0.1:9".into(),
                    timeout: std::time::Duration::from_secs(1),
                    pool_max_idle: 1,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let r = |prefix: &str, methods: Option<Vec<&str>>, action: &str| RouteConfig {
            prefix: prefix.into(),
            methods: methods.map(|m| m.into_iter().map(String::from).collect()),
            action: action.into(),
            upstream: "etax".into(),
        };
        RouteTable::new(
            &[
                r("/api", None, "query"),
                r("/api/declare", Some(vec!["POST"]), "declare"),
                r("/api/declare/status", Some(vec!["GET"]), "query"),
            ],
            &[up],
        )
        .unwrap()
    }

    #[test]
    fn the_path_alone_chooses_the_route() {
        let t = table();
        let action = |p: &str| t.lookup(p).map(|r| r.action.as_str());
        assert_eq!(action("/api/declare/vat"), Some("declare"));
        assert_eq!(action("/api/declare"), Some("declare"));
        assert_eq!(action("/api/declare/status"), Some("query"));
        assert_eq!(action("/api/declarex"), Some("query"));
        assert_eq!(action("/other"), None);
        assert_eq!(action("/ap"), None);
    }

    #[test]
    fn a_method_the_route_does_not_list_is_refused_not_handed_down() {
        let t = table();
        let verdict =
            |p: &str, m: &str| match t.select(p, &Method::from_bytes(m.as_bytes()).unwrap()) {
                Selected::Route(r) => format!("route {}", r.action),
                Selected::MethodNotAllowed(r) => format!("405 {}", r.allow_header()),
                Selected::Ambiguous => "400".to_string(),
                Selected::NoRoute => "404".to_string(),
            };
        assert_eq!(verdict("/api/declare/vat", "POST"), "route declare");
        // the shorter `/api` allows any method; the longer route's refusal stands
        for m in [
            "GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "post", "Post",
        ] {
            assert_eq!(verdict("/api/declare/vat", m), "405 POST", "{m}");
        }
        assert_eq!(verdict("/api/declare/status", "GET"), "route query");
        assert_eq!(verdict("/api/declare/status", "HEAD"), "route query");
        assert_eq!(verdict("/api/declare/status", "POST"), "405 GET, HEAD");
        assert_eq!(verdict("/api/other", "DELETE"), "route query");
        // Another reading would reach another route: refused, whatever the method.
        for p in [
            "/api/DECLARE/vat",
            "/api/Declare/vat",
            "/api/declare./vat",
            "/api/declare%20/vat",
            "/api/declare.json",
            "/api;x/declare/vat",
            "/api/declare%3Bx/vat",
        ] {
            assert_eq!(verdict(p, "POST"), "400", "{p}");
        }
        // Readings that stay on the route are fine.
        assert_eq!(verdict("/api/declare/VAT.json", "POST"), "route declare");
        assert_eq!(verdict("/other", "GET"), "404");
    }

    // ---- the invariant behind issue 15's path confusion ------------------------------------

    /// Percent-decode every `%XX` (what most upstreams do once).
    fn decode(p: &str) -> String {
        let b = p.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%'
                && i + 2 < b.len()
                && let (Some(h), Some(l)) = (
                    (b[i + 1] as char).to_digit(16),
                    (b[i + 2] as char).to_digit(16),
                )
            {
                out.push((h * 16 + l) as u8);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// RFC 3986 section 5.2.4.
    fn remove_dot_segments(p: &str) -> String {
        let mut out: Vec<&str> = Vec::new();
        let segs: Vec<&str> = p.split('/').collect();
        for (n, seg) in segs.iter().enumerate().skip(1) {
            let last = n == segs.len() - 1;
            match *seg {
                "." => {
                    if last {
                        out.push("");
                    }
                }
                ".." => {
                    out.pop();
                    if last {
                        out.push("");
                    }
                }
                s => out.push(s),
            }
        }
        format!("/{}", out.join("/"))
    }

    fn merge_slashes(p: &str) -> String {
        let mut out = String::new();
        for c in p.chars() {
            if !(c == '/' && out.ends_with('/')) {
                out.push(c);
            }
        }
        out
    }

    fn strip_params(p: &str) -> String {
        p.split('/')
            .map(|s| s.split(';').next().unwrap_or(s))
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Suffix pattern matching: a segment's `.extension` does not count.
    fn strip_ext(p: &str) -> String {
        p.split('/')
            .map(|s| match s.rfind('.') {
                Some(i) if i > 0 => &s[..i],
                _ => s,
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Windows: trailing dots and spaces of a segment do not count.
    fn trim_trailing(p: &str) -> String {
        p.split('/')
            .map(|s| s.trim_end_matches(['.', ' ']))
            .collect::<Vec<_>>()
            .join("/")
    }

    /// How different upstreams read a path the gateway forwards (each read against the route
    /// prefixes read the same way: `case` says whether it folds case).
    fn readings(forwarded: &str) -> Vec<(&'static str, String, bool)> {
        let once = decode(forwarded);
        vec![
            ("rfc3986", remove_dot_segments(&once), false),
            ("nginx", merge_slashes(&remove_dot_segments(&once)), false),
            ("tomcat", remove_dot_segments(&strip_params(&once)), false),
            (
                "iis",
                trim_trailing(&remove_dot_segments(&once.replace('\\', "/"))).to_ascii_lowercase(),
                true,
            ),
            (
                "double-decoding",
                remove_dot_segments(&decode(&once)),
                false,
            ),
            (
                "spring suffix",
                strip_ext(&remove_dot_segments(&once)),
                false,
            ),
        ]
    }

    fn piece() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            Just("api"),
            Just("declare"),
            Just("query"),
            Just("status"),
            Just("vat"),
            Just("."),
            Just(".."),
            Just("%2e"),
            Just("%2E"),
            Just("%2e%2e"),
            Just(".%2E"),
            Just("..;"),
            Just(";x=1"),
            Just(";"),
            Just("%3b"),
            Just("%2f"),
            Just("%2F"),
            Just("%5c"),
            Just("\\"),
            Just("%25"),
            Just("%252e"),
            Just("%2561"),
            Just("%61"),
            Just("%64"),
            Just("%64eclare"),
            Just("decl%61re"),
            Just(""),
            Just("~"),
            Just("%00"),
            Just("%"),
            Just("%zz"),
            Just("%e7%a8%8e"),
            Just("%c0%ae"),
            Just("a"),
            Just("/"),
        ]
        .prop_map(String::from)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// Any path the gateway forwards selects, under every upstream's reading, the route the
        /// gateway decided on; and what it forwards is canonical (checking it again changes
        /// nothing).
        #[test]
        fn every_reading_of_a_forwarded_path_selects_the_decided_route(
            segments in proptest::collection::vec(
                proptest::collection::vec(piece(), 1..4).prop_map(|p| p.concat()),
                0..6,
            ),
            trailing in proptest::bool::ANY,
        ) {
            use proptest::prelude::*;
            let mut path = format!("/{}", segments.join("/"));
            if trailing {
                path.push('/');
            }
            let t = table();
            let Ok(forwarded) = taxgate_proxy::path::canonical(&path) else {
                return Ok(());
            };
            let again = taxgate_proxy::path::canonical(&forwarded).map(|c| c.into_owned());
            prop_assert_eq!(again.as_deref(), Ok(&*forwarded));
            let decided = match t.select(&forwarded, &Method::GET) {
                Selected::Route(r) | Selected::MethodNotAllowed(r) => Some(r.index),
                Selected::Ambiguous => return Ok(()),
                Selected::NoRoute => None,
            };
            for (upstream, read, folds) in readings(&forwarded) {
                let chosen = if folds {
                    t.lookup_read(|p| Some(p.to_ascii_lowercase()), &read)
                } else {
                    t.lookup(&read).map(|r| r.index)
                };
                prop_assert_eq!(
                    chosen,
                    decided,
                    "{} reads {:?} (sent {:?}, forwarded {:?}) as {:?}",
                    upstream, read, path, forwarded, read
                );
            }
        }
    }
}
