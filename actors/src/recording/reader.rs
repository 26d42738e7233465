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
    /// What raised it, as recorded (nothing for events clients posted).
    pub origin: crate::event::Origin,
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
    #[serde(default)]
    origin: Option<RecordedOrigin>,
}

/// An event's `origin` in a recording.
#[derive(Deserialize)]
struct RecordedOrigin {
    source: Option<String>,
    device: Option<String>,
    channel: Option<String>,
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
        if topic.starts_with("/events/") {
            out.first_event_ns.get_or_insert(message.log_time);
            // By the envelope's type, not the topic's: types past the channel limit share
            // `/events/_other`.
            let envelope: Envelope = serde_json::from_slice(&message.data)
                .map_err(|e| format!("{topic}: an event that is not an event envelope: {e}"))?;
            if !keep.events.iter().any(|g| g.matches(&envelope.event)) {
                continue;
            }
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
                origin: envelope
                    .origin
                    .map_or_else(Default::default, |o| crate::event::Origin {
                        source: o.source.map(Arc::from),
                        device: o.device.map(Arc::from),
                        channel: o.channel.map(Arc::from),
                        replay: None,
                    }),
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

/// Checks, without unpacking anything, that the chunks of `bytes` unpack to at most
/// `limit` bytes in all (what each says it holds; an unpacker never gives more than a
/// chunk says). Stops at the first chunk that goes past it.
pub fn check_unpacked_size(bytes: &[u8], limit: u64) -> Result<u64, String> {
    let reader = mcap::read::LinearReader::new_with_options(
        bytes,
        mcap::read::Options::IgnoreEndMagic.into(),
    )
    .map_err(|e| format!("not an MCAP file: {e}"))?;
    let mut total: u64 = 0;
    for record in reader {
        match record {
            Ok(mcap::records::Record::Chunk { header, .. }) => {
                total = total.saturating_add(header.uncompressed_size);
                if total > limit {
                    return Err(format!(
                        "the file's chunks unpack to more than {} MiB, the most an import may hold",
                        limit >> 20
                    ));
                }
            }
            Ok(_) => {}
            // A cut-short file: what follows is read (or not) by the reader itself.
            Err(_) => break,
        }
    }
    Ok(total)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with events on `/events/{type}` channels and one on the shared
    /// `/events/_other` (types past the channel limit).
    fn file() -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        let mut w = mcap::Writer::new(&mut out).expect("writer");
        let mut channel = |topic: &str| {
            w.add_channel(0, topic, "json", &BTreeMap::new())
                .expect("channel")
        };
        let (gaze, other) = (channel("/events/gaze"), channel("/events/_other"));
        let envelope = |seq: u64, event: &str| {
            format!(
                r#"{{"session":"s","seq":{seq},"event":"{event}","ts":"2026-11-28T10:00:00.000Z","data":{{"i":{seq}}}}}"#
            )
        };
        for (seq, channel, event) in [
            (1, gaze, "gaze"),
            (2, other, "rare_marker"),
            (3, gaze, "gaze"),
        ] {
            let header = mcap::records::MessageHeader {
                channel_id: channel,
                sequence: seq as u32,
                log_time: seq * 1_000_000,
                publish_time: seq * 1_000_000,
            };
            w.write_to_known_channel(&header, envelope(seq, event).as_bytes())
                .expect("message");
        }
        w.finish().expect("finish");
        drop(w);
        out.into_inner()
    }

    #[test]
    fn events_are_kept_by_their_type_whatever_channel_carries_them() {
        let bytes = file();
        let keep = Keep {
            events: vec![Glob::new("rare_*")],
            detections: None,
        };
        let read = read_bytes(&bytes, &keep).expect("readable");
        let names: Vec<&str> = read.events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["rare_marker"]);
        // The window still starts at the file's first event, kept or not.
        assert_eq!(read.first_event_ns, Some(1_000_000));
        let all = read_bytes(&bytes, &Keep::everything()).expect("readable");
        assert_eq!(all.events.len(), 3);
    }
}
