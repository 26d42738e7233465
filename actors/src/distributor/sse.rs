//! Server-Sent Events distributor: one `id:/event:/data:` block per event, shared by all
//! clients, with a short history so a reconnecting `EventSource` resumes from its
//! `Last-Event-ID` without a gap.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::live::{ClientQueue, FanoutConfig, Frame, LiveFanout};
use super::websocket::read_fanout;
use super::{CloseReason, Delivery, DistributorKind, LiveAttach, Outcome, Protocol};
use crate::event::Event;
use crate::glob::Glob;
use crate::session::routing::check_event_name;
use crate::telemetry::DistributorTelemetry;
use crate::validation::FieldReader;

/// Default number of recent events kept for `Last-Event-ID` resume.
pub const DEFAULT_HISTORY: u64 = 1024;
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

/// The SSE protocol half of a distributor.
pub struct SseProtocol {
    fanout: LiveFanout,
    history: VecDeque<(Arc<str>, Option<Arc<str>>, Frame)>,
    config: SseConfig,
    /// Sequence number of the latest event delivered (0 before the first): a resume
    /// point beyond it misses nothing.
    latest: u64,
}

/// Encodes one event as an SSE block: `id`, `event` (`name`), `data` (the JSON envelope).
pub fn encode(event: &Event, name: &str) -> Bytes {
    let json = event.json();
    let mut buf = BytesMut::with_capacity(json.len() + name.len() + 40);
    buf.put_slice(b"id: ");
    buf.put_slice(event.seq.to_string().as_bytes());
    buf.put_slice(b"\nevent: ");
    buf.put_slice(name.as_bytes());
    buf.put_slice(b"\ndata: ");
    // Compact JSON never contains a raw newline, so one `data:` line holds it all.
    buf.put_slice(json);
    buf.put_slice(b"\n\n");
    buf.freeze()
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

impl SseProtocol {
    /// The comment line telling a client resuming after `last` what it cannot get back:
    /// events no longer retained, or nothing when it missed nothing. Any `u64` is safe
    /// here: an id at or beyond the latest event (a client from another run, or a made-up
    /// one) misses nothing.
    fn gap_after(&self, last: u64) -> Option<String> {
        if last >= self.latest {
            return None;
        }
        let first_missed = last + 1;
        let oldest_kept = self
            .history
            .front()
            .map_or(self.latest + 1, |(_, _, f)| f.seq);
        (oldest_kept > first_missed).then(|| {
            format!(
                ": events {first_missed} to {} are no longer retained\n",
                oldest_kept - 1
            )
        })
    }
}

impl Protocol for SseProtocol {
    type Config = SseConfig;
    const KIND: DistributorKind = DistributorKind::Sse;
    const LATENCY_MEASURED_DOWNSTREAM: bool = true;

    fn parse(r: &mut FieldReader<'_>, path: &str) -> SseConfig {
        SseConfig {
            fanout: read_fanout(r, path),
            history_size: r.u64("historySize", 0, 1_000_000, DEFAULT_HISTORY) as usize,
            retry_ms: r.u64("retryMs", 0, 3_600_000, DEFAULT_RETRY_MS),
            event_names: read_event_names(r, path),
        }
    }

    fn new(_session: Arc<str>, config: SseConfig, telemetry: Arc<DistributorTelemetry>) -> Self {
        Self {
            fanout: LiveFanout::new(config.fanout, telemetry),
            history: VecDeque::new(),
            config,
            latest: 0,
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
            bytes: encode(event, name),
            accepted_at: event.accepted_at,
        };
        self.latest = self.latest.max(event.seq);
        self.fanout.publish(&event.name, event.source(), &frame);
        if self.config.history_size > 0 {
            if self.history.len() >= self.config.history_size {
                self.history.pop_front();
            }
            self.history
                .push_back((event.name.clone(), event.source_id(), frame));
        }
        Delivery::Done(Outcome::Delivered)
    }

    fn reconfigure(&mut self, config: SseConfig) {
        self.fanout.set_config(config.fanout);
        while self.history.len() > config.history_size {
            self.history.pop_front();
        }
        self.config = config;
    }

    fn attach(&mut self, request: LiveAttach) -> Result<Arc<ClientQueue>, String> {
        let queue = self.fanout.attach(request.subscription)?;
        let mut preamble = format!("retry: {}\n", self.config.retry_ms);
        if let Some(line) = request.resume_after.and_then(|last| self.gap_after(last)) {
            preamble.push_str(&line);
        }
        preamble.push('\n');
        queue.push(Frame {
            seq: 0,
            bytes: Bytes::from(preamble),
            accepted_at: std::time::Instant::now(),
        });
        if let Some(last) = request.resume_after {
            for (name, source, frame) in self.history.iter().filter(|(_, _, f)| f.seq > last) {
                queue.offer(name, source.as_deref(), frame.clone());
            }
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
            crate::json::to_raw(&serde_json::json!({"t": "a\nb"})),
        );
        let text = String::from_utf8(encode(&ev, "zone_enter").to_vec()).unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines[0], "id: 12");
        assert_eq!(lines[1], "event: zone_enter");
        assert!(lines[2].starts_with("data: {\"session\":\"s\",\"seq\":12"));
        assert_eq!(&lines[3..], ["", ""]);
    }
}
