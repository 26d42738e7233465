//! The `SourceActor`: one per source. Frames from its capture thread go to the model's
//! `InferenceActor` (latest frame wins there); results, or detections posted by an edge
//! device, go through the tracker and the lines and zones; the events go to the session
//! registry, which hands them to every session listening to this source.
//!
//! A capture that fails is restarted with exponential backoff (counted); a file that ends
//! ends its tracks. Counters are atomics in [`SourceStats`], read without messaging.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use serde::Serialize;
use serde_json::{json, Value};

use super::capture::{self, CaptureControl, CaptureEnded, FrameCaptured};
use super::{SourceConfig, SourceKind};
use crate::inference::envelope::{
    DetectionMessage, EnvelopeDetection, FrameData, FrameInfo, SourceInfo, VERSION,
};
use crate::inference::{BBox, DetectFrame, Detection, Frame, FrameDetected, InferenceActor, Roi};
use crate::messages::{IncomingEvent, PublishSourceEvents};
use crate::telemetry;
use crate::tracker::analytics::Analytics;
use crate::tracker::{ByteTracker, EndedTrack, TrackView};

/// First wait before restarting a failed capture.
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Longest wait between restarts.
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often frame rates are computed.
const RATE_WINDOW: Duration = Duration::from_secs(2);

/// Where a source stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceState {
    /// Capturing (or, for `external`, accepting detections).
    Running,
    /// The capture failed; a restart is scheduled.
    Restarting,
    /// A file or folder reached its end.
    Finished,
    /// Removed.
    Stopped,
}

/// Counters of one source.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Frames from the capture.
    pub frames_captured: AtomicU64,
    /// Frames (or detection messages) tracked.
    pub frames_processed: AtomicU64,
    /// Frames that failed in the model.
    pub frames_failed: AtomicU64,
    /// Events handed to the sessions.
    pub events: AtomicU64,
    /// Capture restarts.
    pub restarts: AtomicU64,
    /// Confirmed tracks now.
    pub active_tracks: AtomicU64,
    /// Latest inference time, microseconds.
    pub inference_us: AtomicU64,
    /// Latest tracking + analytics time, microseconds.
    pub tracking_us: AtomicU64,
    /// Captured frames per second x 1000, over the last window.
    pub captured_fps_milli: AtomicU64,
    /// Processed frames per second x 1000, over the last window.
    pub processed_fps_milli: AtomicU64,
}

/// What `GET /api/v1/sources/{id}` shows besides the configuration.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    /// State.
    pub state: SourceState,
    /// Latest capture error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Running ffmpeg process id, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_pid: Option<u32>,
}

/// Pre-registered metric handles of one source.
struct SourceMetrics {
    captured: metrics::Counter,
    processed: metrics::Counter,
    failed: metrics::Counter,
    events: metrics::Counter,
    restarts: metrics::Counter,
    active_tracks: metrics::Gauge,
    tracking: metrics::Histogram,
}

impl SourceMetrics {
    fn new(source: &str) -> Self {
        let frames = |outcome: &'static str| metrics::counter!(telemetry::SOURCE_FRAMES, "source" => source.to_string(), "outcome" => outcome);
        let labels = [("source", source.to_string())];
        Self {
            captured: frames("captured"),
            processed: frames("processed"),
            failed: frames("failed"),
            events: metrics::counter!(telemetry::SOURCE_EVENTS, &labels),
            restarts: metrics::counter!(telemetry::SOURCE_RESTARTS, &labels),
            active_tracks: metrics::gauge!(telemetry::SOURCE_ACTIVE_TRACKS, &labels),
            tracking: metrics::histogram!(telemetry::SOURCE_TRACKING, &labels),
        }
    }
}

/// Shared between the actor and readers.
pub struct SourceShared {
    /// Counters.
    pub stats: SourceStats,
    /// State and last error.
    pub status: RwLock<SourceStatus>,
    /// The configuration in force (updated by PATCH).
    pub config: RwLock<SourceConfig>,
    capture: RwLock<Option<CaptureControl>>,
    metrics: SourceMetrics,
}

impl SourceShared {
    /// Counters as JSON, for the REST status.
    pub fn stats_json(&self) -> Value {
        let s = &self.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let captured = get(&s.frames_captured);
        let processed = get(&s.frames_processed);
        json!({
            "frames_captured": captured,
            "frames_processed": processed,
            "frames_failed": get(&s.frames_failed),
            // Captured frames the model never ran: replaced by a newer one while it was busy.
            "frames_dropped": captured.saturating_sub(processed + get(&s.frames_failed)),
            "events": get(&s.events),
            "restarts": get(&s.restarts),
            "active_tracks": get(&s.active_tracks),
            "inference_ms": get(&s.inference_us) as f64 / 1e3,
            "tracking_ms": get(&s.tracking_us) as f64 / 1e3,
            "captured_fps": get(&s.captured_fps_milli) as f64 / 1e3,
            "processed_fps": get(&s.processed_fps_milli) as f64 / 1e3,
        })
    }
}

/// REST → source: detections from an edge device, in the seed-004 envelope.
#[derive(Message)]
#[rtype(result = "Result<usize, String>")]
pub struct IngestDetections(pub Value);

/// Hub → source: stop capturing, end open tracks, stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopSource;

impl Handler<StopSource> for SourceActor {
    type Result = ();

    fn handle(&mut self, _: StopSource, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// REST → source: replace lines, zones, tracker thresholds or classes while it runs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure(pub SourceConfig);

/// One source's actor.
pub struct SourceActor {
    id: Arc<str>,
    shared: Arc<SourceShared>,
    model: Option<Addr<InferenceActor>>,
    sink: Recipient<PublishSourceEvents>,
    tracker: ByteTracker,
    analytics: Analytics,
    frame_number: u64,
    last_detections_event: Option<Instant>,
    backoff: Duration,
    faces_seen: HashSet<u64>,
    window: (Instant, u64, u64),
}

impl SourceActor {
    /// A source publishing to `sink`, running frames through `model` (camera kinds).
    pub fn new(
        config: SourceConfig,
        model: Option<Addr<InferenceActor>>,
        sink: Recipient<PublishSourceEvents>,
    ) -> (Self, Arc<SourceShared>) {
        let shared = Arc::new(SourceShared {
            stats: SourceStats::default(),
            status: RwLock::new(SourceStatus {
                state: SourceState::Running,
                last_error: None,
                capture_pid: None,
            }),
            config: RwLock::new(config.clone()),
            capture: RwLock::new(None),
            metrics: SourceMetrics::new(&config.id),
        });
        let actor = Self {
            id: Arc::from(config.id.as_str()),
            tracker: ByteTracker::new(config.tracker.clone()),
            analytics: Analytics::new(config.analytics()),
            shared: shared.clone(),
            model,
            sink,
            frame_number: 0,
            last_detections_event: None,
            backoff: RESTART_BACKOFF_MIN,
            faces_seen: HashSet::new(),
            window: (Instant::now(), 0, 0),
        };
        (actor, shared)
    }

    fn start_capture(&mut self, ctx: &mut Context<Self>) {
        let config = self.shared.config.read().clone();
        if config.kind == SourceKind::External {
            return;
        }
        let control = capture::start(
            &config,
            ctx.address().recipient(),
            ctx.address().recipient(),
        );
        *self.shared.capture.write() = Some(control);
        self.shared.status.write().state = SourceState::Running;
    }

    /// Tracks one frame's detections and publishes what happened.
    fn process(
        &mut self,
        detections: &[Detection],
        at: DateTime<Utc>,
        width: u32,
        height: u32,
        roi: Roi,
        frame: Option<&Frame>,
    ) {
        let started = Instant::now();
        let now = (at.timestamp_micros() as f64) / 1e6;
        let kept: Vec<Detection>;
        let detections = {
            let config = self.shared.config.read();
            if config.classes.is_empty() && config.confidence.is_none() {
                detections
            } else {
                let min = config.confidence.unwrap_or(0.0);
                kept = detections
                    .iter()
                    .filter(|d| d.confidence >= min)
                    .filter(|d| {
                        config.classes.is_empty()
                            || config.classes.iter().any(|c| {
                                *c == *d.class_name || c.parse::<u32>().ok() == Some(d.class_id)
                            })
                    })
                    .cloned()
                    .collect();
                &kept
            }
        };
        let update = self.tracker.update(detections, now);
        let analytics = self
            .analytics
            .update(&update.tracks, &update.ended, now, width, height);
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
        for a in &analytics {
            let mut data = serde_json::to_value(a).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut data {
                map.remove("event");
                map.insert("source".into(), json!(source));
            }
            events.push(event(a.name(), data, at));
        }
        for end in &update.ended {
            self.faces_seen.remove(&end.track_id);
            events.push(event("track_ended", ended_json(&source, end), at));
        }
        let config = self.shared.config.read().clone();
        let due = config.detections_events
            && self
                .last_detections_event
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(config.detections_every_ms));
        if due {
            self.last_detections_event = Some(Instant::now());
            let message = DetectionMessage {
                version: VERSION,
                source: SourceInfo::new(
                    config.device_id.as_deref().unwrap_or(&source),
                    &source,
                    at,
                ),
                frame: FrameInfo {
                    number,
                    width,
                    height,
                    roi_applied: roi,
                    time_ms: None,
                    file: None,
                },
                model: config.model.clone().unwrap_or_default(),
                detections: update
                    .tracks
                    .iter()
                    .map(|t| EnvelopeDetection {
                        track_id: Some(t.track_id),
                        class_id: t.class_id,
                        class_name: t.class_name.to_string(),
                        confidence: t.confidence,
                        bbox: t.bbox,
                        center: t.bbox.center(),
                        landmarks: t.landmarks.clone(),
                    })
                    .collect(),
                frame_data: match frame {
                    Some(f) if config.frame_data => jpeg(f, config.frame_quality),
                    _ => None,
                },
            };
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
        s.active_tracks
            .store(self.tracker.active() as u64, Ordering::Relaxed);
        m.active_tracks.set(self.tracker.active() as f64);
        s.tracking_us
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        m.tracking.record(started.elapsed().as_secs_f64());
        self.publish(events);
    }

    fn publish(&self, events: Vec<IncomingEvent>) {
        if events.is_empty() {
            return;
        }
        self.shared
            .stats
            .events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        self.shared.metrics.events.increment(events.len() as u64);
        self.sink.do_send(PublishSourceEvents {
            source: self.id.clone(),
            events,
        });
    }

    fn finish_tracks(&mut self) {
        let ended = self.tracker.finish();
        let now = Utc::now();
        let t = (now.timestamp_micros() as f64) / 1e6;
        let mut events = Vec::new();
        let source = self.id.to_string();
        for a in self.analytics.update(&[], &ended, t, 1, 1) {
            let mut data = serde_json::to_value(&a).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut data {
                map.remove("event");
                map.insert("source".into(), json!(source));
            }
            events.push(event(a.name(), data, now));
        }
        for end in &ended {
            events.push(event("track_ended", ended_json(&source, end), now));
        }
        self.faces_seen.clear();
        self.shared.stats.active_tracks.store(0, Ordering::Relaxed);
        self.shared.metrics.active_tracks.set(0.0);
        self.publish(events);
    }

    fn update_rates(&mut self) {
        let s = &self.shared.stats;
        let (since, captured0, processed0) = self.window;
        let elapsed = since.elapsed();
        if elapsed < RATE_WINDOW {
            return;
        }
        let captured = s.frames_captured.load(Ordering::Relaxed);
        let processed = s.frames_processed.load(Ordering::Relaxed);
        let per_s = |n: u64| (n as f64 / elapsed.as_secs_f64() * 1000.0) as u64;
        s.captured_fps_milli
            .store(per_s(captured - captured0), Ordering::Relaxed);
        s.processed_fps_milli
            .store(per_s(processed - processed0), Ordering::Relaxed);
        self.window = (Instant::now(), captured, processed);
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
        data,
        ts: Some(at),
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
        "class_name": &*e.class_name,
        "duration_s": e.duration_s,
        "bbox": e.bbox,
    })
}

impl Actor for SourceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.start_capture(ctx);
        ctx.run_interval(RATE_WINDOW, |actor, _| actor.update_rates());
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(control) = self.shared.capture.write().take() {
            control.stop();
        }
        self.finish_tracks();
        let mut status = self.shared.status.write();
        status.state = SourceState::Stopped;
        status.capture_pid = None;
    }
}

impl Handler<FrameCaptured> for SourceActor {
    type Result = ();

    fn handle(&mut self, msg: FrameCaptured, ctx: &mut Self::Context) {
        self.shared
            .stats
            .frames_captured
            .fetch_add(1, Ordering::Relaxed);
        self.shared.metrics.captured.increment(1);
        if let Some(control) = self.shared.capture.read().as_ref() {
            let pid = control.pid();
            self.shared.status.write().capture_pid = (pid != 0).then_some(pid);
        }
        self.backoff = RESTART_BACKOFF_MIN;
        if let Some(model) = &self.model {
            model.do_send(DetectFrame {
                source: self.id.clone(),
                number: self.frame_number,
                frame: msg.0,
                reply_to: ctx.address().recipient(),
            });
        }
    }
}

impl Handler<FrameDetected> for SourceActor {
    type Result = ();

    fn handle(&mut self, msg: FrameDetected, _: &mut Self::Context) {
        match msg.result {
            Ok(result) => {
                self.shared.stats.inference_us.store(
                    (result.timings.inference_ms * 1e3) as u64,
                    Ordering::Relaxed,
                );
                self.process(
                    &result.detections,
                    Utc::now(),
                    result.width,
                    result.height,
                    result.roi_applied,
                    Some(&msg.frame),
                );
            }
            Err(error) => {
                self.shared
                    .stats
                    .frames_failed
                    .fetch_add(1, Ordering::Relaxed);
                self.shared.metrics.failed.increment(1);
                tracing::warn!(source = %self.id, %error, "frame not analysed");
            }
        }
    }
}

impl Handler<CaptureEnded> for SourceActor {
    type Result = ();

    fn handle(&mut self, msg: CaptureEnded, ctx: &mut Self::Context) {
        let kind = self.shared.config.read().kind;
        let finished = msg.error.is_none() && matches!(kind, SourceKind::File | SourceKind::Folder);
        {
            let mut status = self.shared.status.write();
            status.capture_pid = None;
            if let Some(e) = &msg.error {
                status.last_error = Some(e.clone());
            }
        }
        if finished {
            tracing::info!(source = %self.id, "source finished");
            self.shared.status.write().state = SourceState::Finished;
            self.finish_tracks();
            return;
        }
        let why = msg.error.unwrap_or_else(|| "the stream ended".into());
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(RESTART_BACKOFF_MAX);
        tracing::warn!(source = %self.id, error = %why, retry_in_ms = wait.as_millis() as u64, "capture stopped; restarting");
        self.shared.status.write().state = SourceState::Restarting;
        ctx.run_later(wait, |actor, ctx| {
            if actor.shared.status.read().state != SourceState::Restarting {
                return;
            }
            actor.shared.stats.restarts.fetch_add(1, Ordering::Relaxed);
            actor.shared.metrics.restarts.increment(1);
            actor.start_capture(ctx);
        });
    }
}

impl Handler<IngestDetections> for SourceActor {
    type Result = Result<usize, String>;

    fn handle(&mut self, msg: IngestDetections, _: &mut Self::Context) -> Self::Result {
        let (detections, at, width, height) = parse_envelope(&msg.0)?;
        let count = detections.len();
        let roi = Roi {
            x1: 0,
            y1: 0,
            x2: width,
            y2: height,
        };
        self.shared
            .stats
            .frames_captured
            .fetch_add(1, Ordering::Relaxed);
        self.shared.metrics.captured.increment(1);
        self.process(&detections, at, width, height, roi, None);
        Ok(count)
    }
}

impl Handler<Reconfigure> for SourceActor {
    type Result = ();

    fn handle(&mut self, msg: Reconfigure, _: &mut Self::Context) {
        self.tracker.set_config(msg.0.tracker.clone());
        self.analytics.set_config(msg.0.analytics());
        *self.shared.config.write() = msg.0;
    }
}

/// Reads detections from a seed-004 envelope (what edge devices send).
pub fn parse_envelope(v: &Value) -> Result<(Vec<Detection>, DateTime<Utc>, u32, u32), String> {
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
            .ok_or_else(|| format!("frame.{k}: must be a positive integer"))
    };
    let (width, height) = (dim("width")?, dim("height")?);
    let at = match map.get("source").and_then(|s| s.get("timestamp")) {
        None | Some(Value::Null) => Utc::now(),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| format!("source.timestamp: {s:?} is not RFC 3339: {e}"))?
            .with_timezone(&Utc),
        Some(other) => return Err(format!("source.timestamp: must be a string, got {other}")),
    };
    let list = map
        .get("detections")
        .and_then(Value::as_array)
        .ok_or("detections: must be an array")?;
    let mut out = Vec::with_capacity(list.len());
    for (i, d) in list.iter().enumerate() {
        let num = |k: &str| -> Result<f32, String> {
            d["bbox"][k]
                .as_f64()
                .filter(|v| v.is_finite())
                .map(|v| v as f32)
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
        let class_id = d["class_id"].as_u64().unwrap_or(0) as u32;
        let class_name = d["class_name"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("class_{class_id}"));
        out.push(Detection {
            class_id,
            class_name: Arc::from(class_name),
            confidence,
            bbox,
            landmarks: None,
        });
    }
    Ok((out, at, width, height))
}
