//! MQTT distributor: publishes each event's JSON envelope to a broker with `rumqttc`.
//!
//! A connection task (spawned on the actor's thread) drives the client's event loop,
//! reconnects after `reconnectDelayMs`, and rotates through `backupBrokers` when the current
//! broker is down. Deliveries complete when the broker acknowledges them: `PUBACK` at QoS 1,
//! `PUBCOMP` at QoS 2, the write at QoS 0. Publishes leave in the order they are queued, so
//! each outgoing packet id is matched to its event in FIFO order. While no broker is
//! connected a delivery fails at once (and the breaker soon stops taking events off the
//! queue), so a dead broker never holds up the session.
//!
//! The connection announces itself on a retained status topic: `online` after connecting,
//! `offline` as its last will and when the distributor is closed.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event as MqttEvent, LastWill, MqttOptions, Outgoing, Packet, QoS, Transport,
};
use serde_json::Value;
use tokio::sync::oneshot;

use super::{CloseReason, Delivery, DistributorKind, Outcome, Protocol};
use crate::egress::{EgressPolicy, Use};
use crate::event::Event;
use crate::glob::Glob;
use crate::guardrails::Guardrails;
use crate::telemetry::DistributorTelemetry;
use crate::validation::{kind_of, FieldReader};

/// Default topic template.
pub const DEFAULT_TOPIC: &str = "synopticon/{session}/{event}";
/// Default status (last will) topic template.
pub const DEFAULT_STATUS_TOPIC: &str = "synopticon/{session}/status";
/// Requests the client may have queued before `try_publish` refuses.
const CLIENT_CHANNEL_CAPACITY: usize = 1024;

/// One broker address.
#[derive(Debug, Clone, PartialEq)]
pub struct Broker {
    /// As configured (password removed), for status and logs.
    pub shown: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: bool,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
}

/// MQTT settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttConfig {
    /// `broker` first, then `backupBrokers` in order.
    pub brokers: Vec<Broker>,
    /// Client id; `-{session}` is appended (`clientId`, default `synopticon`).
    pub client_id: String,
    /// `username` / `password` (the broker URL's credentials win).
    pub username: Option<String>,
    password: Option<String>,
    /// Quality of service for events (`qos`, 0-2, default 1).
    pub qos: QoS,
    /// Retain flag for events (`retain`).
    pub retain: bool,
    /// Topic template (`topic`): `{session}` and `{event}` are replaced.
    pub topic: String,
    /// Event pattern → per-event options (`topics`), most specific first.
    pub topics: Vec<(Glob, EventOptions)>,
    /// Retained status topic template for `online`/`offline` (`statusTopic`).
    pub status_topic: String,
    /// MQTT keep-alive (`keepAliveSecs`).
    pub keep_alive: Duration,
    /// How long a publish may wait for its acknowledgement (`ackTimeoutMs`).
    pub ack_timeout: Duration,
    /// Pause before reconnecting or trying the next broker (`reconnectDelayMs`).
    pub reconnect_delay: Duration,
    /// Largest MQTT packet sent or accepted (`maxPacketBytes`); a larger event is refused
    /// and counted as failed instead of breaking the connection.
    pub max_packet: usize,
    /// PEM certificates trusted for `mqtts://` instead of the system roots (`caFile`, read
    /// when the settings are validated).
    pub ca: Option<Vec<u8>>,
    /// Carry only each event's `data` instead of its envelope (`payload`: `envelope`, the
    /// default, or `data`).
    pub data_only: bool,
}

pub(crate) fn parse_broker(path: &str, url: &str) -> Result<Broker, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        format!("{path}: {url:?} must look like mqtt://host:1883 or mqtts://host:8883")
    })?;
    let tls = match scheme {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        other => {
            return Err(format!(
                "{path}: scheme {other:?} must be mqtt:// or mqtts://"
            ))
        }
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (username, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
        Some((u, p)) => (Some(u.to_string()), (!p.is_empty()).then(|| p.to_string())),
        None => (None, None),
    };
    let default_port = if tls { 8883 } else { 1883 };
    let port_of = |p: &str| {
        p.parse::<u64>()
            .ok()
            .filter(|n| (1..=65535).contains(n))
            .ok_or_else(|| format!("{path}: port must be 1-65535"))
    };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        // An IPv6 address, in brackets, with or without a port.
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{path}: {url:?}: an IPv6 address needs its closing ]"))?;
        let port = match after {
            "" => default_port,
            p => port_of(p.strip_prefix(':').unwrap_or(p))?,
        };
        (inside.to_string(), port)
    } else {
        match hostport.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err(format!(
                    "{path}: {url:?}: write an IPv6 address in brackets (mqtt://[fd00::1]:1883)"
                ))
            }
            Some((h, p)) => (h.to_string(), port_of(p)?),
            None => (hostport.to_string(), default_port),
        }
    };
    if host.is_empty() {
        return Err(format!("{path}: {url:?} has no host"));
    }
    let shown = if host.contains(':') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    };
    Ok(Broker {
        shown,
        host,
        port: port as u16,
        tls,
        username,
        password,
    })
}

fn check_topic(path: &str, topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.contains(['+', '#']) || topic.contains('\0') {
        Err(format!(
            "{path}: {topic:?} must be a non-empty topic without the wildcards + and #"
        ))
    } else {
        Ok(())
    }
}

fn render(template: &str, session: &str, event: &str) -> String {
    template
        .replace("{session}", session)
        .replace("{event}", event)
}

/// Per-event MQTT options: a `topics` value is a topic template, or
/// `{"topic"?, "qos"?, "retain"?}` overriding the distributor's settings for those events.
#[derive(Debug, Clone, PartialEq)]
pub struct EventOptions {
    /// Topic template (the distributor's `topic` when absent).
    pub topic: Option<String>,
    /// QoS override.
    pub qos: Option<QoS>,
    /// Retain override.
    pub retain: Option<bool>,
}

fn parse_event_options(path: &str, value: &Value) -> Result<EventOptions, Vec<String>> {
    let mut errors = Vec::new();
    let options = match value {
        Value::String(t) => EventOptions {
            topic: Some(t.clone()),
            qos: None,
            retain: None,
        },
        Value::Object(o) => {
            let topic = o
                .get("topic")
                .map(|t| t.as_str().map(str::to_string).ok_or(t));
            let qos = o.get("qos").map(|q| match q.as_u64() {
                Some(0) => Ok(QoS::AtMostOnce),
                Some(1) => Ok(QoS::AtLeastOnce),
                Some(2) => Ok(QoS::ExactlyOnce),
                _ => Err(q),
            });
            let retain = o.get("retain").map(|r| r.as_bool().ok_or(r));
            for key in o
                .keys()
                .filter(|k| !matches!(k.as_str(), "topic" | "qos" | "retain"))
            {
                errors.push(format!(
                    "{path}.{key}: unknown field (known fields: topic, qos, retain)"
                ));
            }
            if let Some(Err(v)) = &topic {
                errors.push(format!(
                    "{path}.topic: must be a topic string, got {}",
                    kind_of(v)
                ));
            }
            if let Some(Err(v)) = &qos {
                errors.push(format!("{path}.qos: must be 0, 1 or 2, got {v}"));
            }
            if let Some(Err(v)) = &retain {
                errors.push(format!("{path}.retain: must be true or false, got {v}"));
            }
            EventOptions {
                topic: topic.and_then(Result::ok),
                qos: qos.and_then(Result::ok),
                retain: retain.and_then(Result::ok),
            }
        }
        other => {
            return Err(vec![format!(
                "{path}: must be a topic or {{\"topic\", \"qos\", \"retain\"}}, got {}",
                kind_of(other)
            )])
        }
    };
    if let Some(Err(e)) = options
        .topic
        .as_deref()
        .map(|t| check_topic(&format!("{path}.topic"), t))
    {
        errors.push(e);
    }
    if errors.is_empty() {
        Ok(options)
    } else {
        Err(errors)
    }
}

/// What a queued publish is.
enum Tag {
    /// The retained status message (nobody waits for it).
    Status,
    /// An event; the sender completes its delivery.
    Event(QoS, oneshot::Sender<Ack>),
}

/// How a publish ended, as the connection task saw it.
enum Ack {
    /// Acknowledged (written, at QoS 0).
    Acked,
    /// Never written: the connection went away first.
    NotSent(String),
    /// Written, but the connection went away before the acknowledgement: the broker may
    /// have it.
    Unacknowledged(String),
}

/// Connection state shared by the protocol and its connection task (same thread).
#[derive(Default)]
struct Link {
    client: Option<AsyncClient>,
    connected: bool,
    broker: String,
    last_error: String,
    /// Publishes queued, in order, not yet written.
    queued: VecDeque<Tag>,
    /// Written QoS 1/2 publishes awaiting their acknowledgement, by packet id.
    awaiting: HashMap<u16, Tag>,
    closing: bool,
    /// Wakes deliveries that wait for the first connection.
    connected_notify: Rc<tokio::sync::Notify>,
}

impl Link {
    fn fail_all(&mut self, error: &str) {
        for tag in self.queued.drain(..) {
            if let Tag::Event(_, tx) = tag {
                let _ = tx.send(Ack::NotSent(error.to_string()));
            }
        }
        for (_, tag) in self.awaiting.drain() {
            if let Tag::Event(_, tx) = tag {
                let _ = tx.send(Ack::Unacknowledged(format!(
                    "{error} (before the broker acknowledged the event)"
                )));
            }
        }
    }
}

/// The MQTT protocol half of a distributor.
pub struct MqttProtocol {
    session: Arc<str>,
    config: Arc<MqttConfig>,
    link: Rc<RefCell<Link>>,
    task: Option<tokio::task::JoinHandle<()>>,
    telemetry: Arc<DistributorTelemetry>,
    /// Where brokers may be.
    egress: Arc<EgressPolicy>,
}

/// Options for connecting to `broker` at `host` (the checked address for plain MQTT, the
/// name for TLS, whose certificate must prove it).
fn options(config: &MqttConfig, broker: &Broker, host: &str, session: &str) -> MqttOptions {
    let mut o = MqttOptions::new(format!("{}-{session}", config.client_id), host, broker.port);
    o.set_keep_alive(config.keep_alive);
    o.set_clean_session(true);
    o.set_max_packet_size(config.max_packet, config.max_packet);
    let status = render(&config.status_topic, session, "status");
    o.set_last_will(LastWill::new(status, "offline", QoS::AtLeastOnce, true));
    let username = broker.username.clone().or_else(|| config.username.clone());
    let password = broker.password.clone().or_else(|| config.password.clone());
    if let Some(u) = username {
        o.set_credentials(u, password.unwrap_or_default());
    }
    if broker.tls {
        o.set_transport(match &config.ca {
            Some(ca) => Transport::tls(ca.clone(), None, None),
            None => Transport::tls_with_default_config(),
        });
    }
    o
}

/// Where to connect for `broker`, through the egress policy: the first allowed address of
/// a plain broker (so the connection goes where the check looked), or the name of a TLS
/// one once every address it resolves to is allowed.
pub(crate) async fn target(broker: &Broker, egress: &EgressPolicy) -> Result<String, String> {
    if broker.tls {
        egress
            .resolve(&broker.host, broker.port, Use::ByName)
            .await?;
        Ok(broker.host.clone())
    } else {
        let allowed = egress
            .resolve(&broker.host, broker.port, Use::Connect)
            .await?;
        // rumqttc writes "{host}:{port}": an IPv6 address needs its brackets.
        Ok(match allowed[0].ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        })
    }
}

/// Drives one connection after another until the link is closed.
async fn run(
    link: Rc<RefCell<Link>>,
    config: Arc<MqttConfig>,
    session: Arc<str>,
    telemetry: Arc<DistributorTelemetry>,
    egress: Arc<EgressPolicy>,
) {
    let status_topic = render(&config.status_topic, &session, "status");
    for attempt in 0usize.. {
        let broker = &config.brokers[attempt % config.brokers.len()];
        let host = match target(broker, &egress).await {
            Ok(host) => host,
            Err(error) => {
                {
                    let mut l = link.borrow_mut();
                    if l.closing {
                        return;
                    }
                    l.broker = broker.shown.clone();
                    l.last_error = format!("MQTT broker {}: {error}", broker.shown);
                    telemetry.set_last_error(&l.last_error);
                }
                tokio::time::sleep(config.reconnect_delay).await;
                continue;
            }
        };
        let (client, mut eventloop) = AsyncClient::new(
            options(&config, broker, &host, &session),
            CLIENT_CHANNEL_CAPACITY,
        );
        // Events are small and latency matters: no Nagle delay on the publisher.
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        {
            let mut l = link.borrow_mut();
            if l.closing {
                return;
            }
            l.client = Some(client.clone());
            l.broker = broker.shown.clone();
        }
        loop {
            let polled = eventloop.poll().await;
            let mut l = link.borrow_mut();
            match polled {
                Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                    l.connected = true;
                    l.connected_notify.notify_waiters();
                    tracing::info!(session = %session, broker = %broker.shown, "MQTT connected");
                    if client
                        .try_publish(&status_topic, QoS::AtLeastOnce, true, "online")
                        .is_ok()
                    {
                        l.queued.push_back(Tag::Status);
                    }
                }
                Ok(MqttEvent::Outgoing(Outgoing::Publish(pkid))) => match l.queued.pop_front() {
                    Some(Tag::Event(QoS::AtMostOnce, tx)) => {
                        let _ = tx.send(Ack::Acked);
                    }
                    Some(tag) => {
                        l.awaiting.insert(pkid, tag);
                    }
                    None => {}
                },
                Ok(MqttEvent::Incoming(Packet::PubAck(ack))) => {
                    if let Some(Tag::Event(QoS::AtLeastOnce, tx)) = l.awaiting.remove(&ack.pkid) {
                        let _ = tx.send(Ack::Acked);
                    }
                }
                Ok(MqttEvent::Incoming(Packet::PubComp(comp))) => {
                    if let Some(Tag::Event(QoS::ExactlyOnce, tx)) = l.awaiting.remove(&comp.pkid) {
                        let _ = tx.send(Ack::Acked);
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    let was_connected = std::mem::replace(&mut l.connected, false);
                    l.client = None;
                    l.last_error = format!("MQTT broker {}: {error}", broker.shown);
                    let error_text = l.last_error.clone();
                    l.fail_all(&error_text);
                    if l.closing {
                        return;
                    }
                    telemetry.set_last_error(&l.last_error);
                    if was_connected {
                        tracing::warn!(session = %session, broker = %broker.shown, %error, "MQTT connection lost");
                    } else {
                        tracing::debug!(session = %session, broker = %broker.shown, %error, "MQTT connection failed");
                    }
                    break;
                }
            }
        }
        tokio::time::sleep(config.reconnect_delay).await;
    }
}

impl MqttProtocol {
    fn spawn(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let mut old = self.link.replace(Link::default());
        old.fail_all("MQTT distributor reconfigured");
        if let Some(client) = old.client.take() {
            let _ = client.try_disconnect();
        }
        self.task = Some(tokio::task::spawn_local(run(
            self.link.clone(),
            self.config.clone(),
            self.session.clone(),
            self.telemetry.clone(),
            self.egress.clone(),
        )));
    }
}

impl Protocol for MqttProtocol {
    type Config = MqttConfig;
    const KIND: DistributorKind = DistributorKind::Mqtt;

    fn parse(r: &mut FieldReader<'_>, path: &str, rails: &Guardrails) -> MqttConfig {
        let mut brokers = Vec::new();
        let broker_at = |at: &str, url: &str| {
            parse_broker(at, url).and_then(|b| {
                rails
                    .egress
                    .check_written(&b.host, b.port)
                    .map_err(|e| format!("{at}: {e}"))?;
                Ok(b)
            })
        };
        match r.string("broker") {
            Some(url) => match broker_at(&format!("{path}.broker"), &url) {
                Ok(b) => brokers.push(b),
                Err(e) => r.report().error(e),
            },
            None => r.report().error(format!(
                "{path}.broker: MQTT distributor requires broker URL"
            )),
        }
        match r.raw("backupBrokers") {
            None => {}
            Some(Value::Array(list)) => {
                for (i, v) in list.iter().enumerate() {
                    let p = format!("{path}.backupBrokers[{i}]");
                    match v.as_str().map(|u| broker_at(&p, u)) {
                        Some(Ok(b)) => brokers.push(b),
                        Some(Err(e)) => r.report().error(e),
                        None => r
                            .report()
                            .error(format!("{p}: must be a broker URL, got {}", kind_of(v))),
                    }
                }
            }
            Some(other) => r.report().error(format!(
                "{path}.backupBrokers: must be a list of broker URLs, got {}",
                kind_of(other)
            )),
        }
        let client_id = r.string("clientId").unwrap_or_else(|| "synopticon".into());
        let username = r.string("username");
        let password = r.string("password");
        if brokers.iter().any(|b| !b.tls)
            && (password.is_some() || brokers.iter().any(|b| b.password.is_some()))
        {
            r.report().warn(format!(
                "{path}: a password over mqtt:// travels unencrypted; use mqtts://"
            ));
        }
        let qos = match r.u64("qos", 0, 2, 1) {
            0 => QoS::AtMostOnce,
            2 => QoS::ExactlyOnce,
            _ => QoS::AtLeastOnce,
        };
        let retain = r.bool("retain", false);
        let topic = r.string("topic").unwrap_or_else(|| DEFAULT_TOPIC.into());
        if let Err(e) = check_topic(&format!("{path}.topic"), &topic) {
            r.report().error(e);
        }
        let mut topics = Vec::new();
        match r.raw("topics") {
            None => {}
            Some(Value::Object(map)) => {
                for (pattern, v) in map {
                    match parse_event_options(&format!("{path}.topics.{pattern}"), v) {
                        Ok(o) => topics.push((Glob::new(pattern), o)),
                        Err(errors) => errors.into_iter().for_each(|e| r.report().error(e)),
                    }
                }
            }
            Some(other) => r.report().error(format!(
                "{path}.topics: must be an object of event pattern → topic or options, got {}",
                kind_of(other)
            )),
        }
        topics.sort_by_key(|(g, _)| std::cmp::Reverse(g.specificity()));
        let status_topic = r
            .string("statusTopic")
            .unwrap_or_else(|| DEFAULT_STATUS_TOPIC.into());
        if let Err(e) = check_topic(&format!("{path}.statusTopic"), &status_topic) {
            r.report().error(e);
        }
        let keep_alive = Duration::from_secs(r.u64("keepAliveSecs", 5, 3600, 30));
        let ack_timeout = Duration::from_millis(r.u64("ackTimeoutMs", 10, 600_000, 5000));
        let reconnect_delay = Duration::from_millis(r.u64("reconnectDelayMs", 10, 600_000, 1000));
        let max_packet = r.u64("maxPacketBytes", 1024, 268_435_455, 1 << 20) as usize;
        let ca = r.pem_file("caFile");
        if ca.is_some() && !brokers.iter().any(|b| b.tls) {
            r.report().warn(format!(
                "{path}.caFile: only used for mqtts:// brokers, and none is configured"
            ));
        }
        let data_only = r.choice("payload", &["envelope", "data"], "envelope") == "data";
        MqttConfig {
            data_only,
            brokers,
            client_id,
            username,
            password,
            qos,
            retain,
            topic,
            topics,
            status_topic,
            keep_alive,
            ack_timeout,
            reconnect_delay,
            max_packet,
            ca,
        }
    }

    fn answer_timeout(config: &Self::Config) -> Option<Duration> {
        Some(config.ack_timeout)
    }

    fn new(
        session: Arc<str>,
        config: MqttConfig,
        telemetry: Arc<DistributorTelemetry>,
        rails: &Guardrails,
    ) -> Self {
        Self {
            session,
            config: Arc::new(config),
            link: Rc::default(),
            task: None,
            telemetry,
            egress: rails.egress.clone(),
        }
    }

    fn started(&mut self) {
        // Restarts after a panic keep the running connection.
        if self.task.as_ref().is_none_or(|t| t.is_finished()) {
            self.spawn();
        }
    }

    fn deliver(&mut self, event: &Arc<Event>) -> Delivery {
        let link = self.link.borrow();
        if link.connected {
            drop(link);
            return match publish(&self.link, &self.config, &self.session, event) {
                Ok(ack) => Delivery::Later(Box::pin(await_ack(ack, self.config.ack_timeout))),
                Err(outcome) => Delivery::Done(outcome),
            };
        }
        if !link.last_error.is_empty() {
            return Delivery::Done(Outcome::Failed(format!(
                "MQTT broker {} not connected ({})",
                link.broker, link.last_error
            )));
        }
        // Still making the first connection: wait for it (bounded by ackTimeoutMs) rather
        // than fail events sent right after the distributor was enabled.
        let notify = link.connected_notify.clone();
        drop(link);
        let (link, config) = (self.link.clone(), self.config.clone());
        let (session, event) = (self.session.clone(), event.clone());
        Delivery::Later(Box::pin(async move {
            let _ = tokio::time::timeout(config.ack_timeout, notify.notified()).await;
            match publish(&link, &config, &session, &event) {
                Ok(ack) => await_ack(ack, config.ack_timeout).await,
                Err(outcome) => outcome,
            }
        }))
    }

    fn reconfigure(&mut self, config: MqttConfig) {
        self.config = Arc::new(config);
        self.spawn();
    }

    fn close(&mut self, _reason: CloseReason) {
        let mut link = self.link.borrow_mut();
        link.closing = true;
        if let Some(client) = link.client.take() {
            let status = render(&self.config.status_topic, &self.session, "status");
            let _ = client.try_publish(status, QoS::AtLeastOnce, true, "offline");
            let _ = client.try_disconnect();
        }
        link.fail_all("MQTT distributor closed");
        // The connection task flushes the goodbye and ends when the broker closes.
    }
}

/// Queues `event` on the connected client; the receiver completes on the broker's ack.
fn publish(
    link: &Rc<RefCell<Link>>,
    config: &MqttConfig,
    session: &str,
    event: &Event,
) -> Result<oneshot::Receiver<Ack>, Outcome> {
    let mut link = link.borrow_mut();
    let client = match (&link.client, link.connected) {
        (Some(client), true) => client.clone(),
        _ => {
            let why = if link.last_error.is_empty() {
                "not connected in time"
            } else {
                link.last_error.as_str()
            };
            return Err(Outcome::Failed(format!(
                "MQTT broker {} not connected ({why})",
                link.broker
            )));
        }
    };
    let options = config
        .topics
        .iter()
        .find(|(g, _)| g.matches(&event.name))
        .map(|(_, o)| o);
    let template = options
        .and_then(|o| o.topic.as_deref())
        .unwrap_or(&config.topic);
    let qos = options.and_then(|o| o.qos).unwrap_or(config.qos);
    let retain = options.and_then(|o| o.retain).unwrap_or(config.retain);
    let topic = render(template, session, &event.name);
    // Fixed header (5) + topic length (2) + packet id (2) + topic + payload.
    let payload = event.payload(config.data_only);
    let packet = 9 + topic.len() + payload.len();
    if packet > config.max_packet {
        return Err(Outcome::Rejected(format!(
            "event {} seq {}: MQTT packet of {packet} bytes exceeds maxPacketBytes {}",
            event.name, event.seq, config.max_packet
        )));
    }
    let (tx, rx) = oneshot::channel();
    if let Err(e) = client.try_publish(topic, qos, retain, payload.clone()) {
        return Err(Outcome::Failed(format!("MQTT publish refused: {e}")));
    }
    link.queued.push_back(Tag::Event(qos, tx));
    Ok(rx)
}

/// Waits for the broker's acknowledgement of one publish. A publish that went out and was
/// never acknowledged is `Unconfirmed`: the broker may have it.
async fn await_ack(ack: oneshot::Receiver<Ack>, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, ack).await {
        Ok(Ok(Ack::Acked)) => Outcome::Delivered,
        Ok(Ok(Ack::NotSent(error))) => Outcome::Failed(error),
        Ok(Ok(Ack::Unacknowledged(error))) => Outcome::Unconfirmed(error),
        Ok(Err(_)) => {
            Outcome::Unconfirmed("MQTT connection was replaced before the acknowledgement".into())
        }
        Err(_) => Outcome::Unconfirmed(format!(
            "no acknowledgement from the MQTT broker within {} ms",
            timeout.as_millis()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_are_parsed_with_defaults_and_credentials() {
        let b = parse_broker("b", "mqtt://127.0.0.1").unwrap();
        assert_eq!((b.host.as_str(), b.port, b.tls), ("127.0.0.1", 1883, false));
        let b = parse_broker("b", "mqtts://bob:pw@broker.lab:8884").unwrap();
        assert_eq!(
            (b.port, b.tls, b.username.as_deref(), b.password.as_deref()),
            (8884, true, Some("bob"), Some("pw"))
        );
        assert_eq!(b.shown, "mqtts://broker.lab:8884");
        assert!(parse_broker("b", "http://x")
            .unwrap_err()
            .contains("mqtt://"));
        assert!(parse_broker("b", "mqtt://x:0")
            .unwrap_err()
            .contains("port must be 1-65535"));
    }

    #[test]
    fn an_ipv6_broker_takes_the_schemes_port_when_it_names_none() {
        let b = parse_broker("b", "mqtt://[fd00::1]").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("fd00::1", 1883));
        assert_eq!(b.shown, "mqtt://[fd00::1]:1883");
        let b = parse_broker("b", "mqtts://u:p@[::1]:8884/x").unwrap();
        assert_eq!((b.host.as_str(), b.port, b.tls), ("::1", 8884, true));
        let b = parse_broker("b", "mqtts://[fd00::1]").unwrap();
        assert_eq!(b.port, 8883);
        assert!(parse_broker("b", "mqtt://fd00::1")
            .unwrap_err()
            .contains("brackets"));
        assert!(parse_broker("b", "mqtt://[fd00::1")
            .unwrap_err()
            .contains("closing ]"));
        assert!(parse_broker("b", "mqtt://[fd00::1]:99999").is_err());
    }

    #[test]
    fn topics_are_rendered_and_checked() {
        assert_eq!(
            render(DEFAULT_TOPIC, "s1", "face_detected"),
            "synopticon/s1/face_detected"
        );
        assert!(check_topic("t", "a/+/b").is_err());
        assert!(check_topic("t", "a/b").is_ok());
    }
}
