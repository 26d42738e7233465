//! Synthetic scenes with known ground truth, and the CLEAR-MOT numbers of a tracker on
//! them (MOTA, ID switches), so tracking quality is measured, not eyeballed.
//!
//! A scene is objects moving at constant velocity, some crossing each other (the one
//! behind is then detected weakly or not at all), some leaving the picture for a while
//! and coming back. Detections carry deterministic jitter.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::assignment::assign;
use super::bytetrack::{ByteTracker, TrackerConfig};
use crate::inference::{BBox, Detection};

/// One ground-truth object.
#[derive(Debug, Clone)]
pub struct Actor {
    /// First and last frame it exists.
    pub frames: (u32, u32),
    /// Top-left corner at its first frame.
    pub start: (f32, f32),
    /// Pixels per frame.
    pub velocity: (f32, f32),
    /// Width and height.
    pub size: (f32, f32),
    /// Frames (inclusive range) in which it is hidden and not detected at all.
    pub hidden: Option<(u32, u32)>,
}

impl Actor {
    fn bbox(&self, frame: u32) -> Option<BBox> {
        if frame < self.frames.0 || frame > self.frames.1 {
            return None;
        }
        let t = (frame - self.frames.0) as f32;
        let x1 = self.start.0 + self.velocity.0 * t;
        let y1 = self.start.1 + self.velocity.1 * t;
        Some(BBox {
            x1,
            y1,
            x2: x1 + self.size.0,
            y2: y1 + self.size.1,
        })
    }
}

/// A scene: actors over a number of frames.
#[derive(Debug, Clone)]
pub struct Scene {
    /// Name for reports.
    pub name: &'static str,
    /// Frames in the scene.
    pub frames: u32,
    /// The objects.
    pub actors: Vec<Actor>,
}

/// The built-in scenes.
pub fn scenes() -> Vec<Scene> {
    let walker = |start: (f32, f32), velocity: (f32, f32), frames: (u32, u32)| Actor {
        frames,
        start,
        velocity,
        size: (40.0, 90.0),
        hidden: None,
    };
    vec![
        Scene {
            name: "two people cross, one behind the other",
            frames: 120,
            actors: vec![
                walker((20.0, 200.0), (5.0, 0.0), (0, 119)),
                walker((620.0, 210.0), (-5.0, 0.0), (0, 119)),
            ],
        },
        Scene {
            name: "one leaves the picture for 15 frames and comes back",
            frames: 100,
            actors: vec![
                Actor {
                    hidden: Some((40, 54)),
                    ..walker((50.0, 100.0), (4.0, 1.0), (0, 99))
                },
                walker((500.0, 300.0), (-2.0, -1.0), (0, 99)),
            ],
        },
        Scene {
            name: "a crowd of six, arriving and leaving at different times",
            frames: 150,
            actors: vec![
                walker((0.0, 50.0), (4.0, 0.5), (0, 149)),
                walker((600.0, 60.0), (-4.0, 0.0), (10, 140)),
                walker((100.0, 300.0), (3.0, -0.5), (20, 149)),
                walker((700.0, 320.0), (-3.5, 0.0), (30, 120)),
                walker((300.0, 0.0), (0.0, 3.0), (0, 100)),
                walker((350.0, 450.0), (0.5, -3.0), (40, 149)),
            ],
        },
    ]
}

/// Deterministic jitter in -1..1.
fn jitter(seed: u64) -> f32 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    (x % 20_001) as f32 / 10_000.0 - 1.0
}

/// The detections a detector would give in `frame`: jittered boxes; an object mostly
/// behind another scores low (ByteTrack's second association is for it); hidden ones
/// are missing.
pub fn detections(scene: &Scene, frame: u32) -> Vec<Detection> {
    let boxes: Vec<(usize, BBox)> = scene
        .actors
        .iter()
        .enumerate()
        .filter(|(_, a)| !a.hidden.is_some_and(|(s, e)| frame >= s && frame <= e))
        .filter_map(|(i, a)| a.bbox(frame).map(|b| (i, b)))
        .collect();
    let class: Arc<str> = Arc::from("person");
    boxes
        .iter()
        .map(|&(i, b)| {
            // Lower y2 = further back: occluded by a nearer box that overlaps it.
            let occluded = boxes
                .iter()
                .any(|&(j, o)| j != i && o.y2 > b.y2 && o.iou(&b) > 0.3);
            let s = u64::from(frame) * 1000 + i as u64;
            let d = |k: u64| 2.0 * jitter(s * 4 + k);
            Detection {
                class_id: 0,
                class_name: class.clone(),
                confidence: if occluded {
                    0.3
                } else {
                    0.85 + 0.1 * jitter(s)
                },
                bbox: BBox {
                    x1: b.x1 + d(0),
                    y1: b.y1 + d(1),
                    x2: b.x2 + d(2),
                    y2: b.y2 + d(3),
                },
                landmarks: None,
            }
        })
        .collect()
}

/// CLEAR-MOT numbers of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MotScore {
    /// Ground-truth boxes.
    pub ground_truth: u64,
    /// Ground-truth boxes no track covered.
    pub misses: u64,
    /// Track boxes covering no ground truth.
    pub false_positives: u64,
    /// Times an object's covering track id changed.
    pub id_switches: u64,
    /// 1 - (misses + false positives + id switches) / ground truth.
    pub mota: f64,
    /// Distinct track ids reported.
    pub tracks: u64,
}

/// Scores `(frame, track id, box)` outputs against the scene (IoU >= 0.5 is a match).
pub fn score(scene: &Scene, outputs: &[(u32, u64, BBox)]) -> MotScore {
    let mut s = MotScore::default();
    let mut last_id: HashMap<usize, u64> = HashMap::new();
    let mut ids = std::collections::HashSet::new();
    for frame in 0..scene.frames {
        let truth: Vec<(usize, BBox)> = scene
            .actors
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.bbox(frame).map(|b| (i, b)))
            .collect();
        let out: Vec<&(u32, u64, BBox)> = outputs.iter().filter(|o| o.0 == frame).collect();
        ids.extend(out.iter().map(|o| o.1));
        let mut cost = Vec::new();
        for (_, t) in &truth {
            for o in &out {
                cost.push(1.0 - t.iou(&o.2));
            }
        }
        let pairs = assign(&cost, truth.len(), out.len(), 0.5);
        s.ground_truth += truth.len() as u64;
        s.misses += (truth.len() - pairs.len()) as u64;
        s.false_positives += (out.len() - pairs.len()) as u64;
        for (r, c) in pairs {
            let (actor, id) = (truth[r].0, out[c].1);
            if let Some(previous) = last_id.insert(actor, id) {
                if previous != id {
                    s.id_switches += 1;
                }
            }
        }
    }
    s.tracks = ids.len() as u64;
    s.mota =
        1.0 - (s.misses + s.false_positives + s.id_switches) as f64 / s.ground_truth.max(1) as f64;
    s
}

/// Runs a tracker over a scene at `fps` and scores it.
pub fn run(scene: &Scene, config: &TrackerConfig, fps: f64) -> MotScore {
    let mut tracker = ByteTracker::new(config.clone());
    let mut outputs = Vec::new();
    for frame in 0..scene.frames {
        let update = tracker.update(&detections(scene, frame), f64::from(frame) / fps);
        for t in update.tracks {
            outputs.push((frame, t.track_id, t.bbox));
        }
    }
    score(scene, &outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scene_is_tracked_without_id_switches() {
        for scene in scenes() {
            let s = run(&scene, &TrackerConfig::default(), 30.0);
            println!("{}: {s:?}", scene.name);
            assert_eq!(s.id_switches, 0, "{}: {s:?}", scene.name);
            assert_eq!(
                s.tracks,
                scene.actors.len() as u64,
                "{}: one id per object: {s:?}",
                scene.name
            );
            assert!(s.mota > 0.85, "{}: {s:?}", scene.name);
        }
    }

    #[test]
    fn the_scorer_counts_a_swap_and_misses() {
        let scene = &scenes()[0];
        let mut outputs = Vec::new();
        for frame in 0..scene.frames {
            for (i, a) in scene.actors.iter().enumerate() {
                let b = a.bbox(frame).expect("alive");
                // Ids swap at frame 60; actor 1 is missing for frames 10..20.
                let id = if frame < 60 { i as u64 } else { 1 - i as u64 };
                if !(i == 1 && (10..20).contains(&frame)) {
                    outputs.push((frame, id, b));
                }
            }
        }
        let s = score(scene, &outputs);
        assert_eq!((s.id_switches, s.misses, s.false_positives), (2, 10, 0));
    }

    #[test]
    fn ended_tracks_leave_no_state_behind() {
        let scene = &scenes()[2];
        let mut tracker = ByteTracker::new(TrackerConfig::default());
        let mut ended = 0;
        for frame in 0..scene.frames {
            ended += tracker
                .update(&detections(scene, frame), f64::from(frame) / 30.0)
                .ended
                .len();
        }
        // Two actors leave before the end (at frames 100 and 120, +30 frames buffer).
        assert_eq!(
            ended, 1,
            "only the one gone for longer than the buffer has ended"
        );
        for frame in 0..40 {
            ended += tracker
                .update(&[], f64::from(scene.frames + frame) / 30.0)
                .ended
                .len();
        }
        assert_eq!(ended, 6, "every track ends once nothing is seen");
        assert!(tracker.is_empty(), "nothing kept after the buffer");
    }
}
