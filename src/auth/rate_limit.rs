//! Token buckets: each client (a token, or an address) may sustain `rate` units per second
//! and burst up to `burst`. A refusal says how long until the request would fit.
//!
//! Buckets live in one map bounded by `max_clients`: when it is full, buckets that have
//! refilled completely (idle clients) are forgotten first, which loses nothing; if every
//! bucket is still in use, the least recently used ones go.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// One client's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Buckets keyed by client.
#[derive(Debug)]
pub struct RateLimiter {
    /// Units per second.
    rate: f64,
    /// Bucket size.
    burst: f64,
    /// Most clients tracked.
    max_clients: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `rate` units per second, bursts of `burst`, at most `max_clients` tracked.
    pub fn new(rate: f64, burst: f64, max_clients: usize) -> Self {
        Self {
            rate,
            burst,
            max_clients,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The bucket size: the most one charge can ever take.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    /// Takes `cost` units from `client`'s bucket, or says how long until they are there.
    /// A cost above the burst can never fit: it is refused with the wait for a full bucket.
    pub fn take(&self, client: &str, cost: f64) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        if !buckets.contains_key(client) && buckets.len() >= self.max_clients {
            self.evict(&mut buckets, now);
        }
        let bucket = buckets.entry(client.to_string()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            return Ok(());
        }
        let missing = cost.min(self.burst) - bucket.tokens;
        Err(Duration::from_secs_f64(missing / self.rate))
    }

    /// Gives back `cost` units taken from `client` for a request that another limit then
    /// refused, so one refusal does not drain two budgets.
    pub fn refund(&self, client: &str, cost: f64) {
        if let Some(bucket) = self.buckets.lock().get_mut(client) {
            bucket.tokens = (bucket.tokens + cost).min(self.burst);
        }
    }

    /// Clients tracked now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.lock().len()
    }

    fn evict(&self, buckets: &mut HashMap<String, Bucket>, now: Instant) {
        let full = |b: &Bucket| {
            b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * self.rate
                >= self.burst
        };
        buckets.retain(|_, b| !full(b));
        if buckets.len() >= self.max_clients {
            // Everyone is busy: forget the least recently seen tenth.
            let mut ages: Vec<(Instant, String)> = buckets
                .iter()
                .map(|(k, b)| (b.updated, k.clone()))
                .collect();
            ages.sort();
            for (_, key) in ages.into_iter().take(self.max_clients / 10 + 1) {
                buckets.remove(&key);
            }
        }
    }
}

/// Rate limiters of a server that limits. Tokens and addresses have separate maps, so a
/// flood of new addresses cannot push out the buckets of busy tokens.
pub struct Limits {
    /// API requests with a valid token, per token.
    pub requests_by_token: RateLimiter,
    /// API requests without one, per client address.
    pub requests_by_address: RateLimiter,
    /// Posted events and edge messages, per token.
    pub events_by_token: RateLimiter,
    /// Posted events without a token (authentication off), per client address.
    pub events_by_address: RateLimiter,
    /// Every request with a valid token, per client address (the address ceiling).
    pub requests_per_address: RateLimiter,
    /// Every posted event with a valid token, per client address.
    pub events_per_address: RateLimiter,
}

impl Limits {
    /// Limiters with the configured rates.
    pub fn new(r: &crate::configuration::RateLimitSettings) -> Self {
        let requests = || RateLimiter::new(r.requests_per_sec, r.request_burst, r.max_clients);
        let events = || RateLimiter::new(r.events_per_sec, r.event_burst, r.max_clients);
        Self {
            requests_by_token: requests(),
            requests_by_address: requests(),
            events_by_token: events(),
            events_by_address: events(),
            requests_per_address: RateLimiter::new(
                r.address_requests_per_sec,
                r.address_request_burst,
                r.max_clients,
            ),
            events_per_address: RateLimiter::new(
                r.address_events_per_sec,
                r.address_event_burst,
                r.max_clients,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_rules() {
        let limiter = RateLimiter::new(10.0, 5.0, 100);
        for _ in 0..5 {
            assert!(limiter.take("a", 1.0).is_ok());
        }
        let wait = limiter.take("a", 1.0).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // Another client has its own bucket.
        assert!(limiter.take("b", 1.0).is_ok());
        std::thread::sleep(Duration::from_millis(120));
        assert!(limiter.take("a", 1.0).is_ok(), "refilled at 10/s");
    }

    #[test]
    fn the_map_stays_bounded() {
        let limiter = RateLimiter::new(1.0, 2.0, 16);
        for i in 0..100 {
            let _ = limiter.take(&format!("client-{i}"), 2.0);
        }
        assert!(limiter.len() <= 16, "{}", limiter.len());
    }

    #[test]
    fn a_refund_gives_back_what_was_taken_up_to_the_burst() {
        let limiter = RateLimiter::new(1.0, 3.0, 16);
        for _ in 0..3 {
            assert!(limiter.take("a", 1.0).is_ok());
        }
        assert!(limiter.take("a", 1.0).is_err());
        limiter.refund("a", 1.0);
        assert!(limiter.take("a", 1.0).is_ok(), "the refunded unit");
        limiter.refund("a", 100.0);
        for _ in 0..3 {
            assert!(limiter.take("a", 1.0).is_ok());
        }
        assert!(limiter.take("a", 1.0).is_err(), "never more than the burst");
    }

    #[test]
    fn a_cost_beyond_the_burst_is_refused() {
        let limiter = RateLimiter::new(100.0, 10.0, 16);
        assert!(limiter.take("a", 11.0).is_err());
        assert!(
            limiter.take("a", 10.0).is_ok(),
            "nothing was taken by the refusal"
        );
    }
}
