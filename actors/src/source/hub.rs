//! Every source by id: created from the configuration at start and over REST, removed
//! over REST. For each source the hub starts a `TrackerActor` on a thread of its own and a
//! `CameraActor` on the actors arbiter, and wires the camera to its model's
//! `InferenceActor`, whose answers go straight to the tracker.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;

use super::actor::{CameraActor, SourceShared, SourceState, SourceStatus, StopSource};
use super::{stream_target, SourceConfig, SourceKind};
use crate::egress::EgressPolicy;
use crate::inference::ModelHub;
use crate::messages::PublishSourceEvents;
use crate::tracker::actor::{
    IngestDetections, Ingested, ListTracks, Reconfigure, StopTracker, TrackerActor,
};
use crate::tracker::TrackSnapshot;
use crate::validation::Report;

/// Why a source request failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The configuration did not validate.
    #[error("invalid source configuration")]
    Invalid(Report),
    /// The id is taken.
    #[error("source {0:?} already exists")]
    Conflict(String),
    /// No such source.
    #[error("source {0:?} not found")]
    NotFound(String),
    /// The operation does not apply to this kind of source.
    #[error("{0}")]
    WrongKind(String),
    /// The source did not answer.
    #[error("source {0:?} is not running")]
    Unavailable(String),
    /// The hub holds its maximum number of sources.
    #[error("the server already runs its maximum of {0} sources (server.max_sources)")]
    Full(usize),
    /// Only the slots kept for the API are left (503): a device an input registered does
    /// not take them.
    #[error("of the {max} sources the server runs (server.max_sources), the last {reserved} are kept for the API (server.reserved_sources)")]
    Reserved {
        /// `server.max_sources`.
        max: usize,
        /// The slots kept.
        reserved: usize,
    },
}

/// A source as the REST API shows it.
#[derive(Debug, Serialize)]
pub struct SourceReport {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: &'static str,
    /// The serial of the registered device it belongs to (changed through the device).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// State, last error, ffmpeg pid.
    #[serde(flatten)]
    pub status: SourceStatus,
    /// Counters.
    pub stats: Value,
    /// The configuration in force.
    pub config: SourceConfig,
}

struct Handle {
    camera: Addr<CameraActor>,
    tracker: Addr<TrackerActor>,
    shared: Arc<SourceShared>,
}

impl Handle {
    /// Stops the capture, then the tracker (which ends open tracks and its thread).
    fn stop(&self) {
        self.camera.do_send(StopSource);
        self.tracker.do_send(StopTracker);
    }
}

/// The sources of this server.
pub struct SourceHub {
    sources: Mutex<BTreeMap<String, Handle>>,
    arbiter: ArbiterHandle,
    sink: Recipient<PublishSourceEvents>,
    models: Arc<ModelHub>,
    /// Sources allowed at once.
    max_sources: usize,
    /// Where `file` and `folder` sources may read.
    media: MediaAccess,
    /// Where stream sources may connect.
    egress: Arc<EgressPolicy>,
    /// Edge timestamps older than this are refused (`server.edge_max_age_secs`).
    oldest_timestamp: Option<std::time::Duration>,
}

/// Where `file` and `folder` sources may read (`server.media_dirs`).
#[derive(Debug, Clone)]
pub enum MediaAccess {
    /// Any path the process can read (no folders listed, authentication off).
    Anywhere,
    /// Only inside these folders, resolved.
    Within(Vec<std::path::PathBuf>),
    /// Nowhere: no folders listed on a server with other users (fail closed).
    Nowhere,
}

impl MediaAccess {
    /// From the configured folders: none listed means anywhere for a one-person server,
    /// nowhere when others may create sources (`closed`). A folder that cannot be resolved
    /// (the configuration refuses relative ones) admits nothing.
    pub fn new(media_dirs: &[String], closed: bool) -> Self {
        match (media_dirs.is_empty(), closed) {
            (true, false) => Self::Anywhere,
            (true, true) => Self::Nowhere,
            (false, _) => Self::Within(
                media_dirs
                    .iter()
                    .filter_map(|d| std::fs::canonicalize(d).ok())
                    .collect(),
            ),
        }
    }
}

/// Fields PATCH may change while a source runs.
pub const PATCHABLE: &[&str] = &[
    "lines",
    "zones",
    "anchor",
    "hysteresis_px",
    "tracker",
    "classes",
    "detect",
    "confidence",
    "detections_every_ms",
    "detections_events",
    "frame_data",
    "frame_quality",
];

impl SourceHub {
    /// An empty hub whose sources publish to `sink` (the session registry).
    pub fn new(
        arbiter: ArbiterHandle,
        sink: Recipient<PublishSourceEvents>,
        models: Arc<ModelHub>,
        max_sources: usize,
        media: MediaAccess,
        egress: Arc<EgressPolicy>,
    ) -> Self {
        Self {
            sources: Mutex::new(BTreeMap::new()),
            arbiter,
            sink,
            models,
            max_sources,
            media,
            egress,
            oldest_timestamp: None,
        }
    }

    /// The hub, its sources refusing edge timestamps older than `age` (`None`: any).
    pub fn refusing_timestamps_older_than(mut self, age: Option<std::time::Duration>) -> Self {
        self.oldest_timestamp = age;
        self
    }

    /// Checks a configuration against the models too.
    pub fn check(&self, config: &SourceConfig) -> Report {
        self.checked(config).0
    }

    /// [`check`](Self::check), with the confined path it resolved (see `confine`).
    fn checked(&self, config: &SourceConfig) -> (Report, Option<String>) {
        let mut report = config.validate();
        let resolved = self.confine(config).unwrap_or_else(|e| {
            report.error(e);
            None
        });
        if config.kind == SourceKind::Stream {
            if let Some(Err(e)) = config
                .url
                .as_deref()
                .and_then(stream_target)
                .map(|(host, port)| self.egress.check_written(&host, port))
            {
                report.error(format!("url: {e}"));
            }
        }
        if config.kind != SourceKind::External {
            if let Err(e) = self.models.get(config.model.as_deref()) {
                report.error(format!("model: {e}"));
            }
        }
        (report, resolved)
    }

    /// The path a file or folder source reads, resolved and checked against
    /// `server.media_dirs`; `None` when nothing confines it (other kinds, or no folders).
    fn confine(&self, config: &SourceConfig) -> Result<Option<String>, String> {
        if !matches!(config.kind, SourceKind::File | SourceKind::Folder) {
            return Ok(None);
        }
        let dirs = match &self.media {
            MediaAccess::Anywhere => return Ok(None),
            MediaAccess::Nowhere => {
                return Err("url: file and folder sources are off on this server: an admin lists the folders they may read in server.media_dirs".into())
            }
            MediaAccess::Within(dirs) => dirs,
        };
        let url = config.url.as_deref().unwrap_or_default();
        // Resolved, so neither `..` nor a symbolic link leads out of the folders. A path
        // that is missing, unreadable or outside gets the same answer: what lies outside
        // the folders is not for the caller to learn, not even whether it exists.
        match std::fs::canonicalize(url) {
            Ok(path) if dirs.iter().any(|d| path.starts_with(d)) => {
                Ok(Some(path.to_string_lossy().into_owned()))
            }
            _ => Err(format!(
                "url: {url:?} is not a file or folder this server may read: it must exist within server.media_dirs"
            )),
        }
    }

    /// Creates and starts a source.
    pub fn add(&self, config: SourceConfig) -> Result<SourceReport, SourceError> {
        self.add_leaving(config, 0)
    }

    /// Whether a source that must leave `leave` slots free would fit now.
    pub fn has_room_leaving(&self, leave: usize) -> bool {
        self.sources.lock().len() + leave < self.max_sources
    }

    /// Creates and starts a source, if `leave` slots stay free after it (a device an
    /// input registered leaves the slots kept for the API).
    pub fn add_leaving(
        &self,
        mut config: SourceConfig,
        leave: usize,
    ) -> Result<SourceReport, SourceError> {
        let (report, resolved) = self.checked(&config);
        if !report.is_valid() {
            return Err(SourceError::Invalid(report));
        }
        // Restarts reopen the path resolved now, and a folder's images are held to it.
        if let Some(resolved) = resolved {
            config.url = Some(resolved);
            config.confined = true;
        }
        let mut sources = self.sources.lock();
        if sources.contains_key(&config.id) {
            return Err(SourceError::Conflict(config.id));
        }
        // Each source starts a thread: bounded, so no request can exhaust them.
        if sources.len() >= self.max_sources {
            return Err(SourceError::Full(self.max_sources));
        }
        if sources.len() + leave >= self.max_sources {
            return Err(SourceError::Reserved {
                max: self.max_sources,
                reserved: leave,
            });
        }
        let model = match config.kind {
            SourceKind::External => None,
            _ => self
                .models
                .get(config.model.as_deref())
                .ok()
                .map(|m| m.addr.clone()),
        };
        let shared = SourceShared::new(config.clone(), self.egress.clone(), self.oldest_timestamp);
        let tracker = {
            let (shared, sink) = (shared.clone(), self.sink.clone());
            let thread = Arbiter::new();
            TrackerActor::start_in_arbiter(&thread.handle(), move |_| {
                TrackerActor::new(shared, sink)
            })
        };
        let camera = {
            let (shared, tracker) = (shared.clone(), tracker.clone());
            CameraActor::start_in_arbiter(&self.arbiter, move |_| {
                CameraActor::new(shared, model, tracker)
            })
        };
        let id = config.id.clone();
        sources.insert(
            id.clone(),
            Handle {
                camera,
                tracker,
                shared,
            },
        );
        tracing::info!(source = %id, kind = config.kind.as_str(), "source added");
        Ok(report_of(&id, &sources[&id]))
    }

    /// Every source, by id.
    pub fn list(&self) -> Vec<SourceReport> {
        self.sources
            .lock()
            .iter()
            .map(|(id, h)| report_of(id, h))
            .collect()
    }

    /// One source.
    pub fn get(&self, id: &str) -> Result<SourceReport, SourceError> {
        let sources = self.sources.lock();
        let h = sources
            .get(id)
            .ok_or_else(|| SourceError::NotFound(id.to_string()))?;
        Ok(report_of(id, h))
    }

    /// `id`'s latest analysed frame, if it has one yet.
    pub fn latest_frame(
        &self,
        id: &str,
    ) -> Result<Option<Arc<crate::messages::FrameRef>>, SourceError> {
        let sources = self.sources.lock();
        let h = sources
            .get(id)
            .ok_or_else(|| SourceError::NotFound(id.to_string()))?;
        let latest = h.shared.latest.read().clone();
        Ok(latest)
    }

    /// The tracks `id`'s tracker holds now, with the number of frames it has tracked.
    pub async fn tracks(&self, id: &str) -> Result<(u64, Vec<TrackSnapshot>), SourceError> {
        let addr = {
            let sources = self.sources.lock();
            let h = sources
                .get(id)
                .ok_or_else(|| SourceError::NotFound(id.to_string()))?;
            h.tracker.clone()
        };
        addr.send(ListTracks)
            .await
            .map_err(|_| SourceError::Unavailable(id.to_string()))
    }

    /// Every source's state and the device it belongs to, without its counters.
    pub fn states_with_devices(&self) -> Vec<(String, Option<String>, SourceState)> {
        self.sources
            .lock()
            .iter()
            .map(|(id, h)| {
                let device = h.shared.config.read().device_serial.clone();
                (id.clone(), device, h.shared.status.read().state)
            })
            .collect()
    }

    /// States for health.
    pub fn states(&self) -> Vec<(String, SourceStatus)> {
        self.sources
            .lock()
            .iter()
            .map(|(id, h)| (id.clone(), h.shared.status.read().clone()))
            .collect()
    }

    /// Stops and forgets a source (its open tracks end).
    pub fn remove(&self, id: &str) -> Result<(), SourceError> {
        let h = self
            .sources
            .lock()
            .remove(id)
            .ok_or_else(|| SourceError::NotFound(id.to_string()))?;
        h.stop();
        tracing::info!(source = %id, "source removed");
        Ok(())
    }

    /// Changes lines, zones, thresholds or classes of a running source.
    pub fn patch(&self, id: &str, patch: &Value) -> Result<SourceReport, SourceError> {
        let sources = self.sources.lock();
        let h = sources
            .get(id)
            .ok_or_else(|| SourceError::NotFound(id.to_string()))?;
        let Value::Object(fields) = patch else {
            let mut r = Report::default();
            r.error("the body must be a JSON object of the fields to change");
            return Err(SourceError::Invalid(r));
        };
        let mut r = Report::default();
        for key in fields.keys() {
            if !PATCHABLE.contains(&key.as_str()) {
                r.error(format!(
                    "{key}: cannot be changed while the source runs (changeable: {}); delete and add the source instead",
                    PATCHABLE.join(", ")
                ));
            }
        }
        if !r.is_valid() {
            return Err(SourceError::Invalid(r));
        }
        let mut current = serde_json::to_value(&*h.shared.config.read()).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut current {
            for (k, v) in fields {
                match (map.get_mut(k), v) {
                    // `tracker` is merged key by key: thresholds not named keep their value.
                    (Some(Value::Object(old)), Value::Object(new)) => {
                        for (k, v) in new {
                            old.insert(k.clone(), v.clone());
                        }
                    }
                    _ => {
                        map.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        let mut config: SourceConfig = serde_json::from_value(current).map_err(|e| {
            let mut r = Report::default();
            r.error(e.to_string());
            SourceError::Invalid(r)
        })?;
        // Not in the JSON: carried over, never lost by a PATCH.
        config.confined = h.shared.config.read().confined;
        config.device_serial = h.shared.config.read().device_serial.clone();
        let report = config.validate();
        if !report.is_valid() {
            return Err(SourceError::Invalid(report));
        }
        // The actor applies it to its tracker and analytics; the shared copy updates now
        // so a GET right after the PATCH shows it.
        *h.shared.config.write() = config.clone();
        h.tracker.do_send(Reconfigure(config));
        Ok(report_of(id, h))
    }

    /// Detections from an edge device for an `external` source.
    pub async fn ingest(&self, id: &str, body: Value) -> Result<Ingested, SourceError> {
        self.ingest_with(id, body, false).await
    }

    /// The same; with `warm`, the message is tracked without raising events (a processor
    /// replaying what it handled before a restart).
    pub async fn ingest_with(
        &self,
        id: &str,
        body: Value,
        warm: bool,
    ) -> Result<Ingested, SourceError> {
        let mut results = self.ingest_many(id, vec![body], warm).await?;
        match results.pop() {
            Some(Ok(ingested)) => Ok(ingested),
            Some(Err(message)) => {
                let mut r = Report::default();
                r.error(message);
                Err(SourceError::Invalid(r))
            }
            None => Err(SourceError::Unavailable(id.to_string())),
        }
    }

    /// Several messages in one hand-over to the tracker; one result each, in order.
    pub async fn ingest_many(
        &self,
        id: &str,
        envelopes: Vec<Value>,
        warm: bool,
    ) -> Result<Vec<Result<Ingested, String>>, SourceError> {
        let addr = {
            let sources = self.sources.lock();
            let h = sources
                .get(id)
                .ok_or_else(|| SourceError::NotFound(id.to_string()))?;
            if h.shared.config.read().kind != SourceKind::External {
                return Err(SourceError::WrongKind(format!(
                    "source {id:?} is not external: only external sources take posted detections"
                )));
            }
            if !h.shared.config.read().detect {
                return Err(SourceError::WrongKind(format!(
                    "detection is off on source {id:?} (\"detect\": false): nothing posted is tracked until it is on again"
                )));
            }
            h.tracker.clone()
        };
        addr.send(IngestDetections { envelopes, warm })
            .await
            .map_err(|_| SourceError::Unavailable(id.to_string()))
    }

    /// Stops every source (shutdown).
    pub fn stop_all(&self) {
        for (_, h) in std::mem::take(&mut *self.sources.lock()) {
            h.stop();
        }
    }
}

fn report_of(id: &str, h: &Handle) -> SourceReport {
    let config = h.shared.config.read().clone();
    SourceReport {
        id: id.to_string(),
        kind: config.kind.as_str(),
        device: config.device_serial.clone(),
        status: h.shared.status.read().clone(),
        stats: h.shared.stats_json(),
        config,
    }
}
