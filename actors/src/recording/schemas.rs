//! The JSON Schemas of a recording's channels: Synopticon's own (events, detections) and
//! Foxglove's well-known ones for pictures and boxes, so that Foxglove shows a recorded
//! source as a video with its boxes drawn on it.

use serde_json::{json, Value};

/// Schema name of the event channels (`/events/{name}`).
pub const EVENT: &str = "synopticon.Event";
/// Schema name of the detection channels (`/sources/{id}/detections`).
pub const DETECTIONS: &str = "synopticon.Detections";
/// Foxglove's schema for a compressed picture.
pub const COMPRESSED_IMAGE: &str = "foxglove.CompressedImage";
/// Foxglove's schema for shapes and text drawn over a picture.
pub const IMAGE_ANNOTATIONS: &str = "foxglove.ImageAnnotations";

/// An event as every text protocol carries it.
pub fn event() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": EVENT,
        "description": "One event of a Synopticon session, as its live feeds carry it",
        "type": "object",
        "required": ["session", "seq", "event", "ts", "data"],
        "properties": {
            "session": {"type": "string"},
            "seq": {"type": "integer", "minimum": 1, "description": "position in the session"},
            "event": {"type": "string", "description": "event type"},
            "ts": {"type": "string", "format": "date-time"},
            "data": {"description": "the producer's payload"},
            "replay": {
                "type": "object",
                "description": "present when the event was played back from a recording",
                "properties": {
                    "recording": {"type": "string"},
                    "original_seq": {"type": "integer"},
                    "original_ts": {"type": "string", "format": "date-time"}
                }
            },
            "origin": {
                "type": "object",
                "description": "in recordings only: what inside the server raised the event (live feeds filter on it; a replay gives it back)",
                "properties": {
                    "source": {"type": "string", "description": "the vision source"},
                    "device": {"type": "string", "description": "the serial of the device it is about"},
                    "channel": {"type": "string", "description": "the device channel"}
                }
            }
        }
    })
}

/// One analysed frame's detections, in the detection envelope edge devices send.
pub fn detections() -> Value {
    let point =
        json!({"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}});
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": DETECTIONS,
        "description": "The detections of one analysed frame, before the source's filters and tracking: the detection envelope (version 1) an edge device sends",
        "type": "object",
        "required": ["version", "source", "frame", "detections"],
        "properties": {
            "version": {"const": 1},
            "source": {"type": "object", "properties": {
                "device_id": {"type": "string"},
                "camera_id": {"type": "string"},
                "timestamp": {"type": "string", "format": "date-time"}
            }},
            "frame": {"type": "object", "properties": {
                "number": {"type": "integer"},
                "width": {"type": "integer"},
                "height": {"type": "integer"}
            }},
            "detections": {"type": "array", "items": {"type": "object", "properties": {
                "track_id": {"type": "integer", "description": "the device's own track id, when it gave one"},
                "class_id": {"type": "integer"},
                "class_name": {"type": "string"},
                "confidence": {"type": "number"},
                "bbox": {"type": "object", "properties": {
                    "x1": {"type": "number"}, "y1": {"type": "number"},
                    "x2": {"type": "number"}, "y2": {"type": "number"}
                }},
                "landmarks": {"type": "array", "items": point}
            }}}
        }
    })
}

fn time() -> Value {
    json!({"type": "object", "title": "time", "properties": {
        "sec": {"type": "integer", "minimum": 0},
        "nsec": {"type": "integer", "minimum": 0, "maximum": 999_999_999}
    }})
}

fn color() -> Value {
    json!({"type": "object", "title": "foxglove.Color", "properties": {
        "r": {"type": "number"}, "g": {"type": "number"}, "b": {"type": "number"}, "a": {"type": "number"}
    }})
}

fn point2() -> Value {
    json!({"type": "object", "title": "foxglove.Point2", "properties": {
        "x": {"type": "number"}, "y": {"type": "number"}
    }})
}

/// `foxglove.CompressedImage`.
pub fn compressed_image() -> Value {
    json!({
        "title": COMPRESSED_IMAGE,
        "description": "A compressed image",
        "type": "object",
        "properties": {
            "timestamp": time(),
            "frame_id": {"type": "string"},
            "data": {"type": "string", "contentEncoding": "base64"},
            "format": {"type": "string"}
        }
    })
}

/// `foxglove.ImageAnnotations`.
pub fn image_annotations() -> Value {
    json!({
        "title": IMAGE_ANNOTATIONS,
        "description": "Array of annotations for a 2D image",
        "type": "object",
        "properties": {
            "circles": {"type": "array", "items": {"type": "object", "title": "foxglove.CircleAnnotation", "properties": {
                "timestamp": time(), "position": point2(), "diameter": {"type": "number"},
                "thickness": {"type": "number"}, "fill_color": color(), "outline_color": color()
            }}},
            "points": {"type": "array", "items": {"type": "object", "title": "foxglove.PointsAnnotation", "properties": {
                "timestamp": time(),
                "type": {"type": "integer", "description": "0 unknown, 1 points, 2 line loop, 3 line strip, 4 line list"},
                "points": {"type": "array", "items": point2()},
                "outline_color": color(),
                "outline_colors": {"type": "array", "items": color()},
                "fill_color": color(),
                "thickness": {"type": "number"}
            }}},
            "texts": {"type": "array", "items": {"type": "object", "title": "foxglove.TextAnnotation", "properties": {
                "timestamp": time(), "position": point2(), "text": {"type": "string"},
                "font_size": {"type": "number"}, "text_color": color(), "background_color": color()
            }}}
        }
    })
}
