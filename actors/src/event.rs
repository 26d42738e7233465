//! Events as they travel inside the system.
//!
//! An [`Event`] is created once by its session (which gives it a sequence number) and then
//! shared as `Arc<Event>` by every distributor it is routed to. Its wire encodings are
//! computed lazily, at most once each, and handed out as [`Bytes`] so that a hundred clients
//! receiving the same event share one buffer.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use bytestring::ByteString;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::json::SharedData;

/// One event of one session, immutable once created.
#[derive(Debug)]
pub struct Event {
    /// Id of the session that accepted the event.
    pub session: Arc<str>,
    /// Position in the session: the first event is 1, each next one is one more.
    pub seq: u64,
    /// Event type, e.g. `face_detected`; routing and subscriptions match on it.
    pub name: Arc<str>,
    /// Wall-clock time the event happened (given by the producer or set on arrival).
    pub ts: DateTime<Utc>,
    /// Producer's payload, passed through byte for byte (whitespace between tokens aside),
    /// shared with the same event in other sessions.
    pub data: SharedData,
    /// What inside the server raised it: live feeds filter on it.
    origin: Origin,
    /// Monotonic arrival time, the start of the delivery-latency measurement.
    pub accepted_at: Instant,
    /// The JSON envelope, serialized on first use and shared afterwards (as text: live
    /// connections send it as a text frame without checking it is UTF-8 again).
    json: OnceLock<ByteString>,
    /// The payload alone, as bytes, made on first use and shared afterwards.
    data_bytes: OnceLock<Bytes>,
}

/// The JSON envelope every text protocol carries (WebSocket frame, SSE `data:`, ...).
#[derive(Serialize)]
struct Envelope<'a> {
    session: &'a str,
    seq: u64,
    event: &'a str,
    ts: String,
    data: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay: Option<&'a ReplayMark>,
}

/// Marks an event played back from a recording: which recording, and the number and
/// time the event had there. Consumers tell replayed events from live ones by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayMark {
    /// Recording id.
    pub recording: Arc<str>,
    /// The event's `seq` in the recorded session (for re-analysed events: the recorded
    /// detections message they were raised on).
    pub original_seq: u64,
    /// The event's `ts` in the recording, RFC 3339.
    pub original_ts: Arc<str>,
}

/// What inside the server raised an event: set by the server, never by a client. Live
/// feeds filter on it (a token's source and device scopes, a client's channels).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The vision source that raised it.
    pub source: Option<Arc<str>>,
    /// The serial of the registered device it is about.
    pub device: Option<Arc<str>>,
    /// The device channel it belongs to (`device:SN123:updated`).
    pub channel: Option<Arc<str>>,
    /// Played back from a recording.
    pub replay: Option<Arc<ReplayMark>>,
}

impl Origin {
    /// Raised by vision source `id`.
    pub fn source(id: Arc<str>) -> Self {
        Self {
            source: Some(id),
            ..Self::default()
        }
    }
}

impl Event {
    /// The vision source that raised the event; `None` for events posted by clients.
    pub fn source(&self) -> Option<&str> {
        self.origin.source.as_deref()
    }

    /// What raised the event.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The event, marked as raised by `origin`.
    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    /// Builds an event; only sessions call this, since they own the sequence numbers.
    pub fn new(
        session: Arc<str>,
        seq: u64,
        name: Arc<str>,
        ts: DateTime<Utc>,
        data: SharedData,
    ) -> Self {
        Self {
            session,
            seq,
            name,
            ts,
            data,
            origin: Origin::default(),
            accepted_at: Instant::now(),
            json: OnceLock::new(),
            data_bytes: OnceLock::new(),
        }
    }

    /// Bytes the event holds, as charged to the memory budget: its payload, its JSON
    /// envelope (about the payload again) and the fixed parts. An estimate made without
    /// serializing, the same every time it is asked.
    pub fn weight(&self) -> usize {
        const FIXED: usize = std::mem::size_of::<Event>() + 128;
        2 * self.data.get().len() + self.name.len() + self.session.len() + FIXED
    }

    /// The payload alone (`data`), for outputs that carry only it (an edge's envelope).
    pub fn data_bytes(&self) -> &Bytes {
        self.data_bytes
            .get_or_init(|| Bytes::copy_from_slice(self.data.get().as_bytes()))
    }

    /// What an output carries: the whole envelope, or only `data`.
    pub fn payload(&self, data_only: bool) -> &Bytes {
        if data_only {
            self.data_bytes()
        } else {
            self.json()
        }
    }

    /// `{"session","seq","event","ts","data"}` as compact JSON, serialized once.
    pub fn json(&self) -> &Bytes {
        self.json_text().as_bytes()
    }

    /// [`Self::json`] as text.
    pub fn json_text(&self) -> &ByteString {
        self.json.get_or_init(|| {
            let envelope = Envelope {
                session: &self.session,
                seq: self.seq,
                event: &self.name,
                ts: self.ts.to_rfc3339_opts(SecondsFormat::Millis, true),
                data: &self.data,
                replay: self.origin.replay.as_deref(),
            };
            // Serializing raw JSON and plain strings cannot fail.
            ByteString::from(serde_json::to_string(&envelope).unwrap_or_default())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_envelope_has_every_field_and_is_cached() {
        let ev = Event::new(
            "s1".into(),
            7,
            "face_detected".into(),
            Utc::now(),
            crate::json::to_raw(&serde_json::json!({"x": 1})).into(),
        );
        let first = ev.json().clone();
        let v: serde_json::Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(v["session"], "s1");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["event"], "face_detected");
        assert_eq!(v["data"]["x"], 1);
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
        // Same allocation the second time: serialized once.
        assert_eq!(first.as_ptr(), ev.json().as_ptr());
    }
}
