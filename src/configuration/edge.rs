//! `[edge]`: what `synopticon edge` watches and where it publishes (docs/EDGE.md).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `[edge]`: what the edge watches and where it publishes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSettings {
    /// This device, the envelope's `source.device_id`.
    pub device_id: String,
    /// The camera, the envelope's `source.camera_id` (and the source's id).
    pub camera_id: String,
    /// `redis_stream` or `mqtt`.
    pub output: String,
    /// Redis: `redis://host:port` (`output = "redis_stream"`).
    #[serde(default)]
    pub url: String,
    /// Redis: the stream.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Redis: `XADD ... MAXLEN ~ max_len`.
    #[serde(default = "default_max_len")]
    pub max_len: u64,
    /// MQTT: `mqtt://host:1883` (`output = "mqtt"`).
    #[serde(default)]
    pub broker: String,
    /// MQTT: the topic; `{camera_id}` and `{device_id}` are replaced.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// MQTT: QoS (0-2).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Envelopes held while the broker is away; beyond, the oldest are dropped (counted).
    #[serde(default = "default_buffer")]
    pub buffer: u64,
    /// Attach each frame as a base64 JPEG (`frame_data`).
    #[serde(default)]
    pub frame_data: bool,
    /// Save each frame under this folder and name it in `frame_ref` instead.
    #[serde(default)]
    pub frames_dir: String,
    /// Saved frames older than this many hours are removed (0: kept).
    #[serde(default = "default_frames_hours")]
    pub frames_retention_hours: u64,
    /// The camera: a source's settings (`kind`, `url` or `device`, `fps`, `model`,
    /// `classes`, `confidence`, `tracker`, ...; docs/SOURCES.md).
    pub source: Value,
}

fn default_stream() -> String {
    "detections".into()
}

fn default_max_len() -> u64 {
    100_000
}

fn default_topic() -> String {
    "detections/{camera_id}".into()
}

fn default_qos() -> u8 {
    1
}

fn default_buffer() -> u64 {
    10_000
}

fn default_frames_hours() -> u64 {
    24
}
