//! Registered devices (cameras, drones, edge boxes, sensors): their record, its checks,
//! JSON merge patches, and the events a change raises.
//!
//! Everything here is pure: [`registry`] keeps devices in the store, publishes their events
//! and runs their sources. A change is compared field by field with the record it
//! replaces, and only what changed is announced: `device.updated` with
//! `changes: {field: {old, new}}`, plus `device.stream.status`, `device.ai.toggled` and
//! `device.detection_classes.changed` for the fields other services react to. Each event
//! names its channel, `{prefix}:{serial}:{created|updated|stream|ai|config|deleted}`.

pub mod registry;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::secrets::redact;
use crate::session::spec::{check_serial, check_session_id};
use crate::validation::{kind_of, Report};

/// Fields a client may set.
pub const FIELDS: &[&str] = &[
    "id",
    "serial",
    "name",
    "kind",
    "stream_url",
    "stream_on",
    "ai_enabled",
    "detection_classes",
    "location",
    "metadata",
    "source",
];
/// Fields the server sets.
pub const READ_ONLY: &[&str] = &["instance", "created_at", "updated_at", REGISTERED_BY];
/// The field naming the input that registered a device on its own (absent for devices
/// registered over REST): such devices have their own ceiling, and their sources never
/// take the source slots kept for the API.
pub const REGISTERED_BY: &str = "registered_by";
/// Largest device record, as JSON.
pub const MAX_DEVICE_BYTES: usize = 64 * 1024;
/// Most detection classes.
pub const MAX_CLASSES: usize = 1000;
/// Source settings a device's `source` may not hold: the device decides them.
const SOURCE_OWNED: &[&str] = &[
    "id",
    "kind",
    "url",
    "device",
    "detect",
    "classes",
    "device_id",
];
/// Longest device id: its source's id, `device-{id}`, must fit a source id (128).
pub const MAX_DEVICE_ID_LEN: usize = 121;

/// What a device change raised: its name, the channel's last part, its data.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceEvent {
    /// `device.updated`, ...
    pub name: &'static str,
    /// `updated`, `stream`, ... (the channel is `{prefix}:{serial}:{this}`).
    pub topic: &'static str,
    /// Fields besides `id`, `serial` and `channel`.
    pub data: Map<String, Value>,
}

impl DeviceEvent {
    fn new(name: &'static str, topic: &'static str, data: Value) -> Self {
        Self {
            name,
            topic,
            data: match data {
                Value::Object(map) => map,
                _ => Map::new(),
            },
        }
    }

    /// The channel of this event for a device.
    pub fn channel(&self, prefix: &str, serial: &str) -> String {
        format!("{prefix}:{serial}:{}", self.topic)
    }

    /// The event's `data`: the device's id and serial, the channel, then its own fields.
    pub fn payload(&self, device: &Value, channel: &str) -> Value {
        let mut data = Map::new();
        data.insert("id".into(), device["id"].clone());
        data.insert("serial".into(), device["serial"].clone());
        data.insert("channel".into(), Value::String(channel.to_string()));
        data.extend(self.data.clone());
        Value::Object(data)
    }
}

/// The time of a change, as devices record it.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A new device from a registration body: the record to keep, or every problem.
/// `generate_id` gives an id when the body has none.
pub fn register(
    body: &Value,
    instance: &str,
    at: DateTime<Utc>,
    generate_id: impl FnOnce() -> String,
) -> Result<Value, Report> {
    let mut report = Report::default();
    let Some(fields) = body.as_object() else {
        report.error(format!(
            "the body must be a JSON object with at least \"serial\", got {}",
            kind_of(body)
        ));
        return Err(report);
    };
    for key in fields.keys() {
        if READ_ONLY.contains(&key.as_str()) {
            report.error(format!("{key}: set by the server"));
        }
    }
    let mut device = defaults();
    for (k, v) in fields {
        if !READ_ONLY.contains(&k.as_str()) {
            device.insert(k.clone(), v.clone());
        }
    }
    if device.get("id").is_none_or(Value::is_null) {
        device.insert("id".into(), Value::String(generate_id()));
    }
    device.insert("instance".into(), Value::String(instance.to_string()));
    device.insert("created_at".into(), Value::String(timestamp(at)));
    device.insert("updated_at".into(), Value::String(timestamp(at)));
    let device = Value::Object(device);
    check(&device, &mut report);
    if report.is_valid() {
        Ok(device)
    } else {
        Err(report)
    }
}

/// What an unset field is.
fn defaults() -> Map<String, Value> {
    let Value::Object(map) = json!({
        "name": "", "kind": "camera", "stream_url": null, "stream_on": false,
        "ai_enabled": false, "detection_classes": [], "location": null, "metadata": {},
        "source": {},
    }) else {
        unreachable!("a JSON object literal")
    };
    map
}

/// Applies a JSON merge patch (RFC 7386) to `current`: the new record, or every problem.
/// `null` resets a field to its default; `id`, `serial` and what the server sets cannot
/// change.
pub fn patch(current: &Value, body: &Value, at: DateTime<Utc>) -> Result<Value, Report> {
    let mut report = Report::default();
    let Some(fields) = body.as_object() else {
        report.error(format!(
            "the body must be a JSON object of the fields to change (a JSON merge patch), got {}",
            kind_of(body)
        ));
        return Err(report);
    };
    let mut next = current.clone();
    let defaults = defaults();
    for (k, v) in fields {
        let key = k.as_str();
        if READ_ONLY.contains(&key) {
            report.error(format!("{key}: set by the server"));
            continue;
        }
        if matches!(key, "id" | "serial") {
            if *v != current[key] {
                report.error(format!(
                    "{key}: cannot be changed (delete the device and register it again)"
                ));
            }
            continue;
        }
        if !FIELDS.contains(&key) {
            // Reported by `check` with the list of fields.
            next[key] = v.clone();
            continue;
        }
        match v {
            Value::Null => next[key] = defaults.get(key).cloned().unwrap_or(Value::Null),
            _ => merge(&mut next[key], v),
        }
    }
    check(&next, &mut report);
    if !report.is_valid() {
        return Err(report);
    }
    if next != *current {
        next["updated_at"] = Value::String(timestamp(at));
    }
    Ok(next)
}

/// RFC 7386 merge of `patch` into `target`.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(map) = target {
                for (k, v) in fields {
                    if v.is_null() {
                        map.remove(k);
                    } else {
                        merge(map.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Every problem of a device record.
fn check(device: &Value, report: &mut Report) {
    let Some(fields) = device.as_object() else {
        return;
    };
    for key in fields.keys() {
        if !FIELDS.contains(&key.as_str()) && !READ_ONLY.contains(&key.as_str()) {
            report.error(format!(
                "{key}: unknown field (fields: {})",
                FIELDS.join(", ")
            ));
        }
    }
    match device["id"].as_str() {
        Some(id) => match check_session_id(id) {
            Err(e) => report.error(format!("id: {e}")),
            Ok(()) if id.len() > MAX_DEVICE_ID_LEN => report.error(format!(
                "id: at most {MAX_DEVICE_ID_LEN} characters (its source is device-{{id}})"
            )),
            Ok(()) => {}
        },
        None => report.error(format!(
            "id: must be a string, got {}",
            kind_of(&device["id"])
        )),
    }
    match device["serial"].as_str() {
        Some(serial) => {
            if let Err(e) = check_serial(serial) {
                report.error(format!("serial: {e}"));
            }
        }
        None if device["serial"].is_null() => report.error("serial: required"),
        None => report.error(format!(
            "serial: must be a string, got {}",
            kind_of(&device["serial"])
        )),
    }
    match device["name"].as_str() {
        Some(name) if name.chars().count() > 200 => report.error("name: at most 200 characters"),
        Some(_) => {}
        None => report.error(format!(
            "name: must be a string, got {}",
            kind_of(&device["name"])
        )),
    }
    let kind_ok = device["kind"].as_str().is_some_and(|k| {
        !k.is_empty()
            && k.len() <= 32
            && k.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    });
    if !kind_ok {
        report.error(format!(
            "kind: must be a lowercase word such as camera, drone, edge or sensor, got {}",
            device["kind"]
        ));
    }
    match &device["stream_url"] {
        Value::Null => {}
        Value::String(url) if !url.trim().is_empty() && url.len() <= 2048 => {}
        other => report.error(format!(
            "stream_url: must be a non-empty string (rtsp://..., http://..., a file path, /dev/video0, camera:0, external, synthetic) or null, got {}",
            kind_of(other)
        )),
    }
    for flag in ["stream_on", "ai_enabled"] {
        if !device[flag].is_boolean() {
            report.error(format!(
                "{flag}: must be true or false, got {}",
                kind_of(&device[flag])
            ));
        }
    }
    if device["stream_on"] == true && device["stream_url"].is_null() {
        report.error("stream_on: a device needs a stream_url to stream");
    }
    match device["detection_classes"].as_array() {
        Some(classes) if classes.len() > MAX_CLASSES => {
            report.error(format!("detection_classes: at most {MAX_CLASSES} classes"))
        }
        Some(classes) => {
            for (i, c) in classes.iter().enumerate() {
                let ok = c.as_u64().is_some()
                    || c.as_str().is_some_and(|s| !s.is_empty() && s.len() <= 64);
                if !ok {
                    report.error(format!(
                        "detection_classes[{i}]: must be a class name or a class number, got {c}"
                    ));
                }
            }
        }
        None => report.error(format!(
            "detection_classes: must be an array of class names or numbers, got {}",
            kind_of(&device["detection_classes"])
        )),
    }
    if !device["metadata"].is_object() {
        report.error(format!(
            "metadata: must be a JSON object, got {}",
            kind_of(&device["metadata"])
        ));
    }
    match device["source"].as_object() {
        Some(settings) => {
            for key in settings.keys() {
                if SOURCE_OWNED.contains(&key.as_str()) {
                    report.error(format!(
                        "source.{key}: set from the device (stream_url, ai_enabled, detection_classes, serial)"
                    ));
                }
            }
        }
        None => report.error(format!(
            "source: must be a JSON object of source settings (fps, lines, zones, ...), got {}",
            kind_of(&device["source"])
        )),
    }
    let size = device.to_string().len();
    if size > MAX_DEVICE_BYTES {
        report.error(format!(
            "the device is {size} bytes as JSON; at most {MAX_DEVICE_BYTES}"
        ));
    }
}

/// The device as answers and events show it: secrets (a password in `stream_url`,
/// secret-looking keys in `metadata`) hidden.
pub fn view(device: &Value) -> Value {
    let mut shown = device.clone();
    redact(&mut shown);
    shown
}

/// The events a change from `old` to `new` raises (none when nothing changed); the
/// values shown are redacted.
pub fn changes(old: &Value, new: &Value) -> Vec<DeviceEvent> {
    let (old_shown, new_shown) = (view(old), view(new));
    let mut changed = Map::new();
    for key in FIELDS {
        // Compared in clear (a changed password is a change), shown redacted.
        if old[*key] != new[*key] {
            changed.insert(
                key.to_string(),
                json!({"old": old_shown[*key], "new": new_shown[*key]}),
            );
        }
    }
    let new = new_shown;
    if changed.is_empty() {
        return Vec::new();
    }
    let mut events = vec![DeviceEvent::new(
        "device.updated",
        "updated",
        json!({"changes": changed.clone()}),
    )];
    let specific = [
        ("stream_on", "device.stream.status", "stream"),
        ("ai_enabled", "device.ai.toggled", "ai"),
        (
            "detection_classes",
            "device.detection_classes.changed",
            "config",
        ),
    ];
    for (field, name, topic) in specific {
        if let Some(change) = changed.get(field) {
            let mut data = change.clone();
            if field == "stream_on" {
                data["stream_url"] = new["stream_url"].clone();
            }
            events.push(DeviceEvent::new(name, topic, data));
        }
    }
    events
}

/// `device.created`, with the device.
pub fn created(device: &Value) -> DeviceEvent {
    DeviceEvent::new("device.created", "created", json!({"device": view(device)}))
}

/// `device.deleted`, with the device as it was.
pub fn deleted(device: &Value) -> DeviceEvent {
    DeviceEvent::new("device.deleted", "deleted", json!({"device": view(device)}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn drone() -> Value {
        register(
            &json!({"serial": "DRONE123", "kind": "drone", "stream_url": "rtsp://pilot:hunter2@10.0.0.5/live",
                "detection_classes": [0, 1]}),
            "main",
            at(),
            || "d1".into(),
        )
        .unwrap()
    }

    #[test]
    fn registration_fills_defaults_and_lists_every_problem() {
        let d = drone();
        assert_eq!(d["id"], "d1");
        assert_eq!(d["stream_on"], false);
        assert_eq!(d["metadata"], json!({}));
        assert_eq!(d["created_at"], "2026-11-27T10:00:00.000Z");
        let bad = register(
            &json!({"serial": "no spaces", "kind": "Big Drone", "stream_on": "yes",
                "detection_classes": [-1], "colour": "red", "created_at": "x"}),
            "main",
            at(),
            || "d2".into(),
        )
        .unwrap_err();
        let fields: Vec<&str> = bad
            .errors
            .iter()
            .map(|e| e.split(':').next().unwrap())
            .collect();
        for f in [
            "serial",
            "kind",
            "stream_on",
            "detection_classes[0]",
            "colour",
            "created_at",
        ] {
            assert!(fields.contains(&f), "{f} in {:?}", bad.errors);
        }
    }

    #[test]
    fn a_patch_raises_only_what_changed_and_the_specific_events() {
        let d = drone();
        let next = patch(
            &d,
            &json!({"stream_on": true, "detection_classes": [0, 1, 2, 3], "name": "Alpha"}),
            at(),
        )
        .unwrap();
        let events = changes(&d, &next);
        let names: Vec<&str> = events.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "device.updated",
                "device.stream.status",
                "device.detection_classes.changed"
            ]
        );
        let changed = &events[0].data["changes"];
        assert_eq!(
            changed.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["detection_classes", "name", "stream_on"]
        );
        assert_eq!(changed["stream_on"], json!({"old": false, "new": true}));
        assert_eq!(
            events[1].data["stream_url"],
            "rtsp://pilot:***redacted***@10.0.0.5/live"
        );
        assert_eq!(
            events[2].channel("drone", "DRONE123"),
            "drone:DRONE123:config"
        );
        // The same patch again changes nothing and raises nothing.
        let same = patch(&next, &json!({"stream_on": true, "name": "Alpha"}), at()).unwrap();
        assert_eq!(same, next);
        assert!(changes(&next, &same).is_empty());
    }

    #[test]
    fn merge_patch_follows_rfc_7386_and_guards_identity() {
        let d = patch(
            &drone(),
            &json!({"metadata": {"owner": "lab", "battery": {"cells": 4}}}),
            at(),
        )
        .unwrap();
        let d = patch(
            &d,
            &json!({"metadata": {"battery": null, "site": "roof"}, "location": {"lat": 1.5}}),
            at(),
        )
        .unwrap();
        assert_eq!(d["metadata"], json!({"owner": "lab", "site": "roof"}));
        let reset = patch(&d, &json!({"metadata": null}), at()).unwrap();
        assert_eq!(reset["metadata"], json!({}));
        let refused = patch(
            &d,
            &json!({"serial": "OTHER", "updated_at": "x", "stream_on": 1}),
            at(),
        )
        .unwrap_err();
        assert_eq!(refused.errors.len(), 3, "{:?}", refused.errors);
        let streaming =
            patch(&d, &json!({"stream_url": null, "stream_on": true}), at()).unwrap_err();
        assert!(streaming.errors[0].contains("needs a stream_url"));
    }
}
