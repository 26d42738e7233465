//! The detection message envelope users already consume (seed 004): `version`, `source`,
//! `frame`, `detections`. `analyze` writes one per frame; live sources will publish the
//! same shape, with track ids, as `detections` events.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::{BBox, Detection, Detections, Point, Roi};

/// Envelope version.
pub const VERSION: u32 = 1;

/// Where a frame came from.
#[derive(Debug, Clone, Serialize)]
pub struct SourceInfo {
    /// The machine (or edge device) that produced the frame.
    pub device_id: String,
    /// The camera, file or source id.
    pub camera_id: String,
    /// When the frame was analysed, RFC 3339 with milliseconds.
    pub timestamp: String,
}

impl SourceInfo {
    /// A source stamped now.
    pub fn new(device_id: &str, camera_id: &str, at: DateTime<Utc>) -> Self {
        Self {
            device_id: device_id.to_string(),
            camera_id: camera_id.to_string(),
            timestamp: at.to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }
}

/// The frame a message is about.
#[derive(Debug, Clone, Serialize)]
pub struct FrameInfo {
    /// Frame number within the source, from 0.
    pub number: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The analysed part of the frame.
    pub roi_applied: Roi,
    /// Position in the video, in milliseconds (videos only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<f64>,
    /// File name (image folders and single images).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// One detection in the envelope.
#[derive(Debug, Clone, Serialize)]
pub struct EnvelopeDetection {
    /// Track id, once a tracker has assigned one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
    /// Class index.
    pub class_id: u32,
    /// Class name.
    pub class_name: String,
    /// Score.
    pub confidence: f32,
    /// Box in frame pixels.
    pub bbox: BBox,
    /// Box centre.
    pub center: Point,
    /// The track's centre in the previous envelope it was in (tracked detections only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_center: Option<Point>,
    /// Face landmarks, when the model gives them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub landmarks: Option<Vec<Point>>,
}

impl From<&Detection> for EnvelopeDetection {
    fn from(d: &Detection) -> Self {
        Self {
            track_id: None,
            previous_center: None,
            class_id: d.class_id,
            class_name: d.class_name.to_string(),
            confidence: d.confidence,
            bbox: d.bbox,
            center: d.bbox.center(),
            landmarks: d.landmarks.clone(),
        }
    }
}

/// The analysed frame, attached to a message when a source asks for it.
#[derive(Debug, Clone, Serialize)]
pub struct FrameData {
    /// Always `jpeg`.
    pub encoding: &'static str,
    /// JPEG quality.
    pub quality: u8,
    /// The JPEG, base64.
    pub base64: String,
}

/// A whole message.
#[derive(Debug, Clone, Serialize)]
pub struct DetectionMessage {
    /// Always [`VERSION`].
    pub version: u32,
    /// Where the frame came from.
    pub source: SourceInfo,
    /// The frame.
    pub frame: FrameInfo,
    /// The model that produced the detections.
    pub model: String,
    /// Detections, strongest first.
    pub detections: Vec<EnvelopeDetection>,
    /// The frame itself, when the source is configured to attach it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_data: Option<FrameData>,
    /// Where the frame was saved instead (`{"type": "file", "path"}`), when the source
    /// saves its frames (`frame_ref_dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_ref: Option<serde_json::Value>,
}

impl DetectionMessage {
    /// The envelope of one frame's result.
    pub fn new(source: SourceInfo, number: u64, result: &Detections) -> Self {
        Self {
            version: VERSION,
            source,
            frame: FrameInfo {
                number,
                width: result.width,
                height: result.height,
                roi_applied: result.roi_applied,
                time_ms: None,
                file: None,
            },
            model: result.model.to_string(),
            detections: result
                .detections
                .iter()
                .map(EnvelopeDetection::from)
                .collect(),
            frame_data: None,
            frame_ref: None,
        }
    }
}
