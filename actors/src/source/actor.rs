//! The `CameraActor`: one per source. It runs the source's capture thread and hands each
//! frame to the model's `InferenceActor` (latest frame wins there), which answers the
//! source's [`TrackerActor`] directly. A capture that fails is restarted with exponential
//! backoff (counted); a file that ends ends its tracks.
//!
//! What both actors of a source share, and what the REST API reads without messaging,
//! lives in [`SourceShared`]: counters as atomics, state, configuration in force.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use parking_lot::RwLock;
use serde::Serialize;
use serde_json::{json, Value};

use super::capture::{self, CaptureControl, CaptureEnded, FrameCaptured};
use super::{SourceConfig, SourceKind};
use crate::egress::EgressPolicy;
use crate::inference::{DetectFrame, InferenceActor};
use crate::telemetry;
use crate::tracker::actor::{FinishTracks, TrackerActor};

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
    /// The capture is opening; `running` from its first frame.
    Starting,
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
    /// Frames replaced by a newer one before the model ran them.
    pub frames_dropped: AtomicU64,
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
pub struct SourceMetrics {
    /// Frames captured.
    pub captured: metrics::Counter,
    /// Frames tracked.
    pub processed: metrics::Counter,
    /// Frames that failed in the model.
    pub failed: metrics::Counter,
    /// Frames replaced before the model ran them.
    pub dropped: metrics::Counter,
    /// Events handed to the sessions.
    pub events: metrics::Counter,
    /// Capture restarts.
    pub restarts: metrics::Counter,
    /// Confirmed tracks.
    pub active_tracks: metrics::Gauge,
    /// Tracking and analytics time per frame.
    pub tracking: metrics::Histogram,
    /// Model time per frame.
    pub inference: metrics::Histogram,
    /// Captured frames per second.
    pub captured_fps: metrics::Gauge,
    /// Processed frames per second.
    pub processed_fps: metrics::Gauge,
}

impl SourceMetrics {
    /// Handles that record nothing (a scratch tracker replaying for `rules/test`).
    fn noop() -> Self {
        Self {
            captured: metrics::Counter::noop(),
            processed: metrics::Counter::noop(),
            failed: metrics::Counter::noop(),
            dropped: metrics::Counter::noop(),
            events: metrics::Counter::noop(),
            restarts: metrics::Counter::noop(),
            active_tracks: metrics::Gauge::noop(),
            tracking: metrics::Histogram::noop(),
            inference: metrics::Histogram::noop(),
            captured_fps: metrics::Gauge::noop(),
            processed_fps: metrics::Gauge::noop(),
        }
    }

    fn new(source: &str) -> Self {
        let frames = |outcome: &'static str| metrics::counter!(telemetry::SOURCE_FRAMES, "source" => source.to_string(), "outcome" => outcome);
        let labels = [("source", source.to_string())];
        Self {
            captured: frames("captured"),
            processed: frames("processed"),
            failed: frames("failed"),
            dropped: frames("dropped"),
            events: metrics::counter!(telemetry::SOURCE_EVENTS, &labels),
            restarts: metrics::counter!(telemetry::SOURCE_RESTARTS, &labels),
            active_tracks: metrics::gauge!(telemetry::SOURCE_ACTIVE_TRACKS, &labels),
            tracking: metrics::histogram!(telemetry::SOURCE_TRACKING, &labels),
            inference: metrics::histogram!(telemetry::SOURCE_INFERENCE, &labels),
            captured_fps: metrics::gauge!(telemetry::SOURCE_FPS, "source" => source.to_string(), "stage" => "captured"),
            processed_fps: metrics::gauge!(telemetry::SOURCE_FPS, "source" => source.to_string(), "stage" => "processed"),
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
    /// Metric handles.
    pub metrics: SourceMetrics,
    /// Where a stream source may connect.
    pub egress: Arc<EgressPolicy>,
    /// The latest analysed frame (a camera's, or an edge envelope's picture), for the
    /// snapshot route; encoded only when someone asks.
    pub latest: RwLock<Option<Arc<crate::messages::FrameRef>>>,
    /// Crossings per line and visits per zone since the source started.
    counts: parking_lot::Mutex<Counts>,
    /// Edge messages stamped longer ago than this are refused: a device whose clock was
    /// reset (1970) would otherwise put its frames decades back.
    pub oldest_timestamp: Option<std::time::Duration>,
}

/// Per line: crossings `in` and `out`; per zone: entries and exits.
#[derive(Debug, Default)]
struct Counts {
    lines: std::collections::BTreeMap<String, [u64; 2]>,
    zones: std::collections::BTreeMap<String, [u64; 2]>,
}

impl SourceShared {
    /// Counts line crossings and zone visits.
    pub fn count(&self, events: &[crate::tracker::analytics::AnalyticsEvent]) {
        use crate::tracker::analytics::{AnalyticsEvent, Direction};
        if events.is_empty() {
            return;
        }
        let mut counts = self.counts.lock();
        for e in events {
            match e {
                AnalyticsEvent::LineCross {
                    line_id, direction, ..
                } => {
                    let c = counts.lines.entry(line_id.clone()).or_default();
                    c[usize::from(*direction == Direction::Out)] += 1;
                }
                AnalyticsEvent::ZoneEnter { zone_id, .. } => {
                    counts.zones.entry(zone_id.clone()).or_default()[0] += 1;
                }
                AnalyticsEvent::ZoneExit { zone_id, .. } => {
                    counts.zones.entry(zone_id.clone()).or_default()[1] += 1;
                }
                AnalyticsEvent::Loitering { .. } => {}
            }
        }
    }

    /// Per line `in`/`out` and per zone `enter`/`exit`/`inside`, for the lines and zones
    /// configured now.
    pub fn counts_json(&self) -> Value {
        let config = self.config.read();
        let counts = self.counts.lock();
        let lines: serde_json::Map<String, Value> = config
            .lines
            .iter()
            .map(|l| {
                let c = counts.lines.get(&l.id).copied().unwrap_or_default();
                (l.id.clone(), json!({"in": c[0], "out": c[1]}))
            })
            .collect();
        let zones: serde_json::Map<String, Value> = config
            .zones
            .iter()
            .map(|z| {
                let c = counts.zones.get(&z.id).copied().unwrap_or_default();
                (
                    z.id.clone(),
                    json!({"enter": c[0], "exit": c[1], "inside": c[0].saturating_sub(c[1])}),
                )
            })
            .collect();
        json!({"lines": lines, "zones": zones})
    }

    /// Counters as JSON, for the REST status.
    pub fn stats_json(&self) -> Value {
        let s = &self.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "frames_captured": get(&s.frames_captured),
            "frames_processed": get(&s.frames_processed),
            "frames_failed": get(&s.frames_failed),
            // Captured frames the model never ran: replaced by a newer one while it was busy.
            "frames_dropped": get(&s.frames_dropped),
            "events": get(&s.events),
            "restarts": get(&s.restarts),
            "active_tracks": get(&s.active_tracks),
            "inference_ms": get(&s.inference_us) as f64 / 1e3,
            "tracking_ms": get(&s.tracking_us) as f64 / 1e3,
            "captured_fps": get(&s.captured_fps_milli) as f64 / 1e3,
            "processed_fps": get(&s.processed_fps_milli) as f64 / 1e3,
            "counts": self.counts_json(),
        })
    }
}

/// Hub → camera: stop capturing, end open tracks, stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopSource;

impl Handler<StopSource> for CameraActor {
    type Result = ();

    fn handle(&mut self, _: StopSource, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// One source's capture.
pub struct CameraActor {
    id: Arc<str>,
    shared: Arc<SourceShared>,
    model: Option<Addr<InferenceActor>>,
    tracker: Addr<TrackerActor>,
    frame_number: u64,
    backoff: Duration,
    /// Start of the frame-rate window, with the captured and processed counts then.
    window: (Instant, u64, u64),
}

impl SourceShared {
    /// State for a new source running `config`, connecting where `egress` allows.
    /// State of a running source; its edge messages may not be stamped more than
    /// `oldest_timestamp` ago.
    pub fn new(
        config: SourceConfig,
        egress: Arc<EgressPolicy>,
        oldest_timestamp: Option<std::time::Duration>,
    ) -> Arc<Self> {
        Self::with_metrics(config, egress, true, oldest_timestamp)
    }

    /// State for a scratch tracker: counted nowhere, any time taken (a recording's times
    /// are as old as it is).
    pub fn detached(config: SourceConfig) -> Arc<Self> {
        Self::with_metrics(config, Arc::new(EgressPolicy::open()), false, None)
    }

    fn with_metrics(
        config: SourceConfig,
        egress: Arc<EgressPolicy>,
        counted: bool,
        oldest_timestamp: Option<std::time::Duration>,
    ) -> Arc<Self> {
        Arc::new(SourceShared {
            oldest_timestamp,
            egress,
            stats: SourceStats::default(),
            status: RwLock::new(SourceStatus {
                // An external source has nothing to open: it takes detections at once.
                state: if config.kind == SourceKind::External {
                    SourceState::Running
                } else {
                    SourceState::Starting
                },
                last_error: None,
                capture_pid: None,
            }),
            metrics: if counted {
                SourceMetrics::new(&config.id)
            } else {
                SourceMetrics::noop()
            },
            config: RwLock::new(config),
            capture: RwLock::new(None),
            latest: RwLock::new(None),
            counts: parking_lot::Mutex::new(Counts::default()),
        })
    }
}

impl CameraActor {
    /// The capture of the source whose state is `shared`, running frames through `model`
    /// (camera kinds) whose answers go to `tracker`.
    pub fn new(
        shared: Arc<SourceShared>,
        model: Option<Addr<InferenceActor>>,
        tracker: Addr<TrackerActor>,
    ) -> Self {
        let id = Arc::from(shared.config.read().id.as_str());
        Self {
            id,
            shared,
            model,
            tracker,
            frame_number: 0,
            backoff: RESTART_BACKOFF_MIN,
            window: (Instant::now(), 0, 0),
        }
    }

    fn start_capture(&mut self, ctx: &mut Context<Self>) {
        let config = self.shared.config.read().clone();
        if config.kind == SourceKind::External {
            self.shared.status.write().state = SourceState::Running;
            return;
        }
        self.shared.status.write().state = SourceState::Starting;
        let control = capture::start(
            &config,
            ctx.address().recipient(),
            ctx.address().recipient(),
            self.shared.egress.clone(),
        );
        *self.shared.capture.write() = Some(control);
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
        let per_s = |n: u64| n as f64 / elapsed.as_secs_f64();
        let (c, p) = (
            per_s(captured.saturating_sub(captured0)),
            per_s(processed.saturating_sub(processed0)),
        );
        s.captured_fps_milli
            .store((c * 1000.0) as u64, Ordering::Relaxed);
        s.processed_fps_milli
            .store((p * 1000.0) as u64, Ordering::Relaxed);
        self.shared.metrics.captured_fps.set(c);
        self.shared.metrics.processed_fps.set(p);
        self.window = (Instant::now(), captured, processed);
    }
}

impl Actor for CameraActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.start_capture(ctx);
        ctx.run_interval(RATE_WINDOW, |actor, _| actor.update_rates());
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(control) = self.shared.capture.write().take() {
            control.stop();
        }
        let mut status = self.shared.status.write();
        status.state = SourceState::Stopped;
        status.capture_pid = None;
    }
}

impl Handler<FrameCaptured> for CameraActor {
    type Result = ();

    fn handle(&mut self, msg: FrameCaptured, _: &mut Self::Context) {
        self.shared
            .stats
            .frames_captured
            .fetch_add(1, Ordering::Relaxed);
        self.shared.metrics.captured.increment(1);
        let pid = self.shared.capture.read().as_ref().map(|c| c.pid());
        {
            let mut status = self.shared.status.write();
            status.capture_pid = pid.filter(|&p| p != 0);
            if status.state == SourceState::Starting {
                status.state = SourceState::Running;
            }
        }
        self.backoff = RESTART_BACKOFF_MIN;
        if !self.shared.config.read().detect {
            return;
        }
        if let Some(model) = &self.model {
            model.do_send(DetectFrame {
                source: self.id.clone(),
                number: self.frame_number,
                frame: msg.0,
                reply_to: self.tracker.clone().recipient(),
            });
            self.frame_number += 1;
        }
    }
}

impl Handler<CaptureEnded> for CameraActor {
    type Result = ();

    fn handle(&mut self, msg: CaptureEnded, ctx: &mut Self::Context) {
        let kind = self.shared.config.read().kind;
        let finished = msg.error.is_none() && matches!(kind, SourceKind::File | SourceKind::Folder);
        {
            // Error and state change together: a reader never sees the error of a
            // capture that is still called running.
            let mut status = self.shared.status.write();
            status.capture_pid = None;
            if let Some(e) = &msg.error {
                status.last_error = Some(e.clone());
            }
            status.state = if finished {
                SourceState::Finished
            } else {
                SourceState::Restarting
            };
        }
        if finished {
            tracing::info!(source = %self.id, "source finished");
            self.tracker.do_send(FinishTracks);
            return;
        }
        let why = msg.error.unwrap_or_else(|| "the stream ended".into());
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(RESTART_BACKOFF_MAX);
        tracing::warn!(source = %self.id, error = %why, retry_in_ms = wait.as_millis() as u64, "capture stopped; restarting");
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
