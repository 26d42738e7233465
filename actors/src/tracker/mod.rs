//! Tracking: stable ids for detections across frames, and the line and zone analytics
//! that turn tracks into events.
//!
//! # Layout
//! - [`actor`]: the `TrackerActor`, one per source: tracker, lines and zones, events.
//! - [`bytetrack`]: the ByteTrack-style tracker (`ByteTracker`, `TrackerConfig`).
//! - [`kalman`]: the constant-velocity box filter it predicts with.
//! - [`analytics`]: lines and zones (pixels or percentages), from tracks to
//!   `line_cross`, `zone_enter`, `zone_exit` and `loitering` events.
//! - [`assignment`]: minimum-cost matching of tracks to detections.
//! - [`eval`]: synthetic scenes with ground truth, MOTA and ID-switch scoring.

pub mod actor;
pub mod analytics;
pub mod assignment;
pub mod bytetrack;
pub mod edge;
pub mod eval;
pub mod kalman;

pub use bytetrack::{
    ByteTracker, EndReason, EndedTrack, TrackSnapshot, TrackState, TrackView, TrackerConfig,
    TrackerUpdate,
};
