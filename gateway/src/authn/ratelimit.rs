//! Per-client-address request limit on `/auth/*` (`auth_requests_per_minute`): a fixed one-minute
//! window per address, held in a bounded cache so a flood of addresses cannot grow memory.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub struct RateLimiter {
    per_minute: u32,
    windows: moka::sync::Cache<(IpAddr, i64), Arc<AtomicU32>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute,
            windows: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(120))
                .build(),
        }
    }

    /// Count one request from `addr` at unix time `now`; false once over the limit this minute.
    pub fn allow(&self, addr: IpAddr, now: i64) -> bool {
        let counter = self
            .windows
            .get_with((normalise(addr), now.div_euclid(60)), || {
                Arc::new(AtomicU32::new(0))
            });
        counter.fetch_add(1, Ordering::Relaxed) < self.per_minute
    }
}

/// A client address as the limits count it (an IPv6 client by its /64), for store budgets.
pub fn address_key(addr: IpAddr) -> String {
    normalise(addr).to_string()
}

/// IPv6 clients are limited per /64, since one host commonly holds a whole /64.
fn normalise(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_address_and_window() {
        let rl = RateLimiter::new(3);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(rl.allow(a, 60));
        assert!(rl.allow(a, 61));
        assert!(rl.allow(a, 62));
        assert!(!rl.allow(a, 63));
        assert!(rl.allow(b, 63));
        assert!(rl.allow(a, 120), "a new minute starts a new window");
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::2".parse().unwrap();
        for _ in 0..3 {
            assert!(rl.allow(v6a, 0));
        }
        assert!(!rl.allow(v6b, 0), "one /64 shares a budget");
    }
}
