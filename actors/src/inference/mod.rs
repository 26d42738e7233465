//! Object and face detection with ONNX Runtime: the model layer and the [`InferenceActor`].
//!
//! A model is configured by a [`ModelConfig`] (name, decoder kind, file, thresholds) and
//! loaded into a [`Detector`], which owns the `ort` session and runs the full path for one
//! frame: pre-process (letterbox or stretch, in one pass into a reused tensor), run, decode
//! the model's outputs, and non-maximum suppression. Input and output shapes, and class
//! names where the model carries them, are read from the model itself.
//!
//! Each model runs on a dedicated thread behind an [`InferenceActor`], so inference never
//! blocks the actix threads. Requests (REST `detect`, `batch`) queue in a bounded FIFO;
//! live frames from a source wait in a one-deep slot per source, where a newer frame
//! replaces the waiting one (latest frame wins) and the replaced one is counted as dropped.
//!
//! # Layout
//! - [`runtime`]: loads the ONNX Runtime library once, with errors that name the fix.
//! - [`frame`]: RGB frames and JPEG/PNG decoding with size limits.
//! - [`preprocess`]: bilinear resize into a CHW `f32` tensor (letterbox or stretch).
//! - [`yolo`], [`centerface`]: output decoders; [`nms`]: IoU suppression.
//! - [`onnx_graph`]: the one-time rewrite that makes CenterFace's fixed input dynamic.
//! - [`detector`]: a loaded model and its full path; [`actor`]: its thread and mailbox.
//! - [`envelope`]: the detection message envelope (`version`, `source`, `frame`,
//!   `detections`) that `analyze` writes and live sources will publish.
//! - [`hub`]: every configured model by name, as the server and `analyze` see them.

pub mod actor;
pub mod centerface;
pub mod detector;
pub mod envelope;
pub mod frame;
pub mod hub;
pub mod nms;
pub mod onnx_graph;
pub mod preprocess;
pub mod runtime;
pub mod yolo;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use actor::{DetectFrame, DetectImage, FrameDetected, InferenceActor};
pub use detector::Detector;
pub use frame::Frame;
pub use hub::ModelHub;

/// The decoder that reads a model's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// YOLOv8 / YOLO11 layout: one output `[1, 4 + classes, N]` (or transposed), boxes as
    /// centre and size, one score per class, no objectness.
    #[serde(alias = "yolov11", alias = "yolo11", alias = "yolo")]
    Yolov8,
    /// YOLOv5 layout: `[1, N, 5 + classes]` with an objectness score before the classes.
    Yolov5,
    /// CenterFace: heatmap, scale, offset and five landmarks on a stride-4 grid.
    Centerface,
}

impl ModelKind {
    /// The name used in configuration and in `/api/pipelines`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Yolov8 => "yolov8",
            Self::Yolov5 => "yolov5",
            Self::Centerface => "centerface",
        }
    }

    fn default_confidence(self) -> f32 {
        match self {
            Self::Yolov8 | Self::Yolov5 => 0.25,
            Self::Centerface => 0.5,
        }
    }

    fn default_iou(self) -> f32 {
        match self {
            Self::Yolov8 | Self::Yolov5 => 0.45,
            Self::Centerface => 0.3,
        }
    }
}

/// A rectangle of the frame in pixels: only this part is given to the model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roi {
    /// Left edge.
    pub x1: u32,
    /// Top edge.
    pub y1: u32,
    /// Right edge (exclusive).
    pub x2: u32,
    /// Bottom edge (exclusive).
    pub y2: u32,
}

/// One model as configured under `[[inference.models]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Name used by `?model=`, `analyze --model` and sources.
    pub name: String,
    /// Which decoder reads the outputs.
    pub kind: ModelKind,
    /// The `.onnx` file (relative paths are relative to the working directory).
    pub path: PathBuf,
    /// Lowest score kept (default 0.25 for YOLO, 0.5 for CenterFace).
    #[serde(default)]
    pub confidence: Option<f32>,
    /// IoU above which the weaker of two boxes of one class is suppressed (default 0.45 for
    /// YOLO, 0.3 for CenterFace).
    #[serde(default)]
    pub iou: Option<f32>,
    /// Keep only these classes (names or ids); empty keeps all.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Class names, overriding those in the model's metadata.
    #[serde(default)]
    pub class_names: Vec<String>,
    /// Model input `[width, height]`. Default: the model's fixed size, else its `imgsz`
    /// metadata, else 640x640 (YOLO); the frame's own size rounded up to 32 (CenterFace).
    #[serde(default)]
    pub input_size: Option<[u32; 2]>,
    /// Only this part of the frame is analysed.
    #[serde(default)]
    pub roi: Option<Roi>,
    /// Most detections returned per frame.
    #[serde(default = "default_max_detections")]
    pub max_detections: usize,
    /// ONNX Runtime intra-op threads; 0 lets ONNX Runtime choose (one per core).
    #[serde(default)]
    pub threads: usize,
    /// Requests that may wait for this model; more are refused with 503.
    #[serde(default = "default_request_queue")]
    pub request_queue: usize,
}

fn default_max_detections() -> usize {
    300
}

fn default_request_queue() -> usize {
    16
}

impl ModelConfig {
    /// A configuration with the kind's defaults (used by tests and benchmarks).
    pub fn new(name: &str, kind: ModelKind, path: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            kind,
            path: path.into(),
            confidence: None,
            iou: None,
            classes: Vec::new(),
            class_names: Vec::new(),
            input_size: None,
            roi: None,
            max_detections: default_max_detections(),
            threads: 0,
            request_queue: default_request_queue(),
        }
    }

    /// The confidence threshold in effect.
    pub fn confidence(&self) -> f32 {
        self.confidence
            .unwrap_or_else(|| self.kind.default_confidence())
    }

    /// The IoU threshold in effect.
    pub fn iou(&self) -> f32 {
        self.iou.unwrap_or_else(|| self.kind.default_iou())
    }

    /// Every problem with this model's configuration, prefixed with `at`.
    pub fn validate(&self, at: &str, report: &mut crate::validation::Report) {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            report.error(format!(
                "{at}.name: {:?} must be non-empty letters, digits, '-', '_' or '.'",
                self.name
            ));
        }
        for (key, value) in [("confidence", self.confidence), ("iou", self.iou)] {
            if let Some(v) = value {
                if !(0.0..=1.0).contains(&v) {
                    report.error(format!("{at}.{key}: {v} is not between 0 and 1"));
                }
            }
        }
        if let Some([w, h]) = self.input_size {
            if !(32..=8192).contains(&w) || !(32..=8192).contains(&h) {
                report.error(format!(
                    "{at}.input_size: [{w}, {h}] must be between 32 and 8192 on each side"
                ));
            }
        }
        if let Some(r) = self.roi {
            if r.x2 <= r.x1 || r.y2 <= r.y1 {
                report.error(format!(
                    "{at}.roi: x2 must exceed x1 and y2 must exceed y1, got {r:?}"
                ));
            }
        }
        if self.max_detections == 0 {
            report.error(format!("{at}.max_detections: must be at least 1"));
        }
        if self.request_queue == 0 {
            report.error(format!("{at}.request_queue: must be at least 1"));
        }
    }
}

/// Per-request changes to a model's configured behaviour.
#[derive(Debug, Clone, Default)]
pub struct DetectOptions {
    /// Overrides the confidence threshold.
    pub confidence: Option<f32>,
    /// Overrides the class filter (names or ids).
    pub classes: Option<Vec<String>>,
}

/// A point in frame pixels (a landmark or a box centre).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Horizontal position.
    pub x: f32,
    /// Vertical position.
    pub y: f32,
}

/// A box in frame pixels, corners inclusive of `x1,y1` and exclusive of `x2,y2`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    /// Left.
    pub x1: f32,
    /// Top.
    pub y1: f32,
    /// Right.
    pub x2: f32,
    /// Bottom.
    pub y2: f32,
}

impl BBox {
    /// Area (zero for an empty box).
    pub fn area(&self) -> f32 {
        (self.x2 - self.x1).max(0.0) * (self.y2 - self.y1).max(0.0)
    }

    /// Intersection over union with `other`.
    pub fn iou(&self, other: &BBox) -> f32 {
        let w = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let h = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }

    /// The centre point.
    pub fn center(&self) -> Point {
        Point {
            x: (self.x1 + self.x2) / 2.0,
            y: (self.y1 + self.y2) / 2.0,
        }
    }
}

/// One detected object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// Class index in the model's output.
    pub class_id: u32,
    /// Class name (from the model's metadata, the configuration, or `class_<id>`).
    pub class_name: Arc<str>,
    /// Score in 0..1.
    pub confidence: f32,
    /// Box in frame pixels.
    pub bbox: BBox,
    /// Face landmarks (eyes, nose, mouth corners) when the model gives them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub landmarks: Option<Vec<Point>>,
}

/// Where the time of one frame went, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Timings {
    /// JPEG/PNG decoding (zero for raw frames).
    pub decode_ms: f64,
    /// Resize and normalisation into the input tensor.
    pub preprocess_ms: f64,
    /// `Session::run`.
    pub inference_ms: f64,
    /// Output decoding and NMS.
    pub postprocess_ms: f64,
}

/// The result of one frame.
#[derive(Debug, Clone, Serialize)]
pub struct Detections {
    /// Model that produced it.
    pub model: Arc<str>,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// The part of the frame that was analysed.
    pub roi_applied: Roi,
    /// Detections, strongest first.
    pub detections: Vec<Detection>,
    /// Stage timings.
    pub timings: Timings,
}

/// Why a detection could not be made.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum InferenceError {
    /// The ONNX Runtime library could not be loaded.
    #[error("{0}")]
    Runtime(String),
    /// The model failed to load.
    #[error("model {model:?} is not available: {reason}")]
    ModelUnavailable {
        /// Model name.
        model: String,
        /// Why.
        reason: String,
    },
    /// No model has this name.
    #[error("no model named {name:?} (loaded: {available})")]
    UnknownModel {
        /// Requested name.
        name: String,
        /// Configured names.
        available: String,
    },
    /// The bytes are not a JPEG or PNG image.
    #[error("{0}")]
    NotAnImage(String),
    /// The image claims a supported format but cannot be decoded.
    #[error("{0}")]
    BadImage(String),
    /// The image is over a configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// The request is well-formed but asks for something impossible.
    #[error("{0}")]
    BadRequest(String),
    /// The model's queue is full.
    #[error("model {0:?} is busy: too many requests are waiting; retry later")]
    Busy(String),
    /// ONNX Runtime failed while running, or the outputs were not what the decoder expects.
    #[error("inference failed: {0}")]
    Failed(String),
    /// A live frame was replaced by a newer one of the same source before the model ran it.
    #[error("frame replaced by a newer one before the model ran it")]
    Superseded,
}
