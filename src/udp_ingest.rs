//! The UDP ingest port (`[udp_ingest]`, off by default): producers at hundreds of samples a
//! second (eye trackers) send one event per datagram, JSON or the binary format the UDP
//! distributor writes (docs/PROTOCOLS.md#udp-ingest), each naming its session.
//!
//! A receiver task reads datagrams, checks them and hands them through a bounded queue to a
//! publisher task, which gives each session what arrived for it in one message. Every
//! datagram is counted per session: accepted, rejected (unknown session, malformed, too
//! large, over the session's rate) or dropped (the queue to the sessions was full). UDP
//! itself may lose datagrams: a producer that numbers its datagrams (`pseq`) has the gaps
//! counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use metrics::{counter, describe_counter};
use serde::{Deserialize, Serialize};
use synopticon_actors::distributor::udp::fnv1a32;
use synopticon_actors::messages::IncomingEvent;
use synopticon_actors::session::routing::check_event_name;
use synopticon_actors::sessions::Sessions;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Datagrams by session and outcome (`accepted`, `rejected`, `dropped`) and reason.
pub const UDP_INGEST: &str = "synopticon_udp_ingest_datagrams_total";
/// Datagrams a producer numbered but that never arrived.
pub const UDP_GAPS: &str = "synopticon_udp_ingest_gaps_total";
/// Producers whose numbering started over (went back, or jumped past [`GAP_WINDOW`]).
pub const UDP_RESTARTS: &str = "synopticon_udp_ingest_producer_restarts_total";
/// The largest jump in a producer's numbering counted as lost datagrams: beyond it, the
/// producer started over (a restart, a new counter), and nothing is counted as lost.
pub const GAP_WINDOW: u64 = 65_536;

/// Describes the metrics.
pub fn describe() {
    describe_counter!(
        UDP_INGEST,
        "UDP ingest datagrams by session and outcome (accepted, rejected, dropped) and reason."
    );
    describe_counter!(
        UDP_GAPS,
        "Datagrams UDP producers numbered (pseq) that never arrived, by session."
    );
    describe_counter!(
        UDP_RESTARTS,
        "UDP producers whose numbering started over (went back, or jumped further than 65,536), by session."
    );
}

/// `[udp_ingest]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpIngestSettings {
    /// Whether the port is open.
    pub enabled: bool,
    /// Address to listen on.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Larger datagrams are rejected.
    pub max_datagram_bytes: usize,
    /// Events per second one session takes over UDP (sustained); beyond, rejected.
    pub events_per_sec: f64,
    /// And in a burst.
    pub event_burst: f64,
    /// Datagrams waiting for the sessions; beyond, dropped (counted).
    pub queue: usize,
}

impl UdpIngestSettings {
    /// Checks `[udp_ingest]`; `production` warns of a port open beyond this machine.
    pub fn validate(&self, production: bool, r: &mut synopticon_actors::validation::Report) {
        let u = self;
        if !(1..=65507).contains(&u.max_datagram_bytes) {
            r.error("udp_ingest.max_datagram_bytes: must be 1 to 65507");
        }
        if u.queue == 0 || u.events_per_sec <= 0.0 || u.event_burst < 1.0 {
            r.error("udp_ingest: queue must be at least 1, events_per_sec above 0, event_burst at least 1");
        }
        if u.enabled && production && u.host != "127.0.0.1" && u.host != "::1" {
            r.warn("udp_ingest: open beyond this machine in production; datagrams carry no token, so anyone who reaches the port can publish into any session they name");
        }
    }
}

/// How often the open sessions are looked up (for names and binary session hashes).
const SESSIONS_EVERY: Duration = Duration::from_secs(1);
/// Producers whose numbering is followed at most.
const MAX_PRODUCERS: usize = 4096;
/// Datagrams handed to the sessions in one go.
const BATCH: usize = 512;

/// Binds the port and starts receiving; the bound address.
pub async fn start(
    settings: &UdpIngestSettings,
    sessions: Sessions,
    arbiter: &actix::ArbiterHandle,
) -> anyhow::Result<SocketAddr> {
    let socket = UdpSocket::bind((settings.host.as_str(), settings.port))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "udp_ingest: cannot listen on {}:{}: {e}",
                settings.host,
                settings.port
            )
        })?;
    let address = socket.local_addr()?;
    let (tx, rx) = mpsc::channel(settings.queue.max(1));
    let known = Arc::new(parking_lot::RwLock::new(Known::default()));
    arbiter.spawn(refresh(sessions.clone(), known.clone()));
    arbiter.spawn(receive(socket, settings.clone(), known, tx));
    arbiter.spawn(publish(rx, sessions));
    tracing::info!(%address, "UDP ingest listening");
    Ok(address)
}

/// The open sessions, by id and by the FNV-1a hash of their id.
#[derive(Default)]
struct Known {
    by_hash: HashMap<u32, Arc<str>>,
    ids: HashMap<Arc<str>, ()>,
}

async fn refresh(sessions: Sessions, known: Arc<parking_lot::RwLock<Known>>) {
    loop {
        if let Ok(list) = sessions.list().await {
            let mut next = Known::default();
            for s in list {
                let id: Arc<str> = Arc::from(s.id.as_str());
                next.by_hash.insert(fnv1a32(&s.id), id.clone());
                next.ids.insert(id, ());
            }
            *known.write() = next;
        }
        tokio::time::sleep(SESSIONS_EVERY).await;
    }
}

/// One checked datagram.
struct Datagram {
    session: Arc<str>,
    event: IncomingEvent,
}

/// Why a datagram was refused (the `reason` label).
enum Refusal {
    Malformed(String),
    TooLarge,
    UnknownSession,
    /// The system session: only the server writes into it.
    ServerOnly,
    Rate,
}

impl Refusal {
    fn label(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::TooLarge => "too_large",
            Self::UnknownSession => "unknown_session",
            Self::ServerOnly => "server_only",
            Self::Rate => "rate",
        }
    }
}

/// A session's UDP allowance.
struct Bucket {
    tokens: f64,
    at: Instant,
}

async fn receive(
    socket: UdpSocket,
    settings: UdpIngestSettings,
    known: Arc<parking_lot::RwLock<Known>>,
    tx: mpsc::Sender<Datagram>,
) {
    // One byte more than allowed: a datagram that fills it was too large.
    let mut buf = vec![0u8; settings.max_datagram_bytes + 1];
    let mut buckets: HashMap<Arc<str>, Bucket> = HashMap::new();
    let mut producers: HashMap<(Arc<str>, String), u64> = HashMap::new();
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(error) => {
                tracing::warn!(%error, "UDP ingest: receive failed");
                continue;
            }
        };
        let parsed = if n > settings.max_datagram_bytes {
            Err((None, Refusal::TooLarge))
        } else {
            parse(&buf[..n], &known.read())
        };
        let (session, event, numbered) = match parsed {
            Ok(p) => p,
            Err((session, refusal)) => {
                if let Refusal::Malformed(why) = &refusal {
                    tracing::debug!(%from, why, "UDP ingest: malformed datagram");
                }
                let label = session.as_deref().unwrap_or("").to_string();
                counter!(UDP_INGEST, "session" => label, "outcome" => "rejected", "reason" => refusal.label())
                    .increment(1);
                continue;
            }
        };
        // The session's rate.
        let bucket = buckets.entry(session.clone()).or_insert(Bucket {
            tokens: settings.event_burst,
            at: Instant::now(),
        });
        let now = Instant::now();
        bucket.tokens = (bucket.tokens
            + now.duration_since(bucket.at).as_secs_f64() * settings.events_per_sec)
            .min(settings.event_burst);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            counter!(UDP_INGEST, "session" => session.to_string(), "outcome" => "rejected", "reason" => Refusal::Rate.label())
                .increment(1);
            continue;
        }
        bucket.tokens -= 1.0;
        if buckets.len() > MAX_PRODUCERS {
            buckets.retain(|_, b| b.tokens < settings.event_burst);
        }
        // The producer's numbering: what never came is counted.
        if let Some((producer, pseq)) = numbered {
            let key = (
                session.clone(),
                producer.unwrap_or_else(|| from.to_string()),
            );
            if producers.len() >= MAX_PRODUCERS && !producers.contains_key(&key) {
                producers.clear();
            }
            if let Some(last) = producers.insert(key, pseq) {
                match pseq.checked_sub(last) {
                    Some(0 | 1) => {}
                    Some(step) if step <= GAP_WINDOW => {
                        counter!(UDP_GAPS, "session" => session.to_string()).increment(step - 1);
                    }
                    // Back, or further than any loss: the producer started over.
                    _ => counter!(UDP_RESTARTS, "session" => session.to_string()).increment(1),
                }
            }
        }
        let label = session.to_string();
        if tx.try_send(Datagram { session, event }).is_err() {
            counter!(UDP_INGEST, "session" => label, "outcome" => "dropped", "reason" => "queue_full")
                .increment(1);
        }
    }
}

/// What a datagram says: its session, its event, and its producer's numbering if any.
type Parsed = (Arc<str>, IncomingEvent, Option<(Option<String>, u64)>);

fn parse(bytes: &[u8], known: &Known) -> Result<Parsed, (Option<Arc<str>>, Refusal)> {
    let malformed = |why: String| (None, Refusal::Malformed(why));
    if bytes.starts_with(b"SYNO") {
        return parse_binary(bytes, known);
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Json {
        session: String,
        event: String,
        #[serde(default)]
        data: Option<Box<serde_json::value::RawValue>>,
        #[serde(default)]
        ts: Option<DateTime<Utc>>,
        #[serde(default)]
        producer: Option<String>,
        #[serde(default)]
        pseq: Option<u64>,
    }
    let d: Json = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    let Some((session, _)) = known.ids.get_key_value(d.session.as_str()) else {
        return Err((None, Refusal::UnknownSession));
    };
    let session = session.clone();
    server_only(&session)?;
    check_event_name(&d.event).map_err(|e| (Some(session.clone()), Refusal::Malformed(e)))?;
    let data = match d.data {
        Some(raw) => synopticon_actors::json::compact(raw)
            .map_err(|e| (Some(session.clone()), Refusal::Malformed(e.to_string())))?,
        None => synopticon_actors::json::empty_object(),
    };
    let event = IncomingEvent {
        name: d.event,
        data: data.into(),
        ts: d.ts,
        origin: Default::default(),
    };
    Ok((session, event, d.pseq.map(|p| (d.producer, p))))
}

/// Refuses a datagram for the system session: anyone who reaches the port could otherwise
/// put `session.closed` or `token.deleted` into the feed monitoring trusts.
fn server_only(session: &Arc<str>) -> Result<(), (Option<Arc<str>>, Refusal)> {
    if &**session == synopticon_actors::system::SYSTEM_SESSION {
        return Err((Some(session.clone()), Refusal::ServerOnly));
    }
    Ok(())
}

/// The binary format (docs/PROTOCOLS.md#udp), read by the distributor's own reader: the
/// session by its hash, the producer's number in `seq`.
fn parse_binary(bytes: &[u8], known: &Known) -> Result<Parsed, (Option<Arc<str>>, Refusal)> {
    let d = synopticon_actors::distributor::udp::decode_binary(bytes)
        .map_err(|why| (None, Refusal::Malformed(why)))?;
    let Some(session) = known.by_hash.get(&d.session_hash).cloned() else {
        return Err((None, Refusal::UnknownSession));
    };
    server_only(&session)?;
    let bad = |why: String| (Some(session.clone()), Refusal::Malformed(why));
    check_event_name(d.name).map_err(bad)?;
    let raw: Box<serde_json::value::RawValue> = serde_json::from_str(d.payload)
        .map_err(|e| bad(format!("the payload is not JSON: {e}")))?;
    let data = synopticon_actors::json::compact(raw).map_err(|e| bad(e.to_string()))?;
    let ts = (d.ts_micros != 0)
        .then(|| Utc.timestamp_micros(d.ts_micros).single())
        .flatten();
    let event = IncomingEvent {
        name: d.name.to_string(),
        data: data.into(),
        ts,
        origin: Default::default(),
    };
    Ok((session, event, Some((None, d.seq))))
}

/// Hands what arrived to the sessions: each session's datagrams in one message, in order.
async fn publish(mut rx: mpsc::Receiver<Datagram>, sessions: Sessions) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let mut by_session: Vec<(Arc<str>, Vec<IncomingEvent>)> = Vec::new();
        for d in batch.drain(..) {
            match by_session.iter_mut().find(|(s, _)| *s == d.session) {
                Some((_, events)) => events.push(d.event),
                None => by_session.push((d.session, vec![d.event])),
            }
        }
        for (session, events) in by_session {
            let n = events.len() as u64;
            let label = session.to_string();
            match sessions.publish(&session, events).await {
                Ok(_) => counter!(UDP_INGEST, "session" => label, "outcome" => "accepted", "reason" => "")
                    .increment(n),
                Err(error) => {
                // Closed since it was checked, or not answering: counted, not kept.
                    tracing::debug!(%session, %error, "UDP ingest: datagrams not taken");
                    counter!(UDP_INGEST, "session" => label, "outcome" => "dropped", "reason" => "session_unavailable")
                        .increment(n);
                }
            }
        }
    }
}
