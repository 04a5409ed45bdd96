//! The device a login comes from (CONTRACT section 11): the user agent, its family (browser and
//! platform, parsed by `woothee`, a maintained port of the Woothee project's shared
//! user-agent rules) and the client's network. The full client address is never kept with a
//! session: an IPv4 address becomes its /24 (`203.0.113.*`), an IPv6 address its /64
//! (`2001:db8:1:2::*`).

use std::net::IpAddr;
use std::sync::LazyLock;

use http::HeaderMap;
use taxgate_store::SessionDevice;

/// The longest user agent kept (characters).
const USER_AGENT_MAX: usize = 256;

static PARSER: LazyLock<woothee::parser::Parser> = LazyLock::new(woothee::parser::Parser::new);

tokio::task_local! {
    /// The device of the request completing a login, set by the second-factor endpoints
    /// (`step_up::second_factor`) around the flow that issues the session, so the shared flows
    /// keep their signatures.
    pub static LOGIN_DEVICE: SessionDevice;
}

/// The device of the request completing a login now; empty outside one.
pub fn current() -> SessionDevice {
    LOGIN_DEVICE.try_with(Clone::clone).unwrap_or_default()
}

/// The device a request with `headers` from `client` comes from.
pub fn of_request(headers: &HeaderMap, client: IpAddr) -> SessionDevice {
    let user_agent: String = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(USER_AGENT_MAX)
        .collect();
    SessionDevice {
        ua_family: family(&user_agent),
        user_agent,
        client_net: network(client),
    }
}

/// `Browser/Platform` (e.g. `Chrome/Windows 10`), `other` for an agent nobody recognises.
pub fn family(user_agent: &str) -> String {
    match PARSER.parse(user_agent) {
        Some(r) if r.name != "UNKNOWN" => format!("{}/{}", r.name, r.os),
        _ => "other".to_string(),
    }
}

/// The client's network as shown: `203.0.113.*` for IPv4 (also IPv4-mapped IPv6),
/// `2001:db8:1:2::*` for IPv6.
pub fn network(ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.*")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let head: Vec<String> = s.iter().take(4).map(|g| format!("{g:x}")).collect();
            format!("{}::*", head.join(":"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_masked() {
        assert_eq!(network("203.0.113.7".parse().unwrap()), "203.0.113.*");
        assert_eq!(
            network("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::*"
        );
        assert_eq!(
            network("::ffff:198.51.100.9".parse().unwrap()),
            "198.51.100.*"
        );
        assert_eq!(network("::1".parse().unwrap()), "0:0:0:0::*");
    }

    #[test]
    fn families_name_browser_and_platform() {
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
        assert_eq!(family(chrome), "Chrome/Windows 10");
        assert_eq!(family("made-up/1"), "other");
        assert_eq!(family(""), "other");
    }

    #[test]
    fn user_agents_are_truncated_and_cleaned() {
        let mut h = HeaderMap::new();
        let long = format!("x{}", "a".repeat(1000));
        h.insert(http::header::USER_AGENT, long.parse().unwrap());
        let d = of_request(&h, "203.0.113.7".parse().unwrap());
        assert_eq!(d.user_agent.chars().count(), USER_AGENT_MAX);
        assert_eq!(d.client_net, "203.0.113.*");
    }
}
