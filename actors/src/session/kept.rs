//! A session's WebSocket history kept in the store (`historyStore: "store"` on its
//! WebSocket distributor): the last `historySize` events written to the store every
//! second and at a clean shutdown, and put back, with the session's epoch, when the
//! session starts again — so clients resume across restarts. A crash loses at most the
//! last second of it; a client resuming into that second is told what is gone.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, value::RawValue, Value};

use crate::event::{Event, Origin};

/// How often a changed history is written.
pub const KEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The kept history of one session.
pub struct KeptHistory {
    events: VecDeque<Arc<Event>>,
    size: usize,
    /// Changed since it was last written.
    pub dirty: bool,
    /// A write is under way.
    pub writing: bool,
}

/// What the store gave back for a session.
pub struct Restored {
    /// The epoch the history was kept under.
    pub epoch: Arc<str>,
    /// Its events, oldest first.
    pub events: Vec<Arc<Event>>,
}

#[derive(Deserialize)]
struct Stored {
    epoch: String,
    events: Vec<StoredEvent>,
}

#[derive(Deserialize)]
struct StoredEvent {
    /// The envelope, as live feeds carry it.
    e: Box<RawValue>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    channel: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    seq: u64,
    event: String,
    ts: DateTime<Utc>,
    data: Box<RawValue>,
}

impl KeptHistory {
    /// An empty history of at most `size` events.
    pub fn new(size: usize) -> Self {
        Self {
            events: VecDeque::new(),
            size,
            dirty: false,
            writing: false,
        }
    }

    /// Changes its size (the distributor was reconfigured).
    pub fn resize(&mut self, size: usize) {
        self.size = size;
        while self.events.len() > size {
            self.events.pop_front();
        }
        self.dirty = true;
    }

    /// Adds an event, forgetting the oldest beyond the size.
    pub fn push(&mut self, event: &Arc<Event>) {
        if self.size == 0 {
            return;
        }
        if self.events.len() == self.size {
            self.events.pop_front();
        }
        self.events.push_back(event.clone());
        self.dirty = true;
    }

    /// The document the store keeps.
    pub fn document(&self, epoch: &str) -> Value {
        let events: Vec<Value> = self
            .events
            .iter()
            .map(|e| {
                let envelope: Value = serde_json::from_slice(e.json()).unwrap_or(Value::Null);
                let o = e.origin();
                json!({"e": envelope, "source": o.source.as_deref(), "device": o.device.as_deref(),
                    "channel": o.channel.as_deref()})
            })
            .collect();
        json!({"epoch": epoch, "events": events})
    }
}

/// Reads a kept history for `session` (`None` when it cannot be read: the session then
/// starts a new epoch, as without one).
pub fn restore(session: &Arc<str>, doc: &Value) -> Option<Restored> {
    let stored: Stored = serde_json::from_value(doc.clone())
        .map_err(|e| tracing::warn!(%session, error = %e, "a kept history cannot be read; the session starts a new epoch"))
        .ok()?;
    let events = stored
        .events
        .into_iter()
        .filter_map(|s| {
            let envelope: Envelope = serde_json::from_str(s.e.get()).ok()?;
            let origin = Origin {
                source: s.source.map(Arc::from),
                device: s.device.map(Arc::from),
                channel: s.channel.map(Arc::from),
                ..Origin::default()
            };
            Some(Arc::new(
                Event::new(
                    session.clone(),
                    envelope.seq,
                    envelope.event.into(),
                    envelope.ts,
                    Arc::from(envelope.data),
                )
                .with_origin(origin),
            ))
        })
        .collect();
    Some(Restored {
        epoch: stored.epoch.into(),
        events,
    })
}

/// Whether a WebSocket distributor's settings keep its history in the store, and how
/// many events.
pub fn wanted(settings: Option<&Value>) -> Option<usize> {
    let s = settings?;
    (s.get("historyStore").and_then(Value::as_str) == Some("store")).then(|| {
        s.get("historySize")
            .and_then(Value::as_u64)
            .unwrap_or(crate::distributor::websocket::DEFAULT_HISTORY) as usize
    })
}
