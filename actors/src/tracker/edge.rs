//! Tracks an edge device already made: its `track_id`s are kept, and the track state
//! (start, class, box, end after missed frames) rebuilt from the messages, as the seed's
//! RemoteTracker does, instead of tracking the boxes again. Used by external sources with
//! `edge_track_ids`.

use std::collections::{BTreeMap, HashSet, VecDeque};

use super::bytetrack::{EndReason, EndedTrack, TrackView, TrackerUpdate};
use super::TrackerConfig;
use crate::inference::Detection;

/// Most tracks held at once (like the ByteTrack tracker's bound).
const MAX_EDGE_TRACKS: usize = 2000;

struct EdgeTrack {
    view: TrackView,
    last_seen: f64,
    missed: u32,
}

/// The tracks of one edge device, by its ids.
pub struct EdgeTracks {
    config: TrackerConfig,
    tracks: BTreeMap<u64, EdgeTrack>,
}

impl EdgeTracks {
    /// No tracks yet; a track missing from more than `track_buffer` messages ends.
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            tracks: BTreeMap::new(),
        }
    }

    /// New thresholds, from the next message.
    pub fn set_config(&mut self, config: TrackerConfig) {
        self.config = config;
    }

    /// Tracks held.
    pub fn active(&self) -> usize {
        self.tracks.len()
    }

    /// One message's detections with their edge ids (detections without one are left
    /// out: they belong to no track), seen at `now` (seconds).
    pub fn update(
        &mut self,
        detections: &[Detection],
        ids: &[Option<u64>],
        now: f64,
    ) -> TrackerUpdate {
        let mut update = TrackerUpdate::default();
        let mut seen = HashSet::new();
        for (d, id) in detections.iter().zip(ids) {
            let Some(id) = *id else { continue };
            if !seen.insert(id) {
                continue;
            }
            let full = self.tracks.len() >= MAX_EDGE_TRACKS;
            match self.tracks.get_mut(&id) {
                Some(track) => {
                    track.view.class_id = d.class_id;
                    track.view.class_name = d.class_name.clone();
                    track.view.confidence = d.confidence;
                    track.view.bbox = d.bbox;
                    track.view.landmarks = d.landmarks.clone();
                    track.last_seen = now;
                    track.missed = 0;
                }
                None if !full => {
                    self.tracks.insert(
                        id,
                        EdgeTrack {
                            view: TrackView {
                                track_id: id,
                                class_id: d.class_id,
                                class_name: d.class_name.clone(),
                                confidence: d.confidence,
                                bbox: d.bbox,
                                landmarks: d.landmarks.clone(),
                                first_seen: now,
                            },
                            last_seen: now,
                            missed: 0,
                        },
                    );
                    update.started.push(id);
                }
                None => {}
            }
        }
        let buffer = self.config.track_buffer;
        let mut gone = Vec::new();
        for (id, track) in self.tracks.iter_mut() {
            if seen.contains(id) {
                update.tracks.push(track.view.clone());
                continue;
            }
            track.missed += 1;
            if track.missed > buffer {
                gone.push(*id);
            }
        }
        for id in gone {
            if let Some(track) = self.tracks.remove(&id) {
                update.ended.push(ended(&track, EndReason::Lost));
            }
        }
        update
    }

    /// Ends every track (the source stopped).
    pub fn finish(&mut self) -> Vec<EndedTrack> {
        std::mem::take(&mut self.tracks)
            .values()
            .map(|t| ended(t, EndReason::SourceStopped))
            .collect()
    }
}

fn ended(track: &EdgeTrack, reason: EndReason) -> EndedTrack {
    EndedTrack {
        track_id: track.view.track_id,
        reason,
        class_name: track.view.class_name.clone(),
        duration_s: (track.last_seen - track.view.first_seen).max(0.0),
        bbox: track.view.bbox,
    }
}

/// The messages a source has taken lately, to know one delivered again: the same frame
/// number with the same timestamp (an edge that restarts numbers its frames from 0 again,
/// at other times).
pub struct Recent {
    keys: HashSet<(u64, i64)>,
    order: VecDeque<(u64, i64)>,
    capacity: usize,
}

impl Recent {
    /// Remembers the last `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        Self {
            keys: HashSet::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Whether the message was taken before, without remembering it.
    pub fn contains(&self, frame: u64, at_micros: i64) -> bool {
        self.keys.contains(&(frame, at_micros))
    }

    /// Whether the message was taken before; remembers it if not.
    pub fn seen_before(&mut self, frame: u64, at_micros: i64) -> bool {
        let key = (frame, at_micros);
        if !self.keys.insert(key) {
            return true;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.keys.remove(&old);
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::BBox;
    use std::sync::Arc;

    fn det(x: f32) -> Detection {
        Detection {
            class_id: 2,
            class_name: Arc::from("car"),
            confidence: 0.9,
            bbox: BBox {
                x1: x,
                y1: 10.0,
                x2: x + 20.0,
                y2: 30.0,
            },
            landmarks: None,
        }
    }

    #[test]
    fn edge_ids_are_kept_and_tracks_end_after_the_buffer() {
        let mut tracks = EdgeTracks::new(TrackerConfig {
            track_buffer: 2,
            ..TrackerConfig::default()
        });
        let first = tracks.update(&[det(0.0), det(100.0)], &[Some(42), Some(7)], 0.0);
        assert_eq!(first.started, [42, 7]);
        let ids: Vec<u64> = first.tracks.iter().map(|t| t.track_id).collect();
        assert_eq!(ids, [7, 42]);
        let moved = tracks.update(&[det(5.0)], &[Some(42)], 0.1);
        assert!(moved.started.is_empty());
        assert_eq!(moved.tracks[0].bbox.x1, 5.0);
        tracks.update(&[det(6.0)], &[Some(42)], 0.2);
        let gone = tracks.update(&[det(7.0), det(50.0)], &[Some(42), None], 0.3);
        assert_eq!(gone.ended.len(), 1);
        assert_eq!(gone.ended[0].track_id, 7);
        assert_eq!(tracks.active(), 1);
        assert_eq!(tracks.finish()[0].track_id, 42);
    }

    #[test]
    fn a_message_delivered_again_is_recognised() {
        let mut recent = Recent::new(2);
        assert!(!recent.seen_before(1, 100));
        assert!(recent.seen_before(1, 100));
        assert!(
            !recent.seen_before(1, 200),
            "the same number at another time"
        );
        assert!(!recent.seen_before(2, 300));
        assert!(!recent.seen_before(1, 100), "forgotten beyond the window");
    }
}
