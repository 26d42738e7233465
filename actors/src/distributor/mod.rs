//! Distributors: one supervised actor per enabled protocol of a session.
//!
//! Every distributor is a [`DistributorActor<P>`](actor::DistributorActor): the generic
//! actor owns what all protocols share (the bounded queue, the circuit breaker, the
//! counters, panic isolation and supervised restart with backoff), and the protocol `P`
//! only says how to deliver one event.
//!
//! # Adding a protocol
//! Write one file with a type implementing [`Protocol`] (its config parser, its delivery),
//! add a variant to [`DistributorKind`] and one arm to each `match` in [`parse_config`] and
//! [`spawn`]. Nothing else in the session, the registry or the server changes.

pub mod actor;
pub mod breaker;
pub mod http;
pub mod live;
pub mod mmsg;
pub mod mqtt;
pub mod queue;
pub mod redis;
pub mod sse;
pub mod udp;
pub mod websocket;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::Event;
use crate::guardrails::Guardrails;
use crate::telemetry::DistributorTelemetry;
use crate::validation::{FieldReader, Report};
use breaker::BreakerSettings;
use live::{ClientQueue, Subscription};
use queue::{EventQueue, OverflowPolicy};

/// The protocols a session can distribute over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DistributorKind {
    /// Live feed at `/api/v1/sessions/{id}/ws`.
    Websocket,
    /// Live feed at `/api/v1/sessions/{id}/sse`.
    Sse,
    /// Publish to an MQTT broker.
    Mqtt,
    /// Datagrams to one or more targets.
    Udp,
    /// Webhooks: POST to an HTTP endpoint.
    Http,
    /// Redis Streams and Pub/Sub.
    Redis,
}

impl DistributorKind {
    /// Every kind, in a stable order.
    pub const ALL: [DistributorKind; 6] = [
        Self::Websocket,
        Self::Sse,
        Self::Mqtt,
        Self::Udp,
        Self::Http,
        Self::Redis,
    ];

    /// The name used in configs, routes and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Websocket => "websocket",
            Self::Sse => "sse",
            Self::Mqtt => "mqtt",
            Self::Udp => "udp",
            Self::Http => "http",
            Self::Redis => "redis",
        }
    }

    /// Parses a kind name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// All kind names, for error messages.
    pub fn all_names() -> String {
        Self::ALL.map(|k| k.as_str()).join(", ")
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for DistributorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A small set of kinds (one bit each), cheap to copy on the routing hot path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindSet(u8);

impl KindSet {
    /// The empty set.
    pub const EMPTY: KindSet = KindSet(0);

    /// Adds `kind`.
    pub fn insert(&mut self, kind: DistributorKind) {
        self.0 |= kind.bit();
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: DistributorKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// Kinds in both sets.
    pub fn intersect(self, other: KindSet) -> KindSet {
        KindSet(self.0 & other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds in the set, in [`DistributorKind::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = DistributorKind> {
        DistributorKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }
}

impl FromIterator<DistributorKind> for KindSet {
    fn from_iter<I: IntoIterator<Item = DistributorKind>>(iter: I) -> Self {
        let mut set = KindSet::EMPTY;
        for k in iter {
            set.insert(k);
        }
        set
    }
}

/// Settings every distributor has, whatever its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CommonConfig {
    /// Capacity of the distributor's queue (`queueCapacity`).
    pub queue_capacity: usize,
    /// What to drop when the queue is full (`overflow`).
    pub overflow: OverflowPolicy,
    /// Deliveries running at once (`maxInFlight`); 1 keeps strict order.
    pub max_in_flight: usize,
    /// Circuit breaker (`breakerThreshold`, `breakerCooldownMs`).
    pub breaker: BreakerSettings,
    /// Events waiting and no delivery completed for this long opens the breaker
    /// (`stallTimeoutMs`): a peer that accepts connections and answers nothing (a frozen
    /// broker) fails no delivery fast enough for the failure count to notice.
    pub stall_timeout: Duration,
}

/// Default `stallTimeoutMs`.
pub const DEFAULT_STALL_TIMEOUT_MS: u64 = 10_000;

/// Default distributor queue capacity.
pub const DEFAULT_QUEUE_CAPACITY: u64 = 4096;
/// Queue capacities above this draw a memory warning.
const LARGE_QUEUE_WARNING: u64 = 100_000;

impl CommonConfig {
    /// Reads the shared fields from a distributor config, within the server's ceilings.
    pub fn read(r: &mut FieldReader<'_>, path: &str, rails: &Guardrails) -> Self {
        let queue_capacity =
            r.u64_capped("queueCapacity", 1, DEFAULT_QUEUE_CAPACITY, rails.queue());
        if queue_capacity > LARGE_QUEUE_WARNING {
            r.report().warn(format!(
                "{path}.queueCapacity: {queue_capacity} events may hold a lot of memory while a peer is down"
            ));
        }
        let overflow =
            OverflowPolicy::parse(r.choice("overflow", &OverflowPolicy::NAMES, "drop_oldest"))
                .unwrap_or(OverflowPolicy::DropOldest);
        if overflow == OverflowPolicy::DropNewest {
            r.report().warn(format!(
                "{path}.overflow: drop_newest discards the latest events while the queue is full"
            ));
        }
        let max_in_flight = r.u64("maxInFlight", 1, 1024, 1) as usize;
        let defaults = BreakerSettings::default();
        let failure_threshold = r.u64(
            "breakerThreshold",
            1,
            1000,
            defaults.failure_threshold as u64,
        ) as u32;
        let cooldown_ms = r.u64(
            "breakerCooldownMs",
            10,
            3_600_000,
            defaults.cooldown.as_millis() as u64,
        );
        let stall_timeout_ms = r.u64("stallTimeoutMs", 100, 3_600_000, DEFAULT_STALL_TIMEOUT_MS);
        Self {
            queue_capacity: queue_capacity as usize,
            overflow,
            max_in_flight,
            breaker: BreakerSettings {
                failure_threshold,
                cooldown: Duration::from_millis(cooldown_ms),
            },
            stall_timeout: Duration::from_millis(stall_timeout_ms),
        }
    }
}

/// How one delivery ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The peer has it (for live feeds: queued to every subscribed client).
    Delivered,
    /// The protocol gave up on it (after its own retries, if any); counts toward the
    /// circuit breaker, since the peer or the path to it is failing.
    Failed(String),
    /// This event can never be delivered (too large, refused as malformed by the peer);
    /// counted as failed, but the peer is healthy, so the breaker is not moved.
    Rejected(String),
    /// Sent, but the peer never acknowledged it in time (an MQTT PUBACK, a Redis reply, a
    /// webhook answer that timed out): it may well have arrived, so it is counted apart
    /// from `failed`. A silent peer is a failing one, so the breaker moves.
    Unconfirmed(String),
}

/// What [`Protocol::deliver`] returns.
pub enum Delivery {
    /// Finished synchronously.
    Done(Outcome),
    /// Finishes later; the actor keeps at most `maxInFlight` of these running.
    Later(LocalBoxFuture<'static, Outcome>),
}

/// Why live clients are being disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The session was closed.
    SessionClosed,
    /// The session's distributor was disabled.
    DistributorDisabled,
    /// The client stopped reading and its queue kept overflowing.
    SlowConsumer,
    /// The client went away.
    ClientGone,
    /// The server is shutting down.
    ServerShutdown,
    /// The client's token was deleted or its scope changed.
    TokenRevoked,
}

impl CloseReason {
    /// Stable name for logs, metrics and close frames.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionClosed => "session_closed",
            Self::DistributorDisabled => "distributor_disabled",
            Self::SlowConsumer => "slow_consumer",
            Self::ClientGone => "client_gone",
            Self::ServerShutdown => "server_shutdown",
            Self::TokenRevoked => "token_revoked",
        }
    }
}

/// Request to attach a live client (WebSocket or SSE connection) to a distributor.
#[derive(Debug, Clone)]
pub struct LiveAttach {
    /// Event patterns the client starts with.
    pub subscription: Subscription,
    /// Replay retained events with a greater sequence number (SSE `Last-Event-ID`).
    pub resume_after: Option<u64>,
}

/// The protocol-specific half of a distributor.
pub trait Protocol: Sized + Unpin + 'static {
    /// The protocol's own settings (the common ones are in [`CommonConfig`]).
    type Config: Clone + Send + fmt::Debug + 'static;

    /// Which kind this is.
    const KIND: DistributorKind;

    /// True when delivery latency is measured downstream (live clients record it on write).
    const LATENCY_MEASURED_DOWNSTREAM: bool = false;

    /// Reads the protocol's fields from its config (the reader reports problems), within
    /// the server's ceilings.
    fn parse(r: &mut FieldReader<'_>, path: &str, rails: &Guardrails) -> Self::Config;

    /// How long the peer may take to answer one delivery (a webhook's `timeoutMs`, an
    /// MQTT `ackTimeoutMs`), if the protocol waits for answers: a stall timeout no longer
    /// than this would take a slow but working peer for a frozen one.
    fn answer_timeout(_config: &Self::Config) -> Option<Duration> {
        None
    }

    /// Builds the protocol state; called once per distributor, not per restart.
    fn new(
        session: Arc<str>,
        config: Self::Config,
        telemetry: Arc<DistributorTelemetry>,
        rails: &Guardrails,
    ) -> Self;

    /// Called on every (re)start of the actor: connect, start timers.
    fn started(&mut self) {}

    /// Delivers one event.
    fn deliver(&mut self, event: &Arc<Event>) -> Delivery;

    /// Most events [`deliver_many`](Self::deliver_many) takes at once; 1 for protocols
    /// that deliver one at a time.
    const BATCH: usize = 1;

    /// Delivers several events at once, done on return (no answer awaited): one outcome
    /// per event, in order. Only called when [`BATCH`](Self::BATCH) is above 1.
    fn deliver_many(&mut self, events: &[Arc<Event>]) -> Vec<Outcome> {
        events
            .iter()
            .map(|e| match self.deliver(e) {
                Delivery::Done(outcome) => outcome,
                Delivery::Later(_) => {
                    Outcome::Failed("the protocol cannot deliver in batches".into())
                }
            })
            .collect()
    }

    /// Applies new settings in place.
    fn reconfigure(&mut self, config: Self::Config);

    /// Attaches a live client; only live-feed protocols accept.
    fn attach(&mut self, _request: LiveAttach) -> Result<Arc<ClientQueue>, String> {
        Err(format!(
            "the {} distributor has no live clients",
            Self::KIND
        ))
    }

    /// Called periodically (housekeeping such as removing gone clients).
    fn tick(&mut self) {}

    /// The distributor is going away for good: release peers and clients.
    fn close(&mut self, _reason: CloseReason) {}
}

/// A distributor's settings after validation: common part plus the protocol's own.
pub struct ParsedConfig<C> {
    /// Queue, breaker and in-flight settings.
    pub common: CommonConfig,
    /// Protocol settings.
    pub protocol: C,
}

/// Validates one distributor config against the server's ceilings, returning every
/// problem (path is e.g. `distributors.sse`).
pub fn parse_config(
    kind: DistributorKind,
    path: &str,
    value: &Value,
    report: &mut Report,
    rails: &Guardrails,
) {
    match kind {
        DistributorKind::Websocket => {
            parse_typed::<websocket::WebSocketProtocol>(path, value, report, rails);
        }
        DistributorKind::Sse => {
            parse_typed::<sse::SseProtocol>(path, value, report, rails);
        }
        DistributorKind::Udp => {
            parse_typed::<udp::UdpProtocol>(path, value, report, rails);
        }
        DistributorKind::Http => {
            parse_typed::<http::HttpProtocol>(path, value, report, rails);
        }
        DistributorKind::Mqtt => {
            parse_typed::<mqtt::MqttProtocol>(path, value, report, rails);
        }
        DistributorKind::Redis => {
            parse_typed::<redis::RedisProtocol>(path, value, report, rails);
        }
    }
}

fn parse_typed<P: Protocol>(
    path: &str,
    value: &Value,
    report: &mut Report,
    rails: &Guardrails,
) -> ParsedConfig<P::Config> {
    let mut reader = FieldReader::new(path, value, report);
    let common = CommonConfig::read(&mut reader, path, rails);
    let protocol = P::parse(&mut reader, path, rails);
    reader.finish();
    if let Some(answer) = P::answer_timeout(&protocol).filter(|t| *t >= common.stall_timeout) {
        report.warn(format!(
            "{path}.stallTimeoutMs: {} ms is no longer than the {} ms a peer may take to answer; a slow but working peer would open the breaker",
            common.stall_timeout.as_millis(),
            answer.as_millis()
        ));
    }
    ParsedConfig { common, protocol }
}

/// What the session holds for each enabled distributor: a protocol-erased handle.
pub trait DistributorLink: Send {
    /// Tells the actor that its queue went from empty to non-empty.
    fn wake(&self);
    /// Applies a new config, validated against `rails`.
    fn reconfigure(&self, config: &Value, rails: &Guardrails) -> Result<(), Report>;
    /// Attaches a live client.
    fn attach(
        &self,
        request: LiveAttach,
    ) -> LocalBoxFuture<'static, Result<Arc<ClientQueue>, String>>;
    /// Debug hook: makes the actor panic inside its supervised boundary.
    fn inject_panic(&self);
    /// Stops the actor for good (its clients are told why).
    fn shutdown(self: Box<Self>, reason: CloseReason);
}

/// Everything a new distributor needs from its session.
pub struct SpawnRequest<'a> {
    /// Owning session.
    pub session: Arc<str>,
    /// Validated config JSON.
    pub config: &'a Value,
    /// Counters shared with the session.
    pub telemetry: Arc<DistributorTelemetry>,
    /// The server's ceilings and the memory budget the queue charges.
    pub rails: Arc<Guardrails>,
}

/// Starts the supervised actor for `kind`; returns its link and queue.
pub fn spawn(
    kind: DistributorKind,
    request: SpawnRequest<'_>,
) -> Result<(Box<dyn DistributorLink>, Arc<EventQueue>), Report> {
    match kind {
        DistributorKind::Websocket => spawn_typed::<websocket::WebSocketProtocol>(request),
        DistributorKind::Sse => spawn_typed::<sse::SseProtocol>(request),
        DistributorKind::Udp => spawn_typed::<udp::UdpProtocol>(request),
        DistributorKind::Http => spawn_typed::<http::HttpProtocol>(request),
        DistributorKind::Mqtt => spawn_typed::<mqtt::MqttProtocol>(request),
        DistributorKind::Redis => spawn_typed::<redis::RedisProtocol>(request),
    }
}

fn spawn_typed<P: Protocol>(
    request: SpawnRequest<'_>,
) -> Result<(Box<dyn DistributorLink>, Arc<EventQueue>), Report> {
    let mut report = Report::default();
    let parsed = parse_typed::<P>(
        &format!("distributors.{}", P::KIND),
        request.config,
        &mut report,
        &request.rails,
    );
    if !report.is_valid() {
        return Err(report);
    }
    let queue = EventQueue::new(
        parsed.common.queue_capacity,
        parsed.common.overflow,
        request.rails.budget.clone(),
        request.telemetry.clone(),
    );
    let addr = actor::DistributorActor::<P>::start_supervised(
        request.session,
        parsed,
        queue.clone(),
        request.telemetry,
        &request.rails,
    );
    Ok((Box::new(addr), queue))
}

impl<P: Protocol> DistributorLink for Addr<actor::DistributorActor<P>> {
    fn wake(&self) {
        // `do_send` ignores the mailbox bound; at most one wake per empty→non-empty
        // transition is sent, so the mailbox stays small.
        self.do_send(actor::Drain);
    }

    fn reconfigure(&self, config: &Value, rails: &Guardrails) -> Result<(), Report> {
        let mut report = Report::default();
        let parsed = parse_typed::<P>(
            &format!("distributors.{}", P::KIND),
            config,
            &mut report,
            rails,
        );
        if !report.is_valid() {
            return Err(report);
        }
        self.do_send(actor::Reconfigure(parsed));
        Ok(())
    }

    fn attach(
        &self,
        request: LiveAttach,
    ) -> LocalBoxFuture<'static, Result<Arc<ClientQueue>, String>> {
        let fut = self.send(actor::Attach(request));
        Box::pin(async move {
            match tokio::time::timeout(ATTACH_TIMEOUT, fut).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err("the distributor is restarting, try again".into()),
                Err(_) => Err("the distributor did not answer in time".into()),
            }
        })
    }

    fn inject_panic(&self) {
        self.do_send(actor::InjectPanic);
    }

    fn shutdown(self: Box<Self>, reason: CloseReason) {
        // The Shutdown message closes clients; dropping the last strong address afterwards
        // is what tells the supervisor not to restart the actor.
        self.do_send(actor::Shutdown(reason));
    }
}

/// How long a live client waits for the distributor to accept it.
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(5);
