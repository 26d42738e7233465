//! A loaded model and its full path for one frame: pre-process, run, decode, suppress.

use std::sync::Arc;
use std::time::Instant;

use ort::session::Session;
use ort::value::{TensorRef, ValueType};
use serde::Serialize;

use super::nms::{self, Candidate};
use super::preprocess::{self, Fit, Placement};
use super::runtime::Runtime;
use super::yolo::{self, Layout};
use super::{
    centerface, onnx_graph, BBox, DetectOptions, Detection, Detections, Frame, InferenceError,
    ModelConfig, ModelKind, Point, Timings,
};

/// YOLO input size when neither the model nor its metadata says.
const DEFAULT_YOLO_SIZE: u32 = 640;
/// CenterFace needs sides divisible by this.
const CENTERFACE_ALIGN: u32 = 32;
/// A model whose input follows the frame size gets at most this many pixels on the longer
/// side: a 40-megapixel upload must not ask ONNX Runtime for gigabytes of activations.
pub const MAX_FOLLOWING_SIDE: u32 = 1920;

/// One input or output of a model, as `/api/pipelines` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TensorInfo {
    /// Name in the graph.
    pub name: String,
    /// Element type.
    pub dtype: String,
    /// Dimensions; symbolic ones by name (`"batch"`, `"height"`).
    pub shape: Vec<serde_json::Value>,
}

/// What a loaded model is, read from the model file.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// Inputs.
    pub inputs: Vec<TensorInfo>,
    /// Outputs.
    pub outputs: Vec<TensorInfo>,
    /// Class names by id.
    pub classes: Vec<String>,
    /// `[width, height]` of the input tensor, or `None` when it follows the frame.
    pub input_size: Option<[u32; 2]>,
    /// Producer and version from the model's metadata, when present.
    pub producer: Option<String>,
}

enum Decoder {
    Yolo(Layout),
    CenterFace,
}

/// A model ready to run. Not thread-safe by design: one thread owns it.
pub struct Detector {
    name: Arc<str>,
    config: ModelConfig,
    session: Session,
    decoder: Decoder,
    info: ModelInfo,
    class_names: Vec<Arc<str>>,
    input_name: String,
    /// Reused input buffer: no allocation per frame once warm.
    tensor: Vec<f32>,
}

fn tensor_info(name: &str, dtype: &ValueType) -> TensorInfo {
    match dtype {
        ValueType::Tensor {
            ty,
            shape,
            dimension_symbols,
        } => TensorInfo {
            name: name.to_string(),
            dtype: format!("{ty}"),
            shape: shape
                .iter()
                .enumerate()
                .map(|(i, d)| match dimension_symbols.get(i) {
                    Some(symbol) if *d < 0 && !symbol.is_empty() => symbol.as_str().into(),
                    _ => (*d).into(),
                })
                .collect(),
        },
        other => TensorInfo {
            name: name.to_string(),
            dtype: format!("{other}"),
            shape: Vec::new(),
        },
    }
}

fn ort_error(what: &str) -> impl Fn(ort::Error) -> InferenceError + '_ {
    move |e| InferenceError::Failed(format!("{what}: {e}"))
}

impl Detector {
    /// Loads the model file of `config` into a session on `runtime`.
    pub fn load(runtime: &Runtime, config: &ModelConfig) -> Result<Self, InferenceError> {
        let unavailable = |reason: String| InferenceError::ModelUnavailable {
            model: config.name.clone(),
            reason,
        };
        let bytes = std::fs::read(&config.path).map_err(|e| {
            unavailable(format!(
                "cannot read {}: {e} (run `make assets` for the bundled models)",
                config.path.display()
            ))
        })?;
        let bytes = match config.kind {
            ModelKind::Centerface => onnx_graph::make_spatial_dims_dynamic(&bytes)
                .map_err(|e| unavailable(format!("{}: {e}", config.path.display())))?,
            _ => bytes,
        };
        let mut builder = Session::builder(&runtime.environment)
            .map_err(|e| unavailable(format!("cannot create a session: {e}")))?;
        if config.threads > 0 {
            builder = builder
                .with_intra_threads(config.threads)
                .map_err(|e| unavailable(format!("threads: {e}")))?;
        }
        let session = builder.commit_from_memory(&bytes).map_err(|e| {
            unavailable(format!(
                "ONNX Runtime cannot load {}: {e}",
                config.path.display()
            ))
        })?;

        let inputs: Vec<TensorInfo> = session
            .inputs()
            .iter()
            .map(|o| tensor_info(o.name(), o.dtype()))
            .collect();
        let outputs: Vec<TensorInfo> = session
            .outputs()
            .iter()
            .map(|o| tensor_info(o.name(), o.dtype()))
            .collect();
        let input = session
            .inputs()
            .first()
            .ok_or_else(|| unavailable("the model has no input".into()))?;
        let input_name = input.name().to_string();
        let input_shape: Vec<i64> = input
            .dtype()
            .tensor_shape()
            .map(|s| s.to_vec())
            .unwrap_or_default();
        if input_shape.len() != 4 || input_shape[1] > 0 && input_shape[1] != 3 {
            return Err(unavailable(format!(
                "expected one image input [batch, 3, height, width], got {input_shape:?}"
            )));
        }
        let (names_metadata, imgsz_metadata, producer) = match session.metadata() {
            Ok(m) => {
                let producer = m.producer().map(|p| match m.custom("version") {
                    Some(version) => format!("{p} {version}"),
                    None => p,
                });
                (m.custom("names"), m.custom("imgsz"), producer)
            }
            Err(_) => (None, None, None),
        };
        let output_shape = |i: usize| -> Vec<i64> {
            session
                .outputs()
                .get(i)
                .and_then(|o| o.dtype().tensor_shape().map(|s| s.to_vec()))
                .unwrap_or_default()
        };

        let (decoder, classes, input_size) = match config.kind {
            ModelKind::Yolov8 | ModelKind::Yolov5 => {
                let layout = Layout::from_shape(config.kind, &output_shape(0))
                    .map_err(|e| unavailable(e.to_string()))?;
                let count = layout.classes();
                let mut names = if config.class_names.is_empty() {
                    names_metadata
                        .as_deref()
                        .and_then(yolo::parse_names)
                        .unwrap_or_default()
                } else {
                    config.class_names.clone()
                };
                names.resize_with(count.max(names.len()), String::new);
                names.truncate(count);
                for (i, name) in names.iter_mut().enumerate() {
                    if name.is_empty() {
                        *name = format!("class_{i}");
                    }
                }
                let size = config
                    .input_size
                    .or_else(|| {
                        (input_shape[2] > 0 && input_shape[3] > 0)
                            .then(|| [input_shape[3] as u32, input_shape[2] as u32])
                    })
                    .or_else(|| {
                        let imgsz = imgsz_metadata.as_deref()?;
                        let v: Vec<u32> = imgsz
                            .trim_matches(|c| c == '[' || c == ']')
                            .split(',')
                            .filter_map(|p| p.trim().parse().ok())
                            .collect();
                        match v.as_slice() {
                            [h, w] => Some([*w, *h]),
                            [s] => Some([*s, *s]),
                            _ => None,
                        }
                    })
                    .unwrap_or([DEFAULT_YOLO_SIZE, DEFAULT_YOLO_SIZE]);
                (Decoder::Yolo(layout), names, Some(size))
            }
            ModelKind::Centerface => {
                let channels: Vec<i64> = (0..session.outputs().len())
                    .map(|i| output_shape(i).get(1).copied().unwrap_or(-1))
                    .collect();
                centerface::check_channels(&channels).map_err(|e| unavailable(e.to_string()))?;
                let names = if config.class_names.is_empty() {
                    vec!["face".to_string()]
                } else {
                    config.class_names.clone()
                };
                let size = config.input_size.map(|[w, h]| {
                    [
                        w.div_ceil(CENTERFACE_ALIGN) * CENTERFACE_ALIGN,
                        h.div_ceil(CENTERFACE_ALIGN) * CENTERFACE_ALIGN,
                    ]
                });
                (Decoder::CenterFace, names, size)
            }
        };
        let class_names = classes.iter().map(|n| Arc::from(n.as_str())).collect();
        Ok(Self {
            name: Arc::from(config.name.as_str()),
            config: config.clone(),
            session,
            decoder,
            info: ModelInfo {
                inputs,
                outputs,
                classes,
                input_size,
                producer,
            },
            class_names,
            input_name,
            tensor: Vec::new(),
        })
    }

    /// The model's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// What the model is.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The configuration it was loaded with.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The input tensor size for a frame: fixed, or the frame's own size aligned (scaled
    /// down first when its longer side is over [`MAX_FOLLOWING_SIDE`]).
    fn input_size(&self, roi_w: u32, roi_h: u32) -> (u32, u32) {
        match self.info.input_size {
            Some([w, h]) => (w, h),
            None => {
                let longer = roi_w.max(roi_h);
                let (w, h) = if longer > MAX_FOLLOWING_SIDE {
                    let r = MAX_FOLLOWING_SIDE as f32 / longer as f32;
                    (
                        ((roi_w as f32 * r).round() as u32).max(1),
                        ((roi_h as f32 * r).round() as u32).max(1),
                    )
                } else {
                    (roi_w, roi_h)
                };
                (
                    w.div_ceil(CENTERFACE_ALIGN) * CENTERFACE_ALIGN,
                    h.div_ceil(CENTERFACE_ALIGN) * CENTERFACE_ALIGN,
                )
            }
        }
    }

    /// Fills the input tensor for `frame`; returns the placement and the tensor size.
    fn prepare(&mut self, frame: &Frame) -> (Placement, u32, u32) {
        let roi = preprocess::effective_roi(frame, self.config.roi);
        let (w, h) = self.input_size(roi.x2 - roi.x1, roi.y2 - roi.y1);
        let (fit, scale) = match self.decoder {
            Decoder::Yolo(_) => (Fit::Letterbox { value: 114.0 }, 1.0 / 255.0),
            Decoder::CenterFace => (Fit::Stretch, 1.0),
        };
        let placement = preprocess::fill_tensor(frame, roi, w, h, fit, scale, &mut self.tensor);
        (placement, w, h)
    }

    /// Only `Session::run` on an already prepared input (for the benchmark).
    pub fn run_bare(&mut self, frame: &Frame) -> Result<f64, InferenceError> {
        let (_, w, h) = self.prepare(frame);
        let shape = [1usize, 3, h as usize, w as usize];
        let input = TensorRef::from_array_view((shape, self.tensor.as_slice()))
            .map_err(ort_error("cannot build the input tensor"))?;
        let started = Instant::now();
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => input])
            .map_err(ort_error("Session::run"))?;
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        drop(outputs);
        Ok(elapsed)
    }

    /// The full path for one frame.
    pub fn detect(
        &mut self,
        frame: &Frame,
        options: &DetectOptions,
    ) -> Result<Detections, InferenceError> {
        let confidence = options
            .confidence
            .unwrap_or_else(|| self.config.confidence());
        let filter = options.classes.as_ref().unwrap_or(&self.config.classes);
        let allowed = self.class_filter(filter)?;

        let started = Instant::now();
        let (placement, w, h) = self.prepare(frame);
        let prepared = Instant::now();

        let shape = [1usize, 3, h as usize, w as usize];
        let input = TensorRef::from_array_view((shape, self.tensor.as_slice()))
            .map_err(ort_error("cannot build the input tensor"))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => input])
            .map_err(ort_error("Session::run"))?;
        let ran = Instant::now();

        let (candidates, landmarks) = match &self.decoder {
            Decoder::Yolo(layout) => {
                let (shape, data) = outputs[0]
                    .try_extract_tensor::<f32>()
                    .map_err(ort_error("output 0"))?;
                let layout = layout.for_output(shape)?;
                let found = yolo::decode(&layout, data, confidence, allowed.as_deref())?;
                (found, Vec::new())
            }
            Decoder::CenterFace => {
                let mut slices = Vec::with_capacity(4);
                let mut grid = (0usize, 0usize);
                for i in 0..4 {
                    let (shape, data) = outputs[i]
                        .try_extract_tensor::<f32>()
                        .map_err(ort_error("CenterFace output"))?;
                    if let [_, _, gh, gw] = **shape {
                        grid = (gh.max(0) as usize, gw.max(0) as usize);
                    }
                    slices.push(data);
                }
                let out = centerface::Outputs {
                    height: grid.0,
                    width: grid.1,
                    heatmap: slices[0],
                    scale: slices[1],
                    offset: slices[2],
                    landmarks: slices[3],
                };
                let (found, points) = centerface::decode(&out, confidence, w as f32, h as f32)?;
                let found = match &allowed {
                    Some(a) if !a.first().copied().unwrap_or(false) => Vec::new(),
                    _ => found,
                };
                (found, points)
            }
        };
        let kept = nms::suppress(candidates, self.config.iou(), self.config.max_detections);
        let detections = kept
            .into_iter()
            .map(|c| to_detection(&self.class_names, &c, &placement, landmarks.get(c.index)))
            .collect();
        let finished = Instant::now();
        drop(outputs);

        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
        Ok(Detections {
            model: self.name.clone(),
            width: frame.width,
            height: frame.height,
            roi_applied: placement.roi,
            detections,
            timings: Timings {
                decode_ms: 0.0,
                preprocess_ms: ms(started, prepared),
                inference_ms: ms(prepared, ran),
                postprocess_ms: ms(ran, finished),
            },
        })
    }

    /// `allowed[class]` for a filter of names or ids; `None` keeps every class.
    fn class_filter(&self, filter: &[String]) -> Result<Option<Vec<bool>>, InferenceError> {
        if filter.is_empty() {
            return Ok(None);
        }
        let mut allowed = vec![false; self.class_names.len()];
        for wanted in filter {
            let index = wanted
                .parse::<usize>()
                .ok()
                .filter(|i| *i < allowed.len())
                .or_else(|| self.class_names.iter().position(|n| &**n == wanted));
            match index {
                Some(i) => allowed[i] = true,
                None => {
                    return Err(InferenceError::BadRequest(format!(
                        "model {:?} has no class {wanted:?} (classes: {})",
                        self.config.name,
                        self.info.classes.join(", ")
                    )))
                }
            }
        }
        Ok(Some(allowed))
    }
}

/// Maps a candidate from input pixels to the frame, clipped to the analysed region.
fn to_detection(
    class_names: &[Arc<str>],
    c: &Candidate,
    p: &Placement,
    points: Option<&[Point; 5]>,
) -> Detection {
    let (rx1, ry1, rx2, ry2) = (
        p.roi.x1 as f32,
        p.roi.y1 as f32,
        p.roi.x2 as f32,
        p.roi.y2 as f32,
    );
    let (x1, y1) = p.to_frame(c.bbox.x1, c.bbox.y1);
    let (x2, y2) = p.to_frame(c.bbox.x2, c.bbox.y2);
    Detection {
        class_id: c.class_id,
        class_name: class_names
            .get(c.class_id as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(format!("class_{}", c.class_id))),
        confidence: c.score,
        bbox: BBox {
            x1: x1.clamp(rx1, rx2),
            y1: y1.clamp(ry1, ry2),
            x2: x2.clamp(rx1, rx2),
            y2: y2.clamp(ry1, ry2),
        },
        landmarks: points.map(|pts| {
            pts.iter()
                .map(|pt| {
                    let (x, y) = p.to_frame(pt.x, pt.y);
                    Point { x, y }
                })
                .collect()
        }),
    }
}
