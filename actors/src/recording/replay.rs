//! Playing a recording into a session.
//!
//! The recording's events (or, for re-analysis, the events its detections raise through
//! a source's lines and zones now) become cues: each at its offset from the start of the
//! chosen window. The player publishes them into the session keeping their spacing,
//! scaled by `rate` (`0`: as fast as the session takes them), and can be paused,
//! resumed, moved and stopped while it runs. Every event it publishes carries a
//! [`ReplayMark`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::reader::{Keep, Recorded};
use crate::event::{Origin, ReplayMark};
use crate::glob::Glob;
use crate::messages::IncomingEvent;
use crate::validation::{FieldReader, Report};

/// What to play.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayRequest {
    /// Recording id.
    pub recording: String,
    /// 1.0 real time, 2.0 twice as fast, 0 as fast as possible.
    pub rate: f64,
    /// Start again at the end.
    pub looping: bool,
    /// Where in the recording to start, in seconds from its first message.
    pub start_offset_s: f64,
    /// How much of it to play (to the end when absent).
    pub duration_s: Option<f64>,
    /// Event types to play (globs).
    pub events: Vec<String>,
    /// Re-analysis: the source whose lines, zones and thresholds the recorded detections
    /// go through now (its events are played instead of the recorded ones).
    pub reanalyze: Option<String>,
    /// Re-analysis: whose detections in the recording (the same source by default).
    pub from_source: Option<String>,
    /// Re-analysis: a dry run of the rules in force over the re-analysed events, each
    /// match played as a `rule_matched` event (`rules`, true by default); nothing acts.
    pub rules: bool,
}

/// Highest rate.
const MAX_RATE: f64 = 1000.0;

/// Reads a replay request, listing every problem.
pub fn parse_request(v: &Value, report: &mut Report) -> ReplayRequest {
    let mut r = FieldReader::new("replay", v, report);
    let recording = r.string("recording").unwrap_or_default();
    if recording.is_empty() {
        r.report()
            .error("replay.recording: the id of the recording to play");
    }
    let number = |r: &mut FieldReader, key: &'static str, min: f64, max: f64, default: f64| match r
        .raw(key)
    {
        None => default,
        Some(v) => match v.as_f64() {
            Some(n) if (min..=max).contains(&n) => n,
            _ => {
                r.report().error(format!(
                    "replay.{key}: a number from {min} to {max}, got {v}"
                ));
                default
            }
        },
    };
    let rate = number(&mut r, "rate", 0.0, MAX_RATE, 1.0);
    let start_offset_s = number(&mut r, "start_offset_s", 0.0, 1e9, 0.0);
    let duration_s = r
        .has("duration_s")
        .then(|| number(&mut r, "duration_s", 0.0, 1e9, 0.0));
    let looping = r.bool("loop", false);
    let events = match r.raw("events") {
        Some(list) => super::event_globs("replay.events", list, r.report()),
        None => vec!["*".to_string()],
    };
    let reanalyze = r.string("reanalyze");
    let from_source = r.string("from_source");
    if from_source.is_some() && reanalyze.is_none() {
        r.report()
            .error("replay.from_source: only with reanalyze (the source to re-analyse with)");
    }
    if r.has("rules") && reanalyze.is_none() {
        r.report()
            .error("replay.rules: only with reanalyze (rules are tried on re-analysed events)");
    }
    let rules = r.bool("rules", true);
    r.finish();
    ReplayRequest {
        recording,
        rate,
        looping,
        start_offset_s,
        duration_s,
        events,
        reanalyze,
        from_source,
        rules,
    }
}

/// One event to publish, at its offset from the start of the window.
#[derive(Debug, Clone)]
pub struct Cue {
    /// Nanoseconds from the window's start.
    pub at_ns: u64,
    /// The event, marked.
    pub event: IncomingEvent,
}

impl ReplayRequest {
    /// What to read of the recording: the events the replay plays (its globs), or, when it
    /// re-analyses the detections of `source`, only those.
    pub fn keep(&self, source: Option<&str>) -> Keep {
        match source {
            None => Keep {
                events: self.events.iter().map(|p| Glob::new(p)).collect(),
                detections: None,
            },
            Some(source) => Keep {
                events: Vec::new(),
                detections: Some(Glob::new(source)),
            },
        }
    }
}

/// The recorded events of `request`'s window, as cues (`recorded` read with
/// [`ReplayRequest::keep`]: only the events its globs take). Their `ts` is the time of
/// publication (they happen again), the mark keeps the recorded one.
pub fn cues_of_events(recorded: &Recorded, request: &ReplayRequest) -> Vec<Cue> {
    let recording: Arc<str> = request.recording.as_str().into();
    let Some(first) = recorded.first_event_ns else {
        return Vec::new();
    };
    let (from, to) = window(first, request);
    let mut cues: Vec<Cue> = recorded
        .events
        .iter()
        .filter(|e| e.log_ns >= from && e.log_ns <= to)
        .map(|e| Cue {
            at_ns: e.log_ns - from,
            event: IncomingEvent {
                name: e.name.clone(),
                data: e.data.clone(),
                ts: None,
                // The recorded marks come back: live feeds filter a replayed event by its
                // source and device as they did the live one.
                origin: Origin {
                    replay: Some(Arc::new(ReplayMark {
                        recording: recording.clone(),
                        original_seq: e.seq,
                        original_ts: e.ts_text.clone(),
                    })),
                    ..e.origin.clone()
                },
            },
        })
        .collect();
    // In time order (a file from elsewhere need not be): the player relies on it.
    cues.sort_by_key(|c| c.at_ns);
    cues
}

/// The window `[from, to]` in log-time nanoseconds, from the first message's time.
fn window(first: u64, request: &ReplayRequest) -> (u64, u64) {
    let from = first.saturating_add((request.start_offset_s * 1e9) as u64);
    let to = match request.duration_s {
        Some(d) => from.saturating_add((d * 1e9) as u64),
        None => u64::MAX,
    };
    (from, to)
}

/// Re-analysis: the recorded detections of one source, in `request`'s window, as
/// envelopes with their log times; cues are then made from what they raise.
pub fn frames_in_window<'a>(
    recorded: &'a Recorded,
    source: &str,
    request: &ReplayRequest,
) -> Result<Vec<&'a super::reader::RecordedFrame>, String> {
    let frames = recorded.detections.get(source).ok_or_else(|| {
        let known: Vec<&str> = recorded
            .detection_sources
            .iter()
            .map(String::as_str)
            .collect();
        format!(
            "the recording holds no detections of source {source:?} (it has: {})",
            if known.is_empty() {
                "none; record with \"detections\": true".to_string()
            } else {
                known.join(", ")
            }
        )
    })?;
    let Some(first) = frames.first().map(|f| f.log_ns) else {
        return Ok(Vec::new());
    };
    let (from, to) = window(first, request);
    Ok(frames
        .iter()
        .filter(|f| f.log_ns >= from && f.log_ns <= to)
        .collect())
}

/// Cues from re-analysed events: `raised[i]` are the events frame `i` raised. Spacing
/// and times follow the recorded frame times, never the wall clock, so the same
/// recording and configuration give the same events, byte for byte.
pub fn cues_of_reanalysis(
    frames: &[&super::reader::RecordedFrame],
    raised: Vec<(usize, IncomingEvent)>,
    request: &ReplayRequest,
) -> Vec<Cue> {
    let globs: Vec<Glob> = request.events.iter().map(|p| Glob::new(p)).collect();
    let recording: Arc<str> = request.recording.as_str().into();
    let Some(start) = frames.first().map(|f| f.at_ns) else {
        return Vec::new();
    };
    let mut cues: Vec<Cue> = raised
        .into_iter()
        .filter(|(_, e)| globs.iter().any(|g| g.matches(&e.name)))
        .filter_map(|(i, mut event)| {
            let frame = frames.get(i.min(frames.len().saturating_sub(1)))?;
            let number = frame.envelope["frame"]["number"]
                .as_u64()
                .unwrap_or(i as u64);
            let stamp = frame.envelope["source"]["timestamp"]
                .as_str()
                .unwrap_or_default();
            event.origin.replay = Some(Arc::new(ReplayMark {
                recording: recording.clone(),
                original_seq: number,
                original_ts: stamp.into(),
            }));
            Some(Cue {
                at_ns: frame.at_ns.saturating_sub(start),
                event,
            })
        })
        .collect();
    // Frame times can go back (an edge device's clock): in time order, stably.
    cues.sort_by_key(|c| c.at_ns);
    cues
}

/// A player's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlayState {
    /// Publishing.
    Playing,
    /// Held; `resume` goes on from here.
    Paused,
    /// Reached the end of its window (without `loop`).
    Finished,
    /// Stopped over REST, or its session closed.
    Stopped,
}

/// A player as the session status and the replay routes show it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayStatus {
    /// Recording played.
    pub recording: String,
    /// Where it stands.
    pub state: PlayState,
    /// Its rate.
    pub rate: f64,
    /// Whether it starts again at the end.
    #[serde(rename = "loop")]
    pub looping: bool,
    /// Position in the window, seconds.
    pub position_s: f64,
    /// Length of the window, seconds.
    pub duration_s: f64,
    /// Events published (all loops).
    pub played: u64,
    /// Events in the window.
    pub total: u64,
    /// Times it went back to the start.
    pub loops: u64,
    /// The source re-analysed with, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reanalyze: Option<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Why publishing failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What REST changes in a running player.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Command {
    Pause,
    Resume,
    Seek(f64),
    Stop,
}

/// A running player, shared by its task, its session's status and the routes.
pub struct Player {
    status: Mutex<ReplayStatus>,
    commands: Mutex<Vec<Command>>,
    wake: Notify,
    position_ns: AtomicU64,
    /// Its task is over.
    exited: std::sync::atomic::AtomicBool,
}

impl Player {
    /// A player for `request` with `cues` in its window.
    pub fn new(request: &ReplayRequest, cues: &[Cue]) -> Arc<Player> {
        let duration = cues.last().map_or(0, |c| c.at_ns);
        Arc::new(Player {
            status: Mutex::new(ReplayStatus {
                recording: request.recording.clone(),
                state: PlayState::Playing,
                rate: request.rate,
                looping: request.looping,
                position_s: 0.0,
                duration_s: duration as f64 / 1e9,
                played: 0,
                total: cues.len() as u64,
                loops: 0,
                reanalyze: request.reanalyze.clone(),
                started_at: Utc::now(),
                error: None,
            }),
            commands: Mutex::new(Vec::new()),
            wake: Notify::new(),
            position_ns: AtomicU64::new(0),
            exited: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Its status now.
    pub fn status(&self) -> ReplayStatus {
        let mut s = self.status.lock().clone();
        s.position_s = self.position_ns.load(Ordering::Relaxed) as f64 / 1e9;
        s
    }

    /// Whether it has ended (finished or stopped).
    pub fn ended(&self) -> bool {
        matches!(
            self.status.lock().state,
            PlayState::Finished | PlayState::Stopped
        )
    }

    fn command(&self, c: Command) {
        // A player whose task is over takes no more commands (nothing would read them).
        if self.exited.load(Ordering::Acquire) {
            return;
        }
        self.commands.lock().push(c);
        self.wake.notify_one();
    }

    /// Changes the state shown at once (the player acts on the command right after), so
    /// an answer to a command shows its effect; an ended player stays ended.
    fn show(&self, from: &[PlayState], to: PlayState) {
        let mut s = self.status.lock();
        if from.contains(&s.state) {
            s.state = to;
        }
    }

    /// Holds it where it is.
    pub fn pause(&self) {
        self.show(&[PlayState::Playing], PlayState::Paused);
        self.command(Command::Pause);
    }

    /// Goes on from where it was held.
    pub fn resume(&self) {
        self.show(&[PlayState::Paused], PlayState::Playing);
        self.command(Command::Resume);
    }

    /// Moves to `position_s` in the window.
    pub fn seek(&self, position_s: f64) {
        if !self.ended() {
            self.position_ns
                .store((position_s.max(0.0) * 1e9) as u64, Ordering::Relaxed);
        }
        self.command(Command::Seek(position_s));
    }

    /// Ends it.
    pub fn stop(&self) {
        self.show(&[PlayState::Playing, PlayState::Paused], PlayState::Stopped);
        self.command(Command::Stop);
    }

    fn set_state(&self, state: PlayState) {
        self.status.lock().state = state;
    }
}

/// Marks its player's task as over when dropped.
struct Exited(Arc<Player>);

impl Drop for Exited {
    fn drop(&mut self) {
        self.0.exited.store(true, Ordering::Release);
    }
}

/// Most events published in one batch.
const BATCH: usize = 1000;
/// The shortest wait for the starter's event budget (a refill of one event can be sooner).
const PACE_MIN_WAIT: Duration = Duration::from_millis(5);
/// At rate 0, how often the player asks again for room in the session's outputs ...
const ROOM_POLL: Duration = Duration::from_millis(2);
/// ... and how long it waits for an output that makes none before it sends anyway (that
/// output's queue policy then applies, and what it drops is counted).
const ROOM_WAIT: Duration = Duration::from_secs(5);

/// The shortest time between the starts of two passes of a looping replay, however short
/// its window and whatever its rate: a one-event recording looped as fast as possible
/// would otherwise publish tens of thousands of events a second.
pub const LOOP_FLOOR: Duration = Duration::from_secs(1);

/// What replayed events cost whoever started the replay (their event rate limit): how
/// many of `wanted` may be published now, or how long until one may.
pub type Pace = Arc<dyn Fn(usize) -> Result<usize, Duration> + Send + Sync>;

/// Plays `cues` through `publish` until the end (or forever with `loop`, a pass starting
/// no sooner than the window's length at `rate` and [`LOOP_FLOOR`] after the one before),
/// obeying the player's commands. `publish` waits for the session (its back-pressure) and
/// fails when the session is gone. At rate 0, `room` says how many more events the
/// session's outputs take now, and no batch is larger: as fast as possible is as fast as
/// they go. `pace`, when given, is asked before each batch and may make it smaller or wait.
pub async fn play<F, Fut, R, RFut>(
    player: Arc<Player>,
    cues: Vec<Cue>,
    rate: f64,
    looping: bool,
    pace: Option<Pace>,
    publish: F,
    room: R,
) where
    F: Fn(Vec<IncomingEvent>) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
    R: Fn() -> RFut,
    RFut: std::future::Future<Output = Result<usize, String>>,
{
    // However the player ends (finished, stopped, its task dropped), it says so.
    let _exited = Exited(player.clone());
    // Since when the outputs have had no room (rate 0).
    let mut starved: Option<Instant> = None;
    let scale = |ns: u64| -> Duration {
        if rate > 0.0 {
            Duration::from_nanos((ns as f64 / rate) as u64)
        } else {
            Duration::ZERO
        }
    };
    let mut next = 0usize;
    // The instant the window's start corresponds to.
    let mut origin = Instant::now();
    let mut paused_at: Option<u64> = None;
    loop {
        let commands: Vec<Command> = std::mem::take(&mut *player.commands.lock());
        if !commands.is_empty() {
            // Time paused or moved is not time waited for room.
            starved = None;
        }
        for c in commands {
            match c {
                Command::Stop => {
                    player.set_state(PlayState::Stopped);
                    return;
                }
                Command::Pause => {
                    if paused_at.is_none() {
                        // Held where the playhead is, not at the last event sent: resuming
                        // waits only what was left of the gap.
                        let mut at = player.position_ns.load(Ordering::Relaxed);
                        if rate > 0.0 {
                            let ran = (origin.elapsed().as_nanos() as f64 * rate) as u64;
                            let due = cues.get(next).map_or(u64::MAX, |c| c.at_ns);
                            at = at.max(ran.min(due));
                        }
                        player.position_ns.store(at, Ordering::Relaxed);
                        paused_at = Some(at);
                        player.set_state(PlayState::Paused);
                    }
                }
                Command::Resume => {
                    if let Some(at) = paused_at.take() {
                        origin = Instant::now() - scale(at);
                        player.set_state(PlayState::Playing);
                    }
                }
                Command::Seek(s) => {
                    let at = (s.max(0.0) * 1e9) as u64;
                    next = cues.partition_point(|c| c.at_ns < at);
                    player.position_ns.store(at, Ordering::Relaxed);
                    if paused_at.is_some() {
                        paused_at = Some(at);
                    } else {
                        origin = Instant::now() - scale(at);
                    }
                }
            }
        }
        if paused_at.is_some() {
            player.wake.notified().await;
            continue;
        }
        if next >= cues.len() {
            if looping && !cues.is_empty() {
                // The next pass starts a whole window (at this rate) after this one did.
                let length = cues.last().map_or(0, |c| c.at_ns);
                let again = origin + scale(length).max(LOOP_FLOOR);
                let now = Instant::now();
                if again > now {
                    let _ = tokio::time::timeout(again - now, player.wake.notified()).await;
                    continue;
                }
                next = 0;
                origin = Instant::now();
                player.status.lock().loops += 1;
                continue;
            }
            player.show(&[PlayState::Playing], PlayState::Finished);
            return;
        }
        let due = origin + scale(cues[next].at_ns);
        let now = Instant::now();
        if due > now {
            // Wakes for a command, or when the next cue is due.
            let _ = tokio::time::timeout(due - now, player.wake.notified()).await;
            continue;
        }
        let mut limit = BATCH;
        if rate == 0.0 {
            match room().await {
                Err(error) => {
                    let mut s = player.status.lock();
                    s.error = Some(error);
                    s.state = PlayState::Stopped;
                    return;
                }
                Ok(0) => {
                    let since = *starved.get_or_insert_with(Instant::now);
                    if since.elapsed() < ROOM_WAIT {
                        // Wakes for a command, or to ask again.
                        let _ = tokio::time::timeout(ROOM_POLL, player.wake.notified()).await;
                        continue;
                    }
                    // An output that makes no room holds the others back no longer: whole
                    // batches, until it makes room again (its queue drops what it must).
                }
                Ok(free) => {
                    starved = None;
                    limit = free.min(BATCH);
                }
            }
        }
        let mut end = next;
        while end < cues.len() && end - next < limit && origin + scale(cues[end].at_ns) <= now {
            end += 1;
        }
        if let Some(pace) = &pace {
            match pace(end - next) {
                Ok(n) if n > 0 => end = next + n.min(end - next),
                refused => {
                    // Over the starter's event rate: wait for it (or a command).
                    let wait = refused.err().unwrap_or_default().max(PACE_MIN_WAIT);
                    let _ = tokio::time::timeout(wait, player.wake.notified()).await;
                    continue;
                }
            }
        }
        let batch: Vec<IncomingEvent> = cues[next..end].iter().map(|c| c.event.clone()).collect();
        let at = cues[end - 1].at_ns;
        if let Err(error) = publish(batch).await {
            let mut s = player.status.lock();
            s.error = Some(error);
            s.state = PlayState::Stopped;
            return;
        }
        player.status.lock().played += (end - next) as u64;
        player.position_ns.store(at, Ordering::Relaxed);
        next = end;
    }
}

/// An RFC 3339 time with nanoseconds.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cue(at_ms: u64, i: u64) -> Cue {
        Cue {
            at_ns: at_ms * 1_000_000,
            event: IncomingEvent {
                name: "tick".into(),
                data: crate::json::to_raw(&json!({"i": i})).into(),
                ts: None,
                origin: Origin::default(),
            },
        }
    }

    #[test]
    fn a_request_lists_every_problem() {
        let mut report = Report::default();
        parse_request(
            &json!({"rate": -1, "events": [], "from_source": "a", "speed": 2}),
            &mut report,
        );
        let errors = report.errors.join("\n");
        for field in [
            "replay.recording",
            "replay.rate",
            "replay.events",
            "replay.from_source",
            "replay.speed",
        ] {
            assert!(errors.contains(field), "{field} missing in {errors}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn cues_keep_their_spacing_scaled_by_the_rate_and_seek_moves() {
        let cues: Vec<Cue> = (0..5).map(|i| cue(i * 1000, i)).collect();
        let request = ReplayRequest {
            recording: "r".into(),
            rate: 2.0,
            looping: false,
            start_offset_s: 0.0,
            duration_s: None,
            events: vec!["*".into()],
            reanalyze: None,
            from_source: None,
            rules: true,
        };
        let player = Player::new(&request, &cues);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let started = tokio::time::Instant::now();
        let log = seen.clone();
        play(
            player.clone(),
            cues,
            2.0,
            false,
            None,
            move |batch| {
                let log = log.clone();
                async move {
                    for e in batch {
                        log.lock().push((
                            started.elapsed().as_millis() as u64,
                            e.data.get().to_string(),
                        ));
                    }
                    Ok(())
                }
            },
            || async { Ok(usize::MAX) },
        )
        .await;
        let seen = seen.lock().clone();
        let times: Vec<u64> = seen.iter().map(|(t, _)| *t).collect();
        // One second apart in the recording, half a second apart at rate 2.
        assert_eq!(times, vec![0, 500, 1000, 1500, 2000]);
        assert_eq!(player.status().state, PlayState::Finished);
        assert_eq!(player.status().played, 5);
    }
}
