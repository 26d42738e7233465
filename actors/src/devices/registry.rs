//! The [`DeviceRegistry`]: devices kept in the store, their change events sent to the
//! sessions that listen and to the server's Redis, and the vision source of each streaming
//! device kept in step with it.
//!
//! The store is the truth: every read goes to it, so servers sharing a database answer
//! alike. Changes made through one server are serialized, and each is compared with the
//! record it replaces there. A device's source runs on the server that registered it
//! (`instance`); another server sharing the store keeps its record but runs nothing.

use std::sync::Arc;

use actix::Recipient;
use bytes::Bytes;
use chrono::Utc;
use serde_json::{json, Value};

use super::{changes, created, deleted, patch, register, view, DeviceEvent};
use crate::bus::RedisBus;
use crate::event::Origin;
use crate::messages::{IncomingEvent, PublishDeviceEvents};
use crate::source::actor::SourceStatus;
use crate::source::hub::{SourceError, SourceHub};
use crate::source::{SourceConfig, STREAM_SCHEMES};
use crate::store::{DeviceKey, Store, StoreError};
use crate::validation::Report;

/// What can go wrong with a device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// No such device (404).
    #[error("device {0} not found")]
    NotFound(String),
    /// The request did not validate; every problem is listed (422).
    #[error("invalid device")]
    Invalid(Report),
    /// The id or serial is taken (409).
    #[error("{0}")]
    Conflict(String),
    /// The registry holds its maximum number of devices (503).
    #[error("the registry already holds its maximum of {0} devices (devices.max_devices)")]
    Full(u64),
    /// The store could not keep the change, which was not made (503).
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for DeviceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(message) => Self::Conflict(message),
            other => Self::Store(other),
        }
    }
}

/// What the registry needs from the server.
pub struct DeviceSettings {
    /// First part of every channel (`device` gives `device:SN123:updated`).
    pub channel_prefix: String,
    /// This server's name in the store.
    pub instance: String,
    /// Devices the registry holds at most.
    pub max_devices: u64,
    /// Source slots a device registered by an input never takes (`server.reserved_sources`):
    /// they stay for sources and devices made over REST.
    pub reserved_sources: usize,
}

/// Fields whose change the device's source must follow.
const SOURCE_FIELDS: &[&str] = &[
    "stream_url",
    "stream_on",
    "ai_enabled",
    "detection_classes",
    "source",
];

/// The devices of this server.
pub struct DeviceRegistry {
    store: Arc<Store>,
    sessions: Recipient<PublishDeviceEvents>,
    bus: Option<RedisBus>,
    sources: Arc<SourceHub>,
    settings: DeviceSettings,
    /// One change at a time: each is compared with the record the previous one left, and
    /// events leave in the order of the changes.
    writing: tokio::sync::Mutex<()>,
}

/// A device change: the device after it and the names of the events it raised.
#[derive(Debug)]
pub struct DeviceChange {
    /// The device (its secrets in clear: show it through [`DeviceRegistry::show`]).
    pub device: Value,
    /// Events published, in order.
    pub events: Vec<&'static str>,
    /// The source could not be started or changed (the device is kept).
    pub source_error: Option<String>,
}

impl DeviceRegistry {
    /// A registry over `store`, publishing to `sessions` and to `bus` if any, running the
    /// sources of streaming devices in `sources`.
    pub fn new(
        store: Arc<Store>,
        sessions: Recipient<PublishDeviceEvents>,
        bus: Option<RedisBus>,
        sources: Arc<SourceHub>,
        settings: DeviceSettings,
    ) -> Self {
        Self {
            store,
            sessions,
            bus,
            sources,
            settings,
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// The channel prefix.
    pub fn channel_prefix(&self) -> &str {
        &self.settings.channel_prefix
    }

    /// Every device, by id.
    pub async fn list(&self) -> Result<Vec<Value>, DeviceError> {
        Ok(self.store.devices().await?)
    }

    /// One device.
    pub async fn get(&self, key: DeviceKey<'_>) -> Result<Value, DeviceError> {
        self.store
            .device(key)
            .await?
            .ok_or_else(|| DeviceError::NotFound(describe(key)))
    }

    /// The device as answers show it: secrets hidden, with the state of its source (as
    /// `disclose` lets the caller see it).
    pub fn show(&self, device: &Value, disclose: impl Fn(SourceStatus) -> SourceStatus) -> Value {
        let mut shown = view(device);
        let id = source_id(device);
        let stream = match self.sources.get(&id) {
            Ok(report) => {
                let status = disclose(report.status);
                json!({"source": id, "state": status.state, "last_error": status.last_error})
            }
            Err(_) if wants_source(device, &self.settings.instance) => {
                json!({"source": id, "state": "not running"})
            }
            Err(_) if streams(device) => json!({"source": null, "state": "on another instance",
                "instance": device["instance"]}),
            Err(_) => json!({"source": null, "state": "off"}),
        };
        shown["stream"] = stream;
        shown
    }

    /// Devices inputs registered on their own (`registered_by` set).
    pub async fn count_registered_by_inputs(&self) -> Result<usize, DeviceError> {
        Ok(self
            .list()
            .await?
            .iter()
            .filter(|d| d[super::REGISTERED_BY].is_string())
            .count())
    }

    /// Registers a device; it is kept, announced and, when it streams, its source started.
    pub async fn create(&self, body: &Value) -> Result<DeviceChange, DeviceError> {
        self.create_by(body, None).await
    }

    /// [`create`](Self::create), for a device an input registers on its own
    /// (`registered_by` names it).
    pub async fn create_by(
        &self,
        body: &Value,
        registered_by: Option<&str>,
    ) -> Result<DeviceChange, DeviceError> {
        let _one = self.writing.lock().await;
        let mut device = register(body, &self.settings.instance, Utc::now(), || {
            uuid::Uuid::new_v4().to_string()
        })
        .map_err(DeviceError::Invalid)?;
        if let Some(by) = registered_by {
            device[super::REGISTERED_BY] = Value::String(by.to_string());
        }
        let held = self.store.device_count().await?;
        if held >= self.settings.max_devices {
            return Err(DeviceError::Full(self.settings.max_devices));
        }
        self.check_source(&device)?;
        let (id, serial) = (text(&device, "id"), text(&device, "serial"));
        self.store.insert_device(&id, &serial, &device).await?;
        let source_error = self.reconcile(None, Some(&device));
        let event = created(&device);
        self.publish(&device, std::slice::from_ref(&event));
        Ok(DeviceChange {
            device,
            events: vec![event.name],
            source_error,
        })
    }

    /// The device named by `key` with its write stamp, if `visible` lets the caller see its
    /// serial (one it may not see is not found, like one that does not exist).
    async fn visible(
        &self,
        key: DeviceKey<'_>,
        visible: &dyn Fn(&str) -> bool,
    ) -> Result<(Value, String), DeviceError> {
        match self.store.device_stamped(key).await? {
            Some((device, stamp)) if visible(&text(&device, "serial")) => Ok((device, stamp)),
            _ => Err(DeviceError::NotFound(describe(key))),
        }
    }

    /// A change to what the source follows, asked of a server that does not run it, would
    /// never reach the source.
    fn check_owner(&self, old: &Value, new: Option<&Value>) -> Result<(), DeviceError> {
        let owner = old["instance"].as_str().unwrap_or_default();
        if owner == self.settings.instance {
            return Ok(());
        }
        let touches_source = match new {
            Some(new) => SOURCE_FIELDS.iter().any(|f| old[*f] != new[*f]),
            None => streams(old),
        };
        if touches_source {
            return Err(DeviceError::Conflict(format!(
                "device {} belongs to instance {owner:?}, which runs its source: change its stream settings (or delete it) there",
                text(old, "serial")
            )));
        }
        Ok(())
    }

    /// Applies a JSON merge patch; only what changed is announced (a patch that changes
    /// nothing announces nothing). `visible` says which serials the caller may see.
    pub async fn patch(
        &self,
        key: DeviceKey<'_>,
        body: &Value,
        visible: &dyn Fn(&str) -> bool,
    ) -> Result<DeviceChange, DeviceError> {
        let _one = self.writing.lock().await;
        let (old, stamp) = self.visible(key, visible).await?;
        let new = patch(&old, body, Utc::now()).map_err(DeviceError::Invalid)?;
        let events = changes(&old, &new);
        if events.is_empty() {
            return Ok(DeviceChange {
                device: old,
                events: Vec::new(),
                source_error: None,
            });
        }
        self.check_owner(&old, Some(&new))?;
        self.check_source(&new)?;
        let (id, serial) = (text(&new, "id"), text(&new, "serial"));
        if !self.store.update_device(&id, &serial, &new, &stamp).await? {
            // Changed or deleted meanwhile (by another server sharing the store).
            return Err(match self.store.device(DeviceKey::Id(&id)).await? {
                Some(_) => DeviceError::Conflict(format!(
                    "device {serial} changed while this change was made: read it again and retry"
                )),
                None => DeviceError::NotFound(describe(key)),
            });
        }
        let source_error = self.reconcile(Some(&old), Some(&new));
        self.publish(&new, &events);
        Ok(DeviceChange {
            device: new,
            events: events.iter().map(|e| e.name).collect(),
            source_error,
        })
    }

    /// Forgets a device; its source stops.
    pub async fn delete(
        &self,
        key: DeviceKey<'_>,
        visible: &dyn Fn(&str) -> bool,
    ) -> Result<DeviceChange, DeviceError> {
        let _one = self.writing.lock().await;
        let (device, _) = self.visible(key, visible).await?;
        self.check_owner(&device, None)?;
        if !self.store.delete_device(&text(&device, "id")).await? {
            return Err(DeviceError::NotFound(describe(key)));
        }
        self.reconcile(Some(&device), None);
        let event = deleted(&device);
        self.publish(&device, std::slice::from_ref(&event));
        Ok(DeviceChange {
            device,
            events: vec![event.name],
            source_error: None,
        })
    }

    /// Starts the sources of this server's streaming devices (at start-up); the devices
    /// whose source could not start, and why.
    pub async fn start_sources(&self) -> Result<Vec<(String, String)>, DeviceError> {
        let mut failed = Vec::new();
        for mut device in self.list().await? {
            self.migrate_ids(&mut device).await;
            if let Some(e) = self.reconcile(None, Some(&device)) {
                failed.push((text(&device, "serial"), e));
            }
        }
        Ok(failed)
    }

    /// Brings the line and zone ids of a device's kept `source` settings within the rule
    /// ids follow now (`tracker::analytics::migrate_ids`), and keeps the result; a write
    /// that loses to a change made meanwhile is left to that change.
    async fn migrate_ids(&self, device: &mut Value) {
        let renamed = crate::tracker::analytics::migrate_ids(&mut device["source"]);
        if renamed.is_empty() {
            return;
        }
        let (id, serial) = (text(device, "id"), text(device, "serial"));
        tracing::warn!(device = %serial, ?renamed, "line and zone ids of a kept device renamed to the characters ids take");
        if let Ok(Some((_, stamp))) = self.store.device_stamped(DeviceKey::Id(&id)).await {
            if let Err(error) = self.store.update_device(&id, &serial, device, &stamp).await {
                tracing::warn!(device = %serial, %error, "the renamed ids could not be kept; they are renamed again at the next start");
            }
        }
    }

    /// Refuses a device whose source would not start (a bad URL, a path outside
    /// `server.media_dirs`, an unknown model, bad source settings), before anything is kept.
    fn check_source(&self, device: &Value) -> Result<(), DeviceError> {
        if !wants_source(device, &self.settings.instance) {
            return Ok(());
        }
        let mut report = Report::default();
        match source_config(device) {
            Ok(config) => {
                for e in self.sources.check(&config).errors {
                    report.error(format!("stream_url / source: {e}"));
                }
            }
            Err(e) => report.error(e),
        }
        if report.is_valid() {
            Ok(())
        } else {
            Err(DeviceError::Invalid(report))
        }
    }

    /// Brings the device's source in line with the device: started, stopped, restarted on
    /// a new stream, or changed in place (detection on or off, classes). The error, if the
    /// source could not follow.
    fn reconcile(&self, old: Option<&Value>, new: Option<&Value>) -> Option<String> {
        let instance = &self.settings.instance;
        let device = new.or(old)?;
        let id = source_id(device);
        let running = match self.sources.get(&id) {
            Ok(report) if report.device.as_deref() == device["serial"].as_str() => true,
            // Not this device's (made before the prefix was reserved): left alone.
            Ok(_) => {
                return Some(format!(
                    "a source named {id:?} exists that is not this device's: remove it, then switch stream_on again"
                ))
            }
            Err(_) => false,
        };
        let wanted = new.filter(|d| wants_source(d, instance));
        let Some(new) = wanted else {
            if running {
                let _ = self.sources.remove(&id);
            }
            return None;
        };
        let same_stream = old.is_some_and(|o| {
            wants_source(o, instance)
                && o["stream_url"] == new["stream_url"]
                && o["source"] == new["source"]
        });
        if running && same_stream {
            let live = json!({"detect": new["ai_enabled"], "classes": classes(new)});
            return self
                .sources
                .patch(&id, &live)
                .err()
                .map(|e| source_error_text(&e));
        }
        if running {
            let _ = self.sources.remove(&id);
        }
        // A device an input registered leaves the slots kept for the API free.
        let leave = if new[super::REGISTERED_BY].is_string() {
            self.settings.reserved_sources
        } else {
            0
        };
        let started = source_config(new).and_then(|config| {
            self.sources
                .add_leaving(config, leave)
                .map(|_| ())
                .map_err(|e| source_error_text(&e))
        });
        match started {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(device = %text(new, "serial"), error = %e, "the device's source did not start");
                Some(e)
            }
        }
    }

    /// Sends a change's events to the sessions listening to the device and to Redis.
    fn publish(&self, device: &Value, events: &[DeviceEvent]) {
        let serial: Arc<str> = Arc::from(text(device, "serial"));
        let shown = view(device);
        let now = Utc::now();
        let mut incoming = Vec::with_capacity(events.len());
        for event in events {
            let channel = event.channel(&self.settings.channel_prefix, &serial);
            let data = event.payload(&shown, &channel);
            if let Some(bus) = &self.bus {
                let message =
                    json!({"event": event.name, "ts": super::timestamp(now), "data": data});
                bus.publish(channel.clone(), Bytes::from(message.to_string()));
            }
            incoming.push(IncomingEvent {
                name: event.name.to_string(),
                data: crate::json::to_raw(&data).into(),
                ts: Some(now),
                origin: Origin {
                    source: None,
                    device: Some(serial.clone()),
                    channel: Some(Arc::from(channel)),
                    replay: None,
                },
            });
        }
        self.sessions.do_send(PublishDeviceEvents {
            serial,
            events: incoming,
        });
    }
}

fn describe(key: DeviceKey<'_>) -> String {
    match key {
        DeviceKey::Id(id) => format!("{id:?}"),
        DeviceKey::Serial(serial) => format!("with serial {serial:?}"),
    }
}

fn text(device: &Value, key: &str) -> String {
    device[key].as_str().unwrap_or_default().to_string()
}

/// How the ids of devices' sources start; no other source may use it.
pub const DEVICE_SOURCE_PREFIX: &str = "device-";

/// The id of a device's source.
pub fn source_id(device: &Value) -> String {
    format!("{DEVICE_SOURCE_PREFIX}{}", text(device, "id"))
}

fn streams(device: &Value) -> bool {
    device["stream_on"] == true && device["stream_url"].is_string()
}

/// Whether this server runs a source for the device.
fn wants_source(device: &Value, instance: &str) -> bool {
    streams(device) && device["instance"] == instance
}

fn classes(device: &Value) -> Vec<String> {
    device["detection_classes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| match c {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn source_error_text(e: &SourceError) -> String {
    match e {
        SourceError::Invalid(report) => report.errors.join("; "),
        other => other.to_string(),
    }
}

/// The source a streaming device runs: its kind from `stream_url` (`rtsp://`, `http://`
/// and other stream URLs; `file://` or a path: a video file, or a folder of images;
/// `/dev/video0`: V4L2; `camera:0`: a camera by index or name; `external`: detections
/// posted by the device; `synthetic`: a test pattern), `ai_enabled` as detection,
/// `detection_classes` as its class filter, the serial as the envelope's `device_id`, and
/// the device's `source` settings (fps, lines, zones, ...).
pub fn source_config(device: &Value) -> Result<SourceConfig, String> {
    let url = device["stream_url"].as_str().unwrap_or_default().trim();
    let mut config = match device["source"].as_object() {
        Some(settings) => settings.clone(),
        None => serde_json::Map::new(),
    };
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    let (kind, field, value) = match (url, scheme.as_deref()) {
        ("external", _) => ("external", None, None),
        ("synthetic", _) => ("synthetic", None, None),
        (u, _) if u.starts_with("camera:") => ("camera", Some("device"), Some(&u[7..])),
        (u, _) if u.starts_with("/dev/video") => ("v4l2", Some("device"), Some(u)),
        (u, Some("file")) => {
            let path = &u[7..];
            (folder_or_file(path), Some("url"), Some(path))
        }
        (u, Some(s)) if STREAM_SCHEMES.contains(&s) => ("stream", Some("url"), Some(u)),
        (_, Some(s)) => {
            return Err(format!(
                "stream_url: scheme {s}:// is not one a source can open ({}, file)",
                STREAM_SCHEMES.join(", ")
            ))
        }
        (u, None) => (folder_or_file(u), Some("url"), Some(u)),
    };
    config.insert("id".into(), Value::String(source_id(device)));
    config.insert("kind".into(), Value::String(kind.into()));
    if let (Some(field), Some(value)) = (field, value) {
        config.insert(field.into(), Value::String(value.into()));
    }
    config.insert("detect".into(), device["ai_enabled"].clone());
    config.insert("classes".into(), json!(classes(device)));
    config.insert("device_id".into(), device["serial"].clone());
    let mut config: SourceConfig =
        serde_json::from_value(Value::Object(config)).map_err(|e| format!("source: {e}"))?;
    config.device_serial = device["serial"].as_str().map(str::to_string);
    Ok(config)
}

fn folder_or_file(path: &str) -> &'static str {
    if std::path::Path::new(path).is_dir() {
        "folder"
    } else {
        "file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_url_picks_the_source_kind() {
        let device = |url: &str| {
            json!({"id": "d1", "serial": "SN1", "stream_url": url, "ai_enabled": true,
                "detection_classes": ["person", 2], "source": {"fps": 5.0}})
        };
        let kind = |url: &str| source_config(&device(url)).map(|c| c.kind.as_str());
        assert_eq!(kind("rtsp://10.0.0.5/live"), Ok("stream"));
        assert_eq!(kind("external"), Ok("external"));
        assert_eq!(kind("synthetic"), Ok("synthetic"));
        assert_eq!(kind("camera:0"), Ok("camera"));
        assert_eq!(kind("/dev/video2"), Ok("v4l2"));
        assert_eq!(kind("/tmp"), Ok("folder"));
        assert_eq!(kind("file:///videos/a.mp4"), Ok("file"));
        assert!(kind("gopher://x").unwrap_err().contains("gopher"));
        let c = source_config(&device("rtsp://10.0.0.5/live")).unwrap();
        assert_eq!(c.id, "device-d1");
        assert!(c.detect);
        assert_eq!(c.classes, ["person", "2"]);
        assert_eq!(c.fps, 5.0);
        assert_eq!(c.device_id.as_deref(), Some("SN1"));
        assert_eq!(c.device_serial.as_deref(), Some("SN1"));
    }
}
