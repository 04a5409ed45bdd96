//! `[[routes]]`: which path prefixes (and methods) go to which upstream, under which action.

use std::collections::HashSet;

use serde::Deserialize;

/// One `[[routes]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The path prefix, matched on segment boundaries: plain characters only, outside the gateway's
    /// own paths.
    pub prefix: String,
    /// The methods it accepts, in capitals; absent: every method.
    pub methods: Option<Vec<String>>,
    /// The downstream action of the policy schema its requests are decided as.
    pub action: String,
    /// The `name` of the `[[upstreams]]` entry it forwards to.
    pub upstream: String,
}

/// Check `[[routes]]` in order; `upstreams` are the names `[[upstreams]]` defines, in order.
pub(super) fn validate<E>(
    routes: &[RouteConfig],
    upstreams: &[&str],
    err: &impl Fn(&str, String) -> E,
) -> Result<(), E> {
    let mut seen = HashSet::new();
    for (i, route) in routes.iter().enumerate() {
        if !route.prefix.starts_with('/') {
            return Err(err(
                &format!("routes[{i}].prefix"),
                format!("`{}` must start with `/`", route.prefix),
            ));
        }
        // Letters, digits, `-._~` and `/` only: every upstream reads those alike, so a
        // prefix cannot be spelt two ways (`%3A` and `:`, raw and encoded UTF-8).
        let plain = route
            .prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/'));
        if !plain
            || taxgate_proxy::path::canonical(&route.prefix)
                .ok()
                .as_deref()
                != Some(route.prefix.as_str())
        {
            return Err(err(
                &format!("routes[{i}].prefix"),
                format!(
                    "`{}` is not a plain path: letters, digits, `-._~` and `/` only, no dot or empty segments",
                    route.prefix
                ),
            ));
        }
        if shadows_reserved(&route.prefix) {
            return Err(err(
                &format!("routes[{i}].prefix"),
                format!(
                    "`{}` lies inside the gateway's own paths (/auth, /account, /login, /assets)",
                    route.prefix
                ),
            ));
        }
        if !upstreams.contains(&route.upstream.as_str()) {
            return Err(err(
                &format!("routes[{i}].upstream"),
                format!(
                    "unknown upstream `{}`; defined upstreams: {}",
                    route.upstream,
                    if upstreams.is_empty() {
                        "none".to_string()
                    } else {
                        upstreams.join(", ")
                    }
                ),
            ));
        }
        if let Some(methods) = &route.methods {
            if methods.is_empty() {
                return Err(err(
                    &format!("routes[{i}].methods"),
                    "must not be empty (leave it out to allow any method)".into(),
                ));
            }
            for m in methods {
                if http::Method::from_bytes(m.as_bytes()).is_err() || m.to_ascii_uppercase() != *m {
                    return Err(err(
                        &format!("routes[{i}].methods"),
                        format!("`{m}` is not an HTTP method in capitals like `GET`"),
                    ));
                }
            }
        }
        let key = (route.prefix.clone(), route.methods.clone());
        if !seen.insert(key) {
            return Err(err(
                &format!("routes[{i}].prefix"),
                format!("`{}` is routed twice with the same methods", route.prefix),
            ));
        }
    }
    Ok(())
}

/// Path prefixes the gateway serves itself.
const RESERVED: [&str; 4] = ["/auth", "/account", "/login", "/assets"];

/// Whether a request path belongs to the gateway itself (checked on every request: no
/// allocation).
pub fn is_reserved_path(path: &str) -> bool {
    RESERVED.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
    })
}

/// Whether a route prefix lies inside the gateway's own paths (a parent prefix such as `/` is
/// fine: the gateway's paths are matched before any route).
fn shadows_reserved(prefix: &str) -> bool {
    is_reserved_path(prefix)
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{BASE, load};

    #[test]
    fn unknown_upstream_is_named() {
        let e = load(&BASE.replace("upstream = \"etax\"", "upstream = \"nope\"")).unwrap_err();
        assert_eq!(e.key, "routes[0].upstream");
        assert!(e.message.contains("`nope`"), "{e}");
    }

    #[test]
    fn route_may_not_shadow_gateway_paths() {
        let e = load(&BASE.replace("/api/declare", "/auth/x")).unwrap_err();
        assert_eq!(e.key, "routes[0].prefix");
    }

    #[test]
    fn unknown_action_is_named() {
        let c = load(BASE).unwrap();
        let e = c
            .check_actions("test.toml", &["query".to_string()])
            .unwrap_err();
        assert_eq!(e.key, "routes[0].action");
    }

    #[test]
    fn second_route_index_in_key() {
        let text = format!(
            "{BASE}\n[[routes]]\nprefix = \"/api/q\"\naction = \"query\"\nupstream = \"zzz\"\n"
        );
        assert_eq!(load(&text).unwrap_err().key, "routes[1].upstream");
    }
}
