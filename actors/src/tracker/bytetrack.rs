//! ByteTrack-style multi-object tracking: stable ids for detections across frames.
//!
//! Per frame: every track's Kalman filter predicts; confirmed and lost tracks are matched
//! (minimum-cost assignment on 1 - IoU) to the high-confidence detections; confirmed tracks
//! left over get a second chance with the low-confidence ones (an occluded object often
//! scores low: that is ByteTrack's idea); tentative tracks are matched to what high
//! detections remain. Unmatched confirmed tracks become lost and are removed after
//! `track_buffer` frames; unmatched tentative tracks are dropped at once; remaining
//! confident detections start tentative tracks, confirmed after `min_hits` matches.
//! Removed tracks leave no state behind: a server tracks for weeks.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::assignment::assign;
use super::kalman::BoxFilter;
use crate::inference::{BBox, Detection, Point};

/// Most tracks one tracker holds (tentative, confirmed and lost): a scene with more
/// objects starts no new track until some end. It bounds the association's memory and time
/// whatever a posted message contains.
pub const MAX_TRACKS: usize = 2000;

/// Tracker thresholds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// Detections at or above this score take part in the first association.
    pub high_threshold: f32,
    /// Detections between this and `high_threshold` only extend existing tracks.
    pub low_threshold: f32,
    /// A new track needs a detection at least this confident.
    pub new_track_threshold: f32,
    /// Lowest IoU for matching a track to a high-confidence detection.
    pub match_iou: f32,
    /// Lowest IoU for the second association with low-confidence detections.
    pub low_match_iou: f32,
    /// Matches a tentative track needs before it is confirmed (and gets an id).
    pub min_hits: u32,
    /// Frames a lost track is kept for re-identification before it ends.
    pub track_buffer: u32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            high_threshold: 0.5,
            low_threshold: 0.1,
            new_track_threshold: 0.6,
            match_iou: 0.2,
            low_match_iou: 0.5,
            min_hits: 2,
            track_buffer: 30,
        }
    }
}

impl TrackerConfig {
    /// Every problem at once, prefixed with `at`.
    pub fn validate(&self, at: &str, report: &mut crate::validation::Report) {
        for (key, v) in [
            ("high_threshold", self.high_threshold),
            ("low_threshold", self.low_threshold),
            ("new_track_threshold", self.new_track_threshold),
            ("match_iou", self.match_iou),
            ("low_match_iou", self.low_match_iou),
        ] {
            if !(0.0..=1.0).contains(&v) {
                report.error(format!("{at}.{key}: {v} is not between 0 and 1"));
            }
        }
        if self.low_threshold > self.high_threshold {
            report.error(format!(
                "{at}.low_threshold: {} exceeds high_threshold {}",
                self.low_threshold, self.high_threshold
            ));
        }
        if self.min_hits == 0 {
            report.error(format!("{at}.min_hits: must be at least 1"));
        }
    }
}

/// Where a track is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackState {
    /// Seen, not yet `min_hits` times: no id, no events.
    Tentative,
    /// Matched in the latest frames.
    Confirmed,
    /// Confirmed, unmatched for up to `track_buffer` frames: kept for re-identification.
    Lost,
    /// Ended (`track_ended`): unmatched beyond the buffer, or its source stopped. A removed
    /// track is forgotten at once; the state only appears in the event.
    Removed,
}

use TrackState as State;

/// Why a track was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Unmatched for more than `track_buffer` frames.
    Lost,
    /// Its source stopped, finished or was removed.
    SourceStopped,
}

#[derive(Debug)]
struct Track {
    /// 0 until confirmed.
    id: u64,
    state: State,
    filter: BoxFilter,
    /// The detection box matched most recently (what the camera saw).
    observed: BBox,
    hits: u32,
    missed: u32,
    class_id: u32,
    class_name: Arc<str>,
    score: f32,
    landmarks: Option<Vec<Point>>,
    first_seen: f64,
    last_seen: f64,
}

/// A confirmed track as of this frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackView {
    /// Stable id (from 1, never reused within a tracker).
    pub track_id: u64,
    /// Class of the latest matched detection.
    pub class_id: u32,
    /// Its name.
    pub class_name: Arc<str>,
    /// Score of the latest matched detection.
    pub confidence: f32,
    /// The box of the detection matched in this frame (the filter only guides matching:
    /// like supervision's ByteTrack, the observed box is reported).
    pub bbox: BBox,
    /// Landmarks of the latest matched detection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub landmarks: Option<Vec<Point>>,
    /// When the track was first seen, in the caller's seconds.
    pub first_seen: f64,
}

/// A track held by the tracker, as `GET /api/v1/sources/{id}/tracks` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackSnapshot {
    /// Stable id; absent while tentative.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
    /// Tentative, confirmed or lost.
    pub state: TrackState,
    /// Class of the latest matched detection.
    pub class_name: Arc<str>,
    /// Its score.
    pub confidence: f32,
    /// The latest matched box.
    pub bbox: BBox,
    /// Where the filter expects the object in the next frame.
    pub predicted: BBox,
    /// Frames matched.
    pub hits: u32,
    /// Frames since the latest match.
    pub missed_frames: u32,
    /// Last seen minus first seen, in seconds.
    pub age_s: f64,
}

/// A track that ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndedTrack {
    /// Its id.
    pub track_id: u64,
    /// Why it ended.
    pub reason: EndReason,
    /// Its class.
    pub class_name: Arc<str>,
    /// Last seen minus first seen, in seconds.
    pub duration_s: f64,
    /// Its last box.
    pub bbox: BBox,
}

/// What one frame changed.
#[derive(Debug, Default)]
pub struct TrackerUpdate {
    /// Confirmed tracks matched in this frame.
    pub tracks: Vec<TrackView>,
    /// Ids confirmed in this frame (also in `tracks`).
    pub started: Vec<u64>,
    /// Tracks that ended in this frame.
    pub ended: Vec<EndedTrack>,
}

/// One source's tracker.
#[derive(Debug)]
pub struct ByteTracker {
    config: TrackerConfig,
    tracks: Vec<Track>,
    next_id: u64,
}

impl ByteTracker {
    /// An empty tracker.
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            tracks: Vec::new(),
            next_id: 1,
        }
    }

    /// The thresholds in use.
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Replaces the thresholds; tracks carry on.
    pub fn set_config(&mut self, config: TrackerConfig) {
        self.config = config;
    }

    /// Tracks held (tentative, confirmed and lost): bounded by what the scene shows.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    /// Whether no track is held.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// Confirmed tracks currently visible or briefly lost.
    pub fn active(&self) -> usize {
        self.tracks
            .iter()
            .filter(|t| t.state != State::Tentative)
            .count()
    }

    /// Feeds one frame's detections, taken at `now` (seconds).
    pub fn update(&mut self, detections: &[Detection], now: f64) -> TrackerUpdate {
        let cfg = self.config.clone();
        for track in &mut self.tracks {
            track.filter.predict();
        }
        let high: Vec<usize> = (0..detections.len())
            .filter(|&i| detections[i].confidence >= cfg.high_threshold)
            .collect();
        let low: Vec<usize> = (0..detections.len())
            .filter(|&i| {
                let c = detections[i].confidence;
                c >= cfg.low_threshold && c < cfg.high_threshold
            })
            .collect();
        let mut matched_track = vec![false; self.tracks.len()];
        let mut used = vec![false; detections.len()];
        let mut update = TrackerUpdate::default();

        // 1. Confirmed and lost tracks against confident detections.
        let pool: Vec<usize> = (0..self.tracks.len())
            .filter(|&t| self.tracks[t].state != State::Tentative)
            .collect();
        self.associate(
            &pool,
            &high,
            detections,
            cfg.match_iou,
            now,
            &mut matched_track,
            &mut used,
        );
        // 2. Confirmed tracks still unmatched against the weak detections.
        let pool: Vec<usize> = (0..self.tracks.len())
            .filter(|&t| !matched_track[t] && self.tracks[t].state == State::Confirmed)
            .collect();
        self.associate(
            &pool,
            &low,
            detections,
            cfg.low_match_iou,
            now,
            &mut matched_track,
            &mut used,
        );
        // 3. Tentative tracks against the confident detections left.
        let pool: Vec<usize> = (0..self.tracks.len())
            .filter(|&t| self.tracks[t].state == State::Tentative)
            .collect();
        let left: Vec<usize> = high.iter().copied().filter(|&d| !used[d]).collect();
        self.associate(
            &pool,
            &left,
            detections,
            cfg.match_iou.max(0.3),
            now,
            &mut matched_track,
            &mut used,
        );

        // Confirm, lose, end.
        let mut kept = Vec::with_capacity(self.tracks.len());
        for (t, mut track) in std::mem::take(&mut self.tracks).into_iter().enumerate() {
            if matched_track[t] {
                if track.state == State::Tentative && track.hits >= cfg.min_hits {
                    track.state = State::Confirmed;
                    track.id = self.next_id;
                    self.next_id += 1;
                    update.started.push(track.id);
                }
                if track.state == State::Lost {
                    track.state = State::Confirmed;
                }
                kept.push(track);
                continue;
            }
            track.missed += 1;
            match track.state {
                State::Tentative => {}
                State::Confirmed | State::Lost if track.missed > cfg.track_buffer => {
                    update.ended.push(ended(&track, EndReason::Lost));
                }
                State::Confirmed | State::Lost => {
                    track.state = State::Lost;
                    kept.push(track);
                }
                State::Removed => {}
            }
        }
        self.tracks = kept;

        // New tentative tracks from confident detections nobody claimed.
        for &d in &high {
            if used[d] || detections[d].confidence < cfg.new_track_threshold {
                continue;
            }
            if self.tracks.len() >= MAX_TRACKS {
                break;
            }
            let det = &detections[d];
            let mut track = Track {
                id: 0,
                state: State::Tentative,
                filter: BoxFilter::new(&det.bbox),
                observed: det.bbox,
                hits: 1,
                missed: 0,
                class_id: det.class_id,
                class_name: det.class_name.clone(),
                score: det.confidence,
                landmarks: det.landmarks.clone(),
                first_seen: now,
                last_seen: now,
            };
            if cfg.min_hits <= 1 {
                track.state = State::Confirmed;
                track.id = self.next_id;
                self.next_id += 1;
                update.started.push(track.id);
            }
            self.tracks.push(track);
        }

        update.tracks = self
            .tracks
            .iter()
            .filter(|t| t.state == State::Confirmed && t.missed == 0)
            .map(|t| TrackView {
                track_id: t.id,
                class_id: t.class_id,
                class_name: t.class_name.clone(),
                confidence: t.score,
                bbox: t.observed,
                landmarks: t.landmarks.clone(),
                first_seen: t.first_seen,
            })
            .collect();
        update
    }

    /// Ends every confirmed track (the source stopped).
    pub fn finish(&mut self) -> Vec<EndedTrack> {
        std::mem::take(&mut self.tracks)
            .iter()
            .filter(|t| t.state != State::Tentative)
            .map(|t| ended(t, EndReason::SourceStopped))
            .collect()
    }

    /// Every track held, confirmed and lost ones first, by id.
    pub fn snapshot(&self) -> Vec<TrackSnapshot> {
        let mut all: Vec<TrackSnapshot> = self
            .tracks
            .iter()
            .map(|t| TrackSnapshot {
                track_id: (t.id != 0).then_some(t.id),
                state: t.state,
                class_name: t.class_name.clone(),
                confidence: t.score,
                bbox: t.observed,
                predicted: t.filter.bbox(),
                hits: t.hits,
                missed_frames: t.missed,
                age_s: t.last_seen - t.first_seen,
            })
            .collect();
        all.sort_by_key(|t| (t.track_id.is_none(), t.track_id));
        all
    }

    #[allow(clippy::too_many_arguments)]
    fn associate(
        &mut self,
        pool: &[usize],
        candidates: &[usize],
        detections: &[Detection],
        min_iou: f32,
        now: f64,
        matched_track: &mut [bool],
        used: &mut [bool],
    ) {
        let candidates: Vec<usize> = candidates.iter().copied().filter(|&d| !used[d]).collect();
        if pool.is_empty() || candidates.is_empty() {
            return;
        }
        let predicted: Vec<BBox> = pool.iter().map(|&t| self.tracks[t].filter.bbox()).collect();
        let mut cost = Vec::with_capacity(pool.len() * candidates.len());
        for p in &predicted {
            for &d in &candidates {
                cost.push(1.0 - p.iou(&detections[d].bbox));
            }
        }
        for (r, c) in assign(&cost, pool.len(), candidates.len(), 1.0 - min_iou) {
            let (t, d) = (pool[r], candidates[c]);
            let det = &detections[d];
            let track = &mut self.tracks[t];
            track.filter.update(&det.bbox);
            track.observed = det.bbox;
            track.hits += 1;
            track.missed = 0;
            track.class_id = det.class_id;
            track.class_name = det.class_name.clone();
            track.score = det.confidence;
            track.landmarks = det.landmarks.clone();
            track.last_seen = now;
            matched_track[t] = true;
            used[d] = true;
        }
    }
}

fn ended(track: &Track, reason: EndReason) -> EndedTrack {
    EndedTrack {
        track_id: track.id,
        reason,
        class_name: track.class_name.clone(),
        duration_s: track.last_seen - track.first_seen,
        bbox: track.observed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(x: f32, confidence: f32) -> Detection {
        Detection {
            class_id: 0,
            class_name: Arc::from("person"),
            confidence,
            bbox: BBox {
                x1: x,
                y1: 100.0,
                x2: x + 50.0,
                y2: 200.0,
            },
            landmarks: None,
        }
    }

    fn states(t: &ByteTracker) -> Vec<(Option<u64>, TrackState)> {
        t.snapshot().iter().map(|s| (s.track_id, s.state)).collect()
    }

    #[test]
    fn a_track_goes_tentative_confirmed_lost_and_is_removed_after_the_buffer() {
        let config = TrackerConfig {
            min_hits: 2,
            track_buffer: 3,
            ..TrackerConfig::default()
        };
        let mut t = ByteTracker::new(config);
        let u = t.update(&[person(100.0, 0.9)], 0.0);
        assert!(u.started.is_empty() && u.tracks.is_empty(), "no id yet");
        assert_eq!(states(&t), [(None, TrackState::Tentative)]);

        let u = t.update(&[person(102.0, 0.9)], 0.1);
        assert_eq!(u.started, [1]);
        assert_eq!(states(&t), [(Some(1), TrackState::Confirmed)]);

        // Unseen: lost for track_buffer frames, still held.
        for frame in 0..3 {
            let u = t.update(&[], 0.2 + f64::from(frame) * 0.1);
            assert!(u.ended.is_empty() && u.tracks.is_empty());
            assert_eq!(states(&t), [(Some(1), TrackState::Lost)]);
        }
        assert_eq!(t.snapshot()[0].missed_frames, 3);

        // Seen again in time: the same id, confirmed again.
        let u = t.update(&[person(110.0, 0.9)], 0.5);
        assert_eq!(u.tracks.len(), 1);
        assert_eq!(u.tracks[0].track_id, 1);
        assert_eq!(states(&t), [(Some(1), TrackState::Confirmed)]);

        // Gone for longer than the buffer: removed, and nothing is kept.
        let mut ended = Vec::new();
        for frame in 0..4 {
            ended.extend(t.update(&[], 0.6 + f64::from(frame) * 0.1).ended);
        }
        assert_eq!(ended.len(), 1);
        assert_eq!((ended[0].track_id, ended[0].reason), (1, EndReason::Lost));
        assert!(
            (ended[0].duration_s - 0.5).abs() < 1e-9,
            "{}",
            ended[0].duration_s
        );
        assert!(t.is_empty());
    }

    #[test]
    fn the_tracks_held_are_bounded_whatever_arrives() {
        let mut t = ByteTracker::new(TrackerConfig {
            min_hits: 1,
            ..TrackerConfig::default()
        });
        // 1000 far-apart boxes per frame, each frame elsewhere: nothing ever matches, and
        // every unmatched track stays lost for the 30-frame buffer.
        for frame in 0..4 {
            let boxes: Vec<Detection> = (0..1000)
                .map(|i| person((frame * 1000 + i) as f32 * 100.0, 0.9))
                .collect();
            t.update(&boxes, f64::from(frame as u32));
            assert!(t.len() <= MAX_TRACKS, "{}", t.len());
        }
        assert_eq!(t.len(), MAX_TRACKS);
    }

    #[test]
    fn a_tentative_track_unmatched_once_is_dropped_without_an_event() {
        let mut t = ByteTracker::new(TrackerConfig::default());
        t.update(&[person(100.0, 0.9)], 0.0);
        let u = t.update(&[], 0.1);
        assert!(u.ended.is_empty());
        assert!(t.is_empty());
    }

    #[test]
    fn stopping_removes_confirmed_and_lost_tracks_with_their_reason() {
        let config = TrackerConfig {
            min_hits: 1,
            ..TrackerConfig::default()
        };
        let mut t = ByteTracker::new(config);
        t.update(&[person(100.0, 0.9), person(400.0, 0.9)], 0.0);
        t.update(&[person(101.0, 0.9)], 0.1);
        assert_eq!(
            states(&t),
            [
                (Some(1), TrackState::Confirmed),
                (Some(2), TrackState::Lost)
            ]
        );
        let ended = t.finish();
        assert_eq!(ended.len(), 2);
        assert!(ended.iter().all(|e| e.reason == EndReason::SourceStopped));
        assert!(t.is_empty());
    }
}
