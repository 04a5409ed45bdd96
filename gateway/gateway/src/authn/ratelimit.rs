//! Per-client-address request limit on `/auth/*` (`auth_requests_per_minute`): a fixed one-minute
//! window per address. The count that decides is the store's ([`RateLimiter::check`]), shared by
//! every instance on one database; a bounded in-memory count in front of it refuses a flood from
//! one address without a store round trip (this instance's share can only be smaller than the
//! whole).

use std::net::IpAddr;
use std::sync::Arc;

use taxgate_store::{AnyStore, Store};

use crate::error::{ApiError, Code, Hints};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A per-address budget of requests per minute: this instance's count in memory, the shared one in
/// the store.
pub struct RateLimiter {
    per_minute: u32,
    windows: moka::sync::Cache<(IpAddr, i64), Arc<AtomicU32>>,
}

impl RateLimiter {
    /// A budget of `per_minute` requests per address and minute. The in-memory count keeps at most
    /// 100,000 address windows, each for two minutes.
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute,
            windows: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(120))
                .build(),
        }
    }

    /// Count one request from `addr` at `now` here and in the store: 429 `rate_limited` (with
    /// the seconds to the next window) once over the limit this minute across every instance;
    /// 503 when the store cannot count (fail closed).
    pub async fn check(&self, store: &AnyStore, addr: IpAddr, now: i64) -> Result<(), ApiError> {
        let minute = now.div_euclid(60) * 60;
        let refused = || {
            ApiError::hinted(
                Code::RateLimited,
                Hints {
                    retry_after_secs: Some((minute + 60 - now).max(1) as u64),
                    ..Hints::default()
                },
            )
        };
        if !self.allow(addr, now) {
            return Err(refused());
        }
        let bucket = format!("auth:{}", address_key(addr));
        match store
            .take_budget(&bucket, minute, i64::from(self.per_minute))
            .await
        {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(refused()),
            Err(e) => {
                crate::rescue::log_store_error(&e);
                Err(Code::StoreUnavailable.into())
            }
        }
    }

    /// Count one request from `addr` at unix time `now` on this instance only; false once over
    /// the limit this minute.
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
