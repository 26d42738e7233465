//! An MQTT topic filter read at QoS 1, in a persistent session.
//!
//! The client id is stable (`synopticon-{instance}-{input}`) and the session persistent,
//! so messages published while the processor is away wait at the broker. A message is
//! acknowledged (PUBACK) only once its detections are in the tracker; one left
//! unacknowledged (the processor stopped) is delivered again on the next connection. With
//! `shareGroup`, the subscription is `$share/{group}/{topic}`: processors of one group
//! split the messages between them.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS, Transport};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::{number, text, unknown_keys, Failure, InputConfig, InputStats, Processor};
use crate::distributor::mqtt::{parse_broker, target, Broker};
use crate::egress::EgressPolicy;
use crate::validation::Report;

/// An MQTT input's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttInputConfig {
    /// The broker (`broker`, `mqtt://[user:password@]host:1883` or `mqtts://`).
    pub broker: Broker,
    /// The topic filter (`topic`, default `detections/+`).
    pub topic: String,
    /// Shared subscription group (`shareGroup`; none by default).
    pub share_group: Option<String>,
    /// QoS (`qos`, 1 or 2; default 1).
    pub qos: u8,
    /// Client id (`clientId`, default `synopticon-{instance}-{input}`).
    pub client_id: String,
    /// Where unreadable or refused messages are published, with the reason
    /// (`deadLetterTopic`; none by default: they are logged and counted).
    pub dead_letter_topic: Option<String>,
    /// Pause between connection attempts, doubled up to a minute (`reconnectDelayMs`).
    pub reconnect: Duration,
}

const FIELDS: &[&str] = &[
    "broker",
    "topic",
    "shareGroup",
    "qos",
    "clientId",
    "deadLetterTopic",
    "reconnectDelayMs",
];

impl MqttInputConfig {
    pub(super) fn parse(
        map: &Map<String, Value>,
        instance: &str,
        name: &str,
        report: &mut Report,
    ) -> Option<Self> {
        unknown_keys(map, FIELDS, report);
        let broker = match parse_broker("broker", &text(map, "broker", "", report)) {
            Ok(b) => Some(b),
            Err(e) => {
                report.error(e);
                None
            }
        };
        let topic = text(map, "topic", "detections/+", report);
        if topic.starts_with("$share/") {
            report.error("topic: give the filter alone, and the group as shareGroup");
        }
        let share_group = match map.get("shareGroup") {
            None | Some(Value::Null) => None,
            Some(Value::String(g))
                if !g.is_empty() && !g.contains(['/', '+', '#']) && g.len() <= 64 =>
            {
                Some(g.clone())
            }
            Some(_) => {
                report.error("shareGroup: a name without / + #");
                None
            }
        };
        let dead_letter_topic = match map.get("deadLetterTopic") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) if !t.is_empty() && !t.contains(['+', '#']) => {
                if matches_filter(&topic, t) {
                    report.error(format!(
                        "deadLetterTopic: {t:?} matches the topic filter {topic:?}: its messages would come back"
                    ));
                }
                Some(t.clone())
            }
            Some(_) => {
                report.error("deadLetterTopic: a topic without wildcards");
                None
            }
        };
        let qos = number(map, "qos", 1, 1..=2, report) as u8;
        Some(MqttInputConfig {
            broker: broker?,
            topic,
            share_group,
            qos,
            client_id: text(
                map,
                "clientId",
                &format!("synopticon-{instance}-{name}"),
                report,
            ),
            dead_letter_topic,
            reconnect: Duration::from_millis(number(
                map,
                "reconnectDelayMs",
                1000,
                100..=60_000,
                report,
            )),
        })
    }

    fn subscription(&self) -> String {
        match &self.share_group {
            Some(group) => format!("$share/{group}/{}", self.topic),
            None => self.topic.clone(),
        }
    }
}

/// Whether MQTT topic `topic` matches filter `filter` (`+` one level, `#` the rest).
pub fn matches_filter(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Messages waiting between the connection and the tracker.
const HANDOFF: usize = 256;

/// Consumes the topic until aborted, reconnecting with backoff.
pub(super) async fn run(
    config: MqttInputConfig,
    input: &InputConfig,
    stats: &InputStats,
    processor: &Processor,
    egress: &EgressPolicy,
) {
    let mut wait = config.reconnect;
    loop {
        let mut accepted = false;
        let outcome = consume(&config, input, stats, processor, egress, &mut accepted).await;
        if let Err(e) = outcome {
            stats.error(&input.name, e);
        }
        // A connection the broker accepted starts the backoff over: only failures in a
        // row wait longer and longer.
        if accepted {
            wait = config.reconnect;
        }
        stats.set_connected(false);
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(60));
    }
}

async fn consume(
    config: &MqttInputConfig,
    input: &InputConfig,
    stats: &InputStats,
    processor: &Processor,
    egress: &EgressPolicy,
    accepted: &mut bool,
) -> Result<(), String> {
    let broker = &config.broker;
    let host = target(broker, egress)
        .await
        .map_err(|e| format!("MQTT broker {}: {e}", broker.shown))?;
    let mut options = MqttOptions::new(&config.client_id, host, broker.port);
    options.set_keep_alive(Duration::from_secs(15));
    // A persistent session: what is published while we are away waits at the broker.
    options.set_clean_session(false);
    options.set_manual_acks(true);
    options.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
    if let Some(u) = &broker.username {
        options.set_credentials(u.clone(), broker.password.clone().unwrap_or_default());
    }
    if broker.tls {
        options.set_transport(Transport::tls_with_default_config());
    }
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let qos = if config.qos == 2 {
        QoS::ExactlyOnce
    } else {
        QoS::AtLeastOnce
    };
    let (tx, mut rx) = mpsc::channel::<Publish>(HANDOFF);
    let subscription = config.subscription();
    let poll = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    *accepted = true;
                    stats.set_connected(true);
                    tracing::info!(input = %input.name, broker = %broker.shown, topic = %subscription, resumed = ack.session_present, "MQTT input connected");
                    client
                        .subscribe(&subscription, qos)
                        .await
                        .map_err(|e| format!("subscribe {subscription}: {e}"))?;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send(p).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(format!("MQTT broker {}: {e}", broker.shown)),
            }
        }
    };
    let work = async {
        while let Some(publish) = rx.recv().await {
            stats.received(1);
            if publish.dup {
                stats.redelivered(1);
            }
            match processor
                .handle(&publish.payload, input, stats, false)
                .await
            {
                Ok(handled) => stats.outcome(&handled),
                Err(Failure::Dead(reason)) => {
                    stats.dead_lettered();
                    tracing::warn!(input = %input.name, topic = %publish.topic, reason, "message dead-lettered");
                    if let Some(topic) = &config.dead_letter_topic {
                        let letter = json!({"reason": reason, "topic": publish.topic,
                            "payload": String::from_utf8_lossy(&publish.payload)});
                        let _ = client
                            .publish(topic, QoS::AtLeastOnce, false, letter.to_string())
                            .await;
                    }
                }
                Err(Failure::Later(reason)) => {
                    // Not acknowledged: the broker delivers it again on the next
                    // connection, which this forces.
                    stats.failed();
                    return Err(format!(
                        "message on {} left for later: {reason}",
                        publish.topic
                    ));
                }
            }
            client
                .ack(&publish)
                .await
                .map_err(|e| format!("PUBACK: {e}"))?;
            stats.acknowledged(1);
        }
        Ok::<(), String>(())
    };
    tokio::select! {
        r = poll => r,
        r = work => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_filters_match_like_a_broker() {
        assert!(matches_filter("detections/+", "detections/driveway"));
        assert!(!matches_filter("detections/+", "detections/a/b"));
        assert!(matches_filter("detections/#", "detections/a/b"));
        assert!(matches_filter("#", "anything"));
        assert!(!matches_filter("detections/+", "other/x"));
        assert!(matches_filter("a/b", "a/b"));
    }
}
