//! Decoders for the YOLO family's single output tensor.
//!
//! - v8 / v11: `[1, 4 + classes, N]` (channels first, as exported by Ultralytics) or the
//!   transposed `[1, N, 4 + classes]`; a box is `cx, cy, w, h` then one score per class.
//! - v5: `[1, N, 5 + classes]`; `cx, cy, w, h, objectness`, then class probabilities, and
//!   a box's score is objectness times its best class probability.
//!
//! The class count comes from the shape. Boxes stay in input-tensor pixels here; the
//! detector suppresses overlaps and maps them back to the frame.

use super::nms::Candidate;
use super::{BBox, InferenceError, ModelKind};

/// How to read the output, fixed when the model is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// v8 (no objectness) or v5 (objectness).
    pub kind: ModelKind,
    /// Values per box: 4 (+1 for v5) + classes.
    pub channels: usize,
    /// Boxes.
    pub boxes: usize,
    /// Whether the channel axis comes before the box axis.
    pub channels_first: bool,
}

impl Layout {
    /// Reads the layout from an output shape (`-1` for dimensions not yet known).
    pub fn from_shape(kind: ModelKind, shape: &[i64]) -> Result<Self, InferenceError> {
        let dims: Vec<i64> = match shape {
            [1, a, b] | [-1, a, b] => vec![*a, *b],
            [a, b] => vec![*a, *b],
            _ => {
                return Err(InferenceError::Failed(format!(
                    "a {} output must be [1, C, N] or [1, N, C], got {shape:?}",
                    kind.as_str()
                )))
            }
        };
        let (a, b) = (dims[0], dims[1]);
        let base = if kind == ModelKind::Yolov5 { 5 } else { 4 };
        // Detection heads have far more boxes than channels; the shorter known axis holds
        // the channels. v5 exports put boxes first, v8/v11 exports channels first.
        let channels_first = match (a, b) {
            (a, b) if a > 0 && b > 0 => a < b,
            (a, _) if a > 0 => true,
            (_, b) if b > 0 => false,
            _ => kind != ModelKind::Yolov5,
        };
        let (channels, boxes) = if channels_first { (a, b) } else { (b, a) };
        if channels >= 0 && channels <= base {
            return Err(InferenceError::Failed(format!(
                "a {} output needs more than {base} values per box, got shape {shape:?}",
                kind.as_str()
            )));
        }
        Ok(Self {
            kind,
            channels: channels.max(0) as usize,
            boxes: boxes.max(0) as usize,
            channels_first,
        })
    }

    /// Classes per box.
    pub fn classes(&self) -> usize {
        self.channels - if self.kind == ModelKind::Yolov5 { 5 } else { 4 }
    }

    /// This layout with the sizes of an actual output.
    pub fn for_output(&self, shape: &[i64]) -> Result<Self, InferenceError> {
        let actual = Self::from_shape(self.kind, shape)?;
        if actual.channels != self.channels {
            return Err(InferenceError::Failed(format!(
                "output shape {shape:?} does not have {} values per box",
                self.channels
            )));
        }
        Ok(actual)
    }
}

/// Boxes scoring at least `confidence` among the `allowed` classes, in input pixels.
pub fn decode(
    layout: &Layout,
    output: &[f32],
    confidence: f32,
    allowed: Option<&[bool]>,
) -> Result<Vec<Candidate>, InferenceError> {
    let (channels, boxes) = (layout.channels, layout.boxes);
    if output.len() < channels * boxes {
        return Err(InferenceError::Failed(format!(
            "output has {} values, expected {channels} x {boxes}",
            output.len()
        )));
    }
    let at = |i: usize, c: usize| {
        if layout.channels_first {
            output[c * boxes + i]
        } else {
            output[i * channels + c]
        }
    };
    let first_class = if layout.kind == ModelKind::Yolov5 {
        5
    } else {
        4
    };
    let mut out = Vec::new();
    for i in 0..boxes {
        let objectness = if layout.kind == ModelKind::Yolov5 {
            let o = at(i, 4);
            if o < confidence {
                continue;
            }
            o
        } else {
            1.0
        };
        let mut best: Option<(usize, f32)> = None;
        for class in 0..channels - first_class {
            if allowed.is_some_and(|a| !a.get(class).copied().unwrap_or(false)) {
                continue;
            }
            let p = at(i, first_class + class);
            if best.is_none_or(|(_, s)| p > s) {
                best = Some((class, p));
            }
        }
        let Some((class, p)) = best else { continue };
        let score = p * objectness;
        if score < confidence {
            continue;
        }
        let (cx, cy, w, h) = (at(i, 0), at(i, 1), at(i, 2), at(i, 3));
        out.push(Candidate {
            bbox: BBox {
                x1: cx - w / 2.0,
                y1: cy - h / 2.0,
                x2: cx + w / 2.0,
                y2: cy + h / 2.0,
            },
            score,
            class_id: class as u32,
            index: i,
        });
    }
    Ok(out)
}

/// Class names from Ultralytics metadata: a Python dict literal like
/// `{0: 'person', 1: 'bicycle'}`. Returns names indexed by id, or `None` if unreadable.
pub fn parse_names(metadata: &str) -> Option<Vec<String>> {
    let body = metadata.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut names: Vec<(usize, String)> = Vec::new();
    let mut rest = body.trim_start();
    while !rest.is_empty() {
        let colon = rest.find(':')?;
        let id: usize = rest[..colon].trim().parse().ok()?;
        rest = rest[colon + 1..].trim_start();
        let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let end = rest[1..].find(quote)? + 1;
        names.push((id, rest[1..end].to_string()));
        rest = rest[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    let len = names.iter().map(|(id, _)| id + 1).max()?;
    let mut out: Vec<String> = (0..len).map(|i| format!("class_{i}")).collect();
    for (id, name) in names {
        out[id] = name;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v8_and_v5_layouts_from_their_shapes() {
        let v8 = Layout::from_shape(ModelKind::Yolov8, &[1, 84, 8400]).expect("v8");
        assert!(v8.channels_first);
        assert_eq!((v8.classes(), v8.boxes), (80, 8400));
        let v8_dynamic = Layout::from_shape(ModelKind::Yolov8, &[-1, 22, -1]).expect("dynamic");
        assert_eq!(v8_dynamic.classes(), 18);
        let v5 = Layout::from_shape(ModelKind::Yolov5, &[1, 25200, 85]).expect("v5");
        assert!(!v5.channels_first);
        assert_eq!(v5.classes(), 80);
        assert!(Layout::from_shape(ModelKind::Yolov8, &[1, 2, 3, 4]).is_err());
    }

    #[test]
    fn decodes_v8_boxes_with_thresholds_and_class_filter() {
        // Eight boxes, two classes, channels first: rows cx, cy, w, h, p0, p1.
        let boxes = 8;
        let mut output = vec![0.0f32; 6 * boxes];
        for (c, values) in [
            [50.0, 10.0],
            [50.0, 10.0],
            [20.0, 4.0],
            [10.0, 4.0],
            [0.9, 0.1],
            [0.2, 0.3],
        ]
        .iter()
        .enumerate()
        {
            output[c * boxes] = values[0];
            output[c * boxes + 1] = values[1];
        }
        let layout = Layout::from_shape(ModelKind::Yolov8, &[1, 6, 8]).expect("layout");
        assert!(layout.channels_first);
        let all = decode(&layout, &output, 0.25, None).expect("decode");
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[0].bbox,
            BBox {
                x1: 40.0,
                y1: 45.0,
                x2: 60.0,
                y2: 55.0
            }
        );
        assert_eq!((all[0].class_id, all[1].class_id), (0, 1));
        let only_1 = decode(&layout, &output, 0.25, Some(&[false, true])).expect("decode");
        assert_eq!(only_1.len(), 1);
        assert_eq!(only_1[0].score, 0.3);
    }

    #[test]
    fn v5_multiplies_objectness_into_the_score() {
        // Eight boxes of seven values; only the first has any objectness.
        let mut output = vec![0.0f32; 8 * 7];
        output[..7].copy_from_slice(&[10.0, 10.0, 4.0, 4.0, 0.5, 0.8, 0.1]);
        let layout = Layout::from_shape(ModelKind::Yolov5, &[1, 8, 7]).expect("layout");
        let got = decode(&layout, &output, 0.25, None).expect("decode");
        assert_eq!(got.len(), 1);
        assert!((got[0].score - 0.4).abs() < 1e-6);
    }

    #[test]
    fn parses_ultralytics_names() {
        let names = parse_names("{0: 'person', 1: \"bi, cycle\", 3: 'car'}").expect("names");
        assert_eq!(names, vec!["person", "bi, cycle", "class_2", "car"]);
        assert!(parse_names("not a dict").is_none());
    }
}
