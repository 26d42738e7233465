//! Vision sources: where frames (or edge detections) come from, and the actor that turns
//! them into tracked objects and events for the sessions that listen.
//!
//! # Layout
//! - this file: [`SourceConfig`] (REST body and config file table) and its validation.
//! - [`capture`]: the capture threads (ffmpeg subprocess for files and streams; image
//!   folders; a synthetic test pattern).
//! - [`camera`]: V4L2 devices through the `v4l` crate (MJPEG, YUYV) and cameras on any
//!   platform through `nokhwa`.
//! - [`hub`]: every source by id, as the REST API and the configuration create them.
//! - [`actor`]: the [`CameraActor`](actor::CameraActor): capture → the model's
//!   `InferenceActor` → the source's `TrackerActor` (in [`crate::tracker::actor`]), with the
//!   counters both share and the capture's restarts.

pub mod actor;
pub mod camera;
pub mod capture;
pub mod hub;

use serde::{Deserialize, Serialize};

use crate::tracker::analytics::{AnalyticsConfig, Anchor, LineConfig, ZoneConfig};
use crate::tracker::TrackerConfig;
use crate::validation::Report;

/// Where a source's frames come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// No camera: edge devices post detections to `/api/v1/sources/{id}/detections`.
    External,
    /// A video file, decoded by ffmpeg (`url` is the path).
    File,
    /// An RTSP or HTTP stream, decoded by ffmpeg (`url`).
    Stream,
    /// A V4L2 camera (`device`, e.g. `/dev/video0`), read with the `v4l` crate.
    V4l2,
    /// A camera by index (`"0"`) or name on any platform, read with `nokhwa`.
    Camera,
    /// A folder of JPEG/PNG images replayed at `fps` (`url` is the folder).
    Folder,
    /// A generated test pattern: a square moving across the picture.
    Synthetic,
}

impl SourceKind {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::External => "external",
            Self::File => "file",
            Self::Stream => "stream",
            Self::V4l2 => "v4l2",
            Self::Camera => "camera",
            Self::Folder => "folder",
            Self::Synthetic => "synthetic",
        }
    }
}

/// One source, as `POST /api/v1/sources` takes it and `[[sources]]` declares it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Id (letters, digits, `_ . -`).
    pub id: String,
    /// Where frames come from.
    pub kind: SourceKind,
    /// File path, stream URL or folder.
    #[serde(default)]
    pub url: Option<String>,
    /// Set by the server when `server.media_dirs` confines file and folder sources: the
    /// `url` is then resolved, and a folder's images must resolve inside it.
    #[serde(skip)]
    pub confined: bool,
    /// Set by the server for the source of a registered device: its serial. Events of the
    /// source carry it, so device scopes and device listeners apply.
    #[serde(skip)]
    pub device_serial: Option<String>,
    /// Camera device path.
    #[serde(default)]
    pub device: Option<String>,
    /// Frames per second to capture and analyse.
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// Start a file or folder again at its end.
    #[serde(default, rename = "loop")]
    pub repeat: bool,
    /// Synthetic pattern size `[width, height]`.
    #[serde(default)]
    pub size: Option<[u32; 2]>,
    /// Detection model name (camera kinds; default: `inference.default_model`).
    #[serde(default)]
    pub model: Option<String>,
    /// Run detection on the frames (off: frames are captured and counted, nothing is
    /// detected or tracked, open tracks end; an external source refuses detections).
    #[serde(default = "default_true")]
    pub detect: bool,
    /// Only these classes are tracked (names or ids; empty: all).
    #[serde(default)]
    pub classes: Vec<String>,
    /// Detections scoring below this are not tracked (default: the model's threshold).
    #[serde(default)]
    pub confidence: Option<f32>,
    /// Tracker thresholds.
    #[serde(default)]
    pub tracker: TrackerConfig,
    /// External sources: keep the edge device's own `track_id`s (rebuild its tracks from
    /// them) instead of tracking its boxes again.
    #[serde(default, alias = "use_edge_track_ids")]
    pub edge_track_ids: bool,
    /// Counting lines.
    #[serde(default)]
    pub lines: Vec<LineConfig>,
    /// Polygon zones.
    #[serde(default)]
    pub zones: Vec<ZoneConfig>,
    /// The box point that stands for an object.
    #[serde(default)]
    pub anchor: Anchor,
    /// Band around a line, in pixels, that a crossing must clear.
    #[serde(default = "default_hysteresis")]
    pub hysteresis_px: f32,
    /// Emit a `detections` event (the seed-004 envelope) at most this often; 0: every frame.
    #[serde(default = "default_detections_every")]
    pub detections_every_ms: u64,
    /// Whether to emit `detections` events at all.
    #[serde(default = "default_true")]
    pub detections_events: bool,
    /// Attach the analysed frame as a base64 JPEG (`frame_data`) to `detections` events.
    #[serde(default)]
    pub frame_data: bool,
    /// Save each analysed frame of a `detections` event as a JPEG under this folder and
    /// name it in the envelope's `frame_ref` (`{dir}/{id}/{date}/frame-{HHMMSS.micros}-{n}.jpg`).
    #[serde(default)]
    pub frame_ref_dir: Option<String>,
    /// JPEG quality of `frame_data` (1-100).
    #[serde(default = "default_quality")]
    pub frame_quality: u8,
    /// `device_id` in the envelope (default: the source id).
    #[serde(default)]
    pub device_id: Option<String>,
    /// Files and streams: an ffmpeg that delivers no frame for this long (at least three
    /// frame periods) is killed and restarted.
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout_ms: u64,
}

fn default_fps() -> f64 {
    10.0
}

fn default_hysteresis() -> f32 {
    8.0
}

fn default_detections_every() -> u64 {
    1000
}

fn default_quality() -> u8 {
    85
}

fn default_true() -> bool {
    true
}

fn default_stall_timeout() -> u64 {
    10_000
}

/// Stream URL schemes ffmpeg is allowed to open (never `file:`, `concat:` and the like,
/// which would let a client read the server's files through a `stream` source).
pub const STREAM_SCHEMES: &[&str] = &[
    "rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp", "tcp",
];

/// The host and port a stream URL connects to; `None` for one that only receives (any
/// `udp://`, which binds a port and sends nothing; `tcp://…?listen=1`; an SRT listener).
/// A URL whose host or port cannot be read connects to `0.0.0.0:0`, which every policy
/// checks like any address.
pub fn stream_target(url: &str) -> Option<(String, u16)> {
    let scheme = url
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    let option = |key: &str| {
        let query = url.split_once('?').map_or("", |(_, q)| q);
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    };
    let receives = match scheme.as_str() {
        "udp" => true,
        "tcp" => option("listen").is_some_and(|v| v != "0"),
        "srt" => option("mode").is_some_and(|v| v == "listener"),
        _ => false,
    };
    if receives {
        return None;
    }
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Some(("0.0.0.0".into(), 0));
    };
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let host = if host.is_empty() {
        "0.0.0.0".into()
    } else {
        host
    };
    let port = parsed.port().or(match parsed.scheme() {
        "rtsp" => Some(554),
        "rtsps" => Some(322),
        "rtmp" => Some(1935),
        "rtmps" | "https" => Some(443),
        "http" => Some(80),
        _ => None,
    });
    Some((host, port.unwrap_or(0)))
}

/// Highest frame rate a source may ask for.
pub const MAX_FPS: f64 = 120.0;

impl SourceConfig {
    /// Lines, zones and anchoring as the analytics take them.
    pub fn analytics(&self) -> AnalyticsConfig {
        AnalyticsConfig {
            lines: self.lines.clone(),
            zones: self.zones.clone(),
            anchor: self.anchor,
            hysteresis_px: self.hysteresis_px,
        }
    }

    /// How long an ffmpeg may go without a frame.
    pub fn stall_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.stall_timeout_ms)
    }

    /// Every problem at once.
    pub fn validate(&self) -> Report {
        let mut r = Report::default();
        if let Err(e) = crate::session::spec::check_session_id(&self.id) {
            r.error(format!("id: {e}"));
        }
        if !(self.fps > 0.0 && self.fps <= MAX_FPS) {
            r.error(format!(
                "fps: {} must be above 0 and at most {MAX_FPS}",
                self.fps
            ));
        }
        match self.kind {
            SourceKind::File | SourceKind::Stream | SourceKind::Folder => {
                let url = self.url.as_deref().unwrap_or_default();
                if url.is_empty() {
                    r.error(format!("url: a {} source needs one", self.kind.as_str()));
                } else if url.starts_with('-') || url.chars().any(char::is_control) {
                    r.error(format!(
                        "url: {url:?} must not start with '-' or hold control characters"
                    ));
                } else if self.kind == SourceKind::Stream {
                    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
                    if !scheme.is_some_and(|s| STREAM_SCHEMES.contains(&s.as_str())) {
                        r.error(format!(
                            "url: {url:?} is not a stream URL; use one of {}:// (a file is a \"file\" source)",
                            STREAM_SCHEMES.join(", ")
                        ));
                    }
                }
            }
            SourceKind::V4l2 => {
                if self.device.as_deref().is_none_or(str::is_empty) {
                    r.error("device: a v4l2 source needs one, e.g. \"/dev/video0\"");
                }
            }
            SourceKind::Camera | SourceKind::External | SourceKind::Synthetic => {}
        }
        if let Some([w, h]) = self.size {
            if !(16..=4096).contains(&w) || !(16..=4096).contains(&h) {
                r.error(format!("size: [{w}, {h}] must be 16..4096 on each side"));
            }
        }
        if !(1..=100).contains(&self.frame_quality) {
            r.error(format!(
                "frame_quality: {} must be 1..100",
                self.frame_quality
            ));
        }
        if self.stall_timeout_ms < 1000 {
            r.error(format!(
                "stall_timeout_ms: {} is below the least of 1000",
                self.stall_timeout_ms
            ));
        }
        if self.confidence.is_some_and(|c| !(0.0..=1.0).contains(&c)) {
            r.error("confidence: must be between 0 and 1");
        }
        self.tracker.validate("tracker", &mut r);
        self.analytics().validate("", &mut r);
        // The analytics report paths start with "." when given an empty prefix.
        for e in r.errors.iter_mut() {
            if let Some(rest) = e.strip_prefix('.') {
                *e = rest.to_string();
            }
        }
        r
    }
}

#[cfg(test)]
mod stream_target_tests {
    use super::stream_target;

    #[test]
    fn only_urls_that_receive_escape_the_check() {
        for receiving in [
            "udp://@:5000",
            "udp://239.0.0.1:1234",
            "tcp://0.0.0.0:9000?listen=1",
            "srt://:7000?mode=listener",
        ] {
            assert_eq!(stream_target(receiving), None, "{receiving}");
        }
        for (url, host, port) in [
            (
                "http://169.254.169.254/latest/?listen",
                "169.254.169.254",
                80,
            ),
            ("http://0.0.0.0:8080/cam", "0.0.0.0", 8080),
            ("rtsp://[::]/x", "::", 554),
            ("tcp://10.0.0.5:9000?listen=0", "10.0.0.5", 9000),
            ("srt://cam.lab:7001?mode=caller", "cam.lab", 7001),
            ("rtsps://cam.lab/s", "cam.lab", 322),
        ] {
            assert_eq!(stream_target(url), Some((host.to_string(), port)), "{url}");
        }
        assert_eq!(stream_target("not a url"), Some(("0.0.0.0".into(), 0)));
    }
}
