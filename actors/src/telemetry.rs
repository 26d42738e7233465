//! Internal events and counters: each writes its log line and its metric in one place.
//!
//! Hot-path counters are plain atomics (read by the status endpoint without messaging
//! any actor) paired with pre-registered `metrics` handles (rendered at `/metrics`), so a
//! delivery costs two relaxed increments and no label lookup. Rare events (a restart, a
//! breaker transition, a slow client cut off) are structs whose `emit()` logs a sentence
//! and moves the matching metric.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics::{Counter, Gauge, Histogram, Unit};
use parking_lot::Mutex;
use serde::Serialize;

use crate::distributor::breaker::BreakerState;
use crate::distributor::DistributorKind;

/// Sessions currently open.
pub const SESSIONS_OPEN: &str = "synopticon_sessions_open";
/// Sessions created since start.
pub const SESSIONS_CREATED: &str = "synopticon_sessions_created_total";
/// Sessions closed since start.
pub const SESSIONS_CLOSED: &str = "synopticon_sessions_closed_total";
/// Events from sources and devices a session missed because its mailbox was full.
pub const SESSION_MAILBOX_DROPPED: &str = "synopticon_session_mailbox_dropped_total";
/// Events accepted by a session.
pub const EVENTS_RECEIVED: &str = "synopticon_events_received_total";
/// Events handed to a distributor's queue.
pub const EVENTS_ROUTED: &str = "synopticon_events_routed_total";
/// Final outcome of each routed event: delivered, unconfirmed, failed or dropped.
pub const DISTRIBUTOR_EVENTS: &str = "synopticon_distributor_events_total";
/// Events waiting in a distributor's queue.
pub const QUEUE_DEPTH: &str = "synopticon_distributor_queue_depth";
/// Supervisor restarts of a distributor actor.
pub const RESTARTS: &str = "synopticon_distributor_restarts_total";
/// Breaker state: 0 closed, 1 open, 2 half-open.
pub const BREAKER_STATE: &str = "synopticon_distributor_breaker_state";
/// Times the stall watchdog opened a distributor's breaker.
pub const STALLS: &str = "synopticon_distributor_stalls_total";
/// Breaker transitions by target state.
pub const BREAKER_TRANSITIONS: &str = "synopticon_distributor_breaker_transitions_total";
/// Connected WebSocket/SSE clients.
pub const LIVE_CLIENTS: &str = "synopticon_live_clients";
/// Frames written to live clients (`sent`) or evicted from a slow client's queue (`dropped`).
pub const LIVE_FRAMES: &str = "synopticon_live_frames_total";
/// Live clients disconnected, by reason.
pub const LIVE_DISCONNECTS: &str = "synopticon_live_disconnects_total";
/// Time from an event's arrival to its delivery (written to a client, or acknowledged).
pub const DELIVERY_LATENCY: &str = "synopticon_delivery_latency_seconds";

/// `Session::run` time per model.
pub const INFERENCE_LATENCY: &str = "synopticon_inference_duration_seconds";
/// Frames and images per model by outcome: processed, dropped, rejected, failed.
pub const INFERENCE_FRAMES: &str = "synopticon_inference_frames_total";

/// Frames per source by outcome: captured, processed, failed, dropped.
pub const SOURCE_FRAMES: &str = "synopticon_source_frames_total";
/// Frames per second per source, by stage (captured, processed), over the last window.
pub const SOURCE_FPS: &str = "synopticon_source_frames_per_second";
/// Model time per analysed frame of a source.
pub const SOURCE_INFERENCE: &str = "synopticon_source_inference_duration_seconds";
/// Events a source handed to the sessions.
pub const SOURCE_EVENTS: &str = "synopticon_source_events_total";
/// Capture restarts per source.
pub const SOURCE_RESTARTS: &str = "synopticon_source_restarts_total";
/// Confirmed tracks per source.
pub const SOURCE_ACTIVE_TRACKS: &str = "synopticon_source_active_tracks";
/// Tracking and line/zone analytics time per frame.
pub const SOURCE_TRACKING: &str = "synopticon_source_tracking_duration_seconds";

/// Describes every metric of this crate once, so `/metrics` has HELP and TYPE lines.
pub fn describe() {
    crate::budget::describe();
    crate::bus::describe();
    crate::system::describe();
    crate::input::describe();
    crate::rules::engine::describe();
    crate::recording::recorder::describe();
    describe_gauge!(SESSIONS_OPEN, "Sessions currently open.");
    describe_counter!(
        SESSION_MAILBOX_DROPPED,
        "Events from sources and devices a session missed because its mailbox (1024 messages) was full."
    );
    describe_counter!(
        SOURCE_FRAMES,
        "Frames per source by outcome: captured, processed (tracked), failed (in the model), dropped (replaced by a newer frame before the model ran it)."
    );
    describe_gauge!(
        SOURCE_FPS,
        "Frames per second per source and stage (captured, processed), over the last 2 s."
    );
    describe_histogram!(
        SOURCE_INFERENCE,
        Unit::Seconds,
        "Model time per analysed frame of a source."
    );
    describe_counter!(SOURCE_EVENTS, "Events a source handed to the sessions.");
    describe_counter!(SOURCE_RESTARTS, "Capture restarts per source.");
    describe_gauge!(SOURCE_ACTIVE_TRACKS, "Confirmed tracks per source.");
    describe_histogram!(
        SOURCE_TRACKING,
        Unit::Seconds,
        "Tracking and line/zone analytics time per frame."
    );
    describe_histogram!(
        INFERENCE_LATENCY,
        Unit::Seconds,
        "ONNX Runtime Session::run time per model."
    );
    describe_counter!(
        INFERENCE_FRAMES,
        "Frames and images per model by outcome: processed, dropped (replaced by a newer live frame), rejected (queue full), failed."
    );
    describe_counter!(SESSIONS_CREATED, "Sessions created since start.");
    describe_counter!(SESSIONS_CLOSED, "Sessions closed since start.");
    describe_counter!(EVENTS_RECEIVED, "Events accepted by a session.");
    describe_counter!(EVENTS_ROUTED, "Events handed to a distributor's queue.");
    describe_counter!(
        DISTRIBUTOR_EVENTS,
        "Routed events by final outcome: delivered, unconfirmed (sent, never acknowledged in time), failed, dropped."
    );
    describe_gauge!(QUEUE_DEPTH, "Events waiting in a distributor's queue.");
    describe_counter!(RESTARTS, "Supervisor restarts of a distributor actor.");
    describe_counter!(
        STALLS,
        "Times the stall watchdog opened a distributor's breaker: events waiting and no delivery completed for stallTimeoutMs."
    );
    describe_gauge!(
        BREAKER_STATE,
        "Circuit breaker state: 0 closed, 1 open, 2 half-open."
    );
    describe_counter!(
        BREAKER_TRANSITIONS,
        "Circuit breaker transitions by target state."
    );
    describe_gauge!(LIVE_CLIENTS, "Connected WebSocket and SSE clients.");
    describe_counter!(
        LIVE_FRAMES,
        "Frames written to live clients (sent) or evicted from a slow client's queue (dropped)."
    );
    describe_counter!(
        LIVE_DISCONNECTS,
        "Live clients disconnected by the server, by reason."
    );
    describe_histogram!(
        DELIVERY_LATENCY,
        Unit::Seconds,
        "Time from an event's arrival to its delivery."
    );
}

/// The last error a distributor met, kept for the status endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    /// What went wrong, in words.
    pub message: String,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// Counters of one distributor of one session; shared by the session (status) and the
/// distributor actor (updates), and surviving the actor's restarts.
#[derive(Debug)]
pub struct DistributorTelemetry {
    /// Session the distributor belongs to.
    pub session: Arc<str>,
    /// Protocol of the distributor.
    pub kind: DistributorKind,
    routed: AtomicU64,
    delivered: AtomicU64,
    unconfirmed: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    restarts: AtomicU64,
    stalls: AtomicU64,
    budget_evictions: AtomicU64,
    held_bytes: AtomicUsize,
    clients: AtomicUsize,
    client_frames_dropped: AtomicU64,
    slow_disconnects: AtomicU64,
    last_error: Mutex<Option<LastError>>,
    breaker: Mutex<BreakerState>,
    /// Where breaker changes and restarts are reported.
    system: crate::system::SystemFeed,
    /// The session's epoch (live feeds tell it to resuming clients).
    epoch: Arc<str>,
    m_routed: Counter,
    m_delivered: Counter,
    m_unconfirmed: Counter,
    m_failed: Counter,
    m_dropped: Counter,
    m_restarts: Counter,
    m_stalls: Counter,
    m_clients: Gauge,
    m_frames_sent: Counter,
    m_frames_dropped: Counter,
    m_queue_depth: Gauge,
    m_breaker: Gauge,
    m_latency: Histogram,
}

/// A point-in-time copy of a distributor's counters.
#[derive(Debug, Clone, Serialize)]
pub struct DistributorCounters {
    /// Events handed to the distributor.
    pub routed: u64,
    /// Events delivered (for live feeds: fanned out to the connected clients).
    pub sent: u64,
    /// Events sent whose acknowledgement never came in time: they may have arrived.
    pub unconfirmed: u64,
    /// Events that failed after the protocol's retries.
    pub failed: u64,
    /// Events dropped by the queue's overflow policy or because the distributor was disabled.
    pub dropped: u64,
    /// Supervisor restarts.
    pub restarts: u64,
    /// Times the stall watchdog opened the breaker.
    pub stalls: u64,
    /// Queued events and history entries evicted by the server's memory budget.
    pub budget_evictions: u64,
    /// Bytes its queue and history hold against the memory budget.
    pub held_bytes: usize,
    /// Connected live clients.
    pub connected_clients: usize,
    /// Frames evicted from slow live clients' queues.
    pub client_frames_dropped: u64,
    /// Live clients cut off for being too slow.
    pub slow_client_disconnects: u64,
}

impl DistributorTelemetry {
    /// Tells the live feeds the session's epoch.
    pub fn with_epoch(mut self, epoch: Arc<str>) -> Self {
        self.epoch = epoch;
        self
    }

    /// The session's epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Reports breaker changes and restarts to `feed` (the system session).
    pub fn with_system(mut self, feed: crate::system::SystemFeed) -> Self {
        self.system = feed;
        self
    }

    /// Registers the metric series of one distributor.
    pub fn new(session: Arc<str>, kind: DistributorKind) -> Self {
        let s = session.to_string();
        let d = kind.as_str();
        let outcome = |o: &'static str| counter!(DISTRIBUTOR_EVENTS, "session" => s.clone(), "distributor" => d, "outcome" => o);
        let frames = |o: &'static str| counter!(LIVE_FRAMES, "session" => s.clone(), "distributor" => d, "outcome" => o);
        let this = Self {
            m_routed: counter!(EVENTS_ROUTED, "session" => s.clone(), "distributor" => d),
            m_delivered: outcome("delivered"),
            m_unconfirmed: outcome("unconfirmed"),
            m_failed: outcome("failed"),
            m_dropped: outcome("dropped"),
            m_restarts: counter!(RESTARTS, "session" => s.clone(), "distributor" => d),
            m_stalls: counter!(STALLS, "session" => s.clone(), "distributor" => d),
            m_clients: gauge!(LIVE_CLIENTS, "session" => s.clone(), "distributor" => d),
            m_frames_sent: frames("sent"),
            m_frames_dropped: frames("dropped"),
            m_queue_depth: gauge!(QUEUE_DEPTH, "session" => s.clone(), "distributor" => d),
            m_breaker: gauge!(BREAKER_STATE, "session" => s.clone(), "distributor" => d),
            m_latency: histogram!(DELIVERY_LATENCY, "distributor" => d),
            session,
            kind,
            system: Default::default(),
            epoch: Arc::from(""),
            routed: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            unconfirmed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            budget_evictions: AtomicU64::new(0),
            held_bytes: AtomicUsize::new(0),
            clients: AtomicUsize::new(0),
            client_frames_dropped: AtomicU64::new(0),
            slow_disconnects: AtomicU64::new(0),
            last_error: Mutex::new(None),
            breaker: Mutex::new(BreakerState::Closed),
        };
        // Make the series visible at zero from the start, so dashboards see them.
        this.m_breaker.set(0.0);
        this.m_clients.set(0.0);
        this.m_queue_depth.set(0.0);
        this
    }

    /// An event entered the distributor's queue.
    pub fn routed(&self) {
        self.routed.fetch_add(1, Ordering::Relaxed);
        self.m_routed.increment(1);
    }

    /// An event was delivered.
    pub fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.m_delivered.increment(1);
    }

    /// An event was sent and never acknowledged in time.
    pub fn unconfirmed(&self, error: &str) {
        self.unconfirmed.fetch_add(1, Ordering::Relaxed);
        self.m_unconfirmed.increment(1);
        self.set_last_error(error);
    }

    /// An event failed for good.
    pub fn failed(&self, error: &str) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.m_failed.increment(1);
        self.set_last_error(error);
    }

    /// `n` events were dropped by policy (`reason` goes to the debug log only).
    pub fn dropped(&self, n: u64, reason: &'static str) {
        if n == 0 {
            return;
        }
        self.dropped.fetch_add(n, Ordering::Relaxed);
        self.m_dropped.increment(n);
        tracing::debug!(session = %self.session, distributor = self.kind.as_str(), n, reason, "events dropped");
    }

    /// Its queue or history now holds `bytes` more.
    pub fn hold(&self, bytes: usize) {
        self.held_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Its queue or history let go of `bytes`.
    pub fn release_held(&self, bytes: usize) {
        self.held_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// The memory budget evicted `n` entries of its `holder` (`queue` or `history`).
    pub fn budget_evicted(&self, n: u64, holder: &'static str) {
        if n == 0 {
            return;
        }
        self.budget_evictions.fetch_add(n, Ordering::Relaxed);
        counter!(crate::budget::BUDGET_EVICTIONS, "session" => self.session.to_string(), "distributor" => self.kind.as_str(), "holder" => holder)
            .increment(n);
        tracing::debug!(session = %self.session, distributor = self.kind.as_str(), n, holder, "evicted by the memory budget");
    }

    /// Remembers the latest error for the status endpoint.
    pub fn set_last_error(&self, error: &str) {
        *self.last_error.lock() = Some(LastError {
            message: error.to_string(),
            at: Utc::now(),
        });
    }

    /// Latest error, if any.
    pub fn last_error(&self) -> Option<LastError> {
        self.last_error.lock().clone()
    }

    /// Number of connected live clients changed.
    pub fn set_clients(&self, n: usize) {
        self.clients.store(n, Ordering::Relaxed);
        self.m_clients.set(n as f64);
    }

    /// `n` frames were evicted from slow clients' queues.
    pub fn client_frames_dropped(&self, n: u64) {
        if n > 0 {
            self.client_frames_dropped.fetch_add(n, Ordering::Relaxed);
            self.m_frames_dropped.increment(n);
        }
    }

    /// Handle the live connections use to count frames written (no label lookup per frame).
    pub fn frames_sent_counter(&self) -> Counter {
        self.m_frames_sent.clone()
    }

    /// Handle the live connections use to record delivery latency.
    pub fn latency_histogram(&self) -> Histogram {
        self.m_latency.clone()
    }

    /// Records one delivery latency measured by the distributor itself.
    pub fn record_latency(&self, seconds: f64) {
        self.m_latency.record(seconds);
    }

    /// Queue depth sampled by the distributor.
    pub fn set_queue_depth(&self, depth: usize) {
        self.m_queue_depth.set(depth as f64);
    }

    /// Current breaker state.
    pub fn breaker_state(&self) -> BreakerState {
        *self.breaker.lock()
    }

    /// Snapshot of the counters.
    pub fn counters(&self) -> DistributorCounters {
        DistributorCounters {
            routed: self.routed.load(Ordering::Relaxed),
            sent: self.delivered.load(Ordering::Relaxed),
            unconfirmed: self.unconfirmed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            stalls: self.stalls.load(Ordering::Relaxed),
            budget_evictions: self.budget_evictions.load(Ordering::Relaxed),
            held_bytes: self.held_bytes.load(Ordering::Relaxed),
            connected_clients: self.clients.load(Ordering::Relaxed),
            client_frames_dropped: self.client_frames_dropped.load(Ordering::Relaxed),
            slow_client_disconnects: self.slow_disconnects.load(Ordering::Relaxed),
        }
    }
}

/// A distributor actor was restarted by its supervisor.
pub struct DistributorRestarted<'a> {
    /// Whose counters move.
    pub telemetry: &'a DistributorTelemetry,
    /// Why it stopped.
    pub cause: &'a str,
    /// Delay before it takes events again.
    pub backoff_ms: u64,
}

impl DistributorRestarted<'_> {
    /// Logs the restart and counts it.
    pub fn emit(self) {
        let t = self.telemetry;
        let restarts = t.restarts.fetch_add(1, Ordering::Relaxed) + 1;
        t.m_restarts.increment(1);
        t.set_last_error(self.cause);
        tracing::warn!(
            session = %t.session,
            distributor = t.kind.as_str(),
            restarts,
            backoff_ms = self.backoff_ms,
            cause = self.cause,
            "distributor restarted by its supervisor"
        );
        t.system.emit(
            "distributor.restarted",
            serde_json::json!({"session": &*t.session, "distributor": t.kind.as_str(),
                "restarts": restarts, "backoff_ms": self.backoff_ms, "cause": self.cause}),
        );
    }
}

/// The stall watchdog found events waiting and no delivery completing.
pub struct DistributorStalled<'a> {
    /// Whose distributor.
    pub telemetry: &'a DistributorTelemetry,
    /// How long nothing was delivered.
    pub idle: std::time::Duration,
    /// Events queued or in flight.
    pub waiting: usize,
}

impl DistributorStalled<'_> {
    /// Records the stall as the last error (the breaker opens next), logs and counts it.
    pub fn emit(self) {
        let t = self.telemetry;
        t.stalls.fetch_add(1, Ordering::Relaxed);
        t.m_stalls.increment(1);
        let message = format!(
            "stalled: {} events waiting and no delivery completed for {} ms; the peer takes them and answers nothing",
            self.waiting,
            self.idle.as_millis()
        );
        t.set_last_error(&message);
        tracing::warn!(session = %t.session, distributor = t.kind.as_str(), waiting = self.waiting, idle_ms = self.idle.as_millis() as u64, "distributor stalled: opening its breaker");
    }
}

/// A distributor's circuit breaker changed state.
pub struct BreakerTransitioned<'a> {
    /// Whose breaker.
    pub telemetry: &'a DistributorTelemetry,
    /// Previous state.
    pub from: BreakerState,
    /// New state.
    pub to: BreakerState,
}

impl BreakerTransitioned<'_> {
    /// Logs the transition, updates the state gauge and counts the transition.
    pub fn emit(self) {
        let t = self.telemetry;
        *t.breaker.lock() = self.to;
        t.m_breaker.set(self.to.gauge());
        counter!(BREAKER_TRANSITIONS, "session" => t.session.to_string(), "distributor" => t.kind.as_str(), "to" => self.to.as_str())
            .increment(1);
        let last_error = t.last_error().map(|e| e.message).unwrap_or_default();
        let name = match self.to {
            BreakerState::Open => "breaker.opened",
            BreakerState::HalfOpen => "breaker.half_open",
            BreakerState::Closed => "breaker.closed",
        };
        t.system.emit(
            name,
            serde_json::json!({"session": &*t.session, "distributor": t.kind.as_str(),
                "from": self.from.as_str(), "to": self.to.as_str(), "last_error": last_error}),
        );
        if self.to == BreakerState::Open {
            tracing::warn!(session = %t.session, distributor = t.kind.as_str(), from = self.from.as_str(), %last_error, "circuit breaker opened");
        } else {
            tracing::info!(session = %t.session, distributor = t.kind.as_str(), from = self.from.as_str(), to = self.to.as_str(), "circuit breaker changed state");
        }
    }
}

/// A live client was disconnected by the server.
pub struct LiveClientDisconnected<'a> {
    /// Whose client.
    pub telemetry: &'a DistributorTelemetry,
    /// Client number within the distributor.
    pub client: u64,
    /// Why (`slow_consumer`, `session_closed`, ...).
    pub reason: &'static str,
}

impl LiveClientDisconnected<'_> {
    /// Logs the disconnect and counts it.
    pub fn emit(self) {
        let t = self.telemetry;
        if self.reason == "slow_consumer" {
            t.slow_disconnects.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(session = %t.session, distributor = t.kind.as_str(), client = self.client, "live client disconnected: it stopped reading and its queue kept overflowing");
        } else {
            tracing::debug!(session = %t.session, distributor = t.kind.as_str(), client = self.client, reason = self.reason, "live client disconnected");
        }
        counter!(LIVE_DISCONNECTS, "session" => t.session.to_string(), "distributor" => t.kind.as_str(), "reason" => self.reason)
            .increment(1);
    }
}

/// Per-session counters.
#[derive(Debug)]
pub struct SessionTelemetry {
    received: AtomicU64,
    m_received: Counter,
}

impl SessionTelemetry {
    /// Registers the session's series and counts it as open.
    pub fn opened(session: &str, template: Option<&str>) -> Self {
        gauge!(SESSIONS_OPEN).increment(1.0);
        counter!(SESSIONS_CREATED).increment(1);
        tracing::info!(
            session,
            template = template.unwrap_or("-"),
            "session opened"
        );
        Self {
            received: AtomicU64::new(0),
            m_received: counter!(EVENTS_RECEIVED, "session" => session.to_string()),
        }
    }

    /// An event was accepted.
    pub fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.m_received.increment(1);
    }

    /// Events accepted so far.
    pub fn received_count(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// The session closed.
    pub fn closed(&self, session: &str, reason: &str) {
        gauge!(SESSIONS_OPEN).decrement(1.0);
        counter!(SESSIONS_CLOSED).increment(1);
        tracing::info!(
            session,
            reason,
            events = self.received_count(),
            "session closed"
        );
    }
}
