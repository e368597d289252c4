//! Slows credential guessing: failed authentications are counted per source, and a source past
//! its allowance has its requests that carry credentials refused until the allowance refills.
//!
//! Each source (a client address; an IPv6 address counts by its /64, the block one host is
//! usually given) has an allowance of `server.auth_failure_burst` failures, refilled at
//! `server.auth_failures_per_minute`. A failed authentication — a signature that does not
//! match, an unknown access key, a wrong session token or API token, an identity token STS
//! refuses — takes one. A source with none left gets S3 503 `SlowDown` or API 429
//! `TooManyFailedAuthentications`, with `Retry-After`, for every request that carries
//! credentials, without the credentials being checked; anonymous requests (public volumes,
//! `/healthz`) are not held up. Refusals of an authenticated caller (`AccessDenied`) are no
//! failure. Each throttled request counts in `archway_auth_throttled_total{front}`.
//!
//! The table is bounded: sources whose allowance is full again are forgotten, and at
//! [`MAX_SOURCES`] the oldest entries go first. Per gateway: replicas behind a load balancer
//! each count what they see.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most sources remembered at once.
pub const MAX_SOURCES: usize = 65_536;

/// The error codes that mean a credential was tried and failed.
const FAILURES: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "InvalidIdentityToken",
    "Unauthorized",
];

/// Whether a refusal's error code is a failed authentication.
pub fn is_failure(code: &str) -> bool {
    FAILURES.contains(&code)
}

#[derive(Debug)]
struct Allowance {
    left: f64,
    at: Instant,
}

/// See the module's description.
#[derive(Debug)]
pub struct AuthLimiter {
    burst: f64,
    per_second: f64,
    sources: Mutex<HashMap<IpAddr, Allowance>>,
}

impl AuthLimiter {
    /// `burst` failures, refilled at `per_minute`; `burst` 0 turns the limit off.
    pub fn new(burst: u32, per_minute: u32) -> Self {
        Self {
            burst: f64::from(burst),
            per_second: f64::from(per_minute) / 60.0,
            sources: Mutex::new(HashMap::new()),
        }
    }

    fn key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
            v4 => v4,
        }
    }

    fn refill(&self, a: &mut Allowance, now: Instant) {
        let earned = now.duration_since(a.at).as_secs_f64() * self.per_second;
        a.left = (a.left + earned).min(self.burst);
        a.at = now;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Allowance>> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long `source` must wait before trying credentials again; None: it may now.
    pub fn wait(&self, source: IpAddr) -> Option<Duration> {
        if self.burst == 0.0 {
            return None;
        }
        let now = Instant::now();
        let mut sources = self.lock();
        let a = sources.get_mut(&Self::key(source))?;
        self.refill(a, now);
        if a.left >= 1.0 {
            return None;
        }
        if self.per_second <= 0.0 {
            // Never refilled: held off for as long as the gateway runs.
            return Some(Duration::from_secs(3600));
        }
        Some(Duration::from_secs_f64((1.0 - a.left) / self.per_second))
    }

    /// `source` failed to authenticate.
    pub fn failed(&self, source: IpAddr) {
        if self.burst == 0.0 {
            return;
        }
        let now = Instant::now();
        let mut sources = self.lock();
        let a = sources.entry(Self::key(source)).or_insert(Allowance {
            left: self.burst,
            at: now,
        });
        self.refill(a, now);
        a.left = (a.left - 1.0).max(0.0);
        if sources.len() > MAX_SOURCES {
            self.prune(&mut sources, now);
        }
    }

    /// Forgets sources whose allowance is full again, then the oldest until under the bound.
    fn prune(&self, sources: &mut HashMap<IpAddr, Allowance>, now: Instant) {
        let (burst, per_second) = (self.burst, self.per_second);
        sources.retain(|_, a| a.left + now.duration_since(a.at).as_secs_f64() * per_second < burst);
        if sources.len() > MAX_SOURCES {
            let mut ages: Vec<(Instant, IpAddr)> =
                sources.iter().map(|(k, a)| (a.at, *k)).collect();
            ages.sort_unstable();
            let excess = sources.len() - MAX_SOURCES * 3 / 4;
            for (_, k) in ages.into_iter().take(excess) {
                sources.remove(&k);
            }
        }
    }

    /// Sources remembered now (for tests).
    pub fn remembered(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a unit test owns its thread: it may sleep
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_past_its_allowance_waits_and_others_do_not() {
        let l = AuthLimiter::new(3, 60);
        for _ in 0..3 {
            assert_eq!(l.wait(ip("192.0.2.1")), None);
            l.failed(ip("192.0.2.1"));
        }
        let wait = l.wait(ip("192.0.2.1")).expect("held off after 3 failures");
        assert!(
            wait <= Duration::from_secs(1),
            "{wait:?}: one a second refills"
        );
        assert_eq!(l.wait(ip("192.0.2.2")), None, "another source is not");
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(l.wait(ip("192.0.2.1")), None, "refilled");
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let l = AuthLimiter::new(2, 1);
        l.failed(ip("2001:db8:1:2::1"));
        l.failed(ip("2001:db8:1:2::ffff"));
        assert!(l.wait(ip("2001:db8:1:2:abcd::9")).is_some());
        assert_eq!(l.wait(ip("2001:db8:1:3::1")), None);
        l.failed(ip("::ffff:192.0.2.9"));
        l.failed(ip("192.0.2.9"));
        assert!(l.wait(ip("192.0.2.9")).is_some());
    }

    #[test]
    fn off_when_the_burst_is_zero_and_bounded_in_memory() {
        let off = AuthLimiter::new(0, 10);
        for _ in 0..100 {
            off.failed(ip("192.0.2.1"));
        }
        assert_eq!(off.wait(ip("192.0.2.1")), None);
        assert_eq!(off.remembered(), 0);

        let l = AuthLimiter::new(5, 1);
        for i in 0..(MAX_SOURCES as u32 + 10) {
            l.failed(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)));
        }
        assert!(l.remembered() <= MAX_SOURCES, "{}", l.remembered());
    }

    #[test]
    fn only_failed_credentials_count() {
        for code in [
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
            "Unauthorized",
        ] {
            assert!(is_failure(code));
        }
        for code in ["AccessDenied", "Forbidden", "ExpiredToken", "NoSuchKey"] {
            assert!(!is_failure(code), "{code}");
        }
    }
}
