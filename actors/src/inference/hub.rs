//! Every configured model by name: started at boot, read by the REST routes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use super::actor::{InferenceActor, ModelState, ModelStatus, Shared};
use super::frame::ImageLimits;
use super::{runtime, InferenceError, ModelConfig};
use crate::validation::Report;

/// The `[inference]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceSettings {
    /// ONNX Runtime library; empty means `$ORT_DYLIB_PATH`, then
    /// `.cache/onnxruntime/libonnxruntime.so.1.32.0`.
    pub runtime_path: String,
    /// Model used when a request names none; empty means the first one.
    pub default_model: String,
    /// Largest image accepted by `/api/v1/detect` and each part of `/api/v1/batch`.
    pub max_image_bytes: usize,
    /// Largest decoded image in pixels.
    pub max_image_pixels: u64,
    /// Most images in one `/api/v1/batch`.
    pub max_batch_images: usize,
    /// How long a request waits for its result.
    pub request_timeout_ms: u64,
    /// The models to load at start.
    #[serde(default)]
    pub models: Vec<ModelConfig>,
}

impl InferenceSettings {
    /// Every problem at once.
    pub fn validate(&self) -> Report {
        let mut report = Report::default();
        let mut names = Vec::new();
        for (i, model) in self.models.iter().enumerate() {
            model.validate(&format!("inference.models[{i}]"), &mut report);
            if names.contains(&model.name) {
                report.error(format!(
                    "inference.models[{i}].name: {:?} is used twice",
                    model.name
                ));
            }
            names.push(model.name.clone());
        }
        if !self.default_model.is_empty() && !names.contains(&self.default_model) {
            report.error(format!(
                "inference.default_model: {:?} is not among the models ({})",
                self.default_model,
                names.join(", ")
            ));
        }
        if self.max_image_bytes < 1024 {
            report.error("inference.max_image_bytes: must be at least 1024");
        }
        if self.max_image_pixels < 1024 {
            report.error("inference.max_image_pixels: must be at least 1024");
        }
        if self.max_batch_images == 0 {
            report.error("inference.max_batch_images: must be at least 1");
        }
        if self.request_timeout_ms == 0 {
            report.error("inference.request_timeout_ms: must be at least 1");
        }
        for (i, model) in self.models.iter().enumerate() {
            if !model.path.is_file() {
                report.warn(format!(
                    "inference.models[{i}].path: {} does not exist yet (run `make assets` for the bundled models); model {:?} will not load",
                    model.path.display(),
                    model.name
                ));
            }
        }
        report
    }

    /// The decoding limits for requests.
    pub fn limits(&self) -> ImageLimits {
        ImageLimits {
            max_bytes: self.max_image_bytes,
            max_pixels: self.max_image_pixels,
        }
    }

    /// The library that will be loaded.
    pub fn library(&self) -> PathBuf {
        runtime::resolve_library(&self.runtime_path)
    }
}

/// One model as the hub holds it.
pub struct ModelHandle {
    /// The model's actor.
    pub addr: Addr<InferenceActor>,
    /// State shared with its thread.
    pub shared: Arc<Shared>,
    /// Its configuration.
    pub config: ModelConfig,
}

/// A model as `GET /api/pipelines` lists it.
#[derive(Debug, Serialize)]
pub struct ModelReport {
    /// Name.
    pub name: String,
    /// Decoder kind.
    pub kind: &'static str,
    /// Model file.
    pub path: String,
    /// Whether this is the default model.
    pub default: bool,
    /// State, error, inputs/outputs/classes.
    #[serde(flatten)]
    pub status: ModelStatus,
    /// Thresholds in effect.
    pub confidence: f32,
    /// NMS IoU threshold.
    pub iou: f32,
    /// Class filter (empty: all).
    pub class_filter: Vec<String>,
    /// Region of interest.
    pub roi: Option<super::Roi>,
    /// Counters.
    pub frames: FrameCounts,
}

/// Frame counters of one model.
#[derive(Debug, Serialize)]
pub struct FrameCounts {
    /// Run through the model.
    pub processed: u64,
    /// Replaced by a newer live frame before running.
    pub dropped: u64,
    /// Refused because the queue was full.
    pub rejected: u64,
    /// Failed.
    pub failed: u64,
    /// Requests and frames waiting now.
    pub waiting: usize,
    /// Mean `Session::run` time.
    pub mean_inference_ms: Option<f64>,
}

/// The models of this server.
pub struct ModelHub {
    models: BTreeMap<String, ModelHandle>,
    default: Option<String>,
    library: PathBuf,
}

impl ModelHub {
    /// Starts one actor (and thread) per configured model on `arbiter`. Loading happens
    /// in the background; until then the model's state is `loading`.
    pub fn start(settings: &InferenceSettings, arbiter: &ArbiterHandle) -> Self {
        let library = settings.library();
        let mut models = BTreeMap::new();
        for config in &settings.models {
            let (actor, shared) = InferenceActor::new(config.clone(), library.clone());
            let addr = InferenceActor::start_in_arbiter(arbiter, move |_| actor);
            models.insert(
                config.name.clone(),
                ModelHandle {
                    addr,
                    shared,
                    config: config.clone(),
                },
            );
        }
        let default = if settings.default_model.is_empty() {
            settings.models.first().map(|m| m.name.clone())
        } else {
            Some(settings.default_model.clone())
        };
        Self {
            models,
            default,
            library,
        }
    }

    /// The model called `name`, or the default one.
    pub fn get(&self, name: Option<&str>) -> Result<&ModelHandle, InferenceError> {
        let wanted = match name.filter(|n| !n.is_empty()) {
            Some(n) => n,
            None => self
                .default
                .as_deref()
                .ok_or_else(|| InferenceError::UnknownModel {
                    name: String::new(),
                    available: "none: add one under [[inference.models]]".into(),
                })?,
        };
        self.models
            .get(wanted)
            .ok_or_else(|| InferenceError::UnknownModel {
                name: wanted.to_string(),
                available: self.names(),
            })
    }

    /// Model names, comma-separated.
    pub fn names(&self) -> String {
        if self.models.is_empty() {
            "none".into()
        } else {
            self.models.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    }

    /// The library the models load from.
    pub fn library(&self) -> &PathBuf {
        &self.library
    }

    /// Whether every model is ready (for health).
    pub fn states(&self) -> Vec<(String, ModelState)> {
        self.models
            .iter()
            .map(|(name, m)| (name.clone(), m.shared.status().state))
            .collect()
    }

    /// Every model with its state and counters.
    pub fn reports(&self) -> Vec<ModelReport> {
        self.models
            .values()
            .map(|m| {
                let stats = &m.shared.stats;
                let processed = stats.processed.load(Ordering::Relaxed);
                let (requests, frames) = m.shared.waiting();
                ModelReport {
                    name: m.config.name.clone(),
                    kind: m.config.kind.as_str(),
                    path: m.config.path.display().to_string(),
                    default: self.default.as_deref() == Some(m.config.name.as_str()),
                    status: m.shared.status(),
                    confidence: m.config.confidence(),
                    iou: m.config.iou(),
                    class_filter: m.config.classes.clone(),
                    roi: m.config.roi,
                    frames: FrameCounts {
                        processed,
                        dropped: stats.dropped.load(Ordering::Relaxed),
                        rejected: stats.rejected.load(Ordering::Relaxed),
                        failed: stats.failed.load(Ordering::Relaxed),
                        waiting: requests + frames,
                        mean_inference_ms: (processed > 0).then(|| {
                            stats.inference_us.load(Ordering::Relaxed) as f64
                                / processed as f64
                                / 1e3
                        }),
                    },
                }
            })
            .collect()
    }
}
