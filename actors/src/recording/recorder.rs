//! One recording: the handle a session offers its events to, and the thread that writes
//! them into the MCAP file.
//!
//! The session never waits: [`Recorder::offer`] puts the shared event into a bounded
//! queue (dropped and counted when it is full). The writing thread encodes and compresses,
//! and every `flush_interval` closes the open chunk and flushes the file, so a crash loses
//! at most that much and leaves a file readable up to its last whole chunk.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::{schemas, Contents, RecordingInfo, RecordingSettings, RecordingSpec, RecordingState};
use crate::event::{Event, Origin};
use crate::glob::Glob;
use crate::messages::AnalysedFrame;

/// Recordings running that keep their sources' frames or detections: sources build what
/// a recording keeps of a frame only while there is one.
static FRAME_RECORDERS: AtomicUsize = AtomicUsize::new(0);

/// Whether any running recording keeps frames or detections.
pub fn frames_wanted() -> bool {
    FRAME_RECORDERS.load(Ordering::Relaxed) > 0
}

/// Pictures (decoded frames can be megabytes) waiting for one recording's writer; beyond,
/// a frame is kept without its picture, counted as dropped.
const MAX_QUEUED_PICTURES: usize = 32;

/// Metric: what recordings wrote and dropped.
pub const RECORDING_MESSAGES: &str = "synopticon_recording_messages_total";

/// Describes the recordings' metric.
pub fn describe() {
    metrics::describe_counter!(
        RECORDING_MESSAGES,
        "Messages (events, detections, frames) of a session's recordings by outcome: written to the MCAP file, or dropped because the recording's queue (recording.queue) was full."
    );
}

/// What the session hands over.
enum Item {
    Event(Arc<Event>),
    Frame(Arc<AnalysedFrame>),
}

/// Counters the writing thread keeps and readers see.
#[derive(Default)]
struct Progress {
    events: AtomicU64,
    detections: AtomicU64,
    frames: AtomicU64,
    dropped: AtomicU64,
    bytes: AtomicU64,
    first_seq: AtomicU64,
    last_seq: AtomicU64,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    stop: AtomicBool,
    done: AtomicBool,
    end: Mutex<End>,
    /// Pictures queued for the writer.
    pictures: AtomicUsize,
    /// Whose data the file holds: noted before each message is written, so it always
    /// covers what is on disk.
    holds: Mutex<Contents>,
}

#[derive(Default)]
struct End {
    stopped_at: Option<DateTime<Utc>>,
    reason: Option<String>,
    error: Option<String>,
    failed: bool,
}

/// One running recording.
pub struct Recorder {
    id: Arc<str>,
    session: Arc<str>,
    spec: RecordingSpec,
    globs: Vec<Glob>,
    tx: SyncSender<Item>,
    progress: Arc<Progress>,
    started_at: DateTime<Utc>,
    file: String,
    auto: bool,
    continues: Option<String>,
    /// Messages its full queue dropped (the metric).
    dropped_metric: metrics::Counter,
}

/// What the file says about itself.
pub struct Header {
    /// Named metadata records (`synopticon`, `session`, `models`, `study`).
    pub metadata: Vec<(String, BTreeMap<String, String>)>,
}

/// What starting a recording needs.
pub struct Start<'a> {
    /// Recording id (also the file's name, with `.mcap`).
    pub id: String,
    /// The session recorded.
    pub session: &'a str,
    /// What it keeps.
    pub spec: RecordingSpec,
    /// Started by the session's template.
    pub auto: bool,
    /// The recording it continues.
    pub continues: Option<String>,
    /// Metadata records.
    pub header: Header,
    /// Called on the writing thread once the file is finished (or failed).
    pub on_done: Box<dyn FnOnce() + Send>,
    /// Whose data it holds from the start: the sources and devices its header's session
    /// configuration names.
    pub holds: Contents,
}

impl Recorder {
    /// Creates the file, writes its header and metadata, and starts the writing thread.
    pub fn start(settings: &RecordingSettings, start: Start<'_>) -> Result<Arc<Recorder>, String> {
        std::fs::create_dir_all(&settings.dir)
            .map_err(|e| format!("cannot create {}: {e}", settings.dir.display()))?;
        let file = format!("{}.mcap", start.id);
        let path = settings.dir.join(&file);
        let out =
            File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let mut writer = mcap::WriteOptions::new()
            .compression(Some(mcap::Compression::Zstd))
            .profile("")
            .library(format!("synopticon {}", env!("CARGO_PKG_VERSION")))
            .chunk_size(Some(4 << 20))
            .create(BufWriter::with_capacity(1 << 16, out))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        for (name, metadata) in &start.header.metadata {
            writer
                .write_metadata(&mcap::records::Metadata {
                    name: name.clone(),
                    metadata: metadata.clone(),
                })
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        writer
            .flush()
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let (tx, rx) = sync_channel(settings.queue.max(1));
        let progress = Arc::new(Progress {
            holds: Mutex::new(start.holds),
            ..Progress::default()
        });
        let recorder = Arc::new(Recorder {
            id: start.id.as_str().into(),
            session: start.session.into(),
            globs: start.spec.events.iter().map(|p| Glob::new(p)).collect(),
            spec: start.spec,
            tx,
            progress: progress.clone(),
            started_at: Utc::now(),
            file,
            auto: start.auto,
            continues: start.continues,
            dropped_metric: metrics::counter!(RECORDING_MESSAGES, "session" => start.session.to_string(), "outcome" => "dropped"),
        });
        let thread = Writing {
            writer,
            path,
            rx,
            progress,
            spec: recorder.spec.clone(),
            flush_every: settings.flush_interval,
            frame_ref_dirs: settings.frame_ref_dirs.clone(),
            channels: HashMap::new(),
            event_channels: HashMap::new(),
            noted: HashSet::new(),
            schemas: HashMap::new(),
            last_log: 0,
            written: metrics::counter!(RECORDING_MESSAGES, "session" => start.session.to_string(), "outcome" => "written"),
        };
        let on_done = start.on_done;
        let wants_frames = recorder.wants_frames();
        if wants_frames {
            FRAME_RECORDERS.fetch_add(1, Ordering::Relaxed);
        }
        let spawned = std::thread::Builder::new()
            .name(format!("rec-{}", start.id))
            .spawn(move || {
                thread.run();
                if wants_frames {
                    FRAME_RECORDERS.fetch_sub(1, Ordering::Relaxed);
                }
                on_done();
            });
        if let Err(e) = spawned {
            if wants_frames {
                FRAME_RECORDERS.fetch_sub(1, Ordering::Relaxed);
            }
            let _ = std::fs::remove_file(settings.dir.join(&recorder.file));
            return Err(format!("cannot start the recording's thread: {e}"));
        }
        Ok(recorder)
    }

    /// Recording id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The session recorded.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Whether it keeps its sources' frames or detections.
    pub fn wants_frames(&self) -> bool {
        self.spec.detections || self.spec.frames
    }

    /// Whether it has been asked to stop.
    pub fn is_stopping(&self) -> bool {
        self.progress.stop.load(Ordering::Relaxed)
    }

    /// Whether the file is finished.
    pub fn is_done(&self) -> bool {
        self.progress.done.load(Ordering::Acquire)
    }

    /// Queues `event` if the recording keeps its type; never waits.
    pub fn offer(&self, event: &Arc<Event>) {
        if self.is_stopping() || !self.globs.iter().any(|g| g.matches(&event.name)) {
            return;
        }
        self.send(Item::Event(event.clone()));
    }

    /// Queues a source's analysed frame if the recording keeps frames or detections. Its
    /// picture is kept only for a recording of frames, and only while few wait.
    pub fn offer_frame(&self, frame: &Arc<AnalysedFrame>) {
        if self.is_stopping() || !self.wants_frames() {
            return;
        }
        let has_picture = frame.picture.is_some();
        let keep_picture = self.spec.frames
            && has_picture
            && self.progress.pictures.fetch_add(1, Ordering::AcqRel) < MAX_QUEUED_PICTURES;
        if self.spec.frames && has_picture && !keep_picture {
            self.progress.pictures.fetch_sub(1, Ordering::AcqRel);
            self.count_drop();
        }
        let frame = if keep_picture || !has_picture {
            frame.clone()
        } else {
            Arc::new(AnalysedFrame {
                picture: None,
                ..(**frame).clone()
            })
        };
        if !self.send(Item::Frame(frame)) && keep_picture {
            self.progress.pictures.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Queues `item`; false (counted) when the queue is full.
    fn send(&self, item: Item) -> bool {
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.count_drop();
                false
            }
        }
    }

    fn count_drop(&self) {
        let before = self.progress.dropped.fetch_add(1, Ordering::Relaxed);
        self.dropped_metric.increment(1);
        if before.is_power_of_two() || before == 0 {
            tracing::warn!(recording = %self.id, dropped = before + 1, "a recording's queue is full: events or frames are dropped");
        }
    }

    /// Asks the writer to write what is queued and finish the file.
    pub fn stop(&self, reason: &str) {
        if !self.progress.stop.swap(true, Ordering::AcqRel) {
            let mut end = self.progress.end.lock();
            end.stopped_at = Some(Utc::now());
            end.reason = Some(reason.to_string());
        }
    }

    /// Waits (at most `deadline`) for the file to be finished.
    pub async fn finished(&self, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        while !self.is_done() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.is_done()
    }

    /// The recording as the API shows it, counters as of now.
    pub fn info(&self) -> RecordingInfo {
        let p = &self.progress;
        let end = p.end.lock();
        let state = match (
            p.done.load(Ordering::Acquire),
            end.failed,
            self.is_stopping(),
        ) {
            (_, true, _) => RecordingState::Failed,
            (true, false, _) => RecordingState::Stopped,
            (false, false, true) => RecordingState::Stopping,
            (false, false, false) => RecordingState::Recording,
        };
        let (first, last) = (
            p.first_ns.load(Ordering::Relaxed),
            p.last_ns.load(Ordering::Relaxed),
        );
        let seq = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|s| *s > 0);
        RecordingInfo {
            id: self.id.to_string(),
            session: self.session.to_string(),
            state,
            started_at: self.started_at,
            stopped_at: end.stopped_at,
            stop_reason: end.reason.clone(),
            file: self.file.clone(),
            bytes: p.bytes.load(Ordering::Relaxed),
            events: p.events.load(Ordering::Relaxed),
            detections: p.detections.load(Ordering::Relaxed),
            frames: p.frames.load(Ordering::Relaxed),
            dropped: p.dropped.load(Ordering::Relaxed),
            first_seq: seq(&p.first_seq),
            last_seq: seq(&p.last_seq),
            duration_s: if first > 0 {
                (last.saturating_sub(first)) as f64 / 1e9
            } else {
                0.0
            },
            spec: self.spec.clone(),
            auto: self.auto,
            continues: self.continues.clone(),
            error: end.error.clone(),
            holds: Some(p.holds.lock().clone()),
            imported: false,
        }
    }
}

/// The writing thread's state.
struct Writing {
    writer: mcap::Writer<BufWriter<File>>,
    path: PathBuf,
    rx: Receiver<Item>,
    progress: Arc<Progress>,
    spec: RecordingSpec,
    flush_every: Duration,
    frame_ref_dirs: Vec<PathBuf>,
    /// Topic → channel id.
    channels: HashMap<String, u16>,
    /// Event type → its channel id.
    event_channels: HashMap<Arc<str>, u16>,
    /// Sources and devices already in the progress's `holds` (no lock per message).
    noted: HashSet<(bool, Arc<str>)>,
    /// Schema name → schema id.
    schemas: HashMap<&'static str, u16>,
    /// Log times never go back: readers that order by log time see the session's order.
    last_log: u64,
    /// Messages written (the metric).
    written: metrics::Counter,
}

/// Most event channels one recording opens; further event types share `/events/_other`.
const MAX_EVENT_CHANNELS: usize = 4096;

fn nanos(t: DateTime<Utc>) -> u64 {
    t.timestamp_nanos_opt().unwrap_or(0).max(0) as u64
}

impl Writing {
    fn run(mut self) {
        let mut last_flush = Instant::now();
        let mut failure = None;
        loop {
            let wait = self
                .flush_every
                .saturating_sub(last_flush.elapsed())
                .min(Duration::from_millis(100));
            match self.rx.recv_timeout(wait) {
                Ok(item) => {
                    if let Err(e) = self.write(item) {
                        failure = Some(e);
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.progress.stop.load(Ordering::Acquire) {
                // What was queued before the stop is written.
                while let Ok(item) = self.rx.try_recv() {
                    if let Err(e) = self.write(item) {
                        failure = Some(e);
                        break;
                    }
                }
                break;
            }
            if last_flush.elapsed() >= self.flush_every {
                if let Err(e) = self.flush() {
                    failure = Some(e);
                    break;
                }
                last_flush = Instant::now();
            }
        }
        let finished = match failure {
            Some(e) => Err(e),
            None => self.writer.finish().map(|_| ()).map_err(|e| e.to_string()),
        };
        // Close the file before saying done: a download right after sees all of it.
        drop(self.writer);
        self.progress.bytes.store(
            std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0),
            Ordering::Relaxed,
        );
        if let Err(error) = finished {
            tracing::error!(file = %self.path.display(), %error, "a recording could not be written");
            let mut end = self.progress.end.lock();
            end.failed = true;
            end.error = Some(error);
            end.stopped_at.get_or_insert_with(Utc::now);
        }
        self.progress.stop.store(true, Ordering::Release);
        self.progress.done.store(true, Ordering::Release);
    }

    fn flush(&mut self) -> Result<(), String> {
        self.writer.flush().map_err(|e| e.to_string())?;
        if let Ok(m) = std::fs::metadata(&self.path) {
            self.progress.bytes.store(m.len(), Ordering::Relaxed);
        }
        Ok(())
    }

    fn schema(&mut self, name: &'static str) -> Result<u16, String> {
        if let Some(id) = self.schemas.get(name) {
            return Ok(*id);
        }
        let schema = match name {
            schemas::EVENT => schemas::event(),
            schemas::DETECTIONS => schemas::detections(),
            schemas::COMPRESSED_IMAGE => schemas::compressed_image(),
            _ => schemas::image_annotations(),
        };
        let bytes = serde_json::to_vec(&schema).unwrap_or_default();
        let id = self
            .writer
            .add_schema(name, "jsonschema", &bytes)
            .map_err(|e| e.to_string())?;
        self.schemas.insert(name, id);
        Ok(id)
    }

    fn channel(&mut self, topic: &str, schema: &'static str) -> Result<u16, String> {
        if let Some(id) = self.channels.get(topic) {
            return Ok(*id);
        }
        let schema_id = self.schema(schema)?;
        let id = self
            .writer
            .add_channel(schema_id, topic, "json", &BTreeMap::new())
            .map_err(|e| e.to_string())?;
        self.channels.insert(topic.to_string(), id);
        Ok(id)
    }

    fn put(
        &mut self,
        channel: u16,
        sequence: u32,
        log: u64,
        publish: u64,
        data: &[u8],
    ) -> Result<(), String> {
        let log = log.max(self.last_log);
        self.last_log = log;
        self.writer
            .write_to_known_channel(
                &mcap::records::MessageHeader {
                    channel_id: channel,
                    sequence,
                    log_time: log,
                    publish_time: publish,
                },
                data,
            )
            .map_err(|e| e.to_string())?;
        self.written.increment(1);
        let p = &self.progress;
        if p.first_ns.load(Ordering::Relaxed) == 0 {
            p.first_ns.store(log, Ordering::Relaxed);
        }
        p.last_ns.store(log, Ordering::Relaxed);
        Ok(())
    }

    fn write(&mut self, item: Item) -> Result<(), String> {
        match item {
            Item::Event(event) => self.write_event(&event),
            Item::Frame(frame) => self.write_frame(&frame),
        }
    }

    /// Notes a source (`device` false) or a device in what the file holds, once.
    fn note(&mut self, device: bool, id: &Arc<str>) {
        if self.noted.insert((device, id.clone())) {
            let mut holds = self.progress.holds.lock();
            if device {
                holds.add_device(id);
            } else {
                holds.add_source(id);
            }
        }
    }

    fn write_event(&mut self, event: &Event) -> Result<(), String> {
        let origin = event.origin();
        if let Some(source) = &origin.source {
            self.note(false, source);
        }
        if let Some(device) = &origin.device {
            self.note(true, device);
        }
        // Looked up by event type: no topic string is made per event.
        let channel = match self.event_channels.get(&*event.name) {
            Some(id) => *id,
            None => {
                self.progress.holds.lock().add_event(&event.name);
                let topic = if self.event_channels.len() < MAX_EVENT_CHANNELS {
                    format!("/events/{}", event.name)
                } else {
                    "/events/_other".to_string()
                };
                let id = self.channel(&topic, schemas::EVENT)?;
                self.event_channels.insert(event.name.clone(), id);
                id
            }
        };
        // Logged at the time the session accepted it (its arrival), published at its own.
        let accepted = Utc::now()
            - chrono::Duration::from_std(event.accepted_at.elapsed()).unwrap_or_default();
        // Publish time as the envelope writes `ts`: to the millisecond.
        let published = event.ts.timestamp_millis().max(0) as u64 * 1_000_000;
        let with_origin = recorded_origin(event.json(), origin);
        self.put(
            channel,
            event.seq as u32,
            nanos(accepted),
            published,
            with_origin.as_deref().unwrap_or(event.json()),
        )?;
        let p = &self.progress;
        p.events.fetch_add(1, Ordering::Relaxed);
        if p.first_seq.load(Ordering::Relaxed) == 0 {
            p.first_seq.store(event.seq, Ordering::Relaxed);
        }
        p.last_seq.store(event.seq, Ordering::Relaxed);
        Ok(())
    }

    fn write_frame(&mut self, frame: &AnalysedFrame) -> Result<(), String> {
        self.note(false, &frame.source);
        if let Some(device) = &frame.device {
            self.note(true, device);
        }
        let log = nanos(Utc::now());
        let at = nanos(frame.at);
        let sequence = frame.number as u32;
        if self.spec.detections {
            let channel = self.channel(
                &format!("/sources/{}/detections", frame.source),
                schemas::DETECTIONS,
            )?;
            let body = detections_envelope(frame);
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            self.put(channel, sequence, log, at, &bytes)?;
            self.progress.detections.fetch_add(1, Ordering::Relaxed);
        }
        if self.spec.frames {
            let Some(picture) = &frame.picture else {
                return Ok(());
            };
            self.progress.pictures.fetch_sub(1, Ordering::AcqRel);
            let jpeg = match crate::rules::capture::frame_jpeg(
                picture,
                &self.frame_ref_dirs,
                self.spec.frame_quality,
            ) {
                Ok(jpeg) => jpeg,
                Err(error) => {
                    tracing::debug!(source = %frame.source, %error, "a frame could not be recorded");
                    self.progress.dropped.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
            };
            let stamp = json!({"sec": frame.at.timestamp().max(0), "nsec": frame.at.timestamp_subsec_nanos()});
            let image = json!({
                "timestamp": stamp,
                "frame_id": &*frame.source,
                "format": "jpeg",
                "data": base64::engine::general_purpose::STANDARD.encode(&jpeg),
            });
            let channel = self.channel(
                &format!("/sources/{}/image", frame.source),
                schemas::COMPRESSED_IMAGE,
            )?;
            self.put(
                channel,
                sequence,
                log,
                at,
                &serde_json::to_vec(&image).unwrap_or_default(),
            )?;
            let channel = self.channel(
                &format!("/sources/{}/annotations", frame.source),
                schemas::IMAGE_ANNOTATIONS,
            )?;
            let notes = annotations(frame, &stamp);
            self.put(
                channel,
                sequence,
                log,
                at,
                &serde_json::to_vec(&notes).unwrap_or_default(),
            )?;
            self.progress.frames.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The envelope of an event that something inside the server raised, with an `origin`
/// saying what (its source, device, channel), so that a replay gives the event the marks
/// live feeds filter on; `None` for an event a client posted (the envelope as it is).
fn recorded_origin(envelope: &[u8], origin: &Origin) -> Option<Vec<u8>> {
    if origin.source.is_none() && origin.device.is_none() && origin.channel.is_none() {
        return None;
    }
    let mut marks = serde_json::Map::new();
    for (key, value) in [
        ("source", &origin.source),
        ("device", &origin.device),
        ("channel", &origin.channel),
    ] {
        if let Some(v) = value {
            marks.insert(key.into(), Value::String(v.to_string()));
        }
    }
    let body = envelope.strip_suffix(b"}")?;
    let mut out = Vec::with_capacity(envelope.len() + 64);
    out.extend_from_slice(body);
    out.extend_from_slice(b",\"origin\":");
    out.extend_from_slice(&serde_json::to_vec(&Value::Object(marks)).unwrap_or_default());
    out.push(b'}');
    Some(out)
}

/// A frame's detections as the detection envelope an edge device sends: what a source's
/// tracker reads back on re-analysis. The timestamp keeps every digit, so the same
/// frame times come back.
pub fn detections_envelope(frame: &AnalysedFrame) -> Value {
    let detections: Vec<Value> = frame
        .detections
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut one = json!({
                "class_id": d.class_id,
                "class_name": &*d.class_name,
                "confidence": d.confidence,
                "bbox": d.bbox,
            });
            if let Some(landmarks) = &d.landmarks {
                one["landmarks"] = json!(landmarks);
            }
            if let Some(Some(id)) = frame.track_ids.as_ref().and_then(|ids| ids.get(i)) {
                one["track_id"] = json!(id);
            }
            one
        })
        .collect();
    json!({
        "version": 1,
        "source": {
            "device_id": &*frame.source,
            "camera_id": &*frame.source,
            "timestamp": frame.at.to_rfc3339_opts(SecondsFormat::Nanos, true),
        },
        "frame": {"number": frame.number, "width": frame.width, "height": frame.height},
        "detections": detections,
    })
}

/// The tracked boxes as Foxglove image annotations: a closed outline per track and its
/// label above it.
fn annotations(frame: &AnalysedFrame, stamp: &Value) -> Value {
    let green = json!({"r": 0.1, "g": 0.85, "b": 0.3, "a": 1.0});
    let mut points = Vec::new();
    let mut texts = Vec::new();
    for (id, class, confidence, b) in &frame.tracks {
        points.push(json!({
            "timestamp": stamp,
            "type": 2,
            "points": [{"x": b.x1, "y": b.y1}, {"x": b.x2, "y": b.y1}, {"x": b.x2, "y": b.y2}, {"x": b.x1, "y": b.y2}],
            "outline_color": green,
            "thickness": 2.0,
        }));
        texts.push(json!({
            "timestamp": stamp,
            "position": {"x": b.x1, "y": (b.y1 - 4.0).max(0.0)},
            "text": format!("#{id} {class} {confidence:.2}"),
            "font_size": 14.0,
            "text_color": {"r": 1.0, "g": 1.0, "b": 1.0, "a": 1.0},
            "background_color": {"r": 0.0, "g": 0.0, "b": 0.0, "a": 0.6},
        }));
    }
    json!({"circles": [], "points": points, "texts": texts})
}
