//! From an RGB frame to a model's input tensor in one pass.
//!
//! Bilinear sampling with pixel centres at +0.5 (the convention of OpenCV's `INTER_LINEAR`,
//! which the models were trained with), written straight into the three planes of a CHW
//! `f32` tensor with the model's scaling, so no intermediate image is allocated. The
//! tensor buffer is owned by the caller and reused from frame to frame.

use super::{Frame, Roi};

/// Where the (cropped) frame lies in the input tensor: `input = (frame - roi) * scale + pad`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Horizontal scale from frame pixels to input pixels.
    pub scale_x: f32,
    /// Vertical scale.
    pub scale_y: f32,
    /// Left padding in input pixels.
    pub pad_x: f32,
    /// Top padding in input pixels.
    pub pad_y: f32,
    /// The analysed part of the frame.
    pub roi: Roi,
}

impl Placement {
    /// Maps a point of the input tensor back to frame pixels.
    pub fn to_frame(&self, x: f32, y: f32) -> (f32, f32) {
        (
            (x - self.pad_x) / self.scale_x + self.roi.x1 as f32,
            (y - self.pad_y) / self.scale_y + self.roi.y1 as f32,
        )
    }
}

/// How the frame is fitted into the input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fit {
    /// Keep the aspect ratio, centre, pad the rest with `value` (YOLO's letterbox).
    Letterbox {
        /// Padding value before scaling (114 for YOLO).
        value: f32,
    },
    /// Scale each axis to fill the input (CenterFace).
    Stretch,
}

/// The whole frame, or the configured region clipped to it.
pub fn effective_roi(frame: &Frame, roi: Option<Roi>) -> Roi {
    let full = Roi {
        x1: 0,
        y1: 0,
        x2: frame.width,
        y2: frame.height,
    };
    match roi {
        None => full,
        Some(r) => {
            let clipped = Roi {
                x1: r.x1.min(frame.width - 1),
                y1: r.y1.min(frame.height - 1),
                x2: r.x2.min(frame.width),
                y2: r.y2.min(frame.height),
            };
            if clipped.x2 <= clipped.x1 || clipped.y2 <= clipped.y1 {
                full
            } else {
                clipped
            }
        }
    }
}

/// Writes `roi` of `frame` into `tensor` (`3 x height x width`, resized to that length),
/// multiplying every value by `scale` (1/255 for YOLO, 1 for CenterFace).
pub fn fill_tensor(
    frame: &Frame,
    roi: Roi,
    width: u32,
    height: u32,
    fit: Fit,
    scale: f32,
    tensor: &mut Vec<f32>,
) -> Placement {
    let (src_w, src_h) = (roi.x2 - roi.x1, roi.y2 - roi.y1);
    let (dst_w, dst_h) = (width as usize, height as usize);
    let (new_w, new_h, left, top) = match fit {
        Fit::Stretch => (width, height, 0u32, 0u32),
        Fit::Letterbox { .. } => {
            let r = (width as f32 / src_w as f32).min(height as f32 / src_h as f32);
            let new_w = ((src_w as f32 * r).round() as u32).clamp(1, width);
            let new_h = ((src_h as f32 * r).round() as u32).clamp(1, height);
            let dw = (width - new_w) as f32 / 2.0;
            let dh = (height - new_h) as f32 / 2.0;
            // Rounding `d - 0.1` puts an odd leftover pixel on the right/bottom, as YOLO does.
            let left = (dw - 0.1).round().max(0.0) as u32;
            let top = (dh - 0.1).round().max(0.0) as u32;
            (new_w, new_h, left, top)
        }
    };
    let plane = dst_w * dst_h;
    tensor.clear();
    let fill = match fit {
        Fit::Letterbox { value } => value * scale,
        Fit::Stretch => 0.0,
    };
    tensor.resize(plane * 3, fill);

    // Per output column: the two source columns (as byte offsets) and the weight of the right.
    let fx = src_w as f32 / new_w as f32;
    let columns: Vec<(usize, usize, f32)> = (0..new_w)
        .map(|x| {
            let (a, b, w) = taps(x, fx, src_w);
            ((roi.x1 as usize + a) * 3, (roi.x1 as usize + b) * 3, w)
        })
        .collect();
    let fy = src_h as f32 / new_h as f32;
    let stride = frame.width as usize * 3;
    let rgb = &frame.rgb[..];
    let (r_plane, rest) = tensor.split_at_mut(plane);
    let (g_plane, b_plane) = rest.split_at_mut(plane);
    for y in 0..new_h {
        let (a, b, wy) = taps(y, fy, src_h);
        let row0 = &rgb[(roi.y1 as usize + a) * stride..][..stride];
        let row1 = &rgb[(roi.y1 as usize + b) * stride..][..stride];
        let out = (top + y) as usize * dst_w + left as usize;
        let rows = (
            &mut r_plane[out..out + new_w as usize],
            &mut g_plane[out..out + new_w as usize],
            &mut b_plane[out..out + new_w as usize],
        );
        for (i, &(c0, c1, wx)) in columns.iter().enumerate() {
            let w00 = (1.0 - wx) * (1.0 - wy);
            let w01 = wx * (1.0 - wy);
            let w10 = (1.0 - wx) * wy;
            let w11 = wx * wy;
            let sample = |k: usize| {
                (f32::from(row0[c0 + k]) * w00
                    + f32::from(row0[c1 + k]) * w01
                    + f32::from(row1[c0 + k]) * w10
                    + f32::from(row1[c1 + k]) * w11)
                    * scale
            };
            rows.0[i] = sample(0);
            rows.1[i] = sample(1);
            rows.2[i] = sample(2);
        }
    }
    Placement {
        scale_x: new_w as f32 / src_w as f32,
        scale_y: new_h as f32 / src_h as f32,
        pad_x: left as f32,
        pad_y: top as f32,
        roi,
    }
}

/// The two source indices around output index `i` and the weight of the second.
fn taps(i: u32, ratio: f32, len: u32) -> (usize, usize, f32) {
    let s = ((i as f32 + 0.5) * ratio - 0.5).max(0.0);
    let a = (s.floor() as u32).min(len - 1);
    let b = (a + 1).min(len - 1);
    let w = if a == len - 1 { 0.0 } else { s - a as f32 };
    (a as usize, b as usize, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: u32, height: u32) -> Frame {
        let mut rgb = Vec::new();
        for y in 0..height {
            for x in 0..width {
                rgb.extend_from_slice(&[(x * 10) as u8, (y * 10) as u8, 200]);
            }
        }
        Frame::from_rgb(width, height, rgb).expect("frame")
    }

    #[test]
    fn same_size_stretch_copies_pixels() {
        let frame = gradient(4, 3);
        let mut t = Vec::new();
        let roi = effective_roi(&frame, None);
        let p = fill_tensor(&frame, roi, 4, 3, Fit::Stretch, 1.0, &mut t);
        assert_eq!(p.scale_x, 1.0);
        assert_eq!(t.len(), 36);
        assert_eq!(t[4 + 2], 20.0, "R of (2, 1)");
        assert_eq!(t[12 + 4 + 2], 10.0, "G of (2, 1)");
        assert_eq!(t[24 + 5], 200.0, "B everywhere");
    }

    #[test]
    fn letterbox_centres_a_wide_frame_and_pads_with_the_value() {
        let frame = gradient(8, 4);
        let mut t = Vec::new();
        let roi = effective_roi(&frame, None);
        let p = fill_tensor(
            &frame,
            roi,
            8,
            8,
            Fit::Letterbox { value: 114.0 },
            1.0,
            &mut t,
        );
        assert_eq!((p.pad_x, p.pad_y), (0.0, 2.0));
        assert_eq!(t[0], 114.0, "top rows are padding");
        assert_eq!(t[2 * 8], 0.0, "first image row starts at y = 2");
        // A point of the input maps back to the frame.
        assert_eq!(p.to_frame(4.0, 4.0), (4.0, 2.0));
    }

    #[test]
    fn the_roi_is_what_gets_sampled_and_mapped_back() {
        let frame = gradient(10, 10);
        let roi = effective_roi(
            &frame,
            Some(Roi {
                x1: 5,
                y1: 2,
                x2: 9,
                y2: 6,
            }),
        );
        let mut t = Vec::new();
        let p = fill_tensor(&frame, roi, 4, 4, Fit::Stretch, 1.0, &mut t);
        assert_eq!(t[0], 50.0, "R of the roi's first pixel is frame x = 5");
        assert_eq!(t[16], 20.0, "G of the roi's first pixel is frame y = 2");
        assert_eq!(p.to_frame(0.0, 0.0), (5.0, 2.0));
    }
}
