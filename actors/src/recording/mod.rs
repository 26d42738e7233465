//! Recording sessions to MCAP files, and playing them back.
//!
//! A recording keeps what one session accepted (all its events, or those matching globs)
//! and, if asked, what its sources analysed (each frame's detections; the frames as JPEG
//! with their tracked boxes as Foxglove image annotations) in an MCAP file with
//! zstd-compressed chunks and a JSON Schema per channel. The session hands each event to
//! its recorders without waiting ([`recorder::Recorder::offer`]): a bounded queue feeds one
//! writing thread per recording, and what does not fit is counted as dropped.
//!
//! - [`recorder`]: one recording's writing thread and its live counters.
//! - [`hub`]: every recording of this server, kept in the store, with retention.
//! - [`reader`]: reading a recording back (also one a crash cut short).
//! - [`replay`]: playing a recording into a session, in time or as fast as possible.
//! - [`schemas`]: the channels' JSON Schemas.

pub mod hub;
pub mod reader;
pub mod recorder;
pub mod replay;
pub mod schemas;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::glob::is_valid_pattern;
use crate::validation::{kind_of, FieldReader, Report};

pub use hub::RecordingHub;

/// Where recordings go and how long they stay (`[recording]` in the configuration).
#[derive(Debug, Clone)]
pub struct RecordingSettings {
    /// Folder of the `.mcap` files.
    pub dir: PathBuf,
    /// How often a recording's file is brought up to date on disk: a crash loses at most
    /// this much.
    pub flush_interval: Duration,
    /// Events and frames that may wait for a recording's writer; more are dropped
    /// (counted).
    pub queue: usize,
    /// Finished recordings older than this are deleted.
    pub max_age: Option<Duration>,
    /// The oldest finished recordings are deleted while all of them together are larger.
    pub max_total_bytes: Option<u64>,
    /// Recordings running at once.
    pub max_active: usize,
    /// Folders a source's `frame_ref` pictures may be read from.
    pub frame_ref_dirs: Vec<PathBuf>,
    /// Most bytes an imported file may hold once its chunks are unpacked: a small file of
    /// highly compressed zeros would otherwise cost seconds of CPU and gigabytes.
    pub max_import_bytes: u64,
}

impl Default for RecordingSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data/recordings"),
            flush_interval: Duration::from_secs(1),
            queue: 65_536,
            max_age: None,
            max_total_bytes: None,
            max_active: 32,
            frame_ref_dirs: Vec::new(),
            max_import_bytes: 1 << 30,
        }
    }
}

/// What a recording keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingSpec {
    /// Event types to keep (globs); all by default.
    pub events: Vec<String>,
    /// Each analysed frame's detections of the session's sources (what re-analysis
    /// replays through a source's lines and zones).
    pub detections: bool,
    /// The analysed frames as JPEG, with their tracked boxes as image annotations.
    pub frames: bool,
    /// JPEG quality of the frames.
    pub frame_quality: u8,
    /// A name for people (a participant, a run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The study's own notes, written into the file's metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl Default for RecordingSpec {
    fn default() -> Self {
        Self {
            events: vec!["*".into()],
            detections: true,
            frames: false,
            frame_quality: 75,
            label: None,
            metadata: BTreeMap::new(),
        }
    }
}

/// Longest label, metadata key or value.
const MAX_TEXT: usize = 1024;

/// Reads a recording request (`true` for the defaults), listing every problem.
pub fn parse_spec(at: &str, v: &Value, report: &mut Report) -> RecordingSpec {
    if *v == Value::Bool(true) || v.is_null() {
        return RecordingSpec::default();
    }
    let mut spec = RecordingSpec::default();
    let mut r = FieldReader::new(at, v, report);
    if let Some(events) = r.raw("events") {
        spec.events = event_globs(&format!("{at}.events"), events, r.report());
    }
    spec.detections = r.bool("detections", true);
    spec.frames = r.bool("frames", false);
    spec.frame_quality = r.u64("frame_quality", 1, 100, 75) as u8;
    spec.label = r.string("label");
    if spec.label.as_ref().is_some_and(|l| l.len() > MAX_TEXT) {
        r.report()
            .error(format!("{at}.label: at most {MAX_TEXT} bytes"));
    }
    if let Some(meta) = r.raw("metadata") {
        match meta.as_object() {
            Some(map) => {
                for (k, v) in map {
                    match v.as_str() {
                        Some(s) if k.len() <= MAX_TEXT && s.len() <= MAX_TEXT => {
                            spec.metadata.insert(k.clone(), s.to_string());
                        }
                        _ => r.report().error(format!(
                            "{at}.metadata.{k}: a string of at most {MAX_TEXT} bytes"
                        )),
                    }
                }
            }
            None => r.report().error(format!(
                "{at}.metadata: an object of strings, got {}",
                kind_of(meta)
            )),
        }
    }
    r.finish();
    spec
}

/// A non-empty list of event types or globs at `at`; what is wrong goes to `report`.
pub(crate) fn event_globs(at: &str, value: &Value, report: &mut Report) -> Vec<String> {
    let Some(list) = value.as_array().filter(|l| !l.is_empty()) else {
        report.error(format!(
            "{at}: a non-empty list of event types or globs, got {}",
            kind_of(value)
        ));
        return vec!["*".into()];
    };
    let mut globs = Vec::new();
    for (i, item) in list.iter().enumerate() {
        match item.as_str() {
            Some(p) if is_valid_pattern(p) => globs.push(p.to_string()),
            _ => report.error(format!(
                "{at}[{i}]: an event type or glob (\"face_*\"), got {item}"
            )),
        }
    }
    globs
}

/// Where a recording stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingState {
    /// Being written.
    Recording,
    /// Asked to stop: the writer is finishing the file.
    Stopping,
    /// Finished, with its summary and index: complete.
    Stopped,
    /// The server stopped without finishing it (a crash): readable up to the last flush.
    Interrupted,
    /// The file could not be written.
    Failed,
}

/// A recording as the API shows it and the store keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordingInfo {
    /// Recording id.
    pub id: String,
    /// The session recorded.
    pub session: String,
    /// Where it stands.
    pub state: RecordingState,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it stopped.
    pub stopped_at: Option<DateTime<Utc>>,
    /// Why it stopped.
    pub stop_reason: Option<String>,
    /// The file's name in the recordings folder.
    pub file: String,
    /// The file's size.
    pub bytes: u64,
    /// Events written.
    pub events: u64,
    /// Frames' detections written.
    pub detections: u64,
    /// Frames written (JPEG).
    pub frames: u64,
    /// Events and frames that did not fit in the writer's queue.
    pub dropped: u64,
    /// The first and last event's seq.
    pub first_seq: Option<u64>,
    /// See `first_seq`.
    pub last_seq: Option<u64>,
    /// Seconds from the first to the last message.
    pub duration_s: f64,
    /// What it keeps.
    pub spec: RecordingSpec,
    /// Started by the session's template (`recording` in it), not over REST.
    pub auto: bool,
    /// The recording this one continues (the server restarted while it ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues: Option<String>,
    /// The latest write error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whose data it holds: a token sees the recording only when its live feed of the
    /// session would have carried all of it (docs/SECURITY.md). `None`: not known (a
    /// recording from before this was kept, or one taken in from a file).
    #[serde(default)]
    pub holds: Option<Contents>,
    /// Taken in from a file (`POST /api/v1/recordings`) rather than recorded here.
    #[serde(default)]
    pub imported: bool,
}

impl RecordingInfo {
    /// Whether it came from a file, also for one kept before `imported` existed.
    pub fn is_imported(&self) -> bool {
        self.imported
            || self
                .stop_reason
                .as_deref()
                .is_some_and(|r| r.starts_with(IMPORTED_FROM))
    }
}

/// How an imported recording's `stop_reason` starts.
pub(crate) const IMPORTED_FROM: &str = "imported from ";

/// Most names one list of [`Contents`] holds; past it the list is not `complete`.
pub const MAX_CONTENT_NAMES: usize = 4096;

/// Whose data a recording holds, by what raised it: the same marks live feeds filter on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contents {
    /// Sources whose events, detections or frames it holds.
    pub sources: BTreeSet<String>,
    /// Serials of devices whose events (or whose source's frames) it holds.
    pub devices: BTreeSet<String>,
    /// Event types it holds.
    pub events: BTreeSet<String>,
    /// False when a list outgrew [`MAX_CONTENT_NAMES`]: then only a token that no source,
    /// device or event scope limits sees the recording.
    pub complete: bool,
}

impl Contents {
    /// Nothing yet, every list complete.
    pub fn empty() -> Self {
        Self {
            complete: true,
            ..Self::default()
        }
    }

    /// Adds `name` to `list` (one of this struct's); false when it did not fit.
    fn add(list: &mut BTreeSet<String>, complete: &mut bool, name: &str) {
        if list.contains(name) {
            return;
        }
        if list.len() >= MAX_CONTENT_NAMES {
            *complete = false;
            return;
        }
        list.insert(name.to_string());
    }

    /// Notes a source.
    pub fn add_source(&mut self, id: &str) {
        Self::add(&mut self.sources, &mut self.complete, id);
    }

    /// Notes a device.
    pub fn add_device(&mut self, serial: &str) {
        Self::add(&mut self.devices, &mut self.complete, serial);
    }

    /// Notes an event type.
    pub fn add_event(&mut self, name: &str) {
        Self::add(&mut self.events, &mut self.complete, name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_spec_lists_every_problem_and_true_means_the_defaults() {
        let mut report = Report::default();
        assert_eq!(
            parse_spec("recording", &json!(true), &mut report),
            RecordingSpec::default()
        );
        let spec = parse_spec(
            "r",
            &json!({"events": ["gaze_*", 3], "frames": "yes", "frame_quality": 0,
                "metadata": {"participant": "P07", "n": 1}, "colour": 1}),
            &mut report,
        );
        assert_eq!(spec.events, vec!["gaze_*".to_string()]);
        assert_eq!(
            spec.metadata.get("participant").map(String::as_str),
            Some("P07")
        );
        let errors = report.errors.join("\n");
        for field in [
            "r.events[1]",
            "r.frames",
            "r.frame_quality",
            "r.metadata.n",
            "r.colour",
        ] {
            assert!(errors.contains(field), "{field} missing in {errors}");
        }
        assert_eq!(report.errors.len(), 5, "{errors}");
    }
}
