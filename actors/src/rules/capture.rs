//! The frame an event was raised on, as a JPEG with the object's box and the event's line
//! or zone drawn, and a small thumbnail of it for digests.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use bytes::Bytes;
use image::{Rgb, RgbImage};
use serde_json::Value;

use crate::messages::FrameRef;
use crate::tracker::analytics::{ConfigPoint, LineConfig, ZoneConfig};

/// Lines and zones of the source, to draw the one an event is about.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    /// The source's lines.
    pub lines: Vec<LineConfig>,
    /// The source's zones.
    pub zones: Vec<ZoneConfig>,
}

const BOX: Rgb<u8> = Rgb([255, 40, 40]);
const SHAPE: Rgb<u8> = Rgb([255, 210, 0]);
/// JPEG quality of captures.
pub const QUALITY: u8 = 85;
/// Width of a digest thumbnail.
pub const THUMBNAIL_WIDTH: u32 = 240;

/// The frame as pixels. `frame_ref_dirs` are the folders a `frame_ref` may name (an edge
/// must not make the server read files elsewhere).
pub fn decode(frame: &FrameRef, frame_ref_dirs: &[PathBuf]) -> Result<RgbImage, String> {
    match frame {
        FrameRef::Rgb(f) => RgbImage::from_raw(f.width, f.height, f.rgb.to_vec())
            .ok_or_else(|| "the frame's size does not match its pixels".to_string()),
        FrameRef::Base64Jpeg(b64) => {
            let jpeg = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| format!("frame_data is not base64: {e}"))?;
            image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
                .map(|i| i.to_rgb8())
                .map_err(|e| format!("frame_data is not a JPEG: {e}"))
        }
        FrameRef::File(path) => {
            let resolved = std::fs::canonicalize(path)
                .map_err(|_| format!("frame_ref {} cannot be read", path.display()))?;
            if !frame_ref_dirs.iter().any(|d| resolved.starts_with(d)) {
                return Err(format!(
                    "frame_ref {} is outside rules.frame_ref_dirs",
                    path.display()
                ));
            }
            image::open(&resolved)
                .map(|i| i.to_rgb8())
                .map_err(|e| format!("frame_ref {}: {e}", path.display()))
        }
    }
}

/// The frame as a JPEG (an edge's own JPEG as it came), for the snapshot route.
pub fn frame_jpeg(
    frame: &FrameRef,
    frame_ref_dirs: &[PathBuf],
    quality: u8,
) -> Result<Bytes, String> {
    if let FrameRef::Base64Jpeg(b64) = frame {
        return base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map(Bytes::from)
            .map_err(|e| format!("frame_data is not base64: {e}"));
    }
    jpeg(&decode(frame, frame_ref_dirs)?, quality)
}

/// The capture of an event: the frame, its box (`data.bbox`) and its line or zone drawn.
pub fn render(image: &mut RgbImage, data: &Value, overlay: &Overlay) {
    let (w, h) = (image.width() as f32, image.height() as f32);
    let resolve = |p: &ConfigPoint| Some((p[0].resolve(w)?, p[1].resolve(h)?));
    if let Some(id) = data.get("line_id").and_then(Value::as_str) {
        if let Some(line) = overlay.lines.iter().find(|l| l.id == id) {
            if let (Some(a), Some(b)) = (resolve(&line.points[0]), resolve(&line.points[1])) {
                thick_line(image, a, b, SHAPE, 3);
            }
        }
    }
    if let Some(id) = data.get("zone_id").and_then(Value::as_str) {
        if let Some(zone) = overlay.zones.iter().find(|z| z.id == id) {
            let points: Vec<(f32, f32)> = zone.points.iter().filter_map(resolve).collect();
            for i in 0..points.len() {
                thick_line(image, points[i], points[(i + 1) % points.len()], SHAPE, 2);
            }
        }
    }
    let b = &data["bbox"];
    if let (Some(x1), Some(y1), Some(x2), Some(y2)) = (
        b["x1"].as_f64(),
        b["y1"].as_f64(),
        b["x2"].as_f64(),
        b["y2"].as_f64(),
    ) {
        let (x1, y1, x2, y2) = (x1 as f32, y1 as f32, x2 as f32, y2 as f32);
        thick_line(image, (x1, y1), (x2, y1), BOX, 3);
        thick_line(image, (x2, y1), (x2, y2), BOX, 3);
        thick_line(image, (x2, y2), (x1, y2), BOX, 3);
        thick_line(image, (x1, y2), (x1, y1), BOX, 3);
    }
}

/// A line `width` pixels thick, clipped to the image.
fn thick_line(image: &mut RgbImage, a: (f32, f32), b: (f32, f32), color: Rgb<u8>, width: i32) {
    let steps = (b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil().max(1.0) as i32;
    let (w, h) = (image.width() as i32, image.height() as i32);
    let half = width / 2;
    for s in 0..=steps {
        let t = s as f32 / steps as f32;
        let x = (a.0 + (b.0 - a.0) * t).round() as i32;
        let y = (a.1 + (b.1 - a.1) * t).round() as i32;
        for dx in -half..=half {
            for dy in -half..=half {
                let (px, py) = (x + dx, y + dy);
                if px >= 0 && py >= 0 && px < w && py < h {
                    image.put_pixel(px as u32, py as u32, color);
                }
            }
        }
    }
}

/// JPEG bytes of `image`.
pub fn jpeg(image: &RgbImage, quality: u8) -> Result<Bytes, String> {
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
    image::ImageEncoder::write_image(
        encoder,
        image.as_raw(),
        image.width(),
        image.height(),
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| e.to_string())?;
    Ok(Bytes::from(out))
}

/// A small copy for digests.
pub fn thumbnail(image: &RgbImage) -> Result<Bytes, String> {
    let width = THUMBNAIL_WIDTH.min(image.width()).max(1);
    let height =
        ((image.height() as u64 * width as u64) / image.width().max(1) as u64).max(1) as u32;
    let small = image::imageops::thumbnail(image, width, height);
    jpeg(&small, 75)
}

/// Deletes the oldest captures under `dir` beyond `max_bytes` in all, and those older
/// than `max_age`; empty folders go too. What was removed (files, bytes).
pub fn prune(dir: &Path, max_age: std::time::Duration, max_bytes: u64) -> (usize, u64) {
    let mut files = Vec::new();
    collect(dir, &mut files);
    let now = std::time::SystemTime::now();
    files.sort_by_key(|(_, modified, _)| *modified);
    let mut total: u64 = files.iter().map(|(_, _, size)| size).sum();
    let (mut removed, mut freed) = (0, 0);
    for (path, modified, size) in files {
        let old = now.duration_since(modified).unwrap_or_default() > max_age;
        if (old || total > max_bytes) && std::fs::remove_file(&path).is_ok() {
            total -= size;
            removed += 1;
            freed += size;
        }
    }
    remove_empty(dir);
    (removed, freed)
}

/// The `n` newest JPEGs under `dir`: their path relative to it, when written, size.
pub fn newest(dir: &Path, n: usize) -> Vec<(String, std::time::SystemTime, u64)> {
    let mut files = Vec::new();
    collect(dir, &mut files);
    files.retain(|(p, _, _)| p.extension().is_some_and(|e| e == "jpg"));
    files.sort_by_key(|f| std::cmp::Reverse(f.1));
    files
        .into_iter()
        .take(n)
        .filter_map(|(p, at, size)| {
            let relative = p.strip_prefix(dir).ok()?.to_str()?.to_string();
            Some((relative, at, size))
        })
        .collect()
}

/// A capture named by its path relative to `dir`, if it is one: no way out of `dir`.
pub fn read_capture(dir: &Path, relative: &str) -> Result<Vec<u8>, String> {
    let clean = Path::new(relative)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !clean || !relative.ends_with(".jpg") {
        return Err(format!("{relative:?} is not a capture"));
    }
    let root = std::fs::canonicalize(dir).map_err(|_| "no captures yet".to_string())?;
    let path = std::fs::canonicalize(root.join(relative))
        .map_err(|_| format!("no capture {relative:?}"))?;
    if !path.starts_with(&root) {
        return Err(format!("{relative:?} is not a capture"));
    }
    std::fs::read(&path).map_err(|_| format!("no capture {relative:?}"))
}

fn collect(dir: &Path, out: &mut Vec<(PathBuf, std::time::SystemTime, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            collect(&path, out);
        } else if meta.is_file() {
            let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            out.push((path, modified, meta.len()));
        }
    }
}

fn remove_empty(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            remove_empty(&path);
            let _ = std::fs::remove_dir(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_box_and_the_line_are_drawn_on_the_frame() {
        let mut image = RgbImage::from_pixel(100, 80, Rgb([0, 0, 0]));
        let overlay = Overlay {
            lines: vec![serde_json::from_value(
                json!({"id": "door", "points": [[50, 0], [50, "100%"]]}),
            )
            .unwrap()],
            zones: Vec::new(),
        };
        render(
            &mut image,
            &json!({"line_id": "door", "bbox": {"x1": 10, "y1": 10, "x2": 30, "y2": 40}}),
            &overlay,
        );
        assert_eq!(*image.get_pixel(10, 20), BOX, "left edge of the box");
        assert_eq!(*image.get_pixel(20, 10), BOX, "top edge");
        assert_eq!(*image.get_pixel(50, 70), SHAPE, "the line");
        assert_eq!(
            *image.get_pixel(20, 25),
            Rgb([0, 0, 0]),
            "inside the box untouched"
        );
        let bytes = jpeg(&image, QUALITY).unwrap();
        let back = image::load_from_memory(&bytes).unwrap();
        assert_eq!((back.width(), back.height()), (100, 80));
        let thumb = image::load_from_memory(&thumbnail(&image).unwrap()).unwrap();
        assert_eq!(thumb.width(), 100, "never larger than the frame");
    }
}
