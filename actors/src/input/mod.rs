//! Processor inputs: detection envelopes from edge devices consumed from brokers (a Redis
//! Streams consumer group, an MQTT subscription) and handed to the tracker of the device's
//! source, at least once, with the effect of exactly once (a message delivered again
//! changes nothing: see [`crate::tracker::edge::Recent`]).
//!
//! - this file: an input's settings and their checks, its counters, the [`Processor`] that
//!   routes an envelope to its source, and [`Inputs`], the inputs running.
//! - [`redis_stream`]: `XREADGROUP`, own pending entries first, `XAUTOCLAIM` of a dead
//!   consumer's, `XACK` once handed over, a dead-letter stream.
//! - [`mqtt`]: a QoS 1 subscription (shared if asked) acknowledged once handed over.

pub mod mqtt;
pub mod redis_stream;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::{AbortHandle, Abortable};
use metrics::{counter, describe_counter, describe_gauge, gauge, Counter, Gauge};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::devices::registry::DeviceRegistry;
use crate::egress::EgressPolicy;
use crate::session::spec::{check_serial, check_session_id};
use crate::source::hub::{SourceError, SourceHub};
use crate::source::SourceKind;
use crate::store::DeviceKey;
use crate::validation::{kind_of, Report};

/// Messages of each input by outcome.
pub const INPUT_MESSAGES: &str = "synopticon_input_messages_total";
/// Devices an input met that were unknown, by what happened (`created`, `refused`).
pub const INPUT_DEVICES: &str = "synopticon_input_unknown_devices_total";
/// 1 while an input is connected to its broker.
pub const INPUT_CONNECTED: &str = "synopticon_input_connected";
/// Entries delivered to the group and not yet acknowledged (Redis Streams).
pub const INPUT_PENDING: &str = "synopticon_input_pending";
/// Entries in the stream the group has not read yet (Redis Streams).
pub const INPUT_LAG: &str = "synopticon_input_lag";

/// Describes the inputs' metrics.
pub fn describe() {
    describe_counter!(
        INPUT_MESSAGES,
        "Messages of each input by outcome: received, acknowledged (handed to a tracker, or dead-lettered), duplicate (delivered again: changed nothing), redelivered (taken again after a crash or from a dead consumer), dead_lettered (unreadable, refused or delivered too often), skipped (detection off on its source), failed (the tracker did not answer: left for redelivery)."
    );
    describe_counter!(
        INPUT_DEVICES,
        "Unknown devices an input met: created (registered from its device template), refused, or limited (refused by devices.max_auto_registered, devices.auto_registered_per_minute or server.reserved_sources; also counted as refused)."
    );
    describe_gauge!(
        INPUT_CONNECTED,
        "1 while the input is connected to its broker."
    );
    describe_gauge!(
        INPUT_PENDING,
        "Redis Streams: entries delivered to the input's group and not yet acknowledged."
    );
    describe_gauge!(
        INPUT_LAG,
        "Redis Streams: entries of the stream the input's group has not read yet."
    );
}

/// Where an input reads from.
#[derive(Debug, Clone, PartialEq)]
pub enum InputKind {
    /// A Redis stream, as one consumer of a group.
    RedisStream(redis_stream::RedisStreamConfig),
    /// An MQTT topic filter.
    Mqtt(mqtt::MqttInputConfig),
}

/// What to do with a device no source here takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownDevices {
    /// Register it (an `external` device streaming here) from the input's template.
    Create,
    /// Dead-letter its messages.
    Refuse,
}

/// One input's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct InputConfig {
    /// Its name.
    pub name: String,
    /// Where it reads.
    pub kind: InputKind,
    /// What happens to unknown devices.
    pub unknown_devices: UnknownDevices,
    /// Device fields an unknown device is registered with (`kind`, `name`, `source`
    /// settings such as lines and zones, `metadata`, ...).
    pub device_template: Map<String, Value>,
}

/// Fields every input may have.
const COMMON: &[&str] = &["kind", "unknownDevices", "deviceTemplate"];

impl InputConfig {
    /// Reads `body` as input `name`; every problem is listed.
    pub fn parse(name: &str, body: &Value, instance: &str) -> Result<InputConfig, Report> {
        let mut report = Report::default();
        if let Err(e) = check_session_id(name) {
            report.error(format!("name: {e}"));
        }
        let Some(map) = body.as_object() else {
            report.error(format!(
                "the body must be a JSON object with \"kind\" (redis_stream or mqtt), got {}",
                kind_of(body)
            ));
            return Err(report);
        };
        let unknown_devices = match map.get("unknownDevices").map(|v| v.as_str()) {
            None | Some(Some("create")) => UnknownDevices::Create,
            Some(Some("refuse")) => UnknownDevices::Refuse,
            Some(_) => {
                report.error("unknownDevices: must be \"create\" or \"refuse\"");
                UnknownDevices::Create
            }
        };
        let device_template = match map.get("deviceTemplate") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(t)) => {
                for key in ["id", "serial", "instance", "created_at", "updated_at"] {
                    if t.contains_key(key) {
                        report.error(format!(
                            "deviceTemplate.{key}: set from the message or by the server"
                        ));
                    }
                }
                t.clone()
            }
            Some(other) => {
                report.error(format!(
                    "deviceTemplate: must be an object of device fields, got {}",
                    kind_of(other)
                ));
                Map::new()
            }
        };
        let kind = match map.get("kind").and_then(Value::as_str) {
            Some("redis_stream") => {
                redis_stream::RedisStreamConfig::parse(map, instance, name, &mut report)
                    .map(InputKind::RedisStream)
            }
            Some("mqtt") => {
                mqtt::MqttInputConfig::parse(map, instance, name, &mut report).map(InputKind::Mqtt)
            }
            _ => {
                report.error("kind: must be \"redis_stream\" or \"mqtt\"");
                None
            }
        };
        match kind {
            Some(kind) if report.is_valid() => Ok(InputConfig {
                name: name.to_string(),
                kind,
                unknown_devices,
                device_template,
            }),
            _ => Err(report),
        }
    }

    /// The kind's name.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            InputKind::RedisStream(_) => "redis_stream",
            InputKind::Mqtt(_) => "mqtt",
        }
    }
}

/// Every key of `map` not in `known` (or the common keys) is an error.
fn unknown_keys(map: &Map<String, Value>, known: &[&str], report: &mut Report) {
    for key in map.keys() {
        if !known.contains(&key.as_str()) && !COMMON.contains(&key.as_str()) {
            report.error(format!(
                "{key}: unknown field (known: {}, {})",
                COMMON.join(", "),
                known.join(", ")
            ));
        }
    }
}

/// An optional string field.
fn text(map: &Map<String, Value>, key: &str, default: &str, report: &mut Report) -> String {
    match map.get(key) {
        None | Some(Value::Null) => default.to_string(),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => s.clone(),
        Some(other) => {
            report.error(format!(
                "{key}: must be a non-empty string, got {}",
                kind_of(other)
            ));
            default.to_string()
        }
    }
}

/// An optional whole number within `range`.
fn number(
    map: &Map<String, Value>,
    key: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    report: &mut Report,
) -> u64 {
    match map.get(key) {
        None | Some(Value::Null) => default,
        Some(v) => match v.as_u64().filter(|n| range.contains(n)) {
            Some(n) => n,
            None => {
                report.error(format!(
                    "{key}: must be a whole number from {} to {}, got {v}",
                    range.start(),
                    range.end()
                ));
                default
            }
        },
    }
}

/// What an input has done.
#[derive(Debug, Serialize)]
pub struct InputStatus {
    /// Its name.
    pub name: String,
    /// `redis_stream` or `mqtt`.
    pub kind: &'static str,
    /// Whether it is connected.
    pub connected: bool,
    /// Messages received.
    pub received: u64,
    /// Messages acknowledged to the broker.
    pub acknowledged: u64,
    /// Messages delivered again that changed nothing.
    pub duplicates: u64,
    /// Messages taken again (own pending after a restart, claimed from a dead consumer).
    pub redelivered: u64,
    /// Messages put in the dead-letter stream (or, over MQTT, dropped with a log line).
    pub dead_lettered: u64,
    /// Messages for a source whose detection is off.
    pub skipped: u64,
    /// Messages the tracker did not take in time (left for redelivery).
    pub failed: u64,
    /// Unknown devices registered.
    pub devices_created: u64,
    /// Unknown devices refused (by the input's `unknownDevices`, or a limit).
    pub devices_refused: u64,
    /// Of those, refused by a limit on registering devices (their ceiling, their rate,
    /// the source slots kept for the API).
    pub devices_limited: u64,
    /// Redis Streams: delivered, not yet acknowledged (group-wide).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<u64>,
    /// Redis Streams: entries the group has not read yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
    /// The latest error, and when.
    pub last_error: Option<InputError>,
}

/// An input's latest error.
#[derive(Debug, Clone, Serialize)]
pub struct InputError {
    /// What went wrong.
    pub message: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// An input's counters, shared by its task and the REST API.
pub struct InputStats {
    connected: AtomicBool,
    received: AtomicU64,
    acknowledged: AtomicU64,
    duplicates: AtomicU64,
    redelivered: AtomicU64,
    dead_lettered: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    devices_created: AtomicU64,
    devices_refused: AtomicU64,
    devices_limited: AtomicU64,
    pending: AtomicU64,
    lag: AtomicU64,
    streams: bool,
    last_error: Mutex<Option<InputError>>,
    m: InputMetrics,
}

struct InputMetrics {
    received: Counter,
    acknowledged: Counter,
    duplicate: Counter,
    redelivered: Counter,
    dead_lettered: Counter,
    skipped: Counter,
    failed: Counter,
    created: Counter,
    refused: Counter,
    limited: Counter,
    connected: Gauge,
    pending: Gauge,
    lag: Gauge,
}

impl InputStats {
    fn new(name: &str, streams: bool) -> Self {
        let outcome =
            |o: &'static str| counter!(INPUT_MESSAGES, "input" => name.to_string(), "outcome" => o);
        let labels = [("input", name.to_string())];
        Self {
            connected: AtomicBool::new(false),
            received: AtomicU64::new(0),
            acknowledged: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            redelivered: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            devices_created: AtomicU64::new(0),
            devices_refused: AtomicU64::new(0),
            devices_limited: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            lag: AtomicU64::new(0),
            streams,
            last_error: Mutex::new(None),
            m: InputMetrics {
                received: outcome("received"),
                acknowledged: outcome("acknowledged"),
                duplicate: outcome("duplicate"),
                redelivered: outcome("redelivered"),
                dead_lettered: outcome("dead_lettered"),
                skipped: outcome("skipped"),
                failed: outcome("failed"),
                created: counter!(INPUT_DEVICES, "input" => name.to_string(), "outcome" => "created"),
                refused: counter!(INPUT_DEVICES, "input" => name.to_string(), "outcome" => "refused"),
                limited: counter!(INPUT_DEVICES, "input" => name.to_string(), "outcome" => "limited"),
                connected: gauge!(INPUT_CONNECTED, &labels),
                pending: gauge!(INPUT_PENDING, &labels),
                lag: gauge!(INPUT_LAG, &labels),
            },
        }
    }

    fn bump(counter: &AtomicU64, metric: &Counter, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
        metric.increment(n);
    }

    /// Messages arrived.
    pub fn received(&self, n: u64) {
        Self::bump(&self.received, &self.m.received, n);
    }

    /// Messages acknowledged.
    pub fn acknowledged(&self, n: u64) {
        Self::bump(&self.acknowledged, &self.m.acknowledged, n);
    }

    /// Messages taken again.
    pub fn redelivered(&self, n: u64) {
        Self::bump(&self.redelivered, &self.m.redelivered, n);
    }

    /// A message dead-lettered.
    pub fn dead_lettered(&self) {
        Self::bump(&self.dead_lettered, &self.m.dead_lettered, 1);
    }

    fn outcome(&self, handled: &Handled) {
        match handled {
            Handled::Tracked => {}
            Handled::Duplicate => Self::bump(&self.duplicates, &self.m.duplicate, 1),
            Handled::Skipped => Self::bump(&self.skipped, &self.m.skipped, 1),
        }
    }

    /// A message the tracker did not take.
    pub fn failed(&self) {
        Self::bump(&self.failed, &self.m.failed, 1);
    }

    /// Whether the input is connected.
    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
        self.m.connected.set(if up { 1.0 } else { 0.0 });
    }

    /// Group-wide pending entries and lag.
    pub fn set_backlog(&self, pending: u64, lag: u64) {
        self.pending.store(pending, Ordering::Relaxed);
        self.lag.store(lag, Ordering::Relaxed);
        self.m.pending.set(pending as f64);
        self.m.lag.set(lag as f64);
    }

    /// Records an error (logged when it differs from the last one).
    pub fn error(&self, input: &str, message: String) {
        let mut last = self.last_error.lock();
        if last.as_ref().map(|e| &e.message) != Some(&message) {
            tracing::warn!(input, error = %message, "input");
        }
        *last = Some(InputError {
            message,
            at: Utc::now(),
        });
    }

    fn status(&self, name: &str, kind: &'static str) -> InputStatus {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        InputStatus {
            name: name.to_string(),
            kind,
            connected: self.connected.load(Ordering::Relaxed),
            received: get(&self.received),
            acknowledged: get(&self.acknowledged),
            duplicates: get(&self.duplicates),
            redelivered: get(&self.redelivered),
            dead_lettered: get(&self.dead_lettered),
            skipped: get(&self.skipped),
            failed: get(&self.failed),
            devices_created: get(&self.devices_created),
            devices_refused: get(&self.devices_refused),
            devices_limited: get(&self.devices_limited),
            pending: self.streams.then(|| get(&self.pending)),
            lag: self.streams.then(|| get(&self.lag)),
            last_error: self.last_error.lock().clone(),
        }
    }
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Its detections went to the tracker.
    Tracked,
    /// It was taken before: nothing changed.
    Duplicate,
    /// Its source's detection is off.
    Skipped,
}

/// Why a message was not handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// It can never be handled (unreadable, refused): dead-letter it with this reason.
    Dead(String),
    /// Not now (the tracker did not answer): leave it for redelivery.
    Later(String),
}

/// How long a device's route (or its refusal) is remembered.
const ROUTE_TTL: Duration = Duration::from_secs(5);
/// Routes remembered at most: a flood of made-up device ids cannot grow the map.
const MAX_ROUTES: usize = 4096;

/// Where a device's messages go.
#[derive(Clone)]
enum Route {
    /// To this source.
    Source(String),
    /// Nowhere, for this reason (unknown and refused, or not registrable).
    Refused(String),
}

/// How far inputs may register unknown devices on their own: whoever can write to a
/// stream or a topic could otherwise register devices (and start their sources) until
/// the server holds no more, and the API's own requests get 503.
#[derive(Debug, Clone, Copy)]
pub struct AutoRegistration {
    /// Devices inputs registered, in all, at most (`devices.max_auto_registered`).
    pub max_devices: usize,
    /// Registrations per minute, in all (`devices.auto_registered_per_minute`); a burst
    /// of as many.
    pub per_minute: f64,
    /// Source slots such a device never takes (`server.reserved_sources`).
    pub reserved_sources: usize,
}

/// Routes envelopes to the tracker of their device's source.
pub struct Processor {
    sources: Arc<SourceHub>,
    devices: Arc<DeviceRegistry>,
    /// (device_id, camera_id) → its route, and when it was found.
    routes: Mutex<HashMap<(String, String), (Route, Instant)>>,
    /// The limits on registering unknown devices.
    auto: AutoRegistration,
    /// Registrations the rate still allows now, and when that was worked out.
    allowance: Mutex<(f64, Instant)>,
}

impl Processor {
    /// A processor feeding `sources`, registering unknown devices in `devices` within
    /// `auto`.
    pub fn new(
        sources: Arc<SourceHub>,
        devices: Arc<DeviceRegistry>,
        auto: AutoRegistration,
    ) -> Self {
        Self {
            sources,
            devices,
            routes: Mutex::new(HashMap::new()),
            auto,
            allowance: Mutex::new((auto.per_minute, Instant::now())),
        }
    }

    /// Why an unknown device may not be registered now, if it may not: the rate, the
    /// ceiling, or the source slots kept for the API.
    async fn over_limit(&self) -> Result<Option<String>, Failure> {
        {
            let mut allowance = self.allowance.lock();
            let (left, since) = *allowance;
            let left = (left + since.elapsed().as_secs_f64() * self.auto.per_minute / 60.0)
                .min(self.auto.per_minute);
            if left < 1.0 {
                *allowance = (left, Instant::now());
                return Ok(Some(format!(
                    "inputs register at most {} unknown devices a minute (devices.auto_registered_per_minute)",
                    self.auto.per_minute
                )));
            }
            *allowance = (left, Instant::now());
        }
        let held = self
            .devices
            .count_registered_by_inputs()
            .await
            .map_err(|e| Failure::Later(e.to_string()))?;
        if held >= self.auto.max_devices {
            return Ok(Some(format!(
                "inputs have registered their maximum of {} devices (devices.max_auto_registered)",
                self.auto.max_devices
            )));
        }
        if !self.sources.has_room_leaving(self.auto.reserved_sources) {
            return Ok(Some(format!(
                "the source slots left are kept for the API (server.reserved_sources = {})",
                self.auto.reserved_sources
            )));
        }
        // Taken from the rate only now: a refusal by the ceiling costs nothing.
        self.allowance.lock().0 -= 1.0;
        Ok(None)
    }

    /// Hands one message to its source's tracker.
    pub async fn handle(
        &self,
        raw: &[u8],
        input: &InputConfig,
        stats: &InputStats,
        warm: bool,
    ) -> Result<Handled, Failure> {
        let mut one = self
            .handle_many(vec![Some(raw.to_vec())], input, stats, warm)
            .await;
        one.pop()
            .unwrap_or_else(|| Err(Failure::Later("nothing handled".into())))
    }

    /// Hands messages to their sources' trackers, in order: consecutive messages of one
    /// source go in one hand-over. `None` stands for an entry without the envelope's
    /// field. One result per message.
    pub async fn handle_many(
        &self,
        raws: Vec<Option<Vec<u8>>>,
        input: &InputConfig,
        stats: &InputStats,
        warm: bool,
    ) -> Vec<Result<Handled, Failure>> {
        let mut results: Vec<Option<Result<Handled, Failure>>> = vec![None; raws.len()];
        // (index, source, envelope) of the messages that could be read and routed.
        let mut routed: Vec<(usize, String, Value)> = Vec::with_capacity(raws.len());
        for (i, raw) in raws.iter().enumerate() {
            let read = match raw {
                Some(raw) => read_envelope(raw),
                None => Err(Failure::Dead("no field holding the envelope's JSON".into())),
            };
            match read {
                Ok((key, envelope)) => match self.route(&key, input, stats).await {
                    Ok(source) => routed.push((i, source, envelope)),
                    Err(f) => results[i] = Some(Err(f)),
                },
                Err(f) => results[i] = Some(Err(f)),
            }
        }
        let mut start = 0;
        while start < routed.len() {
            let source = routed[start].1.clone();
            let end = routed[start..]
                .iter()
                .position(|(_, s, _)| *s != source)
                .map_or(routed.len(), |p| start + p);
            let group = &routed[start..end];
            let envelopes: Vec<Value> = group.iter().map(|(_, _, e)| e.clone()).collect();
            match self.sources.ingest_many(&source, envelopes, warm).await {
                Ok(outcomes) => {
                    for ((i, _, _), outcome) in group.iter().zip(outcomes) {
                        results[*i] = Some(match outcome {
                            Ok(ingested) if ingested.duplicate => Ok(Handled::Duplicate),
                            Ok(_) => Ok(Handled::Tracked),
                            Err(message) => Err(Failure::Dead(message)),
                        });
                    }
                }
                // The source went away since it was routed to: route each again, once.
                Err(SourceError::NotFound(_)) => {
                    self.routes
                        .lock()
                        .retain(|_, (r, _)| !matches!(r, Route::Source(s) if *s == source));
                    for (i, _, envelope) in group {
                        results[*i] = Some(
                            self.handle_again(envelope.clone(), input, stats, warm)
                                .await,
                        );
                    }
                }
                Err(SourceError::WrongKind(_)) => {
                    for (i, _, _) in group {
                        results[*i] = Some(Ok(Handled::Skipped));
                    }
                }
                Err(e) => {
                    for (i, _, _) in group {
                        results[*i] = Some(Err(Failure::Later(e.to_string())));
                    }
                }
            }
            start = end;
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Failure::Later("not handled".into()))))
            .collect()
    }

    async fn handle_again(
        &self,
        envelope: Value,
        input: &InputConfig,
        stats: &InputStats,
        warm: bool,
    ) -> Result<Handled, Failure> {
        let key = device_key(&envelope)?;
        let source = self.route(&key, input, stats).await?;
        match self.sources.ingest_with(&source, envelope, warm).await {
            Ok(ingested) if ingested.duplicate => Ok(Handled::Duplicate),
            Ok(_) => Ok(Handled::Tracked),
            Err(SourceError::WrongKind(_)) => Ok(Handled::Skipped),
            Err(SourceError::Invalid(report)) => Err(Failure::Dead(report.errors.join("; "))),
            Err(e) => Err(Failure::Later(e.to_string())),
        }
    }

    /// The external source that takes `device_id`'s messages (for `camera_id` when the
    /// device has several), registering the device if the input says so.
    async fn route(
        &self,
        key: &(String, String),
        input: &InputConfig,
        stats: &InputStats,
    ) -> Result<String, Failure> {
        let known = self
            .routes
            .lock()
            .get(key)
            .filter(|(_, found)| found.elapsed() < ROUTE_TTL)
            .map(|(route, _)| route.clone());
        let route = match known {
            Some(route) => route,
            None => {
                let (device_id, camera_id) = key;
                let route = match find_source(&self.sources, device_id, camera_id) {
                    Some(source) => Route::Source(source),
                    None => match self.unknown(device_id, input, stats).await {
                        Ok(source) => Route::Source(source),
                        Err(Failure::Dead(why)) => Route::Refused(why),
                        Err(later) => return Err(later),
                    },
                };
                let mut routes = self.routes.lock();
                if routes.len() >= MAX_ROUTES {
                    routes.retain(|_, (_, found)| found.elapsed() < ROUTE_TTL);
                    if routes.len() >= MAX_ROUTES {
                        routes.clear();
                    }
                }
                routes.insert(key.clone(), (route.clone(), Instant::now()));
                route
            }
        };
        match route {
            Route::Source(source) => Ok(source),
            Route::Refused(why) => {
                InputStats::bump(&stats.devices_refused, &stats.m.refused, 1);
                Err(Failure::Dead(why))
            }
        }
    }

    async fn unknown(
        &self,
        device_id: &str,
        input: &InputConfig,
        stats: &InputStats,
    ) -> Result<String, Failure> {
        // Counted by the caller, which also counts refusals it remembers.
        let refuse = Failure::Dead;
        let registered = self.devices.get(DeviceKey::Serial(device_id)).await.ok();
        if let Some(device) = registered {
            return Err(refuse(format!(
                "device {device_id} is registered but takes no detections here (instance {}, stream_url {}, stream_on {}): make it an external device streaming on this instance",
                device["instance"], device["stream_url"], device["stream_on"]
            )));
        }
        if input.unknown_devices == UnknownDevices::Refuse {
            return Err(refuse(format!(
                "device {device_id} is unknown and this input refuses unknown devices"
            )));
        }
        if let Err(e) = check_serial(device_id) {
            return Err(refuse(format!("source.device_id: {e}")));
        }
        if let Some(why) = self.over_limit().await? {
            InputStats::bump(&stats.devices_limited, &stats.m.limited, 1);
            let message = format!("device {device_id} is unknown and was not registered: {why}");
            stats.error(&input.name, message.clone());
            return Err(refuse(message));
        }
        let mut body = input.device_template.clone();
        body.insert("serial".into(), json!(device_id));
        body.entry("kind").or_insert(json!("edge"));
        body.insert("stream_url".into(), json!("external"));
        body.insert("stream_on".into(), json!(true));
        body.entry("ai_enabled").or_insert(json!(true));
        let by = format!("input:{}", input.name);
        match self
            .devices
            .create_by(&Value::Object(body), Some(&by))
            .await
        {
            Ok(change) => {
                InputStats::bump(&stats.devices_created, &stats.m.created, 1);
                tracing::info!(input = %input.name, device = %device_id, "an unknown device was registered");
                if let Some(e) = change.source_error {
                    return Err(Failure::Later(e));
                }
                Ok(crate::devices::registry::source_id(&change.device))
            }
            // Registered meanwhile (another input, another processor): route again.
            Err(crate::devices::registry::DeviceError::Conflict(_)) => {
                find_source(&self.sources, device_id, "").ok_or_else(|| {
                    Failure::Later(format!("device {device_id} is being registered"))
                })
            }
            Err(crate::devices::registry::DeviceError::Invalid(report)) => Err(refuse(format!(
                "device {device_id} cannot be registered from the input's deviceTemplate: {}",
                report.errors.join("; ")
            ))),
            Err(e) => Err(Failure::Later(e.to_string())),
        }
    }
}

/// An external source taking `device_id`: a registered device's own (its serial), or one
/// whose `device_id` is it, the one named `camera_id` when there are several.
fn find_source(sources: &SourceHub, device_id: &str, camera_id: &str) -> Option<String> {
    let candidates: Vec<(String, bool)> = sources
        .list()
        .into_iter()
        .filter(|r| r.config.kind == SourceKind::External)
        .filter(|r| {
            r.device.as_deref() == Some(device_id)
                || r.config.device_id.as_deref() == Some(device_id)
        })
        .map(|r| (r.id.clone(), !camera_id.is_empty() && r.id == camera_id))
        .collect();
    candidates
        .iter()
        .find(|(_, named)| *named)
        .or(candidates.first())
        .map(|(id, _)| id.clone())
}

/// A message read: its device (and camera), and its envelope.
fn read_envelope(raw: &[u8]) -> Result<((String, String), Value), Failure> {
    let value: Value =
        serde_json::from_slice(raw).map_err(|e| Failure::Dead(format!("not JSON: {e}")))?;
    let envelope = unwrap_event(value)?;
    Ok((device_key(&envelope)?, envelope))
}

/// `source.device_id` and `source.camera_id`.
fn device_key(envelope: &Value) -> Result<(String, String), Failure> {
    let device_id = envelope["source"]["device_id"]
        .as_str()
        .ok_or_else(|| Failure::Dead("source.device_id: missing (a string)".into()))?
        .to_string();
    let camera_id = envelope["source"]["camera_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for (field, text) in [("device_id", &device_id), ("camera_id", &camera_id)] {
        if !text.is_empty() && !crate::tracker::actor::is_edge_text(text) {
            return Err(Failure::Dead(format!(
                "source.{field}: at most {} characters, without control characters",
                crate::tracker::actor::MAX_EDGE_TEXT
            )));
        }
    }
    Ok((device_id, camera_id))
}

/// The seed-004 envelope, or the one a Synopticon `detections` event carries (as the
/// Redis and MQTT distributors publish it), so one server's output feeds another's input.
fn unwrap_event(value: Value) -> Result<Value, Failure> {
    let is_event = value.get("event").is_some() && value.get("data").is_some();
    if !is_event {
        return Ok(value);
    }
    match value["event"].as_str() {
        Some("detections") => Ok(value["data"].clone()),
        Some(other) => Err(Failure::Dead(format!(
            "a {other:?} event is not a detection envelope"
        ))),
        None => Err(Failure::Dead("event: must be a string".into())),
    }
}

/// One running input.
struct Running {
    config: InputConfig,
    /// The settings as given.
    body: Value,
    stats: Arc<InputStats>,
    stop: AbortHandle,
    /// Declared in the configuration (not changed over REST).
    declared: bool,
}

/// The inputs of this server.
pub struct Inputs {
    running: Mutex<BTreeMap<String, Running>>,
    processor: Arc<Processor>,
    egress: Arc<EgressPolicy>,
    instance: String,
    arbiter: actix::ArbiterHandle,
}

/// Why an input could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    /// No such input (404).
    #[error("input {0:?} not found")]
    NotFound(String),
    /// Invalid settings (422).
    #[error("invalid input")]
    Invalid(Report),
    /// Declared in the configuration file (409).
    #[error("input {0:?} is declared in the configuration file; change it there")]
    Declared(String),
}

impl Inputs {
    /// No inputs yet; they run on `arbiter`, routing through `processor`.
    pub fn new(
        processor: Arc<Processor>,
        egress: Arc<EgressPolicy>,
        instance: String,
        arbiter: actix::ArbiterHandle,
    ) -> Self {
        Self {
            running: Mutex::new(BTreeMap::new()),
            processor,
            egress,
            instance,
            arbiter,
        }
    }

    /// This server's name, which names its consumer.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Checks `body` as input `name`, and where it would connect against the egress
    /// policy (an address as written now; a name where it is resolved, at each connection),
    /// as distributors, rules and devices are.
    pub fn check(&self, name: &str, body: &Value) -> Result<InputConfig, Report> {
        let config = InputConfig::parse(name, body, &self.instance)?;
        let refused = match &config.kind {
            InputKind::Mqtt(m) => self
                .egress
                .check_written(&m.broker.host, m.broker.port)
                .err()
                .map(|e| format!("broker: {e}")),
            InputKind::RedisStream(r) => match reqwest::Url::parse(&r.url) {
                Ok(u) => self
                    .egress
                    .check_written(
                        u.host_str().unwrap_or("127.0.0.1"),
                        u.port().unwrap_or(6379),
                    )
                    .err()
                    .map(|e| format!("url: {e}")),
                Err(_) => None,
            },
        };
        match refused {
            Some(e) => {
                let mut report = Report::default();
                report.error(e);
                Err(report)
            }
            None => Ok(config),
        }
    }

    /// Starts (or replaces) input `name`; whether it replaced one.
    pub fn put(&self, name: &str, body: &Value, declared: bool) -> Result<bool, InputsError> {
        let config = self.check(name, body).map_err(InputsError::Invalid)?;
        let mut running = self.running.lock();
        if let Some(old) = running.get(name) {
            if old.declared && !declared {
                return Err(InputsError::Declared(name.to_string()));
            }
        }
        let replaced = running.remove(name).map(|old| old.stop.abort()).is_some();
        let stats = Arc::new(InputStats::new(
            name,
            matches!(config.kind, InputKind::RedisStream(_)),
        ));
        let (stop, registration) = AbortHandle::new_pair();
        let task = {
            let (config, stats) = (config.clone(), stats.clone());
            let (processor, egress) = (self.processor.clone(), self.egress.clone());
            async move {
                match &config.kind {
                    InputKind::RedisStream(r) => {
                        redis_stream::run(r.clone(), &config, &stats, &processor, &egress).await
                    }
                    InputKind::Mqtt(m) => {
                        mqtt::run(m.clone(), &config, &stats, &processor, &egress).await
                    }
                }
            }
        };
        let stats_done = stats.clone();
        self.arbiter.spawn(async move {
            let _ = Abortable::new(task, registration).await;
            stats_done.set_connected(false);
        });
        tracing::info!(input = %name, kind = config.kind_name(), "input started");
        running.insert(
            name.to_string(),
            Running {
                config,
                body: body.clone(),
                stats,
                stop,
                declared,
            },
        );
        Ok(replaced)
    }

    /// Stops and forgets input `name`.
    pub fn remove(&self, name: &str) -> Result<(), InputsError> {
        let mut running = self.running.lock();
        match running.get(name) {
            None => return Err(InputsError::NotFound(name.to_string())),
            Some(r) if r.declared => return Err(InputsError::Declared(name.to_string())),
            Some(_) => {}
        }
        if let Some(r) = running.remove(name) {
            r.stop.abort();
            tracing::info!(input = %name, "input stopped");
        }
        Ok(())
    }

    /// Input `name`'s settings as given, and whether it was declared in the configuration.
    pub fn settings(&self, name: &str) -> Option<(Value, bool)> {
        self.running
            .lock()
            .get(name)
            .map(|r| (r.body.clone(), r.declared))
    }

    /// Whether input `name` was declared in the configuration.
    pub fn is_declared(&self, name: &str) -> bool {
        self.running.lock().get(name).is_some_and(|r| r.declared)
    }

    /// Every input's status, by name.
    pub fn list(&self) -> Vec<InputStatus> {
        self.running
            .lock()
            .values()
            .map(|r| r.stats.status(&r.config.name, r.config.kind_name()))
            .collect()
    }

    /// One input's status.
    pub fn status(&self, name: &str) -> Result<InputStatus, InputsError> {
        self.running
            .lock()
            .get(name)
            .map(|r| r.stats.status(&r.config.name, r.config.kind_name()))
            .ok_or_else(|| InputsError::NotFound(name.to_string()))
    }

    /// Stops every input (shutdown).
    pub fn stop_all(&self) {
        for (_, r) in std::mem::take(&mut *self.running.lock()) {
            r.stop.abort();
        }
    }
}
