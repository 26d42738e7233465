//! UDP distributor: one datagram per event to every target, in a compact binary encoding
//! (documented byte by byte in docs/PROTOCOLS.md) or as the JSON envelope.
//!
//! Sending is a non-blocking `send_to` on the actor's thread: no future, no allocation
//! beyond the encoded datagram, which is built once per event and sent to every target.
//! A datagram larger than `maxDatagramBytes` is refused and counted, never cut.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;

use super::{Delivery, DistributorKind, Outcome, Protocol};
use crate::egress::{EgressPolicy, Use};
use crate::event::Event;
use crate::guardrails::Guardrails;
use crate::telemetry::DistributorTelemetry;
use crate::validation::{kind_of, FieldReader};

/// First four bytes of every binary datagram: `SYNO`.
pub const MAGIC: [u8; 4] = *b"SYNO";
/// Binary format version.
pub const VERSION: u8 = 1;
/// Length of the fixed binary header.
pub const HEADER_LEN: usize = 40;
/// Payload format code: the event's `data` as compact JSON.
pub const PAYLOAD_JSON: u8 = 1;
/// Largest datagram that crosses an Ethernet path without IP fragmentation (1500 − 20 − 8).
pub const SAFE_DATAGRAM: u64 = 1472;
/// Largest UDP payload over IPv4.
pub const MAX_DATAGRAM: u64 = 65507;

/// Datagram encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpEncoding {
    /// Fixed binary header plus the data as JSON.
    Binary,
    /// The JSON envelope, as WebSocket clients get it.
    Json,
}

/// UDP settings.
#[derive(Debug, Clone, PartialEq)]
pub struct UdpConfig {
    /// Where datagrams go, as written (`host:port`).
    pub targets: Vec<String>,
    /// `binary` (default) or `json`.
    pub encoding: UdpEncoding,
    /// Larger datagrams are refused (`maxDatagramBytes`).
    pub max_datagram: usize,
}

/// FNV-1a, 32 bits: the session and event-name hashes in the binary header.
pub fn fnv1a32(text: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash ^= byte as u32;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Encodes `event` in the binary format (big-endian; see docs/PROTOCOLS.md).
pub fn encode_binary(event: &Event) -> Bytes {
    let name = event.name.as_bytes();
    let payload = event.data.get().as_bytes();
    let mut buf = BytesMut::with_capacity(HEADER_LEN + name.len() + payload.len());
    buf.put_slice(&MAGIC);
    buf.put_u8(VERSION);
    buf.put_u8(PAYLOAD_JSON);
    buf.put_u16(HEADER_LEN as u16);
    buf.put_u32(fnv1a32(&event.session));
    buf.put_u64(event.seq);
    buf.put_u32(fnv1a32(&event.name));
    buf.put_i64(event.ts.timestamp_micros());
    buf.put_u16(name.len() as u16);
    buf.put_u16(0); // reserved
    buf.put_u32(payload.len() as u32);
    buf.put_slice(name);
    buf.put_slice(payload);
    buf.freeze()
}

/// The UDP protocol half of a distributor.
/// A datagram in the binary format, read back (what the UDP ingest port takes).
#[derive(Debug, PartialEq)]
pub struct Binary<'a> {
    /// FNV-1a 32 of the session id.
    pub session_hash: u32,
    /// The sender's number for it.
    pub seq: u64,
    /// Event type.
    pub name: &'a str,
    /// The JSON payload, as sent.
    pub payload: &'a str,
    /// Microseconds since the Unix epoch; 0: none given.
    pub ts_micros: i64,
}

/// Reads a datagram written by [`encode_binary`] (or a producer following
/// docs/PROTOCOLS.md#udp); the first problem is the error.
pub fn decode_binary(bytes: &[u8]) -> Result<Binary<'_>, String> {
    if bytes.len() < HEADER_LEN || bytes[..4] != MAGIC {
        return Err(format!(
            "shorter than the {HEADER_LEN}-byte header, or not starting with SYNO"
        ));
    }
    let u16_at = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]) as usize;
    let u32_at =
        |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[i..i + 8]);
        u64::from_be_bytes(b)
    };
    if bytes[4] != VERSION || bytes[5] != PAYLOAD_JSON {
        return Err("version and payload format must be 1".into());
    }
    let header = u16_at(6);
    let (name_len, payload_len) = (u16_at(32), u32_at(36) as usize);
    if header < HEADER_LEN || header + name_len + payload_len != bytes.len() {
        return Err("the lengths do not add up to the datagram's size".into());
    }
    let name = std::str::from_utf8(&bytes[header..header + name_len])
        .map_err(|_| "the event name is not UTF-8".to_string())?;
    let payload = std::str::from_utf8(&bytes[header + name_len..])
        .map_err(|_| "the payload is not UTF-8".to_string())?;
    Ok(Binary {
        session_hash: u32_at(8),
        seq: u64_at(12),
        name,
        payload,
        ts_micros: u64_at(24) as i64,
    })
}

pub struct UdpProtocol {
    config: UdpConfig,
    resolved: Vec<SocketAddr>,
    /// The resolved targets of each family, ready for one `sendmmsg` per datagram.
    by_v4: super::mmsg::Targets,
    by_v6: super::mmsg::Targets,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    telemetry: Arc<DistributorTelemetry>,
    /// Where datagrams may go.
    egress: Arc<EgressPolicy>,
    /// Why the targets that are not used are not (they cannot be resolved, or the policy
    /// refuses them).
    unusable: Vec<String>,
}

/// A `host:port` (or `[v6]:port`) target as host and port (0 if it has none).
fn split_target(target: &str) -> (&str, u16) {
    match target.rsplit_once(':') {
        Some((host, port)) => (host.trim_matches(['[', ']']), port.parse().unwrap_or(0)),
        None => (target, 0),
    }
}

fn parse_target(path: &str, item: &Value, default_port: Option<u64>) -> Result<String, String> {
    let (host, port) = match item {
        Value::String(s) => match s.rsplit_once(':') {
            Some((h, p)) => (
                h.trim_matches(['[', ']']).to_string(),
                p.parse::<u64>().ok(),
            ),
            None => (s.clone(), default_port),
        },
        Value::Object(o) => (
            o.get("host")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            o.get("port").and_then(Value::as_u64).or(default_port),
        ),
        other => {
            return Err(format!(
                "{path}: must be \"host:port\" or {{\"host\", \"port\"}}, got {}",
                kind_of(other)
            ))
        }
    };
    if host.is_empty() {
        return Err(format!("{path}: host is missing"));
    }
    match port {
        Some(p) if (1..=65535).contains(&p) => Ok(if host.contains(':') {
            format!("[{host}]:{p}")
        } else {
            format!("{host}:{p}")
        }),
        _ => Err(format!("{path}: port must be 1-65535")),
    }
}

impl UdpProtocol {
    /// The event's datagram, or why it is not sent.
    fn datagram(&self, event: &Event) -> Result<Bytes, Outcome> {
        let datagram = match self.config.encoding {
            UdpEncoding::Json => event.json().clone(),
            UdpEncoding::Binary => encode_binary(event),
        };
        if datagram.len() > self.config.max_datagram {
            return Err(Outcome::Rejected(format!(
                "event {} seq {}: datagram of {} bytes exceeds maxDatagramBytes {}",
                event.name,
                event.seq,
                datagram.len(),
                self.config.max_datagram
            )));
        }
        if self.resolved.is_empty() {
            return Err(Outcome::Failed(format!(
                "no UDP target can be used: {}",
                self.unusable.join("; ")
            )));
        }
        Ok(datagram)
    }

    fn resolve(&mut self) {
        self.resolved.clear();
        self.unusable.clear();
        for target in &self.config.targets {
            let (host, port) = split_target(target);
            // Datagrams go to the checked address itself.
            match self.egress.resolve_blocking(host, port, Use::Connect) {
                Ok(addresses) => self.resolved.push(addresses[0]),
                Err(e) => {
                    let why = format!("UDP target {target} not used: {e}");
                    self.telemetry.set_last_error(&why);
                    self.unusable.push(why);
                }
            }
        }
        let bind = |addr: &str| {
            UdpSocket::bind(addr)
                .and_then(|s| s.set_nonblocking(true).map(|_| s))
                .ok()
        };
        if self.resolved.iter().any(SocketAddr::is_ipv4) && self.v4.is_none() {
            self.v4 = bind("0.0.0.0:0");
        }
        if self.resolved.iter().any(SocketAddr::is_ipv6) && self.v6.is_none() {
            self.v6 = bind("[::]:0");
        }
        let family = |v4: bool| {
            super::mmsg::Targets::new(
                self.resolved
                    .iter()
                    .filter(|a| a.is_ipv4() == v4)
                    .copied()
                    .collect(),
            )
        };
        self.by_v4 = family(true);
        self.by_v6 = family(false);
    }
}

impl Protocol for UdpProtocol {
    type Config = UdpConfig;
    const KIND: DistributorKind = DistributorKind::Udp;

    fn parse(r: &mut FieldReader<'_>, path: &str, rails: &Guardrails) -> UdpConfig {
        let parse_target = |at: &str, item: &Value, default_port: Option<u64>| {
            let target = parse_target(at, item, default_port)?;
            let (host, port) = split_target(&target);
            rails
                .egress
                .check_written(host, port)
                .map_err(|e| format!("{at}: {e}"))?;
            Ok::<String, String>(target)
        };
        let default_port = r
            .raw("port")
            .map(|p| p.as_u64().filter(|n| (1..=65535).contains(n)).ok_or(p));
        let default_port = match default_port {
            Some(Ok(p)) => Some(p),
            Some(Err(bad)) => {
                r.report()
                    .error(format!("{path}.port: port must be 1-65535, got {bad}"));
                None
            }
            None => None,
        };
        let mut targets = Vec::new();
        match r.raw("targets") {
            Some(Value::Array(items)) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    match parse_target(&format!("{path}.targets[{i}]"), item, default_port) {
                        Ok(t) => targets.push(t),
                        Err(e) => r.report().error(e),
                    }
                }
            }
            Some(Value::String(one)) => match parse_target(
                &format!("{path}.targets"),
                &Value::String(one.clone()),
                default_port,
            ) {
                Ok(t) => targets.push(t),
                Err(e) => r.report().error(e),
            },
            _ => r.report().error(format!(
                "{path}.targets: UDP distributor requires at least one target (\"host:port\")"
            )),
        }
        let encoding = match r.choice("encoding", &["binary", "json"], "binary") {
            "json" => UdpEncoding::Json,
            _ => UdpEncoding::Binary,
        };
        let max_datagram = r.u64(
            "maxDatagramBytes",
            HEADER_LEN as u64 + 16,
            MAX_DATAGRAM,
            SAFE_DATAGRAM,
        );
        if max_datagram > SAFE_DATAGRAM {
            r.report().warn(format!(
                "{path}.maxDatagramBytes: datagrams over {SAFE_DATAGRAM} bytes are fragmented by IP and lost whole if one fragment is"
            ));
        }
        UdpConfig {
            targets,
            encoding,
            max_datagram: max_datagram as usize,
        }
    }

    fn new(
        _session: Arc<str>,
        config: UdpConfig,
        telemetry: Arc<DistributorTelemetry>,
        rails: &Guardrails,
    ) -> Self {
        let mut protocol = Self {
            config,
            resolved: Vec::new(),
            by_v4: Default::default(),
            by_v6: Default::default(),
            v4: None,
            v6: None,
            telemetry,
            egress: rails.egress.clone(),
            unusable: Vec::new(),
        };
        protocol.resolve();
        protocol
    }

    /// One event is a batch of one.
    fn deliver(&mut self, event: &Arc<Event>) -> Delivery {
        let outcome = self.deliver_many(std::slice::from_ref(event)).pop();
        Delivery::Done(outcome.unwrap_or(Outcome::Delivered))
    }

    /// Up to 64 events per call: their datagrams go to every target in as few
    /// `sendmmsg` calls as the kernel takes.
    const BATCH: usize = 64;

    fn deliver_many(&mut self, events: &[Arc<Event>]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; events.len()];
        let mut datagrams: Vec<Bytes> = Vec::with_capacity(events.len());
        let mut sent: Vec<usize> = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            match self.datagram(event) {
                Ok(d) => {
                    datagrams.push(d);
                    sent.push(i);
                }
                Err(outcome) => outcomes[i] = Some(outcome),
            }
        }
        let mut errors: Vec<Vec<String>> = vec![Vec::new(); events.len()];
        let slices: Vec<&[u8]> = datagrams.iter().map(|d| d.as_ref()).collect();
        for (socket, targets) in [(&self.v4, &mut self.by_v4), (&self.v6, &mut self.by_v6)] {
            if targets.is_empty() || slices.is_empty() {
                continue;
            }
            let Some(socket) = socket else {
                for &i in &sent {
                    errors[i].push("no local socket for the targets".to_string());
                }
                continue;
            };
            for (d, target, e) in targets.send_many(socket, &slices) {
                errors[sent[d]].push(format!("{target}: {e}"));
            }
        }
        outcomes
            .into_iter()
            .zip(errors)
            .map(|(outcome, errors)| match outcome {
                Some(o) => o,
                None if errors.is_empty() => Outcome::Delivered,
                None => Outcome::Failed(format!("UDP send failed: {}", errors.join("; "))),
            })
            .collect()
    }

    fn reconfigure(&mut self, config: UdpConfig) {
        self.config = config;
        self.resolve();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_datagram_reads_back_as_written() {
        let event = Event::new(
            "eye".into(),
            7,
            "pupil_data".into(),
            chrono::DateTime::from_timestamp_micros(1_764_000_000_000_000).expect("time"),
            crate::json::to_raw(&serde_json::json!({"d": 3.2})).into(),
        );
        let bytes = encode_binary(&event);
        let read = decode_binary(&bytes).expect("readable");
        assert_eq!(
            read,
            Binary {
                session_hash: fnv1a32("eye"),
                seq: 7,
                name: "pupil_data",
                payload: r#"{"d":3.2}"#,
                ts_micros: 1_764_000_000_000_000,
            }
        );
        assert!(decode_binary(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_binary(b"SYNO").is_err());
    }

    #[test]
    fn fnv1a_matches_reference_values() {
        assert_eq!(fnv1a32(""), 0x811c9dc5);
        assert_eq!(fnv1a32("a"), 0xe40c292c);
        assert_eq!(fnv1a32("foobar"), 0xbf9cf968);
    }

    #[test]
    fn targets_accept_strings_objects_and_a_default_port() {
        assert_eq!(
            parse_target("t", &"127.0.0.1:9".into(), None).unwrap(),
            "127.0.0.1:9"
        );
        assert_eq!(
            parse_target("t", &serde_json::json!({"host": "h"}), Some(7)).unwrap(),
            "h:7"
        );
        assert_eq!(
            parse_target("t", &"[::1]:5".into(), None).unwrap(),
            "[::1]:5"
        );
        assert!(parse_target("t", &"h:70000".into(), None)
            .unwrap_err()
            .contains("port must be 1-65535"));
    }
}
