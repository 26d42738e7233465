//! WebSocket distributor: fans each event's JSON envelope out to the connected clients.
//!
//! The WebSocket framing, heartbeat and client ops live in the server
//! (`src/routes/live.rs`); this side only holds the clients' queues. The envelope is
//! serialized once per event ([`Event::json`]) and every client gets the same bytes.

use std::sync::Arc;

use super::live::{ClientQueue, FanoutConfig, Frame, LiveFanout};
use super::sse::{gaps, History, Retained, PREAMBLE_ROOM};
use super::{CloseReason, Delivery, DistributorKind, LiveAttach, Outcome, Protocol};
use crate::event::Event;
use crate::guardrails::Guardrails;
use crate::telemetry::DistributorTelemetry;
use crate::validation::FieldReader;

/// Default frames a WebSocket client may have waiting: high, so that the byte bound does
/// the work (1,024 frames of 100 bytes were 100 KB, and clients only a moment behind lost
/// frames).
pub const DEFAULT_CLIENT_QUEUE: u64 = 65_536;
/// Default overflows in a row before a client is cut off.
pub const DEFAULT_MAX_CLIENT_DROPS: u64 = 1024;
/// Default client limit per distributor.
pub const DEFAULT_MAX_CLIENTS: u64 = 1000;
/// Default bytes of frames a client may have waiting (2 MiB: twice Centrifugo's 1 MB).
pub const DEFAULT_CLIENT_QUEUE_BYTES: u64 = 2 << 20;

/// Reads the fan-out fields shared by the WebSocket and SSE distributors.
pub(crate) fn read_fanout(r: &mut FieldReader<'_>, path: &str, rails: &Guardrails) -> FanoutConfig {
    let client_queue_capacity = r.u64_capped(
        "clientQueueCapacity",
        1,
        DEFAULT_CLIENT_QUEUE,
        rails.client_queue(),
    );
    let max_client_drops = r.u64("maxClientDrops", 0, u64::MAX >> 1, DEFAULT_MAX_CLIENT_DROPS);
    if max_client_drops == 0 {
        r.report().warn(format!(
            "{path}.maxClientDrops: 0 never disconnects a client that stopped reading; it keeps losing frames instead"
        ));
    }
    let client_queue_bytes = r.u64_capped(
        "clientQueueBytes",
        1024,
        DEFAULT_CLIENT_QUEUE_BYTES,
        rails.client_bytes(),
    );
    let max_clients = r.u64_capped("maxClients", 1, DEFAULT_MAX_CLIENTS, rails.clients());
    FanoutConfig {
        client_queue_capacity: client_queue_capacity as usize,
        client_queue_bytes: usize::try_from(client_queue_bytes).unwrap_or(usize::MAX),
        max_client_drops,
        max_clients: max_clients as usize,
    }
}

/// Default events kept for clients that reconnect (`historySize`).
pub const DEFAULT_HISTORY: u64 = 1024;

/// WebSocket settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WebSocketConfig {
    /// Client queues and limits.
    pub fanout: FanoutConfig,
    /// Recent events kept for clients that reconnect with `since` (`historySize`; 0: none).
    pub history_size: usize,
    /// And none older than this (`historyMaxAgeMs`; 0: no age limit).
    pub history_max_age: Option<std::time::Duration>,
}

/// An event's frame: its envelope, shared.
fn frame_of(event: &Arc<Event>) -> Frame {
    Frame {
        seq: event.seq,
        text: event.json_text().clone(),
        accepted_at: event.accepted_at,
    }
}

/// The WebSocket protocol half of a distributor.
pub struct WebSocketProtocol {
    fanout: LiveFanout,
    history: Arc<History>,
    config: WebSocketConfig,
    /// Sequence number of the latest event delivered.
    latest: u64,
}

impl WebSocketProtocol {
    /// Notes `event` as the latest and keeps it for clients that reconnect.
    fn keep(&mut self, event: &Arc<Event>, frame: Frame) {
        self.latest = self.latest.max(event.seq);
        if self.config.history_size > 0 {
            let entry = Retained {
                name: event.name.clone(),
                origin: event.origin().clone(),
                frame,
            };
            self.history
                .push(entry, self.config.history_size, self.config.history_max_age);
        }
    }
}

impl Protocol for WebSocketProtocol {
    type Config = WebSocketConfig;
    const KIND: DistributorKind = DistributorKind::Websocket;
    const LATENCY_MEASURED_DOWNSTREAM: bool = true;

    fn parse(r: &mut FieldReader<'_>, path: &str, rails: &Guardrails) -> WebSocketConfig {
        // Older configs gave the WebSocket server its own port; here the feed shares the
        // API listener, so the field is checked and then ignored.
        if let Some(port) = r.raw("port") {
            match port.as_u64() {
                Some(p) if (1..=65535).contains(&p) => r.report().warn(format!(
                    "{path}.port: ignored, live feeds are served on the API listener at /api/v1/sessions/{{id}}/ws"
                )),
                _ => r.report().error(format!(
                    "{path}.port: WebSocket distributor requires valid port (1-65535), got {port}"
                )),
            }
        }
        let max_age = r.u64("historyMaxAgeMs", 0, 30 * 86_400_000, 0);
        // `historyStore` (`memory` or `store`) is checked here; the session acts on it, as
        // it keeps the history in the store (session::kept).
        r.choice("historyStore", &["memory", "store"], "memory");
        WebSocketConfig {
            fanout: read_fanout(r, path, rails),
            history_size: r.u64_capped("historySize", 0, DEFAULT_HISTORY, rails.history()) as usize,
            history_max_age: (max_age > 0).then(|| std::time::Duration::from_millis(max_age)),
        }
    }

    fn new(
        _session: Arc<str>,
        config: WebSocketConfig,
        telemetry: Arc<DistributorTelemetry>,
        rails: &Guardrails,
    ) -> Self {
        Self {
            history: History::new(rails.budget.clone(), telemetry.clone()),
            fanout: LiveFanout::new(config.fanout, telemetry),
            config,
            latest: 0,
        }
    }

    fn deliver(&mut self, event: &Arc<Event>) -> Delivery {
        let frame = frame_of(event);
        self.fanout.publish(&event.name, event.origin(), &frame);
        self.keep(event, frame);
        Delivery::Done(Outcome::Delivered)
    }

    /// Events that queued up go to each client as one shared run.
    const BATCH: usize = 64;

    fn deliver_many(&mut self, events: &[Arc<Event>]) -> Vec<Outcome> {
        let frames: Arc<[Frame]> = events.iter().map(frame_of).collect();
        let bytes = frames.iter().map(|f| f.text.len()).sum();
        let named: Vec<(&str, &crate::event::Origin)> =
            events.iter().map(|e| (&*e.name, e.origin())).collect();
        self.fanout.publish_batch(&named, &frames, bytes);
        for (event, frame) in events.iter().zip(frames.iter()) {
            self.keep(event, frame.clone());
        }
        vec![Outcome::Delivered; events.len()]
    }

    fn reconfigure(&mut self, config: WebSocketConfig) {
        self.fanout.set_config(config.fanout);
        self.history.truncate(config.history_size);
        self.config = config;
    }

    /// A client resuming `since` a seq first gets `{"op": "resume", "recovered": ...}`,
    /// then what the history still holds of what it missed, in order, then live events.
    fn attach(&mut self, request: LiveAttach) -> Result<Arc<ClientQueue>, String> {
        let queue = self.fanout.attach(request.subscription)?;
        if let Some(last) = request.resume_after {
            let replay = self.history.replay(last, &queue, PREAMBLE_ROOM);
            let from = replay.first().map(|f| f.seq);
            let missed = gaps(last, self.latest, &self.history, from);
            let notice = serde_json::json!({"op": "resume", "since": last,
                "recovered": missed.is_empty(), "replayed": replay.len(),
                "last_seq": self.latest, "reason": missed.join("; ")});
            queue.push(Frame {
                seq: 0,
                text: notice.to_string().into(),
                accepted_at: std::time::Instant::now(),
            });
            for frame in replay {
                queue.push(frame);
            }
        }
        Ok(queue)
    }

    fn tick(&mut self) {
        self.fanout.sweep();
    }

    fn close(&mut self, reason: CloseReason) {
        self.fanout.close_all(reason);
    }
}
