//! Reading a recording back: its events and its sources' detections, in the order they
//! were written. A file a crash cut short is read up to its last whole chunk.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::glob::Glob;
use crate::json::SharedData;

/// One recorded event.
#[derive(Debug, Clone)]
pub struct RecordedEvent {
    /// When the session accepted it (the message's log time), in nanoseconds.
    pub log_ns: u64,
    /// Its seq in the recorded session.
    pub seq: u64,
    /// Event type.
    pub name: String,
    /// Its `ts`.
    pub ts: DateTime<Utc>,
    /// Its `ts` as written.
    pub ts_text: Arc<str>,
    /// Its payload.
    pub data: SharedData,
}

/// One analysed frame's detections.
#[derive(Debug, Clone)]
pub struct RecordedFrame {
    /// When it was recorded, in nanoseconds.
    pub log_ns: u64,
    /// Its time (the envelope's timestamp), in nanoseconds.
    pub at_ns: u64,
    /// The detection envelope.
    pub envelope: Value,
}

/// What to keep of a recording while reading it: a replay needs the events it plays, or
/// one source's detections, not the whole file decoded in memory.
#[derive(Debug, Clone)]
pub struct Keep {
    /// Events whose type matches one of these (none: no event).
    pub events: Vec<Glob>,
    /// Detections of the sources matching this (`None`: no detections).
    pub detections: Option<Glob>,
}

impl Keep {
    /// Every event and every source's detections.
    pub fn everything() -> Self {
        Self {
            events: vec![Glob::new("*")],
            detections: Some(Glob::new("*")),
        }
    }
}

/// What a recording holds (what was kept of it).
#[derive(Debug, Default)]
pub struct Recorded {
    /// Events, in the order the session accepted them.
    pub events: Vec<RecordedEvent>,
    /// When the first event of the file was recorded (kept or not), in nanoseconds.
    pub first_event_ns: Option<u64>,
    /// Per source: its frames' detections, in order.
    pub detections: BTreeMap<String, Vec<RecordedFrame>>,
    /// Every source with detections in the file (kept or not).
    pub detection_sources: BTreeSet<String>,
    /// Metadata records by name.
    pub metadata: BTreeMap<String, BTreeMap<String, String>>,
    /// Whether the file ended properly (false: cut short, read up to there).
    pub complete: bool,
    /// Why reading stopped early.
    pub truncated: Option<String>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    seq: u64,
    event: String,
    #[serde(borrow)]
    ts: &'a str,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Reads the file at `path`, keeping what `keep` says.
pub fn read(path: &Path, keep: &Keep) -> Result<Recorded, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    read_bytes(&bytes, keep)
}

/// Reads a recording held in memory, keeping what `keep` says.
pub fn read_bytes(bytes: &[u8], keep: &Keep) -> Result<Recorded, String> {
    let mut out = Recorded::default();
    let stream =
        mcap::MessageStream::new_with_options(bytes, mcap::read::Options::IgnoreEndMagic.into())
            .map_err(|e| format!("not an MCAP file: {e}"))?;
    for message in stream {
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                out.truncated = Some(e.to_string());
                break;
            }
        };
        let topic = message.channel.topic.as_str();
        if let Some(name) = topic.strip_prefix("/events/") {
            out.first_event_ns.get_or_insert(message.log_time);
            if !keep.events.iter().any(|g| g.matches(name)) {
                continue;
            }
            let envelope: Envelope = serde_json::from_slice(&message.data)
                .map_err(|e| format!("{topic}: an event that is not an event envelope: {e}"))?;
            // Replayed events enter a session like posted ones: the same names only.
            crate::session::routing::check_event_name(&envelope.event)
                .map_err(|e| format!("{topic}: event {:?}: {e}", envelope.event))?;
            let ts = DateTime::parse_from_rfc3339(envelope.ts)
                .map_err(|e| format!("{topic}: ts {:?}: {e}", envelope.ts))?
                .with_timezone(&Utc);
            out.events.push(RecordedEvent {
                log_ns: message.log_time,
                seq: envelope.seq,
                name: envelope.event,
                ts,
                ts_text: envelope.ts.into(),
                data: Arc::from(envelope.data.to_owned()),
            });
        } else if let Some(source) = topic
            .strip_prefix("/sources/")
            .and_then(|rest| rest.strip_suffix("/detections"))
        {
            if !out.detection_sources.contains(source) {
                out.detection_sources.insert(source.to_string());
            }
            if !keep.detections.as_ref().is_some_and(|g| g.matches(source)) {
                continue;
            }
            let envelope: Value = serde_json::from_slice(&message.data)
                .map_err(|e| format!("{topic}: not JSON: {e}"))?;
            out.detections
                .entry(source.to_string())
                .or_default()
                .push(RecordedFrame {
                    log_ns: message.log_time,
                    at_ns: message.publish_time,
                    envelope,
                });
        }
    }
    if out.truncated.is_none() {
        out.complete = bytes.ends_with(b"\x89MCAP0\r\n");
    }
    out.metadata = metadata(bytes);
    Ok(out)
}

/// The metadata records, read linearly (a cut-short file has no index).
fn metadata(bytes: &[u8]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut found = BTreeMap::new();
    let Ok(reader) = mcap::read::LinearReader::new_with_options(
        bytes,
        mcap::read::Options::IgnoreEndMagic.into(),
    ) else {
        return found;
    };
    for record in reader {
        match record {
            Ok(mcap::records::Record::Metadata(m)) => {
                found.insert(m.name, m.metadata);
            }
            Ok(mcap::records::Record::Chunk { .. }) | Err(_) => break,
            Ok(_) => {}
        }
    }
    found
}
