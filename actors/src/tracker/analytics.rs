//! Lines and zones: from tracks to `line_cross`, `zone_enter`, `zone_exit` and
//! `loitering` events.
//!
//! Coordinates are pixels (numbers) or percentages of the frame (strings like `"50%"`), so
//! one configuration fits any resolution. Each track is represented by an anchor point of
//! its box, bottom-centre by default (where a person stands).
//!
//! A line counts a crossing when the anchor passes from one side to the other by more than
//! `hysteresis_px`: the band around the line absorbs a box that jitters on it, so it is
//! counted once, not at every wobble. For a line drawn from `a` to `b`, `in` is a crossing
//! from the left of a→b to its right as seen on the image (for a horizontal line drawn left
//! to right, moving down the picture); `out` is the reverse. Only crossings within the
//! segment count, not passing beside its ends.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::bytetrack::{EndedTrack, TrackView};
use crate::inference::BBox;
use crate::validation::Report;

/// A coordinate: pixels, or a percentage of the frame's width/height as `"NN%"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Coord {
    /// Pixels.
    Px(f32),
    /// Percentage string, e.g. `"50%"`.
    Pct(String),
}

impl Coord {
    pub fn resolve(&self, extent: f32) -> Option<f32> {
        match self {
            Self::Px(v) => Some(*v),
            Self::Pct(s) => {
                let v: f32 = s.trim().strip_suffix('%')?.trim().parse().ok()?;
                Some(v / 100.0 * extent)
            }
        }
    }

    fn check(&self, at: &str, report: &mut Report) {
        if self.resolve(100.0).is_none() {
            report.error(format!(
                "{at}: {self:?} is neither a number of pixels nor \"NN%\""
            ));
        }
    }
}

/// A point of a line or zone.
pub type ConfigPoint = [Coord; 2];

/// Which point of a box stands for the object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// Middle of the bottom edge (feet).
    #[default]
    BottomCenter,
    /// Centre of the box.
    Center,
    /// Middle of the top edge (head).
    TopCenter,
}

impl Anchor {
    fn of(self, b: &BBox) -> (f32, f32) {
        let x = (b.x1 + b.x2) / 2.0;
        match self {
            Self::BottomCenter => (x, b.y2),
            Self::Center => (x, (b.y1 + b.y2) / 2.0),
            Self::TopCenter => (x, b.y1),
        }
    }
}

/// A counting line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    /// Id in events.
    pub id: String,
    /// Start and end: `[[x, y], [x, y]]`.
    pub points: [ConfigPoint; 2],
    /// Only these classes count (empty: all).
    #[serde(default)]
    pub classes: Vec<String>,
}

/// A polygon zone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Id in events.
    pub id: String,
    /// At least three corners.
    pub points: Vec<ConfigPoint>,
    /// Seconds inside after which one `loitering` event is raised (none when absent).
    #[serde(default)]
    pub loiter_after_s: Option<f64>,
    /// Only these classes count (empty: all).
    #[serde(default)]
    pub classes: Vec<String>,
}

/// Lines, zones and how tracks are anchored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// Lines.
    #[serde(default)]
    pub lines: Vec<LineConfig>,
    /// Zones.
    #[serde(default)]
    pub zones: Vec<ZoneConfig>,
    /// The box point that stands for the object.
    #[serde(default)]
    pub anchor: Anchor,
    /// Distance from a line, in pixels, the anchor must pass to change sides.
    #[serde(default = "default_hysteresis")]
    pub hysteresis_px: f32,
}

fn default_hysteresis() -> f32 {
    8.0
}

/// Brings the line and zone ids of a kept configuration (a source's, or a device's `source`
/// settings: an object with `lines` and `zones`) within the characters ids take now: each
/// other character becomes `_`, an id that does not start with a letter or digit is
/// prefixed with `id-`, one that is too long is cut, and one that would then repeat
/// another gets `-2`, `-3`, ... Returns each id changed, old and new. Configurations kept
/// before ids were held to the rule start again after an upgrade, rather than not at all.
pub fn migrate_ids(config: &mut serde_json::Value) -> Vec<(String, String)> {
    use crate::session::spec::{check_session_id, MAX_SESSION_ID_LEN};
    let mut changed = Vec::new();
    for kind in ["lines", "zones"] {
        let Some(items) = config.get_mut(kind).and_then(|v| v.as_array_mut()) else {
            continue;
        };
        let taken: Vec<String> = items
            .iter()
            .filter_map(|i| i.get("id").and_then(|v| v.as_str()))
            .filter(|id| check_session_id(id).is_ok())
            .map(str::to_string)
            .collect();
        let mut taken = taken;
        for item in items.iter_mut() {
            let Some(old) = item.get("id").and_then(|v| v.as_str()).map(str::to_string) else {
                continue;
            };
            if check_session_id(&old).is_ok() {
                continue;
            }
            let mut id: String = old
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
                id = format!("id-{id}");
            }
            id.truncate(MAX_SESSION_ID_LEN - 8);
            let base = id.clone();
            let mut n = 2;
            while taken.contains(&id) {
                id = format!("{base}-{n}");
                n += 1;
            }
            taken.push(id.clone());
            item["id"] = serde_json::Value::String(id.clone());
            changed.push((old, id));
        }
    }
    changed
}

impl AnalyticsConfig {
    /// Every problem at once, prefixed with `at`.
    pub fn validate(&self, at: &str, report: &mut Report) {
        let mut ids = Vec::new();
        for (i, line) in self.lines.iter().enumerate() {
            for (j, p) in line.points.iter().enumerate() {
                p[0].check(&format!("{at}.lines[{i}].points[{j}][0]"), report);
                p[1].check(&format!("{at}.lines[{i}].points[{j}][1]"), report);
            }
            if line.points[0] == line.points[1] {
                report.error(format!("{at}.lines[{i}]: its two points are the same"));
            }
            ids.push(("line", &line.id, i));
        }
        for (i, zone) in self.zones.iter().enumerate() {
            if zone.points.len() < 3 {
                report.error(format!(
                    "{at}.zones[{i}].points: a zone needs at least 3 points, got {}",
                    zone.points.len()
                ));
            }
            for (j, p) in zone.points.iter().enumerate() {
                p[0].check(&format!("{at}.zones[{i}].points[{j}][0]"), report);
                p[1].check(&format!("{at}.zones[{i}].points[{j}][1]"), report);
            }
            if zone
                .loiter_after_s
                .is_some_and(|s| s <= 0.0 || !s.is_finite())
            {
                report.error(format!("{at}.zones[{i}].loiter_after_s: must be positive"));
            }
            ids.push(("zone", &zone.id, i));
        }
        for (n, (kind, id, i)) in ids.iter().enumerate() {
            // Ids travel into events, logs, e-mails and the dashboard: the same characters
            // as every other id (no line breaks, no markup).
            if let Err(e) = crate::session::spec::check_session_id(id) {
                report.error(format!("{at}.{kind}s[{i}].id: {e}"));
            }
            if ids[..n]
                .iter()
                .any(|(k, other, _)| k == kind && other == id)
            {
                report.error(format!("{at}.{kind}s[{i}].id: {id:?} is used twice"));
            }
        }
        if self.hysteresis_px.is_nan() || self.hysteresis_px < 0.0 {
            report.error(format!("{at}.hysteresis_px: must be 0 or more"));
        }
    }
}

/// Crossing direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Left of a→b to right.
    In,
    /// Right to left.
    Out,
}

/// Why a track left a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// Its anchor left the polygon.
    Left,
    /// The track ended inside.
    TrackEnded,
    /// The zone was removed (or renamed) while the track was inside.
    ZoneRemoved,
}

/// An event raised by a line or zone.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AnalyticsEvent {
    /// A track crossed a line.
    LineCross {
        /// Line id.
        line_id: String,
        /// `in` or `out`.
        direction: Direction,
        /// Track.
        track_id: u64,
        /// Its class.
        class_name: Arc<str>,
        /// Anchor position when counted.
        x: f32,
        /// Anchor position when counted.
        y: f32,
    },
    /// A track's anchor entered a zone.
    ZoneEnter {
        /// Zone id.
        zone_id: String,
        /// Track.
        track_id: u64,
        /// Its class.
        class_name: Arc<str>,
    },
    /// A track left a zone (or ended inside it).
    ZoneExit {
        /// Zone id.
        zone_id: String,
        /// Track.
        track_id: u64,
        /// Its class.
        class_name: Arc<str>,
        /// Seconds spent inside.
        dwell_s: f64,
        /// Why.
        reason: ExitReason,
    },
    /// A track has stayed in a zone longer than its `loiter_after_s`.
    Loitering {
        /// Zone id.
        zone_id: String,
        /// Track.
        track_id: u64,
        /// Its class.
        class_name: Arc<str>,
        /// Seconds inside so far.
        dwell_s: f64,
    },
}

impl AnalyticsEvent {
    /// The event type, as sessions route it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::LineCross { .. } => "line_cross",
            Self::ZoneEnter { .. } => "zone_enter",
            Self::ZoneExit { .. } => "zone_exit",
            Self::Loitering { .. } => "loitering",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Presence {
    since: f64,
    loitered: bool,
}

/// Per-source line and zone state.
#[derive(Debug, Default)]
pub struct Analytics {
    config: AnalyticsConfig,
    /// (line index, track) → last side (+1 / -1) outside the band.
    sides: HashMap<(usize, u64), i8>,
    /// (zone index, track) → when it entered.
    inside: HashMap<(usize, u64), Presence>,
    /// Track → class, for exits at track end.
    classes: HashMap<u64, Arc<str>>,
}

fn allowed(classes: &[String], class: &str) -> bool {
    classes.is_empty() || classes.iter().any(|c| c == class)
}

fn inside_polygon(points: &[(f32, f32)], (x, y): (f32, f32)) -> bool {
    let mut inside = false;
    let mut j = points.len().wrapping_sub(1);
    for i in 0..points.len() {
        let ((xi, yi), (xj, yj)) = (points[i], points[j]);
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

impl Analytics {
    /// Analytics with `config`.
    pub fn new(config: AnalyticsConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &AnalyticsConfig {
        &self.config
    }

    /// Replaces lines and zones at `now` (seconds). A line or zone that keeps its id keeps
    /// its state: the side each track was on (unless the line moved, since sides then mean
    /// something else) and each visit with its start, so no `zone_enter` is raised twice and
    /// no dwell time is lost. Visits of a zone that is gone end with a `zone_exit` whose
    /// reason is `zone_removed`, returned here.
    pub fn set_config(&mut self, config: AnalyticsConfig, now: f64) -> Vec<AnalyticsEvent> {
        let line_index = |id: &str| config.lines.iter().position(|l| l.id == id);
        let zone_index = |id: &str| config.zones.iter().position(|z| z.id == id);
        let sides = std::mem::take(&mut self.sides);
        for ((li, track), side) in sides {
            let old = &self.config.lines[li];
            if let Some(ni) = line_index(&old.id) {
                if config.lines[ni].points == old.points {
                    self.sides.insert((ni, track), side);
                }
            }
        }
        let mut exits = Vec::new();
        let mut inside: Vec<_> = std::mem::take(&mut self.inside).into_iter().collect();
        // Stable order for the exits (a HashMap has none).
        inside.sort_by_key(|((zi, track), _)| (*zi, *track));
        for ((zi, track), presence) in inside {
            let old = &self.config.zones[zi];
            match zone_index(&old.id) {
                Some(ni) => {
                    self.inside.insert((ni, track), presence);
                }
                None => exits.push(AnalyticsEvent::ZoneExit {
                    zone_id: old.id.clone(),
                    track_id: track,
                    class_name: self
                        .classes
                        .get(&track)
                        .cloned()
                        .unwrap_or_else(|| Arc::from("")),
                    dwell_s: now - presence.since,
                    reason: ExitReason::ZoneRemoved,
                }),
            }
        }
        self.config = config;
        exits
    }

    /// Entries held (bounded by live tracks x lines and zones).
    pub fn state_len(&self) -> usize {
        self.sides.len() + self.inside.len() + self.classes.len()
    }

    /// Events for one frame's tracks, at `now` seconds, in a `width x height` frame.
    pub fn update(
        &mut self,
        tracks: &[TrackView],
        ended: &[EndedTrack],
        now: f64,
        width: u32,
        height: u32,
    ) -> Vec<AnalyticsEvent> {
        let (w, h) = (width as f32, height as f32);
        let resolve =
            |p: &ConfigPoint| -> Option<(f32, f32)> { Some((p[0].resolve(w)?, p[1].resolve(h)?)) };
        let mut events = Vec::new();
        for track in tracks {
            self.classes
                .insert(track.track_id, track.class_name.clone());
            let (px, py) = self.config.anchor.of(&track.bbox);
            for (li, line) in self.config.lines.iter().enumerate() {
                if !allowed(&line.classes, &track.class_name) {
                    continue;
                }
                let (Some(a), Some(b)) = (resolve(&line.points[0]), resolve(&line.points[1]))
                else {
                    continue;
                };
                let (dx, dy) = (b.0 - a.0, b.1 - a.1);
                let len = (dx * dx + dy * dy).sqrt();
                if len <= 0.0 {
                    continue;
                }
                let distance = (dx * (py - a.1) - dy * (px - a.0)) / len;
                let along = ((px - a.0) * dx + (py - a.1) * dy) / (len * len);
                let side = if distance > self.config.hysteresis_px {
                    1
                } else if distance < -self.config.hysteresis_px {
                    -1
                } else {
                    0
                };
                if side == 0 {
                    continue;
                }
                let key = (li, track.track_id);
                match self.sides.insert(key, side) {
                    Some(previous) if previous != side && (0.0..=1.0).contains(&along) => {
                        events.push(AnalyticsEvent::LineCross {
                            line_id: line.id.clone(),
                            direction: if side > 0 {
                                Direction::In
                            } else {
                                Direction::Out
                            },
                            track_id: track.track_id,
                            class_name: track.class_name.clone(),
                            x: px,
                            y: py,
                        });
                    }
                    _ => {}
                }
            }
            for (zi, zone) in self.config.zones.iter().enumerate() {
                if !allowed(&zone.classes, &track.class_name) {
                    continue;
                }
                let Some(polygon) = zone.points.iter().map(resolve).collect::<Option<Vec<_>>>()
                else {
                    continue;
                };
                let key = (zi, track.track_id);
                let is_inside = inside_polygon(&polygon, (px, py));
                match (self.inside.get_mut(&key), is_inside) {
                    (None, true) => {
                        self.inside.insert(
                            key,
                            Presence {
                                since: now,
                                loitered: false,
                            },
                        );
                        events.push(AnalyticsEvent::ZoneEnter {
                            zone_id: zone.id.clone(),
                            track_id: track.track_id,
                            class_name: track.class_name.clone(),
                        });
                    }
                    (Some(presence), true) => {
                        let dwell = now - presence.since;
                        if !presence.loitered && zone.loiter_after_s.is_some_and(|l| dwell >= l) {
                            presence.loitered = true;
                            events.push(AnalyticsEvent::Loitering {
                                zone_id: zone.id.clone(),
                                track_id: track.track_id,
                                class_name: track.class_name.clone(),
                                dwell_s: dwell,
                            });
                        }
                    }
                    (Some(presence), false) => {
                        let dwell = now - presence.since;
                        self.inside.remove(&key);
                        events.push(AnalyticsEvent::ZoneExit {
                            zone_id: zone.id.clone(),
                            track_id: track.track_id,
                            class_name: track.class_name.clone(),
                            dwell_s: dwell,
                            reason: ExitReason::Left,
                        });
                    }
                    (None, false) => {}
                }
            }
        }
        for end in ended {
            for (zi, zone) in self.config.zones.iter().enumerate() {
                if let Some(presence) = self.inside.remove(&(zi, end.track_id)) {
                    events.push(AnalyticsEvent::ZoneExit {
                        zone_id: zone.id.clone(),
                        track_id: end.track_id,
                        class_name: end.class_name.clone(),
                        dwell_s: now - presence.since,
                        reason: ExitReason::TrackEnded,
                    });
                }
            }
            self.sides.retain(|(_, t), _| *t != end.track_id);
            self.classes.remove(&end.track_id);
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_ids_are_brought_within_the_rule_once_without_clashes() {
        let mut config = serde_json::json!({
            "lines": [{"id": "Door A"}, {"id": "Door_A"}, {"id": "ok-1"}],
            "zones": [{"id": "<b>desk</b>"}, {"id": "_hidden"}],
        });
        let changed = migrate_ids(&mut config);
        assert_eq!(
            changed,
            vec![
                ("Door A".to_string(), "Door_A-2".to_string()),
                ("<b>desk</b>".to_string(), "id-_b_desk__b_".to_string()),
                ("_hidden".to_string(), "id-_hidden".to_string()),
            ]
        );
        assert_eq!(config["lines"][2]["id"], "ok-1");
        assert!(migrate_ids(&mut config).is_empty(), "once is enough");
    }

    fn track(id: u64, x: f32, y_bottom: f32) -> TrackView {
        TrackView {
            track_id: id,
            class_id: 0,
            class_name: Arc::from("person"),
            confidence: 0.9,
            bbox: BBox {
                x1: x - 10.0,
                y1: y_bottom - 50.0,
                x2: x + 10.0,
                y2: y_bottom,
            },
            landmarks: None,
            first_seen: 0.0,
        }
    }

    fn config(toml_text: &str) -> AnalyticsConfig {
        toml::from_str(toml_text).expect("config")
    }

    #[test]
    fn percentages_resolve_against_the_frame() {
        let c = config("[[lines]]\nid = \"door\"\npoints = [[0, \"50%\"], [\"100%\", \"50%\"]]\n");
        assert_eq!(c.lines[0].points[0][1].resolve(720.0), Some(360.0));
        let mut report = Report::default();
        config("[[zones]]\nid = \"z\"\npoints = [[0, \"x%\"], [1, 1]]\n")
            .validate("s", &mut report);
        assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
    }

    #[test]
    fn jitter_on_a_line_counts_once_each_way() {
        let c = config("[[lines]]\nid = \"door\"\npoints = [[0, 100], [200, 100]]\n");
        let mut a = Analytics::new(c);
        // Walk down across y = 100, jitter around it by ±6 px, go on down, then come back.
        let ys = [
            60.0, 80.0, 95.0, 104.0, 97.0, 106.0, 94.0, 105.0, 115.0, 140.0, 90.0, 70.0,
        ];
        let mut events = Vec::new();
        for (i, y) in ys.iter().enumerate() {
            events.extend(a.update(&[track(7, 100.0, *y)], &[], i as f64, 640, 480));
        }
        let directions: Vec<Direction> = events
            .iter()
            .map(|e| match e {
                AnalyticsEvent::LineCross { direction, .. } => *direction,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(directions, [Direction::In, Direction::Out]);
    }

    #[test]
    fn passing_beside_the_end_of_a_line_does_not_count() {
        let c = config("[[lines]]\nid = \"door\"\npoints = [[0, 100], [200, 100]]\n");
        let mut a = Analytics::new(c);
        let mut events = Vec::new();
        for (i, y) in [60.0, 140.0].iter().enumerate() {
            events.extend(a.update(&[track(1, 300.0, *y)], &[], i as f64, 640, 480));
        }
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn zones_report_enter_exit_dwell_and_loitering_and_forget_ended_tracks() {
        let c = config(
            "[[zones]]\nid = \"desk\"\nloiter_after_s = 2.0\npoints = [[100, 100], [300, 100], [300, 300], [100, 300]]\n",
        );
        let mut a = Analytics::new(c);
        let mut events = Vec::new();
        for (t, x) in [
            (0.0, 50.0),
            (1.0, 150.0),
            (2.5, 200.0),
            (3.5, 250.0),
            (4.0, 350.0),
            (5.0, 200.0),
        ] {
            events.extend(a.update(&[track(3, x, 200.0)], &[], t, 640, 480));
        }
        let ended = EndedTrack {
            track_id: 3,
            reason: crate::tracker::bytetrack::EndReason::Lost,
            class_name: Arc::from("person"),
            duration_s: 6.0,
            bbox: track(3, 200.0, 200.0).bbox,
        };
        events.extend(a.update(&[], &[ended], 6.5, 640, 480));
        let names: Vec<&str> = events.iter().map(AnalyticsEvent::name).collect();
        assert_eq!(
            names,
            [
                "zone_enter",
                "loitering",
                "zone_exit",
                "zone_enter",
                "zone_exit"
            ]
        );
        match &events[2] {
            AnalyticsEvent::ZoneExit {
                dwell_s, reason, ..
            } => {
                assert_eq!((*dwell_s, *reason), (3.0, ExitReason::Left));
            }
            other => panic!("{other:?}"),
        }
        match &events[4] {
            AnalyticsEvent::ZoneExit {
                dwell_s, reason, ..
            } => {
                assert_eq!((*dwell_s, *reason), (1.5, ExitReason::TrackEnded));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.state_len(), 0, "an ended track leaves no state");
    }

    #[test]
    fn a_new_configuration_keeps_visits_and_sides_of_lines_and_zones_that_stay() {
        let zone =
            "[[zones]]\nid = \"desk\"\npoints = [[100, 100], [300, 100], [300, 300], [100, 300]]\n";
        let line = "[[lines]]\nid = \"door\"\npoints = [[0, 400], [640, 400]]\n";
        let mut a = Analytics::new(config(&format!("{zone}{line}")));
        let mut events = a.update(&[track(1, 150.0, 200.0)], &[], 0.0, 640, 480);
        // A second line appears in front of the first; the zone and the line stay.
        let other = "[[lines]]\nid = \"gate\"\npoints = [[0, 10], [640, 10]]\n";
        let exits = a.set_config(config(&format!("{other}{zone}{line}")), 1.0);
        assert!(exits.is_empty(), "{exits:?}");
        events.extend(a.update(&[track(1, 160.0, 200.0)], &[], 2.0, 640, 480));
        events.extend(a.update(&[track(1, 160.0, 450.0)], &[], 3.0, 640, 480));
        let names: Vec<&str> = events.iter().map(AnalyticsEvent::name).collect();
        // Within a frame, line events come before zone events.
        assert_eq!(
            names,
            ["zone_enter", "line_cross", "zone_exit"],
            "{events:?}"
        );
        match &events[2] {
            AnalyticsEvent::ZoneExit { dwell_s, .. } => assert_eq!(*dwell_s, 3.0),
            other => panic!("{other:?}"),
        }
        // Removing a zone with a track inside ends the visit, with its dwell time.
        a.update(&[track(1, 150.0, 200.0)], &[], 4.0, 640, 480);
        let exits = a.set_config(config(line), 6.0);
        match exits.as_slice() {
            [AnalyticsEvent::ZoneExit {
                zone_id,
                dwell_s,
                reason,
                class_name,
                ..
            }] => {
                assert_eq!((zone_id.as_str(), *dwell_s), ("desk", 2.0));
                assert_eq!(
                    (*reason, &**class_name),
                    (ExitReason::ZoneRemoved, "person")
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
