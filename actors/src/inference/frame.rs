//! RGB frames, and JPEG/PNG decoding with limits a client cannot get around.
//!
//! A frame's pixels are shared [`Bytes`]: a camera frame handed to several consumers is
//! never copied.

use std::io::Cursor;

use bytes::Bytes;
use image::{ImageFormat, ImageReader, Limits};

use super::InferenceError;

/// An 8-bit RGB image, rows top to bottom, no padding between rows.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub rgb: Bytes,
}

impl Frame {
    /// A frame from raw RGB bytes; the length must match the size.
    pub fn from_rgb(
        width: u32,
        height: u32,
        rgb: impl Into<Bytes>,
    ) -> Result<Self, InferenceError> {
        let rgb = rgb.into();
        let expected = width as usize * height as usize * 3;
        if width == 0 || height == 0 || rgb.len() != expected {
            return Err(InferenceError::BadImage(format!(
                "a {width}x{height} RGB frame has {expected} bytes, got {}",
                rgb.len()
            )));
        }
        Ok(Self { width, height, rgb })
    }
}

/// Limits on what [`decode`] accepts.
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    /// Largest encoded size in bytes.
    pub max_bytes: usize,
    /// Largest decoded size in pixels (guards against decompression bombs).
    pub max_pixels: u64,
}

/// The format of `bytes` from its first bytes, if it is one we decode.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else {
        None
    }
}

/// Checks size and format without decoding: what a request handler can refuse at once.
pub fn check(bytes: &[u8], limits: &ImageLimits) -> Result<ImageFormat, InferenceError> {
    if bytes.is_empty() {
        return Err(InferenceError::BadRequest(
            "the request has no image: send a JPEG or PNG as the body or as a multipart file"
                .into(),
        ));
    }
    if bytes.len() > limits.max_bytes {
        return Err(InferenceError::TooLarge(format!(
            "the image has {} bytes, over the limit of {} (inference.max_image_bytes)",
            bytes.len(),
            limits.max_bytes
        )));
    }
    sniff(bytes).ok_or_else(|| {
        InferenceError::NotAnImage(
            "the body is not a JPEG or PNG image (checked by its first bytes)".into(),
        )
    })
}

/// Decodes a JPEG or PNG into an RGB frame.
pub fn decode(bytes: &[u8], limits: &ImageLimits) -> Result<Frame, InferenceError> {
    let format = check(bytes, limits)?;
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(InferenceError::BadImage(
            "the JPEG is truncated: it has no end-of-image marker after its scan data".into(),
        ));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut image_limits = Limits::default();
    // The decoder refuses anything whose pixel buffer would pass this, before allocating.
    image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(4));
    reader.limits(image_limits.clone());
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| InferenceError::BadImage(format!("cannot read the image header: {e}")))?;
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(InferenceError::TooLarge(format!(
            "the image is {width}x{height} pixels, over the limit of {} (inference.max_image_pixels)",
            limits.max_pixels
        )));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(image_limits);
    let image = reader
        .decode()
        .map_err(|e| InferenceError::BadImage(format!("cannot decode the image: {e}")))?;
    let rgb = image.into_rgb8();
    let (width, height) = rgb.dimensions();
    Frame::from_rgb(width, height, rgb.into_raw())
}

/// Whether a JPEG has an end-of-image marker after its first scan. The decoder would
/// quietly fill a cut-off image with grey; a client deserves to hear it was cut off.
/// Inside scan data every 0xFF byte is followed by 0x00, so 0xFF 0xD9 there is the marker.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let Some(scan) = bytes.windows(2).position(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    bytes[scan..].windows(2).any(|w| w == [0xFF, 0xD9])
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ImageLimits = ImageLimits {
        max_bytes: 1 << 20,
        max_pixels: 1 << 20,
    };

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image =
            image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Cursor::new(Vec::new());
        image
            .write_to(&mut out, ImageFormat::Png)
            .expect("encode png");
        out.into_inner()
    }

    #[test]
    fn decodes_a_png_to_rgb() {
        let frame = decode(&png(4, 3), &LIMITS).expect("decode");
        assert_eq!((frame.width, frame.height), (4, 3));
        // Pixel (2, 1) is at byte (1 * 4 + 2) * 3.
        assert_eq!(&frame.rgb[18..21], &[2, 1, 7]);
    }

    #[test]
    fn refuses_empty_text_and_truncated_input() {
        assert!(matches!(
            decode(b"", &LIMITS),
            Err(InferenceError::BadRequest(_))
        ));
        assert!(matches!(
            decode(b"hello world", &LIMITS),
            Err(InferenceError::NotAnImage(_))
        ));
        let truncated = &png(64, 64)[..60];
        assert!(matches!(
            decode(truncated, &LIMITS),
            Err(InferenceError::BadImage(_))
        ));

        let image = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let mut jpeg = Cursor::new(Vec::new());
        image
            .write_to(&mut jpeg, ImageFormat::Jpeg)
            .expect("encode jpeg");
        let jpeg = jpeg.into_inner();
        assert!(decode(&jpeg, &LIMITS).is_ok());
        let cut = &jpeg[..jpeg.len() - 40];
        assert!(matches!(
            decode(cut, &LIMITS),
            Err(InferenceError::BadImage(_))
        ));
    }

    #[test]
    fn refuses_images_over_the_limits() {
        let small = ImageLimits {
            max_bytes: 1 << 20,
            max_pixels: 100,
        };
        assert!(matches!(
            decode(&png(20, 20), &small),
            Err(InferenceError::TooLarge(_))
        ));
        let tiny = ImageLimits {
            max_bytes: 10,
            max_pixels: 1 << 20,
        };
        assert!(matches!(
            decode(&png(2, 2), &tiny),
            Err(InferenceError::TooLarge(_))
        ));
    }
}
