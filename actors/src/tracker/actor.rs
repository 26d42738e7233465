//! The `TrackerActor`: one per source, on its own thread. It receives each analysed frame
//! (straight from the model's `InferenceActor`) or each message an edge device posted, runs
//! the ByteTrack-style tracker and the lines and zones, and hands the resulting events to
//! the session registry, which routes them to every session listening to the source.
//!
//! Tracking, analytics and the JPEG of `frame_data` run here rather than on the shared
//! actors thread, so a busy source never delays sessions or other sources.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::analytics::{Analytics, AnalyticsEvent};
use super::edge::{EdgeTracks, Recent};
use super::{ByteTracker, EndedTrack, TrackSnapshot, TrackState, TrackView};
use crate::inference::envelope::{
    DetectionMessage, EnvelopeDetection, FrameData, FrameInfo, SourceInfo, VERSION,
};
use crate::inference::{BBox, Detection, Frame, FrameDetected, InferenceError, Point, Roi};
use crate::messages::{AnalysedFrame, FrameRef, IncomingEvent, PublishSourceEvents};
use crate::source::actor::SourceShared;
use crate::source::SourceConfig;

/// Most detections one edge message may carry: the association's cost matrix grows with
/// detections times tracks, and a model source is capped by its model's `max_detections`
/// alike.
pub const MAX_EDGE_DETECTIONS: usize = 1000;

/// Longest name an edge device may give a class: names travel into events, logs, e-mail
/// subjects and metric-free text everywhere, so a 2 KB one is refused, not carried.
pub const MAX_EDGE_TEXT: usize = 128;

/// Whether `text` may stand as a name an edge device gives (a class, a camera).
pub fn is_edge_text(text: &str) -> bool {
    !text.is_empty() && text.chars().count() <= MAX_EDGE_TEXT && !text.chars().any(char::is_control)
}

/// A value shown in an error, cut to a readable length.
fn clip_for_error(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}... ({} bytes)", &text[..end], text.len()),
        None => text,
    }
}

/// How far ahead of the server's clock an edge timestamp may be.
pub const MAX_CLOCK_AHEAD_SECS: i64 = 300;

/// REST or an input → tracker: detections from an edge device, in the seed-004
/// envelope, several at once (an input hands over what one read brought); one result each.
#[derive(Message)]
#[rtype(result = "Vec<Result<Ingested, String>>")]
pub struct IngestDetections {
    /// The envelopes, in order.
    pub envelopes: Vec<Value>,
    /// Warm-up: track it, raise nothing. A processor that restarts replays what it had
    /// already handled, so tracks and line sides are where they were.
    pub warm: bool,
}

/// What the tracker did with an edge message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// Detections in it.
    pub detections: usize,
    /// It was taken before (same frame number and timestamp): nothing changed.
    pub duplicate: bool,
}

/// Edge messages remembered per source to recognise one delivered again.
const RECENT_MESSAGES: usize = 4096;

/// Hub → tracker: new lines, zones, thresholds or classes, applied from the next frame.
/// Open tracks keep their ids, and their line sides and zone visits carry on for lines and
/// zones that keep their id.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure(pub SourceConfig);

/// Camera → tracker: the source reached its end (or is being removed); end open tracks.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FinishTracks;

/// Hub → tracker: the tracks held now (tentative, confirmed and lost), and the number of
/// frames tracked so far.
#[derive(Message)]
#[rtype(result = "(u64, Vec<TrackSnapshot>)")]
pub struct ListTracks;

/// Hub → tracker: end open tracks and stop, with the thread.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopTracker;

/// One source's tracker, lines and zones.
pub struct TrackerActor {
    id: Arc<str>,
    shared: Arc<SourceShared>,
    /// Where events go (the registry); `None` for a scratch tracker, which collects them.
    sink: Option<Recipient<PublishSourceEvents>>,
    /// What a scratch tracker raised.
    collected: Vec<IncomingEvent>,
    /// The configuration in force: the tracker's own copy, read every frame without a
    /// lock (the hub updates the shared copy that the REST API shows).
    config: SourceConfig,
    tracker: ByteTracker,
    analytics: Analytics,
    /// Number of the next tracked frame (the envelope's `frame.number`).
    frame_number: u64,
    /// The frame time of the latest `detections` event (rate limit): frame time, not the
    /// wall clock, so that a replay raises the same events as the live run.
    last_detections_event: Option<DateTime<Utc>>,
    /// Time of the latest frame: edge timestamps that go back are held here, so dwell
    /// times and durations are never negative.
    last_at: Option<DateTime<Utc>>,
    /// Face tracks already announced with `face_detected`.
    faces_seen: HashSet<u64>,
    /// An edge device's own tracks, when the source keeps its ids (`edge_track_ids`).
    edge: Option<EdgeTracks>,
    /// Edge messages taken lately, to recognise one delivered again.
    recent: Recent,
    /// Warming up: events are not raised.
    quiet: bool,
    /// Each track's centre in the latest `detections` envelope (its `previous_center`).
    centers: HashMap<u64, Point>,
}

impl TrackerActor {
    /// A tracker for the source whose state is `shared`, publishing to `sink`.
    pub fn new(shared: Arc<SourceShared>, sink: Recipient<PublishSourceEvents>) -> Self {
        let config = shared.config.read().clone();
        let edge = config
            .edge_track_ids
            .then(|| EdgeTracks::new(config.tracker.clone()));
        Self {
            id: Arc::from(config.id.as_str()),
            tracker: ByteTracker::new(config.tracker.clone()),
            analytics: Analytics::new(config.analytics()),
            config,
            shared,
            sink: Some(sink),
            collected: Vec::new(),
            frame_number: 0,
            last_detections_event: None,
            last_at: None,
            faces_seen: HashSet::new(),
            edge,
            recent: Recent::new(RECENT_MESSAGES),
            quiet: false,
            centers: HashMap::new(),
        }
    }

    /// `at`, or the latest frame's time if `at` is earlier.
    fn monotonic(&mut self, at: DateTime<Utc>) -> DateTime<Utc> {
        let at = match self.last_at {
            Some(last) if at < last => last,
            _ => at,
        };
        self.last_at = Some(at);
        at
    }

    /// Tracks one frame's detections and publishes what happened.
    fn process(&mut self, frame: TrackedFrame<'_>) {
        let started = Instant::now();
        let at = self.monotonic(frame.at);
        let now = seconds(at);
        let config = &self.config;
        let kept: Vec<Detection>;
        let kept_ids: Vec<Option<u64>>;
        let no_ids = vec![None; frame.detections.len()];
        let all_ids = frame.track_ids.unwrap_or(&no_ids);
        let (detections, ids) = if config.classes.is_empty() && config.confidence.is_none() {
            (frame.detections, all_ids)
        } else {
            let min = config.confidence.unwrap_or(0.0);
            let wanted = |d: &Detection| {
                d.confidence >= min
                    && (config.classes.is_empty()
                        || config.classes.iter().any(|c| {
                            *c == *d.class_name || c.parse::<u32>().ok() == Some(d.class_id)
                        }))
            };
            (kept, kept_ids) = frame
                .detections
                .iter()
                .zip(all_ids)
                .filter(|(d, _)| wanted(d))
                .map(|(d, id)| (d.clone(), *id))
                .unzip();
            (&kept[..], &kept_ids[..])
        };
        let update = match (&mut self.edge, frame.track_ids) {
            // The device's own ids, kept (edge messages of a source that asks for it).
            (Some(edge), Some(_)) => edge.update(detections, ids, now),
            _ => self.tracker.update(detections, now),
        };
        let analytics = self.analytics.update(
            &update.tracks,
            &update.ended,
            now,
            frame.width,
            frame.height,
        );
        let number = self.frame_number;
        self.frame_number += 1;
        let mut events = Vec::new();
        let source = self.id.to_string();
        for id in &update.started {
            let Some(track) = update.tracks.iter().find(|t| t.track_id == *id) else {
                continue;
            };
            events.push(event("track_started", track_json(&source, track), at));
            if &*track.class_name == "face" && self.faces_seen.insert(track.track_id) {
                events.push(event("face_detected", track_json(&source, track), at));
            }
        }
        if !self.quiet {
            self.shared.count(&analytics);
        }
        push_analytics(&mut events, &source, &analytics, &update.tracks, at);
        for end in &update.ended {
            self.faces_seen.remove(&end.track_id);
            self.centers.remove(&end.track_id);
            events.push(event("track_ended", ended_json(&source, end), at));
        }
        let due = config.detections_events
            && self
                .last_detections_event
                .is_none_or(|t| (at - t).num_milliseconds() >= config.detections_every_ms as i64);
        if due {
            self.last_detections_event = Some(at);
            let message = DetectionMessage {
                version: VERSION,
                source: SourceInfo::new(
                    config.device_id.as_deref().unwrap_or(&source),
                    &source,
                    at,
                ),
                frame: FrameInfo {
                    number,
                    width: frame.width,
                    height: frame.height,
                    roi_applied: frame.roi,
                    time_ms: None,
                    file: None,
                },
                model: config.model.clone().unwrap_or_default(),
                detections: update
                    .tracks
                    .iter()
                    .map(|t| EnvelopeDetection {
                        previous_center: self.centers.get(&t.track_id).copied(),
                        track_id: Some(t.track_id),
                        class_id: t.class_id,
                        class_name: t.class_name.to_string(),
                        confidence: t.confidence,
                        bbox: t.bbox,
                        center: t.bbox.center(),
                        landmarks: t.landmarks.clone(),
                    })
                    .collect(),
                frame_data: match frame.image {
                    Some(f) if config.frame_data => jpeg(f, config.frame_quality),
                    _ => None,
                },
                frame_ref: match (frame.image, config.frame_ref_dir.as_deref()) {
                    (Some(f), Some(dir)) => {
                        save_frame(f, dir, &source, number, at, config.frame_quality)
                    }
                    _ => None,
                },
            };
            for t in &update.tracks {
                self.centers.insert(t.track_id, t.bbox.center());
            }
            events.push(event(
                "detections",
                serde_json::to_value(&message).unwrap_or(Value::Null),
                at,
            ));
        }
        let s = &self.shared.stats;
        let m = &self.shared.metrics;
        s.frames_processed.fetch_add(1, Ordering::Relaxed);
        m.processed.increment(1);
        let active = self.tracker.active() + self.edge.as_ref().map_or(0, EdgeTracks::active);
        s.active_tracks.store(active as u64, Ordering::Relaxed);
        m.active_tracks.set(active as f64);
        s.tracking_us
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        m.tracking.record(started.elapsed().as_secs_f64());
        if let Some(picture) = &frame.picture {
            *self.shared.latest.write() = Some(picture.clone());
        }
        // What recordings keep of the frame (a scratch tracker has no one to give it to).
        let wanted = crate::recording::recorder::frames_wanted();
        let analysed = (wanted && self.sink.is_some() && !self.quiet).then(|| {
            Arc::new(AnalysedFrame {
                source: self.id.clone(),
                device: self.config.device_serial.as_deref().map(Arc::from),
                number,
                at,
                width: frame.width,
                height: frame.height,
                detections: frame.detections.to_vec(),
                track_ids: frame.track_ids.map(<[Option<u64>]>::to_vec),
                tracks: update
                    .tracks
                    .iter()
                    .map(|t| (t.track_id, t.class_name.clone(), t.confidence, t.bbox))
                    .collect(),
                picture: frame.picture.clone(),
            })
        });
        self.publish_on(events, frame.picture, analysed);
    }

    fn publish(&mut self, events: Vec<IncomingEvent>) {
        self.publish_on(events, None, None);
    }

    /// Hands events to the registry (sessions and rules), with the frame they were raised
    /// on if there is one, and the frame as analysed for recordings.
    fn publish_on(
        &mut self,
        mut events: Vec<IncomingEvent>,
        frame: Option<Arc<FrameRef>>,
        analysed: Option<Arc<AnalysedFrame>>,
    ) {
        if (events.is_empty() && analysed.is_none()) || self.quiet {
            return;
        }
        let device: Option<Arc<str>> = self.config.device_serial.as_deref().map(Arc::from);
        for e in &mut events {
            e.origin.source = Some(self.id.clone());
            e.origin.device = device.clone();
        }
        self.shared
            .stats
            .events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        self.shared.metrics.events.increment(events.len() as u64);
        match &self.sink {
            Some(sink) => sink.do_send(PublishSourceEvents {
                source: self.id.clone(),
                device,
                events,
                frame,
                analysed,
            }),
            None => self.collected.extend(events),
        }
    }

    /// Ends every open track (with its zone exits) and publishes it.
    fn finish_tracks(&mut self) {
        let mut ended = self.tracker.finish();
        if let Some(edge) = &mut self.edge {
            ended.extend(edge.finish());
        }
        // The source's own clock: an edge device's timestamps may be far from ours.
        let at = self.last_at.unwrap_or_else(Utc::now);
        let mut events = Vec::new();
        let source = self.id.to_string();
        let exits = self.analytics.update(&[], &ended, seconds(at), 1, 1);
        self.shared.count(&exits);
        push_analytics(&mut events, &source, &exits, &[], at);
        for end in &ended {
            events.push(event("track_ended", ended_json(&source, end), at));
        }
        self.faces_seen.clear();
        self.centers.clear();
        self.shared.stats.active_tracks.store(0, Ordering::Relaxed);
        self.shared.metrics.active_tracks.set(0.0);
        self.publish(events);
    }
}

/// One frame's input to the tracker.
struct TrackedFrame<'a> {
    detections: &'a [Detection],
    /// An edge device's own track ids (edge messages only).
    track_ids: Option<&'a [Option<u64>]>,
    at: DateTime<Utc>,
    width: u32,
    height: u32,
    roi: Roi,
    /// The picture, for `frame_data` (none for edge detections).
    image: Option<&'a Frame>,
    /// The picture as rules may capture it (the camera's frame, or the edge's JPEG).
    picture: Option<Arc<FrameRef>>,
}

/// The picture an edge device sent with its envelope, if any.
fn edge_picture(envelope: &Value) -> Option<Arc<FrameRef>> {
    if let Some(b64) = envelope["frame_data"]["base64"].as_str() {
        return Some(Arc::new(FrameRef::Base64Jpeg(Arc::from(b64))));
    }
    match (
        &envelope["frame_ref"]["type"],
        envelope["frame_ref"]["path"].as_str(),
    ) {
        (Value::String(t), Some(path)) if t == "file" => {
            Some(Arc::new(FrameRef::File(std::path::PathBuf::from(path))))
        }
        _ => None,
    }
}

fn seconds(at: DateTime<Utc>) -> f64 {
    (at.timestamp_micros() as f64) / 1e6
}

/// Line and zone events, with the box and score of their track in this frame when it was
/// seen (rules filter on the score and draw the box).
fn push_analytics(
    events: &mut Vec<IncomingEvent>,
    source: &str,
    analytics: &[AnalyticsEvent],
    tracks: &[TrackView],
    at: DateTime<Utc>,
) {
    for a in analytics {
        let mut data = serde_json::to_value(a).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut data {
            map.remove("event");
            map.insert("source".into(), json!(source));
            let id = map.get("track_id").and_then(Value::as_u64);
            if let Some(t) = tracks.iter().find(|t| Some(t.track_id) == id) {
                map.insert("bbox".into(), json!(t.bbox));
                map.insert("confidence".into(), json!(t.confidence));
            }
        }
        events.push(event(a.name(), data, at));
    }
}

/// Saves the frame as `{dir}/{source}/{date}/frame-{time}-{number}.jpg` for the envelope's
/// `frame_ref` (the tracker has a thread of its own: the write blocks nothing else). The
/// time keeps a restarted source, whose numbers start over, from overwriting frames a
/// processor may still read.
fn save_frame(
    frame: &Frame,
    dir: &str,
    source: &str,
    number: u64,
    at: DateTime<Utc>,
    quality: u8,
) -> Option<Value> {
    let folder = std::path::Path::new(dir)
        .join(source)
        .join(at.format("%Y-%m-%d").to_string());
    let path = folder.join(format!("frame-{}-{number}.jpg", at.format("%H%M%S%.6f")));
    let written = std::fs::create_dir_all(&folder).and_then(|()| {
        let file = std::fs::File::create(&path)?;
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(
            std::io::BufWriter::new(file),
            quality,
        );
        image::ImageEncoder::write_image(
            encoder,
            &frame.rgb,
            frame.width,
            frame.height,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(std::io::Error::other)
    });
    match written {
        Ok(()) => Some(json!({"type": "file", "path": path.display().to_string()})),
        Err(error) => {
            tracing::warn!(%error, path = %path.display(), "cannot save the frame for frame_ref");
            None
        }
    }
}

/// The frame as a base64 JPEG for the envelope's `frame_data`.
fn jpeg(frame: &Frame, quality: u8) -> Option<FrameData> {
    use base64::Engine as _;
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
    let written = image::ImageEncoder::write_image(
        encoder,
        &frame.rgb,
        frame.width,
        frame.height,
        image::ExtendedColorType::Rgb8,
    );
    match written {
        Ok(()) => Some(FrameData {
            encoding: "jpeg",
            quality,
            base64: base64::engine::general_purpose::STANDARD.encode(&out),
        }),
        Err(error) => {
            tracing::warn!(%error, "cannot encode frame_data");
            None
        }
    }
}

fn event(name: &str, data: Value, at: DateTime<Utc>) -> IncomingEvent {
    IncomingEvent {
        name: name.to_string(),
        data: crate::json::to_raw(&data).into(),
        ts: Some(at),
        origin: Default::default(),
    }
}

fn track_json(source: &str, t: &TrackView) -> Value {
    let mut v = json!({
        "source": source,
        "track_id": t.track_id,
        "class_id": t.class_id,
        "class_name": &*t.class_name,
        "confidence": t.confidence,
        "bbox": t.bbox,
    });
    if let Some(l) = &t.landmarks {
        v["landmarks"] = json!(l);
    }
    v
}

fn ended_json(source: &str, e: &EndedTrack) -> Value {
    json!({
        "source": source,
        "track_id": e.track_id,
        "state": TrackState::Removed,
        "reason": e.reason,
        "class_name": &*e.class_name,
        "duration_s": e.duration_s,
        "bbox": e.bbox,
    })
}

impl Actor for TrackerActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        self.finish_tracks();
        // The thread was started for this actor alone.
        Arbiter::current().stop();
    }
}

/// The model's answer for a captured frame.
impl Handler<FrameDetected> for TrackerActor {
    type Result = ();

    fn handle(&mut self, msg: FrameDetected, _: &mut Self::Context) {
        let stats = &self.shared.stats;
        let metrics = &self.shared.metrics;
        match msg.result {
            Ok(result) => {
                stats.inference_us.store(
                    (result.timings.inference_ms * 1e3) as u64,
                    Ordering::Relaxed,
                );
                metrics.inference.record(result.timings.inference_ms / 1e3);
                self.process(TrackedFrame {
                    detections: &result.detections,
                    track_ids: None,
                    at: Utc::now(),
                    width: result.width,
                    height: result.height,
                    roi: result.roi_applied,
                    image: Some(&msg.frame),
                    picture: Some(Arc::new(FrameRef::Rgb(msg.frame.clone()))),
                });
            }
            Err(InferenceError::Superseded) => {
                stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
                metrics.dropped.increment(1);
            }
            Err(error) => {
                stats.frames_failed.fetch_add(1, Ordering::Relaxed);
                metrics.failed.increment(1);
                tracing::warn!(source = %self.id, %error, "frame not analysed");
            }
        }
    }
}

impl TrackerActor {
    /// One edge message: checked, recognised if delivered again, tracked.
    fn ingest(&mut self, envelope: &Value, warm: bool) -> Result<Ingested, String> {
        let message = parse_envelope(envelope)?;
        if let (true, Some(age)) = (message.timed, self.shared.oldest_timestamp) {
            check_age(message.at, age, Utc::now())?;
        }
        let count = message.detections.len();
        // At-least-once delivery gives some messages twice: the second changes nothing
        // (no line counted again). Only messages that say which frame, and when, can be
        // recognised.
        // A warm-up replay is not remembered: an entry replayed only to rebuild track
        // state may still be pending at another consumer, and must raise its events when
        // it is claimed from there.
        if let (Some(number), true) = (message.number, message.timed) {
            let at = message.at.timestamp_micros();
            let seen = if warm {
                self.recent.contains(number, at)
            } else {
                self.recent.seen_before(number, at)
            };
            if seen {
                return Ok(Ingested {
                    detections: count,
                    duplicate: true,
                });
            }
        }
        let (detections, at, width, height) = (
            &message.detections,
            message.at,
            message.width,
            message.height,
        );
        self.shared
            .stats
            .frames_captured
            .fetch_add(1, Ordering::Relaxed);
        self.shared.metrics.captured.increment(1);
        self.quiet = warm;
        self.process(TrackedFrame {
            detections,
            track_ids: Some(&message.track_ids),
            at,
            width,
            height,
            roi: Roi {
                x1: 0,
                y1: 0,
                x2: width,
                y2: height,
            },
            image: None,
            picture: edge_picture(envelope),
        });
        self.quiet = false;
        Ok(Ingested {
            detections: count,
            duplicate: false,
        })
    }
}

/// Refuses a timestamp more than `age` before `now`, as one too far ahead is.
fn check_age(
    at: DateTime<Utc>,
    age: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let oldest = chrono::Duration::from_std(age)
        .ok()
        .and_then(|age| now.checked_sub_signed(age));
    match oldest {
        Some(oldest) if at < oldest => Err(format!(
            "source.timestamp: {} is more than {} s before the server's clock ({}; server.edge_max_age_secs); check the device's clock",
            at.to_rfc3339(),
            age.as_secs(),
            now.to_rfc3339()
        )),
        _ => Ok(()),
    }
}

/// Replays recorded envelopes through a scratch tracker with `config`'s lines, zones and
/// thresholds: the events they raise, in order (nothing is published or counted). The
/// first unreadable envelope is the error.
pub fn replay(config: SourceConfig, envelopes: &[Value]) -> Result<Vec<IncomingEvent>, String> {
    Ok(replay_indexed(config, envelopes)?
        .into_iter()
        .map(|(_, e)| e)
        .collect())
}

/// [`replay`], each event with the index of the envelope that raised it (the tracks
/// still open at the end are ended on the last one). Driven by the envelopes' times
/// alone: the same envelopes and configuration give the same events every run.
pub fn replay_indexed(
    config: SourceConfig,
    envelopes: &[Value],
) -> Result<Vec<(usize, IncomingEvent)>, String> {
    let mut tracker = TrackerActor::scratch(config);
    let mut raised = Vec::new();
    for (i, envelope) in envelopes.iter().enumerate() {
        tracker
            .ingest(envelope, false)
            .map_err(|e| format!("envelopes[{i}]: {e}"))?;
        raised.extend(tracker.collected.drain(..).map(|e| (i, e)));
    }
    tracker.finish_tracks();
    let last = envelopes.len().saturating_sub(1);
    raised.extend(tracker.collected.drain(..).map(|e| (last, e)));
    Ok(raised)
}

impl TrackerActor {
    /// A tracker outside any actor system, collecting its events instead of sending them.
    fn scratch(config: SourceConfig) -> Self {
        let shared = SourceShared::detached(config.clone());
        TrackerActor {
            id: Arc::from(config.id.as_str()),
            tracker: ByteTracker::new(config.tracker.clone()),
            analytics: Analytics::new(config.analytics()),
            edge: config
                .edge_track_ids
                .then(|| EdgeTracks::new(config.tracker.clone())),
            config,
            shared,
            sink: None,
            collected: Vec::new(),
            frame_number: 0,
            last_detections_event: None,
            last_at: None,
            faces_seen: HashSet::new(),
            recent: Recent::new(RECENT_MESSAGES),
            quiet: false,
            centers: HashMap::new(),
        }
    }
}

impl Handler<IngestDetections> for TrackerActor {
    type Result = Vec<Result<Ingested, String>>;

    fn handle(&mut self, msg: IngestDetections, _: &mut Self::Context) -> Self::Result {
        msg.envelopes
            .iter()
            .map(|e| self.ingest(e, msg.warm))
            .collect()
    }
}

impl Handler<Reconfigure> for TrackerActor {
    type Result = ();

    fn handle(&mut self, msg: Reconfigure, _: &mut Self::Context) {
        self.tracker.set_config(msg.0.tracker.clone());
        if let Some(edge) = &mut self.edge {
            edge.set_config(msg.0.tracker.clone());
        }
        let at = self.last_at.unwrap_or_else(Utc::now);
        // Visits of zones that no longer exist end here, with their dwell time.
        let exits = self.analytics.set_config(msg.0.analytics(), seconds(at));
        let mut events = Vec::new();
        self.shared.count(&exits);
        push_analytics(&mut events, &self.id, &exits, &[], at);
        self.publish(events);
        let detection_stopped = self.config.detect && !msg.0.detect;
        self.config = msg.0;
        if detection_stopped {
            // Nothing more will be seen: open tracks end now, not by timing out.
            self.finish_tracks();
        }
    }
}

impl Handler<FinishTracks> for TrackerActor {
    type Result = ();

    fn handle(&mut self, _: FinishTracks, _: &mut Self::Context) {
        self.finish_tracks();
    }
}

impl Handler<ListTracks> for TrackerActor {
    type Result = MessageResult<ListTracks>;

    fn handle(&mut self, _: ListTracks, _: &mut Self::Context) -> Self::Result {
        MessageResult((self.frame_number, self.tracker.snapshot()))
    }
}

impl Handler<StopTracker> for TrackerActor {
    type Result = ();

    fn handle(&mut self, _: StopTracker, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Reads detections from a seed-004 envelope (what edge devices send).
/// An edge device's message, read.
#[derive(Debug)]
pub struct EdgeMessage {
    /// Its detections.
    pub detections: Vec<Detection>,
    /// The device's `track_id` of each detection, if it gave one.
    pub track_ids: Vec<Option<u64>>,
    /// `source.timestamp` (arrival time when absent).
    pub at: DateTime<Utc>,
    /// Whether `source.timestamp` was given.
    pub timed: bool,
    /// `frame.number`, if given.
    pub number: Option<u64>,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
}

/// Reads the seed-004 envelope an edge device sends; the first problem is the error.
pub fn parse_envelope(v: &Value) -> Result<EdgeMessage, String> {
    let Value::Object(map) = v else {
        return Err("the body must be a JSON object in the detection envelope".into());
    };
    if let Some(version) = map.get("version") {
        if version.as_u64() != Some(u64::from(VERSION)) {
            return Err(format!(
                "version: only {VERSION} is understood, got {version}"
            ));
        }
    }
    let frame = map
        .get("frame")
        .ok_or("frame: missing (needs width and height)")?;
    let dim = |k: &str| {
        frame[k]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v > 0 && *v <= 65_535)
            .ok_or_else(|| format!("frame.{k}: must be a positive integer up to 65535"))
    };
    let (width, height) = (dim("width")?, dim("height")?);
    let timed = map
        .get("source")
        .and_then(|s| s.get("timestamp"))
        .is_some_and(|t| !t.is_null());
    let at = match map.get("source").and_then(|s| s.get("timestamp")) {
        None | Some(Value::Null) => Utc::now(),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| format!("source.timestamp: {s:?} is not RFC 3339: {e}"))?
            .with_timezone(&Utc),
        Some(other) => return Err(format!("source.timestamp: must be a string, got {other}")),
    };
    // Later frames are held at the latest time seen, so one timestamp far in the future
    // would freeze the source's clock: refuse it.
    let now = Utc::now();
    if at > now + chrono::Duration::seconds(MAX_CLOCK_AHEAD_SECS) {
        return Err(format!(
            "source.timestamp: {} is more than {MAX_CLOCK_AHEAD_SECS} s ahead of the server's \
             clock ({}); check the device's clock",
            at.to_rfc3339(),
            now.to_rfc3339()
        ));
    }
    let list = map
        .get("detections")
        .and_then(Value::as_array)
        .ok_or("detections: must be an array")?;
    if list.len() > MAX_EDGE_DETECTIONS {
        return Err(format!(
            "detections: {} in one message; at most {MAX_EDGE_DETECTIONS}",
            list.len()
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    let mut track_ids = Vec::with_capacity(list.len());
    for (i, d) in list.iter().enumerate() {
        track_ids.push(match &d["track_id"] {
            Value::Null => None,
            t => Some(t.as_u64().ok_or_else(|| {
                format!("detections[{i}].track_id: must be a whole number, got {t}")
            })?),
        });
        let num = |k: &str| -> Result<f32, String> {
            d["bbox"][k]
                .as_f64()
                .map(|v| v as f32)
                // Checked after the narrowing: 1e300 is a finite f64 but an infinite f32.
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("detections[{i}].bbox.{k}: must be a number"))
        };
        let bbox = BBox {
            x1: num("x1")?,
            y1: num("y1")?,
            x2: num("x2")?,
            y2: num("y2")?,
        };
        if bbox.x2 <= bbox.x1 || bbox.y2 <= bbox.y1 {
            return Err(format!(
                "detections[{i}].bbox: x2 must exceed x1 and y2 must exceed y1"
            ));
        }
        let confidence = d["confidence"]
            .as_f64()
            .filter(|c| (0.0..=1.0).contains(c))
            .ok_or_else(|| format!("detections[{i}].confidence: must be between 0 and 1"))?
            as f32;
        let class_id = match &d["class_id"] {
            Value::Null => 0,
            c => c
                .as_u64()
                .and_then(|c| u32::try_from(c).ok())
                .ok_or_else(|| {
                    format!(
                        "detections[{i}].class_id: must be an integer from 0 to {}",
                        u32::MAX
                    )
                })?,
        };
        let class_name = match &d["class_name"] {
            Value::Null => format!("class_{class_id}"),
            Value::String(name) if name.is_empty() => format!("class_{class_id}"),
            Value::String(name) if is_edge_text(name) => name.clone(),
            other => {
                return Err(format!(
                    "detections[{i}].class_name: a name of 1 to {MAX_EDGE_TEXT} characters without control characters, got {}",
                    clip_for_error(other)
                ))
            }
        };
        out.push(Detection {
            class_id,
            class_name: Arc::from(class_name),
            confidence,
            bbox,
            landmarks: None,
        });
    }
    let number = match &frame["number"] {
        Value::Null => None,
        n => Some(
            n.as_u64()
                .ok_or_else(|| format!("frame.number: must be a whole number, got {n}"))?,
        ),
    };
    Ok(EdgeMessage {
        detections: out,
        track_ids,
        at,
        timed,
        number,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(detections: Vec<Value>) -> Value {
        json!({"version": 1, "frame": {"width": 640, "height": 480}, "detections": detections})
    }

    #[test]
    fn a_warm_up_replay_is_not_remembered_as_delivered() {
        let config: SourceConfig = serde_json::from_value(json!({"id": "cam", "kind": "external"}))
            .expect("a minimal external source");
        let mut tracker = TrackerActor::scratch(config);
        let mut m = message(Vec::new());
        m["frame"]["number"] = json!(7);
        m["source"] = json!({"timestamp": Utc::now().to_rfc3339()});
        let duplicate = |r: Result<Ingested, String>| r.map(|i| i.duplicate);
        assert_eq!(duplicate(tracker.ingest(&m, true)), Ok(false), "warm-up");
        assert_eq!(
            duplicate(tracker.ingest(&m, false)),
            Ok(false),
            "claimed later from another consumer: taken"
        );
        assert_eq!(
            duplicate(tracker.ingest(&m, false)),
            Ok(true),
            "redelivered"
        );
        assert_eq!(
            duplicate(tracker.ingest(&m, true)),
            Ok(true),
            "a warm-up never feeds a taken message twice"
        );
    }

    #[test]
    fn edge_messages_are_bounded_and_checked() {
        let one = json!({"bbox": {"x1": 1, "y1": 1, "x2": 10, "y2": 10}, "confidence": 0.9});
        let ok = parse_envelope(&message(vec![one.clone(); MAX_EDGE_DETECTIONS]));
        assert_eq!(ok.map(|m| m.detections.len()), Ok(MAX_EDGE_DETECTIONS));
        let too_many = parse_envelope(&message(vec![one; MAX_EDGE_DETECTIONS + 1]));
        assert!(too_many.unwrap_err().contains("at most 1000"));
        let huge = json!({"bbox": {"x1": 1, "y1": 1, "x2": 1e300, "y2": 10}, "confidence": 0.9});
        let err = parse_envelope(&message(vec![huge])).unwrap_err();
        assert_eq!(err, "detections[0].bbox.x2: must be a number");
        let wide = json!({"bbox": {"x1": 1, "y1": 1, "x2": 9, "y2": 9}, "confidence": 0.9, "class_id": 1u64 << 40});
        let err = parse_envelope(&message(vec![wide])).unwrap_err();
        assert!(
            err.starts_with("detections[0].class_id: must be an integer"),
            "{err}"
        );
    }

    #[test]
    fn a_timestamp_far_ahead_of_the_server_is_refused_a_slightly_early_one_is_not() {
        let at = |offset_s: i64| {
            let mut m = message(Vec::new());
            m["source"] = json!({"timestamp": (Utc::now() + chrono::Duration::seconds(offset_s)).to_rfc3339()});
            parse_envelope(&m)
        };
        assert!(at(60).is_ok(), "a minute of skew is tolerated");
        assert!(at(-86_400).is_ok(), "late frames are fine");
        let err = at(3600).unwrap_err();
        assert!(err.starts_with("source.timestamp: "), "{err}");
        assert!(err.contains("ahead of the server's clock"), "{err}");
    }

    #[test]
    fn a_timestamp_older_than_the_window_is_refused() {
        let now = Utc::now();
        let week = std::time::Duration::from_secs(7 * 86_400);
        let epoch = DateTime::<Utc>::from_timestamp(0, 0).expect("1970");
        let err = check_age(epoch, week, now).unwrap_err();
        assert!(err.contains("server.edge_max_age_secs"), "{err}");
        assert!(check_age(now - chrono::Duration::days(8), week, now).is_err());
        assert!(check_age(now - chrono::Duration::days(6), week, now).is_ok());
        assert!(check_age(now, week, now).is_ok());
        // A window longer than time itself takes everything.
        assert!(check_age(epoch, std::time::Duration::from_secs(u64::MAX), now).is_ok());
    }
}
