//! The rules in force. The registry offers the engine every event of sources and devices
//! (whether or not a session listens); matching is cheap (a rule reads an event's data only
//! when its type could match) and acting is queued, so rules never slow the pipeline.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use metrics::{counter, describe_counter, Counter};
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};

use super::actions::{forget_digest, ActionRuntime, Context, Matched, RULE_ACTIONS};
use super::{ActionConfig, EventView, RuleConfig};
use crate::messages::{FrameRef, IncomingEvent};
use crate::validation::Report;

/// Events each rule matched.
pub const RULE_MATCHES: &str = "synopticon_rule_matches_total";

/// Describes the rules' metrics.
pub fn describe() {
    describe_counter!(
        RULE_MATCHES,
        "Events each rule matched (outcome=fired) or matched during a cooldown (outcome=cooled_down)."
    );
    describe_counter!(
        RULE_ACTIONS,
        "Rule actions by outcome: done, failed (given up), dropped (the action's queue was full)."
    );
}

/// Why a rule could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// No such rule (404).
    #[error("rule {0:?} not found")]
    NotFound(String),
    /// Invalid settings (422).
    #[error("invalid rule")]
    Invalid(Report),
    /// Declared in the configuration file (409).
    #[error("rule {0:?} is declared in the configuration file; change it there")]
    Declared(String),
}

/// Keys remembered for per-track cooldowns before old ones are swept.
const MAX_KEYS: usize = 10_000;

struct Rule {
    config: RuleConfig,
    body: Value,
    declared: bool,
    name: Arc<str>,
    fired: AtomicU64,
    cooled: AtomicU64,
    m_fired: Counter,
    m_cooled: Counter,
    cooldowns: Mutex<Cooldowns>,
    actions: Vec<ActionRuntime>,
    /// Whether an action draws on the event's frame.
    uses_frame: bool,
}

/// When a rule last fired, overall and per object: times are durations on one clock (the
/// process's monotonic clock live, the recorded event times in a dry run).
#[derive(Debug, Default)]
struct Cooldowns {
    last: Option<Duration>,
    /// Source + track (or zone, or line) → when the rule last fired for it.
    keys: HashMap<String, Duration>,
}

impl Cooldowns {
    /// Whether `config`'s cooldowns hold the rule back at `now` for this event; records
    /// the firing if not. A time before the last firing counts as within it.
    fn held(&mut self, config: &RuleConfig, e: &EventView<'_>, now: Duration) -> bool {
        let since = |t: Duration| now.saturating_sub(t);
        let (rule_cd, track_cd) = (config.cooldown, config.track_cooldown);
        if !rule_cd.is_zero() && self.last.is_some_and(|t| since(t) < rule_cd) {
            return true;
        }
        if !track_cd.is_zero() {
            if let Some(key) = cooldown_key(e) {
                let keys = &mut self.keys;
                if keys.get(&key).is_some_and(|t| since(*t) < track_cd) {
                    return true;
                }
                if keys.len() >= MAX_KEYS {
                    keys.retain(|_, t| since(*t) < track_cd);
                }
                if keys.len() >= MAX_KEYS {
                    // Still full of live keys: the older half goes (those objects may
                    // fire again sooner than their cooldown), so the map stays bounded.
                    let mut times: Vec<Duration> = keys.values().copied().collect();
                    let middle = times.len() / 2;
                    let (_, median, _) = times.select_nth_unstable(middle);
                    let median = *median;
                    keys.retain(|_, t| *t > median);
                }
                keys.insert(key, now);
            }
        }
        self.last = Some(now);
        false
    }
}

/// The live clock of cooldowns: time since the first rule looked at it.
fn monotonic() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

impl Rule {
    /// Whether a cooldown holds the rule back for this event; records the firing if not.
    fn cooled_down(&self, e: &EventView<'_>) -> bool {
        self.cooldowns.lock().held(&self.config, e, monotonic())
    }

    fn status(&self) -> Value {
        let actions: Vec<_> = self.actions.iter().map(ActionRuntime::status).collect();
        json!({"name": &*self.name, "config": self.body, "enabled": self.config.enabled,
            "origin": if self.declared { "config" } else { "api" },
            "matched": self.fired.load(Ordering::Relaxed),
            "cooled_down": self.cooled.load(Ordering::Relaxed),
            "actions": actions})
    }
}

/// What a rule is about in an event: its source and track (or zone, or line).
fn cooldown_key(e: &EventView<'_>) -> Option<String> {
    let source = e.source.or(e.device).unwrap_or("-");
    let data = e.data;
    if let Some(track) = data.get("track_id").and_then(Value::as_u64) {
        return Some(format!("{source}/track/{track}"));
    }
    for k in ["zone_id", "line_id"] {
        if let Some(id) = data.get(k).and_then(Value::as_str) {
            return Some(format!("{source}/{k}/{id}"));
        }
    }
    None
}

/// The rules of this server.
pub struct RuleEngine {
    rules: RwLock<BTreeMap<String, Arc<Rule>>>,
    ctx: Arc<Context>,
    arbiter: actix::ArbiterHandle,
}

impl RuleEngine {
    /// No rules yet; actions run on `arbiter`.
    pub fn new(ctx: Context, arbiter: actix::ArbiterHandle) -> Self {
        Self {
            rules: RwLock::new(BTreeMap::new()),
            ctx: Arc::new(ctx),
            arbiter,
        }
    }

    /// Checks `body` as rule `name`: its settings, and the targets it would reach against
    /// the egress policy. The warnings are what is legal but will not work yet.
    pub fn check(&self, name: &str, body: &Value) -> Result<(RuleConfig, Vec<String>), Report> {
        let config = RuleConfig::parse(name, body)?;
        let mut report = Report::default();
        for (i, action) in config.actions.iter().enumerate() {
            if let ActionConfig::Webhook { url, .. } = action {
                if let Err(e) = self.ctx.egress.check_url(url) {
                    report.error(format!("actions[{i}].url: {e}"));
                }
            }
        }
        let mails = config.actions.iter().any(|a| {
            matches!(
                a,
                ActionConfig::EmailImmediate(_) | ActionConfig::EmailDigest(_)
            )
        });
        if mails && self.ctx.settings.smtp.is_none() {
            report.warn("e-mail actions need [rules.smtp]: until it is set, they fail (counted)");
        }
        if report.is_valid() {
            Ok((config, report.warnings))
        } else {
            Err(report)
        }
    }

    /// Starts (or replaces) rule `name`; whether it replaced one.
    pub fn put(&self, name: &str, body: &Value, declared: bool) -> Result<bool, RulesError> {
        let (config, _) = self.check(name, body).map_err(RulesError::Invalid)?;
        let mut rules = self.rules.write();
        if let Some(old) = rules.get(name) {
            if old.declared && !declared {
                return Err(RulesError::Declared(name.to_string()));
            }
            old.actions.iter().for_each(ActionRuntime::stop);
        }
        let actions = config
            .actions
            .iter()
            .enumerate()
            .map(|(i, a)| ActionRuntime::start(name, i, a.clone(), self.ctx.clone(), &self.arbiter))
            .collect();
        let labels =
            |o: &'static str| counter!(RULE_MATCHES, "rule" => name.to_string(), "outcome" => o);
        let uses_frame = config.actions.iter().any(ActionConfig::uses_frame);
        let rule = Rule {
            name: Arc::from(name),
            m_fired: labels("fired"),
            m_cooled: labels("cooled_down"),
            config,
            body: body.clone(),
            declared,
            fired: AtomicU64::new(0),
            cooled: AtomicU64::new(0),
            cooldowns: Mutex::new(Cooldowns::default()),
            uses_frame,
            actions,
        };
        tracing::info!(rule = %name, "rule in force");
        Ok(rules.insert(name.to_string(), Arc::new(rule)).is_some())
    }

    /// Stops and forgets rule `name` (and what its digests had gathered).
    pub async fn remove(&self, name: &str) -> Result<(), RulesError> {
        let removed = {
            let mut rules = self.rules.write();
            match rules.get(name) {
                None => return Err(RulesError::NotFound(name.to_string())),
                Some(r) if r.declared => return Err(RulesError::Declared(name.to_string())),
                Some(_) => rules.remove(name),
            }
        };
        if let Some(rule) = removed {
            rule.actions.iter().for_each(ActionRuntime::stop);
            for (i, a) in rule.config.actions.iter().enumerate() {
                if matches!(a, ActionConfig::EmailDigest(_)) {
                    forget_digest(&self.ctx.store, name, i).await;
                }
            }
        }
        Ok(())
    }

    /// Whether rule `name` was declared in the configuration.
    pub fn is_declared(&self, name: &str) -> bool {
        self.rules.read().get(name).is_some_and(|r| r.declared)
    }

    /// Every rule with its counters, by name.
    pub fn list(&self) -> Vec<Value> {
        self.rules.read().values().map(|r| r.status()).collect()
    }

    /// One rule with its counters.
    pub fn status(&self, name: &str) -> Result<Value, RulesError> {
        self.rules
            .read()
            .get(name)
            .map(|r| r.status())
            .ok_or_else(|| RulesError::NotFound(name.to_string()))
    }

    /// Which rules an event would match, and why the others would not (nothing acts).
    pub fn test(&self, e: &EventView<'_>) -> Vec<Value> {
        self.rules
            .read()
            .values()
            .map(|r| {
                let outcome = if !r.config.enabled {
                    Err("the rule is disabled".to_string())
                } else {
                    r.config.matcher.check(e)
                };
                match outcome {
                    Ok(()) => json!({"rule": &*r.name, "matches": true,
                        "actions": r.config.actions.iter().map(ActionConfig::kind).collect::<Vec<_>>()}),
                    Err(why) => json!({"rule": &*r.name, "matches": false, "why": why}),
                }
            })
            .collect()
    }

    /// A dry run of the rules in force over `events` raised by `source` (each with the
    /// index of what raised it): after each event, a `rule_matched` event per rule it
    /// would fire (its record, `dry_run: true` and the actions that would run), with
    /// cooldowns kept apart from the live ones and timed by the events' own times, so the
    /// same events give the same matches every run. Nothing acts, no counter moves.
    pub fn dry_run(
        &self,
        source: &str,
        events: Vec<(usize, IncomingEvent)>,
    ) -> Vec<(usize, IncomingEvent)> {
        // A copy of the rules in force: a long re-analysis holds no lock the live path
        // (or a rule's change) waits on.
        let rules: Vec<Arc<Rule>> = self.rules.read().values().cloned().collect();
        let mut cooldowns: HashMap<&str, Cooldowns> = HashMap::new();
        let mut out = Vec::with_capacity(events.len());
        for (i, event) in events {
            let name = super::normalize(&event.name);
            let mut data: Option<Value> = None;
            let mut matched = Vec::new();
            for rule in &rules {
                if !rule.config.enabled || !rule.config.matcher.takes_name(&name) {
                    continue;
                }
                let data = data.get_or_insert_with(|| {
                    serde_json::from_str(event.data.get()).unwrap_or(Value::Null)
                });
                let at = event.ts.unwrap_or_default();
                let view = EventView {
                    name: &name,
                    data,
                    source: Some(event.origin.source.as_deref().unwrap_or(source)),
                    device: event.origin.device.as_deref(),
                    at,
                };
                if rule.config.matcher.check(&view).is_err() {
                    continue;
                }
                let now = at
                    .signed_duration_since(chrono::DateTime::UNIX_EPOCH)
                    .to_std()
                    .unwrap_or_default();
                let held = cooldowns
                    .entry(&rule.name)
                    .or_default()
                    .held(&rule.config, &view, now);
                if held {
                    continue;
                }
                let mut record = Matched::new(rule.name.clone(), &view, None).record();
                record["dry_run"] = json!(true);
                record["actions"] = json!(rule
                    .config
                    .actions
                    .iter()
                    .map(ActionConfig::kind)
                    .collect::<Vec<_>>());
                matched.push(IncomingEvent {
                    name: "rule_matched".into(),
                    data: crate::json::to_raw(&record).into(),
                    ts: Some(at),
                    origin: event.origin.clone(),
                });
            }
            out.push((i, event));
            out.extend(matched.into_iter().map(|m| (i, m)));
        }
        out
    }

    /// Offers events of a source (or device) to every rule; matches are queued to their
    /// actions. Never waits.
    pub fn offer(
        &self,
        source: Option<&str>,
        device: Option<&str>,
        events: &[IncomingEvent],
        frame: Option<&Arc<FrameRef>>,
    ) {
        let rules = self.rules.read();
        if rules.is_empty() {
            return;
        }
        for event in events {
            let name = super::normalize(&event.name);
            let mut data: Option<Value> = None;
            for rule in rules.values() {
                if !rule.config.enabled || !rule.config.matcher.takes_name(&name) {
                    continue;
                }
                // The data is read once, and only when some rule could take the event.
                let data = data.get_or_insert_with(|| {
                    serde_json::from_str(event.data.get()).unwrap_or(Value::Null)
                });
                let view = EventView {
                    name: &name,
                    data,
                    source: source.or(event.origin.source.as_deref()),
                    device: device.or(event.origin.device.as_deref()),
                    at: event.ts.unwrap_or_else(Utc::now),
                };
                if rule.config.matcher.check(&view).is_err() {
                    continue;
                }
                if rule.cooled_down(&view) {
                    rule.cooled.fetch_add(1, Ordering::Relaxed);
                    rule.m_cooled.increment(1);
                    continue;
                }
                rule.fired.fetch_add(1, Ordering::Relaxed);
                rule.m_fired.increment(1);
                // The frame stays alive only as long as some action will draw on it.
                let frame = frame.filter(|_| rule.uses_frame).cloned();
                let item = Arc::new(Matched::new(rule.name.clone(), &view, frame));
                for action in &rule.actions {
                    action.offer(item.clone());
                }
            }
        }
    }

    /// Stops every action (shutdown).
    pub fn stop_all(&self) {
        for rule in self.rules.read().values() {
            rule.actions.iter().for_each(ActionRuntime::stop);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crossing(track: u64) -> Value {
        json!({"line_id": "door", "direction": "in", "track_id": track})
    }

    #[test]
    fn cooldowns_follow_the_clock_they_are_given() {
        let config = RuleConfig::parse(
            "r",
            &json!({"match": {"events": ["line_cross"]}, "cooldownSecs": 1,
                "trackCooldownSecs": 10, "actions": ["json_log"]}),
        )
        .expect("a valid rule");
        let mut cd = Cooldowns::default();
        let secs = Duration::from_secs_f64;
        let fires = |cd: &mut Cooldowns, track: u64, at: f64| {
            let data = crossing(track);
            let view = EventView {
                name: "line_cross",
                data: &data,
                source: Some("door-cam"),
                device: None,
                at: Utc::now(),
            };
            !cd.held(&config, &view, secs(at))
        };
        assert!(fires(&mut cd, 1, 100.0));
        // The rule rests a second, whatever the object.
        assert!(!fires(&mut cd, 2, 100.5));
        assert!(fires(&mut cd, 2, 101.2));
        // Track 1 rests ten seconds.
        assert!(!fires(&mut cd, 1, 105.0));
        assert!(fires(&mut cd, 1, 110.1));
        // A time before the last firing (a clock gone back) is within the cooldown.
        assert!(!fires(&mut cd, 3, 50.0));
    }
}
