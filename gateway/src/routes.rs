//! The route table: longest prefix (on path-segment boundaries) whose methods include the
//! request's method. A request matching no route is never proxied.

use std::sync::Arc;

use http::Method;

use crate::config::RouteConfig;
use crate::proxy::Upstream;

pub struct Route {
    pub index: usize,
    pub prefix: String,
    pub methods: Option<Vec<Method>>,
    /// The downstream action of the policy schema this route's requests are decided as.
    pub action: String,
    pub upstream: Arc<Upstream>,
}

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
                .find(|u| u.name == c.upstream)
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

    pub fn lookup(&self, path: &str, method: &Method) -> Option<&Route> {
        self.routes.iter().find(|r| {
            prefix_matches(&r.prefix, path)
                && r.methods.as_ref().is_none_or(|ms| ms.contains(method))
        })
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
mod tests {
    use super::*;
    use crate::config::UpstreamConfig;

    fn table() -> RouteTable {
        let up = Arc::new(
            Upstream::new(
                0,
                &UpstreamConfig {
                    name: "etax".into(),
                    url: "http://127.0.0.1:9".into(),
                    timeout_secs: 1,
                    pool_max_idle: 1,
                    tls: None,
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
    fn longest_prefix_then_method() {
        let t = table();
        let action = |p: &str, m: Method| t.lookup(p, &m).map(|r| r.action.as_str());
        assert_eq!(action("/api/declare/vat", Method::POST), Some("declare"));
        assert_eq!(action("/api/declare/status", Method::GET), Some("query"));
        // the longer prefix refuses GET, so the shorter one that allows any method wins
        assert_eq!(action("/api/declare/vat", Method::GET), Some("query"));
        assert_eq!(action("/api/declarex", Method::POST), Some("query"));
        assert_eq!(action("/other", Method::GET), None);
        assert_eq!(action("/ap", Method::GET), None);
    }
}
