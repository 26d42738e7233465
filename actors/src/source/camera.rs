//! Camera capture without ffmpeg: V4L2 devices through the `v4l` crate (MJPEG preferred,
//! YUYV otherwise) and any platform's cameras through `nokhwa`.
//!
//! Cameras deliver frames at their own rate; frames beyond the source's `fps` are skipped
//! here, before any conversion, so a 30 fps camera feeding a 5 fps source costs the
//! conversion of 5 frames a second.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::capture::{CaptureControl, FrameCaptured};
use super::SourceConfig;
use crate::inference::frame::{self, Frame, ImageLimits};

/// Decoding limits for MJPEG frames from a camera.
const MJPEG_LIMITS: ImageLimits = ImageLimits {
    max_bytes: 32 << 20,
    max_pixels: 40_000_000,
};

/// Lets through at most `fps` frames a second of a faster stream.
struct Gate {
    period: Duration,
    next: Instant,
}

impl Gate {
    fn new(fps: f64) -> Self {
        Self {
            period: Duration::from_secs_f64(1.0 / fps),
            next: Instant::now(),
        }
    }

    fn due(&mut self) -> bool {
        let now = Instant::now();
        if now < self.next {
            return false;
        }
        self.next = (self.next + self.period).max(now);
        true
    }
}

/// The error for a device path that does not exist.
pub fn missing_device(device: &str) -> String {
    format!("{device} not found: no such camera device (check `ls /dev/video*`)")
}

/// Captures from a V4L2 device with the `v4l` crate.
pub fn v4l2(
    config: &SourceConfig,
    frames: &Recipient<FrameCaptured>,
    control: &CaptureControl,
) -> Result<(), String> {
    use v4l::buffer::Type;
    use v4l::io::traits::CaptureStream;
    use v4l::prelude::*;
    use v4l::video::Capture;
    use v4l::FourCC;

    let device = config.device.clone().unwrap_or_default();
    if !Path::new(&device).exists() {
        return Err(missing_device(&device));
    }
    let dev = Device::with_path(&device).map_err(|e| format!("cannot open {device}: {e}"))?;
    let mut format = dev
        .format()
        .map_err(|e| format!("{device}: cannot read its format: {e}"))?;
    // MJPEG first: compressed frames allow full resolution at full rate over USB 2.
    let mut chosen = None;
    for fourcc in [b"MJPG", b"YUYV"] {
        format.fourcc = FourCC::new(fourcc);
        if let Ok(set) = dev.set_format(&format) {
            if set.fourcc == FourCC::new(fourcc) {
                chosen = Some(set);
                break;
            }
        }
    }
    let format = chosen.ok_or_else(|| format!("{device} offers neither MJPEG nor YUYV"))?;
    let _ = dev.set_params(&v4l::video::capture::Parameters::with_fps(
        config.fps.ceil() as u32,
    ));
    let mut stream = MmapStream::with_buffers(&dev, Type::VideoCapture, 4)
        .map_err(|e| format!("{device}: cannot start streaming: {e}"))?;
    let mjpeg = format.fourcc == FourCC::new(b"MJPG");
    let mut gate = Gate::new(config.fps);
    while !control.is_stopped() {
        let (data, _) = stream
            .next()
            .map_err(|e| format!("{device}: capture failed: {e}"))?;
        if !gate.due() {
            continue;
        }
        let frame = if mjpeg {
            frame::decode(data, &MJPEG_LIMITS).map_err(|e| format!("{device}: {e}"))?
        } else {
            let rgb = yuyv_to_rgb(data, format.width, format.height, format.stride)?;
            Frame::from_rgb(format.width, format.height, rgb).map_err(|e| e.to_string())?
        };
        frames.do_send(FrameCaptured(Arc::new(frame)));
    }
    Ok(())
}

/// Captures from a camera by index (`"0"`) or name with `nokhwa`.
pub fn native(
    config: &SourceConfig,
    frames: &Recipient<FrameCaptured>,
    control: &CaptureControl,
) -> Result<(), String> {
    use nokhwa::pixel_format::RgbFormat;
    use nokhwa::utils::{CameraIndex, RequestedFormat, RequestedFormatType};
    use nokhwa::Camera;

    let device = config.device.clone().unwrap_or_else(|| "0".into());
    let index = match device.parse::<u32>() {
        Ok(i) => CameraIndex::Index(i),
        Err(_) => CameraIndex::String(device.clone()),
    };
    let requested =
        RequestedFormat::new::<RgbFormat>(RequestedFormatType::AbsoluteHighestFrameRate);
    let mut camera = Camera::new(index, requested)
        .map_err(|e| format!("camera {device}: cannot open it (is one connected?): {e}"))?;
    camera
        .open_stream()
        .map_err(|e| format!("camera {device}: cannot start streaming: {e}"))?;
    let mut gate = Gate::new(config.fps);
    let result = loop {
        if control.is_stopped() {
            break Ok(());
        }
        let buffer = match camera.frame() {
            Ok(b) => b,
            Err(e) => break Err(format!("camera {device}: capture failed: {e}")),
        };
        if !gate.due() {
            continue;
        }
        let image = match buffer.decode_image::<RgbFormat>() {
            Ok(i) => i,
            Err(e) => break Err(format!("camera {device}: cannot decode a frame: {e}")),
        };
        let (w, h) = (image.width(), image.height());
        match Frame::from_rgb(w, h, image.into_raw()) {
            Ok(frame) => frames.do_send(FrameCaptured(Arc::new(frame))),
            Err(e) => break Err(e.to_string()),
        }
    };
    let _ = camera.stop_stream();
    result
}

/// YUYV (YUV 4:2:2, two pixels in four bytes: Y0 U Y1 V) to RGB, BT.601 limited range.
pub fn yuyv_to_rgb(data: &[u8], width: u32, height: u32, stride: u32) -> Result<Vec<u8>, String> {
    let (w, h) = (width as usize, height as usize);
    let stride = (stride as usize).max(w * 2);
    if data.len() < stride * (h - 1) + w * 2 || w % 2 != 0 {
        return Err(format!(
            "a {width}x{height} YUYV frame needs {} bytes, got {}",
            stride * h,
            data.len()
        ));
    }
    let mut rgb = Vec::with_capacity(w * h * 3);
    let convert = |y: u8, u: u8, v: u8| -> [u8; 3] {
        let c = (f32::from(y) - 16.0) * 1.164;
        let d = f32::from(u) - 128.0;
        let e = f32::from(v) - 128.0;
        let clamp = |x: f32| x.round().clamp(0.0, 255.0) as u8;
        [
            clamp(c + 1.596 * e),
            clamp(c - 0.392 * d - 0.813 * e),
            clamp(c + 2.017 * d),
        ]
    };
    for row in 0..h {
        let line = &data[row * stride..row * stride + w * 2];
        for px in line.chunks_exact(4) {
            rgb.extend_from_slice(&convert(px[0], px[1], px[3]));
            rgb.extend_from_slice(&convert(px[2], px[1], px[3]));
        }
    }
    Ok(rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_converts_white_black_and_red() {
        // Two pixels per group: white+black, then two reds.
        let data = [235, 128, 16, 128, 81, 90, 81, 240];
        let rgb = yuyv_to_rgb(&data, 4, 1, 8).expect("convert");
        assert_eq!(&rgb[0..3], &[255, 255, 255]);
        assert_eq!(&rgb[3..6], &[0, 0, 0]);
        let red = &rgb[6..9];
        assert!(red[0] > 240 && red[1] < 10 && red[2] < 10, "{red:?}");
        assert!(yuyv_to_rgb(&data[..6], 4, 1, 8).is_err(), "short frame");
    }

    #[test]
    fn the_gate_lets_through_at_most_fps() {
        let mut gate = Gate::new(10.0);
        assert!(gate.due());
        assert!(!gate.due(), "a second frame right away is skipped");
    }
}
