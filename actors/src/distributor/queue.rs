//! The bounded queue in front of every distributor.
//!
//! The session pushes, the distributor pops. When the queue is full the overflow policy
//! decides which event is dropped: the oldest (default: live consumers care about now) or
//! the newest (keeps a contiguous history). Either way the pusher never waits, and every
//! dropped event is handed back so the caller can count it. Every queued event is charged
//! to the server's memory budget, which may evict the oldest ones (counted as dropped).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::Mutex;
use serde::Serialize;

use crate::budget::{BudgetHolder, MemoryBudget};
use crate::event::Event;
use crate::telemetry::DistributorTelemetry;

/// What to drop when a bounded queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    /// Evict the oldest queued event to make room for the new one.
    DropOldest,
    /// Refuse the new event and keep what is queued.
    DropNewest,
}

impl OverflowPolicy {
    /// Names accepted in configuration, default first.
    pub const NAMES: [&'static str; 2] = ["drop_oldest", "drop_newest"];

    /// Parses one of [`Self::NAMES`].
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "drop_oldest" => Some(Self::DropOldest),
            "drop_newest" => Some(Self::DropNewest),
            _ => None,
        }
    }
}

/// Result of [`EventQueue::push`].
#[derive(Debug)]
pub enum Pushed {
    /// Queued; `was_empty` tells the caller the consumer may need a wake-up.
    Queued { was_empty: bool },
    /// Queued after evicting this (oldest) event.
    Evicted(Arc<Event>),
    /// Not queued: the queue is full and the policy keeps what is there.
    Refused,
}

/// A bounded multi-producer queue of shared events, charged to the memory budget.
#[derive(Debug)]
pub struct EventQueue {
    items: Mutex<VecDeque<Arc<Event>>>,
    /// Maximum number of queued events; changeable at runtime by a reconfigure.
    capacity: AtomicUsize,
    policy: Mutex<OverflowPolicy>,
    /// The server-wide budget every queued event is charged to.
    budget: Arc<MemoryBudget>,
    /// The distributor's counters: evictions by the budget are its drops.
    telemetry: Arc<DistributorTelemetry>,
}

impl EventQueue {
    /// An empty queue, registered with `budget` (which may evict its oldest events).
    pub fn new(
        capacity: usize,
        policy: OverflowPolicy,
        budget: Arc<MemoryBudget>,
        telemetry: Arc<DistributorTelemetry>,
    ) -> Arc<Self> {
        let queue = Arc::new(Self {
            items: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity: AtomicUsize::new(capacity.max(1)),
            policy: Mutex::new(policy),
            budget,
            telemetry,
        });
        let holder: Weak<dyn BudgetHolder> = Arc::downgrade(&queue) as Weak<dyn BudgetHolder>;
        queue.budget.register(holder);
        queue
    }

    /// Gives back the budget of events no longer queued.
    fn released<'a>(&self, events: impl IntoIterator<Item = &'a Arc<Event>>) {
        let bytes: usize = events.into_iter().map(|e| e.weight()).sum();
        if bytes > 0 {
            self.telemetry.release_held(bytes);
            self.budget.release(bytes);
        }
    }

    /// Queues `event`, applying the overflow policy when full. Never blocks on the
    /// consumer; may evict the oldest events of any queue to stay within the budget.
    pub fn push(&self, event: Arc<Event>) -> Pushed {
        let capacity = self.capacity.load(Ordering::Relaxed);
        // Charged before the event is visible: a consumer popping it at once gives back
        // what is already counted.
        let weight = event.weight();
        self.telemetry.hold(weight);
        self.budget.reserve(weight);
        let mut items = self.items.lock();
        let pushed = if items.len() < capacity {
            let was_empty = items.is_empty();
            items.push_back(event);
            Pushed::Queued { was_empty }
        } else if *self.policy.lock() == OverflowPolicy::DropNewest {
            drop(items);
            self.released([&event]);
            return Pushed::Refused;
        } else {
            let evicted = items.pop_front();
            items.push_back(event);
            match evicted {
                Some(old) => Pushed::Evicted(old),
                None => Pushed::Queued { was_empty: true },
            }
        };
        drop(items);
        if let Pushed::Evicted(old) = &pushed {
            self.released([old]);
        }
        // With no lock held: the budget may evict from this very queue.
        self.budget.settle();
        pushed
    }

    /// Takes the oldest event.
    pub fn pop(&self) -> Option<Arc<Event>> {
        let event = self.items.lock().pop_front()?;
        self.released([&event]);
        Some(event)
    }

    /// Number of queued events.
    pub fn len(&self) -> usize {
        self.items.lock().len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.lock().is_empty()
    }

    /// Removes and returns everything queued (used when a distributor is disabled).
    pub fn take_all(&self) -> Vec<Arc<Event>> {
        let all: Vec<_> = self.items.lock().drain(..).collect();
        self.released(&all);
        all
    }

    /// Applies new limits; when shrinking, the oldest surplus events are returned as dropped.
    pub fn resize(&self, capacity: usize, policy: OverflowPolicy) -> Vec<Arc<Event>> {
        let capacity = capacity.max(1);
        self.capacity.store(capacity, Ordering::Relaxed);
        *self.policy.lock() = policy;
        let mut items = self.items.lock();
        let surplus = items.len().saturating_sub(capacity);
        let dropped: Vec<_> = items.drain(..surplus).collect();
        drop(items);
        self.released(&dropped);
        dropped
    }

    /// Current capacity.
    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }
}

impl BudgetHolder for EventQueue {
    fn oldest(&self) -> Option<Instant> {
        self.items.lock().front().map(|e| e.accepted_at)
    }

    fn evict(&self, until: Instant, bytes: usize) -> usize {
        let mut items = self.items.lock();
        let mut evicted = Vec::new();
        let mut freed = 0;
        while let Some(front) = items.front() {
            if !evicted.is_empty() && (front.accepted_at > until || freed >= bytes) {
                break;
            }
            freed += front.weight();
            evicted.extend(items.pop_front());
        }
        drop(items);
        self.released(&evicted);
        let n = evicted.len() as u64;
        self.telemetry.dropped(n, "memory budget");
        self.telemetry.budget_evicted(n, "queue");
        self.budget.record_eviction(n, freed as u64);
        freed
    }
}

impl Drop for EventQueue {
    fn drop(&mut self) {
        let left: Vec<_> = self.items.get_mut().drain(..).collect();
        self.released(&left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn ev(seq: u64) -> Arc<Event> {
        Arc::new(Event::new(
            "s".into(),
            seq,
            "e".into(),
            Utc::now(),
            crate::json::empty_object().into(),
        ))
    }

    fn queue_in(
        budget: &Arc<MemoryBudget>,
        capacity: usize,
        policy: OverflowPolicy,
    ) -> Arc<EventQueue> {
        let telemetry = Arc::new(DistributorTelemetry::new(
            "s".into(),
            crate::distributor::DistributorKind::Mqtt,
        ));
        EventQueue::new(capacity, policy, budget.clone(), telemetry)
    }

    fn queue(capacity: usize, policy: OverflowPolicy) -> Arc<EventQueue> {
        queue_in(&Arc::new(MemoryBudget::unlimited()), capacity, policy)
    }

    #[test]
    fn the_budget_evicts_the_oldest_events_of_any_queue_and_counts_them_as_dropped() {
        let weight = ev(0).weight();
        let budget = Arc::new(MemoryBudget::new(weight * 10));
        let (a, b) = (
            queue_in(&budget, 100, OverflowPolicy::DropOldest),
            queue_in(&budget, 100, OverflowPolicy::DropOldest),
        );
        for seq in 1..=6 {
            a.push(ev(seq));
        }
        for seq in 7..=12 {
            b.push(ev(seq));
        }
        // The 11th weight goes over the budget of 10: reclaimed down to 95%, oldest first.
        let status = budget.status();
        assert_eq!(status.used_bytes, weight * 10, "{status:?}");
        assert_eq!(a.pop().unwrap().seq, 3, "a's two oldest went");
        assert_eq!(b.pop().unwrap().seq, 7, "b's were newer");
        assert_eq!(a.telemetry.counters().dropped, 2);
        assert_eq!(a.telemetry.counters().budget_evictions, 2);
        assert_eq!(b.telemetry.counters().dropped, 0);
        assert_eq!(status.evicted_entries, 2);
        drop((a, b));
        assert_eq!(
            budget.status().used_bytes,
            0,
            "a dropped queue gives its share back"
        );
    }

    #[test]
    fn drop_oldest_keeps_the_latest_events() {
        let q = queue(2, OverflowPolicy::DropOldest);
        assert!(matches!(q.push(ev(1)), Pushed::Queued { was_empty: true }));
        assert!(matches!(q.push(ev(2)), Pushed::Queued { was_empty: false }));
        match q.push(ev(3)) {
            Pushed::Evicted(old) => assert_eq!(old.seq, 1),
            other => panic!("expected eviction, got {other:?}"),
        }
        assert_eq!(q.pop().unwrap().seq, 2);
        assert_eq!(q.pop().unwrap().seq, 3);
        assert!(q.pop().is_none());
    }

    #[test]
    fn drop_newest_refuses_when_full() {
        let q = queue(1, OverflowPolicy::DropNewest);
        q.push(ev(1));
        assert!(matches!(q.push(ev(2)), Pushed::Refused));
        assert_eq!(q.pop().unwrap().seq, 1);
    }

    #[test]
    fn shrinking_returns_the_oldest_surplus() {
        let q = queue(4, OverflowPolicy::DropOldest);
        for s in 1..=4 {
            q.push(ev(s));
        }
        let dropped = q.resize(1, OverflowPolicy::DropOldest);
        assert_eq!(dropped.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(q.len(), 1);
    }
}
