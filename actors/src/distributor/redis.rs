//! Redis distributor: `PUBLISH`es each event's JSON envelope to a channel and/or `XADD`s it
//! to a stream capped with `MAXLEN ~`, over one multiplexed connection that reconnects by
//! itself.
//!
//! Channels and stream keys are templates (`{session}`, `{event}`) chosen per event pattern.
//! Both commands go in one pipeline, so an event costs one round trip. While no connection
//! is up a delivery fails at once, and the breaker soon holds events in the queue.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::Value;

use super::{Delivery, DistributorKind, Outcome, Protocol};
use crate::egress::{EgressPolicy, Use};
use crate::event::Event;
use crate::glob::Glob;
use crate::guardrails::Guardrails;
use crate::telemetry::DistributorTelemetry;
use crate::validation::{kind_of, FieldReader};

/// Default Pub/Sub channel template.
pub const DEFAULT_CHANNEL: &str = "synopticon:{session}:{event}";
/// Default approximate stream length cap.
pub const DEFAULT_MAX_LEN: u64 = 100_000;

/// Redis settings.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` (TLS) `[user:password@]host[:port][/db]` (`url`).
    pub url: String,
    /// PEM certificates trusted for `rediss://` instead of the system roots (`caFile`).
    pub ca: Option<Vec<u8>>,
    /// Publish to channels (`publish`, default true).
    pub publish: bool,
    /// Channel template (`channel`).
    pub channel: String,
    /// Event pattern → channel template (`channels`), most specific first.
    pub channels: Vec<(Glob, String)>,
    /// Stream key template for every event (`stream`; none by default).
    pub stream: Option<String>,
    /// Event pattern → stream key template (`streams`), most specific first.
    pub streams: Vec<(Glob, String)>,
    /// `XADD ... MAXLEN ~ maxLen` (`maxLen`).
    pub max_len: u64,
    /// Per-command timeout (`commandTimeoutMs`).
    pub command_timeout: Duration,
    /// Pause between connection attempts (`reconnectDelayMs`).
    pub reconnect_delay: Duration,
    /// Carry only each event's `data` instead of its envelope (`payload`: `envelope`, the
    /// default, or `data`): an edge publishing plain detection envelopes.
    pub data_only: bool,
}

fn render(template: &str, session: &str, event: &str) -> String {
    template
        .replace("{session}", session)
        .replace("{event}", event)
}

fn pick<'a>(map: &'a [(Glob, String)], default: Option<&'a str>, event: &str) -> Option<&'a str> {
    map.iter()
        .find(|(g, _)| g.matches(event))
        .map(|(_, t)| t.as_str())
        .or(default)
}

fn read_templates(r: &mut FieldReader<'_>, path: &str, key: &'static str) -> Vec<(Glob, String)> {
    let mut out = Vec::new();
    match r.raw(key) {
        None => {}
        Some(Value::Object(map)) => {
            for (pattern, v) in map {
                match v.as_str() {
                    Some(t) if !t.is_empty() => out.push((Glob::new(pattern), t.to_string())),
                    _ => r.report().error(format!(
                        "{path}.{key}.{pattern}: must be a non-empty name template, got {v}"
                    )),
                }
            }
        }
        Some(other) => r.report().error(format!(
            "{path}.{key}: must be an object of event pattern → name, got {}",
            kind_of(other)
        )),
    }
    out.sort_by_key(|(g, _)| std::cmp::Reverse(g.specificity()));
    out
}

/// The Redis protocol half of a distributor.
pub struct RedisProtocol {
    session: Arc<str>,
    config: Arc<RedisConfig>,
    connection: Rc<RefCell<Option<ConnectionManager>>>,
    last_error: Rc<RefCell<String>>,
    /// Wakes deliveries that wait for the first connection.
    connected: Rc<tokio::sync::Notify>,
    task: Option<tokio::task::JoinHandle<()>>,
    telemetry: Arc<DistributorTelemetry>,
    /// Where the server may be.
    egress: Arc<EgressPolicy>,
}

impl RedisProtocol {
    /// Connects in the background, retrying until it succeeds; the manager then keeps the
    /// connection up by itself.
    fn connect(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.connection.replace(None);
        let (config, slot, last_error) = (
            self.config.clone(),
            self.connection.clone(),
            self.last_error.clone(),
        );
        let connected = self.connected.clone();
        let (session, telemetry) = (self.session.clone(), self.telemetry.clone());
        let egress = self.egress.clone();
        self.task = Some(tokio::task::spawn_local(async move {
            let manager_config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.command_timeout))
                .set_response_timeout(Some(config.command_timeout))
                .set_max_delay(config.reconnect_delay.max(Duration::from_millis(100)));
            loop {
                let client = match target_url(&config.url, &egress)
                    .await
                    .and_then(|url| open_client(&url, config.ca.as_ref()))
                {
                    Ok(client) => client,
                    Err(e) => {
                        let message = format!("Redis {}: {e}", redact_url(&config.url));
                        telemetry.set_last_error(&message);
                        *last_error.borrow_mut() = message;
                        tokio::time::sleep(config.reconnect_delay).await;
                        continue;
                    }
                };
                match client
                    .get_connection_manager_with_config(manager_config.clone())
                    .await
                {
                    Ok(manager) => {
                        tracing::info!(session = %session, "Redis connected");
                        slot.replace(Some(manager));
                        connected.notify_waiters();
                        return;
                    }
                    Err(e) => {
                        let message = format!("Redis {}: {e}", redact_url(&config.url));
                        telemetry.set_last_error(&message);
                        *last_error.borrow_mut() = message;
                        tokio::time::sleep(config.reconnect_delay).await;
                    }
                }
            }
        }));
    }
}

/// The client for `url`. TLS goes through rustls with the process's ring provider, like
/// MQTT and the webhooks; a configured CA replaces the system roots.
pub(crate) fn open_client(url: &str, ca: Option<&Vec<u8>>) -> Result<redis::Client, String> {
    let opened = match ca {
        Some(pem) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            },
        ),
        None => redis::Client::open(url),
    };
    opened.map_err(|e| format!("invalid Redis URL: {e}"))
}

/// Where to connect, through the egress policy: a plain `redis://` URL with its host
/// replaced by the first allowed address (so the connection goes where the check looked,
/// at every reconnection too); a `rediss://` one as written once every address its name
/// resolves to is allowed (the certificate must then prove the name).
pub(crate) async fn target_url(url: &str, egress: &EgressPolicy) -> Result<String, String> {
    let mut parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_string();
    let port = parsed.port().unwrap_or(6379);
    if parsed.scheme() == "rediss" {
        egress.resolve(&host, port, Use::ByName).await?;
        return Ok(url.to_string());
    }
    let allowed = egress.resolve(&host, port, Use::Connect).await?;
    let ip = match allowed[0].ip() {
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    parsed
        .set_host(Some(&ip))
        .map_err(|e| format!("invalid Redis URL: {e}"))?;
    Ok(parsed.to_string())
}

/// The URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***@{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_string(),
    }
}

impl Protocol for RedisProtocol {
    type Config = RedisConfig;
    const KIND: DistributorKind = DistributorKind::Redis;

    fn parse(r: &mut FieldReader<'_>, path: &str, rails: &Guardrails) -> RedisConfig {
        let url = match r.string("url") {
            Some(u) if u.starts_with("redis://") || u.starts_with("rediss://") => {
                match (redis::Client::open(u.as_str()), reqwest::Url::parse(&u)) {
                    (Ok(_), Ok(parsed)) => {
                        let host = parsed.host_str().unwrap_or("127.0.0.1");
                        let port = parsed.port().unwrap_or(6379);
                        if let Err(e) = rails.egress.check_written(host, port) {
                            r.report().error(format!("{path}.url: {e}"));
                        }
                    }
                    _ => r.report().error(format!(
                        "{path}.url: {:?} is not a valid Redis URL",
                        redact_url(&u)
                    )),
                }
                u
            }
            Some(u) => {
                r.report().error(format!(
                    "{path}.url: Redis url must start with redis:// or rediss:// (TLS), got {:?}",
                    redact_url(&u)
                ));
                u
            }
            None => {
                r.report()
                    .error(format!("{path}.url: Redis distributor requires url"));
                String::new()
            }
        };
        let publish = r.bool("publish", true);
        let channel = r
            .string("channel")
            .unwrap_or_else(|| DEFAULT_CHANNEL.into());
        let channels = read_templates(r, path, "channels");
        let stream = r.string("stream");
        let streams = read_templates(r, path, "streams");
        if !publish && stream.is_none() && streams.is_empty() {
            r.report().error(format!(
                "{path}: nothing to do: set publish, stream or streams"
            ));
        }
        let ca = r.pem_file("caFile");
        if ca.is_some() && !url.starts_with("rediss://") {
            r.report()
                .warn(format!("{path}.caFile: only used with rediss:// URLs"));
        }
        let max_len = r.u64("maxLen", 1, 1 << 40, DEFAULT_MAX_LEN);
        let command_timeout = Duration::from_millis(r.u64("commandTimeoutMs", 10, 600_000, 2000));
        let reconnect_delay = Duration::from_millis(r.u64("reconnectDelayMs", 10, 600_000, 1000));
        let data_only = r.choice("payload", &["envelope", "data"], "envelope") == "data";
        RedisConfig {
            data_only,
            url,
            ca,
            publish,
            channel,
            channels,
            stream,
            streams,
            max_len,
            command_timeout,
            reconnect_delay,
        }
    }

    fn answer_timeout(config: &Self::Config) -> Option<Duration> {
        Some(config.command_timeout)
    }

    fn new(
        session: Arc<str>,
        config: RedisConfig,
        telemetry: Arc<DistributorTelemetry>,
        rails: &Guardrails,
    ) -> Self {
        Self {
            session,
            config: Arc::new(config),
            connection: Rc::default(),
            last_error: Rc::default(),
            connected: Rc::default(),
            task: None,
            telemetry,
            egress: rails.egress.clone(),
        }
    }

    fn started(&mut self) {
        if self.connection.borrow().is_none() && self.task.as_ref().is_none_or(|t| t.is_finished())
        {
            self.connect();
        }
    }

    fn deliver(&mut self, event: &Arc<Event>) -> Delivery {
        let connection = self.connection.borrow().clone();
        if connection.is_none() && !self.last_error.borrow().is_empty() {
            let why = self.last_error.borrow().clone();
            return Delivery::Done(Outcome::Failed(format!("Redis not connected ({why})")));
        }
        // Still making the first connection: wait for it (bounded by the command timeout)
        // rather than fail events sent right after the distributor was enabled.
        let (slot, notify) = (self.connection.clone(), self.connected.clone());
        let last_error = self.last_error.clone();
        let config = &self.config;
        let json = event.payload(config.data_only);
        let mut pipe = redis::pipe();
        if let Some(stream) = pick(&config.streams, config.stream.as_deref(), &event.name) {
            pipe.cmd("XADD")
                .arg(render(stream, &self.session, &event.name))
                .arg("MAXLEN")
                .arg("~")
                .arg(config.max_len)
                .arg("*")
                .arg("event")
                .arg(&*event.name)
                .arg("seq")
                .arg(event.seq)
                .arg("json")
                .arg(json.as_ref())
                .ignore();
        }
        if config.publish {
            let channel = pick(&config.channels, Some(&config.channel), &event.name)
                .unwrap_or(DEFAULT_CHANNEL);
            pipe.cmd("PUBLISH")
                .arg(render(channel, &self.session, &event.name))
                .arg(json.as_ref())
                .ignore();
        }
        let timeout = config.command_timeout;
        Delivery::Later(Box::pin(async move {
            let mut connection = match connection {
                Some(c) => c,
                None => {
                    let _ = tokio::time::timeout(timeout, notify.notified()).await;
                    let Some(c) = slot.borrow().clone() else {
                        // Say why: the latest connection attempt's error, if there was one.
                        let why = last_error.borrow().clone();
                        return Outcome::Failed(if why.is_empty() {
                            format!("Redis not connected within {} ms", timeout.as_millis())
                        } else {
                            format!(
                                "Redis not connected within {} ms ({why})",
                                timeout.as_millis()
                            )
                        });
                    };
                    c
                }
            };
            match tokio::time::timeout(timeout, pipe.query_async::<()>(&mut connection)).await {
                Ok(Ok(())) => Outcome::Delivered,
                Ok(Err(e))
                    if e.kind()
                        == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) =>
                {
                    Outcome::Rejected(format!("Redis refused the event: {e}"))
                }
                // Sent, and the reply never came (timed out, or the connection was lost
                // mid-command): Redis may well have run it.
                Ok(Err(e)) if e.is_timeout() || e.is_connection_dropped() => {
                    Outcome::Unconfirmed(format!("Redis: {e} (no reply)"))
                }
                Ok(Err(e)) => Outcome::Failed(format!("Redis: {e}")),
                Err(_) => Outcome::Unconfirmed(format!(
                    "Redis did not answer within {} ms",
                    timeout.as_millis()
                )),
            }
        }))
    }

    fn reconfigure(&mut self, config: RedisConfig) {
        let reconnect = config.url != self.config.url;
        self.config = Arc::new(config);
        if reconnect {
            self.connect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            redact_url("redis://:pw@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact_url("redis://host"), "redis://host");
    }
}
