//! Circuit breaker shared by every distributor.
//!
//! Closed: deliveries flow. After `failure_threshold` consecutive failures it opens: the
//! distributor stops taking events off its queue (they wait there, bounded by the overflow
//! policy), so a dead peer costs nothing. After `cooldown` it half-opens and lets one probe
//! through; success closes it, failure opens it again for another cool-down.

use std::time::{Duration, Instant};

use serde::Serialize;

/// The three classic breaker states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Deliveries flow.
    Closed,
    /// Deliveries paused until the cool-down ends.
    Open,
    /// One probe delivery decides between closed and open.
    HalfOpen,
}

impl BreakerState {
    /// Stable name for logs, metrics and status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// Gauge value: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::Open => 1.0,
            Self::HalfOpen => 2.0,
        }
    }
}

/// What the breaker lets the distributor do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Deliver freely.
    Allow,
    /// Deliver exactly one event as a probe.
    Probe,
    /// Deliver nothing; ask again after this long.
    Wait(Duration),
}

/// Breaker settings, part of every distributor's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BreakerSettings {
    /// Consecutive failed deliveries that open the breaker.
    pub failure_threshold: u32,
    /// Time the breaker stays open before a probe.
    pub cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown: Duration::from_secs(5),
        }
    }
}

/// The breaker's state machine; time is passed in so tests need no clock.
#[derive(Debug)]
pub struct CircuitBreaker {
    settings: BreakerSettings,
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

/// A state change, reported so it can be logged and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: BreakerState,
    /// State after.
    pub to: BreakerState,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            opened_at: None,
            probe_in_flight: false,
        }
    }

    /// Current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Failures since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Applies new settings without changing the state.
    pub fn set_settings(&mut self, settings: BreakerSettings) {
        self.settings = settings;
    }

    /// Asks whether a delivery may start at `now`; may move open → half-open.
    pub fn permit(&mut self, now: Instant) -> (Permit, Option<Transition>) {
        match self.state {
            BreakerState::Closed => (Permit::Allow, None),
            BreakerState::Open => {
                let opened = self.opened_at.unwrap_or(now);
                let ready_at = opened + self.settings.cooldown;
                if now >= ready_at {
                    let t = self.go(BreakerState::HalfOpen);
                    self.probe_in_flight = true;
                    (Permit::Probe, t)
                } else {
                    (Permit::Wait(ready_at - now), None)
                }
            }
            BreakerState::HalfOpen if self.probe_in_flight => {
                (Permit::Wait(self.settings.cooldown), None)
            }
            BreakerState::HalfOpen => {
                self.probe_in_flight = true;
                (Permit::Probe, None)
            }
        }
    }

    /// Records a delivered event.
    pub fn on_success(&mut self) -> Option<Transition> {
        self.consecutive_failures = 0;
        self.probe_in_flight = false;
        self.opened_at = None;
        self.go(BreakerState::Closed)
    }

    /// Records a failed delivery at `now`.
    pub fn on_failure(&mut self, now: Instant) -> Option<Transition> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.probe_in_flight = false;
        let trips = self.state == BreakerState::HalfOpen
            || self.consecutive_failures >= self.settings.failure_threshold;
        if trips {
            self.opened_at = Some(now);
            self.go(BreakerState::Open)
        } else {
            None
        }
    }

    /// Opens the breaker at `now` whatever the failure count: the watchdog's verdict on a
    /// peer that takes events and completes none.
    pub fn trip(&mut self, now: Instant) -> Option<Transition> {
        self.opened_at = Some(now);
        self.go(BreakerState::Open)
    }

    fn go(&mut self, to: BreakerState) -> Option<Transition> {
        let from = std::mem::replace(&mut self.state, to);
        (from != to).then_some(Transition { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerSettings {
            failure_threshold: 3,
            cooldown: Duration::from_secs(10),
        })
    }

    #[test]
    fn opens_after_threshold_then_probes_then_closes() {
        let t0 = Instant::now();
        let mut b = breaker();
        assert_eq!(b.on_failure(t0), None);
        assert_eq!(b.on_failure(t0), None);
        let t = b.on_failure(t0).unwrap();
        assert_eq!((t.from, t.to), (BreakerState::Closed, BreakerState::Open));
        assert!(
            matches!(b.permit(t0 + Duration::from_secs(3)).0, Permit::Wait(d) if d == Duration::from_secs(7))
        );
        let (permit, t) = b.permit(t0 + Duration::from_secs(10));
        assert_eq!(permit, Permit::Probe);
        assert_eq!(t.unwrap().to, BreakerState::HalfOpen);
        // Only one probe at a time.
        assert!(matches!(
            b.permit(t0 + Duration::from_secs(10)).0,
            Permit::Wait(_)
        ));
        assert_eq!(b.on_success().unwrap().to, BreakerState::Closed);
        assert_eq!(b.permit(t0).0, Permit::Allow);
    }

    #[test]
    fn failed_probe_reopens() {
        let t0 = Instant::now();
        let mut b = breaker();
        for _ in 0..3 {
            b.on_failure(t0);
        }
        b.permit(t0 + Duration::from_secs(11));
        assert_eq!(
            b.on_failure(t0 + Duration::from_secs(11)).unwrap().to,
            BreakerState::Open
        );
        assert!(matches!(
            b.permit(t0 + Duration::from_secs(12)).0,
            Permit::Wait(_)
        ));
    }

    #[test]
    fn success_resets_the_failure_count() {
        let t0 = Instant::now();
        let mut b = breaker();
        b.on_failure(t0);
        b.on_failure(t0);
        b.on_success();
        b.on_failure(t0);
        b.on_failure(t0);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
