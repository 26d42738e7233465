//! Server-Sent Events distributor: one `id:/event:/data:` block per event, shared by all
//! clients, with a short history so a reconnecting `EventSource` resumes from its
//! `Last-Event-ID` without a gap.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Weak};
use std::time::Instant;

use bytestring::ByteString;
use parking_lot::Mutex;

use super::live::{ClientQueue, FanoutConfig, Frame, LiveFanout};
use super::websocket::read_fanout;
use super::{CloseReason, Delivery, DistributorKind, LiveAttach, Outcome, Protocol};
use crate::budget::{BudgetHolder, MemoryBudget};
use crate::event::{Event, Origin};
use crate::glob::Glob;
use crate::guardrails::Guardrails;
use crate::session::routing::check_event_name;
use crate::telemetry::DistributorTelemetry;
use crate::validation::FieldReader;

/// Default number of recent events kept for `Last-Event-ID` resume.
pub const DEFAULT_HISTORY: u64 = 1024;
/// Bytes kept free in a resuming client's queue for the preamble (retry, gap notices).
pub(crate) const PREAMBLE_ROOM: usize = 512;
/// Default reconnect delay advertised to browsers (`retry:` field), in milliseconds.
pub const DEFAULT_RETRY_MS: u64 = 3000;

/// SSE settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SseConfig {
    /// Client queues and limits.
    pub fanout: FanoutConfig,
    /// Recent events kept for resume (`historySize`).
    pub history_size: usize,
    /// Reconnect delay sent to clients on connect (`retryMs`).
    pub retry_ms: u64,
    /// Event pattern → name on the `event:` line (`eventNames`), most specific first;
    /// browsers dispatch on it (`addEventListener(name, ...)`).
    pub event_names: Vec<(Glob, String)>,
}

/// One event kept for resume.
pub(crate) struct Retained {
    /// Event type, for the resuming client's subscription.
    pub(crate) name: Arc<str>,
    /// What raised it, for the client's scopes and channels.
    pub(crate) origin: Origin,
    /// The frame (an SSE block, a WebSocket text), shared with the live clients that got it.
    pub(crate) frame: Frame,
}

impl Retained {
    /// Bytes charged to the memory budget.
    fn weight(&self) -> usize {
        self.frame.text.len() + self.name.len() + std::mem::size_of::<Retained>()
    }
}

/// Recent events kept for `Last-Event-ID` resume, oldest first, charged to the server's
/// memory budget, which may evict the oldest of them (a resuming client is then told what
/// it missed).
pub(crate) struct History {
    entries: Mutex<VecDeque<Retained>>,
    budget: Arc<MemoryBudget>,
    telemetry: Arc<DistributorTelemetry>,
}

impl History {
    pub(crate) fn new(
        budget: Arc<MemoryBudget>,
        telemetry: Arc<DistributorTelemetry>,
    ) -> Arc<Self> {
        let history = Arc::new(Self {
            entries: Mutex::new(VecDeque::new()),
            budget,
            telemetry,
        });
        let holder: Weak<dyn BudgetHolder> = Arc::downgrade(&history) as Weak<dyn BudgetHolder>;
        history.budget.register(holder);
        history
    }

    fn released(&self, bytes: usize) {
        if bytes > 0 {
            self.telemetry.release_held(bytes);
            self.budget.release(bytes);
        }
    }

    /// Keeps `entry`, and at most `size` entries in all, none older than `max_age`.
    pub(crate) fn push(&self, entry: Retained, size: usize, max_age: Option<std::time::Duration>) {
        let weight = entry.weight();
        self.telemetry.hold(weight);
        self.budget.reserve(weight);
        let mut entries = self.entries.lock();
        entries.push_back(entry);
        let mut freed = 0;
        while entries.len() > size
            || max_age.is_some_and(|age| {
                entries
                    .front()
                    .is_some_and(|e| e.frame.accepted_at.elapsed() > age)
            })
        {
            freed += entries.pop_front().map_or(0, |e| e.weight());
        }
        drop(entries);
        self.released(freed);
        // With no lock held: the budget may evict from this very history.
        self.budget.settle();
    }

    /// Keeps at most `size` entries.
    pub(crate) fn truncate(&self, size: usize) {
        let mut entries = self.entries.lock();
        let mut freed = 0;
        while entries.len() > size {
            freed += entries.pop_front().map_or(0, |e| e.weight());
        }
        drop(entries);
        self.released(freed);
    }

    /// Sequence number of the oldest event kept.
    pub(crate) fn oldest_seq(&self) -> Option<u64> {
        self.entries.lock().front().map(|e| e.frame.seq)
    }

    /// The kept events after `last` that `queue` wants, newest last: as many of the most
    /// recent as the queue holds next to a `reserved` preamble, so a replay never evicts
    /// its own beginning.
    pub(crate) fn replay(&self, last: u64, queue: &ClientQueue, reserved: usize) -> Vec<Frame> {
        let (slots, room) = queue.room();
        let (mut slots, mut room) = (slots.saturating_sub(1), room.saturating_sub(reserved));
        let entries = self.entries.lock();
        let mut picked: Vec<Frame> = entries
            .iter()
            .rev()
            .take_while(|e| e.frame.seq > last)
            .filter(|e| queue.wants(&e.name, &e.origin))
            .map_while(|e| {
                let size = e.frame.text.len();
                (slots > 0 && size <= room).then(|| {
                    slots -= 1;
                    room -= size;
                    e.frame.clone()
                })
            })
            .collect();
        picked.reverse();
        picked
    }
}

impl BudgetHolder for History {
    fn oldest(&self) -> Option<Instant> {
        self.entries.lock().front().map(|e| e.frame.accepted_at)
    }

    fn evict(&self, until: Instant, bytes: usize) -> usize {
        let mut entries = self.entries.lock();
        let (mut n, mut freed) = (0u64, 0);
        while let Some(front) = entries.front() {
            if n > 0 && (front.frame.accepted_at > until || freed >= bytes) {
                break;
            }
            freed += front.weight();
            entries.pop_front();
            n += 1;
        }
        drop(entries);
        self.released(freed);
        self.telemetry.budget_evicted(n, "history");
        self.budget.record_eviction(n, freed as u64);
        freed
    }
}

impl Drop for History {
    fn drop(&mut self) {
        let freed = self.entries.get_mut().drain(..).map(|e| e.weight()).sum();
        self.released(freed);
    }
}

/// The SSE protocol half of a distributor.
pub struct SseProtocol {
    fanout: LiveFanout,
    history: Arc<History>,
    config: SseConfig,
    /// Sequence number of the latest event delivered (0 before the first): a resume
    /// point beyond it misses nothing.
    latest: u64,
    /// The session's epoch, for the preamble.
    telemetry: Arc<DistributorTelemetry>,
}

/// Encodes one event as an SSE block: `id`, `event` (`name`), `data` (the JSON envelope).
pub fn encode(event: &Event, name: &str) -> ByteString {
    let json = event.json_text();
    let mut buf = String::with_capacity(json.len() + name.len() + 40);
    // Compact JSON never contains a raw newline, so one `data:` line holds it all.
    let _ = write!(buf, "id: {}\nevent: {name}\ndata: {json}\n\n", event.seq);
    buf.into()
}

fn read_event_names(r: &mut FieldReader<'_>, path: &str) -> Vec<(Glob, String)> {
    let mut names = Vec::new();
    match r.raw("eventNames") {
        None => {}
        Some(serde_json::Value::Object(map)) => {
            for (pattern, v) in map {
                match v.as_str() {
                    Some(n) if check_event_name(n).is_ok() => names.push((Glob::new(pattern), n.to_string())),
                    _ => r.report().error(format!(
                        "{path}.eventNames.{pattern}: must be an event name (letters, digits, _ . : -), got {v}"
                    )),
                }
            }
        }
        Some(other) => r.report().error(format!(
            "{path}.eventNames: must be an object of event pattern → name, got {}",
            crate::validation::kind_of(other)
        )),
    }
    names.sort_by_key(|(g, _)| std::cmp::Reverse(g.specificity()));
    names
}

/// What a client resuming after `last` does not get back, given the `latest` event and
/// where its replay starts: events no longer retained, and retained ones that did not fit
/// its queue; nothing when it missed nothing. Any `u64` is safe: an id at or beyond the
/// latest event (from another run, or made up) misses nothing.
pub(crate) fn gaps(
    last: u64,
    latest: u64,
    history: &History,
    replay_from: Option<u64>,
) -> Vec<String> {
    if last >= latest {
        return Vec::new();
    }
    let first_missed = last + 1;
    let oldest_kept = history.oldest_seq().unwrap_or(latest + 1);
    let replay_from = replay_from.unwrap_or(latest + 1);
    let mut said = Vec::new();
    if oldest_kept > first_missed {
        said.push(format!(
            "events {first_missed} to {} are no longer retained",
            oldest_kept - 1
        ));
    }
    let skipped_from = first_missed.max(oldest_kept);
    if replay_from > skipped_from {
        said.push(format!(
            "events {skipped_from} to {} are not replayed: more than this client's queue holds",
            replay_from - 1
        ));
    }
    said
}

impl SseProtocol {
    /// The comment lines telling a client resuming after `last` what it does not get back:
    /// events no longer retained, and retained ones that did not fit its queue (the
    /// replay starts at `replay_from`); nothing when it missed nothing. Any `u64` is safe:
    /// an id at or beyond the latest event (from another run, or made up) misses nothing.
    fn gap_after(&self, last: u64, replay_from: Option<u64>) -> String {
        gaps(last, self.latest, &self.history, replay_from)
            .iter()
            .map(|g| format!(": {g}\n"))
            .collect()
    }
}

impl Protocol for SseProtocol {
    type Config = SseConfig;
    const KIND: DistributorKind = DistributorKind::Sse;
    const LATENCY_MEASURED_DOWNSTREAM: bool = true;

    fn parse(r: &mut FieldReader<'_>, path: &str, rails: &Guardrails) -> SseConfig {
        SseConfig {
            fanout: read_fanout(r, path, rails),
            history_size: r.u64_capped("historySize", 0, DEFAULT_HISTORY, rails.history()) as usize,
            retry_ms: r.u64("retryMs", 0, 3_600_000, DEFAULT_RETRY_MS),
            event_names: read_event_names(r, path),
        }
    }

    fn new(
        _session: Arc<str>,
        config: SseConfig,
        telemetry: Arc<DistributorTelemetry>,
        rails: &Guardrails,
    ) -> Self {
        Self {
            history: History::new(rails.budget.clone(), telemetry.clone()),
            fanout: LiveFanout::new(config.fanout, telemetry.clone()),
            config,
            latest: 0,
            telemetry,
        }
    }

    fn deliver(&mut self, event: &Arc<Event>) -> Delivery {
        let name = self
            .config
            .event_names
            .iter()
            .find(|(g, _)| g.matches(&event.name))
            .map_or(&*event.name, |(_, n)| n.as_str());
        let frame = Frame {
            seq: event.seq,
            text: encode(event, name),
            accepted_at: event.accepted_at,
        };
        self.latest = self.latest.max(event.seq);
        self.fanout.publish(&event.name, event.origin(), &frame);
        if self.config.history_size > 0 {
            let entry = Retained {
                name: event.name.clone(),
                origin: event.origin().clone(),
                frame,
            };
            self.history.push(entry, self.config.history_size, None);
        }
        Delivery::Done(Outcome::Delivered)
    }

    fn reconfigure(&mut self, config: SseConfig) {
        self.fanout.set_config(config.fanout);
        self.history.truncate(config.history_size);
        self.config = config;
    }

    fn attach(&mut self, request: LiveAttach) -> Result<Arc<ClientQueue>, String> {
        let queue = self.fanout.attach(request.subscription)?;
        let mut preamble = format!(
            "retry: {}\n: epoch {} last_seq {}\n",
            self.config.retry_ms,
            self.telemetry.epoch(),
            self.latest
        );
        let replay = match request.resume_after {
            Some(last) => {
                let replay = self.history.replay(last, &queue, PREAMBLE_ROOM);
                let from = replay.first().map(|f| f.seq);
                let gap = self.gap_after(last, from);
                preamble.push_str(if gap.is_empty() {
                    ": recovered true\n"
                } else {
                    ": recovered false\n"
                });
                preamble.push_str(&gap);
                replay
            }
            None => Vec::new(),
        };
        preamble.push('\n');
        queue.push(Frame {
            seq: 0,
            text: preamble.into(),
            accepted_at: std::time::Instant::now(),
        });
        for frame in replay {
            queue.push(frame);
        }
        Ok(queue)
    }

    fn tick(&mut self) {
        self.fanout.sweep();
    }

    fn close(&mut self, reason: CloseReason) {
        self.fanout.close_all(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn sse_block_has_id_event_and_one_data_line() {
        let ev = Event::new(
            "s".into(),
            12,
            "zone_enter".into(),
            Utc::now(),
            crate::json::to_raw(&serde_json::json!({"t": "a\nb"})).into(),
        );
        let text = encode(&ev, "zone_enter").to_string();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines[0], "id: 12");
        assert_eq!(lines[1], "event: zone_enter");
        assert!(lines[2].starts_with("data: {\"session\":\"s\",\"seq\":12"));
        assert_eq!(&lines[3..], ["", ""]);
    }
}
