//! The CenterFace decoder: faces as peaks of a stride-4 heatmap.
//!
//! The model has four outputs on a grid a quarter of the input size, in this order:
//! heatmap `[1, 1, h, w]` (face-centre probability), scale `[1, 2, h, w]` (log of height
//! and width over 4), offset `[1, 2, h, w]` (sub-cell centre offset, y then x) and
//! landmarks `[1, 10, h, w]` (five points as (y, x) pairs relative to the box's top-left
//! corner, in units of box size). The input is RGB in 0..255, any size divisible by 32.

use super::nms::Candidate;
use super::{BBox, InferenceError, Point};

/// Grid cells per input pixel.
const STRIDE: f32 = 4.0;

/// The four outputs of one run, as flat slices of one `h x w` grid.
pub struct Outputs<'a> {
    /// Grid height.
    pub height: usize,
    /// Grid width.
    pub width: usize,
    /// `[h*w]`.
    pub heatmap: &'a [f32],
    /// `[2*h*w]`.
    pub scale: &'a [f32],
    /// `[2*h*w]`.
    pub offset: &'a [f32],
    /// `[10*h*w]`.
    pub landmarks: &'a [f32],
}

/// Checks that the outputs have the channel counts CenterFace has.
pub fn check_channels(channels: &[i64]) -> Result<(), InferenceError> {
    if channels == [1, 2, 2, 10] {
        Ok(())
    } else {
        Err(InferenceError::Failed(format!(
            "a CenterFace model has four outputs with 1, 2, 2 and 10 channels, this one has {channels:?}"
        )))
    }
}

/// Faces over `threshold`, in input pixels, with their landmarks (indexed by
/// `Candidate::index` in the returned vector), clipped to `input_w x input_h`.
pub fn decode(
    out: &Outputs<'_>,
    threshold: f32,
    input_w: f32,
    input_h: f32,
) -> Result<(Vec<Candidate>, Vec<[Point; 5]>), InferenceError> {
    let cells = out.height * out.width;
    if out.heatmap.len() < cells
        || out.scale.len() < 2 * cells
        || out.offset.len() < 2 * cells
        || out.landmarks.len() < 10 * cells
    {
        return Err(InferenceError::Failed(
            "CenterFace outputs are smaller than their grid".into(),
        ));
    }
    let mut candidates = Vec::new();
    let mut landmarks = Vec::new();
    for row in 0..out.height {
        for col in 0..out.width {
            let cell = row * out.width + col;
            let score = out.heatmap[cell];
            if score <= threshold {
                continue;
            }
            let h = out.scale[cell].exp() * STRIDE;
            let w = out.scale[cells + cell].exp() * STRIDE;
            let (dy, dx) = (out.offset[cell], out.offset[cells + cell]);
            let x1 = ((col as f32 + dx + 0.5) * STRIDE - w / 2.0).clamp(0.0, input_w);
            let y1 = ((row as f32 + dy + 0.5) * STRIDE - h / 2.0).clamp(0.0, input_h);
            let bbox = BBox {
                x1,
                y1,
                x2: (x1 + w).min(input_w),
                y2: (y1 + h).min(input_h),
            };
            let mut points = [Point { x: 0.0, y: 0.0 }; 5];
            for (j, point) in points.iter_mut().enumerate() {
                *point = Point {
                    x: out.landmarks[(2 * j + 1) * cells + cell] * w + x1,
                    y: out.landmarks[2 * j * cells + cell] * h + y1,
                };
            }
            candidates.push(Candidate {
                bbox,
                score,
                class_id: 0,
                index: landmarks.len(),
            });
            landmarks.push(points);
        }
    }
    Ok((candidates, landmarks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_peak_becomes_a_face_with_landmarks() {
        // A 2x2 grid with one peak at row 1, col 0.
        let heatmap = [0.1, 0.0, 0.9, 0.0];
        // log(8/4) = ln 2: an 8x8 box.
        let ln2 = 2f32.ln();
        let scale = [0.0, 0.0, ln2, 0.0, 0.0, 0.0, ln2, 0.0];
        let offset = [0.0; 8];
        let mut landmarks = [0.0f32; 40];
        // Landmark 0: (y, x) = (0.25, 0.5) of the box.
        landmarks[2] = 0.25;
        landmarks[4 + 2] = 0.5;
        let out = Outputs {
            height: 2,
            width: 2,
            heatmap: &heatmap,
            scale: &scale,
            offset: &offset,
            landmarks: &landmarks,
        };
        let (faces, points) = decode(&out, 0.5, 100.0, 100.0).expect("decode");
        assert_eq!(faces.len(), 1);
        // Centre (0.5 * 4, 1.5 * 4) = (2, 6); 8x8 box, clipped at 0 on the left.
        assert_eq!(
            faces[0].bbox,
            BBox {
                x1: 0.0,
                y1: 2.0,
                x2: 8.0,
                y2: 10.0
            }
        );
        assert_eq!(points[0][0], Point { x: 4.0, y: 4.0 });
    }
}
